"""The lifecycle registry: which queues, appenders, tailers, atoms and states are open.

Every resource reports its steps here: opening(r) before it opens, register(r)
once open, closing(r) when close() starts, unregister(r) once closed (a
tape.state reports them as "starting", "started", "stopping", "stopped"). The
registry keeps the open ones in the order they opened, closes them newest
first (close_all, and at interpreter exit), and tells on_lifecycle()
callbacks of each step. It holds weak references only: tracking never keeps
a resource alive.
"""

from __future__ import annotations

import atexit
import logging
import threading
import weakref
from collections.abc import Callable
from typing import Literal, NamedTuple, Protocol

__all__ = [
    "Resource",
    "Event",
    "opening",
    "register",
    "closing",
    "unregister",
    "status",
    "close_all",
    "on_lifecycle",
]

Event = Literal[
    "opening", "opened", "closing", "closed", "starting", "started", "stopping", "stopped"
]


class Resource(Protocol):
    """What the registry tracks: anything with close(); its repr says what it is and its state."""

    def close(self) -> None: ...


class _Tracked(NamedTuple):
    ref: weakref.ref[Resource]
    parent: int | None  # id() of the resource closed after this one


_log = logging.getLogger("tape.lifecycle")
# Reentrant: a weakref callback may run, through the garbage collector, while
# this thread holds the lock.
_lock = threading.RLock()
_tracked: dict[int, _Tracked] = {}  # id(resource) -> entry, in the order they opened
_callbacks: list[Callable[[Event, Resource], object]] = []


def _emit(event: Event, resource: Resource) -> None:
    """Call every callback; a failing one is logged and does not stop the step."""
    for fn in list(_callbacks):
        try:
            fn(event, resource)
        except Exception:
            _log.exception("lifecycle callback %r failed on %r for %r", fn, event, resource)


def _forget(key: int, ref: weakref.ref[Resource]) -> None:
    with _lock:
        if key in _tracked and _tracked[key].ref is ref:
            del _tracked[key]


def opening(resource: Resource, *, event: Event = "opening") -> None:
    """Report that `resource` starts opening: emits `event`."""
    _emit(event, resource)


def register(resource: Resource, *, parent: Resource | None = None, event: Event = "opened") -> None:
    """Track `resource`, now open, and emit `event`.

    With `parent`, closing the parent first closes `resource` (as a queue
    closes its appenders and tailers).
    """
    key = id(resource)
    ref = weakref.ref(resource, lambda r: _forget(key, r))
    with _lock:
        _tracked.pop(key, None)
        _tracked[key] = _Tracked(ref, None if parent is None else id(parent))
    _emit(event, resource)


def closing(resource: Resource, *, event: Event = "closing") -> None:
    """Report that `resource` starts closing: emits `event`, then closes its children, newest first."""
    _emit(event, resource)
    parent = id(resource)
    with _lock:
        children = [t.ref() for t in _tracked.values() if t.parent == parent]
    for child in reversed(children):
        if child is not None:
            child.close()


def unregister(resource: Resource, *, event: Event = "closed") -> None:
    """Stop tracking `resource`, now closed, and emit `event`."""
    key = id(resource)
    with _lock:
        tracked = _tracked.get(key)
        if tracked is not None and tracked.ref() is resource:
            del _tracked[key]
    _emit(event, resource)


def status() -> list[Resource]:
    """The open resources, in the order they were opened."""
    with _lock:
        refs = [t.ref for t in _tracked.values()]
    return [r for ref in refs if (r := ref()) is not None]


def close_all() -> None:
    """Close every open resource, newest first.

    A failing close() does not stop the others: every failure is raised at
    the end in one ExceptionGroup, each with a note naming its resource.
    """
    errors = []
    for resource in reversed(status()):
        try:
            resource.close()
        except Exception as exc:
            exc.add_note(f"while closing {resource!r}")
            errors.append(exc)
    if errors:
        raise ExceptionGroup(f"{len(errors)} of the open tape resources failed to close", errors)


def on_lifecycle(fn: Callable[[Event, Resource], object]) -> Callable[[], None]:
    """Call fn(event, resource) at every step of every resource; returns a function that stops it.

    Events: "opening" (before it opens), "opened", "closing", "closed"; a
    tape.state emits "starting", "started", "stopping", "stopped" instead. A
    failed open emits "opening" and nothing more, or "closing" and "closed"
    when it had to close what it opened. fn runs in the thread that opens or
    closes; an exception from it is logged (logger "tape.lifecycle").
    """
    with _lock:
        _callbacks.append(fn)

    def remove() -> None:
        with _lock:
            if fn in _callbacks:
                _callbacks.remove(fn)

    return remove


atexit.register(close_all)
