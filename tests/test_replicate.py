"""Replication to NATS JetStream and back, against a real nats-server the tests start.

Every entry reaches the stream once, in index order, whatever is killed and
however long anything is down; the ingester appends each once; damage is
refused. Processes are killed for real (SIGKILL), the server too.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

nats = pytest.importorskip("nats")

import tape
from nats_support import NatsCluster, NatsServer
from tape.replicate import Ingester, ReplicationError, Replicator, frame, replication_status
from tape.testing import ManualClock

STREAM = "ORDERS"
SMALL_FRAMES = 1024  # a few entries a frame: many frames, many moments to be killed at
# kill -9s of a replicator (and of an ingester) per test; `make torture` style runs set more
KILLS = int(os.environ.get("TAPE_REPLICATE_KILLS", "5"))


def write(path: Path, n: int, start: int = 0, **options: Any) -> list[int]:
    """Append n values {"n": i} to the queue at `path`; their indexes."""
    with tape.Queue(path, **options) as q:
        a = q.appender()
        return [a.write({"n": i, "pad": "x" * 60}) for i in range(start, start + n)]


def source(path: Path) -> list[tape.Entry]:
    with tape.Queue(path, raw=True) as q:
        return list(q.tailer().entries())


def stream_frames(url: str, subject: str = STREAM, stream: str = STREAM) -> list[frame.Frame]:
    """Every frame of `subject` in the stream, in stream order."""

    async def go() -> list[frame.Frame]:
        nc = await nats.connect(url.split(","))
        try:
            js = nc.jetstream()
            state = (await js.stream_info(stream)).state
            got: list[frame.Frame] = []
            if not state.last_seq:
                return got
            for seq in range(state.first_seq, state.last_seq + 1):
                msg = await js.get_msg(stream, seq)
                if msg.subject == subject:
                    assert msg.data is not None
                    got.append(frame.decode(msg.data))
            return got
        finally:
            await nc.close()

    return asyncio.run(go())


def stream_indexes(url: str, subject: str = STREAM) -> list[int]:
    return [i for f in stream_frames(url, subject) for i in f.indexes]


def publish(url: str, data: bytes, subject: str = STREAM) -> None:
    """Put a message of our own into the stream."""

    async def go() -> None:
        nc = await nats.connect(url)
        try:
            await nc.jetstream().publish(subject, data)
        finally:
            await nc.close()

    asyncio.run(go())


def wait_until(check: Callable[[], bool], what: str, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds} s: {what}")
        time.sleep(0.02)


@pytest.fixture
def src(tmp_path: Path) -> Path:
    return tmp_path / "src"


@pytest.fixture
def dst(tmp_path: Path) -> Path:
    return tmp_path / "dst"


class Running:
    """run(follow=True) of a Replicator or Ingester in a thread; stop() ends it and raises what it raised."""

    def __init__(self, runner: Replicator | Ingester) -> None:
        self.runner = runner
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._go, daemon=True)
        self.thread.start()

    def _go(self) -> None:
        try:
            self.runner.run(follow=True)
        except BaseException as exc:
            self.error = exc

    def stop(self) -> None:
        self.runner.stop()
        self.thread.join(30)
        assert not self.thread.is_alive()
        if self.error is not None:
            raise self.error


# -- round trip ---------------------------------------------------------------------------------


def test_entries_go_to_the_stream_and_into_another_queue_unchanged(
    nats_server: NatsServer, src: Path, dst: Path
) -> None:
    write(src, 3000)
    with tape.Queue(src) as q:
        q.appender().write_encoded(b"\x81\xa1k\xa1v", key="acct-1", not_before=1_800_000_000_000_000_000)
    entries = source(src)
    with Replicator(src, nats_server.url, stream=STREAM, frame_bytes=8192) as r:
        assert r.run() == len(entries)
        assert r.run() == 0  # nothing new: nothing shipped again
    assert stream_indexes(nats_server.url) == [e.index for e in entries]
    with Ingester(nats_server.url, stream=STREAM, path=dst) as i:
        assert i.run() == len(entries)
        assert i.run() == 0
    with tape.Queue(dst, raw=True) as q:
        assert q.codec_name == "msgpack"
        copied = list(q.tailer().entries())
    assert [e.value for e in copied] == [e.value for e in entries]
    assert [e.origin for e in copied] == [(e.index, e.timestamp) for e in entries]
    assert (copied[-1].key, copied[-1].not_before) == ("acct-1", 1_800_000_000_000_000_000)
    with tape.Queue(dst) as q:
        assert q.tailer().read() == {"n": 0, "pad": "x" * 60}


def test_a_delete_is_replicated_as_a_tombstone(nats_server: NatsServer, src: Path, dst: Path) -> None:
    with tape.Queue(src) as q:
        a = q.appender()
        a.write({"balance": 10}, key="acct-1")
        a.write({"balance": 5}, key="acct-2")
        a.delete("acct-1")
    with Replicator(src, nats_server.url, stream=STREAM) as r:
        assert r.run() == 3
    with Ingester(nats_server.url, stream=STREAM, path=dst) as i:
        assert i.run() == 3
    with tape.Queue(dst) as q:
        assert q.latest("acct-1") is None
        kept = q.latest("acct-2")
        assert kept is not None and kept.value == {"balance": 5}
        assert [(e.key, e.tombstone) for e in q.tailer().entries()] == [
            ("acct-1", False), ("acct-2", False), ("acct-1", True)
        ]


def test_the_ingested_queue_has_the_source_codec(nats_server: NatsServer, src: Path, dst: Path) -> None:
    with tape.Queue(src, codec="json", roll_cycle="hourly") as q:
        q.appender().write({"a": 1})
    with Replicator(src, nats_server.url, stream=STREAM) as r:
        r.run()
    with Ingester(nats_server.url, stream=STREAM, path=dst) as i:
        i.run()
    with tape.Queue(dst) as q:
        assert (q.codec_name, q.roll_cycle) == ("json", "hourly")
        assert q.tailer().read() == {"a": 1}


def test_an_existing_queue_with_another_codec_is_refused(nats_server: NatsServer, src: Path, dst: Path) -> None:
    write(src, 10)
    with tape.Queue(dst, codec="json"):
        pass
    with Replicator(src, nats_server.url, stream=STREAM) as r:
        r.run()
    with Ingester(nats_server.url, stream=STREAM, path=dst) as i:
        with pytest.raises(tape.IncompatibleQueueError):
            i.run()
    with tape.Queue(dst) as q:
        assert q.count() == 0


# -- follow, status, retention ---------------------------------------------------------------------


def test_follow_ships_and_ingests_new_entries_as_they_come(nats_server: NatsServer, src: Path, dst: Path) -> None:
    write(src, 10)
    with Replicator(src, nats_server.url, stream=STREAM) as r, \
            Ingester(nats_server.url, stream=STREAM, path=dst) as i:
        shipping, ingesting = Running(r), Running(i)
        try:
            for round_ in range(5):
                write(src, 50, start=10 + 50 * round_)
                wait_until(lambda: i.ingested == 10 + 50 * (round_ + 1), "ingested")
        finally:
            shipping.stop()
            ingesting.stop()
    assert [e.origin[0] for e in source(dst)] == [e.index for e in source(src)]


def test_status_says_position_lag_and_last_sequence(nats_server: NatsServer, src: Path) -> None:
    indexes = write(src, 100)
    with Replicator(src, nats_server.url, stream=STREAM, frame_bytes=SMALL_FRAMES) as r:
        before = r.status()
        assert before["position"] is None and before["lag_entries"] == 100
        assert before["lag_seconds"] > 0 and before["last_sequence"] is None
        r.run()
        after = r.status()
        assert after["position"] == indexes[-1] + 1
        assert (after["lag_entries"], after["lag_seconds"]) == (0, 0.0)
        assert after["last_sequence"] == len(stream_frames(nats_server.url))
        write(src, 7, start=100)
        assert r.status()["lag_entries"] == 7
    with tape.Queue(src, read_only=True) as q:
        assert replication_status(q)["lag_entries"] == 7


def test_retention_keeps_what_is_not_shipped(nats_server: NatsServer, src: Path) -> None:
    clock = ManualClock()
    shipped: list[int] = []
    with tape.Queue(src, roll_cycle="test_secondly", clock=clock) as q:
        a = q.appender()
        for _ in range(3):
            shipped += [a.write(n) for n in range(5)]
            clock.advance(1)
        with Replicator(src, nats_server.url, stream=STREAM) as r:
            r.run()
        unshipped = []
        for _ in range(3):
            unshipped += [a.write(n) for n in range(5)]
            clock.advance(1)
        removed = q.purge(keep_cycles=1, respect_tailers=True)
        assert len(removed) == 2  # shipped cycles only: the third holds the tailer's position
        assert [e.index for e in q.tailer().entries()][-15:] == unshipped
        with Replicator(src, nats_server.url, stream=STREAM) as r:
            r.run()
    assert stream_indexes(nats_server.url) == shipped + unshipped


def test_a_copy_of_a_copy_keeps_the_first_origin(nats_server: NatsServer, tmp_path: Path) -> None:
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    write(a, 300)
    with tape.Queue(a) as q:
        q.appender().write_encoded(b"\x81\xa1k\xa1v", key="acct-1", not_before=1_800_000_000_000_000_000)
    url = nats_server.url
    for more in (0, 200):  # a second round: every hop resumes where it stopped
        write(a, more, start=300)
        with Replicator(a, url, stream="S1", frame_bytes=SMALL_FRAMES) as r:
            r.run()
        with Ingester(url, stream="S1", path=b) as i:
            i.run()
        with Replicator(b, url, stream="S2", frame_bytes=SMALL_FRAMES) as r:
            r.run()
        with Ingester(url, stream="S2", path=c) as i:
            i.run()
    first, middle, last = source(a), source(b), source(c)
    assert len(first) == len(middle) == len(last) == 501
    assert [e.origin for e in middle] == [e.origin for e in last] == [(e.index, e.timestamp) for e in first]
    assert [(e.value, e.key, e.not_before) for e in last] == [(e.value, e.key, e.not_before) for e in first]
    second_hop = stream_frames(url, "S2", stream="S2")
    assert len(second_hop) > 2 and all(f.origins is not None for f in second_hop)
    assert [i for f in second_hop for i in f.indexes] == [e.index for e in middle]


def test_two_queues_on_subjects_of_one_stream_each_arrive_once_in_order(nats_server: NatsServer,
                                                                       tmp_path: Path) -> None:
    # The stream's sequences interleave the two subjects: each replicator has one frame in
    # flight and fences it on its subject's last sequence.
    asyncio.run(_add_stream(nats_server.url, STREAM, ["orders.*"]))
    queues = [tmp_path / "a", tmp_path / "b"]
    for q in queues:
        write(q, 10)
    writers = [Writer(q) for q in queues]
    replicators = [Replicator(q, nats_server.url, stream=STREAM, subject=f"orders.{q.name}",
                              frame_bytes=SMALL_FRAMES) for q in queues]
    running = [Running(r) for r in replicators]
    try:
        wait_until(lambda: all(r.shipped > 500 for r in replicators), "both shipping")
    finally:
        for w in writers:
            w.stop()
        for run in running:
            run.stop()
    for r, q in zip(replicators, queues):
        r.run()
        r.close()
        assert stream_indexes(nats_server.url, f"orders.{q.name}") == [e.index for e in source(q)]


async def _add_stream(url: str, name: str, subjects: list[str]) -> None:
    nc = await nats.connect(url)
    try:
        await nc.jetstream().add_stream(name=name, subjects=subjects)
    finally:
        await nc.close()


# -- one of each at a time ------------------------------------------------------------------------


def test_a_second_replicator_or_ingester_of_a_queue_is_refused(src: Path, dst: Path) -> None:
    write(src, 5)
    write(dst, 0)
    url = "nats://127.0.0.1:1"
    with Replicator(src, url, stream=STREAM):
        with pytest.raises(ReplicationError, match=f"already running in process {os.getpid()}"):
            Replicator(src, url, stream=STREAM)
        with Replicator(src, url, stream="OTHER", name="other"):
            pass  # another stream: another replicator
    with Replicator(src, url, stream=STREAM):
        pass  # the first one closed: free
    with Ingester(url, stream=STREAM, path=dst):
        with pytest.raises(ReplicationError, match=f"already running in process {os.getpid()}"):
            Ingester(url, stream="OTHER", path=dst)
    with Ingester(url, stream=STREAM, path=dst):
        pass


@pytest.mark.parametrize("role", ["replicate", "ingest"])
def test_a_killed_holder_frees_its_queue_at_once(src: Path, dst: Path, role: str) -> None:
    write(src, 5)
    write(dst, 0)
    url = "nats://127.0.0.1:1"  # nothing listens: the command retries for ever
    args = ["replicate", str(src), url, "--stream", STREAM] if role == "replicate" else ["ingest", url, "--stream",
                                                                                          STREAM, str(dst)]
    lock = src / "replication" / f"ship-{STREAM}.lock" if role == "replicate" else dst / "replication" / "ingest.lock"
    start = (lambda: Replicator(src, url, stream=STREAM)) if role == "replicate" else (
        lambda: Ingester(url, stream=STREAM, path=dst))
    proc = tape_command(*args, "--follow")
    try:
        wait_until(lambda: lock.exists() and lock.read_text().strip() == str(proc.pid), "the command holding the lock")
        with pytest.raises(ReplicationError, match=f"already running in process {proc.pid}"):
            start()
    finally:
        proc.kill()
        proc.communicate(timeout=30)
    start().close()  # at once, no waiting: the kernel dropped the lock with the process


def test_a_fork_child_does_not_keep_its_dead_parents_queue(src: Path) -> None:
    write(src, 5)
    script = (
        "import os, sys, time\n"
        "from tape.replicate import Replicator\n"
        f"r = Replicator({str(src)!r}, 'nats://127.0.0.1:1', stream={STREAM!r})\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    os.write(1, b'child\\n')  # os.fork() returns here once the fork hooks ran\n"
        "    time.sleep(60)\n"
        "    os._exit(0)\n"
        "os.write(1, b'%d\\n' % pid)\n"
        "os.kill(os.getpid(), 9)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    lines = {proc.stdout.readline().strip(), proc.stdout.readline().strip()}
    assert "child" in lines
    child = int((lines - {"child"}).pop())
    try:
        assert proc.wait(timeout=30) == -signal.SIGKILL
        os.kill(child, 0)  # alive
        Replicator(src, "nats://127.0.0.1:1", stream=STREAM).close()  # free: the child let go of its copy
    finally:
        os.kill(child, signal.SIGKILL)


@pytest.mark.parametrize("role", ["replicate", "ingest"])
def test_one_made_before_a_fork_refuses_to_run_in_the_child(src: Path, dst: Path, role: str) -> None:
    write(src, 5)
    write(dst, 0)
    make = (f"Replicator({str(src)!r}, 'nats://127.0.0.1:1', stream={STREAM!r}, retry_for=0.2)" if role == "replicate"
            else f"Ingester('nats://127.0.0.1:1', stream={STREAM!r}, path={str(dst)!r}, retry_for=0.2)")
    script = (
        "import os\n"
        "from tape.replicate import Ingester, ReplicationError, Replicator\n"
        f"r = {make}\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    try:\n"
        "        r.run()\n"
        "    except ReplicationError as exc:\n"
        "        os.write(1, f'refused: {exc}\\n'.encode())\n"
        "    os._exit(0)\n"
        "os.waitpid(pid, 0)\n"
        "r.close()\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60).stdout
    assert out.startswith("refused: ") and "fork child" in out, out


# -- crashes and downtime -----------------------------------------------------------------------


class Writer:
    """Appends values to a queue in a thread until stopped."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.done = threading.Event()
        self.count = 0
        self.thread = threading.Thread(target=self._go, daemon=True)
        self.thread.start()

    def _go(self) -> None:
        with tape.Queue(self.path) as q:
            a = q.appender()
            while not self.done.is_set():
                a.write_many({"n": self.count + k, "pad": "x" * 60} for k in range(20))
                self.count += 20
                time.sleep(0.002)

    def stop(self) -> None:
        self.done.set()
        self.thread.join()


