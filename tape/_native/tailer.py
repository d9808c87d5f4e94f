"""TailerHandle: a C tailer, its batches (peeked, then advanced past what was handed out) and its moves."""

from __future__ import annotations

import errno
import itertools
import operator
import struct
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


# What Entry adds to (index, timestamp, value) for an entry without attributes.
PLAIN = (None, None, None, False)
# A tape_attrs as bytes: a_key (a pointer), a_key_len, a_flags, a_not_before, a_origin_index, a_origin_ts.
_ATTRS = struct.Struct("@PIIqqq")
assert _ATTRS.size == ffi.sizeof("tape_attrs")
_KEY_LEN = operator.itemgetter(1)
_KEY_STR = lib.TAPE_A_KEY_STR
_TOMBSTONE = lib.TAPE_A_TOMBSTONE


def entry_attrs(key: bytes | None, flags: int, not_before: int, origin_index: int, origin_ts: int) -> tuple[Any, ...]:
    """The (key, not_before, origin, tombstone) fields of Entry from a tape_attrs' members (`key`: its bytes, None without)."""
    origin = None if origin_index < 0 else (origin_index, origin_ts)
    if key is not None and flags & _KEY_STR:
        return key.decode("utf-8", "surrogateescape"), not_before or None, origin, bool(flags & _TOMBSTONE)
    return key, not_before or None, origin, key is not None and bool(flags & _TOMBSTONE)


def _fields(row: tuple[int, ...], start: int, spans: bytes) -> tuple[Any, ...]:
    """Entry's attribute fields from a row of _ATTRS whose entry's span starts at `start` of `spans`."""
    _, key_len, flags, not_before, origin_index, origin_ts = row
    key: Any = None
    if key_len:
        key = spans[start : start + key_len]
        if flags & _KEY_STR:
            key = key.decode("utf-8", "surrogateescape")
    elif not (not_before or origin_index >= 0):
        return PLAIN
    return key, not_before or None, None if origin_index < 0 else (origin_index, origin_ts), bool(key_len and flags & _TOMBSTONE)


