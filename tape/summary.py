"""What the `tape` command prints for people: a queue and a verify report as tables, progress bars.

Sizes are in binary units (368 B, 1.5 KiB), times in ISO 8601 UTC. Lines fit
WIDTH columns: a value too long for its line (a long path) goes on in the next.

Two sizes have different names: a cycle file's "space used" (CycleInfo.bytes:
its entries with headers and padding, and its index arrays) and verify's
"entry bytes" (VerifyReport.bytes: the intact data entries only).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import IO, Any

import tape
from tape._time import iso_time
from tape.window import entries_from

__all__ = [
    "WIDTH", "size_text", "info_text", "verify_text", "cycle_path", "progress_text", "ProgressBar",
    "damaged_tail", "check_tail",
]

WIDTH = 80  # columns a line of text fits in
SHOWN = 3  # cycle files listed at each end of a long list


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


def _wrap(text: str, room: int) -> list[str]:
    """`text` in pieces of at most `room` characters, cut at a space near the end, else after a slash
    (a space at a cut is dropped), a word only when it alone is longer than the line."""
    pieces = []
    while len(text) > room:
        space = text.rfind(" ", 0, room + 1)
        slash = text.rfind("/", 0, room) + 1
        if space > room // 2:
            pieces.append(text[:space])
            text = text[space + 1:]
            continue
        cut = slash if slash > room // 2 else room
        pieces.append(text[:cut])
        text = text[cut:]
    return [*pieces, text]


def _table(rows: Sequence[Sequence[str]], indent: str = "", right: Sequence[int] = ()) -> list[str]:
    """Rows as lines of columns (left-aligned, those in `right` right-aligned) of at most WIDTH
    characters: a last cell too long for its line goes on in the next lines, under itself."""
    widths = [max(len(r[k]) for r in rows) for k in range(len(rows[0]) - 1)]
    lines = []
    for r in rows:
        cells = [cell.rjust(w) if k in right else cell.ljust(w) for k, (cell, w) in enumerate(zip(r, widths))]
        prefix = indent + "".join(cell + "  " for cell in cells)
        room = WIDTH - len(prefix)
        if room < 20:  # no room beside the other cells: the last one goes below them
            lines.append(prefix.rstrip())
            prefix = indent + "    "
            room = WIDTH - len(prefix)
        pieces = _wrap(r[-1], room)
        lines.append((prefix + pieces[0]).rstrip())
        lines += [" " * len(prefix) + piece for piece in pieces[1:]]
    return [line if len(line) <= WIDTH else line[:WIDTH] for line in lines]


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


def damaged_tail(q: tape.Queue) -> tuple[tape.CycleInfo, tape.Entry | None] | None:
    """The newest cycle file when entries in it are damaged (a torn tail), and its last intact entry (or None)."""
    cycles = q.cycles()
    if not cycles or not cycles[-1].damaged:
        return None
    with q.tailer() as t:
        t.direction = "backward"
        t.to_end()  # at the last intact entry
        last = t.read_entry()
    if last is not None and tape.split_index(q, last.index)[0] != cycles[-1].cycle:
        last = None
    return cycles[-1], last


def check_tail(q: tape.Queue) -> None:
    """Raise CorruptionError, saying what to run, when the newest cycle file holds damaged entries."""
    torn = damaged_tail(q)
    if torn is not None:
        cycle, last = torn
        after = "its first entry" if last is None else f"index {last.index}"
        raise tape.CorruptionError(
            f"{cycle.path}: damaged entries after {after}; run `tape verify` to see the damage,"
            " `tape repair` to clear a damaged tail"
        )


def _cycle_times(q: tape.Queue) -> dict[int, tuple[int, int]]:
    """cycle -> timestamps of its first and last entries (damaged cycles are left out, but for the
    last intact entry of a torn newest one); `q` is raw."""
    times = {}
    torn = damaged_tail(q)
    with q.tailer() as t:
        for c in q.cycles():
            if c.first_index is None or c.last_index is None:
                continue
            last_index = c.last_index
            if torn is not None and c.cycle == torn[0].cycle:
                if torn[1] is None:
                    continue
                last_index = torn[1].index
            try:
                first = t.to_index(c.first_index) and t.read_entry()
                last = t.to_index(last_index) and t.read_entry()
            except tape.CorruptionError:
                continue
            if first and last:
                times[c.cycle] = (first.timestamp, last.timestamp)
    return times


def info_text(q: tape.Queue, path: str, *, all_cycles: bool = False) -> str:
    """tape info's summary of the queue `q` (open raw) at `path`: settings, cycle files, named tailers.

    Of more than 2 * SHOWN + 1 cycle files only the first and last SHOWN are
    listed, unless `all_cycles`.
    """
    d = q.describe()
    torn = damaged_tail(q)
    if torn is not None:  # the counts are from entry headers: show what is intact
        cycle, last = torn
        intact = 0 if last is None else tape.split_index(q, last.index)[1] + 1
        d["entries"] -= cycle.entries - intact
        d["last_index"] = f"{last.index if last else '-'} (the last intact; damaged entries follow)"
    times = _cycle_times(q)
    named = d["named_tailers"]
    cycles = q.cycles() if named else []
    behind = {name: entries_from(q, cycles, nxt) for name, nxt in named.items()}
    listed = _cycles(d["cycles"], all_cycles)
    return "\n".join(_settings(d, times, _on_disk(path)) + listed + _tailers(named, behind))


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
        ("space used", f"{size_text(d['bytes'])} of the cycle files (entries, index)"),
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


def _cycles(cycles: list[dict[str, Any]], all_cycles: bool) -> list[str]:
    """A row per cycle file of Queue.describe(), indented (only the first and last SHOWN of
    a long list, unless `all_cycles`); none when there is none."""
    if not cycles:
        return []
    table = [("file", "entries", "space used", "first index", "last index")]
    for c in cycles:
        table.append(
            (
                c["path"].rsplit("/", 1)[-1] + (" (damaged)" if c["damaged"] else ""),
                str(c["entries"]),
                size_text(c["bytes"]),
                "-" if c["first_index"] is None else str(c["first_index"]),
                "-" if c["last_index"] is None else str(c["last_index"]),
            )
        )
    hidden = len(cycles) - 2 * SHOWN
    if all_cycles or hidden <= 1:
        return _table(table, "  ", right=(1, 2))
    lines = _table(table[: 1 + SHOWN] + table[-SHOWN:], "  ", right=(1, 2))
    more = f"  ... {hidden} more cycle files (tape info --cycles lists them all)"
    return [*lines[: 1 + SHOWN], more, *lines[1 + SHOWN :]]


def _tailers(named: dict[str, int | None], behind: dict[str, int]) -> list[str]:
    """How many named tailers; then, indented, each one's next index and how many entries it has not read."""
    lines = _table([("named tailers", str(len(named)))])
    if named:
        table = [("name", "next index", "behind")]
        for name, nxt in sorted(named.items()):
            table.append((name, "start" if nxt is None else str(nxt), str(behind[name])))
        lines += _table(table, "  ")
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
        ("entry bytes", f"{size_text(r.bytes)} (the intact entries: headers, payloads)"),
        ("last good index", str(r.last_good_index)),
        ("problems", str(r.problems)),
        ("skipped", str(r.skipped)),
        ("unsealed cycles", f"{r.unsealed} (harmless)"),
        ("abandoned entries", f"{r.abandoned} (harmless)"),
    ]
    if not r.ok:
        place = "" if r.bad_cycle is None else f"{where} at offset {r.bad_offset}: "  # None: tape.keys
        rows.append(("first problem", f"{place}{r.message}"))
    return "\n".join(_table(rows))


