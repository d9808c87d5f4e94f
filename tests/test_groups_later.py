"""Entries nacked for later leave the group's table for its later list (csrc/group.c, "entries nacked for
later"): they hold back nothing, the list is bounded, info() counts them, and a process killed while an entry
moves between the table and the list loses and repeats nothing."""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
from pathlib import Path

import pytest

import tape
from crash_support import crc32c
from tape.testing import ManualClock

T0 = 1_735_689_600 * 10**9
HOUR = 3600
T1 = T0 + 2 * HOUR * 10**9  # every nack of these tests is due by then
SLOTS, LATER = 4096, 16384  # tape.h: TAPE_GROUP_SLOTS, TAPE_GROUP_LATER


def drain(c: tape.Consumer) -> list[tape.Delivery]:
    """Claim and ack every entry due now."""
    got = []
    while batch := c.claim_many(1000):
        got += batch
        c.ack_many(batch)
    return got


def claim_all(c: tape.Consumer, n: int) -> list[tape.Delivery]:
    held: list[tape.Delivery] = []
    while len(held) < n and (batch := c.claim_many(min(1000, n - len(held)))):
        held += batch
    return held


def test_a_full_later_list_refuses_a_nack_for_later_and_the_delivery_stays_held(tmp_path: Path) -> None:
    with tape.Queue(tmp_path / "q", clock=lambda: T0) as q:
        q.appender().write_many(range(LATER + 1))
        g = q.group("g", ack_wait=HOUR)
        c = g.consumer()
        for _ in range(LATER // SLOTS):
            for d in claim_all(c, SLOTS):
                d.nack(HOUR)
        last = c.claim()
        assert last is not None and last.value == LATER  # nothing held it back
        with pytest.raises(tape.LimitError, match="16384 entries nacked for later"):
            last.nack(HOUR)
        assert last.outcome is None and [p.index for p in g.pending()] == [last.index]
        last.ack()
        info = g.info()
        assert (info["later"], info["waiting"], info["in_flight"], info["acked"]) == (LATER, LATER, 0, 1)


def test_info_counts_entries_nacked_for_later_as_waiting(tmp_path: Path) -> None:
    clock = ManualClock()
    with tape.Queue(tmp_path / "q", clock=clock) as q:
        q.appender().write_many(range(10))
        g = q.group("g", ack_wait=2 * HOUR)
        c = g.consumer()
        held = c.claim_many(10)
        for d in held[:4]:
            d.nack(HOUR)
        held[4].nack(0)  # due at once: waits in the table
        info = g.info()
        assert (info["later"], info["waiting"], info["in_flight"], info["lag"]) == (4, 5, 5, 0)
        assert info["ack_floor"] == held[0].index
        clock.advance(HOUR)
        assert [d.attempt for d in drain(c)] == [2] * 5
        info = g.info()
        assert (info["later"], info["waiting"], info["in_flight"], info["acked"]) == (0, 0, 5, 5)


def test_counts_stay_whole_while_deferred_entries_come_due(tmp_path: Path) -> None:
    """Entries written with a delay, past half the table: lag + waiting + in flight + acked is every entry, before,
    during and after the pass that moves the deferred ones into the table."""
    clock = ManualClock()
    n = 6000
    with tape.Queue(tmp_path / "q", clock=clock) as q:
        q.appender().write_many(range(n), delay=HOUR)
        g = q.group("g")
        c = g.consumer()

        def whole() -> int:
            i = g.info()
            return int(i["lag"] + i["waiting"] + i["in_flight"] + i["acked"])

        assert c.claim() is None and whole() == n and g.info()["deferred"] == n - SLOTS // 2
        clock.advance(HOUR)
        held = claim_all(c, 3000)  # the first pass stands with the table 7/8 full
        assert len(held) == 3000 and whole() == n
        c.ack_many(held)
        assert whole() == n
        rest = drain(c)
        assert len(rest) == n - 3000 and whole() == n
        assert g.info()["deferred"] == 0 and g.info()["lag"] == 0


PUTTER = """
import sys, tape
q = tape.Queue(sys.argv[1], clock=lambda: %d)
c = q.group("g").consumer("victim")
while batch := c.claim_many(100):
    for d in batch:
        d.nack(%d)
""" % (T0, HOUR)

TAKER = """
import sys, tape
q = tape.Queue(sys.argv[1], clock=lambda: %d)
c = q.group("g").consumer("victim")
while batch := c.claim_many(100):
    c.ack_many(batch)
""" % T1


def run_killed(code: str, qpath: Path, point: str) -> None:
    env = {**os.environ, "TAPE_KILL": point}
    rc = subprocess.run([sys.executable, "-c", code, str(qpath)], env=env).returncode
    if rc == 0:
        pytest.skip("the extension was built without TAPE_TESTING (no kill points)")
    assert rc == -signal.SIGKILL


@pytest.mark.parametrize("nth", [1, 150])
def test_killed_while_an_entry_moves_into_the_later_list(tmp_path: Path, nth: int) -> None:
    """A process killed in a nack for later, between naming the move and making it: the next holder of the lock
    finishes the move; every entry is handed out again once, as its second delivery."""
    qpath = tmp_path / "q"
    with tape.Queue(qpath, clock=lambda: T0) as q:
        q.appender().write_many(range(300))
        indexes = [e.index for e in q.tailer().entries()]
        q.group("g", ack_wait=HOUR)
    run_killed(PUTTER, qpath, f"group_later_out:{nth}")
    with tape.Queue(qpath, clock=lambda: T1) as q:
        g = q.group("g")
        info = g.info()
        assert info["waiting"] + info["in_flight"] + info["lag"] == 300  # later: of waiting
        got = drain(g.consumer("after"))
        assert sorted(d.index for d in got) == indexes
        # those the victim claimed (the one it was nacking too: nacked, or given back when it died) come
        # as their second delivery, the others as their first
        assert sorted(d.attempt for d in got) == [1] * info["lag"] + [2] * (300 - info["lag"])
        info = g.info()
        assert (info["later"], info["waiting"], info["in_flight"], info["acked"]) == (0, 0, 0, 300)


@pytest.mark.parametrize("nth", [1, 150])
def test_killed_while_an_entry_moves_back_into_the_table(tmp_path: Path, nth: int) -> None:
    """A process killed as a claim moves due entries from the later list back into the table: nothing is lost,
    nothing is handed out twice, deliveries are still counted."""
    qpath = tmp_path / "q"
    with tape.Queue(qpath, clock=lambda: T0) as q:
        q.appender().write_many(range(300))
        indexes = [e.index for e in q.tailer().entries()]
        c = q.group("g", ack_wait=HOUR).consumer()
        for d in claim_all(c, 300):
            d.nack(HOUR)
        c.close()
    run_killed(TAKER, qpath, f"group_later_in:{nth}")
    with tape.Queue(qpath, clock=lambda: T1) as q:
        g = q.group("g")
        acked_before = g.info()["acked"]
        got = drain(g.consumer("after"))
        assert len(got) == len({d.index for d in got}) == 300 - acked_before
        assert {d.attempt for d in got} <= {2}
        info = g.info()
        assert (info["later"], info["waiting"], info["in_flight"], info["acked"]) == (0, 0, 0, 300)
        assert sorted(d.index for d in got) == indexes[acked_before:]


V2_SIZE = 229_376  # a group file of version 1 or 2 (docs/FORMAT.md)
NACKER = """
import sys, tape
q = tape.Queue(sys.argv[1], clock=lambda: %d)
d = q.group("g").consumer("victim").claim()
d.nack(%d)
""" % (T0, HOUR)


def test_killed_while_a_version_2_file_grows_for_its_first_nack_for_later(tmp_path: Path) -> None:
    """Killed after the file grew and before its header says version 3: it opens as version 2, and the next nack
    for later finishes the upgrade."""
    qpath = tmp_path / "q"
    with tape.Queue(qpath, clock=lambda: T0) as q:
        q.appender().write_many(range(3))
        q.group("g", ack_wait=HOUR).close()
    path = qpath / "groups" / "g.group"
    with open(path, "r+b") as f:  # as version 2 wrote it: without the later list
        f.truncate(V2_SIZE)
        head = bytearray(f.read(84))
        struct.pack_into("<II", head, 8, 2, V2_SIZE)
        struct.pack_into("<I", head, 80, crc32c(bytes(head[:80])))
        f.seek(0)
        f.write(head)
    run_killed(NACKER, qpath, "group_upgrade:1")
    data = path.read_bytes()
    assert struct.unpack_from("<II", data, 8) == (2, V2_SIZE) and len(data) > V2_SIZE
    with tape.Queue(qpath, clock=lambda: T0) as q:
        g = q.group("g")
        c = g.consumer()
        first = c.claim()  # the victim's, given back when it died
        assert first is not None and first.value == 0 and first.attempt == 2
        first.nack(HOUR)
        assert struct.unpack_from("<II", path.read_bytes(), 8) == (3, len(data))
        assert [d.value for d in c.claim_many(10)] == [1, 2] and g.info()["later"] == 1


def test_backoff_nacks_count_deliveries_through_the_later_list_up_to_the_dead_letters(tmp_path: Path) -> None:
    clock = ManualClock()
    with tape.Queue(tmp_path / "q", clock=clock) as q:
        q.appender().write({"job": 1})
        g = q.group("g", max_deliveries=3, backoff=[10, 20])
        c = g.consumer("w")
        for attempt, wait in [(1, 10), (2, 20)]:
            d = c.claim()
            assert d is not None and d.attempt == attempt
            d.nack()  # the backoff's step: out of the table until then
            assert g.info()["later"] == 1
            clock.advance(wait - 0.001)
            assert c.claim() is None
            clock.advance(0.001)
        d = c.claim()
        assert d is not None and d.attempt == 3
        d.nack()
        assert [(dl.index, dl.attempts, dl.reason, dl.consumer) for dl in g.dead_letters()] == [
            (d.index, 3, "max_deliveries", "w")]
        assert g.info()["later"] == 0
