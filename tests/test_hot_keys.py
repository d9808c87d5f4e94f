"""Queue.latest(key) in C (tape/_native/_hot_keys.c): the same answers as the Python path it replaced.

latest runs in C for str and bytes keys of every codec (raw and msgpack
decoded in C, others through the codec's decode); what C hands back (a bad
key, an error, a closed queue) takes the Python path. These tests hold it to
the public behaviour: the Entry a tailer reads, the same exceptions,
QueueClosedError once closed (also for threads calling it while the queue
closes), a fork child, a key directory rebuilt from the log.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest

import tape
from tape.errors import ArgumentError, ArgumentTypeError, QueueClosedError

CODECS = ["raw", "msgpack", "json", "pickle"]


def _value(codec: str, k: int) -> Any:
    return b"v%d" % k if codec == "raw" else {"k": k, "l": [k, None, "x" * k]}


def _by_index(q: tape.Queue) -> dict[int, tape.Entry]:
    return {e.index: e for e in q.tailer().entries()}


@pytest.mark.parametrize("codec", CODECS)
def test_latest_is_the_entry_a_tailer_reads_for_every_codec(qpath: Path, codec: str) -> None:
    with tape.Queue(qpath, codec=codec) as q:
        a = q.appender()
        keys: list[str | bytes] = ["a", "é-ü", b"\x00b", b"\xff\xfe", "k" * 1024]
        for k in range(20):
            a.write(_value(codec, k), key=keys[k % len(keys)])
        a.write(_value(codec, 99), key="later", delay=60)
        a.write(_value(codec, 98), key="gone")
        a.delete("gone")
        read = _by_index(q)
        for key in [*keys, "later"]:
            got = q.latest(key)
            assert got is not None and got == read[got.index] and type(got) is tape.Entry
        assert q.latest("later").not_before is not None  # type: ignore[union-attr]
        # a key is its bytes: a str and the bytes of its UTF-8 name the same entry, which keeps its own type
        assert q.latest(b"a") == q.latest("a") and q.latest("a").key == "a"  # type: ignore[union-attr]
        assert q.latest("\x00b") == q.latest(b"\x00b") and q.latest("\x00b").key == b"\x00b"  # type: ignore[union-attr]
        assert q.latest("\udcff\udcfe") == read[q.latest(b"\xff\xfe").index]  # type: ignore[union-attr]
        assert q.latest("gone") is None and q.latest("never") is None and q.latest(b"never") is None


def test_bad_keys_raise_what_the_python_path_raised(raw_queue: tape.Queue) -> None:
    raw_queue.appender().write(b"x", key="k")

    class Key(str):
        pass

    assert raw_queue.latest(Key("k")) == raw_queue.latest("k")  # a str subclass: the Python path
    for bad, error in ((1, ArgumentTypeError), (None, ArgumentTypeError), (bytearray(b"k"), ArgumentTypeError),
                       ("", ArgumentError), (b"", ArgumentError), ("k" * 1025, ArgumentError),
                       (b"k" * 1025, ArgumentError)):
        with pytest.raises(error):
            raw_queue.latest(bad)  # type: ignore[arg-type]


def test_a_closed_queue_raises_queue_closed(qpath: Path) -> None:
    q = tape.Queue(qpath, codec="raw")
    q.appender().write(b"x", key="k")
    latest = q.latest
    assert latest("k") is not None
    q.close()
    for key in ("k", b"k", "never", ""):
        with pytest.raises(QueueClosedError):
            latest(key)
    with tape.Queue(qpath, codec="raw") as again:  # another handle of the same queue answers
        assert again.latest("k") is not None


@pytest.mark.parametrize("codec", ["raw", "msgpack"])
def test_threads_calling_latest_while_the_queue_closes_see_entries_then_queue_closed(qpath: Path, codec: str) -> None:
    q = tape.Queue(qpath, codec=codec)
    a = q.appender()
    for k in range(100):
        a.write(_value(codec, k), key=f"key-{k}")
    want = {f"key-{k}": _value(codec, k) for k in range(100)}
    errors: list[BaseException] = []
    calls = [0] * 4
    started = threading.Barrier(5)

    def reader(n: int) -> None:
        started.wait()
        try:
            while True:
                key = f"key-{calls[n] % 100}"
                got = q.latest(key)
                assert got is not None and got.value == want[key] and got.key == key
                calls[n] += 1
        except QueueClosedError:
            pass
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=reader, args=(n,)) for n in range(4)]
    for th in threads:
        th.start()
    started.wait()
    while min(calls) < 1000:
        a.write(_value(codec, 0), key="key-0")  # rewritten meanwhile: the same value, a newer entry
    q.close()
    for th in threads:
        th.join()
    assert errors == []


def test_a_fork_child_reads_latest(raw_queue: tape.Queue) -> None:
    a = raw_queue.appender()
    a.write(b"1", key="k")
    assert raw_queue.latest("k").value == b"1"  # type: ignore[union-attr]
    pid = os.fork()
    if pid == 0:  # the child: its exit status says
        ok = raw_queue.latest("k").value == b"1"  # type: ignore[union-attr]
        a.write(b"2", key="k")
        os._exit(0 if ok and raw_queue.latest("k").value == b"2" else 1)  # type: ignore[union-attr]
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert raw_queue.latest("k").value == b"2"  # type: ignore[union-attr]


def test_a_missing_key_directory_is_rebuilt_by_latest(qpath: Path) -> None:
    with tape.Queue(qpath, codec="raw") as q:
        a = q.appender()
        for k in range(1000):
            a.write(b"%d" % k, key=f"key-{k % 10}")
    os.remove(qpath / "tape.keys")
    with tape.Queue(qpath, codec="raw") as q:
        assert [q.latest(f"key-{k}").value for k in range(10)] == [b"%d" % (990 + k) for k in range(10)]  # type: ignore[union-attr]


def test_entries_of_plain_values_are_left_out_of_the_garbage_collector(queue: tape.Queue) -> None:
    import gc

    a = queue.appender()
    a.write(b"bytes", key="k")
    a.write({"a": [1]}, key="d")
    a.write_many([b"v" * 100] * 10_000)
    by_index = {e.index: e for e in queue.tailer().entries()}
    # bytes, ints and str cannot make a cycle: such an Entry is not watched; one holding a dict is
    assert not gc.is_tracked(queue.latest("k")) and gc.is_tracked(queue.latest("d"))
    assert gc.is_tracked(by_index[queue.latest("d").index])  # type: ignore[union-attr]
    collections: list[int] = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collections.append(info["generation"])

    t = queue.tailer()
    gc.callbacks.append(count)
    try:
        batch = t.read_encoded_batch(4096)
    finally:
        gc.callbacks.remove(count)
    assert len(batch) == 4096 and not any(gc.is_tracked(e) for e in batch)
    assert len(collections) <= 1  # not one every 700 entries


def test_a_queue_dropped_after_latest_is_closed_at_once(qpath: Path) -> None:
    import gc
    import weakref

    q = tape.Queue(qpath, codec="raw")
    q.appender().write(b"x", key="k")
    assert q.latest("k") is not None and q.latest("never") is None
    gone = weakref.ref(q)
    gc.disable()  # no cycle holds it: dropping the last reference closes it
    try:
        del q
        assert gone() is None
    finally:
        gc.enable()