def killed_at_random(args: list[str], kills: int, rng: random.Random) -> None:
    """Start `python -m tape ARGS` and kill -9 it at a random moment, `kills` times."""
    for _ in range(kills):
        proc = subprocess.Popen([sys.executable, "-m", "tape", *args], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.5, 1.2))  # it takes ~0.4 s to start
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def test_a_replicator_killed_at_random_moments_ships_each_entry_once(nats_server: NatsServer, src: Path) -> None:
    write(src, 10)
    writer = Writer(src)
    try:
        killed_at_random(["replicate", str(src), nats_server.url, "--stream", STREAM, "--follow",
                          "--frame-bytes", str(SMALL_FRAMES)], KILLS, random.Random(20))
    finally:
        writer.stop()
    assert stream_indexes(nats_server.url)  # it got somewhere before the last kill
    with Replicator(src, nats_server.url, stream=STREAM) as r:
        r.run()
    assert stream_indexes(nats_server.url) == [e.index for e in source(src)]


def test_an_ingester_killed_at_random_moments_appends_each_entry_once(
    nats_server: NatsServer, src: Path, dst: Path
) -> None:
    write(src, 10)
    writer = Writer(src)
    with Replicator(src, nats_server.url, stream=STREAM, frame_bytes=SMALL_FRAMES) as r:
        shipping = Running(r)
        try:
            killed_at_random(["ingest", nats_server.url, "--stream", STREAM, str(dst), "--follow"], KILLS,
                             random.Random(21))
        finally:
            writer.stop()
            shipping.stop()
        assert source(dst)  # it got somewhere before the last kill
        r.run()
    with Ingester(nats_server.url, stream=STREAM, path=dst) as i:
        i.run()
    assert [e.origin[0] for e in source(dst)] == [e.index for e in source(src)]


