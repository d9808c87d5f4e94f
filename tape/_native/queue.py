"""QueueHandle: an open C queue, what it holds, and the appenders and tailers opened on it."""

from __future__ import annotations

import errno
import os
import struct
import threading
import weakref
from collections.abc import Callable
from typing import Any, NamedTuple

from tape._native._hot import Keys as Keys  # (Queue.latest's)
from tape._native.appender import AppenderHandle
from tape._native.core import (
    NAME_MAX,
    NAMED_MAX,
    ROLL_CYCLES,
    ChildHandle,
    RollCycle,
    address,
    check,
    ffi,
    lib,
    none_if_negative,
)
from tape._native.tailer import TailerHandle, entry_attrs
from tape.errors import (
    ArgumentError,
    CorruptionError,
    IncompatibleQueueError,
    LimitError,
    QueueClosedError,
    QueueNotFoundError,
    TapeError,
)
from tape.records import CycleInfo, Entry, VerifyReport

_KEY_READ = lib.tape_key_read  # bound once, with what it uses: Queue.latest's call
_KEY_STR = lib.TAPE_A_KEY_STR
_KEY_LATEST = lib.tape_key_latest
_CAST, _UNPACK = ffi.cast, ffi.unpack
# The members of a tape_entry read at once (faster than one by one): e_index,
# e_timestamp, e_data, e_len, then e_attrs' a_key, a_key_len, a_flags,
# a_not_before, a_origin_index, a_origin_ts.
_ENTRY_FIELDS = struct.Struct("=qqQI4xQIIqqq").unpack_from
if ffi.sizeof("tape_entry") != 72 or ffi.offsetof("tape_entry", "e_attrs") != 32:
    raise ImportError("tape_entry's layout is not the one _ENTRY_FIELDS reads")

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
        self._children: set[ChildHandle] = set()
        self._lookup: TailerHandle | None = None  # key_entry's reader, made on first use
        self._entry: Any = ffi.new("tape_entry *")  # key_entry's, under self.lock
        self._entry_bytes = ffi.buffer(self._entry)  # its memory, read by _ENTRY_FIELDS
        self._keys: list[Keys] = []  # the Keys made by key_lookup, shut at close

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
            differs = cls._differences(path, roll_cycle, codec)
            if differs:
                raise IncompatibleQueueError(f"{path}: {differs}") from None
            exc.add_note(f"asked for roll_cycle={roll_cycle!r}, codec={codec!r}")
            raise
        except QueueNotFoundError:
            if creating and params is None:
                raise ArgumentError(f"{path}: creating a queue with codec {codec!r} needs schema=") from None
            if creating:
                raise
            there = "the directory is empty" if os.path.isdir(path) else "no such directory"
            why = "read_only=True" if read_only else "create=False"
            raise QueueNotFoundError(errno.ENOENT, f"no queue ({there}; {why} creates none)", path) from None
        handle = cls(path, out[0])
        _OPEN.add(handle)
        return handle

    @classmethod
    def _differences(cls, path: str, roll_cycle: str | None, codec: str | None) -> str:
        """What the queue at `path` stores that differs from what was asked, in words ("" if unknown)."""
        try:
            stored = cls.open(path, roll_cycle=None, codec=None, params=b"", read_only=True, create=False,
                              epoch_ms=0, small_pages=True)
        except TapeError:
            return ""
        try:
            info = stored.info()
        except TapeError:
            return ""
        finally:
            stored.close()
        differs = []
        if roll_cycle is not None and roll_cycle != info.roll.name:
            differs.append(f"the queue's roll cycle is {info.roll.name!r}, not {roll_cycle!r}")
        if codec is not None and codec != info.codec:
            differs.append(f"the queue's codec is {info.codec!r}, not {codec!r}")
        return "; ".join(differs)

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
            for keys in self._keys:
                keys.shut()
            self._keys.clear()
            for child in list(self._children):
                child.close()
            self._children.clear()
            lib.tape_close(self._ptr)
            self._ptr = None

    def release(self, child: ChildHandle, closing: Callable[[], None]) -> bool:
        """Call `closing`, then close `child` and forget it; False (nothing called) when it is closed already."""
        with self.lock:
            if child.ptr is None:
                return False
            closing()
            child.close()
            self._children.discard(child)
            return True

    # -- what the queue holds ----------------------------------------------------------------

    def _text(self, data: bytes, what: str) -> str:
        """A name stored in tape.meta, which tape only ever writes as UTF-8: else the file is damaged."""
        try:
            return data.decode()
        except UnicodeDecodeError:
            raise CorruptionError(f"{self.path}: {what} in tape.meta is not UTF-8 (damaged; see tape verify)") from None

    def info(self) -> QueueInfo:
        info = ffi.new("tape_queue_info *")
        with self.lock:
            check(lib.tape_queue_info_get(self.ptr(), info), self.path)
        name = self._text(ffi.string(info.qi_roll_cycle), "the roll cycle's name")
        if name not in ROLL_CYCLES:
            raise CorruptionError(
                f"{self.path}: tape.meta names an unknown roll cycle {name!r} (damaged; see tape verify)"
            )
        roll = RollCycle(name, ROLL_CYCLES[name].length_ms, info.qi_seq_bits, info.qi_epoch_ms)
        return QueueInfo(
            version=info.qi_version,
            roll=roll,
            codec=self._text(ffi.string(info.qi_codec), "the codec's name"),
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
        return none_if_negative(index)

    def first_index(self) -> int | None:
        """Index of the first entry, None when the queue is empty."""
        return self._edge(lib.tape_first_index)

    def last_index(self) -> int | None:
        """Index of the last entry, None when the queue is empty."""
        return self._edge(lib.tape_last_index)

    def key_latest(self, key: bytes) -> int | None:
        """The index of the newest entry with `key` (checked bytes), None when there is none or it is deleted."""
        with self.lock:
            index: int = lib.tape_key_latest(self.ptr(), key, len(key))
        if index < -1:
            check(index, self.path)
        return none_if_negative(index)

    def key_latest_call(self) -> tuple[Callable[[Any, bytes, int], int], Any]:
        """The core's tape_key_latest and this queue's C pointer, for a caller that keeps the queue open meanwhile.

        f(ptr, key, len(key)) is key_latest without its lock: the index of the
        newest entry with `key` (checked bytes), -1 when there is none or it is
        deleted, or a code below -1 for check().
        """
        return _KEY_LATEST, self.ptr()

    def key_lookup(self, kind: int, decode: Callable[[bytes], Any]) -> Keys:
        """Queue.latest in C (tape/_native/_hot_keys.c) with a tailer of its own: values decoded as `kind`
        (RAW, MSGPACK or OTHER) says, with `decode`; its False asks for key_entry (see Keys)."""
        with self.lock:
            tailer = self.tailer(None, 0)
            keys = Keys(address(self.ptr()), address(tailer.live()), kind, decode, Entry)
            self._keys.append(keys)
            return keys

    def key_entry(self, key: bytes, decode: Callable[[bytes], Any], name: str | None = None) -> Entry | None:
        """The newest entry with `key` (checked bytes), its value decode(payload); None when there is none or it is deleted.

        `name`: the str whose UTF-8 (surrogateescape) `key` is, when the caller has it.
        """
        with self.lock:
            t = self._lookup
            if t is None or t.ptr is None:
                t = self._lookup = self.tailer(None, 0)
            h = self._ptr
            if h is None:
                raise QueueClosedError(f"{self.path}: the queue is closed")
            rc = _KEY_READ(h, t.ptr, key, len(key), self._entry)
            if rc == 1:
                index, ts, data, n, _, _, flags, nb, origin, origin_ts = _ENTRY_FIELDS(self._entry_bytes)
                value = decode(_UNPACK(_CAST("char *", data), n))
                if nb or origin >= 0:
                    return tuple.__new__(Entry, (index, ts, value, *entry_attrs(key, flags, nb, origin, origin_ts)))
                if not flags & _KEY_STR:
                    return tuple.__new__(Entry, (index, ts, value, key, None, None, False))
                if name is None:
                    name = key.decode("utf-8", "surrogateescape")
                return tuple.__new__(Entry, (index, ts, value, name, None, None, False))
        check(rc, self.path)
        return None

    def carry_keys(self, indexes: list[int], ts: int) -> int:
        """Append again each entry of `indexes` (a live key's newest) that is still its key's newest; how many were.

        Each is a compare-and-append on its key's newest index: a key written
        or deleted meanwhile is left as the newer entry says. The copy has the
        entry's payload and attributes, a new index and the timestamp `ts` (0:
        now).
        """
        if not indexes:
            return 0
        carried = 0
        e = ffi.new("tape_entry *")
        appender = self.appender()
        try:
            with self.lock:
                tailer = self.tailer(None, 0)
                try:
                    for index in indexes:
                        rc = lib.tape_tailer_to_index(tailer.live(), index)
                        if rc == 1:
                            rc = lib.tape_read(tailer.live(), e)
                        check(rc, self.path)
                        if rc == 0 or e.e_index != index or e.e_attrs.a_key == ffi.NULL:
                            continue  # removed meanwhile by another purge, which carried it
                        new = lib.tape_append_if_key(appender.live(), e.e_data, e.e_len, ts, index,
                                                     ffi.addressof(e, "e_attrs"))
                        if new != lib.TAPE_ECONFLICT:
                            check(new, self.path, appending=True)
                            carried += 1
                finally:
                    self.release(tailer, lambda: None)
        finally:
            self.release(appender, lambda: None)
        return carried

    def check_keys(self) -> str | None:
        """tape_keys_check: None when tape.keys agrees with the log, else the first difference in words."""
        msg = ffi.new("char[]", 256)
        with self.lock:
            rc = lib.tape_keys_check(self.ptr(), msg, len(msg))
        check(rc, self.path)
        return None if rc == 0 else ffi.string(msg).decode(errors="replace")

    def key_indexes(self) -> list[int]:
        """The index of the newest entry of each live key."""
        with self.lock:
            n: int = lib.tape_keys_list(self.ptr(), ffi.NULL, 0)
            while n >= 0:
                out = ffi.new("int64_t[]", max(n, 1))
                got: int = lib.tape_keys_list(self.ptr(), out, n)
                if got <= n:
                    return list(ffi.unpack(out, got))
                n = got
        check(n, self.path)
        return []

    def rebuild_keys(self) -> None:
        """Rebuild the key directory from the log."""
        with self.lock:
            check(lib.tape_keys_rebuild(self.ptr()), self.path)

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
                        first_index=none_if_negative(info.ci_first_index),
                        last_index=none_if_negative(info.ci_last_index),
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
                    text = self._text(ffi.string(name), f"the name of named tailer slot {slot}")
                    found[text] = none_if_negative(nxt[0])
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
            last_good_index=none_if_negative(r.vr_last_good),
            bad_cycle=none_if_negative(r.vr_bad_cycle),
            bad_offset=None if r.vr_bad_cycle < 0 else r.vr_bad_offset,
            message=ffi.string(r.vr_message).decode(errors="replace"),
        )

    def repair(self) -> tuple[int, int, int, int]:
        """tape_repair: bytes cleared, index words refilled, cycles sealed, bytes of hints corrected."""
        r = ffi.new("tape_repair_report *")
        with self.lock:
            rc = lib.tape_repair(self.ptr(), r)
        check(rc, self.path)
        return r.rr_cleared, r.rr_refilled, r.rr_sealed, r.rr_corrected

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
                rc = lib.tape_tailer_open_named(self.ptr(), name.encode(), out)
                if rc == lib.TAPE_ELIMIT:
                    raise LimitError(f"{self.path}: {NAMED_MAX} named tailers exist, the most a queue holds;"
                                     " Queue.remove_tailer(name) forgets one")
                check(rc, self.path)
            handle = TailerHandle(self, out[0])
            self._children.add(handle)
            lib.tape_tailer_set_spin(out[0], spin_ns)
            return handle


_OPEN: weakref.WeakSet[QueueHandle] = weakref.WeakSet()  # the queues open in this process


def _after_fork_in_child() -> None:
    """A fork child lets go of its parent's hold on each open queue's write lock (tape_queue_after_fork).

    Its writes go on with a lock token of its own; a failure (no file
    descriptor left) leaves the child holding the parent's, as before.
    """
    for handle in list(_OPEN):
        ptr = handle._ptr
        if ptr is not None:
            lib.tape_queue_after_fork(ptr)


os.register_at_fork(after_in_child=_after_fork_in_child)
