"""GroupHandle and ConsumerHandle: a consumer group's C handle and its consumers (csrc/group.c).

A GroupHandle is a child of its QueueHandle (closed before the queue); it
closes its consumers before itself. A ConsumerHandle owns a C consumer and a
C tailer of its own, through which its claims read the entries; every call
holds its lock (one call at a time per consumer).
"""

from __future__ import annotations

import errno
import os
import weakref
from typing import TYPE_CHECKING, Any, NamedTuple

from tape._native._hot import MSGPACK, OTHER, RAW, Claimer, Claims, DeliveryBase
from tape._native.core import NAME_MAX, ChildHandle, address, check, ffi, lib
from tape.errors import LimitError, QueueClosedError, TapeOSError

if TYPE_CHECKING:
    from tape._native.queue import QueueHandle

__all__ = [
    "GroupHandle", "ConsumerHandle", "Settings", "GroupInfo", "Slot", "Claim", "Claimer", "DeliveryBase",
    "SLOTS", "LATER", "CONSUMERS", "BACKOFF_MAX", "MANY", "MANY_BYTES", "START", "END", "EXISTING", "NS_MAX", "STATES",
    "FIELDS", "C_SLOT", "C_GEN", "C_INDEX", "C_ATTEMPT", "C_DUE", "C_DL", "C_TS", "C_END", "REASONS",
    "RAW", "MSGPACK", "OTHER",
]

SLOTS = lib.TAPE_GROUP_SLOTS  # entries in flight per group
CONSUMERS = lib.TAPE_GROUP_CONSUMERS
BACKOFF_MAX = lib.TAPE_GROUP_BACKOFF
MANY, MANY_BYTES = 1024, 1 << 20  # a batch of claims: at most so many, and bytes of payloads
START, END, EXISTING = -1, -2, -3  # tape_group_open's start for "start", "end", and: do not create
NS_MAX = 2**63 - 1  # a duration in ns fits an int64_t (due times saturate in C)

STATES = {
    lib.TAPE_GS_READY: "waiting",
    lib.TAPE_GS_CLAIMED: "claimed",
    lib.TAPE_GS_DEAD: "dead",
    lib.TAPE_GS_MOVING: "dead",
}
_CLAIM = lib.tape_group_claim_many  # the hot calls, looked up once
_ACK = lib.tape_group_ack
_UNPACK = ffi.unpack
FIELDS = lib.TAPE_CLAIM_FIELDS  # a claim's numbers, in this order:
C_SLOT, C_GEN, C_INDEX, C_ATTEMPT, C_DUE, C_DL, C_TS, C_END = range(FIELDS)
Claim = list[int]  # a claim's FIELDS numbers (C_DL: the dead letter's index for a redriven one, else -1)
REASONS = {lib.TAPE_GR_DELIVERIES: "max_deliveries", lib.TAPE_GR_REJECTED: "rejected"}


class Settings(NamedTuple):
    """A group's stored settings, in ns."""

    ack_wait_ns: int
    max_deliveries: int
    backoff_ns: tuple[int, ...]


class GroupInfo(NamedTuple):
    """tape_group_info: indexes are None where there is none."""

    last: int | None
    floor: int | None
    in_flight: int
    waiting: int
    dead: int
    consumers: int
    generation: int
    acked: int
    redriven: int | None  # the last dead letter redriven (its index in the dead letters' queue)
    deferred: int  # not yet handed out, kept out of the table until due (none of the counts above)
    later: int  # nacked for later, kept out of the table until due (not in waiting)


class Slot(NamedTuple):
    """One entry of a group's table (a delivery, or a waiting or dead entry)."""

    slot: int
    index: int  # type: ignore[assignment]  # the field shadows tuple.index(), as SPEC.md names it
    generation: int
    due_ns: int
    dead_letter: int | None  # a redriven dead letter: its index in the dead letters' queue
    state: str
    attempt: int
    owner: int  # consumer slot + 1, 0 none
    reason: str | None


def _slot(d: Any) -> Slot:
    return Slot(
        slot=d.d_slot,
        index=d.d_index,
        generation=d.d_gen,
        due_ns=d.d_due,
        dead_letter=None if d.d_dl < 0 else d.d_dl,
        state=STATES.get(d.d_state, "free"),
        attempt=d.d_attempt,
        owner=d.d_owner,
        reason=REASONS.get(d.d_reason),
    )


