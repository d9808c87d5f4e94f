"""Rolling cycles and retention: many rolls with gaps, tailers across cycles, purge, open files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import tape

T0 = 1_763_683_200 * 10**9  # 2025-11-21T00:00:00Z, a second (and day) boundary
SEC = 10**9


class Clock:
    """A manual clock: tests set `now` (ns)."""

    def __init__(self, now: int = T0) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


# What docs/FORMAT.md promises for each roll cycle: length (s), name pattern, seq bits.
ROLL_TABLE = {
    "test_secondly": (1, "%Y%m%d-%H%M%S", 12),
    "test_ten_secondly": (10, "%Y%m%d-%H%M%S", 12),
    "minutely": (60, "%Y%m%d-%H%M", 26),
    "five_minutely": (300, "%Y%m%d-%H%M", 27),
    "ten_minutely": (600, "%Y%m%d-%H%M", 27),
    "twenty_minutely": (1200, "%Y%m%d-%H%M", 27),
    "half_hourly": (1800, "%Y%m%d-%H%M", 27),
    "hourly": (3600, "%Y%m%d-%H", 28),
    "two_hourly": (7200, "%Y%m%d-%H", 29),
    "four_hourly": (14400, "%Y%m%d-%H", 29),
    "six_hourly": (21600, "%Y%m%d-%H", 29),
    "daily": (86400, "%Y%m%d", 32),
    "weekly": (604800, "%Y%m%d", 34),
    "large_hourly": (3600, "%Y%m%d-%H", 34),
    "large_daily": (86400, "%Y%m%d", 37),
    "huge_daily": (86400, "%Y%m%d", 40),
}


@pytest.mark.parametrize("roll", sorted(ROLL_TABLE))
def test_each_roll_cycle_names_its_files_and_shifts_its_index(tmp_path: Path, roll: str) -> None:
    length, pattern, bits = ROLL_TABLE[roll]
    when = T0 + 12_345 * SEC
    with tape.Queue(tmp_path / roll, roll_cycle=roll, codec="raw", clock=lambda: when) as q:
        i = q.appender().write(b"x")
        cycle, seq = tape.split_index(q, i)
        assert (cycle, seq) == (when // SEC // length, 0)
        assert tape.make_index(q, 1, 0) == 1 << bits  # the shift
        assert tape.make_index(q, cycle, 2**bits - 1) == i + 2**bits - 1  # the capacity
        start = datetime.fromtimestamp(cycle * length, tz=timezone.utc)
        (c,) = q.cycles()
        assert os.path.basename(c.path) == start.strftime(pattern) + ".tape"


def _write_spread(q: tape.Queue, clock: Clock, seconds: range) -> list[tuple[int, int, int]]:
    """1 to 3 entries in each second but every third: (index, timestamp, value)."""
    a = q.appender()
    written = []
    for s in seconds:
        if s % 3 == 2:
            continue  # an empty cycle: no file at all
        for k in range(1 + s % 3):
            clock.now = T0 + s * SEC + k * 1000
            v = s * 10 + k
            written.append((a.write(v), clock.now, v))
    a.close()
    return written


def test_a_thousand_rolls_with_gaps_read_every_way(qpath: Path) -> None:
    clock = Clock()
    with tape.Queue(qpath, roll_cycle="test_secondly", clock=clock) as q:
        written = _write_spread(q, clock, range(0, 750))
    with tape.Queue(qpath, clock=clock) as q:  # reopened mid-way, in a later cycle
        written += _write_spread(q, clock, range(750, 1500))
        assert len(q.cycles()) == 1000
        values = [v for _, _, v in written]
        assert list(q.tailer()) == values
        back = q.tailer()
        back.direction = "backward"
        back.to_end()
        assert list(back) == values[::-1]
        t = q.tailer()
        for index, _, v in written:
            assert t.to_index(index)
            assert t.read() == v
        for s in range(0, 1500, 7):  # to_time to cycle boundaries, empty cycles too
            expected = next((v for _, ts, v in written if ts >= T0 + s * SEC), None)
            found = t.to_time((T0 + s * SEC) / SEC)
            assert found == (expected is not None)
            if found:
                assert t.read() == expected


def test_a_tailer_process_follows_a_writer_process_across_rolls(qpath: Path) -> None:
    with tape.Queue(qpath, roll_cycle="test_secondly"):
        pass
    reader = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import tape
            q = tape.Queue({str(qpath)!r})
            got = []
            for v in q.tailer().follow(timeout=20):
                got.append(v)
                if v == 1999:
                    break
            print(len(got), got == list(range(2000)))
            """)],
        stdout=subprocess.PIPE, text=True,
    )
    writer = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(f"""
            import time, tape
            now = [{T0}]
            q = tape.Queue({str(qpath)!r}, clock=lambda: now[0])
            a = q.appender()
            for i in range(2000):
                now[0] = {T0} + (i // 10) * {SEC}   # 200 rolls
                a.write(i)
                if i % 100 == 0:
                    time.sleep(0.01)
            """)],
        check=True,
    )
    out, _ = reader.communicate(timeout=60)
    assert writer.returncode == 0
    assert out.split() == ["2000", "True"]


