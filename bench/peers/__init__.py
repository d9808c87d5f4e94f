"""What `python -m bench.compare` measures: tape, the queues Python users pick instead, the floors.

Every subject has the same interface. `open(dir)` opens (or creates) it in a
directory and sets `write` (one item; returns once the item is acknowledged)
and `read` (the next item, None when there is none), bound straight to the
library's own calls where it allows, so that the harness adds no call layer of
its own. `write_many` writes a batch with the library's batch call if it has
one. `read_all` reads what is there in the fastest way the library offers.
`close()` closes cleanly. Peers keep their default settings.
"""

from __future__ import annotations

import importlib
import sys
import time
from collections.abc import Callable
from itertools import repeat
from pathlib import Path
from typing import Any, ClassVar

_ROOT = Path(__file__).resolve().parent.parent.parent


def import_installed_tape() -> Any:
    """Import tape from the environment (.venv-bench's release build), not from the source tree.

    `python -m bench.compare` puts the repository on sys.path, where tape/ holds
    the test build of `make venv`; the installed package is the one to measure.
    Falls back to the source tree when tape is not installed.
    """
    if "tape" in sys.modules:
        return sys.modules["tape"]
    saved = sys.path[:]
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _ROOT]
    try:
        return importlib.import_module("tape")
    except ImportError:
        sys.path[:] = saved
        return importlib.import_module("tape")
    finally:
        sys.path[:] = saved


class Subject:
    """One thing to measure; subclasses fill in the class attributes and open()."""

    key: ClassVar[str]  # short name, used on the command line and in the JSON
    name: ClassVar[str]  # as shown in tables and plots
    kind: ClassVar[str]  # "tape", "peer" or "floor"
    package: ClassVar[str | None] = None  # PyPI distribution, for its version
    how: ClassVar[str] = ""  # the calls used: write / write_many / read / read_all
    # "" when a reader in another process sees new entries; else why it does not.
    cross_process: ClassVar[str] = ""
    sqlite: ClassVar[bool] = False  # stores its items in SQLite
    reads: ClassVar[bool] = True  # False: a write-only variant (reads measured elsewhere)
    crash: ClassVar[bool] = True  # in the kill -9 test

    write: Callable[[Any], object]
    read: Callable[[], object | None]

    def values(self, payloads: list[bytes]) -> list[Any]:
        """What write takes for these payloads (the payloads themselves, unless a codec needs values)."""
        return payloads

    def payload(self, item: Any) -> bytes:
        """The payload of an item that read returned."""
        return bytes(item)

    def open(self, path: Path) -> None:
        """Open or create the queue in `path`; set `write` and `read`."""
        raise NotImplementedError

    def write_many(self, values: list[Any]) -> None:
        """Write a batch: a loop of write() unless the library has a batch call."""
        write = self.write
        for v in values:
            write(v)

    def read_all(self, deadline: float) -> int:
        """Read what is there until perf_counter() passes `deadline`; how many were read."""
        read, n, clock = self.read, 0, time.perf_counter
        while True:
            for _ in repeat(None, 256):
                if read() is None:
                    return n
                n += 1
            if clock() >= deadline:
                return n

    def close(self) -> None:
        """Close cleanly."""
        raise NotImplementedError


def subjects() -> dict[str, type[Subject]]:
    """Every subject run in this process by key: tape first, then the peers, then the Python floors."""
    from bench.peers import diskcache_deque, floors, litequeue_queue, persist_file, persist_sqlite, queuelib_fifo, tape_log

    table: dict[str, type[Subject]] = {}
    for module in (tape_log, queuelib_fifo, persist_file, persist_sqlite, diskcache_deque, litequeue_queue, floors):
        for cls in module.SUBJECTS:
            table[cls.key] = cls
    return table
