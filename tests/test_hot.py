"""The hot path in C (tape/_native/_hot*.c): the same answers as the Python path it replaced.

Appender.write/write_many and Tailer.read/read_entry and the tailer's
batches run in C for every codec (raw and msgpack decoded in C, others
through their Python encode/decode); these tests hold them to the public
behaviour: every codec round-trips, errors are the same exceptions, closed
objects raise QueueClosedError, 8 threads write and read at once, and a
million calls do not grow the process.
"""

from __future__ import annotations

import ast
import inspect
import os
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

import tape
from tape.errors import ArgumentError, DecodeError, EncodeError, QueueClosedError

PACKAGE = Path(tape.__file__).resolve().parent
CODECS = ["raw", "msgpack", "json", "pickle"]


def _value(codec: str, k: int) -> Any:
    if codec == "raw":
        return b"v%d" % k
    return {"k": k, "s": "x" * (k % 7), "l": [k, None, True]}


@pytest.mark.parametrize("codec", CODECS)
def test_every_codec_round_trips_through_write_write_many_read_and_iteration(qpath: Path, codec: str) -> None:
    with tape.Queue(qpath, codec=codec) as q:
        a = q.appender()
        assert [a.write(_value(codec, k)) for k in range(3)] == [q.first_index + k for k in range(3)]  # type: ignore[operator]
        a.write_many([_value(codec, k) for k in range(3, 5000)])
        a.write_many(tuple(_value(codec, k) for k in range(5000, 5010)))
        a.write_many(_value(codec, k) for k in range(5010, 5020))  # a generator: the Python path
        want = [_value(codec, k) for k in range(5020)]
        assert list(q.tailer()) == want
        t = q.tailer()
        assert [t.read() for _ in range(5020)] == want
        assert t.read() is None and t.read(default="none") == "none" and t.read(0.01, "x") == "x"
        t = q.tailer()
        entries = [t.read_entry() for _ in range(5020)]
        assert [e.value for e in entries if e is not None] == want
        assert t.read_entry() is None
        assert [e.index for e in q.tailer().entries()] == [e.index for e in entries if e is not None]


def test_msgpack_values_past_the_fast_path_go_through_the_codec(queue: tape.Queue) -> None:
    when = datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    a = queue.appender()
    a.write(when)  # a timestamp extension: msgpack-python's
    a.write_many([1, when, (1, 2), 2**64 - 1])
    with pytest.raises(EncodeError):
        a.write({(1, 2): 3})  # a tuple key
    with pytest.raises(EncodeError):
        a.write_many([1, {1, 2}])  # a set: nothing of the batch is written
    assert list(queue.tailer()) == [when, 1, when, [1, 2], 2**64 - 1]


def test_raw_takes_bytes_like_values_and_refuses_the_rest(raw_queue: tape.Queue) -> None:
    a = raw_queue.appender()
    a.write(bytearray(b"ba"))
    a.write(memoryview(b"mv"))
    a.write_many([b"1", bytearray(b"2"), memoryview(b"3")])
    with pytest.raises(EncodeError):
        a.write("text")
    with pytest.raises(EncodeError):
        a.write_many([b"ok", 5])
    with pytest.raises(ArgumentError):
        a.write_many([])
    with pytest.raises(TypeError):
        a.write_many(5)
    assert list(raw_queue.tailer()) == [b"ba", b"mv", b"1", b"2", b"3"]


def test_a_value_that_fails_to_decode_ends_the_batch_and_reading_goes_on(queue: tape.Queue) -> None:
    a = queue.appender()
    a.write_many([1, 2])
    a.write_encoded(b"\xc1")  # never a msgpack value
    a.write_many([3, 4])
    t = queue.tailer()
    assert t.read() == 1
    assert t.read() == 2
    with pytest.raises(DecodeError):
        t.read()
    assert [t.read(), t.read()] == [3, 4]
    it = iter(queue.tailer())
    assert [next(it), next(it)] == [1, 2]
    with pytest.raises(DecodeError):
        next(it)


