"""Tailer batches (tape_peek_many + tape_tailer_advance): named and anonymous
tailers mixing every way of reading and moving, mid-batch; what a named
tailer stores is exactly after the last value handed out."""

from __future__ import annotations

import itertools
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import tape


def _stored(q: tape.Queue, name: str) -> int:
    first = q.first_index
    assert first is not None
    stored: int = q.describe()["named_tailers"][name]
    return stored - first


def test_read_between_values_of_an_iteration_keeps_the_stored_position_exact(queue: tape.Queue) -> None:
    queue.appender().write_many(list(range(20)))
    t = queue.tailer("n")
    it = iter(t)
    assert next(it) == 0
    assert _stored(queue, "n") == 1
    assert t.read() == 1
    assert _stored(queue, "n") == 2
    assert next(it) == 2
    assert _stored(queue, "n") == 3
    assert t.read_entry() is not None  # 3, in another batch
    assert next(it) == 4
    assert _stored(queue, "n") == 5
    assert t.read() == 5
    assert next(it) == 6
    assert _stored(queue, "n") == 7
    t.close()
    assert queue.tailer("n").read() == 7


def _reading(t: tape.Tailer, first: int) -> None:
    """Every way of reading and moving, mid-batch."""
    assert t.read() == 0
    it = iter(t)
    assert next(it) == 1
    assert t.read() == 2
    t.index, t.last_read_index  # noqa: B018
    assert next(it) == 3
    assert t.read_entry() is not None
    for v in t:
        if v == 50:
            break
    t.to_index(first + 10)
    assert [e.value for e in itertools.islice(t.entries(), 3)] == [10, 11, 12]
    t.direction = "backward"
    assert next(iter(t)) == 13
    t.to_end()
    assert t.read() == 99


@pytest.mark.parametrize("closing", ["tailer", "queue"])
@pytest.mark.parametrize("name", [None, "n"])
def test_a_tailer_closed_at_any_step_of_a_read_raises_queue_closed(
    qpath: Path, name: str | None, closing: str
) -> None:
    # Another thread may close a tailer between any two steps of the reading
    # thread: close it at each step in turn (a trace function runs close()
    # at the Nth line executed in tape/tailer.py, where a thread switch
    # could run it); what the reader sees is QueueClosedError, nothing else.
    with tape.Queue(qpath) as queue:
        queue.appender().write_many(list(range(100)))
        first = queue.first_index
    assert first is not None
    steps = 0
    while True:
        queue = tape.Queue(qpath)
        t = queue.tailer(name)
        close = t.close if closing == "tailer" else queue.close
        t.to_start()
        countdown = [steps]

        def trace(frame: Any, event: str, arg: Any) -> Any:
            if frame.f_code.co_filename != tape.tailer.__file__:
                return None
            if event == "line":
                countdown[0] -= 1
                if countdown[0] == 0:
                    close()
            return trace

        sys.settrace(trace)
        try:
            _reading(t, first)
        except tape.QueueClosedError:
            pass
        finally:
            sys.settrace(None)
        if countdown[0] > 0:  # the reading ended before the step came: all were tried
            break
        queue.close()
        steps += 1
    assert steps > 100


_NO_FILES_LEFT = textwrap.dedent(
    """
    import os, sys, tape, tape.testing
    path, name, how, before = sys.argv[1], sys.argv[2] or None, sys.argv[3], int(sys.argv[4])
    clock = tape.testing.ManualClock()
    q = tape.Queue(path, roll_cycle="test_secondly", clock=clock)
    for c in range(3):  # a batch over three cycle files: moving into the middle one reopens it
        q.appender().write_many([3 * c, 3 * c + 1, 3 * c + 2])
        clock.advance(1)
    t = q.tailer(name)
    it = iter(t)
    got = [next(it) for _ in range(before)]  # the batch holds all nine
    fds = []
    try:
        while True:
            fds.append(os.open(os.devnull, os.O_RDONLY))
    except OSError:
        pass
    for _ in range(3):
        try:
            got.append(next(it) if how == "iter" else t.read() if how == "read" else t.read_entry().value)
        except tape.TapeError as exc:
            got.append(type(exc).__name__)
            it = iter(t)
    for fd in fds:
        os.close(fd)
    read = {"iter": lambda: next(it, None), "read": t.read, "read_entry": lambda: getattr(t.read_entry(), "value", None)}[how]
    got += [read() for _ in range(6)]
    t.close()
    got.append(q.tailer(name).read() if name else None)
    print(got)
    """
)


@pytest.mark.parametrize(
    ("name", "how", "before"), [("n", "iter", 3), ("n", "read", 3), ("", "read_entry", 4)]
)
def test_a_move_that_fails_loses_no_value_and_repeats_none(qpath: Path, name: str, how: str, before: int) -> None:
    # With no file descriptor left, moving past a value into a cycle file
    # that must be reopened fails; once there are, reading goes on with
    # that same value: none skipped (a named tailer used to lose one per
    # failed attempt), none handed out twice (an anonymous one went back to
    # the start of its batch).
    run = subprocess.run(
        [sys.executable, "-c", _NO_FILES_LEFT, str(qpath), name, how, str(before)], capture_output=True, text=True, check=True
    )
    got = eval(run.stdout)  # noqa: S307 - a list of ints and names printed by the script
    errors = [g for g in got[before:] if isinstance(g, str)]
    values = [g for g in got if not isinstance(g, str)]
    assert errors, "the move never failed: the test needs it to"
    assert values == list(range(9)) + [None] * (len(values) - 9)


def test_entries_larger_than_the_batch_buffer_are_handed_out_in_order(raw_queue: tape.Queue) -> None:
    # Larger than the 1 MiB batch buffer: peeked alone, in a buffer of their own.
    values = [b"a", b"x" * (2 << 20), b"b", b"y" * (3 << 20), b"c"]
    indexes = [raw_queue.appender().write(v) for v in values]
    named = raw_queue.tailer("big")
    for value, index in zip(values, indexes):
        entry = named.read_entry()
        assert entry is not None and (entry.index, entry.value) == (index, value)
        assert named.last_read_index == index
    assert named.read_entry() is None
    t = raw_queue.tailer()
    assert list(t) == values
    n = raw_queue.tailer("big2")
    for k, value in enumerate(n):
        assert value == values[k]
        assert raw_queue.describe()["named_tailers"]["big2"] == indexes[k] + 1
    back = raw_queue.tailer()
    back.direction = "backward"
    back.to_end()
    assert list(back) == values[::-1]
