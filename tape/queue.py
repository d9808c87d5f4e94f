"""The log: Queue, Appender, Tailer and Entry, a thin layer over the C core.

Data flows one way: value -> codec -> bytes -> C core -> mapped file, and back.
The core does all file-format and concurrency work; this module owns the C
handles (closing children before their queue), turns return codes into
exceptions, and batches calls so that Python overhead stays small.

Threads: an Appender may be shared between threads; closing it (or its queue)
while another thread writes with it is an error of the caller. A Tailer belongs
to one thread at a time, but any thread may close it or its queue, even while
it waits in read(timeout=...) or follow(): every call into the core on a
tailer holds the tailer's lock, and closing takes that lock.
"""

from __future__ import annotations

import array
import errno
import itertools
import operator
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any, NamedTuple

from tape import codecs
from tape import aio, lifecycle
from tape._core import ffi, lib
from tape.retention import Policy
from tape.errors import (
    ArgumentError,
    ArgumentTypeError,
    IncompatibleQueueError,
    QueueClosedError,
    QueueNotFoundError,
    TapeError,
    check,
)

__all__ = [
    "Queue",
    "Appender",
    "Tailer",
    "Entry",
    "CycleInfo",
    "VerifyReport",
    "split_index",
    "make_index",
]

_INT64_MAX = 2**63 - 1
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _roll_cycle_lengths() -> dict[str, int]:
    """The core's table of roll cycles: name -> length in ms."""
    table = lib.tape_roll_cycles()
    lengths = {}
    k = 0
    while table[k].ri_name != ffi.NULL:
        lengths[ffi.string(table[k].ri_name).decode()] = table[k].ri_length_ms
        k += 1
    return lengths


_ROLL_LENGTHS = _roll_cycle_lengths()
_ROLL_CYCLES = tuple(_ROLL_LENGTHS)
_DIRECTIONS = {"forward": lib.TAPE_FORWARD, "backward": lib.TAPE_BACKWARD}
_TUNING = frozenset({"epoch_ms", "large_pages"})
# A wait blocks in C for at most this long, so that Ctrl-C is handled promptly.
_WAIT_SLICE = 0.1
# Per-tailer buffers for reading a batch of entries in one call into the core.
_BATCH_BYTES = 1 << 20
_BATCH_SLOTS = 4096
# From this many entries on, a codec's decode_many (if it has one) decodes a
# batch: below, setting it up costs more than it saves.
_DECODE_MANY_MIN = 4
_BYTES_ONLY = frozenset({bytes})
_NAME_MAX = lib.TAPE_NAME_MAX  # named tailers' names: bytes, with the NUL
_TAPE_APPEND = lib.tape_append  # bound once: Appender.write is the hottest call
_NOTHING: Any = object()  # "no entry", since None is a value a codec may return


class Entry(NamedTuple):
    """One entry: its index, its timestamp (ns since the epoch) and its value."""

    index: int  # type: ignore[assignment]  # the field shadows tuple.index(), as SPEC.md names it
    timestamp: int
    value: Any


class CycleInfo(NamedTuple):
    """One cycle file; `bytes` is what its entries occupy, not the file's size."""

    cycle: int
    path: str
    first_index: int | None
    last_index: int | None
    entries: int
    bytes: int
    damaged: bool = False  # a checksum failed: counts are from the entry headers alone


class VerifyReport(NamedTuple):
    """What Queue.verify found. `ok` is True when nothing is damaged.

    entries counts the intact entries (in salvage mode, also those after
    damage); last_good_index ends the gap-free prefix that reading returns;
    unsealed counts older cycles left without an end-of-file marker by a writer
    that died while rolling, abandoned the unfinished entries killed writers
    left at the end of data (both harmless: never read, repaired by the next
    writer). The first problem is described by bad_cycle, bad_offset and
    message.
    """

    ok: bool
    cycles: int
    entries: int
    bytes: int
    unsealed: int
    abandoned: int
    problems: int
    skipped: int
    last_good_index: int | None
    bad_cycle: int | None
    bad_offset: int | None
    message: str


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


class _Handle:
    """A C appender or tailer: `ptr` until closed, then None; freed exactly once.

    `read_ahead` is a tailer's batch of values not yet handed out; closing
    empties it, so that nothing more is handed out after a close. Tailers
    are called under `lock`, so closing one frees it at once. Appenders are
    called without a lock (writing is the hottest path): closing one `shut`s
    it, which makes the core refuse later calls and wait for those in
    progress; its memory goes with this handle, as another thread may still
    hold `ptr`.
    """

    __slots__ = ("ptr", "lock", "read_ahead", "_free", "_shut", "_kept")

    def __init__(self, ptr: Any, free: Callable[[Any], None], shut: Callable[[Any], None] | None = None) -> None:
        self.ptr: Any = ptr
        self.lock = threading.Lock()
        self.read_ahead: list[Any] | None = None
        self._free = free
        self._shut = shut
        self._kept: Any = None

    def close(self) -> None:
        with self.lock:
            ptr, self.ptr = self.ptr, None
            if ptr is not None:
                if self._shut is None:
                    self._free(ptr)
                else:
                    self._shut(ptr)
                    self._kept = ptr
            if self.read_ahead is not None:
                self.read_ahead.clear()

    def __del__(self) -> None:
        if self._kept is not None:
            self._free(self._kept)