def test_the_server_killed_and_restarted_mid_run_loses_and_doubles_nothing(
    nats_server: NatsServer, src: Path, dst: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "tape.replicate")
    write(src, 10)
    writer = Writer(src)
    with Replicator(src, nats_server.url, stream=STREAM, frame_bytes=SMALL_FRAMES) as r, \
            Ingester(nats_server.url, stream=STREAM, path=dst) as i:
        shipping, ingesting = Running(r), Running(i)
        try:
            for _ in range(2):
                time.sleep(0.5)
                nats_server.stop(signal.SIGKILL)
                time.sleep(0.7)  # down long enough for both to notice and retry
                nats_server.start()
            time.sleep(0.3)
            writer.stop()
            wait_until(lambda: i.ingested == writer.count + 10, "everything ingested after the restarts")
        finally:
            writer.stop()
            shipping.stop()
            ingesting.stop()
    entries = [e.index for e in source(src)]
    assert stream_indexes(nats_server.url) == entries
    assert [e.origin[0] for e in source(dst)] == entries
    assert any("retrying" in m for m in caplog.messages)


def test_each_outage_gets_its_own_retry_for(nats_server: NatsServer, src: Path) -> None:
    write(src, 10)
    shipped = 10
    with Replicator(src, nats_server.url, stream=STREAM, retry_for=3.0, connect_timeout=0.5) as r:
        shipping = Running(r)
        try:
            for round_ in range(2):
                nats_server.stop(signal.SIGKILL)
                time.sleep(0.3)
                nats_server.start()
                write(src, 10, start=shipped)
                shipped += 10
                wait_until(lambda: r.shipped == shipped, f"shipping after restart {round_ + 1}")
                time.sleep(3.2)  # the first outage began longer than retry_for ago: the second is new
        finally:
            shipping.stop()  # raises what run() raised
    assert stream_indexes(nats_server.url) == [e.index for e in source(src)]


