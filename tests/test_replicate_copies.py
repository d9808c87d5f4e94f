"""Appender.write_encoded_many, what an Ingester writes a frame with: each entry its own key, not_before and origin."""

from __future__ import annotations

from array import array
from pathlib import Path

import pytest

import tape

NB = 1_800_000_000_000_000_000


def entries(path: Path) -> list[tape.Entry]:
    with tape.Queue(path, raw=True) as q:
        return list(q.tailer().entries())


def test_each_entry_gets_its_own_attributes(tmp_path: Path) -> None:
    with tape.Queue(tmp_path / "q", codec="raw") as q:
        a = q.appender()
        last = a.write_encoded_many([
            (b"plain", None, None, None, False),
            (b"copied", None, None, (40, 7), False),
            (b"later", None, NB, (41, 8), False),
            (b"keyed", "k\u00e9y", None, (42, 9), False),
            (b"", "k\u00e9y", None, (43, 10), True),
            (b"after", None, None, (44, 11), False),
        ])
        assert q.latest("k\u00e9y") is None  # the tombstone went through the key directory
    got = entries(tmp_path / "q")
    assert got[-1].index == last
    assert [(e.value, e.key, e.not_before, e.origin, e.tombstone) for e in got] == [
        (b"plain", None, None, None, False),
        (b"copied", None, None, (40, 7), False),
        (b"later", None, NB, (41, 8), False),
        (b"keyed", "k\u00e9y", None, (42, 9), False),
        (b"", "k\u00e9y", None, (43, 10), True),
        (b"after", None, None, (44, 11), False),
    ]


def test_entries_of_another_queue_keep_where_they_came_from(tmp_path: Path) -> None:
    with tape.Queue(tmp_path / "a", codec="raw") as q:
        q.appender().write_many([b"one", b"two"])
        q.appender().write(b"three", key="k")
    first = entries(tmp_path / "a")
    with tape.Queue(tmp_path / "b", codec="raw") as q:
        q.appender().write_encoded_many(first)
    second = entries(tmp_path / "b")
    assert [e.origin for e in second] == [(e.index, e.timestamp) for e in first]
    with tape.Queue(tmp_path / "c", codec="raw") as q:
        q.appender().write_encoded_many(second)  # a copy of a copy: the first queue's origins
    third = entries(tmp_path / "c")
    assert [(e.value, e.key, e.origin) for e in third] == [(e.value, e.key, (e.index, e.timestamp)) for e in first]


@pytest.mark.parametrize("items, error", [
    ([], tape.ArgumentError),
    ([(b"x", None, None, None)], tape.ArgumentTypeError),
    ([("x", None, None, None, False)], tape.ArgumentTypeError),
    ([(b"x", None, None, None, 0)], tape.ArgumentTypeError),
    ([(b"x", None, None, (1, 2, 3), False)], tape.ArgumentTypeError),
    ([(b"x", None, None, ("1", 2), False)], tape.ArgumentTypeError),
    ([(b"x", None, None, (-1, 2), False)], tape.ArgumentError),
    ([(b"x", None, None, (1, -2), False)], tape.ArgumentError),
    ([(b"x", None, -5, None, False)], tape.ArgumentError),
    ([(b"x", None, None, None, True)], tape.ArgumentError),
    ([(b"x", "", None, None, False)], tape.ArgumentError),
    ([(b"x", None, None, (1, 2), False), (b"y", None, None, None, True)], tape.ArgumentError),
])
def test_bad_items_write_nothing(tmp_path: Path, items: list[object], error: type[Exception]) -> None:
    with tape.Queue(tmp_path / "q", codec="raw") as q:
        a = q.appender()
        with pytest.raises(error):
            a.write_encoded_many([(b"first", None, None, (1, 1), False), *items] if items else items)
        assert q.count() == 0


def test_a_run_of_columns_gets_each_entry_its_origin(tmp_path: Path) -> None:
    """Appender._write_encoded_run, what an Ingester writes a frame without keys with: one core call."""
    with tape.Queue(tmp_path / "q", codec="raw") as q:
        last = q.appender()._write_encoded_run(memoryview(b"onetwo!"), array("Q", [3, 3, 7]), array("q", [5, 6, 9]),
                                               array("q", [50, 60, 90]))
    got = entries(tmp_path / "q")
    assert last == got[-1].index
    assert [(e.value, e.origin, e.key, e.not_before) for e in got] == [
        (b"one", (5, 50), None, None), (b"", (6, 60), None, None), (b"two!", (9, 90), None, None)]


@pytest.mark.parametrize("ends, indexes, times, error", [
    (array("Q"), array("q"), array("q"), tape.ArgumentError),
    (array("Q", [2, 4]), array("q", [1]), array("q", [1, 2]), tape.ArgumentError),
    (array("Q", [2, 3]), array("q", [1, 2]), array("q", [1, 2]), tape.ArgumentError),  # not the data's end
    (array("Q", [2, 4]), array("q", [1, -1]), array("q", [1, 2]), tape.ArgumentError),
    (array("Q", [2, 4]), array("q", [1, 2]), array("q", [-1, 2]), tape.ArgumentError),
    (array("Q", [2, 4]), array("l", [1, 2]), array("q", [1, 2]), tape.ArgumentTypeError),
])
def test_a_bad_run_of_columns_writes_nothing(tmp_path: Path, ends: array[int], indexes: array[int], times: array[int],
                                             error: type[Exception]) -> None:
    with tape.Queue(tmp_path / "q", codec="raw") as q:
        with pytest.raises(error):
            q.appender()._write_encoded_run(b"abcd", ends, indexes, times)
        assert q.count() == 0
