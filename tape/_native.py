"""The binding layer: the only module that touches the compiled core (tape._core).

Every crossing of the boundary is here: it owns the C handles (a queue, its
appenders and tailers; children are closed before their queue, each freed
exactly once), reads every return code (one table turns codes into
exceptions; the few codes that are answers, not errors, become Python values
here), holds the roll-cycle arithmetic, and turns C structs into Python
values. The public classes above it (Queue, Appender, Tailer) speak Python.

Threads: calls on a queue hold its lock, so closing it frees it at once.
Calls on a tailer hold the tailer's lock, for the same reason. Appenders are
called without a lock (writing is the hottest path): closing one shuts it,
which makes the core refuse later calls and wait for those in progress; its
memory goes with its Python handle, as another thread may still hold it.
"""

from __future__ import annotations

import array
import errno
import itertools
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from tape._core import ffi, lib
from tape.errors import (
    ArgumentError,
    CorruptionError,
    CycleFullError,
    EntryTooLargeError,
    IncompatibleQueueError,
    NotAQueueError,
    PoisonedError,
    QueueClosedError,
    QueueNotFoundError,
    ReadOnlyError,
    TapeError,
    TapeOSError,
)
from tape.records import CycleInfo, Entry, VerifyReport

NAME_MAX = lib.TAPE_NAME_MAX  # names of named tailers, in bytes with the NUL
NAMED_MAX = lib.TAPE_NAMED_MAX  # named tailers per queue
PARAMS_MAX = lib.TAPE_PARAMS_MAX  # bytes of stored codec parameters
INDEX_MAX = 2**63 - 1
FORWARD, BACKWARD = "forward", "backward"
_DIRECTIONS = {FORWARD: lib.TAPE_FORWARD, BACKWARD: lib.TAPE_BACKWARD}

# -- return codes -> exceptions: the one table -----------------------------------------------

_BY_CODE: dict[int, type[TapeError]] = {
    lib.TAPE_ECORRUPT: CorruptionError,
    lib.TAPE_EVERSION: IncompatibleQueueError,
    lib.TAPE_ENOTQUEUE: NotAQueueError,
    lib.TAPE_EINCOMPAT: IncompatibleQueueError,
    lib.TAPE_EREADONLY: ReadOnlyError,
    lib.TAPE_ETOOBIG: EntryTooLargeError,
    lib.TAPE_ECYCLEFULL: CycleFullError,
    lib.TAPE_EPOISONED: PoisonedError,
    lib.TAPE_EINVAL: ArgumentError,
    lib.TAPE_EROLLCYCLE: ArgumentError,
    lib.TAPE_ECLOCK: ArgumentError,
    lib.TAPE_ECONFLICT: TapeError,  # tape_append_if's answer: AppenderHandle.append_if returns None
    lib.TAPE_ECLOSED: QueueClosedError,
}


def check(rc: int, path: str | None = None, *, opening: bool = False) -> None:
    """Raise the exception for a negative return code of the core; do nothing otherwise.

    `opening` marks a tape_open() result, where -ENOENT means the queue is missing.
    """
    if rc >= 0:
        return
    cls = _BY_CODE.get(rc, TapeError if rc <= lib.TAPE_EBASE else None)
    if cls is not None:
        text = ffi.string(lib.tape_strerror(rc)).decode()
        raise cls(f"{path}: {text}" if path else text)
    code = -rc
    oserror = QueueNotFoundError if opening and code == errno.ENOENT else TapeOSError
    raise oserror(code, os.strerror(code), path)


def _none_if_negative(value: int) -> int | None:
    return None if value < 0 else value


