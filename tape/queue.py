"""The Queue: a persisted log in a directory, and what it knows of itself.

Data flows one way: value -> codec -> bytes -> C core -> mapped file, and
back. The core (through tape._native, the only layer that touches it) does
all file-format and concurrency work; a Queue checks its options, opens the
core's queue, and hands out appenders and tailers. It also runs the
sync="interval:<ms>" flusher and applies retention= as the queue rolls.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
import weakref
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from tape import archive, codecs, lifecycle
from tape import group as groups_
from tape._args import as_index, as_int, as_name, as_seconds, shown
from tape._native import NAME_MAX, ROLL_CYCLES, AppenderHandle, QueueHandle, RollCycle
from tape._time import to_datetime
from tape._native.appender import MSGPACK, OTHER, RAW
from tape._native.queue import Keys
from tape.appender import Appender, key_bytes
from tape.errors import (
    ArgumentError,
    ArgumentTypeError,
    CorruptionError,
    PoisonedError,
    ReadOnlyError,
    TapeError,
)
from tape.records import CycleInfo, Entry, VerifyReport
from tape.retention import Policy
from tape.tailer import Tailer

__all__ = ["Queue", "split_index", "make_index"]


class _Flusher:
    """The sync="interval:<ms>" thread: makes the queue durable every `seconds`, and once more when stopped."""

    def __init__(self, appender: AppenderHandle, seconds: float, name: str) -> None:
        self._appender = appender
        self._seconds = seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._seconds):
            if not self._appender.sync_quietly():
                return  # closed, or a failed sync poisoned the queue: the next write reports it

    def stop(self) -> None:
        """Stop the thread, then sync: what was written since the last interval is not left behind.

        A queue that an earlier failed sync poisoned has reported it already (to
        its writers), so that failure is not raised again here.
        """
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join()
        with contextlib.suppress(PoisonedError):
            self._appender.sync()


_WEEK_MS = 7 * 86_400_000


def _interval(sync: Any) -> float | None:
    """Check a sync mode; the flush interval in seconds for "interval:<ms>"."""
    if not isinstance(sync, str):
        raise ArgumentTypeError(f"sync must be a str, not {type(sync).__name__}")
    if sync in ("none", "always"):
        return None
    kind, _, ms = sync.partition(":")
    if kind == "interval" and ms.isascii() and ms.isdigit() and 0 < int(ms) / 1000 <= threading.TIMEOUT_MAX:
        return int(ms) / 1000
    raise ArgumentError(f"sync must be 'none', 'always' or 'interval:<ms>' (ms > 0), not {shown(sync)}")


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
    _native: QueueHandle | None = None
    _lookup: Keys | None = None  # latest's, made on its first call

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
        epoch_ms: int = 0,
        large_pages: bool | None = None,
        **unknown: Any,
    ) -> None:
        self._flusher: _Flusher | None = None
        if unknown:  # a tape error, not Python's plain TypeError
            raise ArgumentTypeError(f"unexpected keyword argument {sorted(unknown)[0]!r}")
        try:
            self.path = os.fsdecode(path)
        except TypeError:
            raise ArgumentTypeError(f"path must be a path, not {type(path).__name__}") from None
        if "\0" in self.path:
            raise ArgumentError(f"a queue's path has no NUL in it: {shown(self.path)}")
        if roll_cycle is not None and roll_cycle not in ROLL_CYCLES:
            raise ArgumentError(f"unknown roll cycle {roll_cycle!r} (known: {', '.join(ROLL_CYCLES)})")
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
        interval = _interval(sync)
        if clock is not None and not callable(clock):
            raise ArgumentTypeError(f"clock must be callable, not {type(clock).__name__}")
        if retention is not None and not isinstance(retention, dict):
            raise ArgumentTypeError(f"retention must be a dict of purge() keywords, not {type(retention).__name__}")
        self._retention = None if retention is None else Policy.parse(retention)
        epoch_ms = as_int(epoch_ms, "epoch_ms")
        if not -_WEEK_MS < epoch_ms < _WEEK_MS:
            raise ArgumentError(f"epoch_ms shifts the moment of rolling by less than a week, not {shown(epoch_ms)}")
        if large_pages is None:
            large_pages = sync == "none"
        elif not isinstance(large_pages, bool):
            raise ArgumentTypeError(f"large_pages must be a bool or None, not {type(large_pages).__name__}")

        if self._retention is not None and self._retention.archive is not None and not read_only:
            archive.check_dir(self._retention.archive)  # now, not at a roll, when a write would raise
        lifecycle.opening(self)
        self._native = QueueHandle.open(
            self.path,
            roll_cycle=roll_cycle,
            codec=name,
            params=params,
            read_only=bool(read_only),
            create=bool(create),
            epoch_ms=epoch_ms,
            small_pages=not large_pages,
        )
        try:
            info = self._native.info()
            self._roll: RollCycle = info.roll
            self.roll_cycle = info.roll.name
            self.codec_name = info.codec
            self.codec_params = self._native.params(info.params_len)
            if self.raw:
                self.codec = codecs.RawCodec()
            else:
                self.codec = codecs.opened(wanted, self.codec_name, self.codec_params)
        except TapeError as exc:
            self.close()
            if isinstance(exc, CorruptionError):
                raise
            raise type(exc)(f"{self.path}: {exc}") from None
        self.sync = sync
        self.read_only = bool(read_only)
        self.large_pages = large_pages and not self.read_only
        self._clock = clock
        self._groups: weakref.WeakSet[groups_.Group] = weakref.WeakSet()
        if interval is not None and not self.read_only:
            self._flusher = _Flusher(self._native.appender(), interval, f"tape-sync {self.path}")
        lifecycle.register(self)

    def _handle(self) -> QueueHandle:
        """The core's queue; QueueClosedError once closed."""
        native = self._native
        if native is None:
            raise AssertionError("the queue never opened")
        native.ptr()  # raises QueueClosedError once closed
        return native

    # -- appenders and tailers ---------------------------------------------------------------

    def appender(self) -> Appender:
        """A new appender of this queue."""
        on_roll = None if self._retention is None else self._rolled
        return Appender(self, self._handle().appender(), clock=self._clock, on_roll=on_roll)

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
        (`start` only places a name seen for the first time); its stored
        position moves past each value just before it is handed out, never
        past one that is not. `spin` is how long
        (seconds) a wait spins, checking for data, before it sleeps; True
        spins for the whole wait (lowest latency, one core busy).
        """
        if name is not None:
            as_name(name, "a tailer name", NAME_MAX)
        if isinstance(spin, bool):
            spin_ns = -1 if spin else 0
        else:
            spin_ns = int(as_seconds(spin) * 1e9)
        if start is not None and not isinstance(start, str):
            start = as_int(start, "start")
        elif start not in (None, "start", "end"):
            raise ArgumentError(f"start must be 'start', 'end' or an index, not {start!r}")
        native = self._handle()
        with native.lock:
            if name is not None and name in native.named():
                start = None  # resume where it left off
            tailer = Tailer(self, native.tailer(name, spin_ns), name=name)
        try:
            if start == "end":
                tailer.to_end()
            elif isinstance(start, int) and not tailer.to_index(start):
                raise ArgumentError(f"{self.path}: no entry at index {start}")
        except BaseException:
            tailer.close()
            raise
        return tailer

    # -- consumer groups ------------------------------------------------------------------------

    def group(
        self,
        name: str,
        *,
        start: str | int | None = None,
        ack_wait: float | timedelta | None = None,
        max_deliveries: int | None = None,
        backoff: Any = None,
    ) -> groups_.Group:
        """The consumer group `name`, created on first use at `start` ("start", "end" or an index).

        ack_wait (seconds; 30 at creation), max_deliveries (5) and backoff (a
        sequence of seconds, the last repeated; none) are stored with the
        group: one given changes it, one left out keeps what is stored.
        """
        _group_name(name)
        g = groups_.Group(self, name, start=start, ack_wait=ack_wait, max_deliveries=max_deliveries,
                          backoff=backoff)
        self._groups.add(g)
        return g

    def groups(self) -> list[str]:
        """The names of the queue's consumer groups."""
        self._handle()
        return groups_.names(self.path)

    def remove_group(self, name: str) -> None:
        """Forget group `name` and its dead letters (KeyError when there is none); refused (TapeOSError,
        EBUSY, naming them) while consumers of it are open, in any process."""
        _group_name(name)
        if self.read_only:
            raise ReadOnlyError(f"{self.path}: the queue is open read-only")
        self._handle()
        groups_.remove(self, name)

    def _group_floors(self) -> list[int]:
        """The index before which each group has finished every entry (-1: none)."""
        floors = []
        for name in groups_.names(self.path):
            try:
                g = groups_.Group(self, name, start=groups_.ONLY_EXISTING)
            except KeyError:
                continue  # removed meanwhile
            try:
                f = g.floor()
            finally:
                g.close()
            floors.append(-1 if f is None else f)
        return floors

    def remove_tailer(self, name: str) -> None:
        """Forget the named tailer `name` (KeyError when there is none)."""
        as_name(name, "a tailer name", NAME_MAX)
        self._handle().remove_named(name)

    # -- what it holds ------------------------------------------------------------------------

    @property
    def first_index(self) -> int | None:
        """Index of the first entry, None when the queue is empty."""
        return self._handle().first_index()

    @property
    def last_index(self) -> int | None:
        """Index of the last entry, None when the queue is empty."""
        return self._handle().last_index()

    def latest(self, key: str | bytes) -> Entry | None:
        """The Entry of the newest entry with `key`, None when there is none or it was deleted.

        Answered by the key directory every process shares: the same in all of
        them once a write returned.
        """
        lookup = self._lookup
        if lookup is None:
            lookup = self._lookup = self._handle().key_lookup(self._kind(), self.codec.decode)
        got = lookup.latest(key)
        if got is False:  # what C leaves: a key to check, an error to raise, a closed queue
            return self._handle().key_entry(key_bytes(key), self.codec.decode)
        return got

    def _kind(self) -> int:
        """How the C calls decode this queue's values: RAW, MSGPACK or OTHER (the codec's decode)."""
        codec = type(self.codec)
        return RAW if codec is codecs.RawCodec else MSGPACK if codec is codecs.MsgpackCodec else OTHER

    def keys(self) -> list[str | bytes]:
        """The live keys (those whose newest entry is not a tombstone), in no order."""
        native = self._handle()
        keys: list[str | bytes] = []
        with self.tailer() as t:
            for index in native.key_indexes():
                entry = t.read_entry() if t.to_index(index) else None
                if entry is not None and entry.key is not None:
                    keys.append(entry.key)
        return keys

    def count(self) -> int:
        """Number of entries in the queue."""
        return self._handle().count()

    def cycles(self) -> list[CycleInfo]:
        """One record per cycle file, oldest first."""
        return self._handle().cycles()

    def describe(self) -> dict[str, Any]:
        """Everything about the queue a person would want to see, as a plain dict."""
        native = self._handle()
        info = native.info()
        cycles = native.cycles()
        return {
            "path": self.path,
            "roll_cycle": self.roll_cycle,
            "codec": self.codec_name,
            "format_version": info.version,
            "created": to_datetime(info.created_ns).isoformat(),
            "cycles": [c._asdict() for c in cycles],
            "entries": native.count(),
            "bytes": sum(c.bytes for c in cycles),
            "first_index": native.first_index(),
            "last_index": native.last_index(),
            "last_timestamp": info.last_timestamp or None,
            "read_only": self.read_only,
            "sync": self.sync,
            "large_pages": self.large_pages,
            "named_tailers": native.named(),
            "groups": groups_.names(self.path),
        }

    # -- maintenance --------------------------------------------------------------------------

    def purge(
        self,
        *,
        keep_cycles: int | None = None,
        older_than: float | timedelta | None = None,
        max_bytes: int | None = None,
        respect_tailers: bool = False,
        archive: str | os.PathLike[str] | None = None,
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
        archive=DIR (created if missing) moves each file into DIR instead, as
        `<file name>.lz4` (tape dump reads it), on disk before the file is
        removed; the paths returned are then the archives'.
        on_remove(path) is called as each file goes (with dry_run, as it is picked).
        """
        if keep_cycles is None and older_than is None and max_bytes is None:
            raise ArgumentError("purge() needs a rule: keep_cycles=, older_than= or max_bytes=")
        policy = Policy.parse(
            {"keep_cycles": keep_cycles, "older_than": older_than, "max_bytes": max_bytes,
             "respect_tailers": respect_tailers, "archive": archive}
        )
        return self._purge(policy, dry_run, on_remove)

    def _purge(
        self,
        policy: Policy,
        dry_run: bool,
        on_remove: Callable[[str], object] | None = None,
        groups: bool = False,
    ) -> list[str]:
        native = self._handle()
        cycles = native.cycles()
        floor = None
        if policy.respect_tailers:
            nexts = native.named().values()
            if nexts:
                floor = min(-1 if i is None else self._roll.cycle(i) for i in nexts)
        group_floor = None
        if policy.respect_tailers or groups:
            floors = [-1 if i < 0 else self._roll.cycle(i) for i in self._group_floors()]
            group_floor = min(floors, default=None)
        now = time.time_ns() if self._clock is None else self._clock()
        doomed = set(policy.select(cycles, self._roll.end_ns, now, floor, group_floor))
        if doomed and policy.archive is not None and not dry_run:
            archive.check_dir(policy.archive)  # before anything goes
            archive.remove_leftovers(policy.archive)
        removed = []
        live = native.key_indexes() if doomed and not dry_run else []
        for c in cycles:
            if c.cycle not in doomed:
                continue
            path = c.path if policy.archive is None else archive.archive_path(policy.archive, c.path)
            if not dry_run:
                # Compaction: each live key whose newest entry is in the cycle is appended again first.
                native.carry_keys([i for i in live if self._roll.cycle(i) == c.cycle], self._now_ts())
                if policy.archive is not None and archive.write(self.path, c.path, policy.archive) is None:
                    continue  # removed meanwhile by another process
                if not native.remove_cycle(c.cycle):
                    continue  # gone already, or became the newest holding entries
            removed.append(path)
            if on_remove is not None:
                on_remove(path)
        return removed

    def _now_ts(self) -> int:
        """The timestamp of an entry written now: the queue's clock, or 0 (the core reads the wall clock)."""
        return 0 if self._clock is None else self._clock()

    def _rolled(self, index: int) -> int:
        """After a write in a new cycle: apply retention= ; the index where the next cycle starts."""
        if self._retention is not None:
            self._purge(self._retention, False, groups=True)
        return self._roll.next_cycle_index(index)

    def verify(self, *, salvage: bool = False, progress: Callable[[int], None] | None = None) -> VerifyReport:
        """Check every cycle file: headers, checksums, index and ordering.

        Strict (the default) stops in a cycle at its first problem; with
        salvage=True the check goes on past damage and counts what is intact.
        `progress` is called with the bytes checked so far (every 16 MiB and
        after each cycle file; the total is the sum of cycles()' bytes); an
        exception it raises stops the check and is raised here. Then, if the
        cycles are sound, the key directory (tape.keys) is checked against them.
        """
        native = self._handle()
        report = native.verify(salvage, progress)
        differs = native.check_keys() if report.ok else None  # the key directory against a sound log
        if differs is not None:
            report = report._replace(ok=False, problems=report.problems + 1, message=differs)
        return report

    def repair(self) -> int:
        """Make the queue writable again after a power loss tore its tail; the bytes cleared or corrected.

        In the newest cycle file, what follows the last entry whose checksum
        holds is cleared: nothing a reader could reach (readers stop at the
        damage); index slots a lost page left empty before intact entries are
        filled back in (8 bytes each). The cycle before the newest, when a
        roll cut short left it unsealed and damaged after its last intact
        entry, is cut there and sealed (4 bytes more), so that readers reach
        the newer cycle. A sound tail is left as it is (0). Damage further
        back is for verify() to report. A key directory (tape.keys) that
        disagrees with the log is rebuilt from it.
        """
        cleared, refilled, sealed, corrected = self.repair_report()
        return cleared + 8 * refilled + 4 * sealed + corrected

    def repair_report(self) -> tuple[int, int, int, int]:
        """repair(), telling apart what it did: bytes cleared, index slots refilled, cycles sealed, bytes of hints corrected."""
        native = self._handle()
        done = native.repair()
        if native.check_keys() is not None:
            native.rebuild_keys()
        return done

    # -- closing ------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the queue and every appender and tailer of it; idempotent.

        With sync="interval:<ms>", what was written since the last flush is
        synced first; a failure of that sync is raised once all is closed.
        """
        native = self._native
        if native is None or native.closed:
            return
        with native.lock:
            if native.closed:
                return
            lifecycle.closing(self)
            for g in list(getattr(self, "_groups", ())):  # none when the open failed
                g.close()
            failure = None
            if self._flusher is not None:
                try:
                    self._flusher.stop()
                except TapeError as exc:  # the last sync failed: raised once all is closed
                    failure = exc
            native.close()
        lifecycle.unregister(self)
        if failure is not None:
            raise failure

    def __enter__(self) -> Queue:
        self._handle()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> Queue:
        return self.__enter__()

    async def __aexit__(self, *exc_info: object) -> None:
        # In a worker thread: closing waits for each waiting tailer to end its slice.
        await asyncio.to_thread(self.close)

    def __del__(self) -> None:
        self.close()

    def __repr__(self) -> str:
        native = self._native
        state = "closed" if native is None or native.closed else "open"
        if not hasattr(self, "codec_name"):  # still opening
            return f"<tape.Queue {self.path!r} {state}>"
        return f"<tape.Queue {self.path!r} {self.roll_cycle} {self.codec_name} {state}>"


def _group_name(name: Any) -> None:
    """A group's name: a tailer's rules, and a file name of its own (no '/', not starting with '.')."""
    as_name(name, "a group name", NAME_MAX)
    if "/" in name or name.startswith("."):
        raise ArgumentError(f"a group name must not hold '/' nor start with '.', not {shown(name)}")


def split_index(queue: Queue, index: int) -> tuple[int, int]:
    """(cycle, sequence within the cycle) of `index` in `queue`."""
    index = as_index(index, "index")
    queue._handle()
    return queue._roll.split(index)


def make_index(queue: Queue, cycle: int, seq: int) -> int:
    """The index of entry `seq` of `cycle` in `queue`."""
    cycle = as_int(cycle, "cycle")
    seq = as_int(seq, "seq")
    queue._handle()
    return queue._roll.make(cycle, seq)
