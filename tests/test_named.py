"""Named tailers: positions kept in the queue, resumed by tailers of the same name."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import tape


def _fill(q: tape.Queue, n: int) -> None:
    q.appender().write_many(list(range(n)))


def test_a_named_tailer_resumes_after_the_last_value_read(queue: tape.Queue) -> None:
    _fill(queue, 10)
    t = queue.tailer("billing")
    assert [t.read() for _ in range(4)] == [0, 1, 2, 3]
    t.close()
    assert queue.tailer("billing").read() == 4


def test_the_stored_position_follows_each_read_while_the_tailer_is_open(queue: tape.Queue) -> None:
    # Nothing may be read ahead of what was handed out: a process killed now
    # must resume with the next value, not skip one.
    _fill(queue, 10)
    first = queue.first_index
    assert first is not None
    t = queue.tailer("billing")
    for k in range(6):
        assert t.read() == k
        assert queue.describe()["named_tailers"]["billing"] == first + k + 1


def test_a_tailer_says_whether_it_stores_its_position(queue: tape.Queue) -> None:
    assert (queue.tailer("billing").name, queue.tailer("billing").stores_position) == ("billing", True)
    assert (queue.tailer().name, queue.tailer().stores_position) == (None, False)


def test_another_name_starts_at_the_start(queue: tape.Queue) -> None:
    _fill(queue, 3)
    queue.tailer("a").read()
    assert queue.tailer("b").read() == 0


def test_breaking_out_of_iteration_stores_what_was_handed_out(queue: tape.Queue) -> None:
    _fill(queue, 100)
    for v in queue.tailer("it"):
        if v == 41:
            break
    assert queue.tailer("it").read() == 42


def test_another_process_resumes_a_named_tailer(qpath: Path) -> None:
    with tape.Queue(qpath) as q:
        _fill(q, 100)
    code = textwrap.dedent(
        f"""
        import tape
        q = tape.Queue({str(qpath)!r})
        t = q.tailer("worker")
        print([t.read() for _ in range(37)][-1])
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "36"
    with tape.Queue(qpath) as q:
        assert q.tailer("worker").read() == 37


def test_the_stored_position_follows_each_value_of_an_iteration(queue: tape.Queue) -> None:
    # A named tailer reads in batches, as an anonymous one does; what it
    # stores is still exactly after the last value handed out.
    _fill(queue, 10_000)
    first = queue.first_index
    assert first is not None
    t = queue.tailer("billing")
    for k, entry in enumerate(t.entries()):
        assert entry.value == k
        if k % 997 == 0:
            assert queue.describe()["named_tailers"]["billing"] == first + k + 1
    assert queue.describe()["named_tailers"]["billing"] == first + 10_000


def test_a_reader_killed_mid_batch_resumes_after_the_last_value_handed_out(qpath: Path) -> None:
    with tape.Queue(qpath) as q:
        _fill(q, 10_000)
    code = textwrap.dedent(
        f"""
        import os, signal, tape
        q = tape.Queue({str(qpath)!r})
        t = q.tailer("worker")
        for k in range(3):
            t.read()  # reads ahead: the batches grow
        for v in t:
            if v == 5_000:
                os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    run = subprocess.run([sys.executable, "-c", code])
    assert run.returncode == -9
    with tape.Queue(qpath) as q:
        assert q.tailer("worker").read() == 5_001


def test_start_places_only_a_new_name(queue: tape.Queue) -> None:
    _fill(queue, 5)
    t = queue.tailer("n", start="end")
    assert t.read() is None
    queue.appender().write(5)
    assert t.read() == 5
    t.close()
    queue.appender().write(6)
    assert queue.tailer("n", start="start").read() == 6


def test_moves_are_stored(queue: tape.Queue) -> None:
    a = queue.appender()
    first = a.write(0)
    a.write_many(range(1, 10))
    t = queue.tailer("m")
    assert t.to_index(first + 6)
    t.close()
    assert queue.tailer("m").read() == 6


def test_describe_lists_named_tailers_and_remove_forgets_them(queue: tape.Queue) -> None:
    a = queue.appender()
    first = a.write("x")
    a.write("y")
    queue.tailer("one").read()
    queue.tailer("two")
    assert queue.describe()["named_tailers"] == {"one": first + 1, "two": None}
    queue.remove_tailer("one")
    assert set(queue.describe()["named_tailers"]) == {"two"}
    with pytest.raises(KeyError):
        queue.remove_tailer("one")


@pytest.mark.parametrize("name", ["", "x" * 48, 7])
def test_bad_names_are_refused(queue: tape.Queue, name: object) -> None:
    with pytest.raises(tape.ArgumentError):
        queue.tailer(name)  # type: ignore[arg-type]


def test_a_read_only_queue_resumes_without_storing(qpath: Path) -> None:
    with tape.Queue(qpath) as q:
        _fill(q, 5)
        q.tailer("r").read()
    with tape.Queue(qpath, read_only=True) as q:
        t = q.tailer("r")
        assert (t.name, t.stores_position) == ("r", False)
        assert [t.read(), t.read()] == [1, 2]
        t.close()
        assert q.tailer("r").read() == 1


def test_spinning_tailer_reads_what_another_thread_writes(queue: tape.Queue) -> None:
    import threading

    t = queue.tailer(spin=True)
    writer = threading.Timer(0.05, lambda: queue.appender().write("late"))
    writer.start()
    assert t.read(timeout=5) == "late"
    writer.join()
    t2 = queue.tailer(spin=0.001)
    assert t2.read(timeout=0.05) == "late"
    with pytest.raises(tape.ArgumentError):
        queue.tailer(spin=-1)
