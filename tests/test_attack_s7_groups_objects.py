"""Attack on session 7's consumer groups and keyed entries (review, branch attack1).

Each xfail test shows a bug found: it fails today and must pass once fixed.
The others held under attack and add coverage that was missing.
"""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

import tape
from crash_support import child_env, crc32c, hooks_compiled_in
from tape.testing import ManualClock, run_worker

LONG, SHORT = 100, 10  # seconds
PAST_HALF = 3000  # entries not yet due: more than half of the 4,096-slot table
V2_SIZE = 229_376  # a group file of version 1 or 2 (docs/FORMAT.md)


def drain(c: tape.Consumer) -> list[int]:
    """Claim and ack every entry due now; their indexes."""
    got = []
    while batch := c.claim_many(1000):
        got += [d.index for d in batch]
        c.ack_many(batch)
    return got


# -- consumer groups: the deferred range ------------------------------------------------------


def test_short_delays_written_after_deferred_long_ones_come_due_first(tmp_path: Path) -> None:
    clock = ManualClock()
    with tape.Queue(tmp_path / "q", clock=clock) as q:
        a = q.appender()
        a.write_many([{"long": n} for n in range(PAST_HALF)], delay=LONG)
        a.write_many([{"short": n} for n in range(10)], delay=SHORT)
        c = q.group("g").consumer()
        assert c.claim() is None
        clock.advance(SHORT)
        short = c.claim_many(100)
        assert [d.value for d in short] == [{"short": n} for n in range(10)]
        c.ack_many(short)
        assert c.claim() is None
        clock.advance(LONG)
        assert len(set(drain(c))) == PAST_HALF


def test_info_counts_deferred_entries_among_those_not_handed_out(tmp_path: Path) -> None:
    clock = ManualClock()
    with tape.Queue(tmp_path / "q", clock=clock) as q:
        q.appender().write_many([{"n": n} for n in range(PAST_HALF)], delay=LONG)
        g = q.group("g")
        assert g.consumer().claim() is None
        info = g.info()
        assert info["lag"] + info["waiting"] + info["in_flight"] == PAST_HALF


def test_deferred_entries_survive_a_purge_and_come_due(tmp_path: Path) -> None:
    clock = ManualClock()
    with tape.Queue(tmp_path / "q", clock=clock, roll_cycle="test_secondly") as q:
        a = q.appender()
        a.write_many([{"n": n} for n in range(PAST_HALF)], delay=LONG)
        g = q.group("g")
        c = g.consumer()
        assert c.claim() is None
        for k in range(5):  # later cycles, handed out and acked at once
            clock.advance(1)
            a.write({"now": k})
            now = c.claim_many(10)
            assert [d.value for d in now] == [{"now": k}]
            c.ack_many(now)
        q.purge(keep_cycles=1, respect_tailers=True)
        clock.advance(LONG)
        got = drain(c)
        assert len(got) == PAST_HALF


def test_a_group_started_past_the_end_hands_out_only_from_there(tmp_path: Path) -> None:
    with tape.Queue(tmp_path / "q") as q:
        a = q.appender()
        first = a.write({"n": 0})
        g = q.group("g", start=first + 5)
        c = g.consumer()
        idx = [a.write({"n": n}) for n in range(1, 10)]
        assert [d.index for d in c.claim_many(100)] == [i for i in idx if i >= first + 5]


# -- ack_many ------------------------------------------------------------------------------------


def test_ack_many_given_one_delivery_twice_is_refused_and_acks_nothing(tmp_path: Path) -> None:
    with tape.Queue(tmp_path / "q") as q:
        q.appender().write({"x": 1})
        g = q.group("g")
        c = g.consumer()
        d = c.claim()
        assert d is not None
        with pytest.raises(tape.ArgumentError, match="each delivery once"):
            c.ack_many([d, d])
        assert d.outcome is None and [p.index for p in g.pending()] == [d.index]  # nothing acked
        c.ack_many([d])
        assert d.outcome == "acked" and g.pending() == []


