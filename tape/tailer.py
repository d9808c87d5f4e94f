"""The Tailer: reads a queue from a position it moves, blocking or with asyncio.

Reading goes through batches: one call into the core peeks at many entries,
which are then handed out one by one (by read(), read_entry() or
iteration). The core's position stays at the start of the batch until the
tailer tells it how many were handed out (advance), before anything that
depends on the position, and, for a named tailer, whose position is stored
in the queue, just before each value is handed out. The first read (after
opening or a move) reads one entry alone; read() then peeks batches that
double up to BATCH_SLOTS, iteration BATCH_SLOTS at once.

Threads: a Tailer belongs to one thread at a time, but any thread may close it
or its queue, even while it waits in read(timeout=...) or follow().

asyncio: a wait is the core's futex wait, which blocks its thread, so the
async methods run it in the loop's default executor, one slice (at most
0.1 s) per call: an idle tailer costs a wake-up per slice, never a busy loop,
and any number of waiting tailers share the executor. What is already there
is read in the loop's thread. A task cancelled while waiting lets its worker
finish the slice, so the tailer is never used by two threads afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import operator
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tape import codecs, lifecycle
from tape._args import as_int, as_seconds
from tape._native import BACKWARD, BATCH_SLOTS, FORWARD, INDEX_MAX, TailerHandle
from tape._native.tailer import MSGPACK, OTHER, RAW, Columns, Reader
from tape._time import to_ns
from tape.errors import ArgumentError, QueueClosedError
from tape.records import Entry

if TYPE_CHECKING:
    from tape.queue import Queue

__all__ = ["Tailer"]

# A wait blocks in C for at most this long, so that Ctrl-C is handled promptly.
_WAIT_SLICE = 0.1
_NOTHING: Any = object()  # "no entry", since None is a value a codec may return
# What Reader._serve is told a batch is for: neither read() nor read_entry()
# (a named tailer), read(), read_entry().
_NEITHER, _VALUES, _ENTRIES = 0, 1, 2


class Tailer(Reader):
    """Reads a queue from a position that it moves; one thread at a time.

    read() and read_entry() are Reader's, in C (tape/_native/_hot_reader.c):
    they take from the current batch, and hand the rest to _read_slow and
    _read_entry_slow. Batches are built in C (TailerHandle.peek).
    """

    def __init__(self, queue: Queue, native: TailerHandle, *, name: str | None = None) -> None:
        self._queue = queue  # a tailer in use keeps its queue open
        self._native = native
        self._name = name
        # A read-only queue has nowhere to store a named tailer's position.
        self._named = name is not None and not queue.read_only
        self._path = queue.path
        self._decode = queue.codec.decode
        self._raw = type(queue.codec) is codecs.RawCodec
        kind = RAW if self._raw else MSGPACK if type(queue.codec) is codecs.MsgpackCodec else OTHER
        native.decode_as(kind, self._decode, getattr(queue.codec, "decode_many", None))
        # The current batch: its values (or Entry), the iterator handing them
        # out, the entries it covers in the core (more than the values when a
        # value failed to decode), their indexes, and that failure.
        self._batch: list[Any] | None = None
        self._batch_it: Iterator[Any] = iter(())
        self._batch_entries = False
        self._batch_n = 0
        self._batch_index: Callable[[int], int] = native.batch_index  # the index of entry k of the batch
        self._batch_error: Exception | None = None
        # Entries read ahead by read(): doubles while reading in sequence,
        # back to 1 after a move, so that random access stays cheap.
        self._readahead = 1
        lifecycle.opening(self)
        lifecycle.register(self, parent=queue)

    @property
    def name(self) -> str | None:
        """The name of a named tailer, None for an anonymous one."""
        return self._name

    @property
    def stores_position(self) -> bool:
        """True for a named tailer whose position is stored in the queue as it reads.

        False for an anonymous tailer, and for a named one on a queue opened
        read_only=True: it resumes at the stored position but cannot move it.
        """
        return self._named

    # -- reading ------------------------------------------------------------------------------

    def _read_slow(self, timeout: float | None = None, default: Any = None) -> Any:
        """read() when the batch has no value for it, or with a timeout (Reader.read hands them here)."""
        item = self._next(False) if timeout is None else self._next_waiting(False, timeout)
        return default if item is _NOTHING else item

    def _read_entry_slow(self, timeout: float | None = None) -> Entry | None:
        """read_entry() when the batch has no Entry for it, or with a timeout."""
        item: Entry = self._next(True) if timeout is None else self._next_waiting(True, timeout)
        return None if item is _NOTHING else item

    def __iter__(self) -> Iterator[Any]:
        """Every value available now, then stop; a later iteration resumes."""
        return itertools.chain.from_iterable(self._batches(entries=False))

    def entries(self) -> Iterator[Entry]:
        """Like iterating, but yielding Entry."""
        return itertools.chain.from_iterable(self._batches(entries=True))

    def read_encoded_batch(self, max_entries: int = 4096, max_bytes: int = 1 << 20) -> list[Entry]:
        """Up to `max_entries` entries from the position as Entry whose value is the stored bytes (not decoded), moving past them.

        At most `max_bytes` of values and keys, except that the first entry
        comes whatever its size. [] when there is none. A named tailer stores
        its position after them. For copying entries (Appender.write_encoded).
        """
        max_entries = as_int(max_entries, "max_entries")
        max_bytes = as_int(max_bytes, "max_bytes")
        if max_entries < 1 or max_bytes < 1:
            raise ArgumentError(f"max_entries and max_bytes must be at least 1, not {max_entries} and {max_bytes}")
        self._moved()
        return self._native.read_many(max_entries, max_bytes)

    def _read_encoded_columns(self, max_entries: int, max_bytes: int) -> Columns | None:
        """read_encoded_batch's entries as columns (tape._native.tailer.Columns), for tape.replicate; None when there is none."""
        self._moved()
        return self._native.read_columns(max_entries, max_bytes)

    def follow(self, timeout: float | None = None) -> Iterator[Any]:
        """Yield values as they arrive, like tail -f.

        Runs until no entry arrives for `timeout` seconds (forever when None)
        or until the tailer or its queue is closed.
        """
        limit = None if timeout is None else as_seconds(timeout)
        last = time.monotonic()
        try:
            while True:
                got = False
                for batch in self._batches(entries=False):
                    got = True
                    yield from batch  # each value handed out by C, without a loop of ours
                if got:
                    last = time.monotonic()
                if limit is None:
                    self._native.wait(_WAIT_SLICE)
                    continue
                remaining = last + limit - time.monotonic()
                if remaining <= 0:
                    return
                self._native.wait(min(remaining, _WAIT_SLICE))
        except QueueClosedError:
            return

    async def aread(self, timeout: float | None = None, default: Any = None) -> Any:
        """read() for asyncio code, waiting without blocking the loop.

        Waits forever when timeout is None, else up to `timeout` seconds
        (then `default`). A task cancelled while waiting ends within 0.1 s.
        """
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + as_seconds(timeout)
        while (item := self._next(False)) is _NOTHING:
            seconds = _WAIT_SLICE
            if deadline is not None:
                seconds = min(seconds, deadline - loop.time())
                if seconds <= 0:
                    return default
            await self._await_slice(seconds)
        return item

    async def afollow(self, timeout: float | None = None) -> AsyncIterator[Any]:
        """follow() for asyncio code: `async for value in tailer.afollow()`.

        Other tasks run between batches.
        """
        loop = asyncio.get_running_loop()
        limit = None if timeout is None else as_seconds(timeout)
        last = loop.time()
        try:
            while True:
                for batch in self._batches(entries=False):
                    for value in batch:
                        yield value
                    last = loop.time()
                    await asyncio.sleep(0)
                seconds = _WAIT_SLICE
                if limit is not None:
                    seconds = min(seconds, last + limit - loop.time())
                    if seconds <= 0:
                        return
                await self._await_slice(seconds)
        except QueueClosedError:
            return

    async def _await_slice(self, seconds: float) -> None:
        """One slice of a wait, in a worker thread."""
        done = asyncio.get_running_loop().run_in_executor(None, self._native.wait, seconds)
        try:
            await asyncio.shield(done)
        except asyncio.CancelledError:
            # The worker goes on until its slice ends: wait for it (even if
            # cancelled again), so that the tailer is free when the task ends.
            while not done.done():
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait([done])
            raise

    def _next(self, entries: bool) -> Any:
        """The next value (or Entry), or _NOTHING when there is none now."""
        if self._batch is not None and self._batch_entries == entries:
            item = self._take()
            if item is not _NOTHING:
                return item
            self._finish_batch()
        if self._readahead == 1 and self._batch is None:
            return self._read_one(entries)
        if not self._fill(self._readahead, entries):
            return _NOTHING
        self._readahead = min(2 * self._readahead, BATCH_SLOTS)
        item = self._take()
        if item is _NOTHING:
            self._finish_batch()  # not even the first entry decoded: raises why
        return item

    def _read_one(self, entries: bool) -> Any:
        """The next value (or Entry) read alone, or _NOTHING: after a move, cheaper than a batch."""
        entry = self._native.read_one()
        if entry is None:
            return _NOTHING
        self._readahead = 2
        if self._raw:
            return entry if entries else entry.value
        value = self._decode(entry.value)
        if not entries:
            return value
        return tuple.__new__(Entry, (entry.index, entry.timestamp, value, *entry[3:]))

    def _next_waiting(self, entries: bool, timeout: float) -> Any:
        """Like _next, waiting up to `timeout` seconds for an entry, in slices."""
        deadline = time.monotonic() + as_seconds(timeout)
        while (item := self._next(entries)) is _NOTHING:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._native.wait(min(remaining, _WAIT_SLICE))
        return item

    # -- batches ------------------------------------------------------------------------------

    def _batches(self, entries: bool) -> Iterator[Iterator[Any]]:
        """Iterators over successive batches of values (or Entry), until none is left."""
        while True:
            if self._batch is None or self._batch_entries != entries:
                if not self._fill(BATCH_SLOTS, entries):
                    return
            yield self._handing_out() if self._named else self._batch_it
            self._finish_batch()

    def _handing_out(self) -> Iterator[Any]:
        """A named tailer's batch: its stored position moves past each value just before it is handed out."""
        # How many were handed out is counted from the shared iterator, not
        # by this loop: read() and read_entry() take from it as well.
        # The core moves past a value before it is taken: when the move
        # fails (a cycle file cannot be reopened), the value is still next.
        advance, values, it = self._native.advance, self._batch, self._batch_it
        assert values is not None
        size, remaining = len(values), operator.length_hint
        while left := remaining(it):
            advance(size - left + 1)
            item = next(it, _NOTHING)
            if item is _NOTHING:  # emptied by a close meanwhile
                return
            yield item

    def _take(self) -> Any:
        """The batch's next value (or Entry), or _NOTHING when all were handed out."""
        it = self._batch_it
        if self._named:  # moved past first, as in _handing_out
            if not operator.length_hint(it):
                return _NOTHING
            self._native.advance(self._consumed() + 1)
        return next(it, _NOTHING)

    def _fill(self, slots: int, entries: bool) -> bool:
        """Peek at up to `slots` entries as a new batch (values or Entry, built in C); False when there is none."""
        self._settle()
        got = self._native.peek(slots, entries)
        if got is None:
            return False
        values, n, error = got
        self._batch = self._native.read_ahead = values
        if self._native.ptr is None:  # closed by another thread since the peek
            values.clear()
        self._batch_it, self._batch_entries = iter(values), entries
        self._batch_n, self._batch_error = n, error
        self._serve(self._batch_it, _NEITHER if self._named else _ENTRIES if entries else _VALUES)
        return True

    def _consumed(self) -> int:
        """How many values of the batch were handed out."""
        assert self._batch is not None
        return len(self._batch) - operator.length_hint(self._batch_it)

    def _drop_batch(self) -> None:
        assert self._batch is not None
        self._batch.clear()  # an abandoned iteration must not hand them out later
        self._batch = None
        self._batch_error = None
        self._serve(None, _NEITHER)

    def _settle(self) -> None:
        """Move the core's position just after the last entry handed out; forget the batch."""
        if self._batch is None:
            return
        self._native.advance(self._consumed())  # failing, it leaves the batch as it was
        self._drop_batch()

    def _finish_batch(self) -> None:
        """Drop the batch once all of it was handed out; raise the error that cut it short."""
        if self._batch is None or operator.length_hint(self._batch_it):
            return
        good = len(self._batch)
        error = self._batch_error
        # Moved first: failing, it leaves the batch to be finished again.
        self._native.advance(self._batch_n if error is None else good + 1)  # after the bad one
        self._drop_batch()
        if error is None:
            return
        self._readahead = 1
        raise error

    # -- position -----------------------------------------------------------------------------

    def _moved(self) -> None:
        """Before a move: settle, and read one entry at a time again."""
        self._settle()
        self._readahead = 1

    @property
    def index(self) -> int | None:
        """Index of the entry the next read returns (at the end: the next to be written), or None."""
        if self._batch is not None and self._native.ptr is not None:
            consumed = self._consumed()
            if consumed < self._batch_n:
                return self._batch_index(consumed)
            self._native.advance(consumed)
        return self._native.index()

    @property
    def last_read_index(self) -> int | None:
        """Index of the last entry read, None before any."""
        if self._batch is not None and self._native.ptr is not None:
            consumed = self._consumed()
            if consumed:
                return self._batch_index(consumed - 1)
            self._settle()
        return self._native.last_read_index()

    def to_index(self, index: int) -> bool:
        """Move to `index` so that the next read returns it; False (no move) when it does not exist."""
        if type(index) is not int:
            index = as_int(index, "index")
        if self._batch is not None:
            self._settle()
        self._readahead = 1
        if not 0 <= index <= INDEX_MAX:
            return False
        return self._native.to_index(index)

    def to_start(self) -> None:
        """Move to the start of the queue."""
        self._moved()
        self._native.to_start()

    def to_end(self) -> None:
        """Move to the end: forward, only new entries follow; backward, the newest comes first."""
        self._moved()
        self._native.to_end()

    def to_time(self, when: datetime | float) -> bool:
        """Move to the first entry at or after `when` (a datetime or epoch seconds); False if none."""
        ns = to_ns(when)
        self._moved()
        return self._native.to_time(ns)

    @property
    def direction(self) -> str:
        """The reading direction, "forward" or "backward"."""
        return self._native.direction()

    @direction.setter
    def direction(self, direction: str) -> None:
        if direction not in (FORWARD, BACKWARD):
            raise ArgumentError(f"direction must be 'forward' or 'backward', not {direction!r}")
        self._moved()
        self._native.set_direction(direction)

    # -- closing ------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the tailer; idempotent."""
        # Only empty the batch (as closing the queue does): another thread
        # may be reading, and its batch must stay a list it can count on.
        batch = self._batch
        if batch is not None:
            batch.clear()
        if self._native.queue.release(self._native, lambda: lifecycle.closing(self)):
            lifecycle.unregister(self)

    def __enter__(self) -> Tailer:
        with self._native.lock:
            self._native.live()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()

    def __repr__(self) -> str:
        name = "" if self._name is None else f" {self._name!r}"
        try:
            state = f"index={self.index} open"
        except QueueClosedError:
            state = "closed"
        return f"<tape.Tailer{name} of {self._path!r} {state}>"

    def read_view(self, timeout: float | None = None) -> memoryview | None:
        """The next entry's stored bytes (not decoded) as a read-only memoryview of the queue's file: no copy.

        None when there is none (after waiting up to `timeout` seconds). For
        large payloads: the checksum is checked, then the view is handed out
        and the tailer moves past the entry (a named tailer stores its
        position). The view keeps its part of the mapping alive, so it stays
        readable after the tailer moves on or the queue is closed, until it
        and every view made from it are released (`with t.read_view() as v:`,
        or `v.release()`); hold it briefly.
        """
        wait = None if timeout is None else as_seconds(timeout)  # checked first, as read() does
        self._moved()
        view = self._native.read_view()
        if view is None and wait is not None:
            deadline = time.monotonic() + wait
            while view is None and (remaining := deadline - time.monotonic()) > 0:
                self._native.wait(min(remaining, _WAIT_SLICE))
                view = self._native.read_view()
        return view
