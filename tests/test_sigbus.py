"""No process of tape's dies of SIGBUS (issue 16, item 1).

A page of a mapped cycle file that the file no longer backs (another process
truncated it) or that a full tmpfs cannot supply raises SIGBUS on access; the
core's guard (csrc/guard.c) turns it into an error of the call that met it.
Each test runs the reader, appender, verify... in a child process of its own,
truncates the cycle file from this one (a real truncation, no mocks), and
checks that the child exits normally, having raised a tape error (never
signal 7 / exit 135), never returning a wrong value, and that another queue
of the same process still works afterwards.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import crash_support as cs
import tape

T0 = 1763683200 * 10**9

# The child runs `body` (which may wait for "go" on stdin: wait_go) between
# PRE and POST, and prints one JSON object at the end.
PRE = """\
import json, os, sys, time
import tape
out = {"error": None, "wrong": [], "got": 0}
def wait_go():
    print("ready", flush=True)
    assert sys.stdin.readline().strip() == "go"
def other_queue(path):
    q = tape.Queue(path)
    q.appender().write("ok")
    t = q.tailer()
    assert t.read() == "ok"
    q.close()
    return True
try:
"""
POST = """\
except tape.TapeError as e:
    out["error"] = type(e).__name__
    out["errno"] = getattr(e, "errno", None)
try:
    out["other"] = other_queue(sys.argv[2])
except Exception as e:
    out["other"] = repr(e)
print(json.dumps(out), flush=True)
"""


def _child(body: str, qdir: Path, other: Path) -> subprocess.Popen[str]:
    src = PRE + textwrap.indent(textwrap.dedent(body).strip("\n"), "    ") + "\n" + POST
    return subprocess.Popen(
        [sys.executable, "-X", "faulthandler", "-c", src, str(qdir), str(other)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_ready(p: subprocess.Popen[str]) -> None:
    assert p.stdout is not None
    line = p.stdout.readline()
    if line.strip() != "ready":
        _, err = p.communicate(timeout=10)
        raise AssertionError(f"child not ready: {line!r}\n{err}")


def _go(p: subprocess.Popen[str]) -> None:
    assert p.stdin is not None
    p.stdin.write("go\n")
    p.stdin.flush()


def _finish(p: subprocess.Popen[str]) -> dict[str, object]:
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, f"child ended with {_status(p.returncode)}:\n{err}"
    result: dict[str, object] = json.loads(out.strip().splitlines()[-1])
    assert result["other"] is True, result
    assert result["wrong"] == [], result
    return result


def _status(rc: int) -> str:
    if rc < 0:
        return f"signal {signal.Signals(-rc).name}"
    return f"exit {rc}"


def _fill(qdir: Path, n: int = 20000, roll_cycle: str = "daily") -> Path:
    """A queue of n entries 0..n-1 (about 100 bytes each) in one cycle; its cycle file."""
    q = tape.Queue(qdir, roll_cycle=roll_cycle, clock=lambda: T0)
    a = q.appender()
    pad = "x" * 90
    a.write_many([[i, pad] for i in range(n)])
    q.close()
    (cycle,) = sorted(qdir.glob("*.tape"))
    return cycle


def _mount_tmpfs(tmp_path: Path, size: str) -> Path:
    """A tmpfs of `size` mounted in tmp_path (skips the test where that is not allowed)."""
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (Linux)")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)], capture_output=True,
                       text=True)
    if p.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {p.stderr.strip()}")
    return mnt


@pytest.fixture(params=["disk", "tmpfs"])
def dirs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """The queue's directory (on the disk of tmp_path, or on a tmpfs) and another queue's."""
    if request.param == "disk":
        yield tmp_path / "q", tmp_path / "other"
        return
    mnt = _mount_tmpfs(tmp_path, "64m")
    try:
        yield mnt / "q", tmp_path / "other"
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


READ_ALL = """
    q = tape.Queue(sys.argv[1], {queue_args})
    t = q.tailer({tailer_args})
    def check(v):
        if v[0] != out["got"]:
            out["wrong"].append(v[0])
        out["got"] += 1
    for _ in range(10):
        check(t.read())
    wait_go()
    while True:
        v = t.read()
        if v is None:
            break
        check(v)