def _as_int(value: Any, what: str) -> int:
    """`value` as an int; bool and non-integers are refused."""
    if isinstance(value, bool):
        raise ArgumentTypeError(f"{what} must be an int, not bool")
    try:
        return operator.index(value)
    except TypeError:
        raise ArgumentTypeError(f"{what} must be an int, not {type(value).__name__}") from None


def _as_seconds(timeout: Any) -> float:
    """A timeout in seconds, checked."""
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise ArgumentTypeError(f"timeout must be a number of seconds, not {type(timeout).__name__}")
    if not timeout >= 0:
        raise ArgumentError(f"timeout must be >= 0, not {timeout}")
    return float(timeout)


def _as_ns(when: Any) -> int:
    """A datetime (naive: local time) or epoch seconds, as ns since the epoch."""
    if isinstance(when, datetime):
        aware = when if when.tzinfo is not None else when.astimezone()
        return (aware - _EPOCH) // timedelta(microseconds=1) * 1000
    if isinstance(when, int) and not isinstance(when, bool):
        return when * 1_000_000_000
    if isinstance(when, float):
        whole = int(when)
        return whole * 1_000_000_000 + round((when - whole) * 1e9)
    raise ArgumentTypeError(f"a time must be a datetime or epoch seconds, not {type(when).__name__}")


def _none_if_negative(value: int) -> int | None:
    return None if value < 0 else value


def _flush_every(handle: _Handle, seconds: float, stop: threading.Event) -> None:
    """Body of the sync="interval:<ms>" thread: make the queue durable every `seconds`."""
    while not stop.wait(seconds):
        ptr = handle.ptr
        if ptr is None or lib.tape_appender_sync(ptr) < 0:
            return  # a failed sync poisons the queue; the next write reports it