def test_keywords_a_clock_and_sync_always_take_the_python_path(qpath: Path) -> None:
    ticks = iter(range(10**18, 10**18 + 100))
    with tape.Queue(qpath, clock=lambda: next(ticks)) as q:
        a = q.appender()
        a.write(1)
        a.write_many([2, 3])
        a.write(4, key="k", delay=1.5)
        t = q.tailer()
        e = t.read_entry()
        assert e is not None and e.timestamp == 10**18 and e.value == 1
        assert [t.read(), t.read()] == [2, 3]
        e = t.read_entry()
        assert e is not None and e.key == "k" and e.not_before == 10**18 + 2 + 1_500_000_000
    with tape.Queue(qpath.with_name("s"), sync="always") as q:
        q.appender().write_many([1, 2])
        q.appender().write(3)
        assert list(q.tailer()) == [1, 2, 3]


def _keyed_calls(q: tape.Queue, value: Any) -> list[Any]:
    """Keyed writes, compare-and-appends and deletes, as results (indexes relative to the first, None, an error)."""
    a = q.appender()
    out: list[Any] = []
    base = a.write(value, key="base")

    def run(call: Any) -> None:
        try:
            r = call()
            out.append(r if r is None else r - base)
        except Exception as exc:  # the error is the answer
            out.append((type(exc).__name__, str(exc)))

    class Key(str):
        pass

    for key in ["k", b"k", "\u00e9t\u00e9", Key("sub"), None, "x" * 1024, b"b" * 1024]:
        run(lambda: a.write(value, key=key))
    for key in ["", b"", "x" * 1025, b"b" * 1025, 7, bytearray(b"k"), "\udcff"]:
        run(lambda: a.write(value, key=key))
    run(lambda: a.write(value, key="k", delay=5))
    run(lambda: a.write(value, key="k", nope=1))
    run(lambda: a.write_if(value, key="new"))  # none yet: appended
    run(lambda: a.write_if(value, None, key="new"))  # there is one now: a conflict
    run(lambda: a.write_if(value, base + 1, key="k"))  # not the newest of "k"
    run(lambda: a.write_if(value, last=q.latest("k").index, key="k"))  # type: ignore[union-attr]
    run(lambda: a.write_if(value, q.latest(b"k").index, key=b"k"))  # type: ignore[union-attr]
    run(lambda: a.write_if(value, a.last_index))
    run(lambda: a.write_if(value, base))
    for last in [-1, True, 2**63, "1", 1.0]:
        run(lambda: a.write_if(value, last, key="k"))
    run(lambda: a.write_if(value, 1, last=1))
    run(lambda: a.write_if(value, None, key="\udcff"))
    run(lambda: a.delete("k"))
    run(lambda: a.delete(b"k"))
    run(lambda: a.delete(key="new"))
    for key in ["", b"x" * 1025, 3, "\udcff"]:
        run(lambda: a.delete(key))
    run(lambda: a.delete("k", "extra"))
    t = q.tailer()
    while (e := t.read_entry()) is not None:
        out.append((e.index - base, e.value, e.key, e.tombstone))
    out.append(sorted(map(repr, q.keys())))
    return out


@pytest.mark.parametrize("codec", CODECS)
def test_keyed_write_write_if_and_delete_in_c_answer_as_the_python_path(tmp_path: Path, codec: str) -> None:
    # A queue with a clock takes the Python path for every call: the same
    # calls without one (in C where it can) give the same indexes, errors,
    # entries and keys.
    value = _value(codec, 3)
    with tape.Queue(tmp_path / "c", codec=codec) as q:
        fast = _keyed_calls(q, value)
    with tape.Queue(tmp_path / "p", codec=codec, clock=lambda: 10**18) as q:
        slow = _keyed_calls(q, value)
    assert fast == slow
    assert ("ArgumentError", "key must be 1 to 1024 bytes, not 0") in fast
    assert None in fast  # a conflict


def test_the_signatures_and_docstrings_are_the_public_ones() -> None:
    params = inspect.signature(tape.Appender.write).parameters
    assert list(params) == ["self", "obj", "key", "delay", "not_before"]
    assert list(inspect.signature(tape.Appender.write_many).parameters) == ["self", "objs", "delay", "not_before"]
    assert list(inspect.signature(tape.Tailer.read).parameters) == ["self", "timeout", "default"]
    assert list(inspect.signature(tape.Tailer.read_entry).parameters) == ["self", "timeout"]
    assert list(inspect.signature(tape.Appender.write_if).parameters) == ["self", "obj", "last", "key"]
    assert list(inspect.signature(tape.Appender.delete).parameters) == ["self", "key"]
    for method in (tape.Appender.write, tape.Appender.write_many, tape.Appender.write_if, tape.Appender.delete,
                   tape.Tailer.read, tape.Tailer.read_entry):
        assert method.__doc__ and len(method.__doc__) > 40