# -- roll cycles -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RollCycle:
    """A queue's roll cycle: the index arithmetic and when each cycle starts and ends.

    index = cycle << seq_bits | seq; cycle c covers the ms
    [c * length_ms + epoch_ms, (c + 1) * length_ms + epoch_ms).
    """

    name: str
    length_ms: int
    seq_bits: int
    epoch_ms: int = 0

    def split(self, index: int) -> tuple[int, int]:
        """(cycle, sequence within the cycle) of `index`."""
        return index >> self.seq_bits, index & ((1 << self.seq_bits) - 1)

    def make(self, cycle: int, seq: int) -> int:
        """The index of entry `seq` of `cycle`; ArgumentError when either is out of range."""
        bits = self.seq_bits
        if not 0 <= seq < 1 << bits:
            raise ArgumentError(f"seq is between 0 and 2**{bits}-1 for this roll cycle, not {seq}")
        if not 0 <= cycle <= INDEX_MAX >> bits:
            raise ArgumentError(f"cycle is between 0 and {INDEX_MAX >> bits}, not {cycle}")
        return cycle << bits | seq

    def cycle(self, index: int) -> int:
        """The cycle of `index`."""
        return index >> self.seq_bits

    def end_ns(self, cycle: int) -> int:
        """When `cycle` ends, in ns since the epoch."""
        return ((cycle + 1) * self.length_ms + self.epoch_ms) * 1_000_000

    def next_cycle_index(self, index: int) -> int:
        """The first index of the cycle after that of `index`."""
        return ((index >> self.seq_bits) + 1) << self.seq_bits


def _roll_table() -> dict[str, RollCycle]:
    """The core's table of roll cycles, by name (epoch_ms 0: a queue sets its own)."""
    table = lib.tape_roll_cycles()
    cycles = {}
    k = 0
    while table[k].ri_name != ffi.NULL:
        name = ffi.string(table[k].ri_name).decode()
        cycles[name] = RollCycle(name, table[k].ri_length_ms, table[k].ri_seq_bits)
        k += 1
    return cycles


ROLL_CYCLES = _roll_table()


# -- verify's progress callback ------------------------------------------------------------------


class _Progress:
    """A progress callback of the core's, and the exception that stopped it."""

    __slots__ = ("call", "error")

    def __init__(self, call: Callable[[int], None]) -> None:
        self.call = call
        self.error: BaseException | None = None


def _tape_progress(arg: Any, walked: int) -> int:
    """The core's tape_progress_fn: pass `walked` on; stop (1) after an exception."""
    watch: _Progress = ffi.from_handle(arg)
    try:
        watch.call(walked)
    except BaseException as exc:  # Ctrl-C included: the walk stops, verify() raises it
        watch.error = exc
        return 1
    return 0


ffi.def_extern()(_tape_progress)  # what lib._tape_progress calls


# -- handles -------------------------------------------------------------------------------------


class QueueInfo(NamedTuple):
    """What tape_queue_info_get tells of an open queue."""

    version: int
    roll: RollCycle
    codec: str
    params_len: int
    created_ns: int
    last_timestamp: int


