"""TailerHandle: a C tailer, its batches (peeked, then advanced past what was handed out) and its moves."""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Any

from tape._native.core import (
    BACKWARD,
    FORWARD,
    INDEX_MAX,
    ChildHandle,
    check,
    ffi,
    lib,
    none_if_negative,
)
from tape.records import Entry

if TYPE_CHECKING:
    from tape._native.queue import QueueHandle

_DIRECTIONS = {FORWARD: lib.TAPE_FORWARD, BACKWARD: lib.TAPE_BACKWARD}
_TAPE_ADVANCE = lib.tape_tailer_advance  # a named tailer's iteration calls it for each value

# Per-tailer buffers for reading a batch of entries in one call into the core.
BATCH_BYTES = 1 << 20
BATCH_SLOTS = 4096


class Batch:
    """Entries peeked in one call: their payloads back to back and where each ends.

    Indexes and timestamps stay in the tailer's buffers until asked for: a
    batch is valid until the tailer's next peek.
    """

    __slots__ = ("data", "ends", "_idx", "_ts")

    def __init__(self, data: bytes, ends: list[int], idx: Any, ts: Any) -> None:
        self.data = data
        self.ends = ends
        self._idx = idx
        self._ts = ts

    def index(self, k: int) -> int:
        """The index of entry k."""
        return int(self._idx[k])

    def indexes(self) -> list[int]:
        indexes: list[int] = ffi.unpack(self._idx, len(self.ends))
        return indexes

    def timestamps(self) -> list[int]:
        timestamps: list[int] = ffi.unpack(self._ts, len(self.ends))
        return timestamps


class TailerHandle(ChildHandle):
    """A C tailer. Every call holds `lock`; closing frees it at once.

    Batches are peeked: the core's position stays where the batch starts
    until advance(k) moves it past the first k entries (any k, as often as
    needed while the batch is pending), so that a named tailer's stored
    position is exactly after what was handed out. `read_ahead` is the
    Tailer's current batch (the list its iterator hands values out of):
    closing empties it, so that nothing is handed out after a close.
    """

    CLOSED = "the tailer or its queue is closed"
    __slots__ = ("read_ahead", "_entry", "_buffers")

    def __init__(self, queue: QueueHandle, ptr: Any) -> None:
        super().__init__(queue, ptr)
        self.read_ahead: list[Any] | None = None
        self._entry = ffi.new("tape_entry *")
        self._buffers: tuple[Any, Any, Any, Any] | None = None

    def close(self) -> None:
        with self.lock:
            ptr, self.ptr = self.ptr, None
            if ptr is not None:
                lib.tape_tailer_close(ptr)
            if self.read_ahead is not None:
                self.read_ahead.clear()

    def read_one(self) -> Entry | None:
        """The next entry (its value the payload's bytes) read alone, moving past it; None when there is none."""
        e = self._entry
        with self.lock:  # another thread's read may reuse self._entry once it is released
            rc = lib.tape_read(self.live(), e)
            if rc == 1:
                value = ffi.unpack(ffi.cast("char *", e.e_data), e.e_len)
                return tuple.__new__(Entry, (e.e_index, e.e_timestamp, value))
        check(rc, self.path)
        return None

    def peek(self, slots: int) -> Batch | None:
        """Up to `slots` entries from the position, which does not move (see advance); None when there is none."""
        if self._buffers is None:
            self._buffers = (
                ffi.new("char[]", BATCH_BYTES),
                ffi.new("int64_t[]", BATCH_SLOTS),
                ffi.new("int64_t[]", BATCH_SLOTS),
                ffi.new("uint64_t[]", BATCH_SLOTS),
            )
        buf, idx, ts, ends = self._buffers
        with self.lock:
            ptr = self.live()
            n = lib.tape_peek_many(ptr, buf, BATCH_BYTES, idx, ts, ends, min(slots, BATCH_SLOTS))
            if n == lib.TAPE_EINVAL:  # the first entry is larger than the buffer: peek at it alone
                buf = ffi.new("char[]", ends[0])
                n = lib.tape_peek_many(ptr, buf, ends[0], idx, ts, ends, 1)
            if n > 0:
                return Batch(ffi.unpack(buf, ends[n - 1]), ffi.unpack(ends, n), idx, ts)
        check(n, self.path)
        return None

    def advance(self, k: int) -> None:
        """Move past the first `k` entries of the batch peek() returned last."""
        with self.lock:
            ptr = self.ptr  # inline: a named tailer's iteration calls this for every value
            rc = _TAPE_ADVANCE(ptr if ptr is not None else self.live(), k)
        if rc:
            check(rc, self.path)

    def wait(self, seconds: float) -> None:
        """Sleep until a writer publishes or `seconds` pass (a signal ends it early)."""
        with self.lock:
            rc = lib.tape_wait(self.live(), int(seconds * 1e9))
        if rc < 0 and rc != -errno.EINTR:  # a signal: Python handles it on return
            check(rc, self.path)

    def to_index(self, index: int) -> bool:
        lock = self.lock
        lock.acquire()  # random access is a hot path: acquire/release cost less than `with`
        try:
            rc: int = lib.tape_tailer_to_index(self.live(), index)
        finally:
            lock.release()
        if rc < 0:
            check(rc, self.path)
        return rc == 1

    def to_start(self) -> None:
        with self.lock:
            check(lib.tape_tailer_to_start(self.live()), self.path)

    def to_end(self) -> None:
        with self.lock:
            check(lib.tape_tailer_to_end(self.live()), self.path)

    def to_time(self, ns: int) -> bool:
        with self.lock:
            rc: int = lib.tape_tailer_to_time(self.live(), min(max(ns, 0), INDEX_MAX))
        check(rc, self.path)
        return rc == 1

    def _position(self, which: Any) -> int | None:
        """tape_tailer_index or tape_tailer_last_read_index: None where there is none."""
        with self.lock:
            index: int = which(self.live())
        if index < -1:
            check(index, self.path)
        return none_if_negative(index)

    def index(self) -> int | None:
        """The index the next read returns (at the end: the next to be written), or None."""
        return self._position(lib.tape_tailer_index)

    def last_read_index(self) -> int | None:
        """The index of the last entry read, or None before any."""
        return self._position(lib.tape_tailer_last_read_index)

    def direction(self) -> str:
        with self.lock:
            rc: int = lib.tape_tailer_direction(self.live())
        check(rc, self.path)
        return BACKWARD if rc == lib.TAPE_BACKWARD else FORWARD

    def set_direction(self, direction: str) -> None:
        with self.lock:
            check(lib.tape_tailer_set_direction(self.live(), _DIRECTIONS[direction]), self.path)