"""


@pytest.mark.parametrize(
    ("queue_args", "tailer_args"),
    [
        ("read_only=True", ""),
        ("", "'reader'"),
    ],
    ids=["read-only tailer", "named tailer"],
)
def test_truncated_under_a_reader(dirs: tuple[Path, Path], queue_args: str, tailer_args: str) -> None:
    qdir, other = dirs
    cycle = _fill(qdir)
    p = _child(READ_ALL.format(queue_args=queue_args, tailer_args=tailer_args), qdir, other)
    _wait_ready(p)
    os.truncate(cycle, 12288)
    _go(p)
    r = _finish(p)
    assert r["error"] == "CorruptionError"
    assert 10 <= int(r["got"]) < 20000  # type: ignore[call-overload]


APPEND = """
    q = tape.Queue(sys.argv[1], clock=lambda: {t0})
    a = q.appender()
    for i in range(20000):
        a.write([i, "x" * 90])
    wait_go()
    for i in range(3):
        try:
            a.write(["after", i])
            out["wrong"].append(i)  # acknowledged past a truncation
        except tape.CorruptionError:
            out["error"] = "CorruptionError"
        except tape.TapeOSError:
            out["error"] = "TapeOSError"
"""


def test_truncated_under_an_appender(dirs: tuple[Path, Path]) -> None:
    qdir, other = dirs
    p = _child(APPEND.format(t0=T0), qdir, other)
    _wait_ready(p)
    (cycle,) = sorted(qdir.glob("*.tape"))
    os.truncate(cycle, 12288)
    _go(p)
    r = _finish(p)
    assert r["error"] in ("CorruptionError", "TapeOSError")


def test_truncated_under_an_appender_and_a_reader(dirs: tuple[Path, Path], tmp_path: Path) -> None:
    """Three processes: an appender, a read-only tailer, this one truncating."""
    qdir, other = dirs
    w = _child(APPEND.format(t0=T0), qdir, other)
    _wait_ready(w)
    r = _child(READ_ALL.format(queue_args="read_only=True", tailer_args=""), qdir,
               tmp_path / "other2")
    _wait_ready(r)
    (cycle,) = sorted(qdir.glob("*.tape"))
    os.truncate(cycle, 12288)
    _go(w)
    _go(r)
    assert _finish(w)["error"] in ("CorruptionError", "TapeOSError")
    assert _finish(r)["error"] == "CorruptionError"


VERIFY = """
    q = tape.Queue(sys.argv[1], read_only=True)
    seen = []
    def progress(walked):
        if not seen:
            seen.append(walked)
            wait_go()
    q.verify(progress=progress)
"""


def test_truncated_under_verify(dirs: tuple[Path, Path]) -> None:
    qdir, other = dirs
    cycle = _fill(qdir, 180000)  # past 16 MiB: verify reports progress midway
    p = _child(VERIFY, qdir, other)
    _wait_ready(p)
    os.truncate(cycle, 12288)
    _go(p)
    assert _finish(p)["error"] == "CorruptionError"


# repair and purge read the files from a fresh mapping: only a truncation
# during the call faults. Race one against the other for a while.
RACE = """
    q = tape.Queue(sys.argv[1])
    wait_go()
    end = time.monotonic() + 1.0
    while time.monotonic() < end:
        try:
            {call}
        except tape.TapeError as e:
            out["error"] = type(e).__name__
