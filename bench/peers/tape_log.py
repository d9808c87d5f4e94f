"""tape itself: the raw codec, the msgpack codec, raw with sync="always" (writes only), raw read with read_view."""

from __future__ import annotations

import time
from itertools import islice
from pathlib import Path
from typing import Any, ClassVar

import msgpack

from bench.peers import Subject, import_installed_tape

tape = import_installed_tape()


def record(seq: int, size: int) -> dict[str, Any]:
    """A small record {"i": seq, "d": bytes} whose msgpack encoding is exactly `size` bytes (>= 16)."""
    value: dict[str, Any] = {"i": 100_000 + seq, "d": b""}
    value["d"] = bytes(size - len(msgpack.packb(value, use_bin_type=True)))
    while len(msgpack.packb(value, use_bin_type=True)) > size:  # a longer bin header
        value["d"] = value["d"][:-1]
    assert len(msgpack.packb(value, use_bin_type=True)) == size, size
    return value


class TapeRaw(Subject):
    """A tape queue of raw bytes: Appender.write/write_many, Tailer.read, iteration."""

    key = "tape-raw"
    name = "tape (raw)"
    kind = "tape"
    how = "Appender.write / Appender.write_many / Tailer.read / for v in tailer"
    codec: ClassVar[str] = "raw"
    sync: ClassVar[str] = "none"

    def open(self, path: Path) -> None:
        self.q = tape.Queue(path, codec=self.codec, sync=self.sync)
        self.appender = self.q.appender()
        self.tailer = self.q.tailer()
        self.write = self.appender.write
        self.read = self.tailer.read

    def write_many(self, values: list[Any]) -> None:
        self.appender.write_many(values)

    def read_all(self, deadline: float) -> int:
        it, n, clock = iter(self.tailer), 0, time.perf_counter
        while True:
            before = n
            for _ in islice(it, 4096):
                n += 1
            if n - before < 4096 or clock() >= deadline:
                return n

    def close(self) -> None:
        self.q.close()


class TapeMsgpack(TapeRaw):
    """tape with its default codec, writing small records of the payload's size when encoded."""

    key = "tape-msgpack"
    name = "tape (msgpack)"
    codec = "msgpack"
    crash = False

    def values(self, payloads: list[bytes]) -> list[Any]:
        return [record(k, len(p)) for k, p in enumerate(payloads)]


class TapeRawAlways(TapeRaw):
    """tape raw with sync="always": each write waits for fdatasync, as SQLite's default does."""

    key = "tape-raw-sync"
    name = 'tape (raw, sync="always")'
    how = "Appender.write / Appender.write_many, each waiting for fdatasync; not read"
    sync = "always"
    reads = False
    crash = False


class TapeRawView(TapeRaw):
    """tape raw read without a copy: Tailer.read_view, a memoryview of the mapped entry."""

    key = "tape-view"
    name = "tape (raw, read_view)"
    how = "Appender.write / Appender.write_many / Tailer.read_view / read_view in a loop"
    crash = False

    def open(self, path: Path) -> None:
        super().open(path)
        self.read = self.tailer.read_view

    def read_all(self, deadline: float) -> int:
        read, n, clock = self.tailer.read_view, 0, time.perf_counter
        while True:
            for _ in range(4096):
                if read() is None:
                    return n
                n += 1
            if clock() >= deadline:
                return n


SUBJECTS: tuple[type[Subject], ...] = (TapeRaw, TapeMsgpack, TapeRawAlways, TapeRawView)
