"""tape.state: a lazy, resettable value for the stateful parts of an application.

As the Clojure library redelay: the value is started on first use and cached;
close() stops it and resets it, so the next use starts it again. A started
state is tracked by tape.lifecycle like a queue (status(), close_all() newest
first, at interpreter exit), with the events "starting", "started",
"stopping" and "stopped".
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import TracebackType
from typing import Generic, TypeVar

from tape import lifecycle
from tape.errors import ArgumentTypeError, TapeError

__all__ = ["State", "state"]

T = TypeVar("T")


class State(Generic[T]):
    """A value started on first use by `start()`, stopped by `stop(value)` on close().

    Thread-safe: however many threads ask at once, `start` runs once.
    """

    def __init__(
        self, start: Callable[[], T], *, stop: Callable[[T], object] | None = None, name: str | None = None
    ) -> None:
        if not callable(start):
            raise ArgumentTypeError(f"start must be callable, not {type(start).__name__}")
        if stop is not None and not callable(stop):
            raise ArgumentTypeError(f"stop must be callable or None, not {type(stop).__name__}")
        if name is not None and not isinstance(name, str):
            raise ArgumentTypeError(f"name must be a str or None, not {type(name).__name__}")
        self._start = start
        self._stop = stop
        self.name: str = name if name is not None else getattr(start, "__qualname__", repr(start))
        self._lock = threading.RLock()
        self._starting = False
        self._cell: tuple[T] | None = None  # (value,) while started: one read sees both

    @property
    def value(self) -> T:
        """The value: started now when it is not (an exception from start propagates, and the next use tries again)."""
        cell = self._cell
        if cell is not None:
            return cell[0]
        with self._lock:
            if self._cell is not None:
                return self._cell[0]
            if self._starting:
                raise TapeError(f"state {self.name!r} was used by its own start function")
            self._starting = True
            try:
                lifecycle.opening(self, event="starting")
                value = self._start()
            finally:
                self._starting = False
            self._cell = (value,)
            lifecycle.register(self, event="started")
            return value

    def deref(self) -> T:
        """The value, as `value`."""
        return self.value

    @property
    def started(self) -> bool:
        """True while a started value is cached."""
        return self._cell is not None

    def peek(self) -> T | None:
        """The value if started, else None; never starts it."""
        cell = self._cell
        return None if cell is None else cell[0]

    def close(self) -> None:
        """Stop the value (stop(value)) and reset; nothing when not started.

        When stop raises, the state stays started and the exception propagates:
        fix the cause and close again, or force_close().
        """
        with self._lock:
            cell = self._cell
            if cell is None:
                return
            lifecycle.closing(self, event="stopping")
            if self._stop is not None:
                self._stop(cell[0])
            self._reset()

    def force_close(self) -> None:
        """Reset without running stop."""
        with self._lock:
            if self._cell is None:
                return
            lifecycle.closing(self, event="stopping")
            self._reset()

    def _reset(self) -> None:
        self._cell = None
        lifecycle.unregister(self, event="stopped")

    def __enter__(self) -> State[T]:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<tape.State {self.name!r} {'started' if self.started else 'not started'}>"


def state(start: Callable[[], T], *, stop: Callable[[T], object] | None = None, name: str | None = None) -> State[T]:
    """A State: `start()` gives the value on first use, `stop(value)` ends it on close()."""
    return State(start, stop=stop, name=name)
