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
        p = start_nacker(qpath, 4.0)
        try:
            floors: set[int | None] = set()
            while p.poll() is None and len(floors) < 2:
                floors.add(g.info()["ack_floor"])
        finally:
            p.kill()
            p.wait()
        assert floors <= {stuck}


def test_purge_never_removes_the_cycle_of_an_entry_nacked_for_later_again_and_again(tmp_path: Path) -> None:
    qpath = tmp_path / "q"
    clock = ManualClock()
    with tape.Queue(qpath, clock=clock) as q:
        a = q.appender()
        a.write("never acked")
        q.group("g", start="start", ack_wait=HOUR, max_deliveries=2**31).close()
        clock.advance(3 * 86400)
        a.write("newer, in a later cycle")
        p = start_nacker(qpath, 8.0)
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


class Flaky(tape.DurableObject):
    """An object whose alarm always fails."""

    n: int = 0

    def arm(self) -> None:
        self.schedule_alarm("a", delay=1)

    def on_alarm(self, name: str) -> None:
        raise RuntimeError("always fails")


def test_more_failing_alarms_than_the_later_list_holds_are_still_retried(tmp_path: Path) -> None:
    from tape.testing import fire_due_alarms

    clock = ManualClock()
    with tape.Objects(tmp_path / "o", alarms=False, clock=clock) as objects:
        for i in range(16_384 + 200):
            objects.get(Flaky, f"f{i}").arm()
        clock.advance(2)
        assert fire_due_alarms(objects) == 0  # every one ran and raised: none returned
        info = objects._group.info()
        assert info["in_flight"] == 0 and info["waiting"] + len(objects.failed_alarms()) == 16_384 + 200


def test_a_wrong_call_of_write_if_or_delete_names_the_method_called(tmp_path: Path) -> None:
    with tape.Queue(tmp_path / "q") as q:
        a = q.appender()
        with pytest.raises(TypeError, match=r"(?<![_\w])write_if\(\)"):
            a.write_if(1, None, last=None)  # type: ignore[misc]
        with pytest.raises(TypeError, match=r"(?<![_\w])delete\(\)"):
            a.delete("k", "extra")  # type: ignore[call-arg]


class Counter(tape.DurableObject):
    count: int = 0

    def increment(self) -> int:
        self.count += 1
        return self.count


def test_an_object_id_utf8_cannot_hold_is_an_argument_error(tmp_path: Path) -> None:
    with tape.Objects(tmp_path / "o", alarms=False) as objects:
        with pytest.raises(tape.ArgumentError):
            objects.get(Counter, "bad \udcff").increment()
        with pytest.raises(tape.ArgumentError):
            objects.call(Counter, "bad \udcff", "increment")


# -- what held: coverage kept ----------------------------------------------------------------------------------

WORKER = """
import os, random, sys, time, tape
q = tape.Queue(sys.argv[1])
c = q.group("g").consumer("w%d" % os.getpid())
rng = random.Random(int(sys.argv[3]))
idle = 0
with open(sys.argv[2], "w") as out:
    while idle < 100:
        batch = c.claim_many(50)
        if not batch:
            idle += 1
            time.sleep(0.002)
            continue
        idle = 0
        for d in batch:
            if d.attempt < 4 and rng.random() < 0.3:
                d.nack(rng.choice([0.0005, 0.002, 0]))  # for later, or at once
            else:
                d.ack()
                out.write("%d %d\\n" % (d.index, d.attempt))
"""


def test_three_processes_nacking_for_later_finish_every_entry_exactly_once(tmp_path: Path) -> None:
    qpath = tmp_path / "q"
    with tape.Queue(qpath) as q:
        q.appender().write_many(range(3000))
        indexes = [e.index for e in q.tailer().entries()]
        g = q.group("g", start="start", ack_wait=HOUR, max_deliveries=10)
        outs = [tmp_path / f"out{k}" for k in range(3)]
        procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(qpath), str(o), str(k)])
                 for k, o in enumerate(outs)]
        assert [p.wait() for p in procs] == [0, 0, 0]
        acked = [tuple(map(int, line.split())) for o in outs for line in o.read_text().splitlines()]
        assert sorted(i for i, _ in acked) == indexes  # each once, by one process
        info = g.info()
        assert (info["later"], info["waiting"], info["in_flight"], info["acked"]) == (0, 0, 0, 3000)
        assert g.dead_letters() == [] and max(a for _, a in acked) <= 4


def value(q: tape.Queue, key: str | bytes) -> object:
    e = q.latest(key)
    assert e is not None
    return e.value


INCREMENTER = """
import sys, time, tape
q = tape.Queue(sys.argv[1])
a = q.appender()
time.sleep(max(0.0, float(sys.argv[3]) - time.time()))  # all start together
keys = ["a", b"b", "c"]
done = conflicts = 0
while done < int(sys.argv[2]):
    k = keys[done % 3]
    e = q.latest(k)
    if a.write_if((0 if e is None else e.value) + 1, None if e is None else e.index, key=k) is None:
        conflicts += 1
        continue
    done += 1
print(conflicts)
"""


