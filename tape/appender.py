"""The Appender: encodes values and appends them to a queue; safe to share between threads."""

from __future__ import annotations

import time
from array import array
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from tape import codecs, lifecycle
from tape._args import as_index, as_int, shown
from tape._native import INDEX_MAX, AppenderHandle
from tape._native.appender import (
    KEY_MAX,
    KEY_STR,
    MSGPACK,
    OTHER,
    RAW,
    TOMBSTONE,
    Writer,
    attrs_struct,
    smallest,
)
from tape._time import duration_ns, to_ns
from tape.errors import ArgumentError, ArgumentTypeError, QueueClosedError
from tape.records import Entry

if TYPE_CHECKING:
    from tape.queue import Queue

__all__ = ["Appender"]

_BYTES_ONLY = frozenset({bytes})


def _key(key: Any, errors: str) -> tuple[bytes, int]:
    """A key's bytes (a str as UTF-8, with `errors`) and its flags (KEY_STR for a str); checked."""
    if isinstance(key, str):
        try:
            data, flags = key.encode("utf-8", errors), KEY_STR
        except UnicodeEncodeError:
            raise ArgumentError(f"key must be text that UTF-8 can hold, not {shown(key)}") from None
    elif isinstance(key, bytes):
        data, flags = bytes(key), 0
    else:
        raise ArgumentTypeError(f"key must be a str or bytes, not {type(key).__name__}")
    if not 0 < len(data) <= KEY_MAX:
        raise ArgumentError(f"key must be 1 to {KEY_MAX} bytes, not {len(data)}")
    return data, flags


def key_bytes(key: Any) -> bytes:
    """What a key is compared by: its bytes (a str's UTF-8, its escaped bytes as they were read); checked."""
    return _key(key, "surrogateescape")[0]


def not_before_ns(not_before: Any) -> int:
    """write()'s not_before= (a datetime or epoch seconds) in ns since the epoch; checked as write() checks it."""
    return _when(None, not_before)[0]


def _when(delay: Any, not_before: Any) -> tuple[int, bool]:
    """delay= or not_before= (checked) in ns, and whether it counts from the write's time."""
    if delay is not None and not_before is not None:
        raise ArgumentError("give delay or not_before, not both")
    if not_before is not None:
        return _epoch_ns(to_ns(not_before), "not_before"), False
    return duration_ns(delay, "delay"), True


def _epoch_ns(ns: int, what: str) -> int:
    """`ns` as a time after 1970, in ns since the epoch; checked."""
    if not 0 < ns <= INDEX_MAX:
        raise ArgumentError(f"{what} must be a time after 1970 (1 to 2**63-1 ns since the epoch), not {shown(ns)}")
    return ns


