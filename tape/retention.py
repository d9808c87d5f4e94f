"""Retention: which whole cycle files may go, for Queue.purge and retention=.

A cycle goes when any rule given picks it (keep the last N cycles; drop cycles
that ended more than `older_than` ago; keep at most `max_bytes` of entries,
dropping the oldest first), unless it is the newest cycle file, the newest
cycle holding entries, or (respect_tailers=True) a named tailer has not read
all of it, or it holds an entry a consumer group has not finished. With
`archive` (a directory) each cycle file goes there, compressed (tape.archive),
before it is removed. Queue._purge carries each live key's newest entry out of
a cycle (appends it again) before the cycle goes.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from tape._time import duration_ns
from tape.errors import ArgumentError, ArgumentTypeError

KEYWORDS = frozenset({"keep_cycles", "older_than", "max_bytes", "respect_tailers", "archive"})


class _Cycle(Protocol):
    """What the policy needs to know of a cycle (tape.CycleInfo has it)."""

    @property
    def cycle(self) -> int: ...

    @property
    def entries(self) -> int: ...

    @property
    def bytes(self) -> int: ...


@dataclass(frozen=True)
class Policy:
    """A checked set of retention rules; None leaves a rule out."""

    keep_cycles: int | None = None
    older_than_ns: int | None = None
    max_bytes: int | None = None
    respect_tailers: bool = False
    archive: str | None = None

    @classmethod
    def parse(cls, options: dict[str, Any]) -> Policy:
        """A policy from purge()'s keywords (or a retention= dict), checked."""
        unknown = sorted(set(options) - KEYWORDS)
        if unknown:
            raise ArgumentTypeError(f"unexpected retention keyword {unknown[0]!r}")
        keep = _count(options.get("keep_cycles"), "keep_cycles")
        size = _count(options.get("max_bytes"), "max_bytes")
        older = options.get("older_than")
        older_ns = None if older is None else duration_ns(older, "older_than")
        respect = options.get("respect_tailers", False)
        if not isinstance(respect, bool):
            raise ArgumentTypeError("respect_tailers must be a bool")
        return cls(keep, older_ns, size, respect, _directory(options.get("archive")))

    def select(
        self,
        cycles: Sequence[_Cycle],
        cycle_end_ns: Callable[[int], int],
        now_ns: int,
        tailer_floor: int | None,
        group_floor: int | None = None,
    ) -> list[int]:
        """The cycles to remove, oldest first.

        `cycles` are oldest first; `cycle_end_ns(c)` is when cycle c ends;
        `tailer_floor` is the oldest cycle a named tailer still needs (None:
        none, or respect_tailers is off); `group_floor` the oldest cycle
        holding an entry a consumer group has not finished (None: none),
        kept whatever the rules say.
        """
        if not cycles:
            return []
        newest_full = next((c.cycle for c in reversed(cycles) if c.entries), None)
        protected = {cycles[-1].cycle} | ({newest_full} if newest_full is not None else set())
        doomed: set[int] = set()
        if self.keep_cycles is not None:
            cut = len(cycles) - self.keep_cycles
            doomed.update(c.cycle for c in cycles[: max(cut, 0)])
        if self.older_than_ns is not None:
            limit = now_ns - self.older_than_ns
            doomed.update(c.cycle for c in cycles if cycle_end_ns(c.cycle) <= limit)
        if self.max_bytes is not None:
            total = sum(c.bytes for c in cycles)
            for c in cycles:
                if total <= self.max_bytes or c.cycle in protected:
                    break
                doomed.add(c.cycle)
                total -= c.bytes
        if self.respect_tailers and tailer_floor is not None:
            doomed = {c for c in doomed if c < tailer_floor}
        if group_floor is not None:
            doomed = {c for c in doomed if c < group_floor}
        return sorted(doomed - protected)


def _directory(value: Any) -> str | None:
    """The archive option: a directory's path as a str, or None."""
    if value is None:
        return None
    if not isinstance(value, (str, os.PathLike)):
        raise ArgumentTypeError(f"archive must be a directory's path, not {type(value).__name__}")
    path = os.fsdecode(value)
    if not path or "\0" in path:
        raise ArgumentError(f"archive must be a directory's path, not {path!r}")
    return path


def _count(value: Any, what: str) -> int | None:
    """A non-negative int option, or None."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ArgumentTypeError(f"{what} must be an int, not {type(value).__name__}")
    if value < 0:
        raise ArgumentError(f"{what} must not be negative")
    return value
