"""Helpers for testing code that uses tape: golden logs, replay, a manual clock.

The golden-log workflow: record a queue (in production, say), keep it, or its
`tape dump` text, as a test fixture, and replay it against the code under
test. load_jsonl builds a queue from dump text (or plain JSON lines), replay
feeds the recorded values to a handler, assert_entries compares a queue with
what a test expects. The pytest fixtures tape_queue and tape_clock (module
tape.pytest_plugin) come with the package.
"""

from __future__ import annotations

import difflib
import os
import pprint
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, NamedTuple

from tape.appender import key_bytes, not_before_ns
from tape.errors import ArgumentError
from tape.group import Delivery, Group
from tape.jsonl import from_json_record
from tape.objects import Objects
from tape.queue import Queue, split_index
from tape.tailer import Tailer

__all__ = ["ManualClock", "replay", "load_jsonl", "assert_entries", "fire_due_alarms", "WorkerRun", "run_worker"]

_Path = str | os.PathLike[str]
_START_NS = 1_735_689_600 * 1_000_000_000  # 2025-01-01T00:00:00Z: the same in every run


class ManualClock:
    """A clock for Queue(clock=...) that moves only when told to.

    `now` is the time it returns, in ns since the epoch; it starts at
    2025-01-01T00:00:00Z unless given.
    """

    def __init__(self, now: int = _START_NS) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float | timedelta) -> int:
        """Move forward by `seconds` (a number or a timedelta); the new `now`."""
        if isinstance(seconds, timedelta):
            seconds = seconds.total_seconds()
        if not seconds >= 0:
            raise ArgumentError(f"a clock only moves forward, not by {seconds}")
        self.now += round(seconds * 1e9)
        return self.now

    def __repr__(self) -> str:
        return f"<tape.testing.ManualClock now={self.now}>"


@contextmanager
def _opened(path_or_queue: Queue | _Path) -> Iterator[Queue]:
    """The queue itself, or the queue at a path opened read-only for the block."""
    if isinstance(path_or_queue, Queue):
        yield path_or_queue
        return
    with Queue(path_or_queue, read_only=True, create=False) as queue:
        yield queue


def _seek(queue: Queue, tailer: Tailer, start: int) -> None:
    """Move `tailer` to the first entry whose index is `start` or more."""
    if tailer.to_index(start):
        return
    # No entry at start: it is before the first, in a gap between cycles, or after the last.
    for cycle in queue.cycles():
        if cycle.first_index is not None and cycle.first_index >= start:
            tailer.to_index(cycle.first_index)
            return
    tailer.to_end()


def replay(
    path_or_queue: Queue | _Path,
    handler: Callable[[Any], object],
    *,
    start: int | None = None,
    stop: int | None = None,
) -> int:
    """Call handler(value) for each entry in order; returns how many.

    Takes a Queue or the path of one (opened read-only). start and stop are
    indexes: the entries replayed are those with start <= index < stop.
    Entries appended while replaying (by the handler, say) are not replayed.
    """
    count = 0
    with _opened(path_or_queue) as queue, queue.tailer() as tailer:
        last = queue.last_index
        if last is None:
            return 0
        end = last + 1 if stop is None else min(stop, last + 1)
        if start is not None:
            _seek(queue, tailer, start)
        for entry in tailer.entries():
            if entry.index >= end:
                break
            handler(entry.value)
            count += 1
    return count


def load_jsonl(path: _Path, queue: Queue) -> int:
    """Append the values of a JSON-lines file to `queue`, as `tape load` does; returns how many.

    A line is a JSON value, or a record as `tape dump` writes it (index,
    timestamp and value: its value is appended, with a new index and
    timestamp; its key, tombstone and not_before are kept). Blank lines are
    skipped. Nothing is appended when a line is not JSON, a value cannot be
    encoded, or a key or not_before is bad.
    """
    items = []  # write_encoded_many's (data, key, not_before, origin, tombstone), each value encoded once
    with open(path, "rb") as lines:
        for lineno, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                value, attrs = from_json_record(line)
                attrs = attrs or {}
                key, when = attrs.get("key"), attrs.get("not_before")
                if key is not None:
                    key_bytes(key)  # checked here, to name the line
                items.append((queue.codec.encode(value), key, None if when is None else not_before_ns(when), None,
                              attrs.get("tombstone", False)))
            except (ValueError, TypeError) as exc:
                exc.add_note(f"{os.fspath(path)}:{lineno}")
                raise
    if items:
        with queue.appender() as appender:
            appender.write_encoded_many(items)
    return len(items)