class Appender(Writer):
    """Appends entries to a queue; safe to share between threads.

    write(), write_many(), write_if() and delete() are Writer's, in C
    (tape/_native/_hot_writer.c): what C does not do (keywords other than
    key=, a clock, a key to reject, a sync or retention after the write, an
    error) it hands to _write_slow, _write_many_slow, _write_if_slow,
    _delete_slow, _after and _after_many.
    """

    def __init__(
        self,
        queue: Queue,
        native: AppenderHandle,
        *,
        clock: Callable[[], int] | None,
        on_roll: Callable[[int], int] | None,
    ) -> None:
        """An appender of `queue` (Queue.appender makes them); `on_roll(index)`, when
        given, runs after a write lands in a new cycle and says where the next starts."""
        self._queue = queue  # an appender in use keeps its queue open
        self._native = native
        codec = type(queue.codec)
        kind = RAW if codec is codecs.RawCodec else MSGPACK if codec is codecs.MsgpackCodec else OTHER
        self._hot_setup(native, native.address(), kind, queue.codec.encode)
        self._fast = clock is None
        self._append, self._ptr = native.append_call()
        self._append_attrs = native.append_attrs_call()
        self._path = queue.path
        self._encode = queue.codec.encode
        self._raw = type(queue.codec) is codecs.RawCodec
        self._clock = clock
        self._on_roll = on_roll
        self._always = queue.sync == "always"
        # retention= runs when a write lands in a cycle newer than this index.
        self._next_roll = 0 if on_roll is not None else INDEX_MAX
        # A write whose result is not below this has more to do (sync,
        # retention): C hands it to _after; as one below 0 (an error).
        self._watch = 0 if self._always else self._next_roll
        lifecycle.opening(self)
        lifecycle.register(self, parent=queue)

    def _timestamp(self) -> int:
        """The queue's clock() in ns, checked, or 0: the core reads the wall clock."""
        clock = self._clock
        if clock is None:
            return 0
        ns = clock()
        if not isinstance(ns, int) or isinstance(ns, bool):
            raise ArgumentTypeError(f"{self._path}: the clock must return an int of ns, not {type(ns).__name__}")
        if not 0 < ns <= INDEX_MAX:
            raise ArgumentError(f"{self._path}: the clock returned {shown(ns)}, not ns since the epoch (1 to 2**63-1)")
        return ns

    def _after(self, index: int) -> int:
        """After an append that returned `index` (or an error): sync (sync="always"), apply retention."""
        index = self._native.checked(index)
        if self._always:
            self._native.sync()
        if self._on_roll is not None and index >= self._next_roll:
            self._next_roll = self._on_roll(index)
            if not self._always:
                self._watch = self._next_roll
        return index

    def _write_slow(self, obj: Any, key: Any = None, delay: Any = None, not_before: Any = None) -> int:
        """write() with keywords, or on a queue with a clock (Writer.write hands them here)."""
        kb, flags = (b"", 0) if key is None else _key(key, "strict")
        if delay is None and not_before is None:
            when, relative = 0, False
        else:
            when, relative = _when(delay, not_before)
        data = obj if self._raw and type(obj) is bytes else self._encode(obj)
        ts = 0 if self._clock is None else self._timestamp()
        if relative:
            when = self._not_before_ns(ts, when)
        index: int = self._append_attrs(self._ptr, data, len(data), ts, kb, len(kb), flags, when, -1, 0)
        if 0 <= index < self._watch:
            return index
        return self._after(index)

    @staticmethod
    def _not_before_ns(ts: int, delay: int) -> int:
        """The time `delay` ns after a write at `ts` (0: now), checked."""
        return _epoch_ns((ts or time.time_ns()) + delay, "delay")

    def _write_many_slow(self, objs: Iterable[Any], *, delay: Any = None, not_before: Any = None) -> int:
        """write_many() with keywords, of an iterable other than a list or a tuple, or on a queue with a clock."""
        when = None if delay is None and not_before is None else _when(delay, not_before)
        if self._raw:
            # bytes need no encoding: check the whole batch's types at C speed
            parts = objs if type(objs) is list else list(objs)
            if not set(map(type, parts)) <= _BYTES_ONLY:
                parts = list(map(self._encode, parts))
        else:
            parts = list(map(self._encode, objs))
        if not parts:
            raise ArgumentError("write_many needs at least one value")
        ts = self._timestamp()
        if when is None:
            return self._after(self._native.append_many(parts, ts))
        ns = self._not_before_ns(ts, when[0]) if when[1] else when[0]
        return self._after(self._native.append_many(parts, ts, attrs_struct(None, 0, ns, None)))

    def _after_many(self, index: int, written: int, n: int) -> int:
        """_after for a batch of `n` of which `written` went in."""
        return self._after(self._native.checked_many(index, written, n))

    def write_encoded(
        self,
        data: bytes,
        *,
        key: str | bytes | None = None,
        not_before: int | None = None,
        origin: tuple[int, int] | None = None,
        tombstone: bool = False,
    ) -> int:
        """Append `data`, bytes already encoded by the queue's codec, as they are; return the index.

        key as in write(); not_before in ns since the epoch; origin the
        (index, timestamp in ns) the entry had in the queue it comes from;
        tombstone True writes a delete of `key` (as delete() does). For
        copying entries between queues (Entry.value of
        Tailer.read_encoded_batch): a key read back as a str is written back
        exactly.
        """
        if type(data) is not bytes:
            raise ArgumentTypeError(f"data must be bytes, not {type(data).__name__}")
        if type(tombstone) is not bool:
            raise ArgumentTypeError(f"tombstone must be a bool, not {type(tombstone).__name__}")
        if tombstone and key is None:
            raise ArgumentError("a tombstone needs a key")
        kb, flags = (None, 0) if key is None else _key(key, "surrogateescape")
        flags |= TOMBSTONE if tombstone else 0
        nb = 0 if not_before is None else _epoch_ns(as_int(not_before, "not_before"), "not_before")
        pair = None
        if origin is not None:
            if not isinstance(origin, tuple) or len(origin) != 2:
                raise ArgumentTypeError(f"origin must be an (index, timestamp) pair, not {shown(origin)}")
            pair = (as_index(origin[0], "origin's index"), as_index(origin[1], "origin's timestamp"))
        ts = self._timestamp()
        if kb is None and not nb and pair is None:
            return self._after(self._append(self._ptr, data, len(data), ts))
        return self._after(self._native.append_ex(data, ts, attrs_struct(kb, flags, nb, pair)))

    def _write_if_slow(self, obj: Any, last: int | None = None, *, key: str | bytes | None = None) -> int | None:
        """write_if() on a queue with a clock, or with arguments C does not take (Writer.write_if hands them here)."""
        expected = None if last is None else as_index(last, "last")
        kb, flags = (b"", 0) if key is None else _key(key, "strict")
        data = self._encode(obj)
        if key is None:
            index = self._native.append_if(data, self._timestamp(), expected)
        else:
            index = self._native.append_if_key(data, self._timestamp(), kb, flags, expected)
        return None if index is None else self._after(index)

    def _delete_slow(self, key: str | bytes) -> int:
        """delete() on a queue with a clock or another codec than raw and msgpack, or of a key C does not take."""
        kb, flags = _key(key, "strict")
        data = b"" if self._raw else self._encode(None)
        ts = 0 if self._clock is None else self._timestamp()
        return self._after(self._append_attrs(self._ptr, data, len(data), ts, kb, len(kb), flags | TOMBSTONE, 0, -1, 0))

    @property
    def last_index(self) -> int | None:
        """Index of the last entry this appender wrote, None before any."""
        return self._native.last_index()

    def sync(self) -> None:
        """Make everything written to the queue so far durable on disk."""
        self._native.sync()

    async def awrite(self, obj: Any) -> int:
        """write(obj) for asyncio code; it does not wait (a write takes microseconds)."""
        return self.write(obj)

    def close(self) -> None:
        """Close it; idempotent."""
        if self._native.queue.release(self._native, lambda: lifecycle.closing(self)):
            lifecycle.unregister(self)

    def __enter__(self) -> Appender:
        self._native.live()  # raises QueueClosedError once closed
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()

    def __repr__(self) -> str:
        try:
            state = f"last_index={self._native.last_index()} open"
        except QueueClosedError:
            state = "closed"
        return f"<tape.Appender of {self._path!r} {state}>"

    def _write_encoded_run(self, data: bytes | memoryview, ends: array[int], origin_indexes: array[int],
                           origin_timestamps: array[int]) -> int:
        """write_encoded_many of entries without key or not_before, given as columns (tape.replicate's ingester); the last index.

        `data` holds the stored bytes back to back, entry k ending at
        ends[k] (an array "Q"); each entry's origin is (origin_indexes[k],
        origin_timestamps[k]) (arrays "q", not negative).
        """
        n = len(ends)
        if not n or not len(origin_indexes) == len(origin_timestamps) == n or ends[-1] != len(data):
            raise ArgumentError("_write_encoded_run: columns of one or more entries, of one length, ending at the data's end")
        if (ends.typecode, origin_indexes.typecode, origin_timestamps.typecode) != ("Q", "q", "q"):
            raise ArgumentTypeError("_write_encoded_run: the columns are arrays of typecodes Q, q and q")
        if smallest(origin_indexes) < 0 or smallest(origin_timestamps) < 0:
            raise ArgumentError("_write_encoded_run: an origin's index and timestamp are not negative")
        return self._after(self._native.append_run(data, ends, self._timestamp(), origin_indexes, origin_timestamps))

    def write_encoded_many(self, items: Iterable[Any]) -> int:
        """write_encoded of many entries, in as few core calls as their keys allow; the last index.

        Each item is (data, key, not_before, origin, tombstone) as write_encoded
        takes them, or an Entry of another queue (Tailer.read_encoded_batch),
        whose origin is its own origin when it has one (a copy of a copy keeps
        the first queue's), else its (index, timestamp). Every item is checked
        before anything is written. Runs of entries without a key go in one
        core call each; if the core fails midway, the entries before the
        failing one stay written (a note says how many).
        """
        rows = items if type(items) is list else list(items)
        if not rows:
            raise ArgumentError("write_encoded_many needs at least one entry")
        if Entry in set(map(type, rows)):
            rows = [(r.value, r.key, r.not_before, r.origin or (r.index, r.timestamp), r.tombstone)
                    if type(r) is Entry else r for r in rows]
        try:
            datas, keys, not_befores, origins, tombstones = zip(*rows)
        except (TypeError, ValueError):
            raise ArgumentTypeError("write_encoded_many takes Entries or (data, key, not_before, origin, "
                                    "tombstone) tuples") from None
        n = len(datas)
        if not set(map(type, datas)) <= _BYTES_ONLY:
            raise ArgumentTypeError("write_encoded_many: every data must be bytes")
        if not set(map(type, tombstones)) <= {bool}:
            raise ArgumentTypeError("write_encoded_many: every tombstone must be a bool")
        nb = None if not_befores.count(None) == n else array(
            "q", (0 if t is None else _epoch_ns(as_int(t, "not_before"), "not_before") for t in not_befores))
        oi = ots = None
        missing = origins.count(None)
        if missing != n:
            pairs = [(-1, 0) if o is None else o for o in origins] if missing else origins
            if not set(map(type, pairs)) <= {tuple} or set(map(len, pairs)) != {2}:
                raise ArgumentTypeError("write_encoded_many: an origin is an (index, timestamp) pair")
            indexes, timestamps = zip(*pairs)
            if bool in set(map(type, indexes)) | set(map(type, timestamps)):
                raise ArgumentTypeError("write_encoded_many: an origin is a pair of ints, not bools")
            try:
                oi, ots = array("q", indexes), array("q", timestamps)
            except (TypeError, OverflowError) as exc:
                raise ArgumentTypeError(f"write_encoded_many: an origin is a pair of ints ({exc})") from None
            if min(timestamps) < 0 or min(indexes) < (-1 if missing else 0) or (missing and indexes.count(-1) != missing):
                raise ArgumentError("write_encoded_many: an origin's index and timestamp are not negative")
        if keys.count(None) != n:
            if any(t and k is None for k, t in zip(keys, tombstones)):
                raise ArgumentError("a tombstone needs a key")
            for k in keys:
                if k is not None:
                    _key(k, "surrogateescape")
        elif True in tombstones:
            raise ArgumentError("a tombstone needs a key")
        last = -1
        start = 0
        for pos in [p for p, k in enumerate(keys) if k is not None] + [n]:
            if pos > start:
                cols = [None if c is None else c[start:pos] for c in (nb, oi, ots)]
                last = self._after(self._native.append_many_each(list(datas[start:pos]), self._timestamp(), *cols))
            if pos < n:
                last = self.write_encoded(datas[pos], key=keys[pos], not_before=not_befores[pos],
                                          origin=origins[pos], tombstone=tombstones[pos])
            start = pos + 1
        return last
