"""Tail sweep: damaged queue files are read without a crash and without a wrong value, and verify reports the damage.

A test_secondly queue of two cycles (the first sealed by the roll, the second
still open) is damaged in every way a crash, a power loss or a bad disk can
leave it: the last cycle truncated at every byte offset within its last 20
entries, every bit of one entry flipped, whole pages zeroed, garbage that
looks like entries written after the end of data. For each, a reader process
(crash_support.Inspector: a crash there fails the test and names the case)
opens the queue, reads everything forward and backward, and verifies. Every
value read must be the one written at that index, forward reading must return
a gap-free prefix, and verify() must report the damage.
"""

from __future__ import annotations

import shutil
import struct
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import crash_support as cs
from crash_support import Built, build_two_cycles
import tape
from crash_support import ENTRY_HDR

ENTRIES_PER_CYCLE = 150
WORKERS = 2
WINDOW = 4  # requests in flight per reader process


@dataclass(frozen=True)
class Case:
    """One kind of damage: what it is, the ops that do it (see role_inspect) and what reading may return."""

    kind: str
    label: str
    ops: tuple[tuple[Any, ...], ...]
    intact: int  # entries (counted from the start of the queue) that lie wholly before the damage
    boundary: bool = False  # a truncation exactly at an entry boundary
    harmless: str = ""  # why verify() may pass: the damage is indistinguishable from a sound state
    padding: bool = False  # a flip in the zero padding after the payload
    old_cycle_clean_end: bool = False  # an older cycle's data seems to end cleanly at an entry boundary


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return build_two_cycles(tmp_path_factory.mktemp("sweep"), ENTRIES_PER_CYCLE)


def _truncations(b: Built) -> Iterator[Case]:
    """The last cycle cut at every offset from its 20th-last data entry to just past its end of data."""
    lay = b.layouts[-1]
    data = lay.data
    before = len(b.indexes) - len(data)
    start = data[-20].offset
    for cut in range(start, lay.end + 5):
        intact = before + sum(1 for e in data if e.end <= cut)
        boundary = any(e.offset == cut for e in lay.entries) or cut == lay.end
        yield Case("truncate", f"cut at {cut}", (("truncate", b.names[-1], cut),), intact, boundary=boundary)


def _old_cycle_cuts(b: Built) -> Iterator[Case]:
    """The sealed first cycle cut at the start of its 100th data entry, and 5 bytes into it."""
    e = b.layouts[0].data[100]
    yield Case("truncate", f"first cycle cut at {e.offset}", (("truncate", b.names[0], e.offset),), 100,
               boundary=True, old_cycle_clean_end=True)
    yield Case("truncate", f"first cycle cut at {e.offset + 5}", (("truncate", b.names[0], e.offset + 5),), 100)


def _bit_flips(b: Built) -> Iterator[Case]:
    """Every bit of one data entry (with padding) in the middle of the last cycle."""
    lay = b.layouts[-1]
    seq = next(s for s in range(60, 100) if (16 + len(cs.payload(1, s))) % 8 and s % 4)
    e = lay.data[seq]
    before = len(b.indexes) - len(lay.data)
    padding_from = e.offset + ENTRY_HDR + len(cs.payload(1, seq))
    for off in range(e.offset, e.end):
        for bit in range(8):
            byte = b.data[-1][off] ^ (1 << bit)
            yield Case("flip", f"seq {seq}: bit {bit} of byte {off - e.offset}",
                       (("patch", b.names[-1], off, bytes([byte]).hex()),), before + seq,
                       padding=off >= padding_from)


def _zero_pages(b: Built) -> Iterator[Case]:
    """Every non-zero page of both cycle files up to the end of data, and of tape.meta."""
    before = 0
    for k, (name, data, lay) in enumerate(zip(b.names, b.data, b.layouts)):
        for page in range(0, lay.end + 4, 4096):
            chunk = data[page:page + 4096]
            if not any(chunk):
                continue
            intact = before + sum(1 for e in lay.data if e.end <= page)
            if page < lay.entries[0].offset:
                intact = 0 if page == 0 else before  # a header or the index2index array
            clean_end = k < len(b.names) - 1 and any(e.offset == page for e in lay.entries)
            yield Case("zero", f"{name} page {page // 4096}", (("patch", name, page, bytes(len(chunk)).hex()),),
                       intact, old_cycle_clean_end=clean_end)
        before += len(lay.data)
    meta = (b.path / "tape.meta").read_bytes()
    for page in range(0, len(meta), 4096):
        if any(meta[page:page + 4096]):
            harmless = "the shared state (lock, hints, cycle bounds) is rebuilt from the files" if page == 4096 else ""
            yield Case("zero", f"tape.meta page {page // 4096}", (("patch", "tape.meta", page, "00" * 4096),),
                       0 if page == 0 else len(b.indexes), harmless=harmless)


