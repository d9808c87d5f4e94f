"""tape: an embedded, durable, memory-mapped message queue (a persisted log).

    with tape.Queue("/data/q1") as q:
        index = q.appender().write({"foo": "bar"})
        for value in q.tailer():
            ...
"""

from tape import codecs
from tape.appender import Appender
from tape.atom import DurableAtom
from tape.errors import (
    ArgumentError,
    ArgumentTypeError,
    AtomCommitError,
    AtomConflictError,
    AtomValidationError,
    CorruptionError,
    CycleFullError,
    DecodeError,
    EncodeError,
    EntryTooLargeError,
    IncompatibleQueueError,
    LimitError,
    NotAQueueError,
    PoisonedError,
    QueueClosedError,
    QueueNotFoundError,
    ReadOnlyError,
    ReplicationError,
    StaleDeliveryError,
    TapeError,
    TapeOSError,
)
from tape.group import Consumer, DeadLetter, Delivery, Group, Pending
from tape.lifecycle import close_all, on_lifecycle, status
from tape.objects import DurableObject, Objects
from tape.queue import Queue, make_index, split_index
from tape.records import CycleInfo, Entry, VerifyReport
from tape.states import State, state
from tape.tailer import Tailer

__version__ = "0.1.0"  # pyproject.toml reads it from here

open = Queue  # tape.open(...) is tape.Queue(...)

__all__ = [
    "__version__",
    "Queue",
    "open",
    "Appender",
    "Tailer",
    "Entry",
    "CycleInfo",
    "VerifyReport",
    "split_index",
    "make_index",
    "Group",
    "Consumer",
    "Delivery",
    "DeadLetter",
    "Pending",
    "StaleDeliveryError",
    "DurableAtom",
    "DurableObject",
    "Objects",
    "AtomCommitError",
    "AtomConflictError",
    "AtomValidationError",
    "codecs",
    "state",
    "State",
    "status",
    "close_all",
    "on_lifecycle",
    "TapeError",
    "CorruptionError",
    "IncompatibleQueueError",
    "NotAQueueError",
    "QueueNotFoundError",
    "QueueClosedError",
    "ReadOnlyError",
    "ReplicationError",
    "EncodeError",
    "DecodeError",
    "ArgumentError",
    "ArgumentTypeError",
    "EntryTooLargeError",
    "CycleFullError",
    "LimitError",
    "PoisonedError",
    "TapeOSError",
]