class GroupHandle(ChildHandle):
    """An open consumer group of a queue."""

    CLOSED = "the group or its queue is closed"
    __slots__ = ("__weakref__", "consumers", "name")

    def __init__(self, queue: QueueHandle, ptr: Any, name: str) -> None:
        super().__init__(queue, ptr)
        self.name = name
        self.consumers: set[ConsumerHandle] = set()

    @classmethod
    def open(cls, queue: QueueHandle, name: str, start: int, sync: bool) -> GroupHandle:
        """Open group `name` of `queue` (created at `start`: an index, START or END); KeyError when a read-only
        queue has none, or `start` is EXISTING and there is none."""
        out = ffi.new("tape_group **")
        with queue.lock:
            rc = lib.tape_group_open(queue.ptr(), name.encode(), start, ffi.NULL, int(sync), out)
            if rc == -errno.ENOENT:
                raise KeyError(name)
            if rc == lib.TAPE_ELIMIT:
                raise LimitError(f"{queue.path}: group {name!r}: {CONSUMERS} consumers of it are open")
            check(rc, f"{queue.path}: group {name!r}")
            handle = cls(queue, out[0], name)
            queue._children.add(handle)  # closed before the queue
        _OPEN.add(handle)
        return handle

    def close(self) -> None:
        with self.lock:
            for consumer in list(self.consumers):
                consumer.close()
            ptr, self.ptr = self.ptr, None
            if ptr is not None:
                lib.tape_group_close(ptr)

    def settings(self) -> Settings:
        out = ffi.new("tape_group_settings *")
        with self.lock:
            check(lib.tape_group_settings_get(self.live(), out), self.path)
        return Settings(out.gset_ack_wait_ns, out.gset_max_deliveries,
                        tuple(out.gset_backoff_ns[0:out.gset_nbackoff]))

    def configure(self, settings: Settings) -> None:
        """Replace the stored settings."""
        cset = ffi.new("tape_group_settings *")
        cset.gset_ack_wait_ns = settings.ack_wait_ns
        cset.gset_max_deliveries = settings.max_deliveries
        cset.gset_nbackoff = len(settings.backoff_ns)
        for k, ns in enumerate(settings.backoff_ns):
            cset.gset_backoff_ns[k] = ns
        with self.lock:
            check(lib.tape_group_settings_set(self.live(), cset), self.path)

    def info(self, now_ns: int) -> GroupInfo:
        out = ffi.new("tape_group_info *")
        with self.lock:
            check(lib.tape_group_info_get(self.live(), now_ns, out), self.path)
        return GroupInfo(
            last=None if out.gi_last < 0 else out.gi_last,
            floor=None if out.gi_floor < 0 else out.gi_floor,
            in_flight=out.gi_in_flight,
            waiting=out.gi_waiting,
            dead=out.gi_dead,
            consumers=out.gi_consumers,
            generation=out.gi_generation,
            acked=out.gi_acked,
            redriven=None if out.gi_redriven < 0 else out.gi_redriven,
            deferred=out.gi_deferred,
            later=out.gi_later,
        )

    def slots(self) -> list[Slot]:
        """Every entry in the table, by slot."""
        d = ffi.new("tape_delivery *")
        found = []
        with self.lock:
            ptr = self.live()
            for k in range(SLOTS):
                rc = lib.tape_group_slot_get(ptr, k, d)
                check(rc, self.path)
                if rc == 1:
                    found.append(_slot(d))
        return found

    def consumer_names(self) -> dict[int, tuple[str, bool]]:
        """Consumer slot + 1 -> (name, alive) for every consumer in use."""
        name = ffi.new("char[]", NAME_MAX)
        alive = ffi.new("int *")
        found = {}
        with self.lock:
            ptr = self.live()
            for k in range(CONSUMERS):
                if lib.tape_group_consumer_get(ptr, k, name, NAME_MAX, alive) == 1:
                    found[k + 1] = (ffi.string(name).decode(errors="replace"), bool(alive[0]))
        return found

    def redrive(self, index: int, dead_letter: int, now_ns: int) -> bool:
        """Hand dead letter `dead_letter` (entry `index`) out again; False when it is in the table already."""
        with self.lock:
            rc = lib.tape_group_redrive(self.live(), index, dead_letter, now_ns)
        check(rc, self.path)
        return bool(rc == 1)

    def remove(self) -> None:
        """Unlink the group's file when no live consumer uses it: TapeOSError EBUSY naming them when one
        does, KeyError when it is gone."""
        with self.lock:
            rc = lib.tape_group_remove(self.live())
        if rc == -errno.ENOENT:
            raise KeyError(self.name)
        if rc == -errno.EBUSY:
            live = ", ".join(repr(n) if n else "(anonymous)" for n, alive in self.consumer_names().values() if alive)
            raise TapeOSError(errno.EBUSY, f"group {self.name!r} has live consumers: {live or '(closing)'}; "
                                           "close them first", self.path)
        check(rc, self.path)

    def consumer(self, name: str | None) -> ConsumerHandle:
        """A new consumer of the group, with a tailer of its own."""
        with self.queue.lock, self.lock:
            qptr = self.queue.ptr()
            ptr = self.live()
            tout = ffi.new("tape_tailer **")
            check(lib.tape_tailer_open(qptr, tout), self.path)
            cout = ffi.new("tape_consumer **")
            rc = lib.tape_consumer_open(ptr, name.encode() if name else ffi.NULL, cout)
            if rc < 0:
                lib.tape_tailer_close(tout[0])
                if rc == -errno.ENOENT:
                    raise TapeOSError(errno.ENOENT, f"group {self.name!r} was removed", self.path)
                if rc == lib.TAPE_ELIMIT:
                    raise LimitError(f"{self.path}: group {self.name!r}: {CONSUMERS} consumers of it are open")
                check(rc, self.path)
            handle = ConsumerHandle(self, cout[0], tout[0])
            self.consumers.add(handle)
            return handle

    def forget(self) -> None:
        """In a fork child: drop the inherited consumers and close the handle, without touching the
        group (no locks taken: another thread of the parent may have held them when it forked)."""
        for consumer in list(self.consumers):
            consumer.forget()
        ptr, self.ptr = self.ptr, None
        if ptr is not None:
            lib.tape_group_close(ptr)  # local only: unmaps, closes its file