def _lookalikes(b: Built) -> Iterator[Case]:
    """Copies of real entries' bytes written just after the end of data (and after the end-of-file marker)."""
    total = len(b.indexes)
    last, first = b.layouts[-1], b.layouts[0]
    tail = last.end

    def after_end(label: str, blob: bytes, name: str = b.names[-1], at: int = tail, **kw: Any) -> Case:
        return Case("lookalike", label, (("patch", name, at, blob.hex()),), total, **kw)

    d = b.data[-1]
    e = last.data[-1]
    yield after_end("the last entry again", d[e.offset:e.end])
    yield after_end("the last 5 entries again", d[last.data[-5].offset:last.end])
    same_seq = first.data[len(last.data)] if len(first.data) > len(last.data) else first.data[-1]
    yield after_end("an entry of the other cycle", b.data[0][same_seq.offset:same_seq.end])
    meta = next(x for x in last.entries if not x.is_data)
    yield after_end("an index array entry", d[meta.offset:meta.end],
                    harmless="an index array a writer killed at index_array left looks the same")
    yield after_end("the first entry of the cycle", d[last.data[0].offset:last.data[0].end])
    torn = bytearray(d[e.offset:e.end])
    torn[20:] = bytes(len(torn) - 20)
    yield after_end("an entry whose payload never reached the disk", bytes(torn))
    nc = bytearray(d[e.offset:e.end])
    struct.pack_into("<I", nc, 0, struct.unpack_from("<I", nc)[0] | cs.H_NC)
    yield after_end("an unfinished entry (header bit 31 set)", bytes(nc),
                    harmless="what a writer killed inside an append leaves (counted as abandoned)")
    yield after_end("an unfinished entry, then more entries", bytes(nc) + d[last.data[-3].offset:last.end])
    eof = first.end + 4
    yield after_end("entries after the end-of-file marker", b.data[0][first.data[-3].offset:first.end],
                    name=b.names[0], at=eof)


def _cases(b: Built) -> list[Case]:
    return [*_truncations(b), *_old_cycle_cuts(b), *_bit_flips(b), *_zero_pages(b), *_lookalikes(b)]


def _run(b: Built, cases: list[Case], tmp: Path) -> list[tuple[Case, dict[str, Any]]]:
    """Every case through WORKERS reader processes, each on its own copy of the queue."""
    dirs = []
    for k in range(WORKERS):
        d = tmp / f"copy{k}"
        shutil.copytree(b.path, d)
        dirs.append(d)
    workers = [cs.Inspector() for _ in range(WORKERS)]
    results: list[tuple[Case, dict[str, Any]]] = []
    by_id = {id(c): c for c in cases}
    try:
        for k, case in enumerate(cases):
            w = k % WORKERS
            if len(workers[w].pending) >= WINDOW:
                req, ans = workers[w].receive()
                results.append((by_id[req["case"]], ans))
            ops = [list(o) for o in case.ops]
            append = case.kind == "lookalike"
            if append:
                ops += [["snapshot", name] for name in b.names]
            workers[w].send({"dir": str(dirs[w]), "ops": ops, "expect": str(b.expect_file), "case": id(case),
                             "append": append, "clock_ns": cs.T0_NS + cs.SECOND})
        for worker in workers:
            while worker.pending:
                req, ans = worker.receive()
                results.append((by_id[req["case"]], ans))
    finally:
        for worker in workers:
            worker.close()
    for d in dirs:  # every damage was undone
        for name, data in zip(b.names, b.data):
            assert (d / name).read_bytes() == data, f"{d / name} was not restored"
    return results


