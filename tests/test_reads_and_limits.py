"""Reads that cost nothing while idle, stored positions past the end, and errors that are tape's.

- a read-only follower sleeps on the queue's wake-up word when it may write tape.meta,
  and polls (backing off while idle) when it may not (issue 16, item 1);
- a named tailer's stored position beyond the end of the data (a power cut made it
  durable before the data it read) is brought back to the end, so that what is written
  there next is read (issue 17, item 3);
- a damaged cycle file, the 257th named tailer, a failed open: tape errors, and nothing
  left behind (issue 16, item 3).
"""

from __future__ import annotations

import datetime
import errno
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import tape

META = "tape.meta"
NAMED_OFF, SLOT, NAME_LEN = 8192, 64, 48  # FORMAT.md, "Named tailers"
NOTIFY_OFF = 4224  # FORMAT.md, page 1: the publication word
SLEEPERS = 0x80000000


# -- helpers -------------------------------------------------------------------------------------


def slot_offset(qpath: Path, name: str) -> int:
    """Offset in tape.meta of the named tailer slot of `name`."""
    data = (qpath / META).read_bytes()
    want = name.encode().ljust(NAME_LEN, b"\0")
    for i in range(256):
        off = NAMED_OFF + i * SLOT
        if data[off : off + NAME_LEN] == want and struct.unpack_from("<I", data, off + 56)[0] == 1:
            return off
    raise AssertionError(f"no slot named {name}")


def store_position(qpath: Path, name: str, index: int) -> None:
    """Write the stored index of named tailer `name` straight into tape.meta."""
    off = slot_offset(qpath, name) + NAME_LEN
    with open(qpath / META, "r+b") as f:
        f.seek(off)
        f.write(struct.pack("<q", index))


def stored_position(qpath: Path, name: str) -> int:
    off = slot_offset(qpath, name) + NAME_LEN
    value: int = struct.unpack_from("<q", (qpath / META).read_bytes(), off)[0]
    return value


def drain(t: tape.Tailer) -> list[object]:
    out = []
    while (v := t.read()) is not None:
        out.append(v)
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- 1. waiting on a read-only queue ------------------------------------------------------------


