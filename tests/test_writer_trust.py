"""A writer trusts no on-disk hint that disagrees with the data (issue 16 item 2, issue 17 items 2 and 5).

Each test writes the bytes an attacker (or a torn write) would leave, at the
offsets of docs/FORMAT.md, then checks the same four things: verify() reports
the state; the writer refuses it (CorruptionError naming `tape verify` and
`tape repair`) or repairs it safely, and never returns an index used before or
one that readers going forward cannot reach; repair() clears it; and then
writes go on, every index returned is found by to_index, and a reader going
forward from the start gets every entry acknowledged.
"""

from __future__ import annotations

import multiprocessing
import os
import struct
import time
from pathlib import Path
from typing import Any

import pytest

import crash_support as cs
import tape

HINT_GEN, HINT_POS, HINT_SEQ, LAST_TS = 4104, 4120, 4128, 4136  # tape.meta page 1


def _cycle_file(path: Path) -> Path:
    files = cs.cycle_files(path)
    assert files, "no cycle file"
    return files[-1]


def _read(f: Path, off: int, fmt: str) -> int:
    with open(f, "rb") as fh:
        fh.seek(off)
        value: int = struct.unpack(fmt, fh.read(struct.calcsize(fmt)))[0]
        return value


def _write(f: Path, off: int, data: bytes) -> None:
    with open(f, "r+b") as fh:
        fh.seek(off)
        fh.write(data)