def _check_reads(b: Built, case: Case, ans: dict[str, Any]) -> None:
    """No wrong value; forward a gap-free prefix holding every intact entry; backward a gap-free run."""
    where = f"{case.kind} {case.label}"
    assert not ans["wrong"], f"{where}: wrong values read: {ans['wrong'][:3]}"
    if "open_error" in ans:
        assert case.intact == 0, f"{where}: the queue does not open: {ans['open_error']}"
        return
    fwd = ans["forward"]
    assert fwd == b.indexes[: len(fwd)], f"{where}: forward reading is not a gap-free prefix"
    assert len(fwd) >= case.intact, f"{where}: {case.intact - len(fwd)} intact entries not read ({ans['forward_error']})"
    bwd = ans["backward"]
    if bwd:
        k = b.indexes.index(bwd[0])
        assert bwd == b.indexes[k - len(bwd) + 1: k + 1][::-1], f"{where}: backward reading skips or repeats"


def _summary(results: list[tuple[Case, dict[str, Any]]]) -> str:
    c: Counter[str] = Counter()
    for case, ans in results:
        v = ans.get("verify", {})
        c[f"{case.kind}: " + ("open refused" if "open_error" in ans else "verify ok" if v.get("ok") else "verify not ok")] += 1
    return ", ".join(f"{k} {n}" for k, n in sorted(c.items()))


@pytest.fixture(scope="module")
def swept(built: Built, tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Case, dict[str, Any]]]:
    results = _run(built, _cases(built), tmp_path_factory.mktemp("copies"))
    print(f"\ntail sweep: {len(results)} damaged copies read: {_summary(results)}", file=sys.stderr)
    return results


def _of(swept: list[tuple[Case, dict[str, Any]]], kind: str) -> list[tuple[Case, dict[str, Any]]]:
    out = [(c, a) for c, a in swept if c.kind == kind]
    assert out
    return out


@pytest.mark.parametrize("kind", ["truncate", "flip", "zero", "lookalike"])
def test_damaged_queues_are_read_without_a_crash_or_a_wrong_value(swept: list[tuple[Case, dict[str, Any]]],
                                                                  built: Built, kind: str) -> None:
    for case, ans in _of(swept, kind):
        _check_reads(built, case, ans)


def test_a_truncated_tail_is_reported_by_verify_unless_cut_at_an_entry_boundary(
        swept: list[tuple[Case, dict[str, Any]]], built: Built) -> None:
    for case, ans in _of(swept, "truncate"):
        v = ans["verify"]
        if v["ok"]:
            assert case.boundary or case.intact == len(built.indexes), f"{case.label}: a cut entry passes verify"
            assert v["entries"] == case.intact, f"{case.label}: verify counts {v['entries']} entries"
        else:
            assert v["last_good_index"] == built.indexes[case.intact - 1], case.label


def test_every_flipped_bit_outside_the_padding_is_reported_by_verify(swept: list[tuple[Case, dict[str, Any]]]) -> None:
    missed = [case.label for case, ans in _of(swept, "flip") if not case.padding and ans["verify"]["ok"]]
    assert not missed, f"flips verify() did not notice: {missed}"


def test_a_flipped_bit_in_the_padding_is_reported_by_verify(swept: list[tuple[Case, dict[str, Any]]]) -> None:
    flips = [(case, ans) for case, ans in _of(swept, "flip") if case.padding]
    assert flips
    missed = [case.label for case, ans in flips if ans["verify"]["ok"]]
    assert not missed, f"flips verify() did not notice: {missed}"


def test_every_zeroed_page_holding_data_is_reported_by_verify(swept: list[tuple[Case, dict[str, Any]]]) -> None:
    for case, ans in _of(swept, "zero"):
        if "open_error" in ans:
            assert case.label == "tape.meta page 0", f"{case.label}: {ans['open_error']}"
        elif case.harmless:
            assert ans["verify"]["ok"] and len(ans["forward"]) == case.intact, case.label
        else:
            assert not ans["verify"]["ok"], f"{case.label}: passes verify"


def test_garbage_after_the_end_of_data_is_reported_by_verify(swept: list[tuple[Case, dict[str, Any]]]) -> None:
    for case, ans in _of(swept, "lookalike"):
        v = ans["verify"]
        if case.harmless:
            assert v["ok"] and v["entries"] == case.intact, case.label
        else:
            assert not v["ok"], f"{case.label}: passes verify"


def test_an_append_after_garbage_is_refused_or_readable(swept: list[tuple[Case, dict[str, Any]]],
                                                         built: Built) -> None:
    for case, ans in _of(swept, "lookalike"):
        if "append_error" in ans:
            assert ans["append_error"].startswith("CorruptionError"), f"{case.label}: {ans['append_error']}"
            assert not case.harmless, f"{case.label}: the queue refuses writes: {ans['append_error']}"
        else:
            assert ans["appended_read"] == b"after".hex(), f"{case.label}: the appended entry reads back wrong"
            assert ans["appended"] > built.indexes[-1]