class ConsumerHandle:
    """A C consumer and its tailer; closing gives its claims back. `hot` hands both to the claims and acks in
    C (tape._native._hot.Claimer, the base of tape.Consumer) until closed; it is the handle's lock too."""

    __slots__ = ("_buf", "_dead", "_out", "group", "hot", "id", "lock", "path", "ptr", "tailer")

    def __init__(self, group: GroupHandle, ptr: Any, tailer: Any) -> None:
        self.group = group
        self.path = group.path
        self.ptr: Any = ptr
        self.tailer: Any = tailer
        self.hot = Claims(address(ptr), address(tailer))
        self.lock = self.hot  # the claims in C take it too
        self.id: int = lib.tape_consumer_id(ptr)
        self._dead = ffi.new("tape_delivery *")
        self._out = ffi.new("int64_t[]", MANY * FIELDS)
        self._buf: Any = None  # MANY_BYTES for payloads, made at the first claim

    def live(self) -> Any:
        ptr = self.ptr
        if ptr is None:
            raise QueueClosedError(f"{self.path}: the consumer, its group or its queue is closed")
        return ptr

    def forget(self) -> None:
        """In a fork child: close the inherited consumer's file (the parent's liveness byte stays the
        parent's alone) without changing the group; using it raises QueueClosedError from then on."""
        ptr, self.ptr = self.ptr, None
        self.hot.shut()
        if ptr is not None:
            # The inherited lock may be held by a thread of the parent, which is not here to release it.
            fresh = Claims(address(ptr), address(self.tailer))
            fresh.shut()
            self.hot = self.lock = fresh
            lib.tape_consumer_forget(ptr)

    def close(self) -> None:
        """Give back every claim, free the consumer and its tailer; idempotent."""
        with self.lock:
            ptr, self.ptr = self.ptr, None
            self.hot.shut()
            if ptr is not None:
                lib.tape_consumer_close(ptr)
                lib.tape_tailer_close(self.tailer)
        self.group.consumers.discard(self)

    def claim(self, now_ns: int) -> tuple[Claim, bytes | None] | None:
        """The next entry due, claimed: (its numbers, payload; None for a redriven dead letter: read its copy);
        None when nothing is due."""
        buf = self._buf
        if buf is None:
            buf = self._buf = ffi.new("char[]", MANY_BYTES)
        out = self._out
        lock = self.lock
        lock.acquire()  # the hottest call: acquire/release cost less than `with`
        try:
            ptr = self.ptr
            got = _CLAIM(ptr if ptr is not None else self.live(), self.tailer, now_ns, 1, out, buf, MANY_BYTES)
            if got == 1:
                o: Claim = _UNPACK(out, FIELDS)
                return o, (None if o[C_DL] >= 0 else _UNPACK(buf, o[C_END]))
            if got == lib.TAPE_EINVAL:  # larger than the buffer: with one of its size
                big = ffi.new("char[]", out[C_END])
                got = _CLAIM(self.live(), self.tailer, now_ns, 1, out, big, out[C_END])
                if got == 1:
                    o = _UNPACK(out, FIELDS)
                    return o, _UNPACK(big, o[C_END])
        finally:
            lock.release()
        check(got, self.path)
        return None

    def claim_many(self, now_ns: int, n: int) -> tuple[list[int], bytes]:
        """Up to n entries due, claimed under one lock: their numbers (FIELDS each, one after the other) and
        their payloads back to back (claim k's ends at its C_END); ([], b"") when nothing is due."""
        buf = self._buf
        if buf is None:
            buf = self._buf = ffi.new("char[]", MANY_BYTES)
        out = self._out
        with self.lock:
            got = _CLAIM(self.live(), self.tailer, now_ns, min(n, MANY), out, buf, MANY_BYTES)
            if got > 0:
                flat: list[int] = _UNPACK(out, got * FIELDS)
                return flat, _UNPACK(buf, flat[-1])
        if got == lib.TAPE_EINVAL:  # the first entry due is larger than the buffer: alone
            one = self.claim(now_ns)
            if one is None:
                return [], b""
            o, payload = one
            o[C_END] = len(payload or b"")
            return o, payload or b""
        check(got, self.path)
        return [], b""

    def wait(self, now_ns: int, timeout_ns: int) -> None:
        """Sleep until something may be due: a new entry, a due time, a look for dead consumers, or timeout_ns."""
        with self.lock:
            ptr = self.live()
            hint = lib.tape_group_wait_hint(ptr, self.tailer, now_ns)
            if hint < 0:
                check(hint, self.path)
            if timeout_ns < 0 or hint < timeout_ns:
                timeout_ns = hint
            if timeout_ns == 0:
                return
            rc = lib.tape_wait(self.tailer, timeout_ns)
        if rc < 0 and rc != -errno.EINTR:
            check(rc, self.path)

    def _finish(self, call: Any, *args: Any) -> int:
        with self.lock:
            rc: int = call(self.live(), *args)
        if rc < 0:
            check(rc, self.path)
        return rc

    def ack(self, slot: int, gen: int, now_ns: int) -> None:
        lock = self.lock
        lock.acquire()  # the hottest call: acquire/release cost less than `with`
        try:
            ptr = self.ptr
            rc = _ACK(ptr if ptr is not None else self.live(), slot, gen, now_ns)
        finally:
            lock.release()
        if rc:
            check(rc, self.path)

    def ack_many(self, slots: list[int], gens: list[int], now_ns: int) -> list[int]:
        """Ack the deliveries (slots[i], gens[i]) under one lock; the positions of those whose claim had lapsed
        (unchanged)."""
        n = len(slots)
        stale = ffi.new("uint8_t[]", n)
        with self.lock:
            rc = lib.tape_group_ack_many(self.live(), slots, gens, n, now_ns, stale)
        check(rc, self.path)
        return [k for k in range(n) if stale[k]] if rc != n else []

    def nack(self, slot: int, gen: int, now_ns: int, delay_ns: int) -> bool:
        """delay_ns < 0: the group's backoff. True when it made the entry dead (out of deliveries)."""
        with self.lock:
            rc: int = lib.tape_group_nack(self.live(), slot, gen, now_ns, delay_ns)
        if rc < 0:
            check(rc, self.path)
        return rc == 1

    def extend(self, slot: int, gen: int, now_ns: int, delay_ns: int) -> None:
        self._finish(lib.tape_group_extend, slot, gen, now_ns, delay_ns)

    def reject(self, slot: int, gen: int, now_ns: int) -> Slot:
        """Make the delivery dead and take it to store (then dead_done)."""
        d = ffi.new("tape_delivery *")
        self._finish(lib.tape_group_reject, slot, gen, now_ns, d)
        return _slot(d)

    def take_dead(self, now_ns: int) -> Slot | None:
        """A dead entry to store as a dead letter (then dead_done), or None."""
        d = self._dead
        with self.lock:
            rc = lib.tape_group_take_dead(self.live(), now_ns, d)
        check(rc, self.path)
        return _slot(d) if rc == 1 else None

    def dead_done(self, slot: int, gen: int) -> None:
        self._finish(lib.tape_group_dead_done, slot, gen)


_OPEN: weakref.WeakSet[GroupHandle] = weakref.WeakSet()  # the groups open in this process


def _after_fork_in_child() -> None:
    """A fork child does not own its parent's consumers: they are dropped (SPEC: open new ones)."""
    for group in list(_OPEN):
        group.forget()


os.register_at_fork(after_in_child=_after_fork_in_child)
