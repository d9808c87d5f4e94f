"""What each sync mode leaves in the page cache, seen through cachestat(2).

A power loss drops every dirty page: what sync="interval:<ms>" wrote since its
last flush must not stay dirty once the queue is closed, nor once the process
exits, normally or of an uncaught exception.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import tape

_CACHESTAT = 451  # the syscall's number, the same on x86-64 and arm64 (Linux 6.5)


class _Range(ctypes.Structure):
    _fields_ = [("off", ctypes.c_uint64), ("len", ctypes.c_uint64)]


class _Stat(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in ("cache", "dirty", "writeback", "evicted", "recent")]


def _dirty_pages(path: Path, end: int) -> int:
    """Dirty pages of bytes [0, end) of the file at `path` in the page cache; -1 when the kernel cannot tell."""
    libc = ctypes.CDLL(None, use_errno=True)
    stat = _Stat()
    fd = os.open(path, os.O_RDONLY)
    try:
        rc = libc.syscall(_CACHESTAT, fd, ctypes.byref(_Range(0, end)), ctypes.byref(stat), 0)
    finally:
        os.close(fd)
    return int(stat.dirty) if rc == 0 else -1


def _data_dirty(qpath: Path | str) -> int:
    """Dirty pages holding the entries of the queue's one cycle file (the prefaulter
    dirties zero pages past them, which a power loss may drop: nothing is lost)."""
    with tape.Queue(qpath, read_only=True) as q:
        (cycle,) = q.cycles()
    with open(cycle.path, "rb") as f:
        first_entry = int.from_bytes(f.read(56)[48:56], "little")  # docs/FORMAT.md, cycle file header
    # Whole pages only: the prefaulter may touch the page the data ends in again
    # after a sync (to fault it in for the next writes), which redirties it.
    return _dirty_pages(Path(cycle.path), (first_entry + cycle.bytes) // mmap.PAGESIZE * mmap.PAGESIZE)


_WRITER = """
import sys, tape
from test_durability import _data_dirty
q = tape.Queue(sys.argv[1], sync="interval:600000")  # no flush comes in the test's time
q.appender().write_many([b"x" * 1000] * 1000)
print(_data_dirty(q.path), flush=True)
{end}
"""


def _dirty_after(qpath: Path, end: str) -> tuple[int, int]:
    """Run a writer ending with `end`; the cycle file's dirty pages before its end and after."""
    code = textwrap.dedent(_WRITER).format(end=end)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    run = subprocess.run([sys.executable, "-c", code, str(qpath)], capture_output=True, text=True, env=env)
    assert run.stdout, run.stderr
    return int(run.stdout.split()[0]), _data_dirty(qpath)


@pytest.mark.parametrize(
    "end",
    ["q.close()", "", "raise SystemExit(3)", "raise RuntimeError('the writer failed')"],
    ids=["close", "exit", "sys.exit", "an uncaught exception"],
)
def test_an_interval_queue_leaves_nothing_dirty_when_it_ends(qpath: Path, end: str) -> None:
    before, after = _dirty_after(qpath, end)
    if before <= 0:
        pytest.skip("the kernel cannot tell dirty pages here (no cachestat(2), or tmpfs)")
    assert after == 0
    with tape.Queue(qpath) as q:
        assert q.count() == 1000


def test_closing_an_interval_queue_syncs_what_was_written_since_the_last_flush(qpath: Path) -> None:
    q = tape.Queue(qpath, sync="interval:600000")
    q.appender().write_many([b"x" * 1000] * 1000)
    if _data_dirty(qpath) <= 0:
        q.close()
        pytest.skip("the kernel cannot tell dirty pages here (no cachestat(2), or tmpfs)")
    q.close()
    assert _data_dirty(qpath) == 0