def test_ack_many_of_nothing_and_of_a_generator(tmp_path: Path) -> None:
    with tape.Queue(tmp_path / "q") as q:
        q.appender().write_many([{"n": n} for n in range(3)])
        g = q.group("g")
        c = g.consumer()
        c.ack_many([])
        batch = c.claim_many(10)
        c.ack_many(d for d in batch)
        assert [d.outcome for d in batch] == ["acked"] * 3 and g.pending() == []


# -- remove_group --------------------------------------------------------------------------------

HOLDER = """
import sys, time, tape
q = tape.Queue(sys.argv[1])
c = q.group("g").consumer("holder")
print("ready", flush=True)
time.sleep(60)
"""


def test_remove_group_is_refused_while_another_process_consumes_then_allowed_after_kill_9(tmp_path: Path) -> None:
    qpath = tmp_path / "q"
    with tape.Queue(qpath) as q:
        q.group("g")
        p = subprocess.Popen([sys.executable, "-c", HOLDER, str(qpath)], stdout=subprocess.PIPE)
        try:
            assert p.stdout is not None and p.stdout.readline() == b"ready\n"
            with pytest.raises(tape.TapeOSError) as err:
                q.remove_group("g")
            assert "holder" in str(err.value)
            assert q.groups() == ["g"]
        finally:
            p.send_signal(signal.SIGKILL)
            p.wait()
        q.remove_group("g")
        assert q.groups() == []


# -- version 1 group files -----------------------------------------------------------------------


def test_a_version_1_group_file_holding_a_deferred_range_is_marked_version_3(tmp_path: Path) -> None:
    clock = ManualClock()
    with tape.Queue(tmp_path / "q", clock=clock) as q:
        q.group("g").close()
        path = tmp_path / "q" / "groups" / "g.group"
        with open(path, "r+b") as f:  # as version 1 wrote it: 229,376 bytes, without the later list
            f.truncate(V2_SIZE)
            head = bytearray(f.read(84))
            struct.pack_into("<II", head, 8, 1, V2_SIZE)
            struct.pack_into("<I", head, 80, crc32c(bytes(head[:80])))
            f.seek(0)
            f.write(head)
        q.appender().write_many([{"n": n} for n in range(PAST_HALF)], delay=LONG)
        with q.group("g") as g:
            assert g.consumer().claim() is None
        data = path.read_bytes()
        assert struct.unpack_from("<II", data, 8) == (3, len(data)) and len(data) > V2_SIZE


# -- run_worker ----------------------------------------------------------------------------------


def test_run_worker_hands_a_raising_handler_its_entry_again_until_dead(tmp_path: Path) -> None:
    clock = ManualClock()
    with tape.Queue(tmp_path / "q", clock=clock) as q:
        q.appender().write({"x": 1})
        g = q.group("g", max_deliveries=3)

        def boom(d: tape.Delivery) -> None:
            raise ValueError("no")

        run = run_worker(g, boom)
        assert [d.attempt for d in run.nacked] == [1, 2, 3] and len(run.errors) == 3
        assert [dl.attempts for dl in g.dead_letters()] == [3]


# -- keys: the key directory written anew --------------------------------------------------------

WRITER = """
import sys, tape
q = tape.Queue(sys.argv[1])
a = q.appender()
a.write({"v": 1}, key="k")
print("mapped", flush=True)
sys.stdin.readline()
a.write({"v": 2}, key="k")
print("wrote", flush=True)
sys.stdin.readline()
"""


KILLED_IN_A_REWRITE = """
import sys, tape
q = tape.Queue(sys.argv[1])
a = q.appender()
for n in range(1_000_000):  # distinct keys until the directory is written anew: killed there
    a.write(n, key=f"x{n}")
"""


