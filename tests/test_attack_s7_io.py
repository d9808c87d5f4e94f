"""Attack on session 7's fork handling, zero-copy reads and replication leftovers (review, branch attack2).

Each xfail(strict=True) test shows a bug found today: it must pass once fixed.
The others pass and cover what was not covered.
"""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import tape

T0 = 1763683200 * 10**9

# The child of a process that just appended large entries appends once; a
# child stuck for 5 s (SIGALRM, status 14) is counted as hung.
FORK_AFTER_LARGE_WRITES = """
import os, signal, sys, tape
q = tape.Queue(sys.argv[1], codec="raw")
a = q.appender()
big = b"x" * 65536
for i in range(100):
    for k in range(20):
        a.write(big)            # keeps the prefaulter thread busy (it holds w_mu while it works)
    pid = os.fork()
    if pid == 0:
        signal.alarm(5)
        a.write(b"child")
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    if status != 0:
        print("hung at fork", i, "status", status, flush=True)
        sys.exit(1)
print("ok", flush=True)
"""


def test_a_fork_child_writes_after_its_parent_appended_large_entries(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", FORK_AFTER_LARGE_WRITES, str(tmp_path / "q")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout == "ok\n", done.stdout + done.stderr


# A fork child appends about 200 MiB and reports its resident memory (MiB).
CHILD_RSS = """
import os, signal, sys, tape
q = tape.Queue(sys.argv[1], codec="raw")
a = q.appender()
a.write(b"first")
pid = os.fork()
if pid == 0:
    signal.alarm(10)  # a hang at the first write (see the first test) ends here
    big = b"z" * 65536
    for i in range(3200):
        a.write(big)
    rss = [int(l.split()[1]) // 1024 for l in open("/proc/self/status") if l.startswith("VmRSS")][0]
    print(rss, flush=True)
    os._exit(0)
os.waitpid(pid, 0)
"""


def test_a_fork_childs_resident_memory_stays_bounded_while_it_writes(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", CHILD_RSS, str(tmp_path / "q")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) < 120, done.stdout  # MiB, for 200 MiB written


# Its newest cycle file removed behind tape's back, a writer's later appends
# would be acknowledged and lost; the parent's are refused (CorruptionError).
CHILD_WRITES_TO_A_REMOVED_FILE = """
import os, signal, sys, time, tape
q = tape.Queue(sys.argv[1], codec="raw")
a = q.appender()
a.write(b"first")
pid = os.fork()
if pid == 0:
    signal.alarm(10)  # a hang at the first write (see the first test) ends here
    os.unlink(q.cycles()[-1].path)
    time.sleep(0.1)
    try:
        for i in range(50):
            a.write(b"lost?")
            time.sleep(0.01)
        print("acknowledged and lost", flush=True)
    except tape.TapeError as exc:
        print(type(exc).__name__, flush=True)
    os._exit(0)
os.waitpid(pid, 0)
"""


def test_a_fork_child_refuses_appends_to_a_removed_newest_file(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", CHILD_WRITES_TO_A_REMOVED_FILE, str(tmp_path / "q")],
                          capture_output=True, text=True, timeout=60)
    assert done.stdout == "CorruptionError\n", done.stdout + done.stderr


@pytest.mark.parametrize("timeout", [-1, float("nan"), True, "1"])
def test_read_view_refuses_a_bad_timeout_like_read(tmp_path: Path, timeout: object) -> None:
    with tape.Queue(tmp_path / "q", codec="raw") as q:
        q.appender().write(b"there")
        with pytest.raises(tape.TapeError):
            q.tailer().read(timeout=timeout)  # type: ignore[arg-type]
        with pytest.raises(tape.TapeError):
            q.tailer().read_view(timeout=timeout)  # type: ignore[arg-type]


WRITE_THROUGH_OBJ = """
import sys, tape
with tape.Queue(sys.argv[1], codec="raw") as q:
    q.appender().write(b"hello")
    v = q.tailer().read_view()
    try:
        v.obj[0:1] = b"H"       # the memoryview is read-only; the object under it must be too
    except TypeError:
        print("refused", flush=True)
"""


def test_the_object_under_a_view_is_read_only_too(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", WRITE_THROUGH_OBJ, str(tmp_path / "q")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout == "refused\n", (done.returncode, done.stderr[-500:])


def test_write_encoded_many_writes_nothing_when_a_keyed_items_origin_is_a_bool(tmp_path: Path) -> None:
    with tape.Queue(tmp_path / "q", codec="raw") as q:
        items = [(b"a", None, None, None, False), (b"b", "k", None, None, False),
                 (b"c", "k2", None, (True, 5), False)]
        with pytest.raises(tape.TapeError):
            q.appender().write_encoded_many(items)
        assert list(q.tailer()) == []


@pytest.mark.parametrize("origin", [(True, 5), (1, True)])
def test_write_encoded_many_refuses_a_bool_in_an_origin_as_write_encoded_does(tmp_path: Path,
                                                                               origin: tuple[int, int]) -> None:
    with tape.Queue(tmp_path / "q", codec="raw") as q:
        a = q.appender()
        with pytest.raises(tape.ArgumentTypeError):
            a.write_encoded(b"x", origin=origin)
        with pytest.raises(tape.ArgumentTypeError):
            a.write_encoded_many([(b"x", None, None, origin, False)])
        assert list(q.tailer()) == []


def test_a_copy_with_a_local_entry_after_its_copies_is_refused_as_a_source(nats_server: Any,
                                                                             tmp_path: Path) -> None:
    from tape.replicate import Ingester, ReplicationError, Replicator

    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    with tape.Queue(a, codec="raw") as q:
        for i in range(10):
            q.appender().write(b"a%d" % i)
    url = nats_server.url
    with Replicator(a, url, stream="S1") as r:
        r.run()
    with Ingester(url, stream="S1", path=b) as i:
        i.run()
    with Replicator(b, url, stream="S2") as r:
        r.run()
    with tape.Queue(b) as q:
        q.appender().write_encoded(b"local")  # B is a copy: this entry has no origin
    with Replicator(b, url, stream="S2") as r, pytest.raises(ReplicationError):
        r.run()  # "a queue that mixes ingested entries and others cannot be shipped as a copy"


# -- what held -----------------------------------------------------------------------------------


def test_read_view_reads_backward_and_a_purged_file_stays_readable_under_a_view(tmp_path: Path) -> None:
    now = [T0]
    with tape.Queue(tmp_path / "q", codec="raw", roll_cycle="test_secondly", clock=lambda: now[0]) as q:
        a = q.appender()
        for k in range(6):
            now[0] = T0 + k * 10**9  # a cycle file each
            a.write(b"%d" % k * 1000)
        t = q.tailer()
        t.direction = "backward"
        t.to_end()
        seen = []
        while (v := t.read_view()) is not None:
            seen.append(bytes(v[:1]))
        assert seen == [b"5", b"4", b"3", b"2", b"1", b"0"]
        first = q.tailer().read_view()
        assert len(q.purge(keep_cycles=1)) == 5
        assert first == b"0" * 1000  # its file is gone from the folder, not from the mapping


def test_slices_and_casts_of_a_view_outlive_its_release_and_the_queue(tmp_path: Path) -> None:
    q = tape.Queue(tmp_path / "q", codec="raw")
    q.appender().write(bytes(range(256)) * 4)
    v = q.tailer().read_view()
    assert v is not None
    words, part = v.cast("I"), v[10:20]
    v.release()
    q.close()
    gc.collect()
    assert bytes(part) == bytes(range(10, 20))
    assert words[1] == int.from_bytes(bytes(range(4, 8)), "little")


FORK_OF_A_FORK = """
import os, signal, sys, tape
q = tape.Queue(sys.argv[1], codec="raw")
ro = tape.Queue(sys.argv[1], read_only=True)
a = q.appender()
a.write(b"p")
pid = os.fork()
if pid == 0:
    signal.alarm(10)  # a hang at the first write (see the first test) ends here
    a.write(b"c")
    pid2 = os.fork()
    if pid2 == 0:
        a.write(b"g")
        q.close(); ro.close()
        os._exit(0)
    os.waitpid(pid2, 0)
    a.write(b"c2")
    q.close(); ro.close()
    os._exit(0)
os.waitpid(pid, 0)
a.write(b"p2")
print(sorted(ro.tailer()), flush=True)
"""


def test_a_fork_of_a_fork_writes_and_closes(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(FORK_OF_A_FORK), str(tmp_path / "q")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "[b'c', b'c2', b'g', b'p', b'p2']\n"


@pytest.mark.parametrize("stream", ["a" * 250, "\u00e9" * 100])
def test_a_long_stream_name_gives_a_lock_file_or_a_tape_error(tmp_path: Path, stream: str) -> None:
    from tape.replicate import Replicator

    with tape.Queue(tmp_path / "q", codec="raw") as q:
        q.appender().write(b"x")
    Replicator(str(tmp_path / "q"), "nats://127.0.0.1:1", stream=stream).close()  # connects only in run()
    (lock,) = (tmp_path / "q" / "replication").iterdir()
    assert len(lock.name.encode()) <= 255


GROUP_IN_A_CHILD = """
import os, sys, signal, tape
q = tape.Queue(sys.argv[1], codec="raw")
a = q.appender()
for i in range(6):
    a.write(b"%d" % i)
c = q.group("g", ack_wait=600).consumer()
first = c.claim()
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    try:
        c.claim()
        os._exit(3)             # the parent's consumer is not the child's
    except tape.QueueClosedError:
        pass
    own = q.group("g").consumer()
    os.write(w, b",".join([own.claim().value, own.claim().value]))
    signal.pause()              # killed holding its two claims
os.close(w)
assert os.read(r, 100) == b"1,2"
os.kill(pid, signal.SIGKILL)
os.waitpid(pid, 0)
seen = []
while len(seen) < 5 and (d := c.claim(timeout=30)) is not None:  # the dead child's come back
    seen.append(d.value)
    d.ack()
first.ack()
print(sorted(seen), c.claim(), flush=True)
"""


def test_a_child_killed_holding_claims_of_its_own_consumer_gives_them_back(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", GROUP_IN_A_CHILD, str(tmp_path / "q")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "[b'1', b'2', b'3', b'4', b'5'] None\n"