def test_a_reader_does_not_skip_an_older_cycle_that_seems_to_end_early(
        swept: list[tuple[Case, dict[str, Any]]], built: Built) -> None:
    cases = [(c, a) for c, a in swept if c.old_cycle_clean_end]
    assert len(cases) >= 2
    for case, ans in cases:
        fwd = ans["forward"]
        assert fwd == built.indexes[: len(fwd)], f"{case.kind} {case.label}: forward reading skips entries"


def test_an_append_after_a_torn_last_entry_is_refused_or_readable(tmp_path: Path) -> None:
    path = tmp_path / "q"
    with tape.Queue(path, codec="raw") as q:
        q.appender().write_many([b"entry %d" % k for k in range(10)])
        cycle = Path(q.cycles()[-1].path)
    last = cs.layout(cycle.read_bytes()).data[-1]
    with open(cycle, "r+b") as fh:  # the payload of the last entry never reached the disk
        fh.seek(last.offset + ENTRY_HDR)
        fh.write(bytes(last.size - ENTRY_HDR))
    with tape.Queue(path) as q:
        try:
            index = q.appender().write(b"after the torn entry")
        except tape.CorruptionError:
            return  # refused: fine
        t = q.tailer()
        read = []
        try:
            for e in t.entries():
                read.append(e.index)
        except tape.CorruptionError:
            pass
        assert index in read, f"write() returned {index}, which no reader reaches (reading stops after {len(read)})"


# -- issue 21 item 3: a torn tail is shown up to the damage, then reported --------------------


def _torn_tail(path: Path) -> list[int]:
    """101 entries, one byte of the last one's payload flipped (as a torn write leaves it); their indexes."""
    with tape.Queue(path, codec="raw") as q:
        a = q.appender()
        acked = [a.write(b"entry %03d" % i) for i in range(101)]
    (f,) = cs.cycle_files(path)
    data = bytearray(f.read_bytes())
    data[data.rfind(b"entry 100") + 7] ^= 0x01
    f.write_bytes(bytes(data))
    return acked


def _tape(*args: str) -> Any:
    import subprocess

    return subprocess.run([sys.executable, "-m", "tape", *args], capture_output=True, text=True, timeout=60)


def test_a_torn_tail_is_shown_up_to_the_damage_then_reported(tmp_path: Path) -> None:
    path = tmp_path / "q"
    acked = _torn_tail(path)
    (f,) = cs.cycle_files(path)
    size = f.stat().st_size
    with tape.Queue(path, codec="raw") as q:
        with pytest.raises(tape.CorruptionError, match="tape verify.*tape repair"):
            q.appender().write(b"refused")
        assert f.stat().st_size == size  # the refused append did not grow the file
        t = q.tailer(start="end")  # after the last intact entry
        with pytest.raises(tape.CorruptionError, match="tape verify"):
            t.read()
        back = q.tailer()
        back.direction = "backward"
        back.to_end()
        assert [e.index for e in back.entries()] == acked[:100][::-1]
    tail = _tape("tail", "-n", "2", str(path))
    assert tail.returncode == 1 and [line.split('"index": ')[1].split(",")[0] for line in tail.stdout.splitlines()] \
        == [str(i) for i in acked[98:100]]
    assert f"damaged entries after index {acked[99]}" in tail.stderr and "tape repair" in tail.stderr
    dump = _tape("dump", "--backward", "--format", "raw", str(path))
    assert dump.returncode == 1 and dump.stdout.count("entry ") == 100 and "tape repair" in dump.stderr
    info = _tape("info", str(path))
    assert info.returncode == 1 and "tape repair" in info.stderr
    lines = info.stdout.splitlines()
    assert next(line for line in lines if line.startswith("entries")).split()[1] == "100"
    assert f"{acked[99]} (the last intact" in next(line for line in lines if line.startswith("last index"))
    with tape.Queue(path, codec="raw") as q:
        t = q.tailer(start="end")
        assert 0 < q.repair() < 4096  # the torn entry, not the file's preallocation
        i = q.appender().write(b"next")
        assert i == acked[100] and t.read() == b"next"
        assert _tape("tail", "-n", "2", str(path)).returncode == 0
