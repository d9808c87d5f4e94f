"""Session 8 attack (branch attack-b): consumer groups' claims and acks in C (tape/_native/_hot_group.c,
tape/group.py) and the later list's fixes (csrc/group.c), run as a user or an attacker would: real processes,
threads, signals, fork, odd arguments. A strict xfail marks a bug found today."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import tape

HOUR = 3600


def test_claim_many_of_an_n_past_ssize_t_claims_what_is_due(raw_queue: tape.Queue) -> None:
    raw_queue.appender().write_many([b"a", b"b"])
    c = raw_queue.group("g").consumer()
    assert [d.value for d in c.claim_many(2**63)] == [b"a", b"b"]


def test_ack_many_of_an_acked_delivery_keeps_its_outcome(raw_queue: tape.Queue) -> None:
    raw_queue.appender().write(b"a")
    c = raw_queue.group("g").consumer()
    d = c.claim()
    assert d is not None
    d.ack()
    with pytest.raises(tape.StaleDeliveryError):
        d.ack()
    assert d.outcome == "acked"
    with pytest.raises(tape.StaleDeliveryError):
        c.ack_many([d])
    assert d.outcome == "acked"


def test_claim_checks_its_timeout_whether_or_not_an_entry_is_due(raw_queue: tape.Queue) -> None:
    c = raw_queue.group("g").consumer()
    with pytest.raises(tape.ArgumentError):
        c.claim(timeout=-1)
    raw_queue.appender().write(b"a")
    with pytest.raises(tape.ArgumentError):
        c.claim(timeout=-1)


# A process whose thread waits in claim(timeout=) (holding the consumer's lock) while the main thread forks: the
# child uses the inherited consumer (SPEC: QueueClosedError), then exits normally (the consumer's __del__).
FORKER = """
import os, sys, threading, time, tape
q = tape.Queue(sys.argv[1])
c = q.group("g").consumer()
stop = False
def wait():
    while not stop:
        c.claim(timeout=0.5)
th = threading.Thread(target=wait)
th.start()
time.sleep(0.3)
pid = os.fork()
if pid == 0:
    try:
        c.claim()
        print("claimed", flush=True)
    except tape.QueueClosedError:
        print("closed", flush=True)
    sys.exit(0)
end = time.monotonic() + 3
while time.monotonic() < end and os.waitpid(pid, os.WNOHANG)[0] == 0:
    time.sleep(0.02)
else:
    if time.monotonic() >= end:
        print("hung", flush=True)
        os.kill(pid, 9)
        os.waitpid(pid, 0)
stop = True
th.join()
"""


def test_a_fork_child_of_a_process_claiming_in_a_thread_gets_queue_closed_error(qpath: Path) -> None:
    tape.Queue(qpath).close()
    out = subprocess.run([sys.executable, "-c", FORKER, str(qpath)], capture_output=True, text=True, timeout=30)
    assert out.stdout == "closed\n"


def test_a_signal_interrupting_claims_and_acks_leaves_the_consumer_whole(raw_queue: tape.Queue) -> None:
    """A handler raising (as Ctrl-C does) inside claim(timeout=), claim_many and ack: the consumer stays usable,
    and every entry is finished once (those interrupted are handed out again after ack_wait)."""

    class Boom(Exception):
        pass

    def boom(signum: int, frame: Any) -> None:
        if frame is not None and frame.f_code.co_filename != __file__:  # only inside tape's code
            raise Boom

    n = 2000
    raw_queue.appender().write_many([b"%d" % i for i in range(n)])
    g = raw_queue.group("g", ack_wait=0.5)
    c = g.consumer()
    acked: list[bytes] = []
    booms = 0
    old = signal.signal(signal.SIGALRM, boom)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.0007, 0.0007)
        end = time.monotonic() + 2
        while time.monotonic() < end:
            try:
                batch = c.claim_many(5, timeout=0.02)
            except Boom:
                batch = []
                booms += 1
            for d in batch:
                try:
                    d.ack()  # (C, called from here: a signal meanwhile runs the handler, which passes)
                except Boom:
                    booms += 1
                if d.outcome == "acked":
                    acked.append(d.value)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert booms > 0
    while (d := c.claim(timeout=1)) is not None:  # the interrupted ones come back after ack_wait
        d.ack()
        acked.append(d.value)
    assert sorted(acked) == sorted(b"%d" % i for i in range(n))  # each once
    assert g.info()["acked"] == n
    c.close()


def test_a_consumer_closed_from_another_thread_mid_claims(raw_queue: tape.Queue) -> None:
    """close() from another thread while one claims and acks in C: QueueClosedError, no crash, nothing held."""
    raw_queue.appender().write_many([b"x"] * 20000)
    g = raw_queue.group("g", ack_wait=HOUR)
    for _ in range(5):
        c = g.consumer()
        errors: list[BaseException] = []

        def work(c: tape.Consumer = c) -> None:
            try:
                while True:
                    for d in c.claim_many(50):
                        d.ack()
                    d1 = c.claim()
                    if d1 is not None:
                        c.ack_many([d1])
            except BaseException as e:
                errors.append(e)

        th = threading.Thread(target=work)
        th.start()
        time.sleep(0.02)
        c.close()
        th.join(10)
        assert not th.is_alive()
        assert len(errors) == 1 and isinstance(errors[0], (tape.QueueClosedError, tape.StaleDeliveryError))
    assert g.info()["in_flight"] == 0


def test_a_million_claims_and_acks_in_c_keep_memory_flat(raw_queue: tape.Queue) -> None:
    a = raw_queue.appender()
    c = raw_queue.group("g").consumer()
    blocks = []
    for _ in range(4):
        a.write_many([b"v"] * 50000)
        while (d := c.claim()) is not None:
            d.ack()
        a.write_many([b"w"] * 50000)
        while batch := c.claim_many(1000):
            c.ack_many(batch)
        gc.collect()
        blocks.append(sys.getallocatedblocks())
    assert max(blocks[1:]) - min(blocks[1:]) < 100, blocks


# A worker that nacks for later or acks, writing each index to its log just before acking it (so an index acked
# when the floor was read is in the log by then).
WORKER = """
import os, random, sys, time, tape
q = tape.Queue(sys.argv[1])
c = q.group("g").consumer()
rng = random.Random(int(sys.argv[3]))
idle = 0
with open(sys.argv[2], "w", buffering=1) as out:
    while idle < 200:
        batch = c.claim_many(rng.choice([1, 7, 40])) if rng.random() < 0.5 else [d for d in [c.claim()] if d]
        if not batch:
            idle += 1
            time.sleep(0.002)
            continue
        idle = 0
        for d in batch:
            if d.attempt < 5 and rng.random() < 0.4:
                d.nack(rng.choice([0.0001, 0.001, 0]))
            else:
                out.write("%d\\n" % d.index)
                d.ack()