def test_exactly_once_does_not_depend_on_the_duplicate_window(nats_server: NatsServer, src: Path) -> None:
    write(src, 200)
    with Replicator(src, nats_server.url, stream=STREAM, duplicate_window=1.0, frame_bytes=SMALL_FRAMES) as r:
        r.run()
        # As if killed after JetStream stored the frames but before the position
        # moved: the named tailer is back at the start.
        with tape.Queue(src) as q:
            q.tailer("replicator").to_start()
        time.sleep(1.5)  # the duplicate window is over: a resent frame would be stored again
        write(src, 20, start=200)
        assert r.run() == 20
    assert stream_indexes(nats_server.url) == [e.index for e in source(src)]


def test_an_unreachable_server_is_retried_and_logged(src: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "tape.replicate")
    write(src, 5)
    with Replicator(src, "nats://127.0.0.1:1", stream=STREAM, retry_for=0.5, connect_timeout=0.2) as r:
        with pytest.raises(ReplicationError, match="unreachable"):
            r.run()
    retries = [m for m in caplog.messages if "retrying in" in m]
    assert len(retries) >= 2 and "nats://127.0.0.1:1" in retries[0]


# -- what does not belong -----------------------------------------------------------------------


def next_frame(src: Path, prev: int | None, n: int) -> bytes:
    """The frame a replicator would ship next: the last n entries of `src`, after index `prev`."""
    with tape.Queue(src, raw=True) as q:
        identity = frame.Identity.of(q).to_json()
        entries = list(q.tailer().entries())[-n:]
    return frame.encode(identity, prev, [e.index for e in entries], [e.timestamp for e in entries],
                        [e.value for e in entries], [None] * n, [None] * n)


