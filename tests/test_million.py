"""A million entries: written, read back, reopened in another process, sought, reversed."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from pathlib import Path

import pytest

import tape

MILLION = 1_000_000


def value_of(k: int) -> bytes:
    """The payload of the k-th entry."""
    return k.to_bytes(8, "little")


def expected_digest() -> str:
    return hashlib.sha256(b"".join(value_of(k) for k in range(MILLION))).hexdigest()


@pytest.fixture(scope="module")
def million(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, int]:
    """A raw queue of value_of(k) for k in range(MILLION): its path, first index, last index.

    One fixed timestamp keeps every entry in one cycle, even at midnight.
    """
    path = tmp_path_factory.mktemp("million") / "q"
    now = time.time_ns()
    with tape.Queue(path, codec="raw", clock=lambda: now) as q:
        a = q.appender()
        for start in range(0, MILLION, 100_000):
            last = a.write_many(value_of(k) for k in range(start, start + 100_000))
        first = q.first_index
    assert first is not None
    return path, first, last


def test_a_million_entries_have_consecutive_indexes(million: tuple[Path, int, int]) -> None:
    path, first, last = million
    with tape.Queue(path) as q:
        assert q.count() == MILLION
        assert q.first_index == first
        assert q.last_index == last == first + MILLION - 1


def test_a_million_entries_read_back_by_iteration(million: tuple[Path, int, int]) -> None:
    path, _, _ = million
    with tape.Queue(path) as q:
        values = list(q.tailer())
    assert len(values) == MILLION
    assert values[0] == value_of(0) and values[-1] == value_of(MILLION - 1)
    assert hashlib.sha256(b"".join(values)).hexdigest() == expected_digest()


def test_a_million_entries_read_back_by_read(million: tuple[Path, int, int]) -> None:
    path, _, _ = million
    with tape.Queue(path) as q:
        t = q.tailer()
        for k in range(MILLION):
            assert t.read() == value_of(k)
        assert t.read() is None


READER = """
import hashlib, sys, tape
with tape.Queue(sys.argv[1], create=False, read_only=True) as q:
    values = list(q.tailer())
    print(q.codec.name, q.count(), len(values), hashlib.sha256(b"".join(values)).hexdigest())
"""


def test_a_new_process_reads_all_million_again(million: tuple[Path, int, int]) -> None:
    path, _, _ = million
    out = subprocess.run(
        [sys.executable, "-c", READER, str(path)], check=True, capture_output=True, text=True
    ).stdout.split()
    assert out == ["raw", str(MILLION), str(MILLION), expected_digest()]


def test_to_index_every_997th_returns_exactly_that_entry(million: tuple[Path, int, int]) -> None:
    path, first, _ = million
    with tape.Queue(path) as q:
        t = q.tailer()
        for k in range(0, MILLION, 997):
            assert t.to_index(first + k)
            entry = t.read_entry()
            assert entry is not None
            assert (entry.index, entry.value) == (first + k, value_of(k))


def test_backward_reading_returns_the_reverse(million: tuple[Path, int, int]) -> None:
    path, _, _ = million
    with tape.Queue(path) as q:
        t = q.tailer()
        t.direction = "backward"
        t.to_end()
        values = list(t)
    assert len(values) == MILLION
    assert values[0] == value_of(MILLION - 1)
    assert values == [value_of(k) for k in range(MILLION - 1, -1, -1)]