class QueueHandle:
    """An open C queue and the appenders and tailers opened on it."""

    def __init__(self, path: str, ptr: Any) -> None:
        self.path = path
        self.lock = threading.RLock()
        self._ptr: Any = ptr
        self._children: set[_ChildHandle] = set()

    @classmethod
    def open(
        cls,
        path: str,
        *,
        roll_cycle: str | None,
        codec: str | None,
        params: bytes | None,
        read_only: bool,
        create: bool,
        epoch_ms: int,
        small_pages: bool,
    ) -> QueueHandle:
        """Open (or create) the queue at `path`; `params` (None: the codec needs stored ones) is stored at creation."""
        opts = ffi.new("tape_open_opts *")
        keep = []  # C data that must outlive tape_open
        if roll_cycle is not None:
            keep.append(ffi.new("char[]", roll_cycle.encode()))
            opts.oo_roll_cycle = keep[-1]
        if codec is not None:
            keep.append(ffi.new("char[]", codec.encode()))
            opts.oo_codec = keep[-1]
        if params:
            keep.append(ffi.new("char[]", params))
            opts.oo_params = keep[-1]
            opts.oo_params_len = len(params)
        creating = create and not read_only
        opts.oo_read_only = read_only
        opts.oo_create = creating and params is not None
        opts.oo_epoch_ms = epoch_ms
        opts.oo_small_pages = small_pages
        out = ffi.new("tape_queue **")
        try:
            check(lib.tape_open(os.fsencode(path), opts, out), path, opening=True)
        except IncompatibleQueueError as exc:
            exc.add_note(f"asked for roll_cycle={roll_cycle!r}, codec={codec!r}")
            raise
        except QueueNotFoundError:
            if creating and params is None:
                raise ArgumentError(f"{path}: creating a queue with codec {codec!r} needs schema=") from None
            raise
        return cls(path, out[0])

    @property
    def closed(self) -> bool:
        return self._ptr is None

    def ptr(self) -> Any:
        """The C queue (the caller holds self.lock); QueueClosedError once closed."""
        h = self._ptr
        if h is None:
            raise QueueClosedError(f"{self.path}: the queue is closed")
        return h

    def close(self) -> None:
        """Close every appender and tailer of the queue, then the queue; idempotent."""
        with self.lock:
            if self._ptr is None:
                return
            for child in list(self._children):
                child.close()
            self._children.clear()
            lib.tape_close(self._ptr)
            self._ptr = None

    def release(self, child: _ChildHandle, closing: Callable[[], None]) -> bool:
        """Call `closing`, then close `child` and forget it; False (nothing called) when it is closed already."""
        with self.lock:
            if child.ptr is None:
                return False
            closing()
            child.close()
            self._children.discard(child)
            return True

    @property
    def open_children(self) -> int:
        """How many appenders and tailers of the queue are open."""
        return len(self._children)

    # -- what the queue holds ----------------------------------------------------------------

    def info(self) -> QueueInfo:
        info = ffi.new("tape_queue_info *")
        with self.lock:
            check(lib.tape_queue_info_get(self.ptr(), info), self.path)
        name = ffi.string(info.qi_roll_cycle).decode()
        roll = RollCycle(name, ROLL_CYCLES[name].length_ms, info.qi_seq_bits, info.qi_epoch_ms)
        return QueueInfo(
            version=info.qi_version,
            roll=roll,
            codec=ffi.string(info.qi_codec).decode(),
            params_len=info.qi_params_len,
            created_ns=info.qi_created_ns,
            last_timestamp=info.qi_last_timestamp,
        )

    def params(self, length: int) -> bytes:
        """The codec parameters stored in the queue, `length` bytes."""
        if length == 0:
            return b""
        buf = ffi.new("char[]", length)
        with self.lock:
            n = lib.tape_queue_params(self.ptr(), buf, length)
        check(n, self.path)
        params: bytes = ffi.unpack(buf, min(n, length))
        return params

    def _edge(self, which: Callable[[Any], int]) -> int | None:
        with self.lock:
            index = which(self.ptr())
        if index < -1:
            check(index, self.path)
        return _none_if_negative(index)

    def first_index(self) -> int | None:
        """Index of the first entry, None when the queue is empty."""
        return self._edge(lib.tape_first_index)

    def last_index(self) -> int | None:
        """Index of the last entry, None when the queue is empty."""
        return self._edge(lib.tape_last_index)

    def count(self) -> int:
        with self.lock:
            n: int = lib.tape_count(self.ptr())
        check(n, self.path)
        return n

    def cycles(self) -> list[CycleInfo]:
        """One record per cycle file, oldest first."""
        with self.lock:
            h = self.ptr()
            cap = 16
            while True:
                numbers = ffi.new("int64_t[]", cap)
                n = lib.tape_list_cycles(h, numbers, cap)
                check(n, self.path)
                if n <= cap:
                    break
                cap = n
            info = ffi.new("tape_cycle_info *")
            name = ffi.new("char[]", 256)
            result = []
            for cycle in numbers[0:n]:
                rc = lib.tape_cycle_info_get(h, cycle, info)
                if rc == -errno.ENOENT:
                    continue  # removed since it was listed
                check(rc, self.path)
                check(lib.tape_cycle_name(h, cycle, name, len(name)), self.path)
                result.append(
                    CycleInfo(
                        cycle=cycle,
                        path=os.path.join(self.path, ffi.string(name).decode()),
                        first_index=_none_if_negative(info.ci_first_index),
                        last_index=_none_if_negative(info.ci_last_index),
                        entries=info.ci_entries,
                        bytes=info.ci_bytes,
                        damaged=bool(info.ci_damaged),
                    )
                )
            return result

    def remove_cycle(self, cycle: int) -> bool:
        """Remove the file of `cycle`; False when it is gone already or became the newest holding entries."""
        with self.lock:
            rc = lib.tape_remove_cycle(self.ptr(), cycle)
        if rc in (-errno.ENOENT, lib.TAPE_EINVAL):
            return False
        check(rc, self.path)
        return True

    def named(self) -> dict[str, int | None]:
        """The named tailers and the index each reads next (None: from the start)."""
        name = ffi.new("char[]", NAME_MAX)
        nxt = ffi.new("int64_t *")
        found: dict[str, int | None] = {}
        with self.lock:
            h = self.ptr()
            for slot in range(NAMED_MAX):
                rc = lib.tape_named_get(h, slot, name, NAME_MAX, nxt)
                check(rc, self.path)
                if rc == 1:
                    found[ffi.string(name).decode()] = _none_if_negative(nxt[0])
        return found

    def remove_named(self, name: str) -> None:
        """Forget the named tailer `name` (KeyError when there is none)."""
        with self.lock:
            rc = lib.tape_named_remove(self.ptr(), name.encode())
        if rc == -errno.ENOENT:
            raise KeyError(name)
        check(rc, self.path)

    def verify(self, salvage: bool, progress: Callable[[int], None] | None) -> VerifyReport:
        """tape_verify's report (see Queue.verify)."""
        r = ffi.new("tape_verify_report *")
        flags = lib.TAPE_VERIFY_SALVAGE if salvage else 0
        if progress is None:
            with self.lock:
                rc = lib.tape_verify(self.ptr(), flags, r)
        else:
            watch = _Progress(progress)
            with self.lock:
                rc = lib.tape_verify_progress(self.ptr(), flags, r, lib._tape_progress, ffi.new_handle(watch))
            if watch.error is not None:
                raise watch.error
        check(rc, self.path)
        return VerifyReport(
            ok=rc == 0,
            cycles=r.vr_cycles,
            entries=r.vr_entries,
            bytes=r.vr_bytes,
            unsealed=r.vr_unsealed,
            abandoned=r.vr_abandoned,
            problems=r.vr_problems,
            skipped=r.vr_skipped,
            last_good_index=_none_if_negative(r.vr_last_good),
            bad_cycle=_none_if_negative(r.vr_bad_cycle),
            bad_offset=None if r.vr_bad_cycle < 0 else r.vr_bad_offset,
            message=ffi.string(r.vr_message).decode(errors="replace"),
        )

    def repair(self) -> int:
        """tape_repair_tail: the bytes cleared."""
        with self.lock:
            cleared: int = lib.tape_repair_tail(self.ptr())
        check(cleared, self.path)
        return cleared

    # -- children ------------------------------------------------------------------------------

    def appender(self) -> AppenderHandle:
        """A new C appender of the queue."""
        with self.lock:
            out = ffi.new("tape_appender **")
            check(lib.tape_appender_open(self.ptr(), out), self.path)
            handle = AppenderHandle(self, out[0])
            self._children.add(handle)
            return handle

    def tailer(self, name: str | None, spin_ns: int) -> TailerHandle:
        """A new C tailer of the queue at its start, or the named tailer `name` where it left off."""
        with self.lock:
            out = ffi.new("tape_tailer **")
            if name is None:
                check(lib.tape_tailer_open(self.ptr(), out), self.path)
            else:
                check(lib.tape_tailer_open_named(self.ptr(), name.encode(), out), self.path)
            handle = TailerHandle(self, out[0])
            self._children.add(handle)
            lib.tape_tailer_set_spin(out[0], spin_ns)
            return handle