def test_closed_appenders_and_tailers_raise_queue_closed(raw_queue: tape.Queue) -> None:
    a = raw_queue.appender()
    write, write_many = a.write, a.write_many
    a.write_many([b"1", b"2", b"3"])
    a.close()
    for call in (lambda: write(b"x"), lambda: write_many([b"x"]), lambda: a.write(b"x", key="k")):
        with pytest.raises(QueueClosedError):
            call()
    t = raw_queue.tailer()
    read, read_entry = t.read, t.read_entry
    assert read() == b"1" and read() == b"2"  # the second read peeks a batch
    t.close()
    for call in (read, read_entry, lambda: t.read(0.01), lambda: list(t), t.read_encoded_batch):
        with pytest.raises(QueueClosedError):
            call()
    # a bound method keeps its appender (and tailer) open, as a Python method did
    write = raw_queue.appender().write
    assert write(b"4") >= 0
    assert raw_queue.tailer().read_encoded_batch(10)[-1].value == b"4"


def test_a_queue_closed_while_threads_write_stops_them_with_queue_closed(qpath: Path) -> None:
    q = tape.Queue(qpath, codec="raw")
    errors: list[BaseException] = []
    started = threading.Barrier(5)

    def writer() -> None:
        a = q.appender()
        started.wait()
        try:
            while True:
                a.write(b"x" * 100)
                a.write_many([b"y"] * 10)
        except QueueClosedError:
            pass
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for th in threads:
        th.start()
    started.wait()
    q.close()
    for th in threads:
        th.join()
    assert errors == []


@pytest.mark.parametrize("codec", ["raw", "msgpack"])
def test_eight_threads_write_and_eight_read_at_once(qpath: Path, codec: str) -> None:
    per_thread = 20_000
    with tape.Queue(qpath, codec=codec) as q:
        a = q.appender()
        seen: list[list[Any]] = [[] for _ in range(8)]
        done = threading.Event()

        def write(w: int) -> None:
            k = 0
            while k < per_thread:
                if k % 3:
                    a.write([w, k] if codec == "msgpack" else b"%d %d" % (w, k))
                    k += 1
                else:
                    n = min(50, per_thread - k)
                    a.write_many([[w, k + j] if codec == "msgpack" else b"%d %d" % (w, k + j) for j in range(n)])
                    k += n

        def read(r: int) -> None:
            t = q.tailer()
            total = 8 * per_thread
            while len(seen[r]) < total:
                value = t.read(timeout=0.05) if r % 2 else next(iter(t), None)
                if value is not None:
                    seen[r].append(value)
                elif done.is_set() and t.read() is None and len(seen[r]) < total:
                    raise AssertionError(f"reader {r} stopped at {len(seen[r])}")

        readers = [threading.Thread(target=read, args=(r,)) for r in range(8)]
        writers = [threading.Thread(target=write, args=(w,)) for w in range(8)]
        for th in readers + writers:
            th.start()
        for th in writers:
            th.join()
        done.set()
        for th in readers:
            th.join()
        everything = list(q.tailer())
    decode = (lambda v: tuple(v)) if codec == "msgpack" else (lambda v: tuple(map(int, v.split())))
    got = [decode(v) for v in everything]
    assert sorted(got) == sorted((w, k) for w in range(8) for k in range(per_thread))
    for w in range(8):  # each writer's values in its order
        assert [k for (ww, k) in got if ww == w] == list(range(per_thread))
    for r in range(8):
        assert seen[r] == everything


