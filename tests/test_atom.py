"""Durable atoms (tape.DurableAtom): snapshots in a queue, on real files, across real processes."""

from __future__ import annotations

import logging
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
from tape.atom import AtomCommitError, AtomConflictError, AtomValidationError

T0_NS = 1_763_683_200 * 10**9


def inc(n: int, by: int = 1) -> int:
    return n + by


# A child process: opens the atom at argv[1], says "r", waits for a line on
# stdin, then swaps argv[2] times, writing "." to stdout after each swap
# returned and "f" each time fn runs; argv[3] is the size of the padding each
# value carries, argv[4] how long fn sleeps.
CHILD = r"""
import os, sys, time, tape
path, n, pad, pause = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])

def step(v):
    os.write(1, b"f")
    time.sleep(pause)
    k = v["n"] + 1
    return {"n": k, "pad": str(k) * (pad // len(str(k)))}

with tape.DurableAtom(path, initial={"n": 0, "pad": ""}) as a:
    os.write(1, b"r")
    sys.stdin.readline()
    for _ in range(n):
        a.swap(step)
        os.write(1, b".")
"""


def start_swappers(
    path: Path, count: int, swaps: int, pad: int = 0, pause: float = 0
) -> list[subprocess.Popen[bytes]]:
    """`count` child processes, each about to make `swaps` swaps on the atom at `path`, released together."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, str(path), str(swaps), str(pad), str(pause)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        for _ in range(count)
    ]
    for p in procs:
        assert p.stdout is not None and p.stdout.read(1) == b"r"
    for p in procs:
        assert p.stdin is not None
        p.stdin.write(b"go\n")
        p.stdin.flush()
    return procs


def output(p: subprocess.Popen[bytes]) -> bytes:
    """What the child writes to stdout from now until it ends."""
    assert p.stdout is not None
    return p.stdout.read()


def acks(p: subprocess.Popen[bytes]) -> int:
    """How many swaps the child reports from now until it ends."""
    return output(p).count(b".")


def check_snapshot(value: dict[str, Any], pad: int) -> None:
    """A snapshot the CHILD wrote, whole: its padding matches its count."""
    k = value["n"]
    assert value["pad"] == ("" if k == 0 else str(k) * (pad // len(str(k))))


# ---- the basics ---------------------------------------------------------------------------


def test_spec_example(qpath: Path) -> None:
    with tape.DurableAtom(qpath, initial={"n": 0}) as a:
        a.swap(lambda s: {**s, "n": s["n"] + 1})
        assert a.value == {"n": 1}


def test_reopened_in_a_new_process_the_value_is_there(qpath: Path) -> None:
    with tape.DurableAtom(qpath, initial={"n": 0}) as a:
        a.swap(lambda s: {"n": s["n"] + 41})
    script = "import sys, tape\nwith tape.DurableAtom(sys.argv[1]) as a: print(a.value)"
    done = subprocess.run([sys.executable, "-c", script, str(qpath)], capture_output=True, text=True)
    assert (done.returncode, done.stdout, done.stderr) == (0, "{'n': 41}\n", "")


def test_the_stored_value_wins_over_initial_and_initial_is_not_written_again(qpath: Path) -> None:
    with tape.DurableAtom(qpath, initial=1) as a:
        a.reset(2)
    with tape.DurableAtom(qpath, initial=100) as a:
        assert a.value == 2
        assert [e.value for e in a.history()] == [1, 2]


def test_a_callable_initial_is_called_only_when_nothing_is_stored(qpath: Path) -> None:
    calls = []

    def make() -> dict[str, int]:
        calls.append(1)
        return {"n": 0}

    with tape.DurableAtom(qpath, initial=make) as a:
        assert a.value == {"n": 0}
    with tape.DurableAtom(qpath, initial=make) as a:
        assert a.value == {"n": 0}
    assert calls == [1]


def test_without_initial_the_value_is_none_and_nothing_is_written(qpath: Path) -> None:
    with tape.DurableAtom(qpath) as a:
        assert a.value is None
        assert a.deref() is None
        assert a.history() == []
        assert a.compare_and_set(None, 5)
        assert a.value == 5


def test_swap_passes_arguments_and_returns_the_new_value(qpath: Path) -> None:
    with tape.DurableAtom(qpath, initial=10) as a:
        assert a.swap(inc) == 11
        assert a.swap(inc, 5) == 16
        assert a.swap(inc, by=4) == 20
        assert a.swap(lambda v, fn: fn(v), fn=inc) == 21  # "fn" is free for fn's own keywords
        assert a.value == 21


def test_swap_vals_and_reset_vals_return_old_and_new(qpath: Path) -> None:
    with tape.DurableAtom(qpath, initial=1) as a:
        assert a.swap_vals(inc) == (1, 2)
        assert a.reset_vals(7) == (2, 7)
        assert a.reset(8) == 8
        assert a.value == 8


def test_compare_and_set_sets_only_when_the_value_equals_old(qpath: Path) -> None:
    with tape.DurableAtom(qpath, initial={"v": 1}) as a:
        assert not a.compare_and_set({"v": 2}, {"v": 3})
        assert a.value == {"v": 1}
        assert a.compare_and_set({"v": 1}, {"v": 3})  # equal, not identical
        assert a.value == {"v": 3}
        assert [e.value for e in a.history()] == [{"v": 1}, {"v": 3}]


def test_the_value_is_what_the_codec_gives_back(qpath: Path) -> None:
    with tape.DurableAtom(qpath, initial=(1, 2)) as a:  # msgpack stores a tuple as a list
        assert a.value == [1, 2]
        assert a.swap(lambda v: (*v, 3)) == [1, 2, 3]


def test_another_codec_is_stored_and_adopted_on_reopening(qpath: Path) -> None:
    with tape.DurableAtom(qpath, initial=b"\x00", codec="raw") as a:
        a.swap(lambda b: b + b"\x01")
    with tape.DurableAtom(qpath) as a:
        assert a.value == b"\x00\x01"
    with pytest.raises(tape.IncompatibleQueueError):
        tape.DurableAtom(qpath, codec="msgpack")


def test_an_avro_atom_keeps_its_schema_in_the_queue(qpath: Path) -> None:
    schema = {"type": "record", "name": "Counter", "fields": [{"name": "n", "type": "long"}]}
    with tape.DurableAtom(qpath, initial={"n": 0}, codec="avro", schema=schema) as a:
        a.swap(lambda v: {"n": v["n"] + 1})
        with pytest.raises(TypeError):
            a.reset({"n": "one"})
    with tape.DurableAtom(qpath) as a:
        assert a.value == {"n": 1}


def test_history_lists_every_snapshot_in_order(qpath: Path) -> None:
    with tape.DurableAtom(qpath, initial=0) as a:
        for _ in range(5):
            a.swap(inc)
        a.reset(100)
        history = a.history()
    assert [e.value for e in history] == [0, 1, 2, 3, 4, 5, 100]
    assert [e.index for e in history] == sorted(e.index for e in history)
    assert [e.timestamp for e in history] == sorted(e.timestamp for e in history)
    assert all(isinstance(e, tape.Entry) for e in history)


def test_the_value_follows_changes_of_other_processes(qpath: Path) -> None:
    with tape.DurableAtom(qpath, initial=0) as a, tape.DurableAtom(qpath) as b:
        assert b.value == 0
        a.reset(1)
        assert b.value == 1
        procs = start_swappers(qpath, 1, 0)  # opens the atom, which now exists: writes nothing
        assert acks(procs[0]) == 0 and procs[0].wait() == 0
        script = "import sys, tape\nwith tape.DurableAtom(sys.argv[1]) as a: a.swap(lambda v: v + 10)"
        subprocess.run([sys.executable, "-c", script, str(qpath)], check=True)
        assert a.value == b.value == 11
        assert b.swap(inc) == 12 and a.value == 12


def test_the_value_jumps_over_a_long_run_of_newer_snapshots(qpath: Path) -> None:
    with tape.DurableAtom(qpath, initial=0) as a, tape.DurableAtom(qpath) as b:
        assert b.value == 0
        for _ in range(1000):
            a.swap(inc)
        assert b.value == 1000
        assert b.swap(inc) == 1001


# ---- validators, watches, bad input -------------------------------------------------------


def test_a_validator_rejects_a_change_and_nothing_is_written(qpath: Path) -> None:
    def positive(v: int) -> bool:
        if v == 99:
            raise RuntimeError("not 99")
        return v > 0

    with tape.DurableAtom(qpath, initial=1, validator=positive) as a:
        with pytest.raises(AtomValidationError, match="rejected -1"):
            a.reset(-1)
        with pytest.raises(AtomValidationError) as info:
            a.swap(lambda v: 99)
        assert isinstance(info.value.__cause__, RuntimeError)
        assert isinstance(info.value, ValueError) and isinstance(info.value, tape.TapeError)
        with pytest.raises(AtomValidationError):
            a.compare_and_set(1, 0)
        assert a.value == 1
        assert a.swap(inc) == 2
        assert [e.value for e in a.history()] == [1, 2]


def test_a_validator_checks_initial(qpath: Path) -> None:
    with pytest.raises(AtomValidationError):
        tape.DurableAtom(qpath, initial=-1, validator=lambda v: v > 0)
    with tape.DurableAtom(qpath) as a:
        assert a.history() == []


def test_a_value_the_codec_cannot_encode_raises_type_error_and_changes_nothing(qpath: Path) -> None:
    for commit in ("sync", "async"):
        with tape.DurableAtom(qpath, initial={"n": 1}, commit=commit) as a:
            with pytest.raises(TypeError) as info:
                a.reset({"n": object()})
            assert isinstance(info.value, tape.EncodeError)
            with pytest.raises(TypeError):
                a.swap(lambda v: {"n": {1, 2}})
            assert a.value == {"n": 1}
        with tape.DurableAtom(qpath) as a:
            assert [e.value for e in a.history()] == [{"n": 1}]


def test_an_exception_in_fn_propagates_and_changes_nothing(qpath: Path) -> None:
    with tape.DurableAtom(qpath, initial=1) as a:
        with pytest.raises(ZeroDivisionError):
            a.swap(lambda v: v / 0)
        assert a.value == 1 and len(a.history()) == 1


def test_watches_are_called_with_old_and_new_until_removed(qpath: Path) -> None:
    seen: list[tuple[Any, ...]] = []
    with tape.DurableAtom(qpath, initial=0) as a:
        a.add_watch("w", lambda key, atom, old, new: seen.append((key, atom is a, old, new)))
        a.swap(inc)
        a.reset(10)
        assert a.compare_and_set(10, 11)
        assert not a.compare_and_set(10, 12)
        a.remove_watch("w")
        a.remove_watch("w")  # no watch of that key: nothing happens
        a.swap(inc)
    assert seen == [("w", True, 0, 1), ("w", True, 1, 10), ("w", True, 10, 11)]


def test_a_failing_watch_is_logged_and_the_change_stays(qpath: Path, caplog: pytest.LogCaptureFixture) -> None:
    later: list[int] = []

    def broken(key: Any, atom: Any, old: Any, new: Any) -> None:
        raise RuntimeError("watch broke")

    with tape.DurableAtom(qpath, initial=0) as a:
        a.add_watch(1, broken)
        a.add_watch(2, lambda key, atom, old, new: later.append(new))
        with caplog.at_level(logging.ERROR, logger="tape.atom"):
            assert a.swap(inc) == 1
        assert a.value == 1 and later == [1]
    assert "watch 1 failed" in caplog.text and "watch broke" in caplog.text


# ---- commit="async" ---------------------------------------------------------------------


def test_async_swaps_are_all_committed_by_close(qpath: Path) -> None:
    with tape.DurableAtom(qpath, initial=0, commit="async") as a:
        for _ in range(100_000):
            a.swap(inc)
        assert a.value == 100_000
    with tape.DurableAtom(qpath) as a:
        assert a.value == 100_000
        assert len(a.history()) == 100_001


def test_async_commits_with_sync_always_keep_every_snapshot(qpath: Path) -> None:
    with tape.DurableAtom(qpath, initial=0, commit="async", sync="always") as a:
        for _ in range(300):
            a.swap(inc)
        a.flush()
        assert [e.value for e in a.history()] == list(range(301))


def test_async_watches_run_after_the_commit_in_order(qpath: Path) -> None:
    seen: list[tuple[int, int, bool]] = []

    def watch(key: Any, atom: tape.DurableAtom, old: int, new: int) -> None:
        seen.append((old, new, new in [e.value for e in atom.history()]))

    with tape.DurableAtom(qpath, initial=0, commit="async") as a:
        a.add_watch("w", watch)
        for _ in range(50):
            a.swap(inc)
        a.flush()  # returns once the watches of the commits have run
        assert seen == [(k, k + 1, True) for k in range(50)]


def held_async_atom(qpath: Path, **options: Any) -> tuple[tape.DurableAtom, threading.Event]:
    """An async atom whose committer is stopped, after committing 1, until the event is set."""
    gate, entered = threading.Event(), threading.Event()

    def hold(key: Any, atom: Any, old: Any, new: Any) -> None:
        if new == 1:
            entered.set()
            gate.wait(10)

    a = tape.DurableAtom(qpath, initial=0, commit="async", **options)
    a.add_watch("hold", hold)
    a.swap(inc)
    assert entered.wait(10)
    a.remove_watch("hold")
    return a, gate


def test_an_async_commit_failure_reaches_the_error_handler_and_recommit_succeeds(qpath: Path) -> None:
    failures: list[Exception] = []

    def handler(exc: Exception, recommit: Any) -> None:
        failures.append(exc)
        recommit()

    a, gate = held_async_atom(qpath, error_handler=handler)
    with a:
        assert a.swap(inc) == 2  # pending behind the held commit
        with tape.DurableAtom(qpath) as other:
            other.reset(100)  # appended after snapshot 1, which the change to 2 was based on
        gate.set()
        a.flush()
        assert len(failures) == 1 and isinstance(failures[0], AtomConflictError)
        assert a.value == 2
    with tape.DurableAtom(qpath) as a:
        assert [e.value for e in a.history()] == [0, 1, 100, 2]


def test_an_async_failure_without_handler_is_raised_at_the_next_call(qpath: Path) -> None:
    a, gate = held_async_atom(qpath)
    with a:
        a.swap(inc)
        a.swap(inc)
        with tape.DurableAtom(qpath) as other:
            other.reset(100)
        gate.set()
        with pytest.raises(AtomCommitError, match="2 change") as info:
            a.flush()
        assert isinstance(info.value.__cause__, AtomConflictError)
        assert a.value == 100  # back to the newest stored snapshot
        assert a.swap(inc) == 101
    with tape.DurableAtom(qpath) as a:
        assert [e.value for e in a.history()] == [0, 1, 100, 101]


def test_close_raises_when_changes_wait_for_a_recommit_that_never_came(qpath: Path) -> None:
    a, gate = held_async_atom(qpath, error_handler=lambda exc, recommit: None)
    a.swap(inc)
    with tape.DurableAtom(qpath) as other:
        other.reset(100)
    gate.set()
    with pytest.raises(AtomCommitError, match="1 change"):
        a.flush()
    with pytest.raises(AtomCommitError, match="1 change"):
        a.close()
    a.close()  # closed now


def test_error_handler_needs_async_commit(qpath: Path) -> None:
    with pytest.raises(tape.ArgumentError):
        tape.DurableAtom(qpath, error_handler=lambda exc, recommit: None)
    with pytest.raises(tape.ArgumentError):
        tape.DurableAtom(qpath, commit="later")


# ---- life ------------------------------------------------------------------------------------


def test_a_closed_atom_refuses_every_call(qpath: Path) -> None:
    a = tape.DurableAtom(qpath, initial=0)
    a.close()
    a.close()
    for call in (lambda: a.value, lambda: a.swap(inc), lambda: a.reset(1), a.history, a.flush):
        with pytest.raises(tape.QueueClosedError, match="closed"):
            call()


def test_destroy_deletes_the_storage_and_the_atom_refuses_changes(qpath: Path) -> None:
    a = tape.DurableAtom(qpath, initial=0, commit="async")
    a.swap(inc)
    a.destroy()
    assert not qpath.exists()
    with pytest.raises(tape.QueueClosedError, match="destroyed"):
        a.swap(inc)
    a.destroy()
    with tape.DurableAtom(qpath, initial=5) as b:
        assert b.value == 5


def test_a_read_only_atom_reads_and_refuses_changes(qpath: Path) -> None:
    with tape.DurableAtom(qpath, initial=3) as a, tape.DurableAtom(qpath, read_only=True) as r:
        assert r.value == 3
        with pytest.raises(tape.ReadOnlyError):
            r.swap(inc)
        a.swap(inc)
        assert r.value == 4


def test_retention_keeps_a_few_cycles_and_never_the_newest_snapshot_goes(qpath: Path) -> None:
    now = [T0_NS]
    options: dict[str, Any] = {"roll_cycle": "test_secondly", "clock": lambda: now[0]}
    with tape.DurableAtom(qpath, initial=0, **options) as a:
        for _ in range(10):
            now[0] += 10**9
            a.swap(inc)
        assert [e.value for e in a.history()] == [8, 9, 10]  # the default keeps 3 cycle files
    now[0] += 3600 * 10**9
    with tape.Queue(qpath) as q:
        q.purge(older_than=0)
    with tape.DurableAtom(qpath, initial=0, **options) as a:
        assert a.value == 10


def test_threads_sharing_an_atom_lose_no_update(qpath: Path) -> None:
    with tape.DurableAtom(qpath, initial=0) as a:
        threads = [threading.Thread(target=lambda: [a.swap(inc) for _ in range(2000)]) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert a.value == 8000


def test_a_swap_that_conflicts_calls_fn_again_on_the_newer_value(qpath: Path) -> None:
    seen: list[int] = []

    def record(v: int) -> int:
        seen.append(v)
        return v + 1

    with tape.DurableAtom(qpath, initial=0) as a, tape.DurableAtom(qpath) as b:
        assert b.value == 0
        a.reset(10)  # b has not read it: its first try is based on 0
        assert b.swap(record) == 11
        assert seen == [0, 10]
        assert [e.value for e in b.history()] == [0, 10, 11]


def test_atoms_of_one_path_in_many_threads_lose_no_update(qpath: Path) -> None:
    calls = [0]

    def slow_inc(v: int) -> int:
        calls[0] += 1
        time.sleep(0)  # let another thread in between the read and the append
        return v + 1

    def work() -> None:
        with tape.DurableAtom(qpath, initial=0) as a:
            for _ in range(500):
                a.swap(slow_inc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with tape.DurableAtom(qpath) as a:
        assert a.value == 2000
    assert calls[0] > 2000  # there were conflicts, and retries


# ---- processes ----------------------------------------------------------------------------


def test_two_processes_swapping_10000_times_each_lose_no_update(qpath: Path) -> None:
    procs = start_swappers(qpath, 2, 10_000)
    assert [acks(p) for p in procs] == [10_000, 10_000]
    assert [p.wait() for p in procs] == [0, 0]
    with tape.DurableAtom(qpath) as a:
        assert a.value["n"] == 20_000
        assert [e.value["n"] for e in a.history()] == list(range(20_001))


def test_four_processes_with_a_slow_fn_retry_and_lose_no_update(qpath: Path) -> None:
    procs = start_swappers(qpath, 4, 500, pause=0.0002)
    outs = [output(p) for p in procs]
    assert [p.wait() for p in procs] == [0] * 4
    assert [o.count(b".") for o in outs] == [500] * 4
    assert sum(o.count(b"f") for o in outs) > 2000  # conflicts happened: fn ran again
    with tape.DurableAtom(qpath) as a:
        assert a.value["n"] == 2000


def test_four_processes_one_killed_part_way_lose_no_acknowledged_swap(qpath: Path) -> None:
    pad = 3000
    procs = start_swappers(qpath, 4, 2000, pad)
    victim = procs[0]
    assert victim.stdout is not None
    got = 0
    while got < 300:
        got += os.read(victim.stdout.fileno(), 4096).count(b".")
    victim.send_signal(signal.SIGKILL)
    got += acks(victim)
    assert victim.wait() == -signal.SIGKILL
    assert [acks(p) for p in procs[1:]] == [2000] * 3
    assert [p.wait() for p in procs[1:]] == [0] * 3
    with tape.DurableAtom(qpath) as a:
        # the victim may have appended a snapshot and died before its swap returned
        assert a.value["n"] - 6000 in (got, got + 1)
        check_snapshot(a.value, pad)
        assert [e.value["n"] for e in a.history()] == list(range(a.value["n"] + 1))
        assert a.swap(lambda v: {"n": v["n"] + 1, "pad": ""})["n"] == a.history()[-1].value["n"]
    with tape.Queue(qpath) as q:
        assert q.verify().ok


@pytest.mark.parametrize("delay", [0.05, 0.15, 0.3])
def test_a_process_killed_while_swapping_leaves_the_last_committed_snapshot(qpath: Path, delay: float) -> None:
    pad = 200_000  # large snapshots: a kill lands in the middle of writing one
    [p] = start_swappers(qpath, 1, 1_000_000, pad)
    assert p.stdout is not None
    got = os.read(p.stdout.fileno(), 4096).count(b".")  # swapping has begun
    time.sleep(delay)
    p.send_signal(signal.SIGKILL)
    got += acks(p)
    p.wait()
    with tape.DurableAtom(qpath) as a:
        assert a.value["n"] in (got, got + 1)
        check_snapshot(a.value, pad)
        a.swap(lambda v: {"n": v["n"] + 1, "pad": ""})
    with tape.Queue(qpath) as q:
        report = q.verify()
        assert report.ok, report.message
