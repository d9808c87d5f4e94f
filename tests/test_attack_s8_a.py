"""Session 8 attack (branch attack-a): consumer groups' later list (csrc/group.c, group file v3) and keyed
writes in C (tape/_native/_hot_writer.c, csrc/keys.c, csrc/read.c tape_read_at), run as a user or an
attacker would: real processes, real concurrency, odd arguments. A strict xfail marks a bug found today."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

import tape
from tape.testing import ManualClock

HOUR = 3600
SLOTS = 4096  # tape.h: TAPE_GROUP_SLOTS

# A consumer that moves one entry between the group's table and its later list as fast as it can: claimed
# (back into the table when due), nacked for later (out of the table), for `seconds`.
NACKER = """
import sys, time, tape
q = tape.Queue(sys.argv[1])
c = q.group("g").consumer("nacker")
end = time.time() + float(sys.argv[2])
print("ready", flush=True)
while time.time() < end:
    d = c.claim()
    if d is not None:
        d.nack(0.000001)
"""


def start_nacker(qpath: Path, seconds: float) -> subprocess.Popen[str]:
    p = subprocess.Popen([sys.executable, "-c", NACKER, str(qpath), str(seconds)], stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None and p.stdout.readline() == "ready\n"
    return p


@pytest.mark.xfail(strict=True, reason="csrc/group.c:tape_group_info_get: read without the lock, the later list "
                   "walked before the table: an entry moving out of the table (later_put: later state 1, then the "
                   "table slot FREE) after its later slot was read and before its table slot is, is in neither; "
                   "the ack floor passes it (about 1 look in 10 while another process nacks for later)")
def test_the_ack_floor_never_passes_an_entry_moving_into_the_later_list(tmp_path: Path) -> None:
    qpath = tmp_path / "q"
    with tape.Queue(qpath) as q:
        stuck = q.appender().write("never acked")
        g = q.group("g", start="start", ack_wait=HOUR, max_deliveries=2**31)
        with g.consumer() as c:  # the position passes it: the floor is not None from now on
            d = c.claim()
            assert d is not None and d.index == stuck
            d.nack(0)
        assert g.info()["ack_floor"] == stuck
        p = start_nacker(qpath, 2.0)
        try:
            floors = set()
            while p.poll() is None and len(floors) < 2:
                floors.add(g.info()["ack_floor"])
        finally:
            p.kill()
            p.wait()
        assert floors <= {stuck}


@pytest.mark.xfail(strict=True, reason="csrc/group.c:tape_group_info_get (through Queue._group_floors): the same "
                   "race makes purge(respect_tailers=True) remove the cycle of an entry the group has not finished; "
                   "the claim then finds it gone and drops it (SPEC: retention never removes an entry a group has "
                   "not finished)")
def test_purge_never_removes_the_cycle_of_an_entry_nacked_for_later_again_and_again(tmp_path: Path) -> None:
    qpath = tmp_path / "q"
    clock = ManualClock()
    with tape.Queue(qpath, clock=clock) as q:
        a = q.appender()
        a.write("never acked")
        q.group("g", start="start", ack_wait=HOUR, max_deliveries=2**31).close()
        clock.advance(3 * 86400)
        a.write("newer, in a later cycle")
        p = start_nacker(qpath, 3.0)
        removed: list[str] = []
        try:
            while p.poll() is None and not removed:
                removed = q.purge(keep_cycles=1, respect_tailers=True)
        finally:
            p.kill()
            p.wait()
        assert removed == []
        assert [e.value for e in q.tailer().entries()][0] == "never acked"


def claim_all(c: tape.Consumer, n: int) -> list[tape.Delivery]:
    held: list[tape.Delivery] = []
    while len(held) < n and (batch := c.claim_many(min(1000, n - len(held)))):
        held += batch
    return held


@pytest.mark.xfail(strict=True, reason="csrc/group.c:later_take/claim_once: with more than 7/8 of the table in "
                   "flight a due later entry is not moved back (later_take) and, because it is due, no new entry "
                   "is read (claim_once): claims get nothing while the table has room; tape.h (tape_group_claim: "
                   "'while one is due and the table has no room for it') and README ('a full table holds new "
                   "entries back') say otherwise")
def test_a_due_nacked_entry_is_handed_out_while_the_table_has_room(tmp_path: Path) -> None:
    clock = ManualClock()
    with tape.Queue(tmp_path / "q", clock=clock) as q:
        q.appender().write_many(range(3700))
        g = q.group("g", ack_wait=HOUR)
        c = g.consumer()
        held = claim_all(c, 3601)
        assert len(held) == 3601
        held[0].nack(10)
        clock.advance(10)
        info = g.info()
        assert (info["in_flight"], info["later"], SLOTS - info["in_flight"]) == (3600, 1, 496)
        d = c.claim()
        assert d is not None and (d.index, d.attempt) == (held[0].index, 2)
