"""A fork child and its parent's write lock: the death of either is seen while the other lives.

A process that dies holding the write lock is found dead through a lock the
kernel releases when it dies. A fork child used to share that lock with its
parent (same open file, same token), so a parent killed holding the write
lock while its child lived kept every writer waiting for ever, and a child
killed holding it kept its parent waiting for itself.
"""

from __future__ import annotations

import os
import signal
import subprocess
import textwrap
from pathlib import Path

import pytest

import tape
from crash_support import PYTHON, child_env, hooks_compiled_in

pytestmark = pytest.mark.skipif(not hooks_compiled_in(), reason="needs the kill points of a test build")


def write_one(path: Path, value: bytes) -> subprocess.CompletedProcess[str]:
    """Append `value` from a new process; it takes the write lock over from a dead holder."""
    code = f"import tape\nwith tape.Queue({str(path)!r}, codec='raw') as q:\n    q.appender().write({value!r})\n"
    return subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, timeout=30)


def test_a_parent_killed_holding_the_write_lock_is_seen_dead_while_its_child_lives(tmp_path: Path) -> None:
    path = tmp_path / "q"
    parent = textwrap.dedent(f"""
        import os, time, tape
        q = tape.Queue({str(path)!r}, codec="raw")
        a = q.appender()
        a.write(b"before")
        pid = os.fork()
        if pid == 0:        # the child never touches the queue; it outlives its parent
            time.sleep(120)
            os._exit(0)
        print(pid, flush=True)
        a.write(b"never")   # killed here, holding the write lock (TAPE_KILL)
    """)
    proc = subprocess.Popen([PYTHON, "-c", parent], stdout=subprocess.PIPE, text=True,
                            env=child_env(kill="after_reserve:2"))
    assert proc.stdout is not None
    child = int(proc.stdout.readline())
    try:
        assert proc.wait(timeout=30) == -signal.SIGKILL
        os.kill(child, 0)  # alive
        done = write_one(path, b"after")  # observed before: waited for ever
        assert done.returncode == 0, done.stderr
    finally:
        os.kill(child, signal.SIGKILL)
    with tape.Queue(path, codec="raw") as q:
        assert list(q.tailer()) == [b"before", b"after"]


def test_a_child_killed_holding_the_write_lock_is_seen_dead_by_its_parent(tmp_path: Path) -> None:
    path = tmp_path / "q"
    script = textwrap.dedent(f"""
        import os, tape
        q = tape.Queue({str(path)!r}, codec="raw")
        a = q.appender()
        a.write(b"parent")          # kill point hit 1
        pid = os.fork()
        if pid == 0:
            a.write(b"child")       # hit 2 (the child's count)
            a.write(b"never")       # hit 3: the child is killed holding the write lock
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == 9, status
        a.write(b"parent again")    # hit 2 here: observed before, the parent waited for itself
        print("ok", flush=True)
    """)
    done = subprocess.run([PYTHON, "-c", script], capture_output=True, text=True, timeout=30,
                          env=child_env(kill="after_reserve:3"))
    assert done.returncode == 0 and done.stdout == "ok\n", done.stderr
    with tape.Queue(path, codec="raw") as q:
        assert list(q.tailer()) == [b"parent", b"child", b"parent again"]


def test_a_parent_and_its_child_write_side_by_side(tmp_path: Path) -> None:
    path = tmp_path / "q"
    script = textwrap.dedent(f"""
        import os, tape
        q = tape.Queue({str(path)!r}, codec="raw")
        a = q.appender()
        a.write(b"first")
        pid = os.fork()
        me = b"c" if pid == 0 else b"p"
        for i in range(2000):
            a.write(me + b"%d" % i)
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        q.close()
    """)
    done = subprocess.run([PYTHON, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    with tape.Queue(path, codec="raw") as q:
        values = list(q.tailer())
    assert values[0] == b"first" and len(values) == 4001
    for who in (b"c", b"p"):
        assert [v for v in values if v[:1] == who] == [who + b"%d" % i for i in range(2000)]