def test_a_damaged_frame_is_refused_and_nothing_of_it_written(nats_server: NatsServer, src: Path, dst: Path) -> None:
    shipped = write(src, 100)
    with Replicator(src, nats_server.url, stream=STREAM) as r:
        r.run()
    write(src, 5, start=100)
    damaged = bytearray(next_frame(src, shipped[-1], 5))
    damaged[-3] ^= 0x20  # in the last payload
    publish(nats_server.url, bytes(damaged))
    with Ingester(nats_server.url, stream=STREAM, path=dst) as i:
        with pytest.raises(tape.CorruptionError, match="checksum"):
            i.run()
    assert [e.origin[0] for e in source(dst)] == shipped


def test_a_frame_partly_held_adds_only_the_entries_after_what_the_queue_holds(
    nats_server: NatsServer, src: Path, dst: Path
) -> None:
    shipped = write(src, 10)
    with Replicator(src, nats_server.url, stream=STREAM) as r:
        r.run()
    with Ingester(nats_server.url, stream=STREAM, path=dst) as i:
        assert i.run() == 10
    shipped += write(src, 5, start=10)
    publish(nats_server.url, next_frame(src, shipped[4], 10))  # entries 5 to 14: the first 5 are held
    with Ingester(nats_server.url, stream=STREAM, path=dst) as i:
        assert i.run() == 5
    copy = source(dst)
    assert [e.origin[0] for e in copy] == shipped
    assert [e.value for e in copy] == [e.value for e in source(src)]


