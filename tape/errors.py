"""The exceptions tape raises: every one of them is here.

tape._native maps the core's return codes to these classes, through one
table. Every class derives from TapeError and, where a builtin fits, from that builtin
too, so callers may catch either (an unencodable value is also a TypeError, a
missing queue also a FileNotFoundError, a full disk an OSError with ENOSPC).
"""

from __future__ import annotations


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


class LimitError(TapeError):
    """A limit of the queue is reached (e.g. 256 named tailers per queue)."""


class StaleDeliveryError(TapeError):
    """A group delivery's claim has lapsed (handed to another consumer, or finished): nothing was changed."""


class PoisonedError(TapeError):
    """An earlier flush to disk failed; the queue must be reopened to write again."""


class TapeOSError(TapeError, OSError):
    """A system call of the core failed; errno tells which error."""


class AtomValidationError(TapeError, ValueError):
    """The validator rejected a new value (returned false or raised); nothing was written."""


class AtomConflictError(TapeError):
    """commit="async": another process appended a snapshot after the one a change was based on."""


class AtomCommitError(TapeError):
    """commit="async": changes could not be committed; the cause says why."""


class ReplicationError(TapeError):
    """Replication cannot go on: a stream or frame that does not fit the queue, or a gap (tape.replicate)."""