class Queue:
    """A persisted log in the directory `path`, created there if missing.

    roll_cycle and codec default to the stored ones (daily and msgpack when
    creating); different ones raise IncompatibleQueueError. codec is a name or
    a Codec; schema (avro only) is stored at creation and used by every
    reader. raw=True opens the queue whatever its codec (even one not
    registered here): values are its stored payloads, undecoded (bytes), and
    appenders take payloads already in its codec. sync is "none", "always" or
    "interval:<ms>". clock, a callable returning ns since the epoch, replaces
    the wall clock for timestamps. Tuning: epoch_ms shifts the moment of
    rolling (stored at creation); large_pages (None: sync == "none") maps the
    file being appended to with 2 MiB pages where the kernel allows, which
    makes appends faster but makes each sync write whole 2 MiB pages.
    """

    path: str
    roll_cycle: str
    codec: codecs.Codec
    codec_name: str  # the stored codec's name
    codec_params: bytes  # the stored codec parameters (avro: the schema as JSON)
    raw: bool
    sync: str
    large_pages: bool
    read_only: bool
    _h: Any = None

    def __init__(
        self,
        path: str | bytes | os.PathLike[str] | os.PathLike[bytes],
        *,
        roll_cycle: str | None = None,
        codec: str | codecs.Codec | None = None,
        schema: Any = None,
        raw: bool = False,
        sync: str = "none",
        read_only: bool = False,
        create: bool = True,
        clock: Callable[[], int] | None = None,
        retention: dict[str, Any] | None = None,
        **tuning: Any,
    ) -> None:
        self._lock = threading.RLock()
        self._handles: set[_Handle] = set()
        self._flusher: tuple[threading.Thread, threading.Event] | None = None
        try:
            self.path = os.fsdecode(path)
        except TypeError:
            raise ArgumentTypeError(f"path must be a path, not {type(path).__name__}") from None
        if roll_cycle is not None and roll_cycle not in _ROLL_CYCLES:
            raise ArgumentError(f"unknown roll cycle {roll_cycle!r} (known: {', '.join(_ROLL_CYCLES)})")
        self.raw = bool(raw)
        params: bytes | None
        if self.raw:
            if schema is not None or not (codec is None or isinstance(codec, str)):
                raise ArgumentError("raw=True takes no schema, and a codec only by name")
            wanted, name, params = None, codec, b""
        else:
            wanted = codecs.requested(codec, schema)
            name = None if wanted is None else wanted.name
            params = b"" if wanted is None else codecs.stored_params(wanted)
        interval = self._parse_sync(sync)
        if clock is not None and not callable(clock):
            raise ArgumentTypeError(f"clock must be callable, not {type(clock).__name__}")
        if retention is not None and not isinstance(retention, dict):
            raise ArgumentTypeError(f"retention must be a dict of purge() keywords, not {type(retention).__name__}")
        self._retention = None if retention is None else Policy.parse(retention)
        unknown = sorted(set(tuning) - _TUNING)
        if unknown:
            raise ArgumentTypeError(f"unexpected keyword argument {unknown[0]!r}")
        epoch_ms = _as_int(tuning.get("epoch_ms", 0), "epoch_ms")
        large_pages = tuning.get("large_pages")
        if large_pages is None:
            large_pages = sync == "none"
        elif not isinstance(large_pages, bool):
            raise ArgumentTypeError(f"large_pages must be a bool or None, not {type(large_pages).__name__}")

        lifecycle.opening(self)
        self._open(roll_cycle, name, params, bool(read_only), bool(create), epoch_ms, large_pages)
        info = self._info()
        self.roll_cycle = ffi.string(info.qi_roll_cycle).decode()
        self._seq_bits: int = info.qi_seq_bits
        self._epoch_ms: int = info.qi_epoch_ms
        self._length_ms = _ROLL_LENGTHS[self.roll_cycle]
        self.codec_name = ffi.string(info.qi_codec).decode()
        try:
            self.codec_params = self._params(info.qi_params_len)
            if self.raw:
                self.codec = codecs.RawCodec()
            else:
                self.codec = codecs.opened(wanted, self.codec_name, self.codec_params)
        except TapeError as exc:
            self.close()
            raise type(exc)(f"{self.path}: {exc}") from None
        self.sync = sync
        self.read_only = bool(read_only)
        self.large_pages = large_pages and not self.read_only
        self._clock = clock
        if interval is not None and not self.read_only:
            self._start_flusher(interval)
        lifecycle.register(self)

    @staticmethod
    def _parse_sync(sync: Any) -> float | None:
        """Check a sync mode; the flush interval in seconds for "interval:<ms>"."""
        if not isinstance(sync, str):
            raise ArgumentTypeError(f"sync must be a str, not {type(sync).__name__}")
        if sync in ("none", "always"):
            return None
        kind, _, ms = sync.partition(":")
        if kind == "interval" and ms.isdigit() and int(ms) > 0:
            return int(ms) / 1000
        raise ArgumentError(f"sync must be 'none', 'always' or 'interval:<ms>', not {sync!r}")

    def _open(
        self,
        roll_cycle: str | None,
        codec: str | None,
        params: bytes | None,
        read_only: bool,
        create: bool,
        epoch_ms: int,
        large_pages: bool,
    ) -> None:
        """Open the core's queue; `params` (None: the codec needs the stored ones) is stored at creation."""
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
        opts.oo_small_pages = not large_pages
        out = ffi.new("tape_queue **")
        try:
            check(lib.tape_open(os.fsencode(self.path), opts, out), self.path, opening=True)
        except IncompatibleQueueError as exc:
            exc.add_note(f"asked for roll_cycle={roll_cycle!r}, codec={codec!r}")
            raise
        except QueueNotFoundError:
            if creating and params is None:
                raise ArgumentError(f"{self.path}: creating a queue with codec {codec!r} needs schema=") from None
            raise
        self._h = out[0]

    def _params(self, length: int) -> bytes:
        """The codec parameters stored in the queue, `length` bytes."""
        if length == 0:
            return b""
        buf = ffi.new("char[]", length)
        with self._lock:
            n = lib.tape_queue_params(self._ptr(), buf, length)
        check(n, self.path)
        params: bytes = ffi.unpack(buf, min(n, length))
        return params

    def _start_flusher(self, seconds: float) -> None:
        out = ffi.new("tape_appender **")
        check(lib.tape_appender_open(self._h, out), self.path)
        handle = self._adopt(out[0], lib.tape_appender_close, lib.tape_appender_shut)
        stop = threading.Event()
        thread = threading.Thread(
            target=_flush_every, args=(handle, seconds, stop), name=f"tape-sync {self.path}", daemon=True
        )
        thread.start()
        self._flusher = (thread, stop)

    # -- handles -------------------------------------------------------------

    def _ptr(self) -> Any:
        """The C queue; QueueClosedError once closed."""
        h = self._h
        if h is None:
            raise QueueClosedError(f"{self.path}: the queue is closed")
        return h

    def _adopt(self, ptr: Any, free: Callable[[Any], None], shut: Callable[[Any], None] | None = None) -> _Handle:
        handle = _Handle(ptr, free, shut)
        self._handles.add(handle)
        return handle

    def _release(self, handle: _Handle) -> None:
        handle.close()
        with self._lock:
            self._handles.discard(handle)

    def _info(self) -> Any:
        info = ffi.new("tape_queue_info *")
        with self._lock:
            check(lib.tape_queue_info_get(self._ptr(), info), self.path)
        return info

    # -- public API ------------------------------------------------------------

    def appender(self) -> Appender:
        """A new appender of this queue."""
        with self._lock:
            out = ffi.new("tape_appender **")
            check(lib.tape_appender_open(self._ptr(), out), self.path)
            return Appender(self, self._adopt(out[0], lib.tape_appender_close, lib.tape_appender_shut))

    def tailer(
        self,
        name: str | None = None,
        *,
        start: str | int | None = None,
        spin: float | bool = 0,
    ) -> Tailer:
        """A new tailer reading forward from `start`: "start" (the default), "end" or an index.

        A named tailer keeps its position in the queue: a tailer of the same
        name, in any process, resumes after the last entry it handed out
        (`start` only places a name seen for the first time). It reads one
        entry per call into the core, so its stored position never runs ahead
        of what was handed out. `spin` is how long (seconds) a wait spins,
        checking for data, before it sleeps; True spins for the whole wait
        (lowest latency, one core busy).
        """
        if name is not None and (not isinstance(name, str) or not 0 < len(name.encode()) < _NAME_MAX):
            raise ArgumentError(f"a tailer name must be a str of 1 to {_NAME_MAX - 1} bytes, not {name!r}")
        if isinstance(spin, bool):
            spin_ns = -1 if spin else 0
        else:
            spin_ns = int(_as_seconds(spin) * 1e9)
        if start is not None and not isinstance(start, str):
            start = _as_int(start, "start")
        elif start not in (None, "start", "end"):
            raise ArgumentError(f"start must be 'start', 'end' or an index, not {start!r}")
        with self._lock:
            out = ffi.new("tape_tailer **")
            if name is None:
                check(lib.tape_tailer_open(self._ptr(), out), self.path)
            else:
                if name in self._named():
                    start = None  # resume where it left off
                check(lib.tape_tailer_open_named(self._ptr(), name.encode(), out), self.path)
            tailer = Tailer(self, self._adopt(out[0], lib.tape_tailer_close), name=name)
            lib.tape_tailer_set_spin(out[0], spin_ns)
        try:
            if start == "end":
                tailer.to_end()
            elif isinstance(start, int) and not tailer.to_index(start):
                raise ArgumentError(f"{self.path}: no entry at index {start}")
        except BaseException:
            tailer.close()
            raise
        return tailer

    def _edge(self, which: Callable[[Any], int]) -> int | None:
        """tape_first_index or tape_last_index: None when the queue is empty."""
        with self._lock:
            index = which(self._ptr())
        if index < -1:
            check(index, self.path)
        return _none_if_negative(index)

    @property
    def first_index(self) -> int | None:
        """Index of the first entry, None when the queue is empty."""
        return self._edge(lib.tape_first_index)

    @property
    def last_index(self) -> int | None:
        """Index of the last entry, None when the queue is empty."""
        return self._edge(lib.tape_last_index)

    def count(self) -> int:
        """Number of entries in the queue."""
        with self._lock:
            n: int = lib.tape_count(self._ptr())
        check(n, self.path)
        return n

    def cycles(self) -> list[CycleInfo]:
        """One record per cycle file, oldest first."""
        with self._lock:
            h = self._ptr()
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

    def _named(self) -> dict[str, int | None]:
        """The named tailers and the index each reads next (None: from the start)."""
        name = ffi.new("char[]", _NAME_MAX)
        nxt = ffi.new("int64_t *")
        found: dict[str, int | None] = {}
        with self._lock:
            h = self._ptr()
            for slot in range(lib.TAPE_NAMED_MAX):
                rc = lib.tape_named_get(h, slot, name, _NAME_MAX, nxt)
                check(rc, self.path)
                if rc == 1:
                    found[ffi.string(name).decode()] = _none_if_negative(nxt[0])
        return found

    def purge(
        self,
        *,
        keep_cycles: int | None = None,
        older_than: float | timedelta | None = None,
        max_bytes: int | None = None,
        respect_tailers: bool = False,
        dry_run: bool = False,
        on_remove: Callable[[str], object] | None = None,
    ) -> list[str]:
        """Remove whole cycle files now; the paths removed (or, with dry_run, that would be).

        keep_cycles keeps the last N cycle files; older_than (seconds or a
        timedelta, by the queue's clock) removes cycles that ended longer ago;
        max_bytes keeps at most that many bytes of entries, dropping the oldest
        cycles first. A cycle goes when any rule given picks it, except the
        newest cycle file and the newest cycle holding entries; with
        respect_tailers=True, never what a named tailer has not read yet.
        on_remove(path) is called as each file goes (with dry_run, as it is picked).
        """
        policy = Policy.parse(
            {"keep_cycles": keep_cycles, "older_than": older_than, "max_bytes": max_bytes,
             "respect_tailers": respect_tailers}
        )
        return self._purge(policy, dry_run, on_remove)

    def _purge(self, policy: Policy, dry_run: bool, on_remove: Callable[[str], object] | None = None) -> list[str]:
        cycles = self.cycles()
        floor = None
        if policy.respect_tailers:
            nexts = self._named().values()
            if nexts:
                floor = min(-1 if i is None else i >> self._seq_bits for i in nexts)
        now = time.time_ns() if self._clock is None else self._clock()
        doomed = set(policy.select(cycles, self._cycle_end_ns, now, floor))
        removed = []
        for c in cycles:
            if c.cycle not in doomed:
                continue
            if not dry_run:
                with self._lock:
                    rc = lib.tape_remove_cycle(self._ptr(), c.cycle)
                if rc in (-errno.ENOENT, lib.TAPE_EINVAL):
                    continue  # gone already, or became the newest holding entries
                check(rc, self.path)
            removed.append(c.path)
            if on_remove is not None:
                on_remove(c.path)
        return removed

    def _cycle_end_ns(self, cycle: int) -> int:
        """When `cycle` ends, in ns since the epoch."""
        return ((cycle + 1) * self._length_ms + self._epoch_ms) * 1_000_000

    def _rolled(self, index: int) -> int:
        """After a write in a new cycle: apply retention= ; the index where the next cycle starts."""
        if self._retention is not None:
            self._purge(self._retention, False)
        return ((index >> self._seq_bits) + 1) << self._seq_bits

    def remove_tailer(self, name: str) -> None:
        """Forget the named tailer `name` (KeyError when there is none)."""
        with self._lock:
            rc = lib.tape_named_remove(self._ptr(), name.encode())
        if rc == -errno.ENOENT:
            raise KeyError(name)
        check(rc, self.path)

    def verify(self, *, salvage: bool = False, progress: Callable[[int], None] | None = None) -> VerifyReport:
        """Check every cycle file: headers, checksums, index and ordering.

        Strict (the default) stops in a cycle at its first problem; with
        salvage=True the check goes on past damage and counts what is intact.
        `progress` is called with the bytes checked so far (every 16 MiB and
        after each cycle file; the total is the sum of cycles()' bytes); an
        exception it raises stops the check and is raised here.
        """
        r = ffi.new("tape_verify_report *")
        flags = lib.TAPE_VERIFY_SALVAGE if salvage else 0
        if progress is None:
            with self._lock:
                rc = lib.tape_verify(self._ptr(), flags, r)
        else:
            watch = _Progress(progress)
            with self._lock:
                rc = lib.tape_verify_progress(self._ptr(), flags, r, lib._tape_progress, ffi.new_handle(watch))
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
        """Make the queue writable again after a power loss tore its tail; the bytes cleared.

        In the newest cycle file, what follows the last entry whose checksum
        holds is cleared: nothing a reader could reach (readers stop at the
        damage). A sound tail is left as it is (0). Damage further back is for
        verify() to report.
        """
        with self._lock:
            cleared: int = lib.tape_repair_tail(self._ptr())
        check(cleared, self.path)
        return cleared

    def describe(self) -> dict[str, Any]:
        """Everything about the queue a person would want to see, as a plain dict."""
        info = self._info()
        cycles = self.cycles()
        return {
            "path": self.path,
            "roll_cycle": self.roll_cycle,
            "codec": self.codec_name,
            "format_version": info.qi_version,
            "created": (_EPOCH + timedelta(microseconds=info.qi_created_ns // 1000)).isoformat(),
            "cycles": [c._asdict() for c in cycles],
            "entries": self.count(),
            "bytes": sum(c.bytes for c in cycles),
            "first_index": self.first_index,
            "last_index": self.last_index,
            "last_timestamp": info.qi_last_timestamp or None,
            "read_only": self.read_only,
            "sync": self.sync,
            "large_pages": self.large_pages,
            "named_tailers": self._named(),
        }

    def close(self) -> None:
        """Close the queue and every appender and tailer of it; idempotent."""
        if self._h is None:
            return
        with self._lock:
            if self._h is None:
                return
            lifecycle.closing(self)
            if self._flusher is not None:
                thread, stop = self._flusher
                stop.set()
                if thread is not threading.current_thread():
                    thread.join()
            for handle in list(self._handles):
                handle.close()
            self._handles.clear()
            lib.tape_close(self._h)
            self._h = None
        lifecycle.unregister(self)

    def __enter__(self) -> Queue:
        self._ptr()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> Queue:
        return self.__enter__()

    async def __aexit__(self, *exc_info: object) -> None:
        await aio.aclose(self)

    def __del__(self) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._h is None else "open"
        if not hasattr(self, "codec_name"):  # still opening
            return f"<tape.Queue {self.path!r} {state}>"
        return f"<tape.Queue {self.path!r} {self.roll_cycle} {self.codec_name} {state}>"


class _Child:
    """What an appender and a tailer share: a C handle their queue owns, closed through it."""

    _queue: Queue
    _handle: _Handle

    def close(self) -> None:
        """Close it; idempotent."""
        with self._queue._lock:
            if self._handle.ptr is None:
                return
            lifecycle.closing(self)
            self._queue._release(self._handle)
        lifecycle.unregister(self)

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()


class Appender(_Child):
    """Appends entries to a queue; safe to share between threads."""

    def __init__(self, queue: Queue, handle: _Handle) -> None:
        self._queue = queue
        self._handle = handle
        self._path = queue.path
        self._encode = queue.codec.encode
        self._raw = type(queue.codec) is codecs.RawCodec
        # retention= runs when a write lands in a cycle newer than this index.
        self._next_roll = 0 if queue._retention is not None else _INT64_MAX
        self._clock = queue._clock
        self._always = queue.sync == "always"
        lifecycle.opening(self)
        lifecycle.register(self, parent=queue)

    def _ptr(self) -> Any:
        """The C appender; QueueClosedError once closed.

        Another thread may close it right after: the core then refuses the
        call (TAPE_ECLOSED), and the memory stays until the handle goes.
        """
        ptr = self._handle.ptr
        if ptr is None:
            raise QueueClosedError(f"{self._path}: the appender is closed")
        return ptr

    def _timestamp(self) -> int:
        """The queue's clock() in ns, or 0: the core reads the wall clock."""
        clock = self._clock
        return 0 if clock is None else clock()

    def _done(self, index: int, h: Any) -> int:
        """After an append that returned `index`: raise its error, sync, apply retention."""
        if index < 0:
            check(index, self._path)
        if self._always:
            check(lib.tape_appender_sync(h), self._path)
        if index >= self._next_roll:
            self._next_roll = self._queue._rolled(index)
        return index

    def write(self, obj: Any) -> int:
        """Append `obj` and return its index; nothing is written if it cannot be encoded."""
        data = obj if self._raw and type(obj) is bytes else self._encode(obj)
        h = self._handle.ptr
        if h is None:
            h = self._ptr()  # raises
        index: int = _TAPE_APPEND(h, data, len(data), 0 if self._clock is None else self._clock())
        if index < 0 or self._always or index >= self._next_roll:
            return self._done(index, h)
        return index

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
        h = self._ptr()
        ends = ffi.from_buffer("uint64_t[]", array.array("Q", itertools.accumulate(map(len, parts))))
        written = ffi.new("size_t *")
        index: int = lib.tape_append_many(h, b"".join(parts), ends, len(parts), self._timestamp(), written)
        try:
            return self._done(index, h)
        except TapeError as exc:
            if index < 0:
                exc.add_note(f"{written[0]} of {len(parts)} entries were written before the error")
            raise

    def write_if(self, obj: Any, last: int | None) -> int | None:
        """Append `obj` only if the queue's last entry is `last` (None: only if empty).

        The check and the append happen under the queue's write lock, so a
        read-modify-write built on it is atomic across processes. Returns the
        new index, or None when another entry came first (nothing written).
        """
        expected = -1 if last is None else _as_int(last, "last")
        data = self._encode(obj)
        h = self._ptr()
        index: int = lib.tape_append_if(h, data, len(data), self._timestamp(), expected)
        if index == lib.TAPE_ECONFLICT:
            return None
        return self._done(index, h)

    @property
    def last_index(self) -> int | None:
        """Index of the last entry this appender wrote, None before any."""
        return _none_if_negative(lib.tape_appender_last_index(self._ptr()))

    def sync(self) -> None:
        """Make everything written to the queue so far durable on disk."""
        check(lib.tape_appender_sync(self._ptr()), self._path)

    async def awrite(self, obj: Any) -> int:
        """write(obj) for asyncio code; it does not wait (a write takes microseconds)."""
        return await aio.awrite(self, obj)

    def __enter__(self) -> Appender:
        self._ptr()
        return self


    def __repr__(self) -> str:
        ptr = self._handle.ptr
        last = None if ptr is None else _none_if_negative(lib.tape_appender_last_index(ptr))
        state = "closed" if ptr is None else f"last_index={last} open"
        return f"<tape.Appender of {self._path!r} {state}>"


class Tailer(_Child):
    """Reads a queue from a position that it moves; one thread at a time.

    Reading goes through batches: one call into the core copies many entries,
    which are then handed out one by one (by read(), read_entry() or
    iteration). The core's position runs ahead of what was handed out, so any
    operation that depends on it first "settles": moves the core back to just
    after the last entry handed out.
    """

    def __init__(self, queue: Queue, handle: _Handle, *, name: str | None = None) -> None:
        self._queue = queue
        self._handle = handle
        self._name = name
        # A named tailer reads one entry per call: its stored position must
        # not run ahead of what it handed out.
        self._max_batch = 1 if name is not None else _BATCH_SLOTS
        self._lock = handle.lock
        self._path = queue.path
        self._decode = queue.codec.decode
        self._decode_many = getattr(queue.codec, "decode_many", None)
        self._raw = type(queue.codec) is codecs.RawCodec
        self._entry = ffi.new("tape_entry *")
        self._buffers: tuple[Any, Any, Any, Any] | None = None
        # The current batch: its values (or Entry), the iterator handing them
        # out, how many entries the core moved over for it (more than the
        # values when a value failed to decode), and that failure.
        self._batch: list[Any] | None = None
        self._batch_it: Iterator[Any] = iter(())
        self._batch_entries = False
        self._batch_n = 0
        self._batch_error: Exception | None = None
        # Entries read ahead by read(): doubles while reading in sequence,
        # back to 1 after a move, so that random access stays cheap.
        self._readahead = 1
        lifecycle.opening(self)
        lifecycle.register(self, parent=queue)

    def _ptr(self) -> Any:
        """The C tailer (the caller holds self._lock); QueueClosedError once closed."""
        ptr = self._handle.ptr
        if ptr is None:
            raise QueueClosedError(f"{self._path}: the tailer or its queue is closed")
        return ptr

    # -- reading ------------------------------------------------------------------

    def read(self, timeout: float | None = None) -> Any:
        """The next value, or None when there is none (after waiting up to `timeout` seconds)."""
        if self._batch is not None and not self._batch_entries:
            for value in self._batch_it:
                return value
        item = self._next(False) if timeout is None else self._next_waiting(False, timeout)
        return None if item is _NOTHING else item

    def read_entry(self, timeout: float | None = None) -> Entry | None:
        """The next Entry, or None when there is none (after waiting up to `timeout` seconds)."""
        if self._batch is not None and self._batch_entries:
            for entry in self._batch_it:
                return entry  # type: ignore[no-any-return]
        item: Entry = self._next(True) if timeout is None else self._next_waiting(True, timeout)
        return None if item is _NOTHING else item

    def _next(self, entries: bool) -> Any:
        """The next value (or Entry), or _NOTHING when there is none now."""
        if self._batch is not None and self._batch_entries == entries:
            for item in self._batch_it:
                return item
            self._finish_batch()
        if self._readahead == 1 and self._batch is None:
            return self._read_one(entries)
        if not self._fill(self._readahead, entries):
            return _NOTHING
        self._readahead = min(2 * self._readahead, self._max_batch)
        for item in self._batch_it:
            return item
        self._finish_batch()  # not even the first entry decoded: raises why
        return _NOTHING

    def _read_one(self, entries: bool) -> Any:
        """The next value (or Entry) read alone, or _NOTHING: after a move, cheaper than a batch."""
        e = self._entry
        with self._lock:  # another thread's read may reuse self._entry once it is released
            rc = lib.tape_read(self._ptr(), e)
            if rc == 1:
                data = ffi.unpack(ffi.cast("char *", e.e_data), e.e_len)
                index, timestamp = e.e_index, e.e_timestamp
        if rc != 1:
            check(rc, self._path)
            return _NOTHING
        self._readahead = min(2, self._max_batch)  # a named tailer reads none ahead
        value = data if self._raw else self._decode(data)
        return tuple.__new__(Entry, (index, timestamp, value)) if entries else value

    def _next_waiting(self, entries: bool, timeout: float) -> Any:
        """Like _next, waiting up to `timeout` seconds for an entry, in slices."""
        deadline = time.monotonic() + _as_seconds(timeout)
        while (item := self._next(entries)) is _NOTHING:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._wait(min(remaining, _WAIT_SLICE))
        return item

    def _wait(self, seconds: float) -> None:
        """Sleep until a writer publishes or `seconds` pass."""
        with self._lock:
            rc = lib.tape_wait(self._ptr(), int(seconds * 1e9))
        if rc < 0 and rc != -errno.EINTR:  # a signal: Python handles it on return
            check(rc, self._path)

    def __iter__(self) -> Iterator[Any]:
        """Every value available now, then stop; a later iteration resumes."""
        return itertools.chain.from_iterable(self._batches(entries=False))

    def entries(self) -> Iterator[Entry]:
        """Like iterating, but yielding Entry."""
        return itertools.chain.from_iterable(self._batches(entries=True))

    async def aread(self, timeout: float | None = None) -> Any:
        """read() for asyncio code, waiting without blocking the loop.

        Waits forever when timeout is None, else up to `timeout` seconds
        (then None). A task cancelled while waiting ends within 0.1 s.
        """
        return await aio.aread(self, timeout)

    def afollow(self, timeout: float | None = None) -> AsyncIterator[Any]:
        """follow() for asyncio code: `async for value in tailer.afollow()`."""
        return aio.afollow(self, timeout)

    def follow(self, timeout: float | None = None) -> Iterator[Any]:
        """Yield values as they arrive, like tail -f.

        Runs until no entry arrives for `timeout` seconds (forever when None)
        or until the tailer or its queue is closed.
        """
        limit = None if timeout is None else _as_seconds(timeout)
        last = time.monotonic()
        try:
            while True:
                got = False
                for value in self:
                    got = True
                    yield value
                if got:
                    last = time.monotonic()
                if limit is None:
                    self._wait(_WAIT_SLICE)
                    continue
                remaining = last + limit - time.monotonic()
                if remaining <= 0:
                    return
                self._wait(min(remaining, _WAIT_SLICE))
        except QueueClosedError:
            return

    def _batches(self, entries: bool) -> Iterator[Iterator[Any]]:
        """Iterators over successive batches of values (or Entry), until none is left."""
        while True:
            if self._batch is None or self._batch_entries != entries:
                if not self._fill(self._max_batch, entries):
                    return
            yield self._batch_it
            self._finish_batch()

    # -- batches ---------------------------------------------------------------------

    def _fill(self, slots: int, entries: bool) -> bool:
        """Read up to `slots` entries into a new batch; False when there is none."""
        self._settle()
        if self._buffers is None:
            self._buffers = (
                ffi.new("char[]", _BATCH_BYTES),
                ffi.new("int64_t[]", _BATCH_SLOTS),
                ffi.new("int64_t[]", _BATCH_SLOTS),
                ffi.new("uint64_t[]", _BATCH_SLOTS),
            )
        buf, idx, ts, ends = self._buffers
        with self._lock:
            h = self._ptr()
            n = lib.tape_read_many(h, buf, _BATCH_BYTES, idx, ts, ends, slots)
            if n > 0:
                data = ffi.unpack(buf, ends[n - 1])
            elif n == lib.TAPE_EINVAL:  # the entry is larger than the buffer: read it alone
                e = self._entry
                n = lib.tape_read(h, e)
                if n == 1:
                    data = ffi.unpack(ffi.cast("char *", e.e_data), e.e_len)
                    idx[0], ts[0], ends[0] = e.e_index, e.e_timestamp, e.e_len
        if n == 0:
            return False
        check(n, self._path)
        offsets = ffi.unpack(ends, n)
        pieces = map(slice, itertools.chain((0,), offsets), offsets)
        error = None
        if self._raw:
            values: list[Any] = list(map(data.__getitem__, pieces))
        elif self._decode_many is not None and n >= _DECODE_MANY_MIN:
            values, error = self._decode_many(data, offsets)
        else:
            values, error = self._decode_all(list(map(memoryview(data).__getitem__, pieces)))
        if entries:
            # tuple.__new__ builds the NamedTuple without its Python-level __new__.
            fields = zip(ffi.unpack(idx, n), ffi.unpack(ts, n), values)
            values = list(map(tuple.__new__, itertools.repeat(Entry), fields))
        self._batch = self._handle.read_ahead = values
        self._batch_it, self._batch_entries = iter(values), entries
        self._batch_n, self._batch_error = n, error
        return True

    def _decode_all(self, pieces: list[memoryview]) -> tuple[list[Any], Exception | None]:
        """The decoded values up to the first that fails, and that failure."""
        decode = self._decode
        try:
            return list(map(decode, pieces)), None
        except Exception:
            values = []
            for piece in pieces:
                try:
                    values.append(decode(piece))
                except Exception as exc:
                    return values, exc
            return values, None

    def _consumed(self) -> int:
        """How many values of the batch were handed out."""
        assert self._batch is not None
        return len(self._batch) - operator.length_hint(self._batch_it)

    def _drop_batch(self) -> None:
        assert self._batch is not None
        self._batch.clear()  # an abandoned iteration must not hand them out later
        self._batch = None
        self._batch_error = None

    def _settle(self) -> None:
        """Put the core's position just after the last entry handed out."""
        if self._batch is None:
            return
        consumed = self._consumed()
        self._drop_batch()
        if consumed < self._batch_n:
            self._rewind(consumed)

    def _finish_batch(self) -> None:
        """Drop the batch once all of it was handed out; raise the error that cut it short."""
        if self._batch is None or operator.length_hint(self._batch_it):
            return
        good = len(self._batch)
        error = self._batch_error
        self._drop_batch()
        if error is not None:
            self._rewind(good + 1)  # the next read is the entry after the bad one
            raise error

    def _rewind(self, consumed: int) -> None:
        """Move the core to just after the first `consumed` entries of the last batch."""
        self._readahead = 1
        if consumed >= self._batch_n or self._buffers is None:
            return
        idx = self._buffers[1]
        with self._lock:
            h = self._ptr()
            if consumed == 0:
                check(lib.tape_tailer_to_index(h, idx[0]), self._path)
            else:
                # Reading the last consumed entry again leaves the position and
                # last_read_index exactly as if the batch had ended there.
                check(lib.tape_tailer_to_index(h, idx[consumed - 1]), self._path)
                check(lib.tape_read(h, self._entry), self._path)

    # -- position -------------------------------------------------------------------

    @property
    def index(self) -> int | None:
        """Index of the entry the next read returns (at the end: the next to be written), or None."""
        if self._batch is not None and self._buffers is not None and self._handle.ptr is not None:
            consumed = self._consumed()
            if consumed < self._batch_n:
                return int(self._buffers[1][consumed])
        with self._lock:
            index: int = lib.tape_tailer_index(self._ptr())
        if index < -1:
            check(index, self._path)
        return _none_if_negative(index)

    @property
    def last_read_index(self) -> int | None:
        """Index of the last entry read, None before any."""
        if self._batch is not None and self._buffers is not None and self._handle.ptr is not None:
            consumed = self._consumed()
            if 0 < consumed < self._batch_n:
                return int(self._buffers[1][consumed - 1])
            if consumed == 0:
                self._settle()
        with self._lock:
            index: int = lib.tape_tailer_last_read_index(self._ptr())
        if index < -1:
            check(index, self._path)
        return _none_if_negative(index)

    def to_index(self, index: int) -> bool:
        """Move to `index` so that the next read returns it; False (no move) when it does not exist."""
        if type(index) is not int:
            index = _as_int(index, "index")
        if self._batch is not None:
            self._settle()
        self._readahead = 1
        if not 0 <= index <= _INT64_MAX:
            return False
        lock = self._lock
        lock.acquire()  # random access is a hot path: acquire/release cost less than `with`
        try:
            rc: int = lib.tape_tailer_to_index(self._ptr(), index)
        finally:
            lock.release()
        if rc < 0:
            check(rc, self._path)
        return rc == 1

    def to_start(self) -> None:
        """Move to the start of the queue."""
        self._settle()
        self._readahead = 1
        with self._lock:
            check(lib.tape_tailer_to_start(self._ptr()), self._path)

    def to_end(self) -> None:
        """Move to the end: forward, only new entries follow; backward, the newest comes first."""
        self._settle()
        self._readahead = 1
        with self._lock:
            check(lib.tape_tailer_to_end(self._ptr()), self._path)

    def to_time(self, when: datetime | float) -> bool:
        """Move to the first entry at or after `when` (a datetime or epoch seconds); False if none."""
        ns = _as_ns(when)
        self._settle()
        self._readahead = 1
        with self._lock:
            rc: int = lib.tape_tailer_to_time(self._ptr(), min(max(ns, 0), _INT64_MAX))
        check(rc, self._path)
        return rc == 1

    @property
    def direction(self) -> str:
        """The reading direction, "forward" or "backward"."""
        with self._lock:
            rc: int = lib.tape_tailer_direction(self._ptr())
        check(rc, self._path)
        return "backward" if rc == lib.TAPE_BACKWARD else "forward"

    @direction.setter
    def direction(self, direction: str) -> None:
        if direction not in _DIRECTIONS:
            raise ArgumentError(f"direction must be 'forward' or 'backward', not {direction!r}")
        self._settle()
        self._readahead = 1
        with self._lock:
            check(lib.tape_tailer_set_direction(self._ptr(), _DIRECTIONS[direction]), self._path)

    def close(self) -> None:
        """Close the tailer; idempotent."""
        if self._batch is not None:
            self._drop_batch()
        super().close()

    def __enter__(self) -> Tailer:
        with self._lock:
            self._ptr()
        return self


    def __repr__(self) -> str:
        name = "" if self._name is None else f" {self._name!r}"
        try:
            state = f"index={self.index} open"
        except QueueClosedError:
            state = "closed"
        return f"<tape.Tailer{name} of {self._path!r} {state}>"


def split_index(queue: Queue, index: int) -> tuple[int, int]:
    """(cycle, sequence within the cycle) of `index` in `queue`."""
    index = _as_int(index, "index")
    if not 0 <= index <= _INT64_MAX:
        raise ArgumentError(f"an index is between 0 and 2**63-1, not {index}")
    with queue._lock:
        h = queue._ptr()
        return lib.tape_index_cycle(h, index), lib.tape_index_seq(h, index)


def make_index(queue: Queue, cycle: int, seq: int) -> int:
    """The index of entry `seq` of `cycle` in `queue`."""
    cycle = _as_int(cycle, "cycle")
    seq = _as_int(seq, "seq")
    bits = queue._seq_bits
    if not 0 <= seq < 1 << bits:
        raise ArgumentError(f"seq is between 0 and 2**{bits}-1 for this roll cycle, not {seq}")
    if not 0 <= cycle <= _INT64_MAX >> bits:
        raise ArgumentError(f"cycle is between 0 and {_INT64_MAX >> bits}, not {cycle}")
    with queue._lock:
        index: int = lib.tape_make_index(queue._ptr(), cycle, seq)
    return index