def test_a_writer_killed_while_replacing_the_key_directory_leaves_no_process_apart(tmp_path: Path) -> None:
    """keys.c:write_file marks the old tape.keys moved, then renames the new one over it: killed in
    between (kill point keys_moved), the file under the name is marked moved and is not believed."""
    if not hooks_compiled_in():
        pytest.skip("needs the kill points of a test build")
    qpath = tmp_path / "q"
    with tape.Queue(qpath) as q:
        q.appender().write({"v": 0}, key="k")
    p = subprocess.Popen([sys.executable, "-c", WRITER, str(qpath)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert p.stdout is not None and p.stdin is not None
        assert p.stdout.readline() == b"mapped\n"  # it maps the directory that is about to be replaced
        killed = subprocess.run([sys.executable, "-c", KILLED_IN_A_REWRITE, str(qpath)],
                                env=child_env(kill="keys_moved:1"), timeout=120)
        assert killed.returncode == -signal.SIGKILL
        p.stdin.write(b"\n")
        p.stdin.flush()
        assert p.stdout.readline() == b"wrote\n"
        with tape.Queue(qpath) as q:
            latest = q.latest("k")
            assert latest is not None and latest.value == {"v": 2}
            x5 = q.latest("x5")
            assert x5 is not None and x5.value == 5
            assert q.verify().ok
    finally:
        p.kill()
        p.wait()


def test_latest_read_by_another_process_while_keys_churn_through_rewrites(tmp_path: Path) -> None:
    """Keys that come and go make the directory be written anew many times; a reader in another process
    always finds the one key that stays, at a value it had."""
    qpath = tmp_path / "q"
    reader = """
import sys, tape
q = tape.Queue(sys.argv[1])
print("ready", flush=True)
bad = reads = 0
while q.latest("stop") is None:
    e = q.latest("stay")
    reads += 1
    if e is None or not isinstance(e.value, int):
        bad += 1
print(bad, reads, flush=True)
"""
    with tape.Queue(qpath) as q:
        a = q.appender()
        a.write(0, key="stay")
        p = subprocess.Popen([sys.executable, "-c", reader, str(qpath)], stdout=subprocess.PIPE)
        assert p.stdout is not None and p.stdout.readline() == b"ready\n"
        deadline = time.monotonic() + 8
        n = 0
        while time.monotonic() < deadline and n < 20000:
            a.write(n, key=f"churn{n}")
            a.delete(f"churn{n}")
            if n % 500 == 0:
                a.write(n, key="stay")
            n += 1
        a.write(1, key="stop")
        out, _ = p.communicate(timeout=60)
        bad, reads = out.split()
        assert bad == b"0" and int(reads) > 100
        assert q.latest("stay") is not None


# -- consumer groups: nacked entries not yet due -------------------------------------------------


def test_entries_nacked_for_later_do_not_hold_back_a_new_due_entry(tmp_path: Path) -> None:
    with tape.Queue(tmp_path / "q") as q:
        a = q.appender()
        a.write_many([{"n": n} for n in range(4096)])
        c = q.group("g").consumer()
        held: list[tape.Delivery] = []
        while len(held) < 4096 and (batch := c.claim_many(1024)):
            held += batch
        for d in held:
            d.nack(3600)
        a.write({"new": 1})
        d = c.claim()
        assert d is not None and d.value == {"new": 1}


# -- load_jsonl of keyed dumps -------------------------------------------------------------------


def test_load_jsonl_with_a_not_before_out_of_range_appends_nothing(tmp_path: Path) -> None:
    from tape.testing import load_jsonl

    dump = tmp_path / "dump.jsonl"
    dump.write_text('{"index": 1, "timestamp": "2025-01-01T00:00:00Z", "value": 1, "key": "a"}\n'
                    '{"index": 2, "timestamp": "2025-01-01T00:00:00Z", "value": 2, "not_before": "9999-12-31T23:59:59Z"}\n')
    with tape.Queue(tmp_path / "q") as q:
        with pytest.raises((ValueError, tape.TapeError)):
            load_jsonl(dump, q)
        assert q.last_index is None


def test_load_jsonl_keeps_keys_tombstones_and_not_before(tmp_path: Path) -> None:
    from tape.testing import load_jsonl

    dump = tmp_path / "dump.jsonl"
    dump.write_text('{"index": 1, "timestamp": "2025-01-01T00:00:00Z", "value": 1, "key": "a"}\n'
                    '{"index": 2, "timestamp": "2025-01-01T00:00:00Z", "value": 2, "key": "b", '
                    '"not_before": "2030-01-01T00:00:00Z"}\n'
                    '{"index": 3, "timestamp": "2025-01-01T00:00:00Z", "value": null, "key": "a", "tombstone": true}\n')
    with tape.Queue(tmp_path / "q") as q:
        assert load_jsonl(dump, q) == 3
        assert q.latest("a") is None
        b = q.latest("b")
        assert b is not None and b.value == 2 and b.not_before == 1_893_456_000 * 10**9  # ns


# -- Objects with retention, several processes ---------------------------------------------------

INCREMENTER = """
import os, struct, sys, time
sys.path.insert(0, sys.argv[3])
import tape
from tests.objects_worker import ObjCounter
store, out = sys.argv[1], sys.argv[2]
fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
end = time.monotonic() + 3.5
with tape.Objects(store, alarms=False, roll_cycle="test_secondly", retention={"keep_cycles": 1}) as objects:
    n = 0
    while time.monotonic() < end:
        oid = "o%d" % (n % 5)
        os.write(fd, struct.pack("<qq", n % 5, objects.get(ObjCounter, oid).increment()))
        n += 1
        time.sleep(0.001)  # test_secondly holds 4,096 entries a second
"""


def test_objects_with_retention_lose_no_call_of_two_processes_while_they_purge(tmp_path: Path) -> None:
    store = tmp_path / "store"
    root = str(Path(__file__).resolve().parent.parent)
    tape.Objects(store, alarms=False, roll_cycle="test_secondly", retention={"keep_cycles": 1}).close()
    outs = [tmp_path / f"out{k}" for k in range(2)]
    procs = [subprocess.Popen([sys.executable, "-c", INCREMENTER, str(store), str(out), root]) for out in outs]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    returned: dict[int, list[int]] = {k: [] for k in range(5)}
    for out in outs:
        for oid, value in struct.iter_unpack("<qq", out.read_bytes()):
            returned[oid].append(value)
    from tests.objects_worker import ObjCounter

    with tape.Objects(store, alarms=False, roll_cycle="test_secondly") as objects:
        for oid, values in returned.items():
            assert sorted(values) == list(range(1, len(values) + 1))
            assert objects.get(ObjCounter, f"o{oid}").state() == {"count": len(values)}
    assert len(list((store / "objects").glob("*.tape"))) <= 3  # compacted as it rolled


# -- consumer groups: kill -9 inside a pass with the table 7/8 full ----------------------------

T0 = 1_735_689_600 * 10**9
T1 = T0 + 100 * 10**9
PASS_ROOM = 4096 - 4096 // 8  # group.c: a pass fills the table up to this
PASSER = """
import sys, tape
q = tape.Queue(sys.argv[1], clock=lambda: %d)
q.group("g").consumer("victim").claim()
""" % T1


def test_an_entry_acked_after_a_kill_inside_a_pass_is_not_handed_out_again(tmp_path: Path) -> None:
    qpath = tmp_path / "q"
    with tape.Queue(qpath, clock=lambda: T0) as q:
        a = q.appender()
        g = q.group("g", ack_wait=3600)
        a.write_many([{"held": n} for n in range(PASS_ROOM - 1)])
        holder = g.consumer("holder")  # keeps the table one short of where a pass stands
        held: list[tape.Delivery] = []
        while len(held) < PASS_ROOM - 1 and (batch := holder.claim_many(1024)):
            held += batch
        a.write_many([{"later": n} for n in range(20)], not_before=T1 / 1e9)
        assert holder.claim() is None and g.info()["waiting"] == 0  # all 20 deferred
        env = {**os.environ, "TAPE_KILL": "group_pass:1"}  # killed right after moving the first one
        rc = subprocess.run([sys.executable, "-c", PASSER, str(qpath)], env=env).returncode
        if rc == 0:
            pytest.skip("the extension was built without TAPE_TESTING (no kill points)")
        assert rc == -signal.SIGKILL
        with tape.Queue(qpath, clock=lambda: T1) as q1:
            c = q1.group("g").consumer("after")
            got: list[int] = []
            while batch := c.claim_many(1024):
                got += [d.index for d in batch]
                c.ack_many(batch)
            assert sorted(got) == sorted(set(got)) and len(got) == 20