def assert_entries(path_or_queue: Queue | _Path, expected: Iterable[Any]) -> None:
    """Assert that the queue holds exactly the values `expected`, in order.

    Takes a Queue or the path of one (opened read-only). The AssertionError
    shows the first difference: its position and index, both values (with a
    line diff when they are long) and how many entries there are.
    """
    __tracebackhide__ = True  # pytest shows the caller's line, not this function's
    wanted = list(expected)
    with _opened(path_or_queue) as queue, queue.tailer() as tailer:
        entries = list(tailer.entries())
        where = queue.path
        counts = f"the queue holds {len(entries)} entries, {len(wanted)} expected"
        for pos, (entry, want) in enumerate(zip(entries, wanted)):
            if entry.value != want:
                raise AssertionError(
                    f"{where}: entry {pos} ({_index(queue, entry.index)}) differs from the expected value\n"
                    + _diff(want, entry.value)
                    + f"\n{counts}"
                )
        if len(entries) > len(wanted):
            extra = entries[len(wanted)]
            raise AssertionError(
                f"{where}: {counts}; the first extra is entry {len(wanted)}"
                f" ({_index(queue, extra.index)}):\n  {extra.value!r}"
            )
    if len(entries) < len(wanted):
        raise AssertionError(f"{where}: {counts}; the first missing is entry {len(entries)}:\n  {wanted[len(entries)]!r}")


def _index(queue: Queue, index: int) -> str:
    cycle, seq = split_index(queue, index)
    return f"index {index}: cycle {cycle}, seq {seq}"


def _diff(expected: Any, actual: Any) -> str:
    """Both values, then a line diff of their pretty forms when either spans lines."""
    text = f"  expected: {expected!r}\n  actual:   {actual!r}"
    want, got = pprint.pformat(expected).splitlines(), pprint.pformat(actual).splitlines()
    if len(want) > 1 or len(got) > 1:
        text += "\n  diff (- expected, + actual):\n" + "\n".join("    " + line.rstrip("\n") for line in difflib.ndiff(want, got))
    return text


def fire_due_alarms(objects: Objects) -> int:
    """Fire every alarm of `objects` that is due now (by its clock), in this thread; how many ran and returned."""
    return objects._fire_due()


class WorkerRun(NamedTuple):
    """What run_worker's handler did with each delivery, in the order they were finished."""

    acked: list[Delivery]
    nacked: list[Delivery]  # by the handler, or because it raised (see errors)
    rejected: list[Delivery]
    errors: list[tuple[Delivery, Exception]]  # the handler raised (nacked, with the group's backoff), or
    # finishing the delivery did (its claim had lapsed: StaleDeliveryError, in none of the lists above)


def run_worker(group: Group, handler: Callable[[Delivery], object], *, consumer: str = "test-worker",
               limit: int = 100_000) -> WorkerRun:
    """Run `handler` over every entry of `group` that is due now, as a worker would; what it did.

    Each claim is handled as `with delivery: handler(delivery)` does: acked
    when the handler returns without finishing it, nacked when it raises
    (the exception is recorded, not raised); the handler may ack, nack or
    reject it itself. A redelivery that comes due during the run (a nack
    without delay) is handled again. Stops when nothing is due, or after
    `limit` claims. With the queue's clock a ManualClock, a test moves time
    on and runs the worker again.
    """
    run = WorkerRun([], [], [], [])
    finished = {"acked": run.acked, "nacked": run.nacked, "rejected": run.rejected}
    with group.consumer(consumer) as c:
        for _ in range(limit):
            d = c.claim()
            if d is None:
                break
            try:
                with d:
                    handler(d)
            except Exception as exc:  # the with block nacked it
                run.errors.append((d, exc))
            if d.outcome is not None:
                finished[d.outcome].append(d)
    return run
