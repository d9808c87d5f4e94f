"""AppenderHandle: a C appender, called without a lock (writing is the hottest path); Writer, the base of Appender."""

from __future__ import annotations

import array
import itertools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tape._native._hot import MSGPACK, OTHER, RAW, Writer, smallest
from tape._native.core import ChildHandle, address, check, ffi, lib, none_if_negative
from tape.errors import TapeError

if TYPE_CHECKING:
    from tape._native.queue import QueueHandle

_TAPE_APPEND = lib.tape_append  # bound once: appending is the hottest call
_TAPE_APPEND_ATTRS = lib.tape_append_attrs
KEY_MAX = lib.TAPE_KEY_MAX  # bytes of an entry's key
KEY_STR = lib.TAPE_A_KEY_STR  # flag: the key was a str
TOMBSTONE = lib.TAPE_A_TOMBSTONE  # flag: a delete of the key


def attrs_struct(key: bytes | None, flags: int, not_before: int, origin: tuple[int, int] | None) -> Any:
    """A tape_attrs for the core (checked arguments): key and its flags (TAPE_A_*), not_before (ns, 0 none), origin.

    The key's bytes must stay alive for as long as the struct is used.
    """
    at = ffi.new("tape_attrs *")
    if key is not None:
        at.a_key = ffi.from_buffer(key)
        at.a_key_len = len(key)
        at.a_flags = flags
    at.a_not_before = not_before
    at.a_origin_index, at.a_origin_ts = (-1, 0) if origin is None else origin
    return at


__all__ = ["AppenderHandle", "Writer", "RAW", "MSGPACK", "OTHER", "KEY_MAX", "KEY_STR", "TOMBSTONE", "attrs_struct",
           "smallest"]


class AppenderHandle(ChildHandle):
    """A C appender. Closing shuts it; its memory is freed with this object."""

    CLOSED = "the appender is closed"
    __slots__ = ("_kept",)

    def __init__(self, queue: QueueHandle, ptr: Any) -> None:
        super().__init__(queue, ptr)
        self._kept: Any = None

    def close(self) -> None:
        with self.lock:
            ptr, self.ptr = self.ptr, None
            if ptr is not None:
                lib.tape_appender_shut(ptr)
                self._kept = ptr

    def __del__(self) -> None:
        if self._kept is not None:
            lib.tape_appender_close(self._kept)

    def append_call(self) -> tuple[Callable[[Any, bytes, int, int], int], Any]:
        """The core's tape_append and this appender's C pointer, for write_encoded and _write_slow.

        f(ptr, data, len(data), ts) returns the new index, or a negative
        return code that checked() turns into its exception. Calling it after
        a close is safe (the core refuses a shut appender: TAPE_ECLOSED) for as
        long as this handle lives, which frees the C appender.
        """
        return _TAPE_APPEND, self.live()

    def address(self) -> int:
        """The C appender's address, for Writer (valid for as long as this handle lives)."""
        return address(self.live())

    def append_attrs_call(self) -> Callable[..., int]:
        """The core's tape_append_attrs, for write() with attributes, called as append_call's function is.

        f(ptr, data, len(data), ts, key (b"": none), len(key), flags, not_before,
        origin index (-1 none), origin timestamp).
        """
        return _TAPE_APPEND_ATTRS  # type: ignore[no-any-return]

    def checked(self, rc: int) -> int:
        """`rc` when it is not an error; else its exception."""
        check(rc, self.path, appending=True)
        return rc

    def append_ex(self, data: bytes, ts: int, attrs: Any) -> int:
        """Append `data` with the attributes `attrs` (attrs_struct): the new index, or a code for checked()."""
        index: int = lib.tape_append_ex(self.live(), data, len(data), ts, attrs)
        return index

    def append_many(self, parts: list[bytes], ts: int, attrs: Any = ffi.NULL) -> int:
        """Append each of `parts` (with `attrs` when given, attrs_struct); the last index.

        A failure midway says (in a note) how many went in.
        """
        ptr = self.live()
        ends = ffi.from_buffer("uint64_t[]", array.array("Q", itertools.accumulate(map(len, parts))))
        written = ffi.new("size_t *")
        index: int = lib.tape_append_many_ex(ptr, b"".join(parts), ends, len(parts), ts, written, attrs)
        return self.checked_many(index, written[0], len(parts))

    def checked_many(self, rc: int, written: int, n: int) -> int:
        """`rc` of a batch of `n` when it is not an error; else its exception, noting that `written` went in."""
        if rc < 0:
            try:
                check(rc, self.path, appending=True)
            except TapeError as exc:
                exc.add_note(f"{written} of {n} entries were written before the error")
                raise
        return rc

    def append_if(self, data: bytes, ts: int, last: int | None) -> int | None:
        """Append `data` only if the queue's last entry is `last` (None: empty); None when another came first."""
        ptr = self.live()
        index: int = lib.tape_append_if(ptr, data, len(data), ts, -1 if last is None else last)
        if index == lib.TAPE_ECONFLICT:
            return None
        check(index, self.path, appending=True)
        return index

    def append_if_key(self, data: bytes, ts: int, key: bytes, flags: int, last: int | None) -> int | None:
        """Append `data` with `key` only if the key's newest entry is `last` (None: none); None when it is not."""
        attrs = attrs_struct(key, flags, 0, None)
        index: int = lib.tape_append_if_key(self.live(), data, len(data), ts, -1 if last is None else last, attrs)
        if index == lib.TAPE_ECONFLICT:
            return None
        check(index, self.path, appending=True)
        return index

    def last_index(self) -> int | None:
        """Index of the last entry this appender wrote, None before any."""
        return none_if_negative(lib.tape_appender_last_index(self.live()))

    def sync(self) -> None:
        """Make everything written to the queue so far durable."""
        check(lib.tape_appender_sync(self.live()), self.path, appending=True)

    def sync_quietly(self) -> bool:
        """sync() for a background flusher: False (nothing raised) once closed or failed."""
        ptr = self.ptr
        return ptr is not None and lib.tape_appender_sync(ptr) >= 0

    def append_many_each(self, parts: list[bytes], ts: int, not_before: array.array[int] | None,
                         origin_index: array.array[int] | None, origin_ts: array.array[int] | None) -> int:
        """append_many with attributes per entry, as columns (None: none): not_before (0 none), origin index (-1 none) and timestamp."""
        ptr = self.live()
        ends = ffi.from_buffer("uint64_t[]", array.array("Q", itertools.accumulate(map(len, parts))))
        written = ffi.new("size_t *")
        cols = [ffi.NULL if c is None else ffi.from_buffer("int64_t[]", c) for c in (not_before, origin_index, origin_ts)]
        index: int = lib.tape_append_many_each(ptr, b"".join(parts), ends, len(parts), ts, written, *cols)
        return self.checked_many(index, written[0], len(parts))

    def append_run(self, data: Any, ends: array.array[int], ts: int, origin_index: array.array[int],
                   origin_ts: array.array[int]) -> int:
        """Append the entries of `data` (a buffer), entry k ending at ends[k], with their origins (columns); the last index."""
        ptr = self.live()
        written = ffi.new("size_t *")
        index: int = lib.tape_append_many_each(ptr, ffi.from_buffer(data), ffi.from_buffer("uint64_t[]", ends), len(ends),
                                               ts, written, ffi.NULL, ffi.from_buffer("int64_t[]", origin_index),
                                               ffi.from_buffer("int64_t[]", origin_ts))
        return self.checked_many(index, written[0], len(ends))