"""


def test_four_processes_nacking_for_later_while_info_reads_the_floor(tmp_path: Path) -> None:
    qpath = tmp_path / "q"
    n = 4000
    with tape.Queue(qpath) as q:
        q.appender().write_many(range(n))
        indexes = [e.index for e in q.tailer().entries()]
        g = q.group("g", start="start", ack_wait=HOUR, max_deliveries=100)
        logs = [tmp_path / f"log{k}" for k in range(4)]
        procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(qpath), str(p), str(k)])
                 for k, p in enumerate(logs)]
        seen: list[tuple[int, list[int]]] = []
        while any(p.poll() is None for p in procs):
            floor = g.info()["ack_floor"]
            if floor is not None:
                seen.append((floor, [p.stat().st_size if p.exists() else 0 for p in logs]))
            if len(seen) % 50 == 0:
                q.purge(keep_cycles=1, respect_tailers=True)
        assert [p.wait() for p in procs] == [0] * 4
        texts = [p.read_bytes() for p in logs]
        acked = sorted(int(x) for t in texts for x in t.split())
        assert acked == indexes  # each once
        for floor, sizes in seen[:: max(1, len(seen) // 300)]:
            done = {int(x) for t, size in zip(texts, sizes) for x in t[:size].split(b"\n")[:-1]}
            assert all(i in done for i in indexes if i < floor), floor
        assert g.info()["ack_floor"] == indexes[-1] + 1


T0 = 1_800_000_000 * 10**9
T1 = T0 + 2 * HOUR * 10**9
MOVER = """
import sys, tape
q = tape.Queue(sys.argv[1], clock=lambda: int(sys.argv[2]))
c = q.group("g").consumer("victim")
while batch := c.claim_many(100):
    for d in batch:
        d.nack(%d) if sys.argv[3] == "out" else d.ack()
""" % HOUR


@pytest.mark.parametrize("point", ["group_later_out:1", "group_later_out:50", "group_later_in:1", "group_later_in:50"])
def test_a_read_only_view_of_a_group_killed_mid_move(tmp_path: Path, point: str) -> None:
    """Killed between naming a move and ending it: a read-only info() (as `tape groups` reads it) keeps the
    floor at the first entry and counts each entry once, before any lock holder finishes the move."""
    qpath = tmp_path / "q"
    with tape.Queue(qpath, clock=lambda: T0) as q:
        q.appender().write_many(range(100))
        first = next(q.tailer().entries()).index
        g = q.group("g", ack_wait=HOUR)
        if "_in" in point:
            with g.consumer() as c:
                for d in c.claim_many(100):
                    d.nack(HOUR)
    now = T1 if "_in" in point else T0
    env = {**os.environ, "TAPE_KILL": point}
    rc = subprocess.run([sys.executable, "-c", MOVER, str(qpath), str(now), point.split("_")[2].split(":")[0]],
                        env=env).returncode
    if rc == 0:
        pytest.skip("the extension was built without TAPE_TESTING (no kill points)")
    assert rc == -signal.SIGKILL
    with tape.Queue(qpath, read_only=True, clock=lambda: T1) as rq:
        info = rq.group("g").info()
        assert info["ack_floor"] == first
        assert info["acked"] + info["waiting"] + info["in_flight"] + info["lag"] == 100
    out = subprocess.run([sys.executable, "-m", "tape", "groups", str(qpath)], capture_output=True, text=True)
    assert out.returncode == 0 and str(first) in out.stdout.splitlines()[-1].split()


def test_with_delivery_re_raises_the_handlers_error_after_the_claim_lapsed(qpath: Path) -> None:
    from tape.testing import ManualClock

    clock = ManualClock()
    with tape.Queue(qpath, clock=clock) as q:
        q.appender().write("job")
        d = q.group("g", ack_wait=1).consumer().claim()
        assert d is not None
        with pytest.raises(ValueError, match="handler"):
            with d:
                clock.advance(2)  # a slow handler: the claim lapses
                raise ValueError("handler")
