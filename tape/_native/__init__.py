"""The binding layer: the only package that touches the compiled core (tape._core).

Every crossing of the boundary is here: it owns the C handles (a queue, its
appenders and tailers; children are closed before their queue, each freed
exactly once), reads every return code (one table turns codes into
exceptions; the few codes that are answers, not errors, become Python values
here), holds the roll-cycle arithmetic, and turns C structs into Python
values. The public classes above it (Queue, Appender, Tailer) speak Python,
with one exception for speed: Appender and Tailer subclass Writer and Reader
of tape._native._hot (C), whose write, write_many, read and read_entry are
the hottest paths, and Consumer and Delivery subclass Claimer and
DeliveryBase (claim, ack); they hand what they do not do to the subclass's
Python methods (see docs/ARCHITECTURE.md).

Threads: calls on a queue hold its lock, so closing it frees it at once.
Calls on a tailer hold the tailer's lock, for the same reason. Appenders are
called without a lock (writing is the hottest path): closing one shuts it,
which makes the core refuse later calls and wait for those in progress; its
memory goes with its Python handle, as another thread may still hold it.
"""

from tape._native.appender import AppenderHandle
from tape._native.core import (
    BACKWARD,
    FORWARD,
    INDEX_MAX,
    NAME_MAX,
    NAMED_MAX,
    PARAMS_MAX,
    ROLL_CYCLES,
    RollCycle,
    check,
)
from tape._native.group import ConsumerHandle, GroupHandle, GroupInfo, Settings, Slot
from tape._native.queue import QueueHandle, QueueInfo
from tape._native.tailer import BATCH_SLOTS, TailerHandle

__all__ = [
    "AppenderHandle",
    "ConsumerHandle",
    "GroupHandle",
    "GroupInfo",
    "Settings",
    "Slot",
    "BACKWARD",
    "BATCH_SLOTS",
    "FORWARD",
    "INDEX_MAX",
    "NAME_MAX",
    "NAMED_MAX",
    "PARAMS_MAX",
    "QueueHandle",
    "QueueInfo",
    "ROLL_CYCLES",
    "RollCycle",
    "TailerHandle",
    "check",
]
