"""Large payloads (issue 22): Tailer.read_view, the zero-copy read.

A view is a read-only memoryview of the mapped cycle file. It holds its part
of the mapping (tape_read_pinned, tape_pin), so it never touches unmapped
memory: not after the tailer reads on, rolls to another cycle, maps a grown
file anew, or is closed with its queue; and a file truncated under a view
reads as zeros, never SIGBUS. The mapping goes when the last view of it does.
"""

from __future__ import annotations

import gc
import io
import os
import queue
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

import tape

T0 = 1763683200 * 10**9
BIG = 1 << 16


def payload(k: int, size: int = BIG) -> bytes:
    """Payload k: its number, then bytes that tell one offset from another."""
    body = bytes(range(256)) * (size // 256 + 1)
    return k.to_bytes(4, "little") + body[k % 256 : k % 256 + size - 4]


def maps_of(path: Path, mode: str = "") -> int:
    """How many mappings of this process are of files under `path` (with `mode`: only those, e.g. "r--s")."""
    with open("/proc/self/maps") as f:
        return sum(str(path) in line and mode in line for line in f)


def test_views_hold_the_entries_as_written(tmp_path: Path) -> None:
    with tape.Queue(tmp_path / "q", codec="raw") as q:
        sizes = [0, 1, 100, BIG, 5 * BIG + 3]
        for k, size in enumerate(sizes):
            q.appender().write(payload(k, size) if size >= 4 else b"x" * size)
        t = q.tailer()
        for k, size in enumerate(sizes):
            v = t.read_view()
            assert v is not None and v.readonly and v.format == "B" and v.nbytes == size
            assert v == (payload(k, size) if size >= 4 else b"x" * size)
        assert t.read_view() is None
        assert t.read_view(timeout=0.01) is None
        assert t.last_read_index == q.last_index


def test_a_view_is_read_only(tmp_path: Path) -> None:
    with tape.Queue(tmp_path / "q", codec="raw") as q:
        q.appender().write(payload(1))
        v = q.tailer().read_view()
        assert v is not None
        with pytest.raises(TypeError):
            v[0] = 1
        with pytest.raises(TypeError):
            memoryview(v)[4:8] = b"abcd"
        under = memoryview(v.obj)  # the object under the view: read-only too, the same bytes
        assert under.readonly and under == payload(1)
        with pytest.raises(TypeError):
            v.obj[0:1] = b"H"
        with pytest.raises(TypeError):
            io.BytesIO(b"abcd").readinto(v.obj)  # asks for a writable buffer


def test_read_view_of_a_closed_tailer_raises(tmp_path: Path) -> None:
    q = tape.Queue(tmp_path / "q", codec="raw")
    q.appender().write(payload(1))
    t = q.tailer()
    t.close()
    with pytest.raises(tape.QueueClosedError):
        t.read_view()
    t = q.tailer()
    q.close()
    with pytest.raises(tape.QueueClosedError):
        t.read_view()


def test_a_view_of_an_encoded_queue_is_the_stored_bytes(tmp_path: Path) -> None:
    with tape.Queue(tmp_path / "q") as q:  # msgpack
        q.appender().write({"k": "v" * 1000})
        stored = q.tailer().read_encoded_batch(1)[0].value
        v = q.tailer().read_view()
        assert v is not None and bytes(v) == stored


def test_read_view_after_read_continues_where_read_stopped(tmp_path: Path) -> None:
    with tape.Queue(tmp_path / "q", codec="raw") as q:
        a = q.appender()
        for k in range(10):
            a.write(payload(k, 1000))
        t = q.tailer()
        assert t.read() == payload(0, 1000)
        assert t.read() == payload(1, 1000)  # a batch is read ahead from here
        v = t.read_view()
        assert v is not None and bytes(v[:4]) == (2).to_bytes(4, "little")
        assert t.read() == payload(3, 1000)


def test_a_named_tailer_stores_its_position_past_the_view(tmp_path: Path) -> None:
    with tape.Queue(tmp_path / "q", codec="raw") as q:
        a = q.appender()
        for k in range(3):
            a.write(payload(k))
        v = q.tailer("reader").read_view()
        assert v is not None and bytes(v[:4]) == (0).to_bytes(4, "little")
    with tape.Queue(tmp_path / "q", codec="raw") as q:
        assert q.tailer("reader").read() == payload(1)


def test_views_outlive_the_tailer_its_cycles_and_the_queue(tmp_path: Path) -> None:
    now = [T0]
    q = tape.Queue(tmp_path / "q", codec="raw", roll_cycle="test_secondly", clock=lambda: now[0])
    a = q.appender()
    for k in range(6):
        now[0] = T0 + k * 10**9  # a cycle file each
        a.write(payload(k))
    t = q.tailer()
    views = [t.read_view() for _ in range(6)]
    sub = views[2][100:200]  # type: ignore[index]
    t.to_start()
    assert t.read() == payload(0)
    q.close()
    assert [bytes(v[:4]) for v in views] == [k.to_bytes(4, "little") for k in range(6)]  # type: ignore[index]
    assert sub == payload(2)[100:200]
    assert maps_of(tmp_path) > 0
    views.clear()
    gc.collect()
    assert sub == payload(2)[100:200]  # a view made from a view holds the mapping too
    del sub
    gc.collect()
    assert maps_of(tmp_path) == 0  # the last view took the mapping with it


def test_a_view_survives_its_tailer_mapping_the_grown_file_anew(tmp_path: Path) -> None:
    # A reader maps 256 MiB of address space at first, and maps the file
    # anew once it reads past that: with a view of the first mapping held,
    # the tailer takes a new mapping and leaves the old one to the view
    # instead of moving it.
    with tape.Queue(tmp_path / "q", codec="raw") as q:
        a = q.appender()
        a.write(payload(0))
        t = q.tailer()
        first = t.read_view()
        chunk = [payload(k, 1 << 20) for k in range(1, 5)]
        for _ in range(70):  # 280 MiB
            a.write_many(chunk)
        n = 0
        while (v := t.read_view()) is not None:
            assert bytes(v[:4]) == (n % 4 + 1).to_bytes(4, "little")
            n += 1
        assert n == 280
        assert maps_of(tmp_path, "r--s") == 2  # the first mapping and the new one
        assert first == payload(0)
        del first, v
        gc.collect()
        assert maps_of(tmp_path, "r--s") == 1


def test_views_released_by_another_thread_while_the_tailer_reads_on(tmp_path: Path) -> None:
    # One thread reads views as a writer in another appends across cycle
    # files; a third checks each view and drops it (the last one of its
    # mapping unmaps it) while the reader goes on.
    now = [T0]
    n = 600
    q = tape.Queue(tmp_path / "q", codec="raw", roll_cycle="test_secondly", clock=lambda: now[0])
    handed: queue.Queue[memoryview | None] = queue.Queue(maxsize=50)
    bad: list[int] = []

    def write() -> None:
        a = q.appender()
        for k in range(n):
            now[0] = T0 + (k // 100) * 10**9
            a.write(payload(k, 20000))

    def check() -> None:
        k = 0
        while (v := handed.get()) is not None:
            if v != payload(k, 20000):
                bad.append(k)
            v.release()
            k += 1

    writer, checker = threading.Thread(target=write), threading.Thread(target=check)
    writer.start()
    checker.start()
    t = q.tailer()
    for _ in range(n):
        v = t.read_view(timeout=10)
        assert v is not None
        handed.put(v)
        del v
    handed.put(None)
    writer.join()
    checker.join()
    q.close()
    gc.collect()
    assert bad == []
    assert maps_of(tmp_path) == 0


TRUNCATE = """
import os, sys, tape
q = tape.Queue(sys.argv[1], codec="raw")
views = [q.tailer().read_view() for _ in range(1)]
t = q.tailer()
views = [t.read_view() for _ in range(20)]
q.close()
print("ready", flush=True)
sys.stdin.readline()
# The file was cut to its first pages: what the views held is gone.
total = sum(v.nbytes for v in views)
zeros = sum(bytes(v).count(0) for v in views)
print(total, zeros, flush=True)
"""


def test_a_view_of_a_truncated_file_reads_zeros_not_sigbus(tmp_path: Path) -> None:
    with tape.Queue(tmp_path / "q", codec="raw") as q:
        a = q.appender()
        for k in range(20):
            a.write(payload(k))
        cycle = q.cycles()[0].path
    p = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(TRUNCATE), str(tmp_path / "q")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert p.stdout is not None and p.stdin is not None
    assert p.stdout.readline().strip() == "ready"
    os.truncate(cycle, 12288)
    p.stdin.write("go\n")
    p.stdin.flush()
    out, _ = p.communicate(timeout=60)
    assert p.returncode == 0, p.returncode  # not killed by SIGBUS (-7)
    total, zeros = map(int, out.split())
    assert total == 20 * BIG and zeros > 19 * BIG
