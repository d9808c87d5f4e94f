"""TailerHandle: a C tailer, its batches (peeked, then advanced past what was handed out) and its moves."""

from __future__ import annotations

import errno
import itertools
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
PLAIN = (None, None, None)


def entry_attrs(at: Any, key: bytes | None) -> tuple[Any, int | None, tuple[int, int] | None]:
    """The (key, not_before, origin) fields of Entry from a tape_attrs (`key`: the key's bytes, None without)."""
    if key is not None and at.a_flags & lib.TAPE_A_KEY_STR:
        key = key.decode("utf-8", "surrogateescape")  # type: ignore[assignment]
    not_before = at.a_not_before or None
    origin = None if at.a_origin_index < 0 else (at.a_origin_index, at.a_origin_ts)
    return key, not_before, origin


def _with_attrs(data: bytes, ends: list[int], attrs: Any) -> tuple[bytes, list[int], list[tuple[Any, ...]]]:
    """A batch read with keys before payloads: the payloads alone, their ends, and each entry's attributes."""
    parts, fields, start = [], [], 0
    for k, end in enumerate(ends):
        at = attrs[k]
        key_len = at.a_key_len
        if key_len or at.a_not_before or at.a_origin_index >= 0:
            fields.append(entry_attrs(at, data[start : start + key_len] if key_len else None))
        else:
            fields.append(PLAIN)
        parts.append(data[start + key_len : end])
        start = end
    return b"".join(parts), list(itertools.accumulate(map(len, parts))), fields


class Batch:
    """Entries peeked in one call: their payloads back to back and where each ends.

    Indexes and timestamps stay in the tailer's buffers until asked for: a
    batch is valid until the tailer's next peek. `attrs` holds each entry's
    (key, not_before, origin), or is None when no entry has any.
    """

    __slots__ = ("data", "ends", "attrs", "_idx", "_ts")

    def __init__(self, data: bytes, ends: list[int], idx: Any, ts: Any, attrs: Any, n_attrs: int) -> None:
        self.attrs: list[tuple[Any, ...]] | None = None
        if n_attrs:
            data, ends, self.attrs = _with_attrs(data, ends, attrs)
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
                    return tuple.__new__(Entry, (e.e_index, e.e_timestamp, value, *entry_attrs(at, key)))
                return tuple.__new__(Entry, (e.e_index, e.e_timestamp, value, None, None, None))
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
        extra = batch.attrs if batch.attrs is not None else itertools.repeat(PLAIN)
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
