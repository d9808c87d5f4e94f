"""Closing: idempotent, children first, and every later call raises QueueClosedError."""

from __future__ import annotations

import gc
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

import tape


def test_close_is_idempotent(qpath: Path) -> None:
    q = tape.Queue(qpath)
    q.close()
    q.close()


def test_queue_is_a_context_manager_that_closes(qpath: Path) -> None:
    with tape.Queue(qpath) as q:
        pass
    with pytest.raises(tape.QueueClosedError):
        q.count()
    with pytest.raises(tape.QueueClosedError):
        with q:
            pass


QUEUE_CALLS: dict[str, Callable[[tape.Queue], Any]] = {
    "appender": lambda q: q.appender(),
    "tailer": lambda q: q.tailer(),
    "first_index": lambda q: q.first_index,
    "last_index": lambda q: q.last_index,
    "count": lambda q: q.count(),
    "cycles": lambda q: q.cycles(),
    "describe": lambda q: q.describe(),
    "split_index": lambda q: tape.split_index(q, 0),
    "make_index": lambda q: tape.make_index(q, 0, 0),
}

APPENDER_CALLS: dict[str, Callable[[tape.Appender], Any]] = {
    "write": lambda a: a.write(1),
    "write_many": lambda a: a.write_many([1, 2]),
    "last_index": lambda a: a.last_index,
    "sync": lambda a: a.sync(),
    "with": lambda a: a.__enter__(),
}

TAILER_CALLS: dict[str, Callable[[tape.Tailer], Any]] = {
    "read": lambda t: t.read(),
    "read with timeout": lambda t: t.read(timeout=0.01),
    "read_entry": lambda t: t.read_entry(),
    "iterate": lambda t: list(t),
    "entries": lambda t: list(t.entries()),
    "index": lambda t: t.index,
    "last_read_index": lambda t: t.last_read_index,
    "to_index": lambda t: t.to_index(0),
    "to_start": lambda t: t.to_start(),
    "to_end": lambda t: t.to_end(),
    "to_time": lambda t: t.to_time(datetime.now()),
    "direction": lambda t: t.direction,
    "set direction": lambda t: setattr(t, "direction", "backward"),
    "with": lambda t: t.__enter__(),
}


@pytest.mark.parametrize("call", QUEUE_CALLS.values(), ids=QUEUE_CALLS.keys())
def test_every_queue_call_after_close_raises_queue_closed(qpath: Path, call: Callable[[tape.Queue], Any]) -> None:
    q = tape.Queue(qpath)
    q.appender().write(1)
    q.close()
    with pytest.raises(tape.QueueClosedError):
        call(q)
    with pytest.raises(ValueError):
        call(q)


@pytest.mark.parametrize("call", APPENDER_CALLS.values(), ids=APPENDER_CALLS.keys())
@pytest.mark.parametrize("closing", ["queue", "appender"])
def test_every_appender_call_after_close_raises_queue_closed(
    qpath: Path, call: Callable[[tape.Appender], Any], closing: str
) -> None:
    q = tape.Queue(qpath)
    a = q.appender()
    a.write(0)
    (q if closing == "queue" else a).close()
    with pytest.raises(tape.QueueClosedError):
        call(a)
    q.close()


@pytest.mark.parametrize("call", TAILER_CALLS.values(), ids=TAILER_CALLS.keys())
@pytest.mark.parametrize("closing", ["queue", "tailer"])
def test_every_tailer_call_after_close_raises_queue_closed(
    qpath: Path, call: Callable[[tape.Tailer], Any], closing: str
) -> None:
    q = tape.Queue(qpath)
    q.appender().write_many(range(10))
    t = q.tailer()
    assert t.read() == 0  # a batch is in flight
    (q if closing == "queue" else t).close()
    with pytest.raises(tape.QueueClosedError):
        call(t)
    q.close()


def test_follow_on_a_closed_tailer_just_stops(qpath: Path) -> None:
    q = tape.Queue(qpath)
    t = q.tailer()
    q.close()
    assert list(t.follow()) == []


def test_children_close_and_queue_stays_usable(queue: tape.Queue) -> None:
    a = queue.appender()
    t = queue.tailer()
    a.write("x")
    a.close()
    t.close()
    a.close()
    t.close()
    assert list(queue.tailer()) == ["x"]


def test_dropped_tailers_and_appenders_are_freed(queue: tape.Queue) -> None:
    for k in range(200):
        queue.appender().write(k)
        assert queue.tailer().read() == 0
    gc.collect()
    assert queue._native is not None and not queue._native._children


def test_children_in_a_reference_cycle_with_their_queue_are_freed_safely(qpath: Path) -> None:
    class Holder:
        pass

    h = Holder()
    h.q = tape.Queue(qpath)  # type: ignore[attr-defined]
    h.t = h.q.tailer()  # type: ignore[attr-defined]
    h.a = h.q.appender()  # type: ignore[attr-defined]
    h.a.write(1)  # type: ignore[attr-defined]
    h.self = h  # type: ignore[attr-defined]
    del h
    gc.collect()
    with tape.Queue(qpath) as q:
        assert list(q.tailer()) == [1]


@pytest.mark.parametrize("closing", ["queue", "tailer"])
def test_values_read_ahead_are_not_handed_out_after_close(qpath: Path, closing: str) -> None:
    q = tape.Queue(qpath)
    q.appender().write_many(range(100))
    t = q.tailer()
    for value in t:
        if value == 10:
            break
    (q if closing == "queue" else t).close()
    with pytest.raises(tape.QueueClosedError):
        t.read()
    q.close()


def test_an_appender_or_tailer_in_use_keeps_its_queue_open(qpath: Path) -> None:
    a = tape.Queue(qpath).appender()  # the queue has no other reference
    gc.collect()
    a.write("x")
    t = tape.Queue(qpath).tailer()
    gc.collect()
    assert t.read() == "x"