class _ChildHandle:
    """An appender or tailer of a queue: `ptr` until closed, then None."""

    __slots__ = ("queue", "path", "ptr", "lock")

    def __init__(self, queue: QueueHandle, ptr: Any) -> None:
        self.queue = queue
        self.path = queue.path
        self.ptr: Any = ptr
        self.lock = threading.Lock()

    def close(self) -> None:
        """Free (or shut) the C object; the queue's lock is held (QueueHandle.release, .close)."""
        raise NotImplementedError


_TAPE_APPEND = lib.tape_append  # bound once: appending is the hottest call
_TAPE_ADVANCE = lib.tape_tailer_advance  # a named tailer's iteration calls it for each value


class AppenderHandle(_ChildHandle):
    """A C appender. Closing shuts it; its memory is freed with this object."""

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

    def live(self) -> Any:
        ptr = self.ptr
        if ptr is None:
            raise QueueClosedError(f"{self.path}: the appender is closed")
        return ptr

    def append(self, data: bytes, ts: int) -> int:
        """Append `data` with timestamp `ts` (0: the wall clock); its index."""
        ptr = self.ptr
        if ptr is None:
            ptr = self.live()  # raises
        index: int = _TAPE_APPEND(ptr, data, len(data), ts)
        if index < 0:
            check(index, self.path)
        return index

    def append_many(self, parts: list[bytes], ts: int) -> int:
        """Append each of `parts`; the last index. A failure midway says (in a note) how many went in."""
        ptr = self.live()
        ends = ffi.from_buffer("uint64_t[]", array.array("Q", itertools.accumulate(map(len, parts))))
        written = ffi.new("size_t *")
        index: int = lib.tape_append_many(ptr, b"".join(parts), ends, len(parts), ts, written)
        if index < 0:
            try:
                check(index, self.path)
            except TapeError as exc:
                exc.add_note(f"{written[0]} of {len(parts)} entries were written before the error")
                raise
        return index

    def append_if(self, data: bytes, ts: int, last: int | None) -> int | None:
        """Append `data` only if the queue's last entry is `last` (None: empty); None when another came first."""
        ptr = self.live()
        index: int = lib.tape_append_if(ptr, data, len(data), ts, -1 if last is None else last)
        if index == lib.TAPE_ECONFLICT:
            return None
        check(index, self.path)
        return index

    def last_index(self) -> int | None:
        """Index of the last entry this appender wrote, None before any."""
        return _none_if_negative(lib.tape_appender_last_index(self.live()))

    def sync(self) -> None:
        """Make everything written to the queue so far durable."""
        check(lib.tape_appender_sync(self.live()), self.path)

    def sync_quietly(self) -> bool:
        """sync() for a background flusher: False (nothing raised) once closed or failed."""
        ptr = self.ptr
        return ptr is not None and lib.tape_appender_sync(ptr) >= 0


