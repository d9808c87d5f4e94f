"""Writers in several threads and processes, and waiting readers, lose nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import tape


def test_threads_sharing_one_appender_lose_nothing(queue: tape.Queue) -> None:
    a = queue.appender()

    def write(thread: int) -> None:
        for k in range(5_000):
            a.write([thread, k])

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    values = list(queue.tailer())
    assert sorted(map(tuple, values)) == [(n, k) for n in range(4) for k in range(5_000)]
    for n in range(4):
        assert [k for m, k in values if m == n] == list(range(5_000))


WRITER = """
import sys, tape
with tape.Queue(sys.argv[1]) as q:
    a = q.appender()
    for k in range(10_000):
        a.write([int(sys.argv[2]), k])
"""


def test_processes_writing_one_queue_lose_nothing(qpath: Path) -> None:
    tape.Queue(qpath).close()
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(qpath), str(n)]) for n in range(3)]
    assert [w.wait() for w in writers] == [0, 0, 0]
    with tape.Queue(qpath) as q:
        values = list(q.tailer())
    assert sorted(map(tuple, values)) == [(n, k) for n in range(3) for k in range(10_000)]


def test_a_reader_in_another_process_sees_entries_as_they_are_written(qpath: Path) -> None:
    reader = (
        "import sys, tape\n"
        "with tape.Queue(sys.argv[1]) as q:\n"
        "    print(list(q.tailer().follow(timeout=3)))\n"
    )
    tape.Queue(qpath).close()
    proc = subprocess.Popen([sys.executable, "-c", reader, str(qpath)], stdout=subprocess.PIPE, text=True)
    with tape.Queue(qpath) as q:
        a = q.appender()
        for k in range(5):
            time.sleep(0.05)
            a.write(k)
    out, _ = proc.communicate(timeout=30)
    assert out.strip() == "[0, 1, 2, 3, 4]"


def test_ctrl_c_interrupts_a_waiting_read_promptly(queue: tape.Queue) -> None:
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals reach only the main thread")
    t = queue.tailer()
    timer = threading.Timer(0.2, os.kill, args=(os.getpid(), signal.SIGINT))
    timer.start()
    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        t.read(timeout=30)
    assert time.monotonic() - start < 2
    timer.join()


def test_the_interval_sync_thread_stops_on_close(qpath: Path) -> None:
    q = tape.Queue(qpath, sync="interval:5")
    q.appender().write(1)
    assert any(th.name.startswith("tape-sync") for th in threading.enumerate())
    time.sleep(0.05)
    q.close()
    assert not any(th.name.startswith("tape-sync") for th in threading.enumerate())
