"""The exceptions tape raises, and the one table that maps C return codes to them.

Every class derives from TapeError and, where a builtin fits, from that builtin
too, so callers may catch either (an unencodable value is also a TypeError, a
missing queue also a FileNotFoundError, a full disk an OSError with ENOSPC).
"""

from __future__ import annotations

import errno
import os

from tape._core import ffi, lib


class TapeError(Exception):
    """Base class of every error raised by tape."""


class CorruptionError(TapeError):
    """A queue file is damaged (bad magic, checksum or length)."""


class IncompatibleQueueError(TapeError, ValueError):
    """The queue's stored roll cycle, codec or format version differs from the requested one."""


class NotAQueueError(TapeError, ValueError):
    """The directory exists, is not empty and holds no tape.meta."""


class QueueNotFoundError(TapeError, FileNotFoundError):
    """The queue does not exist and create=False was given."""


class QueueClosedError(TapeError, ValueError):
    """The queue, appender or tailer is closed."""


class ReadOnlyError(TapeError, PermissionError):
    """A write was attempted on a queue opened read-only."""


class EncodeError(TapeError, TypeError):
    """The codec cannot encode the value."""


class DecodeError(CorruptionError):
    """The codec cannot decode a stored entry."""


class ArgumentError(TapeError, ValueError):
    """An argument has the right type but a wrong value."""


class ArgumentTypeError(TapeError, TypeError):
    """An argument has the wrong type."""


class EntryTooLargeError(TapeError, ValueError):
    """The encoded value is larger than the largest entry a queue holds."""


class CycleFullError(TapeError):
    """The current cycle holds its maximum number of entries."""


class PoisonedError(TapeError):
    """An earlier flush to disk failed; the queue must be reopened to write again."""


class TapeOSError(TapeError, OSError):
    """A system call of the core failed; errno tells which error."""


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
    lib.TAPE_ECONFLICT: TapeError,  # Appender.write_if turns it into None
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
