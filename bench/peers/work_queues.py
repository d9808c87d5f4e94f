"""Work queues with claim and ack that Python users run today, for `python -m bench.groups`.

Each peer fills itself with n payloads (untimed), then `take_ack(n)` takes and
acknowledges them one at a time with the library's own calls, and
`take_ack_batched(n)` (where the library has a batch) in batches of 1,000.
Peers keep their default settings. `None` from `open_peer` means the library
(or, for Redis, `redis-server`) is not installed.

huey has no ack: its worker's dequeue deletes the task's row, and running the
task is the ack. Its `take_ack(n)` is huey's own consumer (one worker thread,
in this process) running n enqueued tasks.

For `python -m bench.groups --kill`, each peer (tape's consumer group too:
`KILL_PEERS`) also has a `HOLDER`: a script run as a process (argument: the
peer's `address`) that takes one task, prints "took" and sleeps as if working;
`try_take()` is another worker's non-blocking take (acking what it gets), and
`after_wait()` says where the task is when no worker got it again: "stuck:
..." (still there, not handed out) or "lost: ...".
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
    HOLDER = ""
    address = ""
    default = ""  # what the peer does by default with a dead worker's task

    def fill(self, payloads: list[bytes]) -> None:
        raise NotImplementedError

    def take_ack(self, n: int) -> int:
        raise NotImplementedError

    def take_ack_batched(self, n: int) -> int:
        raise NotImplementedError

    def try_take(self) -> bool:
        raise NotImplementedError

    def after_wait(self) -> str:
        raise NotImplementedError

    def close(self) -> None:
        pass


class TapeGroup(Peer):
    """tape: a consumer group's claim() and ack() (for the kill only: bench.groups measures its rates itself)."""

    name = "tape consumer group claim()+ack()"
    default = "claims of a dead consumer are handed out again at once (its lock); others lapse after ack_wait (30 s)"
    HOLDER = """
import sys, time, tape
with tape.Queue(sys.argv[1], codec="raw") as q:
    assert q.group("g").consumer().claim() is not None
    print("took", flush=True)
    time.sleep(3600)
"""

    def __init__(self, where: str) -> None:
        import tape

        self.address = where
        self.q = tape.Queue(where, codec="raw")
        self.g = self.q.group("g")
        self.c = self.g.consumer()

    def fill(self, payloads: list[bytes]) -> None:
        self.q.appender().write_many(payloads)

    def try_take(self) -> bool:
        m = self.c.claim()
        if m is None:
            return False
        m.ack()
        return True

    def after_wait(self) -> str:
        return f"stuck? {self.g.info()}"

    def close(self) -> None:
        self.q.close()


class SQLiteAckQueue(Peer):
    """persist-queue: get() marks the row unacked, ack() marks it acked (each a commit)."""

    name = "persist-queue SQLiteAckQueue get()+ack()"
    default = ("no timeout: an unacked row stays unacked; opening the queue (auto_resume=True) makes every "
               "unacked row ready again, a live worker's too")
    HOLDER = """
import sys, time
from persistqueue import SQLiteAckQueue
q = SQLiteAckQueue(sys.argv[1], auto_commit=True, multithreading=False)
q.get(block=False)
print("took", flush=True)
time.sleep(3600)
"""

    def __init__(self, where: str) -> None:
        from persistqueue import SQLiteAckQueue as Q  # type: ignore[import-not-found]

        self.address = where
        self.q = Q(where, auto_commit=True, multithreading=False)

    def fill(self, payloads: list[bytes]) -> None:
        for p in payloads:
            self.q.put(p)

    def take_ack(self, n: int) -> int:
        get, ack = self.q.get, self.q.ack
        for _ in range(n):
            ack(get(block=False))
        return n

    def try_take(self) -> bool:
        from persistqueue import Empty

        try:
            self.q.ack(self.q.get(block=False))
        except Empty:
            return False
        return True

    def after_wait(self) -> str:
        from persistqueue import SQLiteAckQueue as Q

        unacked = self.q.unack_count()
        again = Q(self.address, auto_commit=True, multithreading=False)
        got = again.get(block=False) if again.size else None
        return (f"stuck: {unacked} unacked; a queue opened again (auto_resume) "
                + ("gets it" if got is not None else "does not get it"))


