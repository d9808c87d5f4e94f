"""Dumping a window of a queue as text (tape.jsonl's formats), with worker processes when it is large.

Decoding and JSON encoding take some 4 us per entry of a typical event
(bench/dump.py), nearly all of it inside msgpack and the json module, so one
process goes little faster than 250 k entries/s. A large window is cut into
units of consecutive entries of one cycle that worker processes (one per core)
read and format; this process writes their output in order, then reads on
from there itself: that takes in entries written meanwhile and, where a worker
stopped short, reports the problem as a dump in one process would.
"""

from __future__ import annotations

import io
import itertools
import multiprocessing
import signal
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from typing import IO, NamedTuple

import tape
from tape.jsonl import Decode, Progress, unseen, write_entries
from tape.window import INT64_MAX, Run, Window, in_window, place, runs_ahead

__all__ = ["open_reader", "Dump"]

UNIT = 16_384  # entries a worker reads and formats in one go
FEW = 4 * UNIT  # a window of fewer entries is formatted in this process


def open_reader(path: str, fmt: str, codec: str | None) -> tuple[tape.Queue, Decode | None]:
    """The queue at `path`, read-only, to write out in format `fmt`; and the decode function of `codec`, if given.

    Values are decoded with the stored codec; in format raw not at all; with
    `codec`, the queue is opened raw and its payloads decoded by the function returned.
    """
    if fmt != "raw" and codec is None:
        return tape.Queue(path, read_only=True, create=False), None
    q = tape.Queue(path, read_only=True, create=False, raw=True)
    if codec is None:
        return q, None
    chosen = tape.codecs.get(codec)
    if codec == q.codec_name and isinstance(chosen, tape.codecs.ParamCodec):
        chosen = chosen.with_params(q.codec_params)  # e.g. avro: the queue's schema
    return q, chosen.decode


class _Unit(NamedTuple):
    """Entries a worker reads: from sequence number `seq` of `cycle`, `length` of them in the reading direction."""

    cycle: int
    seq: int
    length: int


def _units(runs: list[Run], backward: bool, limit: int | None) -> list[_Unit]:
    """`runs` cut into units of at most UNIT entries in reading order, `limit` entries in all."""
    units = []
    left = INT64_MAX if limit is None else limit
    for run in reversed(runs) if backward else runs:
        newest = run.seq + run.length - 1
        for done in range(0, min(run.length, left), UNIT):
            seq = newest - done if backward else run.seq + done
            units.append(_Unit(run.cycle, seq, min(UNIT, run.length - done, left - done)))
        left -= min(run.length, left)
    return units


