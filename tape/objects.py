"""Durable objects: keyed, single-instance objects whose state survives restarts, with alarms.

An Objects store is a directory holding three queues. `objects/` is a keyed
queue: one key per object ("<type name>/<id>"), whose newest entry is the
object's record {"state": {field: value}, "alarms": {name: [due ns, token]}}
in msgpack. `alarms/` holds one entry per scheduled alarm, due (not_before)
at the alarm's time, and the consumer group "alarms" that hands each to one
process. An alarm due more than HORIZON ahead goes to `later/` first (keyed
by its token), and the alarm threads move it to `alarms/` as it nears: the
group keeps only a bounded number of entries that are not yet due.

A call runs the handler on a fresh copy (a decode) of the object's record
cached in memory (loaded first when it is not) and, only if the record
changed, appends it with a compare-and-append on the key (only if the key's
newest entry is still the index it ran on; built once per object):
atomic per key across processes. On a conflict (another process stored
first) it loads the newest record and runs the handler again, as
DurableAtom.swap does. A call that changed nothing, or raised, counts only
if the shared key directory still names the cached record as the newest (one
O(1) look); else it too runs again on the newest. Calls of one Objects on
one object run one at a time (a lock per object), so only processes
conflict. Optimistic, not an owner lock: a call in one process costs no
lock file and no system call beyond the append, and a process killed
mid-call leaves nothing held.

An alarm's entry is appended before the record that schedules it. When it
fires, the alarm runs only if the object's record still holds that alarm
with the same token (a replaced or cancelled alarm, or one whose record
never got stored, is acked without running); running it removes it from
the record in the same write as on_alarm's changes, so a redelivery after a
crash finds it gone. An on_alarm that raises is nacked (the group's backoff)
and, on its last delivery, removed from the record and rejected into the
group's dead letters: failed_alarms().

With retention= each queue is compacted as it rolls, and nothing live goes:
a purge of `objects/` or `later/` appends the newest entry of each live key
again before its cycle goes (so each object's record, and each alarm due
later, survives), and a purge of `alarms/` keeps every cycle holding an
alarm the group has not finished.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from operator import methodcaller
from typing import Any, ClassVar, NamedTuple, TypeVar

from tape import _msgpack as _fast
from tape import codecs, lifecycle
from tape._time import duration_ns, to_datetime, to_ns
from tape.errors import ArgumentError, ArgumentTypeError, QueueClosedError, StaleDeliveryError
from tape.group import Consumer, Delivery
from tape.queue import Queue

__all__ = ["DurableObject", "Objects", "ObjectRef", "FailedAlarm", "summary"]

_log = logging.getLogger("tape.objects")
T = TypeVar("T")

STATE_DIR = "objects"  # the keyed queue of records, inside the store's directory
ALARMS_DIR = "alarms"  # the queue of alarm entries due within HORIZON, and its group
LATER_DIR = "later"  # alarm entries due later, keyed by token, moved to ALARMS_DIR as they near
# An alarm due further ahead waits in LATER_DIR, not in the group: the group holds only
# what comes due within HORIZON.
HORIZON = 60_000_000_000
_GROUP = "alarms"
# The alarms group's settings: a fired alarm is held this long, tried this
# many times, waiting these steps (seconds) between tries.
ALARM_ACK_WAIT = 60.0
ALARM_DELIVERIES = 5
ALARM_BACKOFF = (1.0, 5.0, 30.0, 60.0)
_SWEEP = 1_000_000_000  # idle objects are looked for at most this often (ns): a sweep visits every one
_BATCH = 256  # fire_due claims this many alarms at a time
_WAIT = 0.1  # the alarm thread's longest wait for a claim (checks for closing in between)
_RESERVED = frozenset({"schedule_alarm", "list_alarms", "cancel_alarm", "cancel_all_alarms", "on_alarm"})
_TYPES: dict[str, type[DurableObject]] = {}  # every DurableObject subclass by name: alarms find theirs
_MSGPACK = codecs.get("msgpack")
_ENCODE, _DECODE = _MSGPACK.encode, _MSGPACK.decode
_PACK, _UNPACK, _FALLBACK = _fast.pack, _fast.unpack, _fast.FALLBACK  # the codec's fast path, called directly
_NEW = object.__new__
_HANDLERS: set[tuple[type[DurableObject], str]] = set()  # (type, name) found to be a handler


def _is_classvar(annotation: Any) -> bool:
    text = annotation if isinstance(annotation, str) else repr(annotation)
    return text.startswith(("ClassVar", "typing.ClassVar"))


class DurableObject:
    """Base class of durable objects: annotated fields with defaults are the state; public methods the handlers.

    A handler runs on a fresh copy of the newest state and may run more
    than once (when another process stored first): it must have no side
    effects beyond its object. on_alarm(name) runs when an alarm fires.
    """

    _tape_fields: ClassVar[dict[str, Any]] = {}
    _tape_alarms: dict[str, list[int]]
    _tape_new: list[tuple[str, int, int]] | None  # alarms scheduled by this run; None: none
    _tape_now: Callable[[], int]

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        fields: dict[str, Any] = {}
        for klass in reversed(cls.__mro__):
            for name, annotation in inspect.get_annotations(klass).items():
                if name.startswith("_") or _is_classvar(annotation):
                    continue
                if name not in vars(klass):
                    raise ArgumentTypeError(f"{cls.__name__}.{name}: a state field needs a default")
                fields[name] = vars(klass)[name]
        bad = sorted(_RESERVED.intersection(fields))
        if bad:
            raise ArgumentError(f"{cls.__name__}.{bad[0]}: that name is DurableObject's, not a state field")
        if "/" in cls.__name__:
            raise ArgumentError(f"a durable object's type name has no '/': {cls.__name__!r}")
        cls._tape_fields = fields
        _TYPES[cls.__name__] = cls

    def on_alarm(self, name: str) -> None:
        """An alarm fired (the default does nothing)."""

    def schedule_alarm(
        self, name: str, *, delay: float | timedelta | None = None, at: datetime | float | None = None
    ) -> None:
        """Fire on_alarm(name) after `delay` seconds or at `at` (a datetime or epoch seconds); replaces `name`'s alarm."""
        _alarm_name(name)
        if (delay is None) == (at is None):
            raise ArgumentError("give delay or at, one of the two")
        due = self._tape_now() + duration_ns(delay, "delay") if delay is not None else to_ns(at)  # type: ignore[arg-type]
        if due <= 0:
            raise ArgumentError(f"an alarm's time must be after 1970, not {at!r}")
        token = int.from_bytes(os.urandom(8), "little") >> 1
        self._tape_alarms[name] = [due, token]
        if self._tape_new is None:
            self._tape_new = []
        self._tape_new.append((name, due, token))

    def list_alarms(self) -> list[tuple[str, datetime]]:
        """The scheduled alarms as (name, when), soonest first."""
        return [(n, to_datetime(d)) for n, (d, _) in sorted(self._tape_alarms.items(), key=lambda a: (a[1][0], a[0]))]

    def cancel_alarm(self, name: str) -> bool:
        """Cancel `name`'s alarm; False when there was none."""
        _alarm_name(name)
        return self._tape_alarms.pop(name, None) is not None

    def cancel_all_alarms(self) -> int:
        """Cancel every alarm of the object; how many there were."""
        n = len(self._tape_alarms)
        self._tape_alarms.clear()
        return n


