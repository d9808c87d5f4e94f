"""Payloads of any size round-trip through the raw codec."""

from __future__ import annotations

import os

import pytest

import tape

SIZES = {"empty": 0, "one byte": 1, "64 KiB": 64 << 10, "64 MiB": 64 << 20}


@pytest.mark.parametrize("size", SIZES.values(), ids=SIZES.keys())
def test_payload_round_trips_by_read(raw_queue: tape.Queue, size: int) -> None:
    payload = os.urandom(size)
    index = raw_queue.appender().write(payload)
    entry = raw_queue.tailer().read_entry()
    assert entry is not None
    assert entry.index == index
    assert entry.value == payload


@pytest.mark.parametrize("size", SIZES.values(), ids=SIZES.keys())
def test_payload_round_trips_by_iteration(raw_queue: tape.Queue, size: int) -> None:
    payloads = [os.urandom(size), b"after"]
    raw_queue.appender().write_many(payloads)
    assert list(raw_queue.tailer()) == payloads


def test_bytearray_and_memoryview_are_written_as_bytes(raw_queue: tape.Queue) -> None:
    a = raw_queue.appender()
    a.write(bytearray(b"ab"))
    a.write(memoryview(b"cd"))
    assert list(raw_queue.tailer()) == [b"ab", b"cd"]


def test_many_empty_payloads_read_back_by_iteration(raw_queue: tape.Queue) -> None:
    raw_queue.appender().write_many([b""] * 10_000)
    assert list(raw_queue.tailer()) == [b""] * 10_000


def test_entries_larger_than_the_read_buffer_mix_with_small_ones(raw_queue: tape.Queue) -> None:
    payloads = [b"s1", os.urandom(3 << 20), b"s2", b"s3", os.urandom(2 << 20)]
    raw_queue.appender().write_many(payloads)
    assert list(raw_queue.tailer()) == payloads
    t = raw_queue.tailer()
    assert [t.read() for _ in payloads] == payloads