@pytest.mark.parametrize("message", ["not a frame", "another queue's frame"])
def test_a_foreign_message_is_refused_by_both_sides(
    nats_server: NatsServer, src: Path, dst: Path, tmp_path: Path, message: str
) -> None:
    shipped = write(src, 20)
    with Replicator(src, nats_server.url, stream=STREAM) as r:
        r.run()
    if message == "not a frame":
        publish(nats_server.url, b'{"hello": "world"}')
        expected: type[tape.TapeError] = tape.CorruptionError
    else:
        write(tmp_path / "other", 3)
        publish(nats_server.url, next_frame(tmp_path / "other", None, 3))
        expected = ReplicationError
    with Ingester(nats_server.url, stream=STREAM, path=dst) as i:
        with pytest.raises(expected):
            i.run()
    assert [e.origin[0] for e in source(dst)] == shipped
    write(src, 5, start=20)
    with Replicator(src, nats_server.url, stream=STREAM) as r:
        with pytest.raises(ReplicationError, match="another queue|not a sound tape frame"):
            r.run()


# -- the command line -----------------------------------------------------------------------------


def tape_command(*args: str, **popen: Any) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "tape", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **popen)


def test_the_commands_replicate_ingest_and_report_status(nats_server: NatsServer, src: Path, dst: Path) -> None:
    indexes = write(src, 50)
    out, err = tape_command("replicate", str(src), nats_server.url, "--stream", STREAM).communicate(timeout=30)
    assert "shipped 50 entries" in err
    proc = tape_command("replicate", "--status", str(src))
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0
    status = json.loads(out)
    assert (status["position"], status["lag_entries"]) == (indexes[-1] + 1, 0)
    proc = tape_command("ingest", nats_server.url, "--stream", STREAM, str(dst))
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "appended 50 entries" in err
    assert len(source(dst)) == 50


