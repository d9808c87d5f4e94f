"""Tailer batches (tape_peek_many + tape_tailer_advance): named and anonymous
tailers mixing every way of reading and moving, mid-batch; what a named
tailer stores is exactly after the last value handed out."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

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