class Follower:
    """A forked child that follows the queue read-only (as user `uid` when >= 0), printing
    each value and when it saw it (monotonic ns) on a pipe; it stops at "stop"."""

    def __init__(self, qpath: Path, uid: int = -1) -> None:
        with tape.Queue(qpath, read_only=True) as q, q.tailer() as t:
            drain(t)  # everything it needs is imported before the fork
        r, w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # the child
            code = 1
            try:
                os.close(r)
                if uid >= 0:
                    os.setgid(uid)
                    os.setuid(uid)
                with tape.Queue(qpath, read_only=True) as q, q.tailer(start="end") as t:
                    os.write(w, b"ready\n")
                    for value in t.follow():
                        os.write(w, f"{value} {time.monotonic_ns()}\n".encode())
                        if value == "stop":
                            break
                code = 0
            finally:
                os._exit(code)
        os.close(w)
        self.out = os.fdopen(r)
        assert self.out.readline().strip() == "ready"

    def readline(self) -> list[str]:
        return self.out.readline().split()

    def close(self) -> int:
        """Its exit status (killing it if it still runs after 10 s)."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.out.close()
                return os.waitstatus_to_exitcode(status)
            time.sleep(0.01)
        os.kill(self.pid, 9)
        os.waitpid(self.pid, 0)
        self.out.close()
        return -9


def follow_and_measure(qpath: Path, uid: int = -1) -> tuple[float, list[float]]:
    """(CPU seconds of an idle read-only follower over 2 s, wake-up latencies in seconds)."""
    p = Follower(qpath, uid)
    try:
        time.sleep(0.3)  # settled: any backoff at its longest
        before = cpu_seconds(p.pid)
        time.sleep(2.0)
        idle = cpu_seconds(p.pid) - before
        latencies = []
        with tape.Queue(qpath) as q, q.appender() as a:
            for k in range(5):
                time.sleep(0.2)
                sent = time.monotonic_ns()
                a.write(k)
                value, seen = p.readline()
                assert int(value) == k
                latencies.append((int(seen) - sent) / 1e9)
            a.write("stop")
        assert p.readline()[0] == "stop"
    finally:
        assert p.close() == 0
    return idle, latencies


def test_read_only_follower_sleeps_and_is_woken_at_once(qpath: Path) -> None:
    with tape.Queue(qpath) as q, q.appender() as a:
        a.write("first")
    idle, latencies = follow_and_measure(qpath)
    assert idle < 0.2, f"an idle read-only follower used {idle:.3f} s of CPU in 2 s"
    assert max(latencies) < 0.05, latencies


def test_read_only_follower_announces_itself_as_a_sleeper(qpath: Path) -> None:
    """It sleeps on the futex (the sleepers bit of the publication word is set): no polling."""
    with tape.Queue(qpath) as q, q.appender() as a:
        a.write("first")
    p = Follower(qpath)
    try:
        time.sleep(0.2)
        word = struct.unpack_from("<I", (qpath / META).read_bytes(), NOTIFY_OFF)[0]
        assert word & SLEEPERS
        with tape.Queue(qpath) as q, q.appender() as a:
            a.write("stop")
        assert p.readline()[0] == "stop"
    finally:
        assert p.close() == 0


def test_reader_without_write_permission_still_sees_new_entries() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root, to follow as an unprivileged user (root ignores permissions)")
    top = Path(tempfile.mkdtemp(prefix="tape-noperm-"))  # (pytest's tmp_path is private to root)
    try:
        os.chmod(top, 0o755)
        qpath = top / "q"
        with tape.Queue(qpath) as q, q.appender() as a:
            a.write("first")
        for f in qpath.iterdir():
            os.chmod(f, 0o644)
        os.chmod(qpath, 0o755)
        idle, latencies = follow_and_measure(qpath, uid=65534)  # nobody
        # It polls, backing off while idle: new entries are still seen within a few ms.
        assert idle < 0.2, f"an idle polling follower used {idle:.3f} s of CPU in 2 s"
        assert max(latencies) < 0.05, latencies
        # (and never set the sleepers bit: it cannot write tape.meta)
        word = struct.unpack_from("<I", (qpath / META).read_bytes(), NOTIFY_OFF)[0]
        assert not word & SLEEPERS
    finally:
        shutil.rmtree(top)


# -- 2. stored positions past the end of the data -----------------------------------------------


def _five_read_by_t(qpath: Path) -> int:
    """A queue of 0..4, all read by the named tailer "t"; the index of the last."""
    with tape.Queue(qpath) as q:
        with q.appender() as a:
            for k in range(5):
                a.write(k)
        with q.tailer("t") as t:
            assert drain(t) == [0, 1, 2, 3, 4]
        last = q.last_index
    assert last is not None
    return last


@pytest.mark.parametrize("when", ["writer-first", "tailer-first"])
def test_position_past_the_end_does_not_skip_new_entries(qpath: Path, when: str) -> None:
    last = _five_read_by_t(qpath)
    end = last + 1
    assert stored_position(qpath, "t") == end
    store_position(qpath, "t", end + 20)  # durable ahead of data a power cut lost

    with tape.Queue(qpath) as q:
        if when == "tailer-first":
            q.tailer("t").close()  # resuming brings it back to the end, and stores that
            assert stored_position(qpath, "t") == end
        with q.appender() as a:
            for k in range(5, 30):
                a.write(k)
        assert stored_position(qpath, "t") == end
        with q.tailer("t") as t:
            assert drain(t) == list(range(5, 30))
        assert q.verify().ok


@pytest.mark.parametrize("when", ["writer-first", "tailer-first"])
def test_position_in_a_later_cycle_that_does_not_exist(qpath: Path, when: str) -> None:
    last = _five_read_by_t(qpath)
    cycle = last >> 32  # daily: seq_bits 32
    store_position(qpath, "t", ((cycle + 3) << 32) | 7)

    with tape.Queue(qpath) as q:
        if when == "tailer-first":
            q.tailer("t").close()
            assert stored_position(qpath, "t") == last + 1
        with q.appender() as a:
            for k in range(5, 30):
                a.write(k)
        assert stored_position(qpath, "t") == last + 1
        with q.tailer("t") as t:
            assert drain(t) == list(range(5, 30))


def test_position_within_the_data_is_left_alone(qpath: Path) -> None:
    with tape.Queue(qpath) as q:
        with q.appender() as a:
            for k in range(10):
                a.write(k)
        with q.tailer("t") as t:
            assert [t.read() for _ in range(4)] == [0, 1, 2, 3]
    stored = stored_position(qpath, "t")
    with tape.Queue(qpath) as q:
        with q.appender() as a:
            a.write(10)
        assert stored_position(qpath, "t") == stored
        with q.tailer("t") as t:
            assert drain(t) == list(range(4, 11))


# -- 3. errors that are tape errors --------------------------------------------------------------


def newer_cycle_file(qpath: Path) -> Path:
    """The path of a cycle file 5 s after the newest one (roll cycle test_secondly)."""
    newest = sorted(n for n in os.listdir(qpath) if n.endswith(".tape"))[-1]
    t = datetime.datetime.strptime(newest[:-5], "%Y%m%d-%H%M%S") + datetime.timedelta(seconds=5)
    return qpath / (t.strftime("%Y%m%d-%H%M%S") + ".tape")


@pytest.mark.parametrize("damage", ["empty", "random", "symlink-to-text", "directory", "symlink-to-dir"])
@pytest.mark.parametrize("read_only", [False, True])
def test_damaged_newest_cycle_file_is_corruption(qpath: Path, tmp_path: Path, damage: str, read_only: bool) -> None:
    with tape.Queue(qpath, roll_cycle="test_secondly") as q, q.appender() as a:
        a.write(1)
    f = newer_cycle_file(qpath)
    if damage == "empty":
        f.write_bytes(b"")
    elif damage == "random":
        f.write_bytes(os.urandom(100_000))
    elif damage == "symlink-to-text":
        (tmp_path / "text.txt").write_text("hello\n" * 10)
        f.symlink_to(tmp_path / "text.txt")
    elif damage == "directory":
        f.mkdir()
    else:
        (tmp_path / "somedir").mkdir()
        f.symlink_to(tmp_path / "somedir")
    with tape.Queue(qpath, read_only=read_only) as q:
        calls: list[Callable[[], object]] = [q.count, q.cycles, q.describe, lambda: q.last_index]
        if not read_only:
            calls.append(lambda: q.purge(keep_cycles=1))
        for call in calls:
            with pytest.raises(tape.CorruptionError):
                call()


def test_the_257th_named_tailer_is_a_limit_error(queue: tape.Queue) -> None:
    for k in range(256):
        queue.tailer(f"t{k}").close()
    with pytest.raises(tape.LimitError) as raised:
        queue.tailer("one-too-many")
    assert isinstance(raised.value, tape.TapeError)
    assert not isinstance(raised.value, OSError)
    assert "256 named tailers exist, the most a queue holds" in str(raised.value)
    assert "remove_tailer" in str(raised.value)  # and what to do
    queue.remove_tailer("t0")
    queue.tailer("one-too-many").close()


OPEN_WITH_FEW_FILES = textwrap.dedent(
    """
    import os, resource, sys
    import tape
    path, extra = sys.argv[1], int(sys.argv[2])
    used = len(os.listdir("/proc/self/fd"))  # (one of them is the listing's own)
    resource.setrlimit(resource.RLIMIT_NOFILE, (used + extra, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    try:
        tape.Queue(path).close()
        print("opened")
    except tape.TapeError as e:
        print(type(e).__name__, getattr(e, "errno", None))
    """
)


def test_failed_open_leaves_nothing_behind_when_files_run_out(tmp_path: Path) -> None:
    failures = 0
    for extra in range(0, 8):
        path = tmp_path / f"run{extra}" / "a" / "b"
        out = subprocess.run(
            [sys.executable, "-c", OPEN_WITH_FEW_FILES, str(path), str(extra)],
            capture_output=True, text=True, timeout=60,
        )
        assert out.returncode == 0, out.stderr
        if out.stdout.strip() == "opened":
            assert (path / META).exists()
            continue
        failures += 1
        assert out.stdout.split() == ["TapeOSError", str(errno.EMFILE)], out.stdout
        assert not (tmp_path / f"run{extra}").exists(), os.listdir(tmp_path / f"run{extra}")
    assert failures > 0  # the limit did bite at least once


CREATE = textwrap.dedent(
    """
    import sys
    import tape
    try:
        tape.Queue(sys.argv[1]).close()
        print("opened")
    except tape.TapeError as e:
        print(type(e).__name__, getattr(e, "errno", None))
    """
)


def create_with_fault(path: Path, fault: str) -> str:
    """Open (creating) the queue at `path` in a child whose system calls fail as `fault` says."""
    env = dict(os.environ, TAPE_FAULT=fault)
    out = subprocess.run([sys.executable, "-c", CREATE, str(path)], capture_output=True, text=True,
                         timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


# tape_open's calls when creating: open the directory (open 1), tape.meta (open 2, missing),
# the directory to list it (open 3), the temporary metadata file (open 4), tape.meta
# again (open 5); fsync and link ("rename") the temporary file; map tape.meta.
CREATION_FAULTS = ["open:1:EMFILE", "open:3:EMFILE", "open:4:ENOSPC", "open:5:EMFILE",
                   "fsync:1:EIO", "rename:1:ENOSPC", "mmap:1:ENOMEM"]


@pytest.mark.parametrize("fault", CREATION_FAULTS)
def test_failed_creation_leaves_nothing_behind(tmp_path: Path, fault: str) -> None:
    result = create_with_fault(tmp_path / "new" / "q", fault)
    assert result.startswith("TapeOSError"), result
    assert not (tmp_path / "new").exists(), list((tmp_path / "new").rglob("*"))


@pytest.mark.parametrize("fault", CREATION_FAULTS)
def test_failed_open_of_an_existing_directory_leaves_it_as_it_was(tmp_path: Path, fault: str) -> None:
    path = tmp_path / "existing"
    path.mkdir()
    result = create_with_fault(path, fault)
    assert result.startswith("TapeOSError"), result
    assert path.is_dir() and list(path.iterdir()) == []
