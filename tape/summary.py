"""What `tape info` and `tape verify` print for people: a queue and a verify report as tables.

Sizes are in binary units (368 B, 1.5 KiB), times in ISO 8601 UTC.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import tape
from tape._time import iso_time
from tape.window import entries_from

__all__ = ["size_text", "info_text", "verify_text", "cycle_path"]


def size_text(n: int) -> str:
    """`n` bytes for people: 368 B, 1.5 KiB, 48.8 MiB."""
    if n < 1024:
        return f"{n} B"
    amount = float(n)
    for unit in ("KiB", "MiB", "GiB"):
        amount /= 1024
        if amount < 1024:
            break
    return f"{amount:.1f} {unit}"


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
    """Rows as lines of left-aligned columns."""
    widths = [max(len(r[k]) for r in rows) for k in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]


def _on_disk(path: str) -> int:
    """Bytes the files of the queue at `path` take on disk: their allocated blocks, as du counts."""
    total = 0
    with os.scandir(path) as files:
        for f in files:
            try:
                total += f.stat(follow_symlinks=False).st_blocks * 512
            except FileNotFoundError:  # removed since it was listed (a purge)
                pass
    return total


def _cycle_times(q: tape.Queue) -> dict[int, tuple[int, int]]:
    """cycle -> timestamps of its first and last entries (damaged cycles are left out); `q` is raw."""
    times = {}
    with q.tailer() as t:
        for c in q.cycles():
            if c.first_index is None or c.last_index is None:
                continue
            try:
                first = t.to_index(c.first_index) and t.read_entry()
                last = t.to_index(c.last_index) and t.read_entry()
            except tape.CorruptionError:
                continue
            if first and last:
                times[c.cycle] = (first.timestamp, last.timestamp)
    return times


def info_text(q: tape.Queue, path: str) -> str:
    """tape info's summary of the queue `q` (open raw) at `path`: settings, cycle files, named tailers."""
    d = q.describe()
    times = _cycle_times(q)
    named = d["named_tailers"]
    cycles = q.cycles() if named else []
    behind = {name: entries_from(q, cycles, nxt) for name, nxt in named.items()}
    return "\n".join(_settings(d, times, _on_disk(path)) + _cycles(d["cycles"], times) + _tailers(named, behind))


def _settings(d: dict[str, Any], times: dict[int, tuple[int, int]], on_disk: int) -> list[str]:
    """The queue's settings and totals, from Queue.describe(), the cycles' times and the bytes on disk."""
    cycles = d["cycles"]
    first_ns = min((a for a, _ in times.values()), default=None)
    last_ns = max((b for _, b in times.values()), default=None)
    rows = [
        ("path", d["path"]),
        ("format", f"version {d['format_version']}"),
        ("roll cycle", d["roll_cycle"]),
        ("codec", d["codec"]),
        ("created", d["created"]),
        ("entries", str(d["entries"])),
        ("bytes", f"{size_text(d['bytes'])} of entries"),
        ("on disk", size_text(on_disk)),
        ("first index", str(d["first_index"])),
        ("last index", str(d["last_index"])),
        ("first entry", "-" if first_ns is None else iso_time(first_ns)),
        ("last entry", "-" if last_ns is None else iso_time(last_ns)),
        ("cycle files", str(len(cycles))),
    ]
    damaged = sum(c["damaged"] for c in cycles)
    if damaged:
        rows.append(("damaged", f"{damaged} cycle file{'s' if damaged > 1 else ''} (counts from headers; see tape verify)"))
    return _table(rows)


def _cycles(cycles: list[dict[str, Any]], times: dict[int, tuple[int, int]]) -> list[str]:
    """A row per cycle file of Queue.describe(), indented; none when there is none."""
    if not cycles:
        return []
    table = [("cycle", "file", "entries", "bytes", "first index", "last index", "first time", "last time")]
    for c in cycles:
        span = times.get(c["cycle"])
        table.append(
            (
                str(c["cycle"]),
                c["path"].rsplit("/", 1)[-1] + (" (damaged)" if c["damaged"] else ""),
                str(c["entries"]),
                size_text(c["bytes"]),
                "-" if c["first_index"] is None else str(c["first_index"]),
                "-" if c["last_index"] is None else str(c["last_index"]),
                "-" if span is None else iso_time(span[0]),
                "-" if span is None else iso_time(span[1]),
            )
        )
    return ["  " + line for line in _table(table)]


def _tailers(named: dict[str, int | None], behind: dict[str, int]) -> list[str]:
    """How many named tailers; then, indented, each one's next index and how many entries it has not read."""
    lines = _table([("named tailers", str(len(named)))])
    if named:
        table = [("name", "next index", "behind")]
        for name, nxt in sorted(named.items()):
            table.append((name, "start" if nxt is None else str(nxt), str(behind[name])))
        lines += ["  " + line for line in _table(table)]
    return lines


def cycle_path(q: tape.Queue, cycle: int | None) -> str | None:
    """The file of `cycle` (the cycle's number when it cannot be listed), or None."""
    if cycle is None:
        return None
    try:
        return next((c.path for c in q.cycles() if c.cycle == cycle), f"cycle {cycle}")
    except tape.CorruptionError:
        return f"cycle {cycle}"


def verify_text(r: tape.VerifyReport, where: str | None) -> str:
    """tape verify's report for people; `where` names the damaged file (see cycle_path)."""
    rows = [
        ("status", "ok" if r.ok else "damaged"),
        ("cycle files", str(r.cycles)),
        ("entries", f"{r.entries} intact"),
        ("bytes", size_text(r.bytes)),
        ("last good index", str(r.last_good_index)),
        ("problems", str(r.problems)),
        ("skipped", str(r.skipped)),
        ("unsealed cycles", f"{r.unsealed} (harmless)"),
        ("abandoned entries", f"{r.abandoned} (harmless)"),
    ]
    if not r.ok:
        rows.append(("first problem", f"{where} at offset {r.bad_offset}: {r.message}"))
    return "\n".join(_table(rows))
