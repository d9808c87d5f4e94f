"""TailerHandle: a C tailer, its batches (peeked, then advanced past what was handed out) and its moves; Reader, the base of Tailer."""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Any

from tape._native._hot import BATCH_SLOTS, MSGPACK, OTHER, RAW, Batches, Reader, View, ascending, smallest, sums
from tape._native.core import (
    BACKWARD,
    FORWARD,
    INDEX_MAX,
    ChildHandle,
    address,
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
_PIN_RELEASE = address(ffi.addressof(lib, "tape_pin_release"))  # a View calls it when collected

__all__ = ["TailerHandle", "Reader", "BATCH_SLOTS", "RAW", "MSGPACK", "OTHER", "entry_attrs", "Columns", "ascending",
           "smallest", "sums"]

# ascending, smallest, sums (loops in C over columns of integers) are for tape.replicate's frames.
# A batch as columns (Batches.read_columns): indexes, timestamps, payload lengths, payloads,
# origin indexes and timestamps (None, None: no origin), keyed entries (None: none).
Columns = tuple[bytes, bytes, bytes, bytes, bytes | None, bytes | None, list[tuple[int, bytes, bool, int, bool]] | None]

_KEY_STR = lib.TAPE_A_KEY_STR
_TOMBSTONE = lib.TAPE_A_TOMBSTONE


def entry_attrs(key: bytes | None, flags: int, not_before: int, origin_index: int, origin_ts: int) -> tuple[Any, ...]:
    """The (key, not_before, origin, tombstone) fields of Entry from a tape_attrs' members (`key`: its bytes, None without)."""
    origin = None if origin_index < 0 else (origin_index, origin_ts)
    if key is not None and flags & _KEY_STR:
        return key.decode("utf-8", "surrogateescape"), not_before or None, origin, bool(flags & _TOMBSTONE)
    return key, not_before or None, origin, key is not None and bool(flags & _TOMBSTONE)


class TailerHandle(ChildHandle):
    """A C tailer. Every call holds `lock`, but peek and read_many (C holding
    the GIL, which a close needs first); closing frees it at once.

    Batches are peeked: the core's position stays where the batch starts
    until advance(k) moves it past the first k entries (any k, as often as
    needed while the batch is pending), so that a named tailer's stored
    position is exactly after what was handed out. `read_ahead` is the
    Tailer's current batch (the list its iterator hands values out of):
    closing empties it, so that nothing is handed out after a close.
    """

    CLOSED = "the tailer or its queue is closed"
    __slots__ = ("read_ahead", "_entry", "_batches", "batch_index")

    def __init__(self, queue: QueueHandle, ptr: Any) -> None:
        super().__init__(queue, ptr)
        self.read_ahead: list[Any] | None = None
        self._entry = ffi.new("tape_entry *")
        # Batches are peeked (or read) and built in C (tape/_native/_hot_batches.c).
        self._batches = Batches(address(ptr), Entry)
        self.batch_index = self._batches.index  # the index of entry k of the last peek

    def close(self) -> None:
        with self.lock:
            ptr, self.ptr = self.ptr, None
            if ptr is not None:
                self._batches.shut()
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
                at = e.e_attrs
                if at.a_key or at.a_not_before or at.a_origin_index >= 0:
                    key = ffi.unpack(ffi.cast("char *", at.a_key), at.a_key_len) if at.a_key else None
                    extra = entry_attrs(key, at.a_flags, at.a_not_before, at.a_origin_index, at.a_origin_ts)
                    return tuple.__new__(Entry, (e.e_index, e.e_timestamp, value, *extra))
                return tuple.__new__(Entry, (e.e_index, e.e_timestamp, value, None, None, None, False))
        check(rc, self.path)
        return None

    def decode_as(self, kind: int, decode: Any, decode_many: Any) -> None:
        """How peek() decodes values: RAW, MSGPACK or OTHER, with the codec's decode and decode_many (or None)."""
        self._batches.configure(kind, decode, decode_many)

    def peek(self, slots: int, entries: bool) -> tuple[list[Any], int, Exception | None] | None:
        """Up to `slots` entries from the position, which does not move (see advance); None when there is none.

        (values, n, error): the values (Entry when `entries`) up to the first
        that fails to decode, how many entries were peeked, and that failure.
        The Python objects are made in C, holding the GIL, which a close from
        another thread needs first: no lock is taken.
        """
        got = self._batches.peek(slots, entries)
        if isinstance(got, tuple):
            return got
        self._failed(got)
        return None

    def read_many(self, max_entries: int, max_bytes: int) -> list[Entry]:
        """Up to `max_entries` entries (at least one if any is there, however large) as Entry of their stored bytes, moving past them."""
        got = self._batches.read_many(max_entries, max_bytes)
        if isinstance(got, list):
            return got
        self._failed(got)
        return []

    def read_columns(self, max_entries: int, max_bytes: int) -> Columns | None:
        """read_many's entries as columns (Batches.read_columns), moving past them; None when there is none."""
        got = self._batches.read_columns(max_entries, max_bytes)
        if isinstance(got, tuple):
            return got
        self._failed(got)
        return None

    def _failed(self, rc: int | None) -> None:
        """What a Batches call that made nothing returned: None (closed: QueueClosedError), or a return code to check."""
        if rc is None:
            self.live()  # raises QueueClosedError
        else:
            check(rc, self.path)

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

    def read_view(self) -> memoryview | None:
        """The next entry's stored bytes as a read-only memoryview of the mapped file, moving past it; None when there is none.

        The view holds its mapping (tape_read_pinned) until it and every
        view made from it are released or collected; the object under it
        (a View) is read-only as well.
        """
        pin = ffi.new("tape_pin **")
        with self.lock:
            e = self._entry
            rc = lib.tape_read_pinned(self.live(), e, pin)
            if rc == 1:
                return memoryview(View(address(e.e_data), e.e_len, address(pin[0]), _PIN_RELEASE))
        check(rc, self.path)
        return None