def _alarm_name(name: Any) -> None:
    if not isinstance(name, str):
        raise ArgumentTypeError(f"an alarm's name must be a str, not {type(name).__name__}")
    if not name:
        raise ArgumentError("an alarm's name must not be empty")


def _type(cls: Any) -> type[DurableObject]:
    if not (isinstance(cls, type) and issubclass(cls, DurableObject)) or cls is DurableObject:
        raise ArgumentTypeError(f"a durable object's type must be a DurableObject subclass, not {cls!r}")
    return cls


def _key(cls: Any, id: Any) -> str:
    """The object's key in the store, its arguments checked."""
    cls = _type(cls)
    if not isinstance(id, str):
        raise ArgumentTypeError(f"an object's id must be a str, not {type(id).__name__}")
    if not id:
        raise ArgumentError("an object's id must not be empty")
    try:
        id.encode()
    except UnicodeEncodeError:
        raise ArgumentError(f"an object's id must be text UTF-8 can hold, not {id!r}") from None
    return f"{cls.__name__}/{id}"


def _handler(cls: type[DurableObject], method: Any) -> str:
    if not isinstance(method, str):
        raise ArgumentTypeError(f"a handler's name must be a str, not {type(method).__name__}")
    if method.startswith("_") or method in _RESERVED:
        raise ArgumentError(f"{cls.__name__}.{method} is not a handler (handlers are public methods)")
    if not _is_handler(cls, method):
        raise ArgumentError(f"{cls.__name__} has no handler {method!r}")
    return method