def _anon_kib() -> int:
    """The process's resident anonymous memory (the heap; not the queue's mapped files), in KiB."""
    with open(f"/proc/{os.getpid()}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("RssAnon:"))


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs /proc")
@pytest.mark.skipif("libasan" in os.environ.get("LD_PRELOAD", ""), reason="AddressSanitizer holds freed memory back")
def test_a_million_calls_do_not_grow_the_process(tmp_path: Path) -> None:
    # A reference leaked per call would keep 1 M objects (tens of MB).
    n = 1_000_000
    with tape.Queue(tmp_path / "raw", codec="raw") as raw, tape.Queue(tmp_path / "mp") as mp:
        a, m = raw.appender(), mp.appender()
        t, u = raw.tailer(), mp.tailer()

        def round_() -> None:
            for _ in range(n // 10):
                a.write(b"x" * 100)
                m.write({"a": 1, "b": [1, 2]})
            a.write_many([b"y"] * 1000)
            m.write_many([{"a": 1}] * 1000)
            while t.read() is not None:
                pass
            for _ in u:
                pass
            while t.read_entry() is not None:
                pass
            for _ in range(1000):
                with pytest.raises(EncodeError):
                    a.write("not bytes")
                with pytest.raises(EncodeError):
                    m.write({1j})

        round_()  # warm up: buffers, caches, the mapped files
        before = _anon_kib()
        for _ in range(4):
            round_()
        grown = _anon_kib() - before
    # 4 rounds, 1.6 M calls: a leaked object per call would hold over 50 MB
    assert grown < 16_000, f"the heap grew by {grown} KiB"


def test_only_the_binding_layer_imports_the_hot_extension() -> None:
    importers = set()
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            names += [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            if any(name.startswith("tape._native._hot") for name in names) or (
                isinstance(node, ast.ImportFrom) and any(alias.name == "_hot" for alias in node.names)
            ):
                importers.add(path.relative_to(PACKAGE).as_posix())
    assert importers and all(p.startswith("_native/") for p in importers), importers


def _write_forever(path: str) -> None:
    with tape.Queue(path, codec="raw") as q:
        a = q.appender()
        batch = [b"c" * 100] * 2000
        while True:
            a.write_many(batch)  # holds the write lock for most of each call


_PROBE = """\
import sys, tape
a = tape.Queue(sys.argv[1], codec="raw").appender()
print("ready", flush=True)
a.write(b"probe")
"""


def test_a_write_waiting_for_the_write_lock_lets_other_threads_run(qpath: Path) -> None:
    # A child process that appends all the time is stopped (SIGSTOP) until a
    # probe process finds the write lock held (its write does not finish within
    # a second): a
    # write of ours then waits for the stopped child, and must let the GIL go
    # meanwhile, so that this thread runs on while it waits.
    import multiprocessing
    import signal
    import subprocess
    import sys
    import time

    tape.Queue(qpath, codec="raw").close()
    child = multiprocessing.get_context("spawn").Process(target=_write_forever, args=(str(qpath),), daemon=True)
    child.start()
    assert child.pid is not None
    # Were the GIL held while waiting, nothing here would run until the child
    # is resumed: a watchdog resumes it every 10 s, so that the test fails
    # rather than hangs.
    watchdog = subprocess.Popen(
        ["sh", "-c", f"while kill -0 {child.pid} 2>/dev/null; do sleep 10; kill -CONT {child.pid}; done"]
    )
    try:
        with tape.Queue(qpath, codec="raw") as q:
            a = q.appender()
            while len(q.tailer().read_encoded_batch(1)) == 0:  # the child has started writing
                time.sleep(0.01)
            for _ in range(30):
                os.kill(child.pid, signal.SIGSTOP)
                probe = subprocess.Popen([sys.executable, "-c", _PROBE, str(qpath)], stdout=subprocess.PIPE)
                assert probe.stdout is not None
                probe.stdout.readline()  # "ready": started, the queue open
                try:
                    probe.wait(timeout=1)
                except subprocess.TimeoutExpired:
                    probe.kill()
                    probe.wait()
                    break  # the probe's write waits: the stopped child holds the write lock
                finally:
                    probe.stdout.close()
                os.kill(child.pid, signal.SIGCONT)
            else:
                pytest.skip("the child was never stopped holding the write lock")
            # plain, keyed, compare-and-append and delete: each waits letting the GIL go
            calls = [lambda: a.write(b"mine"), lambda: a.write(b"mine", key="k"),
                     lambda: a.write_if(b"mine", key=b"w"), lambda: a.delete("d")]
            done = [threading.Event() for _ in calls]
            writers = [threading.Thread(target=lambda c=c, d=d: (c(), d.set())) for c, d in zip(calls, done)]
            for w in writers:
                w.start()
            for w in writers:
                w.join(0.5)  # this thread runs again while the writers wait
            assert not any(d.is_set() for d in done), "a write did not wait, or held the GIL till the child went on"
            os.kill(child.pid, signal.SIGCONT)
            for w in writers:
                w.join()
            assert all(d.is_set() for d in done)
    finally:
        os.kill(child.pid, signal.SIGCONT)
        child.terminate()
        child.join()
        watchdog.kill()
        watchdog.wait()