def test_purge_while_another_process_tails(qpath: Path) -> None:
    clock = Clock()
    with tape.Queue(qpath, roll_cycle="test_secondly", clock=clock) as q:
        a = q.appender()
        reader = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(f"""
                import time, tape
                q = tape.Queue({str(qpath)!r})
                got = []
                for v in q.tailer().follow(timeout=10):
                    got.append(v)
                    time.sleep(0.0002)
                    if v == 2999:
                        break
                print(got == sorted(got), len(set(got)) == len(got), got[-1])
                """)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for i in range(3000):
            clock.now = T0 + (i // 30) * SEC
            a.write(i)
            if i % 90 == 89:
                q.purge(keep_cycles=2)
        out, err = reader.communicate(timeout=60)
        assert reader.returncode == 0, err
        assert out.split() == ["True", "True", "2999"]
        assert len(q.cycles()) <= 3
        # Every entry of the cycles kept is still there, in order.
        assert list(q.tailer()) == list(range(3000 - 30 * len(q.cycles()), 3000))


def test_open_files_stay_few_over_ten_thousand_cycles(qpath: Path) -> None:
    # On tmpfs when there is one: each roll syncs the new cycle file, and what
    # is checked here (descriptors) does not depend on the disk.
    shm = Path("/dev/shm")
    where = Path(tempfile.mkdtemp(dir=shm)) / "q" if shm.is_dir() else qpath
    clock = Clock()
    fds = Path("/proc/self/fd")
    with tape.Queue(where, roll_cycle="test_secondly", codec="raw", clock=clock) as q:
        a = q.appender()
        t = q.tailer()
        before = len(list(fds.iterdir()))
        most = before
        for s in range(10_000):
            clock.now = T0 + s * SEC
            a.write(b"e")
            assert t.read() == b"e"
            if s % 100 == 0:
                most = max(most, len(list(fds.iterdir())))
        assert most - before <= 6
        assert q.count() == 10_000
    if where != qpath:
        shutil.rmtree(where.parent)


def _cycles_with_entries(qpath: Path, seconds: int) -> tuple[tape.Queue, Clock]:
    clock = Clock()
    q = tape.Queue(qpath, roll_cycle="test_secondly", codec="raw", clock=clock)
    a = q.appender()
    for s in range(seconds):
        clock.now = T0 + s * SEC
        a.write(b"%d" % s)
    return q, clock


def test_purge_keeps_the_last_cycles(qpath: Path) -> None:
    q, _ = _cycles_with_entries(qpath, 10)
    with q:
        gone = q.purge(keep_cycles=3, dry_run=True)
        assert len(gone) == 7 and len(q.cycles()) == 10
        assert q.purge(keep_cycles=3) == gone
        assert not any(os.path.exists(p) for p in gone)
        assert list(q.tailer()) == [b"7", b"8", b"9"]


def test_purge_calls_on_remove_as_each_file_goes(qpath: Path) -> None:
    q, _ = _cycles_with_entries(qpath, 5)
    with q:
        seen: list[tuple[str, bool]] = []
        gone = q.purge(keep_cycles=2, on_remove=lambda path: seen.append((path, os.path.exists(path))))
        assert seen == [(path, False) for path in gone] and len(gone) == 3
        picked: list[str] = []
        would = q.purge(keep_cycles=1, dry_run=True, on_remove=picked.append)
        assert would == picked and len(picked) == 1 and os.path.exists(picked[0])


def test_purge_removes_cycles_older_than(qpath: Path) -> None:
    q, clock = _cycles_with_entries(qpath, 10)
    with q:
        clock.now = T0 + 20 * SEC
        assert len(q.purge(older_than=timedelta(seconds=15))) == 5  # ended at 1..5 s
        assert q.tailer().read() == b"5"


def test_purge_keeps_at_most_max_bytes(qpath: Path) -> None:
    q, _ = _cycles_with_entries(qpath, 10)
    with q:
        per_cycle = q.cycles()[0].bytes
        q.purge(max_bytes=4 * per_cycle)
        assert sum(c.bytes for c in q.cycles()) <= 4 * per_cycle
        assert len(q.cycles()) == 4


def test_purge_never_removes_the_newest_cycle_nor_the_newest_with_entries(qpath: Path) -> None:
    q, _ = _cycles_with_entries(qpath, 3)
    with q:
        q.purge(keep_cycles=0)
        assert [c.entries for c in q.cycles()] == [1]
        assert q.tailer().read() == b"2"


def test_purge_respects_what_named_tailers_have_not_read(qpath: Path) -> None:
    q, _ = _cycles_with_entries(qpath, 10)
    with q:
        t = q.tailer("slow")
        assert [t.read() for _ in range(4)] == [b"0", b"1", b"2", b"3"]
        q.purge(keep_cycles=1, respect_tailers=True)
        # "slow" will go on at the end of cycle 3: cycles 0-2 went, 3 stays.
        assert q.tailer().read() == b"3"
        q.tailer("new")  # has read nothing: nothing more may go
        assert q.purge(keep_cycles=1, respect_tailers=True) == []


def test_retention_is_applied_as_the_queue_rolls(qpath: Path) -> None:
    clock = Clock()
    with tape.Queue(qpath, roll_cycle="test_secondly", clock=clock, retention={"keep_cycles": 2}) as q:
        a = q.appender()
        for s in range(20):
            clock.now = T0 + s * SEC
            a.write(s)
            assert len(q.cycles()) <= 2
        assert list(q.tailer()) == [18, 19]


def test_a_purged_index_is_not_found_and_reading_starts_at_the_first_left(qpath: Path) -> None:
    q, _ = _cycles_with_entries(qpath, 5)
    with q:
        first = q.first_index
        assert first is not None
        q.purge(keep_cycles=2)
        t = q.tailer()
        assert not t.to_index(first)
        assert t.read() == b"3"
        assert q.first_index == tape.make_index(q, tape.split_index(q, first)[0] + 3, 0)


@pytest.mark.parametrize(
    "kwargs",
    [{"keep_cycles": -1}, {"keep_cycles": "2"}, {"older_than": "1d"}, {"max_bytes": 1.5}, {"respect_tailers": 1}],
)
def test_bad_retention_options_are_refused(queue: tape.Queue, kwargs: dict[str, object]) -> None:
    with pytest.raises(tape.TapeError):
        queue.purge(**kwargs)  # type: ignore[arg-type]


def test_bad_retention_on_the_queue_is_refused(qpath: Path) -> None:
    with pytest.raises(tape.ArgumentTypeError):
        tape.Queue(qpath, retention={"keep": 1})


def test_epoch_moves_the_moment_of_rolling(qpath: Path) -> None:
    six = 6 * 3600
    clock = Clock(T0 + (six - 60) * SEC)  # 05:59
    with tape.Queue(qpath, codec="raw", clock=clock, epoch_ms=six * 1000) as q:
        a = q.appender()
        before = a.write(b"05:59")
        clock.now = T0 + (six + 60) * SEC  # 06:01
        after = a.write(b"06:01")
        assert tape.split_index(q, after)[0] == tape.split_index(q, before)[0] + 1
        names = sorted(os.path.basename(c.path) for c in q.cycles())
        assert names == ["20251120.tape", "20251121.tape"]


def test_reopening_in_a_later_cycle_continues(qpath: Path) -> None:
    clock = Clock()
    with tape.Queue(qpath, roll_cycle="test_secondly", clock=clock) as q:
        q.appender().write("a")
    clock.now += 5 * SEC
    with tape.Queue(qpath, clock=clock) as q:
        q.appender().write("b")
        assert list(q.tailer()) == ["a", "b"]
        assert len(q.cycles()) == 2
