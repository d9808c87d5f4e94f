"""The compiled core's objects, the one table from return codes to exceptions, and the roll cycles.

Only the modules of tape._native import this one.
"""

from __future__ import annotations

import errno
import os
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tape._core import ffi, lib
from tape._native import _hot
from tape.errors import (
    ArgumentError,
    CorruptionError,
    CycleFullError,
    EntryTooLargeError,
    IncompatibleQueueError,
    LimitError,
    NotAQueueError,
    PoisonedError,
    QueueClosedError,
    QueueNotFoundError,
    ReadOnlyError,
    StaleDeliveryError,
    TapeError,
    TapeOSError,
)

if TYPE_CHECKING:
    from tape._native.queue import QueueHandle

__all__ = [
    "ffi",
    "lib",
    "NAME_MAX",
    "NAMED_MAX",
    "PARAMS_MAX",
    "INDEX_MAX",
    "FORWARD",
    "BACKWARD",
    "check",
    "none_if_negative",
    "RollCycle",
    "ROLL_CYCLES",
    "ChildHandle",
    "address",
]

NAME_MAX = lib.TAPE_NAME_MAX  # names of named tailers, in bytes with the NUL
NAMED_MAX = lib.TAPE_NAMED_MAX  # named tailers per queue
PARAMS_MAX = lib.TAPE_PARAMS_MAX  # bytes of stored codec parameters
INDEX_MAX = 2**63 - 1
FORWARD, BACKWARD = "forward", "backward"

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
    lib.TAPE_ELIMIT: LimitError,
    lib.TAPE_ESTALE: StaleDeliveryError,
}


# What a writer's refusal (TAPE_ECORRUPT from an append or a sync) asks of the user.
_WRITER_REFUSES = (
    "the writer refuses to append: the end of the newest cycle is damaged or disagrees with"
    " tape.meta or the index, or the file was removed or replaced under this writer;"
    " run `tape verify` and then `tape repair` on the queue (and reopen it)"
)


# What any other damage asks of the user.
_SEE_VERIFY = "run `tape verify` on the queue to see the damage (`tape repair` clears a damaged tail)"


def check(rc: int, path: str | None = None, *, opening: bool = False, appending: bool = False) -> None:
    """Raise the exception for a negative return code of the core; do nothing otherwise.

    `opening` marks a tape_open() result, where -ENOENT means the queue is missing;
    `appending` an append's or a sync's, where damage is a writer's refusal.
    """
    if rc >= 0:
        return
    cls = _BY_CODE.get(rc, TapeError if rc <= lib.TAPE_EBASE else None)
    if cls is not None:
        text = ffi.string(lib.tape_strerror(rc)).decode()
        if appending and rc == lib.TAPE_ECORRUPT:
            text = f"{text}: {_WRITER_REFUSES}"
        elif rc == lib.TAPE_ECORRUPT:
            text = f"{text}: {_SEE_VERIFY}"
        raise cls(f"{path}: {text}" if path else text)
    code = -rc
    oserror = QueueNotFoundError if opening and code == errno.ENOENT else TapeOSError
    raise oserror(code, os.strerror(code), path)


def none_if_negative(value: int) -> int | None:
    return None if value < 0 else value


def address(ptr: Any) -> int:
    """The address of a C pointer, for tape._native._hot."""
    return int(ffi.cast("uintptr_t", ptr))


# tape._native._hot calls the core's functions through these addresses: it
# links no copy of the core, whose process-wide state (the SIGBUS guard's
# registry, the fork handlers, the table of open queues) must stay one. It
# sets the core's wait hooks (tape_set_wait_hooks) to let the GIL go while an
# append of its own waits for the write lock.
_hot.bind(*(address(ffi.addressof(lib, name)) for name in (
    "tape_append", "tape_append_many_ex", "tape_peek_many_ex", "tape_read_many_ex", "tape_key_read",
    "tape_set_wait_hooks")))
_hot.bind_group(*(address(ffi.addressof(lib, name)) for name in (
    "tape_group_claim", "tape_group_claim_many", "tape_group_ack", "tape_group_ack_many")))
_hot.bind_writer(*(address(ffi.addressof(lib, name)) for name in (
    "tape_append_ex", "tape_append_if", "tape_append_if_key")))


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


class ChildHandle:
    """An appender or tailer of a queue: `ptr` until closed, then None."""

    __slots__ = ("queue", "path", "ptr", "lock")
    CLOSED = "the handle is closed"  # what QueueClosedError says once it is

    def __init__(self, queue: QueueHandle, ptr: Any) -> None:
        self.queue = queue
        self.path = queue.path
        self.ptr: Any = ptr
        self.lock = threading.Lock()

    def live(self) -> Any:
        """The C object; QueueClosedError once closed (a tailer's caller holds self.lock)."""
        ptr = self.ptr
        if ptr is None:
            raise QueueClosedError(f"{self.path}: {self.CLOSED}")
        return ptr

    def close(self) -> None:
        """Free (or shut) the C object; the queue's lock is held (QueueHandle.release, .close)."""
        raise NotImplementedError
