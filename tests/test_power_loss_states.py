"""File states a power cut left on LazyFS, rebuilt on a plain filesystem (issue 17, re-run).

RELIABILITY.md, "Power loss (LazyFS)", findings C and D: both were tape's bugs, fixed in
`tape_repair_tail` (csrc/append.c).

A lost index slot before intact entries. The entries of a block (and those after it)
reached the disk, but the page of the index array holding the block's slot did not: the
slot is 0. The kernel writes dirty pages back in any order, so a power cut leaves this
with sync="none" or "interval:<ms>"; a torn write sequence with any mode; on LazyFS it
came twice with sync="always" (a torn-seq fault, daily, seq 192; a live cut on a
test_secondly queue, slot of seq 1064). verify() reports "an index slot that does not
point at its entry", and when the block is one of the last two a writer refuses to
append. repair() used to find "the tail is sound", so the queue never took a write
again. Now repair() fills the slot back in (every entry is intact and may have been
acknowledged): nothing is lost, every index is found, writes go on.

A damaged tail behind a newer cycle. A writer rolls in this order: it creates the new
cycle's file (on disk before it has a name), then seals the old one, then announces the
new one. A cut in between, with sync="none" or "interval:<ms>", leaves the old cycle
unsealed, with the pages of its last entries partly lost, and the new, empty file the
newest cycle (seen on LazyFS, sync="none", test_secondly). The next writer appends to
the new cycle; verify() reports the old cycle ("non-zero bytes after the end of data")
and a reader going forward raises CorruptionError there, never reaching what was
written after the cut. repair() used to look only at the newest cycle. Now it also cuts
an unsealed, damaged cycle just before the newest after its last intact entry and seals
it: verify is ok and a reader going forward gets every intact entry.
"""

from __future__ import annotations

import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest

import crash_support as cs
import tape

T0 = 1763683200 * 10**9