def test_write_if_by_key_across_four_processes_loses_no_update(tmp_path: Path) -> None:
    qpath = tmp_path / "q"
    tape.Queue(qpath).close()
    start = time.time() + 1.0
    procs = [subprocess.Popen([sys.executable, "-c", INCREMENTER, str(qpath), "3000", str(start)],
                              stdout=subprocess.PIPE, text=True) for _ in range(4)]
    outs = [p.communicate()[0] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, outs
    with tape.Queue(qpath) as q:
        keys: list[str | bytes] = ["a", b"b", "c"]
        assert {k: value(q, k) for k in keys} == {"a": 4000, b"b": 4000, "c": 4000}


def test_latest_reads_right_whatever_the_key_directory_hints(tmp_path: Path) -> None:
    """Each slot's hint (where its entry starts) overwritten with wrong positions: past the end, inside
    entries, huge, zero. latest() falls back to the index and answers right, writable and read-only."""
    import random
    import struct

    qpath = tmp_path / "q"
    want: dict[bytes, bytes] = {}
    with tape.Queue(qpath, codec="raw") as q:
        a = q.appender()
        for i in range(600):
            k, v = b"k%d" % (i % 40), b"v%d" % i * (i % 7 + 1)
            a.write(v, key=k)
            a.write(b"plain" * (i % 5))
            want[k] = v
    keys = qpath / "tape.keys"
    data = bytearray(keys.read_bytes())
    rng = random.Random(7)
    size = max(p.stat().st_size for p in qpath.glob("*.tape"))
    for off in range(4096, len(data), 32):
        h1, _, _, hint = struct.unpack_from("<QQqQ", data, off)
        if h1:
            wrong = [rng.randrange(1, size), hint + rng.choice([-8, -4, 4, 8, 16]), 0, size + 64, 1 << 40,
                     (1 << 63) - 256, (1 << 64) - 1]
            struct.pack_into("<Q", data, off + 24, max(0, rng.choice(wrong)))
    keys.write_bytes(data)
    for read_only in (False, True):
        with tape.Queue(qpath, codec="raw", read_only=read_only) as q:
            for _ in range(2):  # the second time with the tailer in the cycle: the hint is tried
                assert {k: value(q, k) for k in want} == want


def test_keys_carried_forward_by_purge_read_right_and_write_if_on_them(tmp_path: Path) -> None:
    import random

    clock = ManualClock()
    rng = random.Random(1)
    want: dict[bytes, bytes] = {}
    names = [b"k%d" % j for j in range(50)]
    with tape.Queue(tmp_path / "q", clock=clock, codec="raw") as q:
        a = q.appender()
        for day in range(6):
            for i in range(200):
                k = rng.choice(names)
                if rng.random() < 0.1:
                    a.delete(k)
                    want.pop(k, None)
                else:
                    a.write(b"%d-%d" % (day, i), key=k)
                    want[k] = b"%d-%d" % (day, i)
            clock.advance(86400)
            if day % 2:
                assert q.purge(keep_cycles=1)
            assert {k: e.value for k in names if (e := q.latest(k)) is not None} == want
    with tape.Queue(tmp_path / "q", clock=clock, codec="raw") as q:
        assert {k: e.value for k in names if (e := q.latest(k)) is not None} == want
        a = q.appender()
        for k in list(want)[:5]:
            e = q.latest(k)
            assert e is not None
            last = e.index
            assert a.write_if(b"new", last, key=k) is not None
            assert a.write_if(b"lost", last, key=k) is None
        assert sorted(q.keys()) == sorted(want)


def test_purge_and_retention_keep_the_cycle_of_an_entry_in_the_later_list(tmp_path: Path) -> None:
    clock = ManualClock()
    with tape.Queue(tmp_path / "q", clock=clock) as q:
        a = q.appender()
        old = a.write("nacked for later")
        g = q.group("g", start="start", ack_wait=HOUR)
        c = g.consumer()
        d = c.claim()
        assert d is not None and d.index == old
        d.nack(5 * 86400)
        clock.advance(3 * 86400)
        a.write("newer")
        assert q.purge(keep_cycles=1, respect_tailers=True) == []
        assert g.info()["ack_floor"] == old
        clock.advance(2 * 86400)
        back = c.claim()
        assert back is not None and (back.index, back.value, back.attempt) == (old, "nacked for later", 2)
        back.ack()
        newer = c.claim()
        assert newer is not None and newer.value == "newer"
        newer.ack()
        assert len(q.purge(keep_cycles=1, respect_tailers=True)) == 1


class HandlerFailed(Exception):
    """The exception a handler raises in the test below."""


def test_with_delivery_re_raises_the_handlers_exception_when_the_later_list_is_full(tmp_path: Path) -> None:
    later = 16_384  # tape.h: TAPE_GROUP_LATER
    with tape.Queue(tmp_path / "q", clock=ManualClock()) as q:
        q.appender().write_many(range(later + 1))
        g = q.group("g", ack_wait=HOUR, backoff=[HOUR])
        c = g.consumer()
        for _ in range(later // SLOTS):
            for d in claim_all(c, SLOTS):
                d.nack()
        last = c.claim()
        assert last is not None and g.info()["later"] == later
        with pytest.raises(HandlerFailed):
            with last:
                raise HandlerFailed("the handler failed")


def test_a_wrong_call_of_write_names_write_and_takes_no_key_by_position(tmp_path: Path) -> None:
    with tape.Queue(tmp_path / "q") as q:
        a = q.appender()
        with pytest.raises(TypeError, match=r"(?<![_\w])write\(\)"):
            a.write(1, "k")  # type: ignore[call-overload]
        with pytest.raises(TypeError, match=r"(?<![_\w])write_many\(\)"):
            a.write_many([1], 2)  # type: ignore[call-arg]
        assert list(q.tailer()) == []
