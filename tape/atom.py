"""Durable atoms: a value that survives restarts, kept as snapshots in a queue.

DurableAtom is Clojure's atom (as duratom and enduro make it durable) over
tape's log: every change appends the new value to the atom's queue as a
snapshot, and opening reads the newest. A change is a read-modify-write made
atomic across processes by Appender.write_if: the snapshot is appended only if
the queue's last entry is still the snapshot the change started from;
otherwise the atom takes in the newer snapshot and runs the change again.

The atom encodes each value itself, once, and reads its queue raw: its value
is what the codec gives back for the stored bytes (the same in every process
and after a restart), an async commit writes the very bytes that were checked
when the change was made, and catching up over many snapshots decodes only
the newest.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import logging
import os
import reprlib
import shutil
import threading
from collections import deque
from collections.abc import Callable, Hashable
from typing import Any, NoReturn

from tape import codecs, lifecycle
from tape.errors import (
    ArgumentError,
    ArgumentTypeError,
    AtomCommitError,
    AtomConflictError,
    AtomValidationError,
    QueueClosedError,
    ReadOnlyError,
)
from tape.queue import Queue
from tape.records import Entry

__all__ = ["DurableAtom", "AtomValidationError", "AtomConflictError", "AtomCommitError"]

_log = logging.getLogger("tape.atom")
_COMMITS = ("sync", "async")
# An atom's queue keeps this many cycle files unless retention= says otherwise;
# the newest snapshot is never purged (a queue keeps its newest non-empty cycle).
_RETENTION = {"keep_cycles": 3}
# Taking in this many newer snapshots one by one, the atom jumps to the newest.
_JUMP = 64
_BATCH = 1024  # snapshots the async committer takes per turn

Watch = Callable[[Hashable, "DurableAtom", Any, Any], Any]


class DurableAtom:
    """A value kept as snapshots in the queue at `path`, changed atomically by any process.

    Opening reads the newest snapshot; with none, `initial` (a value, or a
    zero-argument callable; None writes nothing) is committed once, as the
    first snapshot. codec is a name or a Codec (default: the stored one, else
    msgpack); queue_options go to tape.Queue (schema= for avro; retention
    defaults to keeping 3 cycle files; the newest snapshot is always kept).

    commit="sync": a change returns once its snapshot is in the queue (seen by
    every process, surviving the death of this one; on disk as the queue's
    sync= says). A change is atomic across processes: on a conflict the atom
    takes in the newer snapshot and calls `fn` again, so `fn` may run more
    than once and must have no side effects.

    commit="async": a change is applied in memory and returns; a background
    thread appends the snapshots in order (with sync="always", flushing once
    per batch rather than per snapshot). A commit fails with
    AtomConflictError when another process appended in between. On a failure
    error_handler(exc, recommit) is called on that thread (recommit() commits
    the stopped changes again, after a conflict on top of the newest
    snapshot); without a handler the next call raises AtomCommitError and the
    atom goes back to the newest stored snapshot. flush() waits for the
    commits; close() flushes.

    validator(new) runs before every change of this atom (and on `initial`):
    a false result or an exception raises AtomValidationError and nothing is
    written. Values are compared with ==, and must be treated as immutable.
    """

    path: str

    def __init__(
        self,
        path: str | bytes | os.PathLike[str] | os.PathLike[bytes],
        initial: Any = None,
        *,
        codec: str | codecs.Codec | None = None,
        commit: str = "sync",
        error_handler: Callable[[Exception, Callable[[], None]], Any] | None = None,
        validator: Callable[[Any], Any] | None = None,
        **queue_options: Any,
    ) -> None:
        if commit not in _COMMITS:
            raise ArgumentError(f"commit must be 'sync' or 'async', not {commit!r}")
        if error_handler is not None and not callable(error_handler):
            raise ArgumentTypeError(f"error_handler must be callable, not {type(error_handler).__name__}")
        if error_handler is not None and commit != "async":
            raise ArgumentError("error_handler needs commit='async' (a sync change raises its error)")
        if validator is not None and not callable(validator):
            raise ArgumentTypeError(f"validator must be callable, not {type(validator).__name__}")
        queue_options.setdefault("retention", dict(_RETENTION))
        # Opened as asked first: creates the queue or checks it, and binds the codec.
        with Queue(path, codec=codec, **queue_options) as q:
            self._codec: codecs.Codec = q.codec
        queue_options.pop("schema", None)
        # Async commits with sync="always" flush once per batch of snapshots.
        self._group_sync = commit == "async" and queue_options.get("sync") == "always"
        if self._group_sync:
            queue_options["sync"] = "none"
            queue_options.setdefault("large_pages", False)
        self._queue = Queue(path, raw=True, **queue_options)
        self.path = self._queue.path
        self.commit = commit
        self._async = commit == "async"
        self._validator = validator
        self._error_handler = error_handler
        self._watches: dict[Hashable, Watch] = {}
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._state = "open"  # then "closed" or "destroyed"
        lifecycle.opening(self)
        # _index is the newest stored snapshot known; _value the atom's value:
        # that snapshot's, or ahead of it while async changes are pending.
        self._index: int | None = None
        self._value: Any = None
        self._pending: deque[tuple[bytes, Any, Any]] = deque()  # (snapshot, old, new)
        self._failure: Exception | None = None  # what stopped the async commits
        self._handling = False  # the error handler is running
        self._notifying = False  # the committer calls the watches
        self._closing = False
        self._committer: threading.Thread | None = None
        try:
            self._appender = None if self._queue.read_only else self._queue.appender()
            self._follower = self._queue.tailer()
            self._reload()
            if self._index is None and initial is not None and self._appender is not None:
                value = initial() if callable(initial) else initial
                _, data = self._prepare(value)
                self._appender.write_if(data, None)  # None: another process came first
                if self._group_sync:
                    self._appender.sync()
                self._catch_up()
        except BaseException:
            self._queue.close()
            raise
        if self._async:
            self._committer = threading.Thread(target=self._commit_loop, name=f"tape-atom {self.path}", daemon=True)
            self._committer.start()
            atexit.register(self.close)
        lifecycle.register(self)  # after its queue: closing everything closes the atom first

    # -- reading -------------------------------------------------------------------

    @property
    def value(self) -> Any:
        """The current value: the newest snapshot of any process (async: with this atom's pending changes)."""
        with self._lock:
            self._check()
            if not self._pending:
                self._catch_up()
            return self._value

    def deref(self) -> Any:
        """The current value, as `value`."""
        return self.value

    def history(self) -> list[Entry]:
        """Every snapshot the queue still keeps, oldest first, as Entry(index, timestamp, value)."""
        self.flush()
        decode = self._codec.decode
        with self._queue.tailer() as t:
            return [Entry(e.index, e.timestamp, decode(e.value)) for e in t.entries()]

    # -- changing ------------------------------------------------------------------

    def swap(self, fn: Callable[..., Any], /, *args: Any, **kw: Any) -> Any:
        """Set the value to fn(value, *args, **kw) atomically and return it; fn may run more than once."""
        return self.swap_vals(fn, *args, **kw)[1]

    def swap_vals(self, fn: Callable[..., Any], /, *args: Any, **kw: Any) -> tuple[Any, Any]:
        """Like swap, returning (old, new)."""
        with self._lock:
            self._check(mutating=True)
            if self._async:
                if not self._pending:
                    self._catch_up()
                old = self._value
                new, data = self._prepare(fn(old, *args, **kw))
                self._enqueue(data, old, new)
                return old, new
            assert self._appender is not None
            while True:
                index, old = self._index, self._value
                new, data = self._prepare(fn(old, *args, **kw))
                got = self._appender.write_if(data, index)
                if got is not None:
                    break
                self._catch_up()
            self._index, self._value = got, new
        self._notify(old, new)
        return old, new

    def reset(self, value: Any) -> Any:
        """Set the value to `value` and return it (as stored)."""
        return self.swap_vals(lambda _: value)[1]

    def reset_vals(self, value: Any) -> tuple[Any, Any]:
        """Set the value to `value`; return (old, new)."""
        return self.swap_vals(lambda _: value)

    def compare_and_set(self, old: Any, new: Any) -> bool:
        """Set the value to `new` only if it equals `old` now; True when it was set."""
        with self._lock:
            self._check(mutating=True)
            stored, data = self._prepare(new)
            while True:
                if not self._pending:
                    self._catch_up()
                current = self._value
                if current != old:
                    return False
                if self._async:
                    self._enqueue(data, current, stored)
                    return True
                assert self._appender is not None
                got = self._appender.write_if(data, self._index)
                if got is not None:
                    break
            self._index, self._value = got, stored
        self._notify(current, stored)
        return True

    # -- watches -------------------------------------------------------------------

    def add_watch(self, key: Hashable, fn: Watch) -> None:
        """Call fn(key, atom, old, new) after each change of this atom is committed (replaces key's watch).

        A watch that raises is logged (logger "tape.atom"); the change stays.
        With commit="async" watches run on the committing thread.
        """
        if not callable(fn):
            raise ArgumentTypeError(f"a watch must be callable, not {type(fn).__name__}")
        self._watches[key] = fn

    def remove_watch(self, key: Hashable) -> None:
        """Remove the watch of `key`, if there is one."""
        self._watches.pop(key, None)

    def _notify(self, old: Any, new: Any) -> None:
        for key, fn in list(self._watches.items()):
            try:
                fn(key, self, old, new)
            except Exception:
                _log.exception("%s: watch %r failed", self.path, key)

    # -- life ----------------------------------------------------------------------

    def flush(self) -> None:
        """Wait until every change made so far is committed (at once with commit="sync").

        Raises AtomCommitError when a failure stops the commits. Called on the
        committing thread (by a watch or the error handler), it does not wait.
        """
        with self._cond:
            self._check()
            if threading.current_thread() is self._committer:
                return
            while self._notifying or self._pending and (self._failure is None or self._handling):
                self._cond.wait()
            self._check()
            if self._pending:
                raise AtomCommitError(
                    f"{self.path}: {len(self._pending)} change(s) wait for recommit()"
                ) from self._failure

    def close(self) -> None:
        """Commit what is pending and close the atom; idempotent.

        Raises AtomCommitError when changes could not be committed.
        """
        with self._cond:
            if self._state != "open":
                return
            self._closing = True
            self._cond.notify_all()
        lifecycle.closing(self)
        committer = self._committer
        if committer is not None:
            atexit.unregister(self.close)
            if committer is not threading.current_thread():
                committer.join()
        with self._cond:
            if self._state != "open":
                return
            self._state = "closed"
            failure, lost = self._failure, len(self._pending)
            self._queue.close()
        lifecycle.unregister(self)
        if lost:
            raise AtomCommitError(f"{self.path}: {lost} change(s) were not committed") from failure

    def destroy(self) -> None:
        """Close the atom and delete its storage; every later call is refused.

        Other processes must not use the atom any more.
        """
        with contextlib.suppress(AtomCommitError):
            self.close()
        with self._lock:
            if self._state == "destroyed":
                return
            with contextlib.suppress(FileNotFoundError):
                shutil.rmtree(self.path)
            self._state = "destroyed"

    def __enter__(self) -> DurableAtom:
        with self._lock:
            self._check()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<tape.DurableAtom {self.path!r} commit={self.commit} {self._state}>"

    # -- inside --------------------------------------------------------------------

    def _check(self, mutating: bool = False) -> None:
        """Raise when the atom cannot be used now (the caller holds the lock)."""
        if self._state != "open":
            raise QueueClosedError(f"{self.path}: the atom is {self._state}")
        if self._failure is not None and self._error_handler is None:
            self._give_up()
        if mutating and self._appender is None:
            raise ReadOnlyError(f"{self.path}: the atom is read-only")

    def _give_up(self) -> NoReturn:
        """Drop the pending changes a commit failure stopped, reload, and raise that failure."""
        failure, lost = self._failure, len(self._pending)
        self._failure = None
        self._pending.clear()
        self._reload()
        raise AtomCommitError(f"{self.path}: {lost} change(s) were not committed: {failure}") from failure

    def _prepare(self, value: Any) -> tuple[Any, bytes]:
        """(the value as stored, its bytes), the stored value accepted by the validator."""
        data = self._codec.encode(value)
        stored = self._codec.decode(data)
        if self._validator is not None:
            try:
                ok = self._validator(stored)
            except Exception as exc:
                raise AtomValidationError(f"{self.path}: the validator rejected {reprlib.repr(stored)}: {exc}") from exc
            if not ok:
                raise AtomValidationError(f"{self.path}: the validator rejected {reprlib.repr(stored)}")
        return stored, data

    def _catch_up(self) -> None:
        """Take in the newest snapshot if any appeared since: one read when none did."""
        newest = None
        behind = 0
        while (entry := self._follower.read_entry()) is not None:
            newest = entry
            behind += 1
            if behind == _JUMP:  # far behind: skip to the newest
                last = self._queue.last_index
                if last is not None and last > entry.index:
                    self._follower.to_index(last)
        if newest is None:
            return
        self._index = newest.index
        if not self._pending:
            self._value = self._codec.decode(newest.value)

    def _reload(self) -> None:
        """Make the newest stored snapshot the value."""
        last = self._queue.last_index
        if last is None:
            self._index = self._value = None
            return
        self._follower.to_index(last)
        self._catch_up()

    def _enqueue(self, data: bytes, old: Any, new: Any) -> None:
        """commit="async": make `new` the value and hand its snapshot to the committer."""
        self._value = new
        self._pending.append((data, old, new))
        if len(self._pending) == 1:
            self._cond.notify_all()

    def _commit_loop(self) -> None:
        """The committing thread of commit="async": appends the pending snapshots in order."""
        assert self._appender is not None
        write_if = self._appender.write_if
        while True:
            with self._cond:
                while not (self._pending and self._failure is None) and not self._closing:
                    self._cond.wait()
                if not self._pending or self._failure is not None:
                    return  # closing
                batch = list(itertools.islice(self._pending, _BATCH))
                index = self._index
            done = 0
            failure: Exception | None = None
            for data, _, _ in batch:
                try:
                    got = write_if(data, index)
                except Exception as exc:
                    failure = exc
                    break
                if got is None:
                    failure = AtomConflictError(
                        f"{self.path}: another process changed the atom after snapshot {index}"
                    )
                    break
                index = got
                done += 1
            if done and self._group_sync:
                try:
                    self._appender.sync()
                except Exception as exc:  # the snapshots stay in the queue; the queue is poisoned
                    failure = exc
            with self._cond:
                for _ in range(done):
                    self._pending.popleft()
                self._index = index
                self._failure = failure
                self._handling = failure is not None and self._error_handler is not None
                self._notifying = True
            for _, old, new in batch[:done]:
                self._notify(old, new)
            with self._cond:
                self._notifying = False
                self._cond.notify_all()
            if failure is not None and self._error_handler is not None:
                self._handle(failure)

    def _handle(self, failure: Exception) -> None:
        """Call the error handler with `failure` and its recommit()."""
        def recommit() -> None:
            """Commit the stopped changes again (after a conflict: on top of the newest snapshot)."""
            with self._cond:
                if self._failure is not failure or self._state != "open":
                    return
                if isinstance(failure, AtomConflictError):
                    self._index = self._queue.last_index
                self._failure = None
                self._cond.notify_all()

        assert self._error_handler is not None
        try:
            self._error_handler(failure, recommit)
        except Exception:
            _log.exception("%s: the error handler failed", self.path)
        finally:
            with self._cond:
                self._handling = False
                self._cond.notify_all()