# -- progress bars ------------------------------------------------------------------------

_REDRAW = 0.1  # seconds between redraws of a progress bar


def _amount(n: int, unit: str) -> str:
    """`n` of `unit` for people: sizes for "bytes", else a count (12,345 entries)."""
    return size_text(n) if unit == "bytes" else f"{n:,} {unit}"


def progress_text(label: str, done: int, total: int | None, unit: str, seconds: float) -> str:
    """A progress bar's line, less than WIDTH characters: `done` of `total` `unit` (bytes,
    entries, files) after `seconds`; with `total` None, how much so far (12.3 MiB read)."""
    clock = time.strftime("%H:%M:%S", time.gmtime(seconds))
    if total is None:
        return f"{label}  {_amount(done, unit)}{' read' if unit == 'bytes' else ''}  {clock}"
    share = min(done / total, 1.0) if total else 1.0
    tail = f"  {share:4.0%}  {_amount(done, unit)} of {_amount(total, unit)}  {clock}"
    room = max(WIDTH - 1 - len(label) - len(tail) - 4, 0)
    filled = int(room * share)
    return f"{label}  [{'#' * filled}{'-' * (room - filled)}]{tail}"


class ProgressBar:
    """A progress line on the terminal `out`, redrawn in place at most every _REDRAW seconds;
    finish() draws it one last time and ends the line, so that what follows starts on its own."""

    def __init__(self, out: IO[str], label: str, total: int | None, unit: str) -> None:
        self.out, self.label, self.total, self.unit = out, label, total, unit
        self.done = 0
        self._start = time.monotonic()
        self._due = self._start
        self.advance(0)

    def advance(self, n: int) -> None:
        """Count `n` more steps; redraw when due."""
        self.done += n
        if time.monotonic() >= self._due:
            self._draw()
            self._due = time.monotonic() + _REDRAW

    def _draw(self) -> None:
        text = progress_text(self.label, self.done, self.total, self.unit, time.monotonic() - self._start)
        self.out.write(f"\r{text}\x1b[K")  # then clear what a longer line left
        self.out.flush()

    def finish(self) -> None:
        """Draw the final state and end the line."""
        self._draw()
        self.out.write("\n")
        self.out.flush()