class Litequeue(Peer):
    """litequeue: pop() marks the message locked, done(id) finishes it."""

    name = "litequeue pop()+done()"
    default = "no timeout: a popped message stays LOCKED until someone calls list_locked(seconds) and retry(id)"
    HOLDER = """
import sys, time
from litequeue import LiteQueue
assert LiteQueue(sys.argv[1]).pop() is not None
print("took", flush=True)
time.sleep(3600)
"""

    def __init__(self, where: str) -> None:
        from litequeue import LiteQueue  # type: ignore[import-not-found]

        os.makedirs(where, exist_ok=True)
        self.address = os.path.join(where, "queue.db")
        self.q = LiteQueue(self.address)

    def fill(self, payloads: list[bytes]) -> None:
        with self.q.transaction():
            for p in payloads:
                self.q.put(p)

    def take_ack(self, n: int) -> int:
        pop, done = self.q.pop, self.q.done
        for _ in range(n):
            done(pop().message_id)
        return n

    def try_take(self) -> bool:
        m = self.q.pop()
        if m is None:
            return False
        self.q.done(m.message_id)
        return True

    def after_wait(self) -> str:
        return f"stuck: {len(list(self.q.list_locked(0)))} LOCKED"

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
    default = ("no timeout: a message read stays in its consumer's pending list; another consumer must "
               "XAUTOCLAIM (or XCLAIM) it, with a min-idle-time of its choosing")
    HOLDER = """
import sys, time, redis
r = redis.Redis(port=int(sys.argv[1]))
(_, msgs), = r.xreadgroup("g", "dead", {"jobs": ">"}, count=1)
assert len(msgs) == 1
print("took", flush=True)
time.sleep(3600)
"""

    def __init__(self, where: str) -> None:
        import redis  # type: ignore[import-not-found]

        server = shutil.which("redis-server")
        if server is None:
            raise ImportError("redis-server is not on PATH")
        self.dir = tempfile.mkdtemp(prefix="tape-bench-redis-")
        port = _free_port()
        self.proc = subprocess.Popen([server, "--port", str(port), "--bind", "127.0.0.1", "--dir", self.dir],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.address = str(port)
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

    def try_take(self) -> bool:
        got = self.r.xreadgroup("g", "c", {"jobs": ">"}, count=1)
        if not got:
            return False
        (_, [(mid, _fields)]), = got
        self.r.xack("jobs", "g", mid)
        return True

    def after_wait(self) -> str:
        pending = self.r.xpending("jobs", "g")["pending"]
        _, claimed, _ = self.r.xautoclaim("jobs", "g", "c", min_idle_time=0, count=10)
        return f"stuck: {pending} pending; XAUTOCLAIM (min-idle-time 0) gets {len(claimed)}"

    def close(self) -> None:
        self.r.close()
        self.proc.terminate()
        self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


class Huey(Peer):
    """huey with SqliteHuey: a task enqueued per payload; huey's consumer (one worker thread) runs them."""

    name = "huey SqliteHuey enqueue, 1 worker runs"
    default = "no ack: dequeue deletes the task's row before the task runs"
    HOLDER = """
import sys, time
from huey import SqliteHuey
huey = SqliteHuey(filename=sys.argv[1])
def work(p):
    print("took", flush=True)
    time.sleep(3600)
work.__module__ = "bench.peers.work_queues"  # the task's name in the queue is module.name
huey.task(name="work")(work)
huey.create_consumer(workers=1, periodic=False).run()
"""

    def __init__(self, where: str) -> None:
        import threading

        from huey import SqliteHuey  # type: ignore[import-not-found]

        os.makedirs(where, exist_ok=True)
        self.address = os.path.join(where, "huey.db")
        self.huey = SqliteHuey(filename=self.address)
        self.done = threading.Event()
        self.todo = 0

        @self.huey.task(name="work")
        def work(p: bytes) -> None:
            self.todo -= 1
            if self.todo == 0:
                self.done.set()

        self.work = work

    def fill(self, payloads: list[bytes]) -> None:
        for p in payloads:
            self.work(p)

    def take_ack(self, n: int) -> int:
        import signal

        handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        self.todo = n
        consumer = self.huey.create_consumer(workers=1, periodic=False, check_worker_health=False)
        consumer.start()
        self.done.wait()
        consumer.stop(graceful=True)
        for s, h in handlers.items():
            signal.signal(s, h)
        return n

    def try_take(self) -> bool:
        return self.huey.dequeue() is not None

    def after_wait(self) -> str:
        left = self.huey.pending_count() + self.huey.scheduled_count()
        return f"lost: {left} tasks in the queue or scheduled" if left == 0 else f"stuck? {left} tasks left"

    def close(self) -> None:
        self.huey.storage.close()


PEERS: tuple[type[Peer], ...] = (SQLiteAckQueue, Litequeue, Huey, RedisStreams)
KILL_PEERS: tuple[type[Peer], ...] = (TapeGroup, *PEERS)


def open_peer(cls: type[Peer], where: str) -> Peer | None:
    try:
        return cls(where)
    except ImportError:
        return None
