"""Entry attributes (key, not_before, origin): every read path returns what was written,
bad arguments write nothing, version-1 cycle files keep working, damage is reported."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

import tape
from crash_support import crc32c
from tape.testing import ManualClock

T0 = 1_763_683_200 * 10**9  # 2025-11-21T00:00:00Z
FIRST = 4096 + 4096  # test_secondly: the first entry's offset (FORMAT.md)


def _cycle_file(q: tape.Queue) -> Path:
    (c,) = q.cycles()
    return Path(c.path)


def _entries(q: tape.Queue) -> list[tape.Entry]:
    return list(q.tailer().entries())


# What each written entry should read back as: (value, key, not_before, origin).
WRITTEN: list[tuple[Any, Any, Any, Any]] = [
    ({"n": 0}, None, None, None),
    ({"n": 1}, "acct-1", None, None),
    ({"n": 2}, b"\x00\xffraw", None, None),
    ({"n": 3}, None, T0 + 30 * 10**9, None),
    ({"n": 4}, "é" * 512, T0 + 5 * 10**9, None),  # 1024 bytes of UTF-8: the most a key holds
    ({"n": 5}, None, None, None),
    (b"\x06", "k", 99, (7, 123)),  # written encoded (msgpack of 6 is one byte)
]


def _write_all(q: tape.Queue) -> list[int]:
    a = q.appender()
    return [
        a.write({"n": 0}),
        a.write({"n": 1}, key="acct-1"),
        a.write({"n": 2}, key=b"\x00\xffraw"),
        a.write({"n": 3}, delay=30),
        a.write({"n": 4}, key="é" * 512, not_before=datetime.fromtimestamp(T0 / 1e9 + 5, timezone.utc)),
        a.write({"n": 5}),
        a.write_encoded(b"\x06", key="k", not_before=99, origin=(7, 123)),
    ]


def _expected(indexes: list[int]) -> list[tape.Entry]:
    values = [w[0] if k < 6 else 6 for k, w in enumerate(WRITTEN)]
    return [tape.Entry(i, T0, v, w[1], w[2], w[3]) for i, v, w in zip(indexes, values, WRITTEN)]


@pytest.fixture
def written(qpath: Path) -> tuple[Path, list[int]]:
    with tape.Queue(qpath, roll_cycle="test_secondly", clock=lambda: T0) as q:
        return qpath, _write_all(q)


def test_entry_has_defaults_for_the_attributes() -> None:
    assert tape.Entry(1, 2, 3) == (1, 2, 3, None, None, None, False)
    assert tape.Entry(1, 2, 3, key="k").key == "k"


def test_every_read_path_returns_the_attributes(written: tuple[Path, list[int]]) -> None:
    qpath, idx = written
    want = _expected(idx)
    with tape.Queue(qpath) as q:
        assert _entries(q) == want  # batches
        t = q.tailer()
        assert [t.read_entry() for _ in want] == want  # one alone, then batches that grow
        for k in range(len(want)):  # random access: a read alone after each move
            assert t.to_index(idx[k]) and t.read_entry() == want[k]
        t.direction = "backward"
        t.to_end()
        assert list(t.entries()) == want[::-1]
        named = q.tailer("reader")
        assert [named.read_entry() for _ in want[:3]] == want[:3]
        assert list(named.entries()) == want[3:]
        assert list(q.tailer()) == [e.value for e in want]  # values alone: no key in them
    with tape.Queue(qpath, read_only=True) as q:
        assert _entries(q) == want


def test_a_raw_queue_returns_the_attributes(qpath: Path) -> None:
    with tape.Queue(qpath, codec="raw") as q:
        a = q.appender()
        i = a.write(b"one", key="k1")
        j = a.write(b"two")
        k = a.write(b"three", key=b"k3", delay=timedelta(seconds=1))
        got = _entries(q)
        assert [(e.index, e.value, e.key) for e in got] == [(i, b"one", "k1"), (j, b"two", None), (k, b"three", b"k3")]
        # one second from the write's start: the entry's timestamp is taken later, in the core
        nb = got[2].not_before
        assert nb is not None and got[2].timestamp < nb <= got[2].timestamp + 10**9
        assert list(q.tailer()) == [b"one", b"two", b"three"]


def test_delay_counts_from_the_write(qpath: Path) -> None:
    clock = ManualClock(T0)
    with tape.Queue(qpath, clock=clock) as q:
        a = q.appender()
        a.write(1, delay=2.5)
        a.write_many([2, 3], delay=timedelta(minutes=1))
        a.write_many([4], not_before=T0 / 1e9 + 7)
        a.write(5, not_before=0.5)  # epoch seconds: a time long past is still a time
        before = time.time_ns()
    with tape.Queue(qpath, clock=None) as q:
        q.appender().write(6, delay=0)
        after = time.time_ns()
        got = [e.not_before for e in _entries(q)]
    assert got[:5] == [T0 + 2_500_000_000, T0 + 60 * 10**9, T0 + 60 * 10**9, T0 + 7 * 10**9, 500_000_000]
    assert got[5] is not None and before <= got[5] <= after


def test_read_encoded_batch_and_write_encoded_copy_entries_exactly(written: tuple[Path, list[int]], tmp_path: Path) -> None:
    qpath, idx = written
    with tape.Queue(qpath) as src, tape.Queue(tmp_path / "copy", clock=lambda: T0 + 10**9) as dst:
        t = src.tailer("copier")
        first = t.read_encoded_batch(max_entries=2)
        rest = t.read_encoded_batch(max_bytes=1)  # the first entry comes whatever its size
        more = t.read_encoded_batch()
        assert len(first) == 2 and len(rest) == 1 and len(more) == 4
        assert t.read_encoded_batch() == []
        assert src.tailer("copier").read_entry() is None  # the named position is after them
        got = first + rest + more
        assert [(e.index, e.timestamp, e.key, e.not_before, e.origin) for e in got] == [
            (i, T0, w[1], w[2], w[3]) for i, w in zip(idx, WRITTEN)
        ]
        assert all(type(e.value) is bytes for e in got)
        a = dst.appender()
        for e in got:
            a.write_encoded(e.value, key=e.key, not_before=e.not_before, origin=(e.index, e.timestamp))
        copied = _entries(dst)
        want = _expected(idx)
        assert [(e.value, e.key, e.not_before, e.origin) for e in copied] == [
            (w.value, w.key, w.not_before, (w.index, T0)) for w in want
        ]


def test_read_encoded_batch_picks_up_after_values_already_read(written: tuple[Path, list[int]]) -> None:
    qpath, idx = written
    with tape.Queue(qpath) as q:
        t = q.tailer()
        assert t.read() == {"n": 0}  # a batch is read ahead: the position stays after what was handed out
        assert [e.index for e in t.read_encoded_batch()] == idx[1:]


def test_a_key_read_back_as_str_is_written_back_exactly(qpath: Path) -> None:
    with tape.Queue(qpath, codec="raw") as q:
        # A str key that is not UTF-8 text (as a C writer may store one) reads back
        # with its bytes escaped, and write_encoded stores those bytes again.
        a = q.appender()
        a.write_encoded(b"v", key="ok\udcff")  # surrogateescape: the byte 0xff
        (e,) = _entries(q)
        assert e.key == "ok\udcff"


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"key": 7}, tape.ArgumentTypeError),
        ({"key": bytearray(b"k")}, tape.ArgumentTypeError),
        ({"key": ""}, tape.ArgumentError),
        ({"key": b""}, tape.ArgumentError),
        ({"key": "x" * 1025}, tape.ArgumentError),
        ({"key": "é" * 513}, tape.ArgumentError),
        ({"key": "\udcff"}, tape.ArgumentError),
        ({"delay": -1}, tape.ArgumentError),
        ({"delay": float("nan")}, tape.ArgumentError),
        ({"delay": "1s"}, tape.ArgumentTypeError),
        ({"delay": True}, tape.ArgumentTypeError),
        ({"not_before": "tomorrow"}, tape.ArgumentTypeError),
        ({"not_before": -1}, tape.ArgumentError),
        ({"not_before": 0}, tape.ArgumentError),
        ({"not_before": 2.0**64}, tape.ArgumentError),
        ({"delay": 1, "not_before": T0 / 1e9}, tape.ArgumentError),
    ],
)
def test_bad_arguments_write_nothing(queue: tape.Queue, kwargs: dict[str, Any], error: type[Exception]) -> None:
    a = queue.appender()
    with pytest.raises(error):
        a.write({"v": 1}, **kwargs)
    if "key" not in kwargs:
        with pytest.raises(error):
            a.write_many([1, 2], **kwargs)
    assert queue.count() == 0


@pytest.mark.parametrize(
    ("args", "kwargs", "error"),
    [
        (("text",), {}, tape.ArgumentTypeError),
        ((bytearray(b"x"),), {}, tape.ArgumentTypeError),
        ((b"x",), {"key": 1}, tape.ArgumentTypeError),
        ((b"x",), {"key": b"k" * 1025}, tape.ArgumentError),
        ((b"x",), {"not_before": 1.5}, tape.ArgumentTypeError),
        ((b"x",), {"not_before": -5}, tape.ArgumentError),
        ((b"x",), {"origin": 5}, tape.ArgumentTypeError),
        ((b"x",), {"origin": (1, 2, 3)}, tape.ArgumentTypeError),
        ((b"x",), {"origin": (-1, 2)}, tape.ArgumentError),
        ((b"x",), {"origin": (1, -2)}, tape.ArgumentError),
        ((b"x",), {"origin": ("1", 2)}, tape.ArgumentTypeError),
        ((b"x",), {"tombstone": True}, tape.ArgumentError),  # a tombstone needs a key
        ((b"x",), {"key": "k", "tombstone": 1}, tape.ArgumentTypeError),
    ],
)
def test_bad_arguments_of_write_encoded_write_nothing(
    raw_queue: tape.Queue, args: tuple[Any, ...], kwargs: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        raw_queue.appender().write_encoded(*args, **kwargs)
    assert raw_queue.count() == 0


def test_a_tombstone_shows_on_every_read_path_and_copies_as_one(tmp_path: Path) -> None:
    with tape.Queue(tmp_path / "src") as src, tape.Queue(tmp_path / "copy") as dst:
        a = src.appender()
        a.write({"v": 1}, key="k")
        gone = a.delete("k")
        a.write({"v": 2}, key="other")
        got = [e for e in src.tailer().entries()]
        assert [e.tombstone for e in got] == [False, True, False]
        assert [e.tombstone for e in src.tailer().read_encoded_batch()] == [False, True, False]
        t = src.tailer()
        assert t.to_index(gone)
        one = t.read_entry()  # after a move: read alone
        assert one is not None and one.tombstone and one.key == "k" and one.value is None
        assert src.latest("k") is None
        b = dst.appender()
        for e in src.tailer().read_encoded_batch():
            b.write_encoded(e.value, key=e.key, not_before=e.not_before, origin=(e.index, e.timestamp), tombstone=e.tombstone)
        assert [e.tombstone for e in dst.tailer().entries()] == [False, True, False]
        assert dst.latest("k") is None
        latest = dst.latest("other")
        assert latest is not None and latest.value == {"v": 2} and not latest.tombstone
    out = subprocess.run(
        [sys.executable, "-m", "tape", "dump", str(tmp_path / "copy")], capture_output=True, check=True, timeout=60
    ).stdout
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line.get("tombstone") for line in lines] == [None, True, None]
    assert lines[1]["key"] == "k" and lines[1]["value"] is None


@pytest.mark.parametrize("kwargs", [{"max_entries": 0}, {"max_bytes": 0}, {"max_entries": "1"}])
def test_bad_arguments_of_read_encoded_batch(queue: tape.Queue, kwargs: dict[str, Any]) -> None:
    with pytest.raises((tape.ArgumentError, tape.ArgumentTypeError)):
        queue.tailer().read_encoded_batch(**kwargs)


def test_dump_shows_the_attributes(written: tuple[Path, list[int]]) -> None:
    qpath, idx = written
    out = subprocess.run(
        [sys.executable, "-m", "tape", "dump", str(qpath)], capture_output=True, check=True, timeout=60
    ).stdout
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["index"] for line in lines] == idx
    assert "key" not in lines[0] and "not_before" not in lines[0]
    assert lines[1]["key"] == "acct-1"
    assert lines[2]["key"] == {"$base64": "AP9yYXc="}
    assert lines[3]["not_before"] == "2025-11-21T00:00:30.000000000Z"
    assert lines[6]["origin"] == {"index": 7, "timestamp": "1970-01-01T00:00:00.000000123Z"}


# -- the format: version 2, version-1 files, damage --------------------------------------


def _version(path: Path) -> int:
    head = path.read_bytes()[:68]
    assert struct.unpack_from("<I", head, 64)[0] == crc32c(head[:64])  # the header checks
    version: int = struct.unpack_from("<I", head, 8)[0]
    return version


def _make_version_1(path: Path, *, crc: bool = True) -> None:
    """Turn a cycle file without attributes into what an earlier release wrote: version 1."""
    data = bytearray(path.read_bytes())
    data[8:12] = struct.pack("<I", 1)
    if crc:
        data[64:68] = struct.pack("<I", crc32c(bytes(data[:64])))
    path.write_bytes(bytes(data))


def test_new_cycle_files_are_version_2(written: tuple[Path, list[int]]) -> None:
    qpath, _ = written
    with tape.Queue(qpath) as q:
        path = _cycle_file(q)
    # A version-1 reader (an earlier release) checks the CRC, then that the
    # version is 1: this header passes the first and fails the second, so it
    # refuses the file (TAPE_EVERSION) instead of reading attribute blocks as
    # payload. A version this build does not know is refused the same way:
    assert _version(path) == 2
    data = bytearray(path.read_bytes())
    data[8:12] = struct.pack("<I", 3)
    data[64:68] = struct.pack("<I", crc32c(bytes(data[:64])))
    path.write_bytes(bytes(data))
    with tape.Queue(qpath) as q, pytest.raises(tape.IncompatibleQueueError):
        q.tailer().read_entry()


def test_a_version_1_file_is_read_written_and_upgraded_by_the_first_attributes(qpath: Path) -> None:
    clock = ManualClock(T0)
    with tape.Queue(qpath, roll_cycle="test_secondly", clock=clock) as q:
        q.appender().write_many([1, 2, 3])
        path = _cycle_file(q)
    _make_version_1(path)
    with tape.Queue(qpath, roll_cycle="test_secondly", clock=clock) as q:
        a = q.appender()
        assert [e.value for e in _entries(q)] == [1, 2, 3]
        a.write(4)
        assert _version(path) == 1  # plain entries leave it as it is
        t = q.tailer()
        assert [t.read() for _ in range(4)] == [1, 2, 3, 4]  # a reader opened on version 1
        a.write(5, key="k")
        assert _version(path) == 2
        assert t.read_entry() == tape.Entry(q.last_index, T0, 5, "k")  # sees it without reopening
        assert q.verify().ok
    with tape.Queue(qpath) as q:
        assert [(e.value, e.key) for e in _entries(q)] == [(1, None), (2, None), (3, None), (4, None), (5, "k")]


def test_a_header_left_half_upgraded_is_read_and_finished(qpath: Path) -> None:
    with tape.Queue(qpath, roll_cycle="test_secondly", clock=lambda: T0) as q:
        q.appender().write_many([1, 2])
        path = _cycle_file(q)
    _make_version_1(path)
    data = bytearray(path.read_bytes())
    data[8:12] = struct.pack("<I", 2)  # a writer killed between the two stores of the upgrade
    path.write_bytes(bytes(data))
    with tape.Queue(qpath, roll_cycle="test_secondly", clock=lambda: T0) as q:
        assert [e.value for e in _entries(q)] == [1, 2]
        assert q.verify().ok
        q.appender().write(3, key="k")
        assert _version(path) == 2  # the CRC is right again
        assert [(e.value, e.key) for e in _entries(q)] == [(1, None), (2, None), (3, "k")]


def _entry_at(data: bytes, pos: int) -> tuple[int, int, int]:
    """The header word, timestamp word and payload length of the entry at pos."""
    h, _, word = struct.unpack_from("<IIq", data, pos)
    return h, word, (h & 0x3FFFFFFF) - 12


def _reseal(data: bytearray, pos: int, seq: int) -> None:
    """Recompute the CRC of the data entry at pos (entry `seq`), as a writer would."""
    seed = struct.unpack_from("<I", data, 24)[0]
    h, word, n = _entry_at(bytes(data), pos)
    body = struct.pack("<Iqq", h, seq, word) + bytes(data[pos + 16 : pos + 16 + n])
    data[pos + 4 : pos + 8] = struct.pack("<I", crc32c(body, seed))


def test_the_stored_format_is_as_documented(qpath: Path) -> None:
    with tape.Queue(qpath, codec="raw", roll_cycle="test_secondly", clock=lambda: T0) as q:
        q.appender().write_encoded(b"payload", key="key", not_before=5, origin=(9, 10))
        path = _cycle_file(q)
    data = path.read_bytes()
    # The first entry sits after index array 0 (a metadata entry of 8 * 32 slots).
    pos = FIRST + 16 + 8 * 32
    h, word, n = _entry_at(data, pos)
    assert word == T0 - (1 << 63)  # T0 with bit 63 set: attributes follow
    block = data[pos + 16 : pos + 16 + n]
    blen, flags = struct.unpack_from("<II", block, 0)
    assert (blen, flags) == (8 + 16 + 16 + 24, 1)
    assert struct.unpack_from("<HHI", block, 8) == (1, 0, 3) and block[16:24] == b"key\0\0\0\0\0"
    assert struct.unpack_from("<HHIq", block, 24) == (2, 0, 8, 5)
    assert struct.unpack_from("<HHIqq", block, 40) == (3, 0, 16, 9, 10)
    assert block[blen:] == b"payload"


@pytest.mark.parametrize(
    ("offset", "value", "why"),
    [
        (0, 12, "block length not a multiple of 8"),
        (0, 4096, "block running past the entry"),
        (4, 4, "an unknown flag"),
        (8, 9, "an unknown record type"),
        (12, 17, "a key running past the block"),
        (21, 1, "padding that is not zero"),
    ],
)
def test_a_block_that_does_not_parse_is_damage(qpath: Path, offset: int, value: int, why: str) -> None:
    with tape.Queue(qpath, codec="raw", roll_cycle="test_secondly", clock=lambda: T0) as q:
        a = q.appender()
        a.write(b"before")
        a.write(b"payload", key="key")
        path = _cycle_file(q)
    data = bytearray(path.read_bytes())
    pos = data.find(b"payload") - 24  # the block: header 8, key record 16
    if offset == 8:
        struct.pack_into("<H", data, pos + offset, value)
    elif offset == 21:
        data[pos + offset] = value
    else:
        struct.pack_into("<I", data, pos + offset, value)
    _reseal(data, pos - 16, 1)  # the checksum holds: only the block is wrong
    path.write_bytes(bytes(data))
    with tape.Queue(qpath) as q:
        t = q.tailer()
        assert t.read() == b"before"
        with pytest.raises(tape.CorruptionError):
            t.read()
        batches = q.tailer()
        assert [e.value for e in batches.read_encoded_batch()] == [b"before"]  # what comes before the damage
        with pytest.raises(tape.CorruptionError):
            batches.read_encoded_batch()
        r = q.verify()
        assert not r.ok and "attribute block" in r.message, why
        assert r.last_good_index == q.first_index


def test_attributed_entries_from_another_process(qpath: Path) -> None:
    tape.Queue(qpath).close()
    code = (
        "import sys, tape\n"
        "with tape.Queue(sys.argv[1]) as q:\n"
        "    a = q.appender()\n"
        "    for i in range(500):\n"
        "        a.write(i, key=f'k{i % 7}', delay=i if i % 2 else None)\n"
    )
    with tape.Queue(qpath) as q:
        t = q.tailer()
        subprocess.run([sys.executable, "-c", code, str(qpath)], check=True, timeout=60)
        got = list(t.entries())
    assert [(e.value, e.key) for e in got] == [(i, f"k{i % 7}") for i in range(500)]
    assert [e.not_before is None for e in got] == [i % 2 == 0 for i in range(500)]