# Per-tailer buffers for reading a batch of entries in one call into the core.
BATCH_BYTES = 1 << 20
BATCH_SLOTS = 4096


class Batch:
    """Entries peeked in one call: their payloads back to back and where each ends.

    Indexes and timestamps stay in the tailer's buffers until asked for: a
    batch is valid until the tailer's next peek.
    """

    __slots__ = ("data", "ends", "_idx", "_ts")

    def __init__(self, data: bytes, ends: list[int], idx: Any, ts: Any) -> None:
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


class TailerHandle(_ChildHandle):
    """A C tailer. Every call holds `lock`; closing frees it at once.

    Batches are peeked: the core's position stays where the batch starts
    until advance(k) moves it past the first k entries (any k, as often as
    needed while the batch is pending), so that a named tailer's stored
    position is exactly after what was handed out. `read_ahead`, the values
    of a batch not yet handed out, is emptied by closing, so that nothing is
    handed out after a close.
    """

    __slots__ = ("read_ahead", "_entry", "_buffers", "_moved")

    def __init__(self, queue: QueueHandle, ptr: Any) -> None:
        super().__init__(queue, ptr)
        self.read_ahead: list[Any] | None = None
        self._entry = ffi.new("tape_entry *")
        self._buffers: tuple[Any, Any, Any, Any] | None = None
        self._moved: int | None = None  # a batch read, not peeked: the index of its one entry

    def close(self) -> None:
        with self.lock:
            ptr, self.ptr = self.ptr, None
            if ptr is not None:
                lib.tape_tailer_close(ptr)
            if self.read_ahead is not None:
                self.read_ahead.clear()

    def live(self) -> Any:
        """The C tailer (the caller holds self.lock); QueueClosedError once closed."""
        ptr = self.ptr
        if ptr is None:
            raise QueueClosedError(f"{self.path}: the tailer or its queue is closed")
        return ptr

    def _unpacked(self) -> Entry:
        e = self._entry
        return tuple.__new__(Entry, (e.e_index, e.e_timestamp, ffi.unpack(ffi.cast("char *", e.e_data), e.e_len)))

    def read_one(self) -> Entry | None:
        """The next entry (its value the payload's bytes) read alone, moving past it; None when there is none."""
        with self.lock:  # another thread's read may reuse self._entry once it is released
            rc = lib.tape_read(self.live(), self._entry)
            if rc == 1:
                return self._unpacked()
        check(rc, self.path)
        return None

    def peek(self, slots: int) -> Batch | None:
        """Up to `slots` entries from the position, which does not move (see advance); None when there is none."""
        if self._buffers is None:
            self._buffers = (
                ffi.new("char[]", BATCH_BYTES),
                ffi.new("int64_t[]", BATCH_SLOTS),
                ffi.new("int64_t[]", BATCH_SLOTS),
                ffi.new("uint64_t[]", BATCH_SLOTS),
            )
        buf, idx, ts, ends = self._buffers
        with self.lock:
            ptr = self.live()
            self._moved = None
            n = lib.tape_peek_many(ptr, buf, BATCH_BYTES, idx, ts, ends, min(slots, BATCH_SLOTS))
            if n > 0:
                return Batch(ffi.unpack(buf, ends[n - 1]), ffi.unpack(ends, n), idx, ts)
            if n == lib.TAPE_EINVAL:  # larger than the buffer: read it alone, which moves past it
                n = lib.tape_read(ptr, self._entry)
                if n == 1:
                    entry = self._unpacked()
                    self._moved = idx[0] = entry.index
                    ts[0] = entry.timestamp
                    return Batch(entry.value, [len(entry.value)], idx, ts)
        check(n, self.path)
        return None

    def advance(self, k: int) -> None:
        """Move past the first `k` entries of the batch peek() returned last."""
        with self.lock:
            ptr = self.ptr
            if ptr is not None and self._moved is None:
                rc = _TAPE_ADVANCE(ptr, k)
                if rc:
                    check(rc, self.path)
                return
            ptr = self.live()
            if k == 0:  # the one entry read was not handed out after all
                check(lib.tape_tailer_to_index(ptr, self._moved), self.path)
                self._moved = None

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

    def index(self) -> int | None:
        """The index the next read returns (at the end: the next to be written), or None."""
        with self.lock:
            index: int = lib.tape_tailer_index(self.live())
        if index < -1:
            check(index, self.path)
        return _none_if_negative(index)

    def last_read_index(self) -> int | None:
        with self.lock:
            index: int = lib.tape_tailer_last_read_index(self.live())
        if index < -1:
            check(index, self.path)
        return _none_if_negative(index)

    def direction(self) -> str:
        with self.lock:
            rc: int = lib.tape_tailer_direction(self.live())
        check(rc, self.path)
        return BACKWARD if rc == lib.TAPE_BACKWARD else FORWARD

    def set_direction(self, direction: str) -> None:
        with self.lock:
            check(lib.tape_tailer_set_direction(self.live(), _DIRECTIONS[direction]), self.path)