def _slot_off(f: Path, count_log2: int, spacing_log2: int, seq: int) -> int:
    """File offset of the index slot of `seq` (an indexed entry), per docs/FORMAT.md."""
    n, s = 1 << count_log2, 1 << spacing_log2
    k, j = divmod(seq // s, n)
    with open(f, "rb") as fh:
        fh.seek(4096 + 8 * k)
        arr: int = struct.unpack("<Q", fh.read(8))[0]
    assert arr, "no index array %d" % k
    return arr + cs.ENTRY_HDR + 8 * j


@pytest.mark.parametrize(
    ("roll", "count_log2", "spacing_log2", "n", "lost_seq"),
    [
        ("test_secondly", 5, 2, 1069, 1064),  # the state LazyFS left (writers refuse)
        ("daily", 13, 6, 200, 192),  # the last block (writers refuse)
        ("daily", 13, 6, 200, 64),  # further back (writers write; verify stays not ok)
    ],
)
def test_a_lost_index_slot_before_intact_entries_is_filled_in_by_repair(
    tmp_path: Path, roll: str, count_log2: int, spacing_log2: int, n: int, lost_seq: int
) -> None:
    path = tmp_path / "q"
    with tape.Queue(path, roll_cycle=roll, codec="raw", clock=lambda: T0) as q:
        a = q.appender()
        acked = [a.write(b"v%d" % i) for i in range(n)]
    f = cs.cycle_files(path)[-1]
    off = _slot_off(f, count_log2, spacing_log2, lost_seq)
    with open(f, "r+b") as fh:
        fh.seek(off)
        assert struct.unpack("<Q", fh.read(8))[0] != 0
        fh.seek(off)
        fh.write(bytes(8))  # the slot's page never reached the disk
    with tape.Queue(path, roll_cycle=roll, codec="raw", clock=lambda: T0) as q:
        report = q.verify()
        assert not report.ok and "index slot" in report.message and "seq %d" % lost_seq in report.message
        assert [e.index for e in q.tailer().entries()] == acked  # nothing is lost yet
        assert q.repair_report() == (0, 1, 0, 0)  # the slot filled back in, nothing cleared
        report = q.verify()
        assert report.ok, report.message
        t = q.tailer()
        for k, i in enumerate(acked):
            assert t.to_index(i), "index %d (seq %d) not found" % (i, k)
            assert t.read() == b"v%d" % k
        a = q.appender()
        new = [a.write(b"n%d" % k) for k in range(10)]
        assert new[0] == acked[-1] + 1
        assert [e.index for e in q.tailer().entries()] == acked + new
        assert q.tailer(start=new[0]).read() == b"n0"
        assert q.verify().ok



def test_a_damaged_unsealed_cycle_before_the_newest_is_cleared_by_repair(tmp_path: Path) -> None:
    path = tmp_path / "q"
    with tape.Queue(path, roll_cycle="test_secondly", codec="raw", clock=lambda: T0) as q:
        a = q.appender()
        old = [a.write(b"v%05d" % i + b"x" * 90) for i in range(1000)]
    f = cs.cycle_files(path)[-1]
    unsealed = f.read_bytes()
    with tape.Queue(path, roll_cycle="test_secondly", codec="raw", clock=lambda: T0 + 10**9) as q:
        a = q.appender()
        new = [a.write(b"after%d" % k) for k in range(5)]  # a roll: the new file, the old one sealed
    # The old file as the cut left it: not sealed, and one page of its last entries
    # lost from an entry's start on (the kernel had written the pages after it back).
    lay = cs.layout(unsealed)
    cut = next(e.offset for e in lay.data if e.offset >= lay.end - 3 * 4096)
    kept = old[: sum(1 for e in lay.data if e.offset < cut)]
    d = bytearray(unsealed)
    page_end = (cut // 4096 + 1) * 4096
    d[cut:page_end] = bytes(page_end - cut)
    f.write_bytes(bytes(d))
    with tape.Queue(path, roll_cycle="test_secondly", codec="raw") as q:
        report = q.verify()
        assert not report.ok and "non-zero bytes after the end of data" in report.message
        with pytest.raises(tape.CorruptionError, match="tape repair"):
            q.appender().write(b"lost")  # readers going forward would never reach it
    out = subprocess.run([sys.executable, "-m", "tape", "repair", str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert re.fullmatch(
        r"cleared \S+ \S+ after the last intact entry; sealed the cycle before the newest after its last intact entry\n",
        out.stdout,
    ), out.stdout
    with tape.Queue(path, roll_cycle="test_secondly", codec="raw") as q:
        report = q.verify()
        assert report.ok, report.message
        assert [e.index for e in q.tailer().entries()] == kept + new
        more = q.appender().write(b"more")
        assert [e.index for e in q.tailer().entries()] == kept + new + [more]


def test_damage_inside_a_sealed_cycle_before_the_newest_is_left_to_verify(tmp_path: Path) -> None:
    path = tmp_path / "q"
    with tape.Queue(path, roll_cycle="test_secondly", codec="raw", clock=lambda: T0) as q:
        old = q.appender().write_many([b"v%05d" % i for i in range(100)])
    with tape.Queue(path, roll_cycle="test_secondly", codec="raw", clock=lambda: T0 + 10**9) as q:
        new = q.appender().write(b"after")  # a roll: the old file sealed
    f = cs.cycle_files(path)[0]
    lay = cs.layout(f.read_bytes())
    with open(f, "r+b") as fh:  # one payload byte of entry 50 (a bad block, not a power cut)
        fh.seek(lay.data[50].offset + 16)
        fh.write(b"\xff")
    with tape.Queue(path, roll_cycle="test_secondly", codec="raw") as q:
        assert not q.verify().ok
        assert q.repair_report() == (0, 0, 0, 0)  # nothing cut: entries after it stay reachable
        t = q.tailer()
        assert t.to_index(old - 10) and t.read() == b"v%05d" % 89
        more = q.appender().write(b"more")  # writers go on, as before
        assert q.tailer(start=new).read() == b"after" and q.tailer(start=more).read() == b"more"
