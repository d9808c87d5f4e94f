"""Bad input and odd stored bytes get a tape error that says what is wrong, and nothing is created.

Every error the package raises is a tape.TapeError: an OverflowError, ValueError,
BufferError or Unicode error from inside tape is a bug (SPEC.md, "Errors").
"""

from __future__ import annotations

import array
import math
import mmap
import struct
from pathlib import Path

import pytest

import tape
from crash_support import crc32c
from tape.testing import ManualClock


def test_the_crc_here_is_crc32c() -> None:
    assert crc32c(b"123456789") == 0xE3069283  # docs/FORMAT.md's check value


@pytest.mark.parametrize("name", ["a\0b", "\udcff", "x" * 1000, 7])
def test_a_bad_tailer_name_is_refused_and_not_stored(queue: tape.Queue, name: object) -> None:
    with pytest.raises(tape.ArgumentError) as raised:
        queue.tailer(name)  # type: ignore[arg-type]
    assert len(str(raised.value)) < 200  # a long name is not echoed in full
    with pytest.raises(tape.ArgumentError):
        queue.remove_tailer(name)  # type: ignore[arg-type]
    assert queue.describe()["named_tailers"] == {}


def test_a_nul_in_a_queue_path_is_refused_and_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(tape.ArgumentError):
        tape.Queue(tmp_path / "a\0b")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("epoch_ms", [2**63, -(2**63) - 1, 2**62, 7 * 86_400_000])
def test_an_epoch_out_of_range_is_refused_and_creates_nothing(tmp_path: Path, epoch_ms: int) -> None:
    with pytest.raises(tape.ArgumentError):
        tape.Queue(tmp_path / "q", epoch_ms=epoch_ms)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("sync", ["interval:99999999999999999", "interval:0", "interval:١٠"])
def test_a_flush_interval_out_of_range_is_refused(tmp_path: Path, sync: str) -> None:
    with pytest.raises(tape.ArgumentError):
        tape.Queue(tmp_path / "q", sync=sync)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("when", [math.nan, math.inf, -math.inf])
def test_a_time_that_is_not_finite_is_refused(queue: tape.Queue, when: float) -> None:
    queue.appender().write(1)
    t = queue.tailer()
    with pytest.raises(tape.ArgumentError):
        t.to_time(when)
    assert t.read() == 1  # not moved


@pytest.mark.parametrize("older_than", [math.nan, math.inf, -math.inf])
def test_purge_refuses_an_age_that_is_not_finite(queue: tape.Queue, older_than: float) -> None:
    with pytest.raises(tape.ArgumentError):
        queue.purge(older_than=older_than)


@pytest.mark.parametrize("last", [2**64, 2**63, -1, -5])
def test_write_if_refuses_what_is_not_an_index(queue: tape.Queue, last: int) -> None:
    with pytest.raises(tape.ArgumentError):
        queue.appender().write_if("x", last)
    assert queue.count() == 0


@pytest.mark.parametrize(("returns", "error"), [
    (2**63, tape.ArgumentError),
    (-5, tape.ArgumentError),
    (0, tape.ArgumentError),
    (1.5, tape.ArgumentTypeError),
    ("now", tape.ArgumentTypeError),
    (True, tape.ArgumentTypeError),
])
def test_a_clock_returning_no_time_is_refused_and_nothing_is_written(
    qpath: Path, returns: object, error: type[tape.TapeError]
) -> None:
    with tape.Queue(qpath, clock=lambda: returns) as q:  # type: ignore[arg-type,return-value]
        a = q.appender()
        for write in (lambda: a.write(1), lambda: a.write_many([1, 2]), lambda: a.write_if(1, None)):
            with pytest.raises(error):
                write()
        assert q.count() == 0


def test_a_clock_that_works_still_drives_the_timestamps(qpath: Path) -> None:
    clock = ManualClock()
    with tape.Queue(qpath, clock=clock) as q:
        q.appender().write(1)
        entry = q.tailer().read_entry()
        assert entry is not None and entry.timestamp == clock.now


def test_a_buffer_msgpack_cannot_take_is_an_encode_error(queue: tape.Queue) -> None:
    strided = memoryview(array.array("i", [1, 2, 3, 4]))[::2]
    with pytest.raises(tape.EncodeError):
        queue.appender().write(strided)
    assert queue.count() == 0


def _patch_meta(qpath: Path, offset: int, data: bytes) -> None:
    with open(qpath / "tape.meta", "r+b") as f, mmap.mmap(f.fileno(), 0) as m:
        m[offset : offset + len(data)] = data


def test_a_named_tailer_name_that_is_not_utf8_is_reported_as_damage(qpath: Path) -> None:
    with tape.Queue(qpath) as q:
        q.appender().write(1)
        q.tailer("billing").read()
    name = b"bill\xffng".ljust(48, b"\0")  # slot 0, with a CRC that holds: only the bytes are wrong
    _patch_meta(qpath, 8192, name)
    _patch_meta(qpath, 8192 + 60, struct.pack("<I", crc32c(name)))
    with tape.Queue(qpath) as q:
        with pytest.raises(tape.CorruptionError, match="not UTF-8"):
            q.describe()
        with pytest.raises(tape.CorruptionError):
            q.tailer("other")
        assert list(q.tailer()) == [1]  # the log itself is fine


def test_a_stored_codec_name_that_is_not_utf8_is_reported_as_damage(qpath: Path) -> None:
    with tape.Queue(qpath):
        pass
    with open(qpath / "tape.meta", "rb") as f:
        page0 = bytearray(f.read(152))
    page0[64:72] = b"msg\xffack\0"
    _patch_meta(qpath, 0, bytes(page0) + struct.pack("<I", crc32c(bytes(page0))))
    with pytest.raises(tape.CorruptionError, match="not UTF-8"):
        tape.Queue(qpath)
    with pytest.raises(tape.CorruptionError):
        tape.Queue(qpath, raw=True)
