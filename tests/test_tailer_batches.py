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