class Layout:
    """Where things are in a cycle file, read through its index (docs/FORMAT.md)."""

    def __init__(self, f: Path, count_log2: int, spacing_log2: int) -> None:
        self.f = f
        self.n = 1 << count_log2
        self.s = 1 << spacing_log2
        self.arr0 = _read(f, 4096, "<Q")  # index array 0
        assert self.arr0

    def slot_off(self, block: int) -> int:
        """File offset of the index slot of block `block` (in array 0)."""
        assert block < self.n
        return self.arr0 + cs.ENTRY_HDR + 8 * block

    def pos(self, seq: int) -> int:
        """File offset of entry `seq`, walking from its block's indexed entry."""
        p = _read(self.f, self.slot_off(seq // self.s), "<Q")
        for _ in range(seq % self.s):
            p += cs.entry_size(_read(self.f, p, "<I"))
        return p


def _fill(path: Path, roll: str, n: int) -> list[int]:
    with tape.Queue(path, roll_cycle=roll, codec="raw") as q:
        a = q.appender()
        return [a.write(b"v%d" % i) for i in range(n)]


def _refuses(path: Path, roll: str) -> None:
    """A new writer refuses to append, and says what to do."""
    with tape.Queue(path, roll_cycle=roll, codec="raw") as q:
        before = q.count()
        with pytest.raises(tape.CorruptionError, match="tape verify.*tape repair"):
            q.appender().write(b"refused")
        assert q.count() == before


def _repair_and_go_on(path: Path, roll: str, acknowledged: list[int], more: int = 70) -> None:
    """repair() clears what verify reported; writes go on where readers reach them."""
    with tape.Queue(path, roll_cycle=roll, codec="raw") as q:
        assert not q.verify().ok
        assert q.repair() > 0
        report = q.verify()
        assert report.ok, report.message
        assert q.repair() == 0  # sound now
        kept = {e.index: e.value for e in q.tailer().entries()}
        assert set(acknowledged) <= set(kept)  # repair took nothing a reader could reach
        a = q.appender()
        new = [a.write(b"after%d" % i) for i in range(more)]
        assert len(set(new)) == more and min(new) > max(kept, default=-1)
        # no index handed out twice: the new ones are not among those still held
        assert not set(new) & set(kept)
        t = q.tailer()
        got = {e.index: e.value for e in t.entries()}
        for k, i in enumerate(new):
            assert got[i] == b"after%d" % k
            assert t.to_index(i)
            assert t.read() == b"after%d" % k
        # a named tailer at the end goes on to what comes next
        nt = q.tailer("n", start="end")
        last = a.write(b"last")
        assert nt.read_entry().index == last  # type: ignore[union-attr]
        assert q.tailer(start="end").read() is None
        assert q.verify().ok
        for i in acknowledged:
            assert t.to_index(i) and t.read() == kept[i]


# -- issue 16.2: a stray index slot past the end of data --------------------------------------


def test_a_stray_slot_past_the_end_is_reported_refused_and_repaired(tmp_path: Path) -> None:
    path = tmp_path / "q"
    acked = _fill(path, "daily", 200)
    f = _cycle_file(path)
    lay = Layout(f, 13, 6)
    size = f.stat().st_size
    # one 8-byte word, far along the index array: a slot for seq 4096 * 64
    _write(f, lay.slot_off(4096), struct.pack("<Q", lay.pos(100)))
    with tape.Queue(path, codec="raw") as q:
        report = q.verify()
        assert not report.ok and "index slot past the end" in report.message
    _refuses(path, "daily")
    assert f.stat().st_size == size
    _repair_and_go_on(path, "daily", acked)


@pytest.mark.parametrize("where", ["first", "last"])
def test_a_stray_slot_in_the_last_probed_places_is_refused(tmp_path: Path, where: str) -> None:
    path = tmp_path / "q"
    acked = _fill(path, "daily", 200)
    f = _cycle_file(path)
    lay = Layout(f, 13, 6)
    block = 4 if where == "first" else lay.n - 1  # just past the end, and the array's last
    _write(f, lay.slot_off(block), struct.pack("<Q", 12345 * 8))
    with tape.Queue(path, codec="raw") as q:
        assert "index slot past the end" in q.verify().message
    _refuses(path, "daily")
    _repair_and_go_on(path, "daily", acked)


def test_a_slot_naming_the_end_itself_is_sound(tmp_path: Path) -> None:
    """What a writer killed between its slot and its header leaves (once cleared): nothing to refuse."""
    path = tmp_path / "q"
    _fill(path, "daily", 192)
    f = _cycle_file(path)
    lay = Layout(f, 13, 6)
    end = lay.pos(191) + cs.entry_size(_read(f, lay.pos(191), "<I"))
    _write(f, lay.slot_off(3), struct.pack("<Q", end))
    with tape.Queue(path, codec="raw") as q:
        assert q.verify().ok
        i = q.appender().write(b"x")
        assert tape.split_index(q, i)[1] == 192
        t = q.tailer()
        assert t.to_index(i) and t.read() == b"x"


@pytest.mark.parametrize("k", [1, 5000])
def test_a_stray_index_array_past_the_end_is_refused(tmp_path: Path, k: int) -> None:
    path = tmp_path / "q"
    acked = _fill(path, "daily", 200)
    f = _cycle_file(path)
    lay = Layout(f, 13, 6)
    _write(f, 4096 + 8 * k, struct.pack("<Q", lay.arr0))  # index2index[k] names array 0
    with tape.Queue(path, codec="raw") as q:
        assert "index slot past the end" in q.verify().message
    _refuses(path, "daily")
    _repair_and_go_on(path, "daily", acked)


# -- issue 16.2: a zeroed header, an end-of-file marker before the last indexed entry -------


# 0xFBE20D5C: "not complete" with a length past the file's end, which no dead
# writer's unfinished entry has (the damage campaign's reused index, seed 1).
@pytest.mark.parametrize("word", [0, 0xC0000000, 0xFBE20D5C])
@pytest.mark.parametrize("seq", [16, 17, 14])
def test_a_broken_header_before_the_last_entries_is_refused(tmp_path: Path, word: int, seq: int) -> None:
    path = tmp_path / "q"
    clock = [1_800_000_000_000_000_000]
    with tape.Queue(path, roll_cycle="test_secondly", codec="raw", clock=lambda: clock[0]) as q:
        a = q.appender()
        acked = [a.write(b"v%d" % i) for i in range(20)]
    f = _cycle_file(path)
    lay = Layout(f, 5, 2)
    _write(f, lay.pos(seq), struct.pack("<I", word))
    with tape.Queue(path, codec="raw") as q:
        assert not q.verify().ok
        forward = [e.index for e in _entries_until_damage(q)]
        assert forward == acked[:seq]
        with pytest.raises(tape.CorruptionError, match="tape verify"):
            with tape.Queue(path, codec="raw", clock=lambda: clock[0]) as q2:
                q2.appender().write(b"refused")
    with tape.Queue(path, codec="raw", clock=lambda: clock[0]) as q:
        assert q.repair() > 0
        assert q.verify().ok
        a = q.appender()
        i = a.write(b"new")
        assert i not in acked[:seq]
        t = q.tailer()
        assert [e.index for e in t.entries()][-1] == i
        assert t.to_index(i) and t.read() == b"new"


def _entries_until_damage(q: tape.Queue) -> list[tape.Entry]:
    """Read forward from the start until the end or the damage (reported as CorruptionError)."""
    out: list[tape.Entry] = []
    t = q.tailer()
    try:
        while (e := t.read_entry()) is not None:
            out.append(e)
    except tape.CorruptionError:
        pass
    return out


# -- issue 16.2: tape.meta's newest timestamp far ahead -----------------------------------------


@pytest.mark.parametrize("ts", [2**62, 2**63 - 1, 4_102_444_800 * 10**9])
def test_a_newest_timestamp_far_ahead_is_not_believed(tmp_path: Path, ts: int) -> None:
    path = tmp_path / "q"
    acked = _fill(path, "daily", 10)
    _write(path / "tape.meta", LAST_TS, struct.pack("<q", ts))
    with tape.Queue(path, codec="raw") as q:
        report = q.verify()
        assert not report.ok and "newest timestamp" in report.message
    with tape.Queue(path, codec="raw") as q:
        a = q.appender()
        i = a.write(b"now")
        e = q.tailer(start=i).read_entry()
        assert e is not None and e.value == b"now"
        assert tape.split_index(q, i) == (tape.split_index(q, acked[-1])[0], 10)
        assert abs(e.timestamp - time.time_ns()) < 60 * 10**9
        assert len(list(path.glob("*.tape"))) == 1
        assert q.verify().ok  # the writer brought it back
    # and repair() does too, without a writer
    _write(path / "tape.meta", LAST_TS, struct.pack("<q", ts))
    with tape.Queue(path, codec="raw") as q:
        assert q.repair() > 0
        assert q.verify().ok
        t = q.tailer()
        t.to_end()
        t.direction = "backward"
        newest = t.read_entry()
        assert newest is not None and _read(path / "tape.meta", LAST_TS, "<q") == newest.timestamp


def test_a_newest_timestamp_ahead_of_the_data_but_not_of_the_clock_is_harmless(tmp_path: Path) -> None:
    """What a power cut under sync="interval" leaves: tape.meta synced after entries that were lost."""
    path = tmp_path / "q"
    written = time.time_ns() - 60 * 10**9  # a minute ago
    with tape.Queue(path, codec="raw", clock=lambda: written) as q:
        q.appender().write_many([b"v"] * 10)
    ahead = written + 10**9  # the next second's entries were lost; tape.meta was not
    _write(path / "tape.meta", LAST_TS, struct.pack("<q", ahead))
    with tape.Queue(path, codec="raw") as q:
        assert q.verify().ok


def test_a_newest_timestamp_far_ahead_under_a_live_writer_is_not_believed(tmp_path: Path) -> None:
    path = tmp_path / "q"
    with tape.Queue(path, codec="raw") as q:
        a = q.appender()
        first = a.write(b"a")
        _write(path / "tape.meta", LAST_TS, struct.pack("<q", 2**62))
        second = a.write(b"b")
        assert tape.split_index(q, second) == (tape.split_index(q, first)[0], 1)
        assert len(list(path.glob("*.tape"))) == 1
        assert q.verify().ok


# -- issue 16.2: the cycle file removed under a writer ------------------------------------------


def test_a_removed_file_stops_its_writer_within_milliseconds(tmp_path: Path) -> None:
    path = tmp_path / "q"
    with tape.Queue(path, codec="raw") as q:
        a = q.appender()
        acked = [a.write(b"v%d" % i) for i in range(5)]
        os.unlink(_cycle_file(path))
        time.sleep(0.05)
        with pytest.raises(tape.CorruptionError, match="tape repair"):
            a.write(b"lost")
        with pytest.raises(tape.CorruptionError):
            a.write(b"lost")  # from then on
    with tape.Queue(path, codec="raw") as q:
        report = q.verify()
        assert not report.ok and "missing" in report.message
        with pytest.raises(tape.CorruptionError, match="tape verify"):
            q.appender().write(b"would reuse an index")
        assert q.repair() > 0
        assert q.verify().ok
        i = q.appender().write(b"again")
        t = q.tailer()
        assert t.to_index(i) and t.read() == b"again"
        del acked


def _remove_files(path: str, go: Any) -> None:
    go.wait()
    for f in Path(path).glob("*.tape"):
        os.unlink(f)


def test_a_file_removed_by_another_process_is_noticed_at_sync(tmp_path: Path) -> None:
    path = tmp_path / "q"
    with tape.Queue(path, codec="raw") as q:
        a = q.appender()
        a.write(b"x")
        ctx = multiprocessing.get_context("spawn")
        go = ctx.Event()
        p = ctx.Process(target=_remove_files, args=(str(path), go))
        p.start()
        go.set()
        p.join(30)
        assert p.exitcode == 0
        with pytest.raises(tape.CorruptionError):
            a.write(b"y")
            a.sync()


# -- the hint of a live writer in another process -------------------------------------------


def _write_some(path: str, n: int, out: Any) -> None:
    with tape.Queue(path, codec="raw") as q:
        a = q.appender()
        out.put([a.write(b"b%d" % i) for i in range(n)])


def test_a_hint_that_does_not_follow_from_the_data_is_not_believed(tmp_path: Path) -> None:
    """Another process appends; then the hint is moved past the end: this writer finds the real end."""
    path = tmp_path / "q"
    ctx = multiprocessing.get_context("spawn")
    with tape.Queue(path, codec="raw") as q:
        a = q.appender()
        mine = [a.write(b"a%d" % i) for i in range(3)]
        out = ctx.Queue()
        p = ctx.Process(target=_write_some, args=(str(path), 5, out))
        p.start()
        theirs: list[int] = out.get(timeout=60)
        p.join(30)
        meta = path / "tape.meta"
        gen = _read(meta, HINT_GEN, "<Q")
        _write(meta, HINT_POS, struct.pack("<Q", _read(meta, HINT_POS, "<Q") + 4096))
        _write(meta, HINT_SEQ, struct.pack("<Q", _read(meta, HINT_SEQ, "<Q") + 100))
        _write(meta, HINT_GEN, struct.pack("<Q", gen + 2))
        i = a.write(b"next")
        assert i == theirs[-1] + 1
        t = q.tailer()
        assert [e.index for e in t.entries()] == mine + theirs + [i]
        assert t.to_index(i) and t.read() == b"next"
        assert q.verify().ok


# -- issue 17.2: a torn write that left only an index slot ----------------------------------


def test_a_torn_write_that_left_only_its_index_slot(tmp_path: Path) -> None:
    """sync="always", daily: of the last writes before an fdatasync, only the slot of seq 128 reached the disk."""
    path = tmp_path / "q"
    with tape.Queue(path, codec="raw", sync="always") as q:
        a = q.appender()
        acked = [a.write(b"v%d" % i) for i in range(125)]
        a.write_many([b"t%d" % i for i in range(6)])  # seq 125..130, one fdatasync
    f = _cycle_file(path)
    lay = Layout(f, 13, 6)
    start, stop, p128 = lay.pos(125), lay.pos(130) + 32, lay.pos(128)
    _write(f, start, bytes(stop - start))  # the entries lost...
    assert _read(f, lay.slot_off(2), "<Q") == p128  # ...the slot of seq 128 kept
    with tape.Queue(path, codec="raw") as q:
        report = q.verify()
        assert not report.ok and "seq 128" in report.message
        assert q.tailer().to_index(acked[-1])
    _refuses(path, "daily")
    with tape.Queue(path, codec="raw") as q:
        assert q.repair() > 0
        assert q.verify().ok
        a = q.appender()
        new = [a.write(b"n%d" % i) for i in range(10)]
        assert new[0] == acked[-1] + 1
        t = q.tailer()
        assert [e.index for e in t.entries()] == acked + new
        for i in new:
            assert t.to_index(i)
            assert q.tailer(start=i).read() is not None
        named = q.tailer("billing", start=new[3])
        assert named.read() == b"n3"


# -- issue 17.5: a forward reader at a torn tail ----------------------------------------------


def test_a_forward_reader_returns_the_intact_entries_then_reports_the_torn_one(tmp_path: Path) -> None:
    path = tmp_path / "q"
    acked = _fill(path, "daily", 10)
    f = _cycle_file(path)
    lay = Layout(f, 13, 6)
    _write(f, lay.pos(9) + 17, b"\xff")  # the last entry's payload, torn
    with tape.Queue(path, codec="raw") as q:
        t = q.tailer()
        got = []
        with pytest.raises(tape.CorruptionError):
            for e in t.entries():
                got.append(e.index)
        assert got == acked[:9]
        with pytest.raises(tape.CorruptionError):
            t.read()  # for as long as it is there
        assert not q.verify().ok
        assert q.repair() > 0
        assert t.read() is None
        assert q.tailer(start="end").read() is None


# -- issue 16 (next round): damage anywhere in the newest cycle, the checked point ----------

CHECKED = 4184  # tape.meta page 1: the checked point (cycle, offset, seq, check word)


@pytest.mark.parametrize("word", [0, 0xC0000000, 0x1C, 0x80000025])
def test_damage_far_before_the_end_is_refused(tmp_path: Path, word: int) -> None:
    """A broken header far before the last block (seq 40 of 300): readers stop there, so the writer refuses."""
    path = tmp_path / "q"
    acked = _fill(path, "daily", 300)
    f = _cycle_file(path)
    _write(f, Layout(f, 13, 6).pos(40), struct.pack("<I", word))
    with tape.Queue(path, codec="raw") as q:
        assert not q.verify().ok
        assert [e.index for e in _entries_until_damage(q)] == acked[:40]
    _refuses(path, "daily")
    _repair_and_go_on(path, "daily", acked[:40])


def test_a_sync_stores_the_checked_point_and_repair_forgets_it(tmp_path: Path) -> None:
    path = tmp_path / "q"
    with tape.Queue(path, codec="raw") as q:
        a = q.appender()
        acked = [a.write(b"v%d" % i) for i in range(100)]
        meta = path / "tape.meta"
        assert _read(meta, CHECKED + 24, "<I") == 0  # nothing synced yet
        a.sync()
        cycle, seq = tape.split_index(q, acked[-1])
        assert (_read(meta, CHECKED, "<q"), _read(meta, CHECKED + 16, "<Q")) == (cycle, 100)
        assert _read(meta, CHECKED + 24, "<I") != 0
        q.repair()
        assert _read(meta, CHECKED + 24, "<I") == 0


@pytest.mark.parametrize("field", [0, 8, 16, 24])
def test_a_damaged_checked_point_is_not_believed(tmp_path: Path, field: int) -> None:
    """A checked point that does not check out means a check of the whole newest cycle: damage is still found."""
    path = tmp_path / "q"
    with tape.Queue(path, codec="raw") as q:
        a = q.appender()
        acked = [a.write(b"v%d" % i) for i in range(300)]
        a.sync()  # the point: after entry 299
    meta, f = path / "tape.meta", _cycle_file(path)
    _write(meta, CHECKED + field, struct.pack("<I", 0x5A5A5A5A))
    with tape.Queue(path, codec="raw") as q:  # sound: appends go on
        i = q.appender().write(b"x")
        assert [e.index for e in q.tailer().entries()] == acked + [i]
    _write(meta, CHECKED + field, struct.pack("<I", 0x5A5A5A5A))
    _write(f, Layout(f, 13, 6).pos(40), struct.pack("<I", 0))
    _refuses(path, "daily")


def test_an_unfinished_entry_that_the_hint_counts_is_refused(tmp_path: Path) -> None:
    """The last entry's header with "not complete" set under a complete hint: not a dead writer's, not reused."""
    path = tmp_path / "q"
    acked = _fill(path, "daily", 100)
    f = _cycle_file(path)
    p = Layout(f, 13, 6).pos(99)
    _write(f, p, struct.pack("<I", _read(f, p, "<I") | 0x80000000))
    with tape.Queue(path, codec="raw") as q:
        report = q.verify()
        assert not report.ok and "counts as published" in report.message
    _refuses(path, "daily")
    _repair_and_go_on(path, "daily", acked[:99])


@pytest.mark.parametrize(("field", "value"), [(4160, 1 << 62), (4160, -1), (4168, -1), (4168, 1 << 63)])
def test_a_damaged_cycle_range_hides_no_entries(tmp_path: Path, field: int, value: int) -> None:
    """tape.meta's lowest or highest cycle, damaged: readers still start at the first cycle file."""
    path = tmp_path / "q"
    now = [1_800_000_000_000_000_000]
    with tape.Queue(path, roll_cycle="test_secondly", codec="raw", clock=lambda: now[0]) as q:
        a = q.appender()
        acked = [a.write(b"a%d" % i) for i in range(5)]
        now[0] += 10**9
        acked += [a.write(b"b%d" % i) for i in range(5)]
    _write(path / "tape.meta", field, struct.pack("<Q", value % (1 << 64)))
    with tape.Queue(path, codec="raw", read_only=True) as q:
        assert [e.index for e in q.tailer().entries()] == acked


def test_a_seal_written_over_the_last_entries_is_reported(tmp_path: Path) -> None:
    """An end-of-file marker over the last entry of a sealed cycle (its last block): readers raise, not skip."""
    path = tmp_path / "q"
    now = [1_800_000_000_000_000_000]
    with tape.Queue(path, roll_cycle="test_secondly", codec="raw", clock=lambda: now[0]) as q:
        a = q.appender()
        acked = [a.write(b"a%d" % i) for i in range(10)]
        now[0] += 10**9
        acked += [a.write(b"b%d" % i) for i in range(10)]
    f = cs.cycle_files(path)[0]
    _write(f, Layout(f, 5, 2).pos(9), struct.pack("<I", 0xC0000000))
    with tape.Queue(path, codec="raw") as q:
        assert [e.index for e in _entries_until_damage(q)] == acked[:9]
        with pytest.raises(tape.CorruptionError, match="tape verify"):
            list(q.tailer().entries())
        assert not q.verify().ok
