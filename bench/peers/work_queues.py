"""Work queues with claim and ack that Python users run today, for `python -m bench.groups`.

Each peer fills itself with n payloads (untimed), then `take_ack(n)` takes and
acknowledges them one at a time with the library's own calls, and
`take_ack_batched(n)` (where the library has a batch) in batches of 1,000.
Peers keep their default settings. `None` from `open_peer` means the library
(or, for Redis, `redis-server`) is not installed.

huey is not here: its storage's dequeue removes the task (no claim to ack or to
hand out again), so a worker killed mid-task loses it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from typing import Any


class Peer:
    name = ""
    batched = False

    def fill(self, payloads: list[bytes]) -> None:
        raise NotImplementedError

    def take_ack(self, n: int) -> int:
        raise NotImplementedError

    def take_ack_batched(self, n: int) -> int:
        raise NotImplementedError

    def close(self) -> None:
        pass


class SQLiteAckQueue(Peer):
    """persist-queue: get() marks the row unacked, ack() marks it acked (each a commit)."""

    name = "persist-queue SQLiteAckQueue get()+ack()"

    def __init__(self, where: str) -> None:
        from persistqueue import SQLiteAckQueue as Q  # type: ignore[import-not-found]

        self.q = Q(where, auto_commit=True, multithreading=False)

    def fill(self, payloads: list[bytes]) -> None:
        for p in payloads:
            self.q.put(p)

    def take_ack(self, n: int) -> int:
        get, ack = self.q.get, self.q.ack
        for _ in range(n):
            ack(get(block=False))
        return n


class Litequeue(Peer):
    """litequeue: pop() marks the message locked, done(id) finishes it."""

    name = "litequeue pop()+done()"

    def __init__(self, where: str) -> None:
        from litequeue import LiteQueue  # type: ignore[import-not-found]

        os.makedirs(where, exist_ok=True)
        self.q = LiteQueue(os.path.join(where, "queue.db"))

    def fill(self, payloads: list[bytes]) -> None:
        with self.q.transaction():
            for p in payloads:
                self.q.put(p)

    def take_ack(self, n: int) -> int:
        pop, done = self.q.pop, self.q.done
        for _ in range(n):
            done(pop().message_id)
        return n

    def close(self) -> None:
        self.q.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisStreams(Peer):
    """Redis Streams consumer group through redis-py on loopback: XREADGROUP + XACK (a redis-server of its own,
    in a temporary folder, default persistence settings)."""

    name = "Redis Streams XREADGROUP+XACK"
    batched = True

    def __init__(self, where: str) -> None:
        import redis  # type: ignore[import-not-found]

        server = shutil.which("redis-server")
        if server is None:
            raise ImportError("redis-server is not on PATH")
        self.dir = tempfile.mkdtemp(prefix="tape-bench-redis-")
        port = _free_port()
        self.proc = subprocess.Popen([server, "--port", str(port), "--bind", "127.0.0.1", "--dir", self.dir],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.r: Any = redis.Redis(port=port)
        for _ in range(500):
            try:
                self.r.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.01)
        self.r.xgroup_create("jobs", "g", id="0", mkstream=True)

    def fill(self, payloads: list[bytes]) -> None:
        pipe = self.r.pipeline(transaction=False)
        for k, p in enumerate(payloads, 1):
            pipe.xadd("jobs", {"p": p})
            if k % 10_000 == 0:
                pipe.execute()
        pipe.execute()

    def take_ack(self, n: int) -> int:
        read, ack = self.r.xreadgroup, self.r.xack
        for _ in range(n):
            (_, [(mid, _fields)]), = read("g", "c", {"jobs": ">"}, count=1)
            ack("jobs", "g", mid)
        return n

    def take_ack_batched(self, n: int) -> int:
        got = 0
        while got < n:
            (_, msgs), = self.r.xreadgroup("g", "c", {"jobs": ">"}, count=1000)
            self.r.xack("jobs", "g", *[mid for mid, _ in msgs])
            got += len(msgs)
        return got

    def close(self) -> None:
        self.r.close()
        self.proc.terminate()
        self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


PEERS: tuple[type[Peer], ...] = (SQLiteAckQueue, Litequeue, RedisStreams)


def open_peer(cls: type[Peer], where: str) -> Peer | None:
    try:
        return cls(where)
    except ImportError:
        return None