def _is_handler(cls: type[DurableObject], name: str) -> bool:
    """Whether `name` is a public method defined by `cls` or a DurableObject base of it."""
    if name.startswith("_") or name in _RESERVED or name in cls._tape_fields:
        return False
    for klass in cls.__mro__:
        if klass is DurableObject:
            return False
        if name in vars(klass):
            return callable(getattr(cls, name))
    return False


class FailedAlarm(NamedTuple):
    """An alarm whose on_alarm kept raising: given up on."""

    type: str
    id: str
    name: str
    attempts: int
    reason: str | None
    when: datetime  # when it was given up on


class _Slot:
    """An object in memory: its lock, its newest record known (index and bytes), its compare-and-append."""

    __slots__ = ("index", "data", "lock", "used")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.index = -1  # the record's index in the log, -1: none (the object is new)
        self.data: bytes | None = None  # the record; None: not loaded (or hibernated)
        self.used = 0


class ObjectRef:
    """A reference to one durable object; nothing is loaded until it is used. Handlers are its methods."""

    def __init__(self, objects: Objects, cls: type[DurableObject], id: str) -> None:
        self._objects = objects
        self._cls = cls
        self.id = id
        self._key = _key(cls, id)
        self._kb = self._key.encode()

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if not _is_handler(self._cls, name):
            raise AttributeError(f"{self._cls.__name__} has no handler {name!r}")
        run, cls, key, kb = self._objects._run_key, self._cls, self._key, self._kb
        bare = methodcaller(name)  # a call without arguments makes none

        def handler(*args: Any, **kw: Any) -> Any:
            return run(cls, key, kb, methodcaller(name, *args, **kw) if args or kw else bare)

        handler.__name__ = name
        setattr(self, name, handler)  # found directly from now on
        return handler

    def state(self) -> dict[str, Any]:
        """The object's state fields (a copy)."""
        fields = self._cls._tape_fields
        return self._objects._run(self._cls, self.id, lambda o: {f: getattr(o, f) for f in fields})

    def schedule_alarm(
        self, name: str, *, delay: float | timedelta | None = None, at: datetime | float | None = None
    ) -> None:
        """As DurableObject.schedule_alarm, stored at once."""
        self._objects._run(self._cls, self.id, lambda o: o.schedule_alarm(name, delay=delay, at=at))

    def list_alarms(self) -> list[tuple[str, datetime]]:
        """The object's alarms as (name, when), soonest first."""
        return self._objects._run(self._cls, self.id, lambda o: o.list_alarms())

    def cancel_alarm(self, name: str) -> bool:
        """Cancel `name`'s alarm; False when there was none."""
        return self._objects._run(self._cls, self.id, lambda o: o.cancel_alarm(name))

    def cancel_all_alarms(self) -> int:
        """Cancel every alarm of the object; how many there were."""
        return self._objects._run(self._cls, self.id, lambda o: o.cancel_all_alarms())

    def stop(self) -> None:
        """Drop the object from memory (Objects.stop)."""
        self._objects.stop(self._cls, self.id)

    def __repr__(self) -> str:
        return f"<tape.ObjectRef {self._cls.__name__}/{self.id}>"


