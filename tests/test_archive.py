"""Archiving (issue 21, item 18): purge(archive=DIR), retention's "archive" and
`tape purge --archive` move cycle files into DIR, lz4-compressed and on disk before the
file goes; `tape dump` reads an archive as it read the queue; an archiver killed at any
moment loses nothing."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import tape
from tape import archive
from tape.cli import cli as tape_cli

T0 = 1_763_683_200 * 10**9  # 2025-11-21T00:00:00Z
SECOND = 10**9
MINUTE = 60 * SECOND


def build(path: Path, cycles: int, per_cycle: int, *, roll: str = "test_secondly", size: int = 0) -> None:
    """A queue of `cycles` cycle files and a newest one of one entry; values are dicts, or random bytes of `size`."""
    step = MINUTE if roll == "minutely" else SECOND
    now = [T0]
    codec = "raw" if size else None
    with tape.Queue(path, roll_cycle=roll, codec=codec, clock=lambda: now[0]) as q:
        a = q.appender()
        for c in range(cycles):
            for i in range(per_cycle):
                a.write(os.urandom(size) if size else {"c": c, "i": i, "b": os.urandom(4)})
            now[0] += step
        a.write(b"last" if size else "last")


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tape", *args], capture_output=True, text=True, timeout=120)


def dumped(path: str | Path, *options: str) -> list[str]:
    """The lines `tape dump PATH OPTIONS` prints (run in this process)."""
    done = CliRunner().invoke(tape_cli, ["dump", str(path), *options])
    assert done.exit_code == 0, done.output
    return done.stdout.splitlines()


def archived_entries(path: str) -> dict[int, bytes]:
    """index -> payload of the archive at `path` (it must be complete)."""
    with archive.opened(path) as where, tape.Queue(where, read_only=True, create=False, raw=True) as q:
        return {e.index: e.value for e in q.tailer().entries()}


def test_an_archive_dumps_as_its_cycle_did_from_the_queue(tmp_path: Path) -> None:
    q_path = tmp_path / "q"
    build(q_path, 3, 500)
    before = dumped(q_path)
    with tape.Queue(q_path) as q:
        old = [c.path for c in q.cycles()[:3]]
        got = q.purge(keep_cycles=1, archive=tmp_path / "arch")
        assert len(q.cycles()) == 1
    assert got == [str(tmp_path / "arch" / (os.path.basename(p) + ".lz4")) for p in old]
    assert not any(os.path.exists(p) for p in old)
    after = [line for p in got for line in dumped(p)]
    assert after == before[:1500]
    assert dumped(got[1], "--backward") == before[500:1000][::-1]
    assert dumped(got[0], "--limit", "2") == before[:2]


@pytest.mark.skipif(shutil.which("lz4") is None, reason="no lz4 tool")
def test_the_lz4_tool_gives_back_the_cycle_file(tmp_path: Path) -> None:
    build(tmp_path / "q", 2, 100)
    with tape.Queue(tmp_path / "q") as q:
        first = q.cycles()[0].path
        original = Path(first).read_bytes()
        (path,) = q.purge(keep_cycles=2, archive=tmp_path / "arch")
    done = subprocess.run(["lz4", "-dc", path], capture_output=True, check=True)
    assert done.stdout == original


def test_a_dry_run_archives_nothing(tmp_path: Path) -> None:
    build(tmp_path / "q", 3, 10)
    with tape.Queue(tmp_path / "q") as q:
        cycles = q.cycles()
        paths = q.purge(keep_cycles=1, archive=tmp_path / "arch", dry_run=True)
        assert paths == [str(tmp_path / "arch" / (os.path.basename(c.path) + ".lz4")) for c in cycles[:3]]
        assert q.cycles() == cycles
    assert not (tmp_path / "arch").exists()


def test_retention_archives_as_the_queue_rolls(tmp_path: Path) -> None:
    now = [T0]
    arch = tmp_path / "arch"
    with tape.Queue(
        tmp_path / "q", roll_cycle="test_secondly", clock=lambda: now[0], retention={"keep_cycles": 2, "archive": arch}
    ) as q:
        a = q.appender()
        for c in range(5):
            a.write_many([c] * 3)
            now[0] += SECOND
        assert len(q.cycles()) == 2
    names = sorted(os.listdir(arch))
    assert len(names) == 3 and all(n.endswith(".tape.lz4") for n in names)
    values = [json.loads(line)["value"] for n in names for line in dumped(arch / n)]
    assert values == [0, 0, 0, 1, 1, 1, 2, 2, 2]


@pytest.mark.parametrize("bad", ["a file", "unwritable"])
def test_a_bad_archive_directory_is_a_tape_error_and_removes_nothing(tmp_path: Path, bad: str) -> None:
    build(tmp_path / "q", 3, 10)
    if bad == "a file":
        where = tmp_path / "file"
        where.write_text("not a directory")
        code = errno.ENOTDIR
    else:
        where = Path("/sys/tape-archive")  # not even root makes a file there
        code = errno.EPERM if os.geteuid() == 0 else errno.EACCES
    with tape.Queue(tmp_path / "q") as q:
        cycles = q.cycles()
        with pytest.raises(tape.TapeOSError) as exc:
            q.purge(keep_cycles=1, archive=where)
        assert exc.value.errno in (code, errno.EACCES, errno.EPERM, errno.EROFS)
        assert str(where) in str(exc.value)
        assert q.cycles() == cycles
    with pytest.raises(tape.TapeOSError):
        tape.Queue(tmp_path / "q", retention={"keep_cycles": 1, "archive": where})
    done = cli("purge", str(tmp_path / "q"), "--keep-cycles", "1", "--archive", str(where))
    assert done.returncode in (1, 2) and done.stdout == ""
    with tape.Queue(tmp_path / "q", read_only=True) as q:
        assert q.cycles() == cycles


def test_the_archive_option_takes_a_path(tmp_path: Path) -> None:
    with tape.Queue(tmp_path / "q") as q:
        with pytest.raises(tape.ArgumentTypeError):
            q.purge(keep_cycles=1, archive=3)  # type: ignore[arg-type]
        with pytest.raises(tape.ArgumentError):
            q.purge(keep_cycles=1, archive="")


def test_an_archive_of_another_file_in_the_way_is_not_replaced(tmp_path: Path) -> None:
    build(tmp_path / "q", 2, 10)
    arch = tmp_path / "arch"
    with tape.Queue(tmp_path / "q") as q:
        first = q.cycles()[0].path
        arch.mkdir()
        in_the_way = arch / (os.path.basename(first) + ".lz4")
        in_the_way.write_bytes(b"something else")
        with pytest.raises(tape.TapeOSError) as exc:
            q.purge(keep_cycles=1, archive=arch)
        assert exc.value.errno == errno.EEXIST
        assert os.path.exists(first)
        assert in_the_way.read_bytes() == b"something else"


def test_a_complete_archive_left_behind_finishes_the_purge(tmp_path: Path) -> None:
    build(tmp_path / "q", 2, 10)
    arch = tmp_path / "arch"
    with tape.Queue(tmp_path / "q") as q:
        first = q.cycles()[0].path
        made = archive.write(str(tmp_path / "q"), first, archive.check_dir(str(arch)))  # killed before it removed
        assert made is not None and made[1]
        made_at = os.stat(made[0]).st_mtime_ns
        assert q.purge(keep_cycles=2, archive=arch) == [made[0]]
        assert not os.path.exists(first)
        assert os.stat(made[0]).st_mtime_ns == made_at


def test_a_leftover_partial_archive_of_a_dead_archiver_is_replaced(tmp_path: Path) -> None:
    build(tmp_path / "q", 2, 10)
    arch = tmp_path / "arch"
    arch.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    with tape.Queue(tmp_path / "q") as q:
        first = q.cycles()[0].path
        leftover = arch / f"{os.path.basename(first)}.lz4.tmp.{dead.stdout.strip()}.0badf00d"
        leftover.write_bytes(b"\x5e\x2a\x4d\x18 cut short")
        (path,) = q.purge(keep_cycles=2, archive=arch)
    assert os.listdir(arch) == [os.path.basename(path)]
    assert len(archived_entries(path)) == 10


def test_the_cli_archives_and_dumps(tmp_path: Path) -> None:
    """As real processes: purge --archive, then dump of each archive."""
    build(tmp_path / "q", 3, 20)
    before = cli("dump", str(tmp_path / "q")).stdout.splitlines()
    done = cli("purge", str(tmp_path / "q"), "--keep-cycles", "1", "--archive", str(tmp_path / "arch"))
    assert done.returncode == 0, done.stderr
    paths = done.stdout.splitlines()
    assert len(paths) == 3 and all(p.startswith(str(tmp_path / "arch")) and p.endswith(".tape.lz4") for p in paths)
    assert done.stderr.startswith("archived 3 cycle files")
    assert [line for p in paths for line in cli("dump", p).stdout.splitlines()] == before[:60]
    junk = tmp_path / "junk.lz4"
    junk.write_bytes(b"not an archive")
    done = cli("dump", str(junk))
    assert done.returncode == 1 and "nor a cycle file archived" in done.stderr


def test_a_damaged_archive_is_reported(tmp_path: Path) -> None:
    build(tmp_path / "q", 2, 200)
    with tape.Queue(tmp_path / "q") as q:
        (path,) = q.purge(keep_cycles=2, archive=tmp_path / "arch")
    data = bytearray(Path(path).read_bytes())
    Path(path).write_bytes(data[: len(data) - 100])
    done = cli("dump", path)
    assert done.returncode == 1 and "damaged or cut short" in done.stderr


_ARCHIVER = textwrap.dedent(
    """
    import sys, tape
    with tape.Queue(sys.argv[1], create=False) as q:
        print("go", flush=True)
        q.purge(keep_cycles=1, archive=sys.argv[2])
    """
)


def entries_everywhere(q_path: Path, arch: Path) -> dict[int, list[str]]:
    """index -> where each entry is now: "queue", or the archives (complete, every one) holding it."""
    where: dict[int, list[str]] = {}
    with tape.Queue(q_path, read_only=True, create=False, raw=True) as q:
        for e in q.tailer().entries():
            where.setdefault(e.index, []).append("queue")
    for name in os.listdir(arch) if arch.exists() else []:
        if name.endswith(".tape.lz4"):
            for i in archived_entries(str(arch / name)):
                where.setdefault(i, []).append(name)
    return where


def test_an_archiver_killed_at_any_moment_loses_nothing(tmp_path: Path) -> None:
    """kill -9 of a real archiver at random moments: every entry stays in the queue or in a
    complete archive, and a run to the end archives each cycle once."""
    rng = random.Random(21)
    for rnd in range(2):
        q_path, arch = tmp_path / f"q{rnd}", tmp_path / f"arch{rnd}"
        build(q_path, 4, 128, roll="minutely", size=64 * 1024)  # 8 MiB of random bytes per cycle
        with tape.Queue(q_path, read_only=True, raw=True) as q:
            digests = {e.index: hashlib.sha256(e.value).digest() for e in q.tailer().entries()}
            old = [os.path.basename(c.path) + ".lz4" for c in q.cycles()[:-1]]
        for _ in range(4):
            child = subprocess.Popen(
                [sys.executable, "-c", _ARCHIVER, str(q_path), str(arch)], stdout=subprocess.PIPE, text=True
            )
            assert child.stdout is not None and child.stdout.readline() == "go\n"
            time.sleep(rng.uniform(0, 0.25))
            child.kill()
            child.wait()
            where = entries_everywhere(q_path, arch)
            assert set(where) == set(digests)
        done = subprocess.run([sys.executable, "-c", _ARCHIVER, str(q_path), str(arch)], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        where = entries_everywhere(q_path, arch)
        assert set(where) == set(digests)
        assert all(len(places) == 1 for places in where.values())
        assert sorted(os.listdir(arch)) == old  # no temporary file left either
        for name in os.listdir(arch):
            got = archived_entries(str(arch / name))
            assert {i: hashlib.sha256(v).digest() for i, v in got.items()} == {i: digests[i] for i in got}
