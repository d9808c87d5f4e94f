"""Reading a window of a queue: the entries between two indexes and two times, forward or backward.

A tailer is placed at the window's first entry in its direction (place), then
reads on while entries are inside (in_window). Where the window holds no time
bound, runs_ahead says beforehand which entries it holds, a run per cycle,
so that they can be counted or shared out among processes. Index arithmetic
goes through the roll cycle: tape.split_index and tape.make_index.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import NamedTuple

import tape
from tape._native import INDEX_MAX
from tape._time import to_datetime

__all__ = ["INT64_MAX", "Window", "Run", "place", "in_window", "runs_ahead", "entries_from"]

INT64_MAX = INDEX_MAX  # the largest index, and the largest timestamp (ns)


class Window(NamedTuple):
    """Inclusive bounds on index and timestamp (ns); the default holds every entry."""

    lo_index: int = 0
    hi_index: int = INT64_MAX
    lo_ns: int = 0
    hi_ns: int = INT64_MAX


class Run(NamedTuple):
    """`length` entries of `cycle`, the first at sequence number `seq`: a window's part of one cycle."""

    cycle: int
    seq: int
    length: int


def _spans(cycles: list[tape.CycleInfo]) -> list[tuple[tape.CycleInfo, int, int]]:
    """Each cycle holding entries, with the indexes of its first and last."""
    return [(c, c.first_index, c.last_index) for c in cycles if c.first_index is not None and c.last_index is not None]


def _first_at_or_after(cycles: list[tape.CycleInfo], index: int) -> int | None:
    """Index of the first entry at or after `index`."""
    return next((max(index, first) for _, first, last in _spans(cycles) if last >= index), None)


def _last_at_or_before(cycles: list[tape.CycleInfo], index: int) -> int | None:
    """Index of the last entry at or before `index`."""
    return next((min(index, last) for _, first, last in reversed(_spans(cycles)) if first <= index), None)


def place(q: tape.Queue, t: tape.Tailer, w: Window, backward: bool) -> bool:
    """Move `t` to the first entry of `w` in its direction (backward: it reads backward); False when `w` is empty.

    Times go through to_time(), which takes microseconds: the tailer may land a
    few entries outside the window, which in_window then skips. Cycles are
    listed only for an index bound (Queue.cycles() fails on a damaged cycle).
    """
    if not backward:
        start = None
        if w.lo_index > 0:
            start = _first_at_or_after(q.cycles(), w.lo_index)
            if start is None:
                return False
        if w.lo_ns > 0:
            if not t.to_time(to_datetime(w.lo_ns)) or t.index is None:
                return False
            start = t.index if start is None else max(start, t.index)
        return start is None or t.to_index(start)
    t.direction = "backward"
    end = None
    if w.hi_index < INT64_MAX:
        end = _last_at_or_before(q.cycles(), w.hi_index)
        if end is None:
            return False
    # Reading starts at the first entry after the window's end in time, if any.
    if w.hi_ns < INT64_MAX and t.to_time(to_datetime(w.hi_ns) + timedelta(microseconds=1)) and t.index is not None:
        end = t.index if end is None else min(end, t.index)
    if end is None:
        t.to_end()
        return True
    return t.to_index(end)


def in_window(t: tape.Tailer, w: Window, backward: bool) -> Iterator[tape.Entry]:
    """The entries `t` reads inside `w`, until the first beyond it (indexes and times only grow)."""
    if w == Window():
        yield from t.entries()
        return
    for e in t.entries():
        before = e.index < w.lo_index or e.timestamp < w.lo_ns
        after = e.index > w.hi_index or e.timestamp > w.hi_ns
        if after if backward else before:
            continue
        if before if backward else after:
            return
        yield e


def runs_ahead(q: tape.Queue, t: tape.Tailer, w: Window, backward: bool) -> list[Run] | None:
    """The entries of `w` the placed tailer `t` will read, a run per cycle, oldest first.

    None when only reading tells: where a bound in time falls is found by
    reading (the tailer may even start a few entries outside it), and a
    damaged cycle cannot be listed.
    """
    if t.index is None or w.lo_ns > 0 or w.hi_ns < INT64_MAX:
        return None
    lo, hi = (w.lo_index, t.index) if backward else (t.index, w.hi_index)
    try:
        spans = _spans(q.cycles())
    except tape.CorruptionError:
        return None
    return [_run(q, c, max(first, lo), min(last, hi)) for c, first, last in spans if first <= hi and last >= lo]


def _run(q: tape.Queue, c: tape.CycleInfo, first: int, last: int) -> Run:
    """The entries of cycle `c` from index `first` to `last`; sequence numbers within a cycle have no gaps."""
    _, seq = tape.split_index(q, first)
    if (first, last) == (c.first_index, c.last_index):
        return Run(c.cycle, seq, c.entries)
    return Run(c.cycle, seq, tape.split_index(q, last)[1] - seq + 1)


def entries_from(q: tape.Queue, cycles: list[tape.CycleInfo], index: int | None) -> int:
    """How many entries of `cycles` (of `q`) are at or after `index` (None: all)."""
    return sum(
        c.entries if index is None or index <= first else _run(q, c, index, last).length
        for c, first, last in _spans(cycles)
        if index is None or last >= index
    )
