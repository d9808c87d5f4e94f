"""Tailer: reading, iterating, waiting, moving."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

import tape

SECOND = 1_000_000_000


class Clock:
    """A clock for tests: returns `now`, which the test sets."""

    def __init__(self) -> None:
        self.now = time.time_ns()

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def clocked(qpath: Path) -> Iterator[tuple[tape.Queue, Clock]]:
    clock = Clock()
    with tape.Queue(qpath, clock=clock) as q:
        yield q, clock


def fill(q: tape.Queue, n: int) -> list[int]:
    """Write the ints 0..n-1 and return their indexes."""
    a = q.appender()
    return [a.write(k) for k in range(n)]


def test_read_returns_none_when_nothing_is_there(queue: tape.Queue) -> None:
    assert queue.tailer().read() is None


def test_read_returns_values_in_order(queue: tape.Queue) -> None:
    fill(queue, 3)
    t = queue.tailer()
    assert [t.read(), t.read(), t.read(), t.read()] == [0, 1, 2, None]


def test_a_stored_none_is_read_as_none(queue: tape.Queue) -> None:
    queue.appender().write(None)
    entry = queue.tailer().read_entry()
    assert entry is not None and entry.value is None


def test_entry_has_index_timestamp_and_value(queue: tape.Queue) -> None:
    before = time.time_ns()
    index = queue.appender().write({"k": "v"})
    entry = queue.tailer().read_entry()
    assert isinstance(entry, tape.Entry)
    assert (entry.index, entry.value) == (index, {"k": "v"})
    assert before <= entry.timestamp <= time.time_ns()


def test_timestamps_never_decrease(clocked: tuple[tape.Queue, Clock]) -> None:
    q, clock = clocked
    a = q.appender()
    for step in (0, 5, -3, 2, -100, 1):
        clock.now += step * SECOND
        a.write(step)
    stamps = [e.timestamp for e in q.tailer().entries()]
    assert stamps == sorted(stamps)


def test_clock_sets_the_timestamps(clocked: tuple[tape.Queue, Clock]) -> None:
    q, clock = clocked
    q.appender().write("x")
    entry = q.tailer().read_entry()
    assert entry is not None and entry.timestamp == clock.now


def test_iteration_stops_at_the_end_and_resumes_when_more_is_written(queue: tape.Queue) -> None:
    a = queue.appender()
    t = queue.tailer()
    assert list(t) == []
    a.write_many(range(3))
    assert list(t) == [0, 1, 2]
    assert list(t) == []
    a.write_many(range(3, 5))
    assert list(t) == [3, 4]


def test_entries_yields_entries_in_order(queue: tape.Queue) -> None:
    indexes = fill(queue, 5)
    entries = list(queue.tailer().entries())
    assert [e.index for e in entries] == indexes
    assert [e.value for e in entries] == list(range(5))


def test_breaking_out_of_iteration_then_read_continues_with_the_next_entry(queue: tape.Queue) -> None:
    queue.appender().write_many(range(10_000))
    t = queue.tailer()
    for value in t:
        if value == 1234:
            break
    assert t.read() == 1235
    assert list(t) == list(range(1236, 10_000))


def broken_at_41(q: tape.Queue) -> tuple[tape.Tailer, list[int]]:
    """A tailer over 0..99 whose iteration was left after handing out 41."""
    q.appender().write_many(range(100))
    indexes = [e.index for e in q.tailer().entries()]
    t = q.tailer()
    for value in t:
        if value == 41:
            break
    return t, indexes


def test_index_after_a_broken_iteration_is_the_next_entry(queue: tape.Queue) -> None:
    t, indexes = broken_at_41(queue)
    assert t.index == indexes[42]
    assert t.read() == 42


def test_last_read_index_after_a_broken_iteration_is_the_last_value_handed_out(queue: tape.Queue) -> None:
    t, indexes = broken_at_41(queue)
    assert t.last_read_index == indexes[41]
    assert t.read() == 42


def test_entries_after_a_broken_iteration_continue_with_the_next_entry(queue: tape.Queue) -> None:
    t, _ = broken_at_41(queue)
    assert [e.value for e in t.entries()] == list(range(42, 100))


def test_a_new_iteration_after_a_broken_one_continues_with_the_next_entry(queue: tape.Queue) -> None:
    t, _ = broken_at_41(queue)
    assert list(t) == list(range(42, 100))


def test_to_end_after_a_broken_iteration_goes_to_the_end(queue: tape.Queue) -> None:
    t, _ = broken_at_41(queue)
    t.to_end()
    assert t.read() is None


def test_read_entry_after_a_broken_iteration_returns_the_next_entry(queue: tape.Queue) -> None:
    indexes = fill(queue, 50)
    t = queue.tailer()
    for value in t:
        if value == 9:
            break
    entry = t.read_entry()
    assert entry is not None and (entry.index, entry.value) == (indexes[10], 10)


def test_last_read_index_follows_what_was_handed_out(queue: tape.Queue) -> None:
    indexes = fill(queue, 20)
    t = queue.tailer()
    assert t.last_read_index is None
    t.read()
    assert t.last_read_index == indexes[0]
    for value in t:
        if value == 7:
            break
    assert t.last_read_index == indexes[7]
    assert t.index == indexes[8]


def test_an_abandoned_iterator_does_not_hand_out_values_again(queue: tape.Queue) -> None:
    queue.appender().write_many(range(10))
    t = queue.tailer()
    it = iter(t)
    assert [next(it), next(it)] == [0, 1]
    assert t.read() == 2
    assert list(it) == list(range(3, 10))
    assert t.read() is None


def test_index_is_the_entry_the_next_read_returns(queue: tape.Queue) -> None:
    indexes = fill(queue, 3)
    t = queue.tailer()
    assert t.index == indexes[0]
    t.read()
    assert t.index == indexes[1]


def test_to_index_returns_true_and_moves_there(queue: tape.Queue) -> None:
    indexes = fill(queue, 10)
    t = queue.tailer()
    assert t.to_index(indexes[6])
    assert t.read() == 6


def test_to_index_of_a_missing_index_returns_false_and_does_not_move(queue: tape.Queue) -> None:
    indexes = fill(queue, 3)
    t = queue.tailer()
    t.read()
    assert not t.to_index(indexes[-1] + 1000)
    assert not t.to_index(-1)
    assert t.read() == 1


@pytest.mark.parametrize("bad", ["1", 1.0, None, True, [1]])
def test_to_index_of_a_non_int_raises_argument_type_error(queue: tape.Queue, bad: object) -> None:
    fill(queue, 1)
    t = queue.tailer()
    with pytest.raises(tape.ArgumentTypeError):
        t.to_index(bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        t.to_index(bad)  # type: ignore[arg-type]


def test_to_start_and_to_end(queue: tape.Queue) -> None:
    fill(queue, 3)
    t = queue.tailer()
    t.to_end()
    assert t.read() is None
    queue.appender().write(3)
    assert t.read() == 3
    t.to_start()
    assert list(t) == [0, 1, 2, 3]


def test_to_time_finds_the_first_entry_at_or_after_a_time(clocked: tuple[tape.Queue, Clock]) -> None:
    q, clock = clocked
    start = clock.now // SECOND  # whole seconds since the epoch
    a = q.appender()
    for k in range(10):
        clock.now = (start + k) * SECOND
        a.write(k)
    t = q.tailer()
    assert t.to_time(start + 3)
    assert t.read() == 3
    assert t.to_time(start + 3.5)
    assert t.read() == 4
    assert t.to_time(datetime.fromtimestamp(start + 7, timezone.utc))
    assert t.read() == 7
    assert t.to_time(0)
    assert t.read() == 0


def test_to_time_after_the_last_entry_returns_false_and_does_not_move(
    clocked: tuple[tape.Queue, Clock],
) -> None:
    q, clock = clocked
    q.appender().write_many(["a", "b"])
    t = q.tailer()
    t.read()
    assert not t.to_time(clock.now / SECOND + 60)
    assert t.read() == "b"


def test_to_time_takes_an_aware_datetime(clocked: tuple[tape.Queue, Clock]) -> None:
    q, clock = clocked
    clock.now = 1_900_000_000 * SECOND
    q.appender().write("a")
    clock.now += 2 * SECOND
    q.appender().write("b")
    t = q.tailer()
    assert t.to_time(datetime.fromtimestamp(1_900_000_001, timezone.utc))
    assert t.read() == "b"
    assert t.to_time(datetime.fromtimestamp(1_900_000_000))  # naive: local time
    assert t.read() == "a"


def test_to_time_refuses_a_string(queue: tape.Queue) -> None:
    with pytest.raises(tape.ArgumentTypeError):
        queue.tailer().to_time("yesterday")  # type: ignore[arg-type]


def test_backward_after_to_end_reads_the_newest_first(queue: tape.Queue) -> None:
    fill(queue, 5)
    t = queue.tailer()
    t.direction = "backward"
    assert t.direction == "backward"
    t.to_end()
    assert [t.read(), t.read()] == [4, 3]
    assert list(t) == [2, 1, 0]


def test_backward_break_then_read_continues_backward(queue: tape.Queue) -> None:
    queue.appender().write_many(range(100))
    t = queue.tailer()
    t.direction = "backward"
    t.to_end()
    for value in t:
        if value == 60:
            break
    assert t.read() == 59


def test_direction_refuses_other_names(queue: tape.Queue) -> None:
    t = queue.tailer()
    assert t.direction == "forward"
    with pytest.raises(tape.ArgumentError):
        t.direction = "sideways"


def test_read_with_timeout_returns_none_after_about_that_long(queue: tape.Queue) -> None:
    t = queue.tailer()
    start = time.monotonic()
    assert t.read(timeout=0.2) is None
    assert 0.19 <= time.monotonic() - start < 1.0


def test_read_with_timeout_returns_a_value_written_meanwhile(queue: tape.Queue) -> None:
    t = queue.tailer()
    a = queue.appender()
    writer = threading.Timer(0.05, a.write, args=("late",))
    writer.start()
    start = time.monotonic()
    assert t.read(timeout=5) == "late"
    assert time.monotonic() - start < 2
    writer.join()


def test_read_entry_with_timeout_returns_the_entry(queue: tape.Queue) -> None:
    t = queue.tailer()
    writer = threading.Timer(0.05, queue.appender().write, args=(7,))
    writer.start()
    entry = t.read_entry(timeout=5)
    writer.join()
    assert entry is not None and entry.value == 7


def test_read_refuses_a_negative_timeout(queue: tape.Queue) -> None:
    with pytest.raises(tape.ArgumentError):
        queue.tailer().read(timeout=-1)


def test_follow_yields_values_as_they_arrive_until_the_timeout(queue: tape.Queue) -> None:
    a = queue.appender()
    a.write(0)

    def later() -> None:
        for k in range(1, 4):
            time.sleep(0.02)
            a.write(k)

    writer = threading.Thread(target=later)
    writer.start()
    start = time.monotonic()
    assert list(queue.tailer().follow(timeout=0.5)) == [0, 1, 2, 3]
    assert time.monotonic() - start < 3
    writer.join()


def test_follow_stops_when_the_queue_is_closed(qpath: Path) -> None:
    q = tape.Queue(qpath)
    q.appender().write("first")
    got: list[object] = []
    follower = threading.Thread(target=lambda: got.extend(q.tailer().follow()))
    follower.start()
    time.sleep(0.2)
    q.close()
    follower.join(timeout=5)
    assert not follower.is_alive()
    assert got == ["first"]


def test_a_tailer_started_at_the_end_sees_only_new_entries(queue: tape.Queue) -> None:
    fill(queue, 3)
    t = queue.tailer(start="end")
    queue.appender().write(99)
    assert list(t) == [99]


def test_a_tailer_started_at_an_index(queue: tape.Queue) -> None:
    indexes = fill(queue, 5)
    assert list(queue.tailer(start=indexes[2])) == [2, 3, 4]
    assert list(queue.tailer(start="start")) == [0, 1, 2, 3, 4]


def test_a_tailer_started_at_a_missing_index_raises(queue: tape.Queue) -> None:
    fill(queue, 1)
    with pytest.raises(tape.ArgumentError):
        queue.tailer(start=12345)
    with pytest.raises(tape.ArgumentError):
        queue.tailer(start="middle")


def test_readahead_does_not_change_what_read_returns(queue: tape.Queue) -> None:
    indexes = fill(queue, 300)
    t = queue.tailer()
    for k in range(0, 300, 7):
        assert t.to_index(indexes[k])
        got = list(itertools.islice(iter(t.read, None), 5))
        assert got == list(range(k, min(k + 5, 300)))
        assert t.last_read_index == indexes[k + len(got) - 1]