def test_ctrl_c_ends_a_follow_cleanly_and_an_unreachable_server_is_said(src: Path) -> None:
    write(src, 5)
    proc = tape_command("replicate", str(src), "nats://127.0.0.1:1", "--stream", STREAM, "--follow")
    assert proc.stderr is not None
    line = proc.stderr.readline()
    while "retrying" not in line:
        assert line, "the command ended without saying it retries"
        line = proc.stderr.readline()
    assert "nats://127.0.0.1:1" in line
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert "Traceback" not in err


@pytest.mark.parametrize("role", ["replicate", "ingest"])
def test_retry_for_gives_up_with_exit_status_1(src: Path, dst: Path, role: str) -> None:
    write(src, 5)
    url = "nats://127.0.0.1:1"
    args = ["replicate", str(src), url, "--stream", STREAM] if role == "replicate" else ["ingest", url, "--stream",
                                                                                          STREAM, str(dst)]
    proc = tape_command(*args, "--follow", "--retry-for", "0.5s")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert "retrying in" in err  # said each time
    assert f"{url} unreachable for" in err.splitlines()[-1] and "Traceback" not in err
    proc = tape_command(*args, "--retry-for", "soon")
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2 and "--retry-for" in err


def test_bad_usage_is_exit_status_2(src: Path) -> None:
    write(src, 1)
    proc = tape_command("replicate", str(src))
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2 and "--stream" in err


def test_an_entry_larger_than_a_message_stops_the_replicator(nats_server: NatsServer, src: Path) -> None:
    with tape.Queue(src, codec="raw") as q:
        q.appender().write(b"x" * 100)
        q.appender().write(b"y" * (2 << 20))  # the server takes 1 MiB messages
    with Replicator(src, nats_server.url, stream=STREAM) as r:
        with pytest.raises(ReplicationError, match="max_payload"):
            r.run()
    assert len(stream_indexes(nats_server.url)) == 1


def test_a_three_node_cluster_loses_a_node_and_replication_goes_on(nats_cluster: NatsCluster, src: Path) -> None:
    write(src, 10)
    writer = Writer(src)
    with Replicator(src, nats_cluster.url, stream=STREAM, replicas=3, frame_bytes=SMALL_FRAMES,
                    ack_timeout=2.0) as r:
        shipping = Running(r)
        try:
            wait_until(lambda: (r.last_sequence or 0) > 20, "replicating to the cluster", 60)
            nats_cluster.nodes[0].stop(signal.SIGKILL)  # the node the replicator talks to first
            shipped = r.shipped
            wait_until(lambda: r.shipped > shipped + 200, "replicating after a node died", 60)
        finally:
            writer.stop()
            shipping.stop()
        r.run()
    survivors = ",".join(n.url for n in nats_cluster.nodes[1:])
    assert stream_indexes(survivors) == [e.index for e in source(src)]
