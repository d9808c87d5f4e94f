"""Work queues: consumer groups over a queue's log (SPEC "Work queues: consumer groups").

A Group hands each entry of its queue to one of its consumers and takes it
back when that consumer fails. Its state is a file shared by every process
(csrc/group.c: claims, acks and liveness are shared-memory operations); its
dead letters are kept, with a copy of each payload, in a queue of their own
beside that file (<queue>/groups/<name>.dead), so that retention of the log
cannot lose them.

Threads: a Group may be shared; a Consumer belongs to one thread at a time
(give each worker thread its own). Times are the queue's clock (clock=), so
a test with a tape.testing.ManualClock drives redeliveries; every process of
a group must use one clock.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import shutil
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

from tape._args import as_int, as_seconds
from tape._native import ConsumerHandle, GroupHandle, Settings, Slot, TailerHandle
from tape import codecs
from tape._native import check
from tape._native.group import (BACKOFF_MAX, C_DL, C_END, C_GEN, C_INDEX, C_SLOT, C_TS, END, EXISTING, FIELDS, MSGPACK,
                                NS_MAX, OTHER, RAW, START, Claim, Claimer, DeliveryBase)
from tape._time import duration_ns, to_datetime
from tape.errors import ArgumentError, ArgumentTypeError, QueueClosedError, StaleDeliveryError

if TYPE_CHECKING:
    from tape.queue import Queue

__all__ = ["GROUPS_DIR", "Consumer", "DeadLetter", "Delivery", "Group", "Pending"]

GROUPS_DIR = "groups"  # beside the cycle files: <name>.group and <name>.dead/
_SLICE = 0.1  # a wait blocks in C for at most this long (Ctrl-C, closing)
ONLY_EXISTING = object()  # Group(start=ONLY_EXISTING): KeyError instead of creating it


class Pending(NamedTuple):
    """An entry held by a consumer now."""

    index: int  # type: ignore[assignment]  # the field shadows tuple.index(), as SPEC.md names it
    consumer: str | None
    attempt: int
    deadline: datetime
    idle: float  # seconds since it was claimed (or last extended)


class DeadLetter(NamedTuple):
    """An entry the group gave up on, with where it came from."""

    index: int  # type: ignore[assignment]  # the field shadows tuple.index(), as SPEC.md names it
    value: Any
    attempts: int
    reason: str | None
    when: datetime
    consumer: str | None


def _duration(seconds: Any, what: str) -> int:
    """duration_ns, at most what an int64_t of ns holds (about 292 years)."""
    ns = duration_ns(seconds, what)
    if ns > NS_MAX:
        raise ArgumentError(f"{what} must be at most {NS_MAX // 10**9} seconds, not {seconds!r}")
    return ns


def _settings(
    stored: Settings, ack_wait: Any, max_deliveries: Any, backoff: Any
) -> Settings | None:
    """The settings to store (None: keep the stored ones), checked."""
    if ack_wait is None and max_deliveries is None and backoff is None:
        return None
    wait_ns = stored.ack_wait_ns
    if ack_wait is not None:
        wait_ns = _duration(ack_wait, "ack_wait")
        if wait_ns <= 0:
            raise ArgumentError(f"ack_wait must be more than 0 seconds, not {ack_wait!r}")
    most = stored.max_deliveries
    if max_deliveries is not None:
        most = as_int(max_deliveries, "max_deliveries")
        if not 1 <= most <= 2**31:
            raise ArgumentError(f"max_deliveries must be at least 1, not {most}")
    steps = stored.backoff_ns
    if backoff is not None:
        if isinstance(backoff, (str, bytes)) or not isinstance(backoff, Iterable):
            raise ArgumentTypeError(f"backoff must be a sequence of seconds, not {type(backoff).__name__}")
        steps = tuple(_duration(b, "a backoff step") for b in backoff)
        if len(steps) > BACKOFF_MAX:
            raise ArgumentError(f"backoff has at most {BACKOFF_MAX} steps, not {len(steps)}")
    return Settings(wait_ns, most, steps)


def _start(start: Any) -> int:
    if start is ONLY_EXISTING:
        return EXISTING
    if start is None or start == "start":
        return START
    if start == "end":
        return END
    if isinstance(start, str):
        raise ArgumentError(f"start must be 'start', 'end' or an index, not {start!r}")
    index = as_int(start, "start")
    if index < 0:
        raise ArgumentError(f"start must be an index (>= 0), not {index}")
    return index


class Group:
    """A consumer group of a queue; Queue.group() opens one."""

    def __init__(
        self,
        queue: Queue,
        name: str,
        *,
        start: Any = None,
        ack_wait: Any = None,
        max_deliveries: Any = None,
        backoff: Any = None,
    ) -> None:
        self._queue = queue
        self.name = name
        first = _start(start)
        self._native = GroupHandle.open(queue._handle(), name, first, queue.sync == "always")
        try:
            changed = _settings(self._native.settings(), ack_wait, max_deliveries, backoff)
            if changed is not None:
                self._native.configure(changed)
        except BaseException:
            self.close()
            raise
        self._clock: Callable[[], int] = queue._clock or time.time_ns
        self._decode = queue.codec.decode
        self._lock = threading.Lock()  # guards the two below
        self._reader: TailerHandle | None = None
        self._dead: Queue | None = None

    # -- consumers --------------------------------------------------------------------------

    def consumer(self, name: str | None = None) -> Consumer:
        """A new consumer (one per worker thread or process); the name is for people."""
        if name is not None:
            from tape._args import as_name

            as_name(name, "a consumer name", 48)
        return Consumer(self, self._native.consumer(name), name)

    # -- inspection -------------------------------------------------------------------------

    def settings(self) -> dict[str, Any]:
        s = self._native.settings()
        return {
            "ack_wait": s.ack_wait_ns / 1e9,
            "max_deliveries": s.max_deliveries,
            "backoff": [b / 1e9 for b in s.backoff_ns],
        }

    def pending(self, *, consumer: str | None = None, idle: float | None = None) -> list[Pending]:
        """The entries held now, oldest first (only `consumer`'s; only those held `idle` seconds or more)."""
        now = self._clock()
        wait_ns = self._native.settings().ack_wait_ns
        names = self._native.consumer_names()
        held = []
        for s in sorted(self._native.slots(), key=lambda s: s.index):
            if s.state != "claimed":
                continue
            who = names.get(s.owner, (None, False))[0] or None
            since = max(0.0, (now - (s.due_ns - wait_ns)) / 1e9)
            if consumer is not None and who != consumer:
                continue
            if idle is not None and since < as_seconds(idle):
                continue
            held.append(Pending(s.index, who, s.attempt, to_datetime(s.due_ns), since))
        return held

    def info(self) -> dict[str, Any]:
        """Position, ack floor, lag (entries not yet handed out; `deferred` of them not due when the position passed
        them), in flight, waiting (to be handed out again, or not yet due; `later` of them nacked for later), dead
        letters, live consumers and settings."""
        i = self._native.info(self._clock())
        lag = 0
        for c in self._queue.cycles():
            if c.last_index is None or (i.last is not None and c.last_index <= i.last):
                continue
            start = c.first_index if c.first_index is not None else 0
            lag += c.last_index - max(start - 1, -1 if i.last is None else i.last)
        return {
            "name": self.name,
            "position": i.last,
            "ack_floor": i.floor,
            "lag": lag + i.deferred,
            "deferred": i.deferred,
            "in_flight": i.in_flight,
            "waiting": i.waiting + i.later,
            "later": i.later,
            "dead_letters": len(self._records()) + i.dead,
            "consumers": i.consumers,
            "acked": i.acked,
            "settings": self.settings(),
        }

    def floor(self) -> int | None:
        """Every entry before this index is finished (None: the group has taken none yet)."""
        return self._native.info(self._clock()).floor

    # -- dead letters -------------------------------------------------------------------------

    def _dead_queue(self) -> Queue:
        with self._lock:
            if self._dead is None:
                from tape.queue import Queue

                path = os.path.join(self._queue.path, GROUPS_DIR, f"{self.name}.dead")
                self._dead = Queue(path, codec="msgpack", sync=self._queue.sync,
                                   read_only=self._queue.read_only, create=not self._queue.read_only)
            return self._dead

    def _scan(self) -> tuple[list[tuple[int, dict[str, Any]]], set[int]]:
        """The dead letters' queue: (its index, record) of each dead letter not redriven, oldest first
        (a death stored twice, by a consumer killed before it freed the slot, counts once), and the
        indexes of those redriven."""
        path = os.path.join(self._queue.path, GROUPS_DIR, f"{self.name}.dead")
        if not os.path.exists(path):
            return [], set()
        found: dict[int, dict[str, Any]] = {}
        redriven: set[int] = set()
        deaths: set[int] = set()
        with self._dead_queue().tailer() as t:
            for e in t.entries():
                rec = e.value
                if "redriven" in rec:
                    found.pop(rec["redriven"], None)
                    redriven.add(rec["redriven"])
                elif rec.get("death") is None or rec["death"] not in deaths:
                    deaths.add(rec.get("death"))
                    found[e.index] = rec
        return list(found.items()), redriven

    def _records(self) -> list[tuple[int, dict[str, Any]]]:
        """The dead letters not redriven: (index in the dead letters' queue, record), oldest first."""
        return self._scan()[0]

    def dead_letters(self) -> list[DeadLetter]:
        """The entries given up on (delivered max_deliveries times, or rejected), oldest first."""
        return [
            DeadLetter(r["index"], self._decode(r["payload"]), r["attempts"], r["reason"],
                       to_datetime(r["when"]), r["consumer"])
            for _, r in self._records()
        ]

    def redrive(self, indexes: Iterable[int] | None = None) -> int:
        """Hand dead letters out again (those of `indexes`, or all), as new deliveries; how many."""
        wanted = None if indexes is None else {as_int(i, "index") for i in indexes}
        n = 0
        dead = self._dead_queue()
        a = dead.appender()
        lock = os.open(dead.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one redrive at a time, across processes
            done = self._scan()[1]
            last = self._native.info(self._clock()).redriven
            if last is not None and last not in done:  # a redrive killed before its record
                a.write({"redriven": last})
                done.add(last)
            for at, r in self._records():
                if at in done or (wanted is not None and r["index"] not in wanted):
                    continue
                if self._native.redrive(r["index"], at, self._clock()):
                    n += 1
                a.write({"redriven": at})  # the group remembers the last one until this is written
        finally:
            os.close(lock)
            a.close()
        return n

    def _payload(self, index: int, dead_letter: int | None) -> tuple[int, bytes] | None:
        """(timestamp, payload) of entry `index` (or of its copy in the dead letters); None when gone."""
        with self._lock:
            if dead_letter is None:
                if self._reader is None:
                    self._reader = self._queue._handle().tailer(None, 0)
                if not self._reader.to_index(index):
                    return None
                e = self._reader.read_one()
                return None if e is None else (e.timestamp, e.value)
        with self._dead_queue().tailer() as t:
            if not t.to_index(dead_letter):
                return None
            e = t.read_entry()
        if e is None:
            return None
        return e.value["timestamp"], e.value["payload"]

    def _bury(self, c: ConsumerHandle, s: Slot, reason: str | None, consumer: str | None) -> None:
        """Store dead entry `s` (taken by c) as a dead letter, then free it."""
        got = self._payload(s.index, s.dead_letter)
        if got is not None:
            ts, payload = got
            self._dead_queue().appender().write({
                "index": s.index, "attempts": s.attempt, "reason": reason, "when": self._clock(),
                "consumer": consumer, "timestamp": ts, "payload": payload,
                "death": s.due_ns,  # the death's id (C: make_dead): stored twice, it counts once
            })
        c.dead_done(s.slot, s.generation)

    # -- closing ------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the group and its consumers (their claims are given back); idempotent."""
        native = getattr(self, "_native", None)
        if native is not None:
            native.queue.release(native, lambda: None)
        with getattr(self, "_lock", threading.Lock()):
            dead, self._dead = getattr(self, "_dead", None), None
            reader, self._reader = getattr(self, "_reader", None), None
        if reader is not None:
            reader.queue.release(reader, lambda: None)
        if dead is not None:
            dead.close()

    def __enter__(self) -> Group:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<tape.Group {self.name!r} of {self._queue.path!r}>"


class Delivery(DeliveryBase):
    """An entry claimed by a consumer: finish it with ack, nack, extend or reject (or `with`).

    Its fields (value, index, attempt, timestamp) and ack() are its C base's
    (tape/_native/_hot_group.c), which claims build in C; ack() goes to
    _ack_slow where C stops (a lapsed claim, a clock, a closed consumer)."""

    __slots__ = ()
    _consumer: Consumer

    def __init__(self, consumer: Consumer, claim: Claim, value: Any) -> None:
        """claim: the claim's numbers (tape._native.group.FIELDS, in that order)."""
        self.value = value
        self._slot, self._gen, self.index, self.attempt, self._due, _, self.timestamp, _ = claim
        self._consumer = consumer
        self._outcome = None

    @property
    def deadline(self) -> float:
        """When the claim lapses, in epoch seconds."""
        return self._due / 1e9

    @property
    def outcome(self) -> str | None:
        """How this consumer finished it: "acked", "nacked" or "rejected"; None while it holds it."""
        return self._outcome

    def _ack_slow(self) -> None:
        """ack() where C stops: StaleDeliveryError when the claim lapsed."""
        c = self._consumer
        c._native.ack(self._slot, self._gen, c._clock())
        self._outcome = "acked"

    def nack(self, delay: float | timedelta | None = None) -> None:
        """Give it back, to be handed out again after `delay` seconds (None: the group's backoff)."""
        c = self._consumer
        delay_ns = -1 if delay is None else _duration(delay, "delay")
        now = c._group._clock()
        dead = c._native.nack(self._slot, self._gen, now, delay_ns)
        self._outcome = "nacked"
        if dead:  # out of deliveries: stored as a dead letter now
            c._bury_dead(now)

    def extend(self, seconds: float | timedelta) -> None:
        """Still working: the claim's deadline becomes `seconds` from now."""
        c = self._consumer
        now = c._group._clock()
        delay = _duration(seconds, "seconds")
        c._native.extend(self._slot, self._gen, now, delay)
        self._due = min(now + delay, NS_MAX)

    def reject(self, reason: str | None = None) -> None:
        """No more tries: to the group's dead letters now, with `reason`."""
        if reason is not None and not isinstance(reason, str):
            raise ArgumentTypeError(f"reason must be a str, not {type(reason).__name__}")
        c = self._consumer
        s = c._native.reject(self._slot, self._gen, c._group._clock())
        self._outcome = "rejected"
        c._group._bury(c._native, s, reason if reason is not None else "rejected", c.name)

    def __enter__(self) -> Delivery:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self._outcome is not None:
            return
        if exc_type is None:
            self.ack()
            return
        try:
            self.nack()
        except (StaleDeliveryError, QueueClosedError):
            pass  # the claim lapsed or its consumer closed: nothing to give back; the handler's error goes on

    def __repr__(self) -> str:
        return f"<tape.Delivery index={self.index} attempt={self.attempt}>"


class Consumer(Claimer):
    """A consumer of a group: claims entries; one thread at a time.

    claim() is its C base's (tape/_native/_hot_group.c), as are the claims
    and acks of claim_many and ack_many; _claim_slow takes over where C stops
    (nothing due, a timeout to wait, a clock, an error)."""

    if TYPE_CHECKING:
        def claim(self, timeout: float | None = None) -> Delivery | None:
            """The next entry due, claimed; None when none came within `timeout` seconds (None: no wait)."""

    def __init__(self, group: Group, native: ConsumerHandle, name: str | None) -> None:
        self._group = group
        self._native = native
        self.name = name
        self._claims = 0
        self._clock = group._clock
        codec = type(group._queue.codec)
        kind = RAW if codec is codecs.RawCodec else MSGPACK if codec is codecs.MsgpackCodec else OTHER
        self._hot_setup(native.hot, kind, group._decode, Delivery, group._clock is time.time_ns)

    def _bury_dead(self, now: int) -> None:
        """Store the entries that ran out of deliveries as dead letters."""
        while (s := self._native.take_dead(now)) is not None:
            last = self._group._native.consumer_names().get(s.owner, (None, False))[0] or None
            self._group._bury(self._native, s, s.reason, last)

    def _claim_now(self) -> Delivery | None:
        """The next entry due, claimed (in C where it can), or None."""
        d = self._hot_claim()
        return d if d is not None else self._claim_python()

    def _claim_python(self) -> Delivery | None:
        """_claim_now in Python: C stopped (nothing due, a clock, an error, a closed consumer)."""
        while True:
            now = self._clock()
            self._claims += 1
            if not self._claims & 63:  # entries that ran out of deliveries meanwhile
                self._bury_dead(now)
            got = self._native.claim(now)
            if got is None:
                self._bury_dead(now)
                return None
            o, payload = got
            if payload is None:
                payload = self._copy(o, now)
                if payload is None:
                    continue
            return Delivery(self, o, self._group._decode(payload))

    def _copy(self, o: Claim, now: int) -> bytes | None:
        """A redriven dead letter's payload, from its copy (its timestamp set in o); None when the copy is lost
        (the delivery is finished then)."""
        copy = self._group._payload(o[C_INDEX], o[C_DL])
        if copy is None:
            self._native.ack(o[C_SLOT], o[C_GEN], now)
            return None
        o[C_TS], payload = copy
        return payload

    def _redriven(self, o: Claim, now: int) -> Delivery | None:
        """A redriven dead letter claimed in C: its Delivery, its payload read from its copy (None: lost)."""
        payload = self._copy(o, now)
        return None if payload is None else Delivery(self, o, self._group._decode(payload))

    def _claim_slow(self, timeout: float | None = None) -> Delivery | None:
        """claim() where C stops."""
        limit = None if timeout is None else as_seconds(timeout)
        d = self._claim_python()
        if d is not None or limit is None:
            return d
        end = time.monotonic() + limit
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return None
            self._native.wait(self._group._clock(), int(min(left, _SLICE) * 1e9))
            d = self._claim_now()
            if d is not None:
                return d

    def claim_many(self, n: int, timeout: float | None = None) -> list[Delivery]:
        """Up to n entries due, claimed together (waiting up to `timeout` seconds for the first)."""
        n = as_int(n, "n")
        if n < 1:
            raise ArgumentError(f"n must be at least 1, not {n}")
        limit = None if timeout is None else as_seconds(timeout)
        got = self._batch(min(n, sys.maxsize))  # however many are asked for, what is due
        if got or limit is None:
            return got
        first = self.claim(limit)
        if first is None:
            return []
        return [first, *self._batch(n - 1)] if n > 1 else [first]

    def _batch(self, n: int) -> list[Delivery]:
        """Up to n entries due, claimed: in C, else (a clock, an error, ...) in Python."""
        got = self._hot_batch(n)
        return self._claim_batch(n) if got is False else got

    def _claim_batch(self, n: int) -> list[Delivery]:
        decode = self._group._decode
        out: list[Delivery] = []
        while len(out) < n:
            now = self._clock()
            flat, data = self._native.claim_many(now, n - len(out))
            if not flat:
                break
            start = 0
            for k in range(0, len(flat), FIELDS):
                o = flat[k:k + FIELDS]
                end = o[C_END]
                if o[C_DL] >= 0:  # a redriven dead letter: its copy
                    payload = self._copy(o, now)
                    if payload is not None:
                        out.append(Delivery(self, o, decode(payload)))
                    continue
                out.append(Delivery(self, o, decode(data[start:end])))
                start = end
        self._bury_dead(self._clock())
        return out

    def ack_many(self, deliveries: Iterable[Delivery]) -> None:
        """Ack deliveries of this consumer together, under one lock (as Redis XACK takes many ids). Those whose
        claim had lapsed change nothing: StaleDeliveryError names them, after the others are acked."""
        ds = deliveries if isinstance(deliveries, list) else list(deliveries)
        got = self._hot_ack_many(ds, self._group._clock())
        if got is False:
            stale = self._ack_many_slow(ds)
        elif isinstance(got, int):  # an error of the core: nothing acked
            check(got, self._native.path)
            stale = []
        else:
            stale = got
        if stale:
            which = ", ".join(str(ds[k].index) for k in stale[:10])
            raise StaleDeliveryError(f"{self._group._queue.path}: group {self._group.name!r}: {len(stale)} of "
                                     f"{len(ds)} claims had lapsed (indexes {which}{', ...' if len(stale) > 10 else ''})")

    def _ack_many_slow(self, ds: list[Delivery]) -> list[int]:
        """ack_many where C stops (not a list of distinct deliveries of this consumer, a closed consumer):
        it raises, or acks and returns the positions of the lapsed ones."""
        for d in ds:
            if not isinstance(d, Delivery) or d._consumer is not self:
                raise ArgumentError(f"ack_many takes deliveries of this consumer, not {d!r}")
        if not ds:
            return []
        if len({id(d) for d in ds}) != len(ds):
            raise ArgumentError("ack_many takes each delivery once; nothing was acked")
        stale = self._native.ack_many([d._slot for d in ds], [d._gen for d in ds], self._group._clock())
        lapsed = set(stale)  # their outcome stays what it was
        for k, d in enumerate(ds):
            if k not in lapsed:
                d._outcome = "acked"
        return stale

    def follow(self, timeout: float | None = None) -> Iterator[Delivery]:
        """Claim entries as they come; stops after `timeout` seconds with none (None: never) or when closed."""
        limit = None if timeout is None else as_seconds(timeout)
        while True:
            try:
                d = self.claim(_SLICE if limit is None else limit)
            except QueueClosedError:
                return
            if d is None:
                if limit is not None:
                    return
                continue
            yield d

    async def aclaim(self, timeout: float | None = None) -> Delivery | None:
        """claim() for asyncio code (waits in a worker thread, slice by slice)."""
        loop = asyncio.get_running_loop()
        end = None if timeout is None else loop.time() + as_seconds(timeout)
        while True:
            d = self._claim_now()
            if d is not None:
                return d
            wait = _SLICE if end is None else min(_SLICE, end - loop.time())
            if end is not None and wait <= 0:
                return None
            d = await self._claim_in_thread(wait)
            if d is not None:
                return d

    async def afollow(self) -> AsyncIterator[Delivery]:
        """follow() for asyncio code: `async for m in consumer.afollow()`."""
        while True:
            try:
                d = await self._claim_in_thread(_SLICE)
            except QueueClosedError:
                return
            if d is not None:
                yield d

    async def _claim_in_thread(self, wait: float) -> Delivery | None:
        """claim(wait) in a worker thread; when the await is cancelled, what it claims is given back."""
        cancelled = threading.Event()

        def run() -> Delivery | None:
            d = self.claim(wait)
            if d is not None and cancelled.is_set():
                d.nack(0)
                return None
            return d

        task = asyncio.ensure_future(asyncio.to_thread(run))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            cancelled.set()
            task.add_done_callback(_give_back)
            raise

    def close(self) -> None:
        """Give back every entry it holds (handed out again at once); idempotent."""
        self._native.close()

    def __enter__(self) -> Consumer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        native = getattr(self, "_native", None)
        if native is not None:
            native.close()

    def __repr__(self) -> str:
        return f"<tape.Consumer {self.name!r} of group {self._group.name!r}>"


def _give_back(task: asyncio.Future[Delivery | None]) -> None:
    """A cancelled aclaim's thread claimed after all: hand the entry out again at once."""
    if not task.cancelled() and task.exception() is None:
        d = task.result()
        if d is not None:
            d.nack(0)


def remove(queue: Queue, name: str) -> None:
    """Remove group `name`'s file and dead letters: KeyError when there is none, TapeOSError (EBUSY)
    naming its live consumers when it has some (nothing removed then)."""
    g = Group(queue, name, start=ONLY_EXISTING)
    try:
        g._native.remove()
    finally:
        g.close()
    shutil.rmtree(os.path.join(queue.path, GROUPS_DIR, name + ".dead"), ignore_errors=True)


def names(queue_path: str) -> list[str]:
    """The groups of the queue at `queue_path`, sorted."""
    try:
        files = os.listdir(os.path.join(queue_path, GROUPS_DIR))
    except FileNotFoundError:
        return []
    return sorted(f[: -len(".group")] for f in files if f.endswith(".group") and not f.startswith("."))