class Batch:
    """Entries peeked in one call: their payloads back to back and where each ends.

    Indexes and timestamps stay in the tailer's buffers until asked for: a
    batch is valid until the tailer's next peek. When an entry has
    attributes, the core put each key before its payload: the payloads are
    taken apart from the keys at once, the attributes when asked for.
    """

    __slots__ = ("data", "ends", "_idx", "_ts", "_rows", "_spans", "_starts")

    def __init__(self, data: bytes, ends: list[int], idx: Any, ts: Any, attrs: Any, n_attrs: int) -> None:
        self._rows: list[tuple[int, ...]] | None = None
        if n_attrs:
            # C-speed passes: the attributes as tuples, then each payload after its key.
            self._rows = rows = list(_ATTRS.iter_unpack(ffi.buffer(attrs, len(ends) * _ATTRS.size)))
            self._spans, self._starts = data, (0, *ends[:-1])
            payloads = list(map(data.__getitem__, map(slice, map(operator.add, self._starts, map(_KEY_LEN, rows)), ends)))
            data, ends = b"".join(payloads), list(itertools.accumulate(map(len, payloads)))
        self.data = data
        self.ends = ends
        self._idx = idx
        self._ts = ts

    def attrs(self) -> list[tuple[Any, ...]] | None:
        """Each entry's (key, not_before, origin, tombstone); None when no entry has any."""
        if self._rows is None:
            return None
        return list(map(_fields, self._rows, self._starts, itertools.repeat(self._spans)))

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
        self._buffers: tuple[Any, Any, Any, Any, Any, Any] | None = None

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
                at = e.e_attrs
                if at.a_key or at.a_not_before or at.a_origin_index >= 0:
                    key = ffi.unpack(ffi.cast("char *", at.a_key), at.a_key_len) if at.a_key else None
                    extra = entry_attrs(key, at.a_flags, at.a_not_before, at.a_origin_index, at.a_origin_ts)
                    return tuple.__new__(Entry, (e.e_index, e.e_timestamp, value, *extra))
                return tuple.__new__(Entry, (e.e_index, e.e_timestamp, value, None, None, None, False))
        check(rc, self.path)
        return None

    def _batch_buffers(self) -> tuple[Any, Any, Any, Any, Any, Any]:
        """The buffers of batches: payloads, indexes, timestamps, ends, attributes, and their count."""
        if self._buffers is None:
            self._buffers = (
                ffi.new("char[]", BATCH_BYTES),
                ffi.new("int64_t[]", BATCH_SLOTS),
                ffi.new("int64_t[]", BATCH_SLOTS),
                ffi.new("uint64_t[]", BATCH_SLOTS),
                ffi.new("tape_attrs[]", BATCH_SLOTS),
                ffi.new("size_t *"),
            )
        return self._buffers

    def peek(self, slots: int) -> Batch | None:
        """Up to `slots` entries from the position, which does not move (see advance); None when there is none."""
        buf, idx, ts, ends, attrs, n_attrs = self._batch_buffers()
        with self.lock:
            ptr = self.live()
            n = lib.tape_peek_many_ex(ptr, buf, BATCH_BYTES, idx, ts, ends, min(slots, BATCH_SLOTS), attrs, n_attrs)
            if n == lib.TAPE_EINVAL:  # the first entry is larger than the buffer: peek at it alone
                buf = ffi.new("char[]", ends[0])
                n = lib.tape_peek_many_ex(ptr, buf, ends[0], idx, ts, ends, 1, attrs, n_attrs)
            if n > 0:
                return Batch(ffi.unpack(buf, ends[n - 1]), ffi.unpack(ends, n), idx, ts, attrs, n_attrs[0])
        check(n, self.path)
        return None

    def read_many(self, max_entries: int, max_bytes: int) -> list[Entry]:
        """Up to `max_entries` entries (at least one if any is there, however large) as Entry of their stored bytes, moving past them."""
        buf, idx, ts, ends, attrs, n_attrs = self._batch_buffers()
        if max_entries > BATCH_SLOTS:
            idx, ts = ffi.new("int64_t[]", max_entries), ffi.new("int64_t[]", max_entries)
            ends, attrs = ffi.new("uint64_t[]", max_entries), ffi.new("tape_attrs[]", max_entries)
        if max_bytes > BATCH_BYTES:
            buf = ffi.new("char[]", max_bytes)
        with self.lock:
            ptr = self.live()
            n = lib.tape_read_many_ex(ptr, buf, max_bytes, idx, ts, ends, max_entries, attrs, n_attrs)
            if n == lib.TAPE_EINVAL:  # the first entry is larger than max_bytes: read it alone
                buf = ffi.new("char[]", ends[0])
                n = lib.tape_read_many_ex(ptr, buf, ends[0], idx, ts, ends, 1, attrs, n_attrs)
            if n > 0:
                batch = Batch(ffi.unpack(buf, ends[n - 1]), ffi.unpack(ends, n), idx, ts, attrs, n_attrs[0])
        if n <= 0:
            check(n, self.path)
            return []
        data, offsets = batch.data, batch.ends
        fields = zip(batch.indexes(), batch.timestamps(), map(data.__getitem__, map(slice, (0, *offsets), offsets)))
        extra = batch.attrs() or itertools.repeat(PLAIN)
        return [tuple.__new__(Entry, f + x) for f, x in zip(fields, extra)]

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
        view made from it are released or collected.
        """
        pin = ffi.new("tape_pin **")
        with self.lock:
            e = self._entry
            rc = lib.tape_read_pinned(self.live(), e, pin)
            if rc == 1:
                held = pin[0]
                data = ffi.gc(e.e_data, lambda _: lib.tape_pin_release(held))
                return memoryview(ffi.buffer(data, e.e_len)).toreadonly()
        check(rc, self.path)
        return None
