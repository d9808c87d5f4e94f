"""The Appender: encodes values and appends them to a queue; safe to share between threads."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from tape import codecs, lifecycle
from tape._args import as_index, shown
from tape._native import INDEX_MAX, AppenderHandle
from tape.errors import ArgumentError, ArgumentTypeError, QueueClosedError

if TYPE_CHECKING:
    from tape.queue import Queue

__all__ = ["Appender"]

_BYTES_ONLY = frozenset({bytes})


class Appender:
    """Appends entries to a queue; safe to share between threads."""

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
        # The core's call itself, not a method around it: write() is the hottest path.
        self._append, self._ptr = native.append_call()
        self._path = queue.path
        self._encode = queue.codec.encode
        self._raw = type(queue.codec) is codecs.RawCodec
        self._clock = clock
        self._on_roll = on_roll
        self._always = queue.sync == "always"
        # retention= runs when a write lands in a cycle newer than this index.
        self._next_roll = 0 if on_roll is not None else INDEX_MAX
        # A write whose result is not below this has more to do (sync,
        # retention): see _after; nor is one below 0 (an error).
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

    def write(self, obj: Any) -> int:
        """Append `obj` and return its index; nothing is written if it cannot be encoded."""
        data = obj if self._raw and type(obj) is bytes else self._encode(obj)
        index: int = self._append(self._ptr, data, len(data), 0 if self._clock is None else self._timestamp())
        if 0 <= index < self._watch:
            return index
        return self._after(index)

    def write_many(self, objs: Iterable[Any]) -> int:
        """Append every value of `objs` and return the last index.

        All are encoded before anything is written. If the core fails midway,
        the entries before the failing one stay written (a note says how many).
        """
        if self._raw:
            # bytes need no encoding: check the whole batch's types at C speed
            parts = objs if type(objs) is list else list(objs)
            if not set(map(type, parts)) <= _BYTES_ONLY:
                parts = list(map(self._encode, parts))
        else:
            parts = list(map(self._encode, objs))
        if not parts:
            raise ArgumentError("write_many needs at least one value")
        return self._after(self._native.append_many(parts, self._timestamp()))

    def write_if(self, obj: Any, last: int | None) -> int | None:
        """Append `obj` only if the queue's last entry is `last` (None: only if empty).

        The check and the append happen under the queue's write lock, so a
        read-modify-write built on it is atomic across processes. Returns the
        new index, or None when another entry came first (nothing written).
        """
        expected = None if last is None else as_index(last, "last")
        data = self._encode(obj)
        index = self._native.append_if(data, self._timestamp(), expected)
        return None if index is None else self._after(index)

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