class Dump:
    """The entries of window `w` of the queue at `path`, to write in format `fmt`; a context manager.

    `codec` decodes the payloads instead of the stored codec; `backward` reads
    newest first; `limit` caps how many entries are written.
    """

    def __init__(
        self, path: str, w: Window = Window(), *, fmt: str = "jsonl", codec: str | None = None,
        backward: bool = False, limit: int | None = None,
    ) -> None:
        self.path, self.fmt, self.codec, self.backward, self.limit = path, fmt, codec, backward, limit
        self._window = w
        self.queue, self._decode = open_reader(path, fmt, codec)
        try:
            self._tailer = self.queue.tailer()
            self.empty = not place(self.queue, self._tailer, w, backward)  # no entry in the window
        except BaseException:
            self.queue.close()
            raise
        self._units: list[_Unit] | None = None
        self._planned = False

    def __enter__(self) -> Dump:
        return self

    def __exit__(self, *exc: object) -> None:
        self.queue.close()

    def count(self) -> int | None:
        """How many entries will be written, when known before reading: no bound in time, no damaged cycle."""
        units = self._plan()
        return None if units is None else sum(u.length for u in units)

    def write(self, out: IO[bytes], *, jobs: int = 1, progress: Progress = unseen) -> int:
        """Write the entries to `out`; `jobs` processes format a large window (not raw); `progress` as in write_entries.

        Returns how many entries were written.
        """
        written = 0

        def counted(n: int) -> None:
            nonlocal written
            written += n
            progress(n)

        self._write(out, jobs, counted)
        return written

    def _write(self, out: IO[bytes], jobs: int, progress: Progress) -> None:
        if self.empty:
            return
        limit, w, t = self.limit, self._window, self._tailer
        helped = jobs > 1 and self.fmt != "raw" and (limit is None or limit >= FEW)  # raw is quick alone
        units = self._plan() if helped else None
        if units and sum(u.length for u in units) >= FEW:
            written, bound = self._write_units(units, jobs, out, progress)
            limit = None if limit is None else limit - written
            w = w._replace(hi_index=bound) if self.backward else w._replace(lo_index=bound)
            if not place(self.queue, t, w, self.backward):
                return
        write_entries(itertools.islice(in_window(t, w, self.backward), limit), self.fmt, out, self._decode, progress)

    def _plan(self) -> list[_Unit] | None:
        """The units of the window, or None when only reading tells (see runs_ahead)."""
        if not self._planned and not self.empty:
            runs = runs_ahead(self.queue, self._tailer, self._window, self.backward)
            self._units = None if runs is None else _units(runs, self.backward, self.limit)
        self._planned = True
        return self._units

    def _write_units(self, units: list[_Unit], jobs: int, out: IO[bytes], progress: Progress) -> tuple[int, int]:
        """Write `units`, formatted by `jobs` worker processes, in order, until one comes short.

        Returns how many entries were written, and the window's new bound in
        the reading direction: the entry a short unit stopped at, or past the last written.
        """
        total = 0
        jobs = min(jobs, len(units))  # with fork, the pool starts all its workers at once
        with ProcessPoolExecutor(
            max_workers=jobs,
            mp_context=multiprocessing.get_context("fork"),
            initializer=_start_worker,
            initargs=(self.path, self.fmt, self.codec, self.backward),
        ) as pool:
            todo = iter(units)
            # At most two units a worker in flight: a slow reader of the output holds the rest back.
            running: deque[tuple[_Unit, Future[tuple[bytes, int]]]] = deque(
                (unit, pool.submit(_format_unit, self.fmt, unit)) for unit in itertools.islice(todo, 2 * jobs)
            )
            while running:
                unit, done = running.popleft()
                data, written = done.result()
                out.write(data)
                progress(written)
                total += written
                if written < unit.length:
                    for _, waiting in running:
                        waiting.cancel()
                    return total, self._index(unit, written)  # the entry it stopped at
                running.extend((u, pool.submit(_format_unit, self.fmt, u)) for u in itertools.islice(todo, 1))
        # A bound, not an entry: the indexes beyond the last one written.
        last = self._index(unit, unit.length - 1)
        return total, last - 1 if self.backward else last + 1

    def _index(self, unit: _Unit, k: int) -> int:
        """The index of entry `k` of `unit` in the reading direction."""
        return tape.make_index(self.queue, unit.cycle, unit.seq - k if self.backward else unit.seq + k)


# -- in a worker process ---------------------------------------------------------------

_reader: tuple[tape.Queue, tape.Tailer, Decode | None] | None = None  # the worker's queue, tailer and decoder


def _start_worker(path: str, fmt: str, codec: str | None, backward: bool) -> None:
    """Open the queue in a new worker process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the process writing the output
    global _reader
    q, decode = open_reader(path, fmt, codec)
    t = q.tailer()
    if backward:
        t.direction = "backward"
    _reader = (q, t, decode)


def _format_unit(fmt: str, unit: _Unit) -> tuple[bytes, int]:
    """The entries of `unit` in format `fmt`, and how many (fewer when reading failed)."""
    assert _reader is not None
    q, t, decode = _reader
    out = io.BytesIO()
    written = 0

    def tally(n: int) -> None:
        nonlocal written
        written += n

    try:
        if t.to_index(tape.make_index(q, unit.cycle, unit.seq)):
            write_entries(itertools.islice(t.entries(), unit.length), fmt, out, decode, tally)
    except tape.TapeError:
        pass  # the writing process reads this entry itself, and reports the problem
    return out.getvalue(), written
