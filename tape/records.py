"""The plain records the log hands out: Entry, CycleInfo and VerifyReport."""

from __future__ import annotations

from typing import Any, NamedTuple

__all__ = ["Entry", "CycleInfo", "VerifyReport"]


class Entry(NamedTuple):
    """One entry: its index, its timestamp (ns since the epoch), its value, and its attributes.

    key is the entry's key (a str when written as one, else bytes), None
    without; not_before the time (ns since the epoch) before which consumer
    groups do not hand it out, None without; origin the (index, timestamp in
    ns) it had in the queue it was replicated from, None without; tombstone
    True when the entry is a delete of its key (Appender.delete).
    """

    index: int  # type: ignore[assignment]  # the field shadows tuple.index(), as SPEC.md names it
    timestamp: int
    value: Any
    key: str | bytes | None = None
    not_before: int | None = None
    origin: tuple[int, int] | None = None
    tombstone: bool = False


class CycleInfo(NamedTuple):
    """One cycle file.

    `bytes` is the space used in the file: from the offset of its first entry
    to its end of data, so the data entries (each a 16-byte header, the
    payload and zero padding to a multiple of 8) and the metadata entries
    between them, which are the index arrays (8 bytes a slot, the roll
    cycle's index count of slots each; docs/FORMAT.md). It is neither the
    file's size (files are allocated ahead) nor the payloads' sum. The total
    of Queue.verify(progress=) and what purge(max_bytes=) counts; `tape info`
    calls it "space used".
    """

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

    bytes is the sum of the sizes of the intact data entries counted in
    entries: each one's 16-byte header, payload and zero padding to a
    multiple of 8; not the index arrays nor anything damaged, so less than the
    sum of CycleInfo.bytes. `tape verify` calls it "entry bytes".
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