"""


@pytest.mark.parametrize("call", ["q.repair()", "q.purge(keep_cycles=1)", "q.cycles()", "q.verify()"])
def test_truncation_races_maintenance(dirs: tuple[Path, Path], call: str) -> None:
    qdir, other = dirs
    q = tape.Queue(qdir, roll_cycle="test_secondly", clock=lambda: T0)
    now = [T0]
    q2 = tape.Queue(qdir, roll_cycle="test_secondly", clock=lambda: now[0])
    a = q2.appender()
    for c in range(3):
        now[0] = T0 + c * 10**9
        a.write_many([[i, "x" * 1000] for i in range(4000)])
    q2.close()
    q.close()
    cycles = sorted(qdir.glob("*.tape"))
    p = _child(RACE.format(call=call), qdir, other)
    _wait_ready(p)
    _go(p)
    deadline = time.monotonic() + 0.8
    size = cycles[-1].stat().st_size
    while time.monotonic() < deadline and p.poll() is None:
        for path in cycles:
            try:
                os.truncate(path, 12288)
                with open(path, "r+b") as f:  # back, as zeros: a fault or damage, at random
                    f.truncate(size)
            except FileNotFoundError:
                pass
        time.sleep(0.001)
    _finish(p)  # normal exit, whatever the calls found


def test_cli_on_a_truncated_queue(dirs: tuple[Path, Path]) -> None:
    qdir, _ = dirs
    cycle = _fill(qdir)
    os.truncate(cycle, 12288)
    for cmd in (["verify"], ["dump"]):
        p = subprocess.run([sys.executable, "-m", "tape", *cmd, str(qdir)], capture_output=True, text=True,
                           timeout=60)
        assert p.returncode in (0, 1), f"tape {cmd[0]}: {_status(p.returncode)}\n{p.stderr}"


# ---- a full tmpfs: a hole of a sealed cycle cannot be given a page --------


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    mnt = _mount_tmpfs(tmp_path, "4m")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _two_cycles_then_full(mnt: Path) -> Path:
    """A test_secondly queue of two cycles (the first sealed, its preallocation
    punched out), then the tmpfs filled up."""
    qdir = mnt / "q"
    now = [T0]
    q = tape.Queue(qdir, roll_cycle="test_secondly", clock=lambda: now[0])
    a = q.appender()
    a.write_many(list(range(100)))
    now[0] += 10**9
    a.write_many(list(range(100)))
    q.close()
    with pytest.raises(OSError), open(mnt / "fill", "wb") as f:
        while True:
            f.write(bytes(1 << 16))
            f.flush()
    return qdir


def test_full_tmpfs_verify(small_tmpfs: Path, tmp_path: Path) -> None:
    """verify skips the holes of a sealed cycle (lseek SEEK_DATA) instead of reading them
    through its mapping, which on a full tmpfs raised SIGBUS: the queue verifies."""
    qdir = _two_cycles_then_full(small_tmpfs)
    body = """
        q = tape.Queue(sys.argv[1], read_only=True)
        r = q.verify()
        out["got"] = r.entries
        if r.problems:
            out["wrong"].append(r.message)
    """
    r = _finish(_child(body, qdir, tmp_path / "other"))
    assert r["error"] is None and r["got"] == 200, r
    for cmd in ("verify", "dump"):
        c = subprocess.run([sys.executable, "-m", "tape", cmd, str(qdir)], capture_output=True, text=True,
                           timeout=60)
        assert c.returncode == 0, f"tape {cmd}: {_status(c.returncode)}\n{c.stderr}"


def test_full_tmpfs_reader_and_appender(small_tmpfs: Path, tmp_path: Path) -> None:
    qdir = _two_cycles_then_full(small_tmpfs)
    body = """
        rq = tape.Queue(sys.argv[1], read_only=True)
        t = rq.tailer()
        while t.read() is not None:
            out["got"] += 1
        q = tape.Queue(sys.argv[1])
        try:
            q.appender().write_many(list(range(100000)))
            out["wrong"].append("a full disk acknowledged")
        except tape.TapeOSError as e:
            out["append"] = e.errno
    """
    r = _finish(_child(body, qdir, tmp_path / "other"))
    assert r["got"] == 200 and r["append"] == 28, r


def test_no_fallocate_still_a_queue(tmp_path: Path) -> None:
    """A filesystem without fallocate (LazyFS, some FUSE, NFS, 9p mounts): files are
    extended with zeros written, past the first 256 KiB, across cycles (issue 17, item 4)."""
    if not cs.hooks_compiled_in():  # TAPE_FAULT would do nothing: fallocate would just work
        pytest.skip("needs a test build of the core (TAPE_FAULT)")
    body = f"""
        now = [{T0}]
        q = tape.Queue(sys.argv[1], roll_cycle="test_secondly", clock=lambda: now[0])
        a = q.appender()
        for c in range(2):
            now[0] = {T0} + c * 10**9
            a.write_many([[i, "x" * 1000] for i in range(2500)])
        r = q.verify()
        out["got"] = r.entries
        if r.problems:
            out["wrong"].append(r.message)
    """
    src = PRE + textwrap.indent(textwrap.dedent(body).strip("\n"), "    ") + "\n" + POST
    env = dict(os.environ, TAPE_FAULT="fallocate:1:EOPNOTSUPP:always")
    p = subprocess.run([sys.executable, "-c", src, str(tmp_path / "q"), str(tmp_path / "other")],
                       capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 0, f"{_status(p.returncode)}\n{p.stderr}"
    r = json.loads(p.stdout.strip().splitlines()[-1])
    assert r["error"] is None and r["got"] == 5000 and r["wrong"] == [], r
    # The newest cycle is allocated: no hole for a full disk to fault on (the sealed
    # one gave its preallocation back).
    st = sorted((tmp_path / "q").glob("*.tape"))[-1].stat()
    assert st.st_blocks * 512 >= st.st_size


META_TRUNCATED = """
    q = tape.Queue(sys.argv[1], clock=lambda: {t0})
    a = q.appender()
    t = q.tailer()
    a.write(["before", 0])
    assert t.read() == ["before", 0]
    wait_go()
    for call in (lambda: a.write(["after", 1]), t.read, q.verify):
        try:
            call()
            out["wrong"].append("a call succeeded on a truncated tape.meta")
        except tape.CorruptionError:
            out["got"] += 1