class Objects:
    """A store of durable objects in the directory `path` (created if missing).

    hibernate_after: seconds an object stays in memory unused (then the next
    call loads it again); shutdown_after (None: never): seconds after which
    an unused object is forgotten altogether (its lock too). alarms=True runs
    a thread that fires alarms as they come due (any number of processes may;
    each alarm fires in one). clock (ns since the epoch, e.g. a
    tape.testing.ManualClock) times alarms and idleness; queue_options go to
    its queues (sync=, roll_cycle=, retention=, ...).
    """

    path: str

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        hibernate_after: float = 300.0,
        shutdown_after: float | None = None,
        alarms: bool = True,
        clock: Callable[[], int] | None = None,
        **queue_options: Any,
    ) -> None:
        self._hibernate = duration_ns(hibernate_after, "hibernate_after")
        self._shutdown = None if shutdown_after is None else duration_ns(shutdown_after, "shutdown_after")
        if not isinstance(alarms, bool):
            raise ArgumentTypeError(f"alarms must be a bool, not {type(alarms).__name__}")
        if clock is not None and not callable(clock):
            raise ArgumentTypeError(f"clock must be callable, not {type(clock).__name__}")
        for name in ("codec", "schema", "raw", "read_only"):
            if name in queue_options:
                raise ArgumentError(f"Objects takes no {name}= (records are msgpack)")
        try:
            self.path = os.fspath(path)
        except TypeError:
            raise ArgumentTypeError(f"path must be a path, not {type(path).__name__}") from None
        if not isinstance(self.path, str):
            raise ArgumentTypeError("path must be a str path")
        self._now: Callable[[], int] = clock or time.time_ns
        created = not os.path.exists(self.path)
        lifecycle.opening(self)
        with contextlib.ExitStack() as opened:
            try:
                self._queue = opened.enter_context(
                    Queue(os.path.join(self.path, STATE_DIR), raw=True, codec="msgpack", clock=clock, **queue_options))
                self._alarms = opened.enter_context(
                    Queue(os.path.join(self.path, ALARMS_DIR), codec="msgpack", clock=clock, **queue_options))
                self._later = opened.enter_context(
                    Queue(os.path.join(self.path, LATER_DIR), codec="msgpack", clock=clock, **queue_options))
                self._group = opened.enter_context(self._alarms.group(
                    _GROUP, ack_wait=ALARM_ACK_WAIT, max_deliveries=ALARM_DELIVERIES, backoff=ALARM_BACKOFF))
            except BaseException:
                opened.close()
                if created:
                    shutil.rmtree(self.path, ignore_errors=True)
                raise
            opened.pop_all()
        self._native = self._queue._handle()
        self._key_latest, self._ptr = self._native.key_latest_call()  # called while the store is open only
        self._appender = self._queue.appender()
        self._write_if = self._appender.write_if  # in C (tape/_native/_hot_writer.c)
        self._alarm_appender = self._alarms.appender()
        self._later_appender = self._later.appender()
        self._scan_lock = threading.Lock()
        self._scanned: int | None = None  # when the later queue was last scanned
        self._slots: dict[bytes, _Slot] = {}
        self._lock = threading.Lock()  # guards _slots, _swept and _state
        self._swept = self._now()
        self._state = "open"
        self._fire_lock = threading.Lock()
        self._firer: Consumer | None = None  # fire_due's consumer
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        if alarms:
            self._thread = threading.Thread(target=self._alarm_loop, name=f"tape-alarms {self.path}", daemon=True)
            self._thread.start()
        lifecycle.register(self)

    # -- objects -----------------------------------------------------------------------------

    def get(self, cls: type[DurableObject], id: str) -> ObjectRef:
        """A reference to the object (type `cls`, `id`); nothing is loaded yet."""
        _key(cls, id)
        return ObjectRef(self, cls, id)

    def call(self, cls: type[DurableObject], id: str, method: str, /, *args: Any, **kw: Any) -> Any:
        """Run handler `method` of the object on its newest state; its result.

        The new state is stored before this returns, and only when it changed;
        a handler that raises changes nothing and its exception is raised here.
        """
        key = _key(cls, id)
        if (cls, method) not in _HANDLERS:
            _handler(cls, method)
            _HANDLERS.add((cls, method))
        return self._run_key(cls, key, key.encode(), methodcaller(method, *args, **kw))

    def stop(self, cls: type[DurableObject], id: str) -> None:
        """Drop the object from memory; the next call loads it again."""
        kb = _key(cls, id).encode()
        with self._lock:
            slot = self._slots.pop(kb, None)
        if slot is not None:
            with slot.lock:
                slot.data = None

    def in_memory(self) -> list[tuple[str, str]]:
        """(type name, id) of the objects loaded in this Objects now (not hibernated)."""
        with self._lock:
            loaded = [k.decode() for k, s in self._slots.items() if s.data is not None]
        return sorted(tuple(k.split("/", 1)) for k in loaded)  # type: ignore[misc]

    def failed_alarms(self) -> list[FailedAlarm]:
        """The alarms given up on (on_alarm raised on every try), oldest first."""
        out = []
        for d in self._group.dead_letters():
            type_name, id = d.value["k"].split("/", 1)
            out.append(FailedAlarm(type_name, id, d.value["n"], d.attempts, d.reason, d.when))
        return out

    def _run(self, cls: type[DurableObject], id: str, action: Callable[[DurableObject], T]) -> T:
        """Run action(object) on the newest state and store the record if it changed; action's result."""
        key = _key(cls, id)
        return self._run_key(cls, key, key.encode(), action)

    def _run_key(self, cls: type[DurableObject], key: str, kb: bytes, action: Callable[[DurableObject], T]) -> T:
        """_run of the object whose key is `key` (its bytes `kb`), both checked.

        The action runs on the record cached in the slot, loaded first when
        there is none. A record that changed is stored by a compare-and-append
        on the index it ran on: a conflict (another process stored first)
        loads the newest and runs it again. A result (or exception) from a
        record that did not change counts only if the record is still the
        newest, which one look at the key directory says.
        """
        now = self._now()
        slot = self._slots.get(kb)
        if slot is None or now - self._swept >= _SWEEP:
            slot = self._slot(kb, now)
        with slot.lock:
            if self._state != "open":
                self._check()
            data = slot.data
            if data is None:
                data = self._load(cls, key, kb, slot)
            while True:
                index = slot.index
                record = _UNPACK(data)
                if record is _FALLBACK:
                    record = _DECODE(data)
                obj = _NEW(cls)
                obj.__dict__ = d = record["state"]  # (a fresh decode: the object's own)
                d["_tape_alarms"] = record["alarms"]
                d["_tape_new"] = None  # made by schedule_alarm
                d["_tape_now"] = self._now
                try:
                    result = action(obj)
                except Exception:
                    if self._key_latest(self._ptr, kb, len(kb)) != index:
                        data = self._load(cls, key, kb, slot)
                        continue  # it raised on a record older than the newest
                    raise
                state = {}
                for f in cls._tape_fields:  # (a loop: a comprehension makes a function each call)
                    state[f] = d[f]
                record = {"state": state, "alarms": d["_tape_alarms"]}
                new = _PACK(record) or _ENCODE(record)
                if new == data:
                    if self._key_latest(self._ptr, kb, len(kb)) != index:
                        data = self._load(cls, key, kb, slot)
                        continue
                    break
                if d["_tape_new"]:
                    self._schedule(key, d["_tape_new"], now)
                got = self._write_if(new, None if index < 0 else index, key=key)
                if got is not None:
                    slot.index, slot.data = got, new
                    break
                data = self._load(cls, key, kb, slot)
            slot.used = now
        return result

    def _schedule(self, key: str, new: list[tuple[str, int, int]], now: int) -> None:
        """Append the alarm entries of the alarms just scheduled: before the record, so one may fire unrun, never be lost."""
        for name, due, token in new:
            entry = _ENCODE({"k": key, "n": name, "t": token, "d": due})
            if due - now > HORIZON:
                self._later_appender.write_encoded(entry, key=f"{token:x}")
            else:
                self._alarm_appender.write_encoded(entry, not_before=due)

    def _slot(self, kb: bytes, now: int) -> _Slot:
        with self._lock:
            slot = self._slots.get(kb)
            if slot is None:
                slot = self._slots[kb] = _Slot()
                slot.used = now
            if now - self._swept >= _SWEEP:
                self._sweep(now)
            return slot

    def _sweep(self, now: int) -> None:
        """Hibernate or forget the objects idle long enough (the caller holds _lock)."""
        self._swept = now
        for kb, slot in list(self._slots.items()):
            idle = now - slot.used
            if idle < self._hibernate or not slot.lock.acquire(blocking=False):
                continue
            try:
                slot.data = None
                if self._shutdown is not None and idle >= self._shutdown:
                    del self._slots[kb]
            finally:
                slot.lock.release()

    def _load(self, cls: type[DurableObject], key: str, kb: bytes, slot: _Slot) -> bytes:
        """Load the object's newest record into the slot (the defaults when there is none); its bytes.

        A record stored by another version of the class gets its fields: those
        no longer declared dropped, new ones at their defaults (stored with the
        next change).
        """
        entry = self._queue.latest(key)
        if entry is None:
            slot.index, slot.data = -1, _defaults(cls)
            return slot.data
        data: bytes = entry.value
        record = _DECODE(data)
        stored = record.get("state", {})
        fields = cls._tape_fields
        if stored.keys() != fields.keys() or "alarms" not in record:  # the class changed
            state = {f: stored[f] if f in stored else _DECODE(_ENCODE(v)) for f, v in fields.items()}
            data = _ENCODE({"state": state, "alarms": record.get("alarms", {})})
        slot.index, slot.data = entry.index, data
        return data

    # -- alarms ------------------------------------------------------------------------------

    def _fire(self, d: Delivery) -> bool:
        """Run the alarm of delivery `d` and finish the delivery; whether on_alarm ran and returned."""
        key, name, token = d.value["k"], d.value["n"], d.value["t"]
        type_name, id = key.split("/", 1)
        cls = _TYPES.get(type_name)
        if cls is None:
            _log.error("%s: alarm %r of %s: type %r is not defined in this process", self.path, name, key, type_name)
            d.nack()
            return False

        def ring(o: DurableObject, run: bool = True) -> bool:
            if o._tape_alarms.get(name, [None, None])[1] != token:
                return False  # replaced, cancelled, fired, or never stored
            del o._tape_alarms[name]
            if run:
                o.on_alarm(name)
            return True

        try:
            ran = self._run(cls, id, ring)
        except Exception as exc:
            if d.attempt < self._group.settings()["max_deliveries"]:
                d.nack()
                return False
            try:
                self._run(cls, id, lambda o: ring(o, run=False))
            finally:
                d.reject(f"{type(exc).__name__}: {exc}")
            return False
        try:
            d.ack()
        except StaleDeliveryError:
            pass  # held past ack_wait: redelivered, and then finds the alarm gone
        return ran

    def _move_near(self) -> None:
        """Move the alarms due within HORIZON from the later queue to the alarms queue (skipped while another runs)."""
        if not self._scan_lock.acquire(blocking=False):
            return
        try:
            now = self._scanned = self._now()
            for token in self._later.keys():
                entry = self._later.latest(token)
                if entry is None or entry.value["d"] - now > HORIZON:
                    continue
                # Appended, then deleted: a crash in between leaves a copy that fires unrun.
                self._alarm_appender.write_encoded(_MSGPACK.encode(entry.value), not_before=entry.value["d"])
                self._later_appender.delete(token)
        finally:
            self._scan_lock.release()

    def _fire_due(self) -> int:
        """Fire every alarm due now, in this thread; how many on_alarm calls ran and returned."""
        with self._fire_lock:
            self._check()
            if self._firer is None:
                self._firer = self._group.consumer(f"fire_due pid {os.getpid()}")
            self._move_near()
            n = 0
            while batch := self._firer.claim_many(_BATCH):
                for d in sorted(batch, key=lambda d: d.value["d"]):  # due order, not scheduling order
                    n += self._fire(d)
            return n

    def _alarm_loop(self) -> None:
        """The alarm thread: claims alarms as they come due and fires them."""
        consumer = self._group.consumer(f"alarms pid {os.getpid()}")
        try:
            while not self._stopping.is_set():
                try:
                    if self._scanned is None or self._now() - self._scanned >= HORIZON // 4:
                        self._move_near()
                    d = consumer.claim(_WAIT)
                    if d is not None:
                        self._fire(d)
                except QueueClosedError:
                    return
                except Exception:
                    _log.exception("%s: firing an alarm failed", self.path)
                    self._stopping.wait(_WAIT)
        finally:
            consumer.close()

    # -- life --------------------------------------------------------------------------------

    def _check(self) -> None:
        if self._state != "open":
            raise QueueClosedError(f"{self.path}: the objects store is closed")

    def close(self) -> None:
        """Stop the alarm thread and close the store; idempotent."""
        with self._lock:
            if self._state != "open":
                return
            self._state = "closing"
        lifecycle.closing(self)
        self._stopping.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        with self._fire_lock:
            if self._firer is not None:
                self._firer.close()
        with self._lock:
            slots = list(self._slots.values())
            self._slots.clear()
        for slot in slots:  # wait for calls in flight
            with slot.lock:
                pass
        self._state = "closed"
        self._group.close()
        self._later.close()
        self._alarms.close()
        self._queue.close()
        lifecycle.unregister(self)

    def __enter__(self) -> Objects:
        self._check()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<tape.Objects {self.path!r} {self._state}>"


def _defaults(cls: type[DurableObject]) -> bytes:
    """The record of a new object of type `cls` (cached on the class)."""
    data: bytes | None = cls.__dict__.get("_tape_defaults")
    if data is None:
        data = bytes(_MSGPACK.encode({"state": dict(cls._tape_fields), "alarms": {}}))
        cls._tape_defaults = data  # type: ignore[attr-defined]
    return data


def summary(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every live object of the store at `path`: type, id, state size (bytes), alarms; sorted (read-only)."""
    base = os.fspath(path)
    out = []
    with Queue(os.path.join(base, STATE_DIR), raw=True, read_only=True, create=False) as q:
        for key in q.keys():
            entry = q.latest(key)
            if entry is None or not isinstance(key, str):
                continue
            record = _MSGPACK.decode(entry.value)
            type_name, id = key.split("/", 1)
            alarms = sorted(record.get("alarms", {}).items(), key=lambda a: a[1][0])
            out.append({
                "type": type_name,
                "id": id,
                "index": entry.index,
                "size": len(entry.value),
                "alarms": [{"name": n, "at": to_datetime(due).isoformat()} for n, (due, _) in alarms],
            })
    return sorted(out, key=lambda o: (o["type"], o["id"]))