"""


def test_tape_meta_truncated_under_a_handle(dirs: tuple[Path, Path]) -> None:
    """tape.meta's mapping is guarded too: its truncation makes the handle's calls raise CorruptionError."""
    qdir, other = dirs
    p = _child(META_TRUNCATED.format(t0=T0), qdir, other)
    _wait_ready(p)
    os.truncate(qdir / "tape.meta", 0)
    _go(p)
    r = _finish(p)
    assert r["got"] == 3



# Large entries keep the prefaulter busy ahead of the writer, and the writer
# catching up with it grows the file itself. Truncated under them, the file
# must not silently become whole again: an fallocate that raced the
# truncation (it cannot be made conditional on the size) grows it again with
# zeros where entries were, which readers would take for "nothing yet"; the
# writer's last entry's header reads 0 then, and appends are refused.
APPEND_LARGE = """
    q = tape.Queue(sys.argv[1], codec="raw")
    a = q.appender()
    big = b"x" * {size}
    a.write(big)
    {pause}
    for i in range(100000):  # until the truncation is met (when running, the parent truncates meanwhile)
        try:
            a.write(big)
        except (tape.CorruptionError, tape.TapeOSError) as e:
            out["error"] = type(e).__name__
            out["first_error_at"] = i
            break
    for i in range(3):
        time.sleep(0.01)  # the prefaulter's looks at the file, every 5 ms
        try:
            a.write(big)
            out["wrong"].append("acknowledged after an error")
        except (tape.CorruptionError, tape.TapeOSError):
            pass
    q.close()
"""


@pytest.mark.parametrize("size", [65536, 1 << 20])
@pytest.mark.parametrize("running", [False, True], ids=["paused", "running"])
def test_a_cycle_file_truncated_under_large_appends_stays_reported(dirs: tuple[Path, Path], size: int,
                                                                   running: bool) -> None:
    qdir, other = dirs
    pause = 'print("ready", flush=True)' if running else "wait_go()"
    p = _child(APPEND_LARGE.format(size=size, pause=pause), qdir, other)
    _wait_ready(p)
    (cycle,) = sorted(qdir.glob("*.tape"))
    if running:
        time.sleep(0.02)
    os.truncate(cycle, 12288)
    if not running:
        _go(p)
    r = _finish(p)
    assert r["error"] in ("CorruptionError", "TapeOSError")
    if not running:
        assert r["first_error_at"] == 0  # nothing acknowledged past the cut
    with tape.Queue(qdir, codec="raw", read_only=True) as q:
        assert not q.verify().ok  # grown again or not, the loss shows
