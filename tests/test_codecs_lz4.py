"""lz4 compression around a codec: large payloads shrink, small ones are stored as they are."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import msgpack
import pytest

import tape
from tape import codecs

MB = 1 << 20


def stored_bytes(path: Path, codec: Any, value: Any) -> int:
    """What one entry of `value` occupies in a new queue of `codec` at `path`."""
    with tape.Queue(path, codec=codec) as q:
        q.appender().write(value)
        return sum(c.bytes for c in q.cycles())


def payloads(path: Path) -> list[bytes]:
    """The stored payloads of the queue at `path`."""
    with tape.Queue(path, raw=True) as q:
        return list(q.tailer())


def test_a_compressible_megabyte_stores_in_far_fewer_bytes(tmp_path: Path) -> None:
    value = (b'{"side": "buy", "qty": 100, "price": 10.5}\n' * (MB // 40))[:MB]
    raw = stored_bytes(tmp_path / "raw", "raw", value)
    lz4 = stored_bytes(tmp_path / "lz4", "lz4+raw", value)
    assert raw > MB
    assert lz4 < raw / 10
    with tape.Queue(tmp_path / "lz4") as q:
        assert q.tailer().read() == value


@pytest.mark.parametrize("value", [b"", b"x", b"y" * 511])
def test_a_payload_under_the_threshold_is_stored_as_it_is_after_one_flag_byte(qpath: Path, value: bytes) -> None:
    with tape.Queue(qpath, codec="lz4+raw") as q:
        q.appender().write(value)
        assert q.tailer().read() == value
    assert payloads(qpath) == [b"\x00" + value]


def test_a_payload_compression_would_not_shrink_is_stored_as_it_is(qpath: Path) -> None:
    noise = os.urandom(64 * 1024)
    with tape.Queue(qpath, codec="lz4+raw") as q:
        q.appender().write(noise)
        assert q.tailer().read() == noise
    assert payloads(qpath) == [b"\x00" + noise]


def test_a_payload_at_the_threshold_is_compressed(qpath: Path) -> None:
    value = {"text": "a" * 600}
    with tape.Queue(qpath, codec="lz4+msgpack") as q:
        q.appender().write(value)
        assert q.tailer().read() == value
    [stored] = payloads(qpath)
    assert stored[:1] == b"\x01"
    assert len(stored) < len(msgpack.packb(value)) // 4


def test_the_threshold_is_chosen_when_building_the_codec(qpath: Path) -> None:
    eager = codecs.Lz4Codec(codecs.get("json"), threshold=16)
    with tape.Queue(qpath, codec=eager) as q:
        q.appender().write_many(["a" * 100, "b"])
    with tape.Queue(qpath) as q:  # the flag, not the threshold, tells a reader
        assert list(q.tailer()) == ["a" * 100, "b"]
    first, second = payloads(qpath)
    assert first[:1] == b"\x01" and len(first) < 100
    assert second == b'\x00"b"'


def test_entries_either_side_of_the_threshold_read_back_in_order(qpath: Path) -> None:
    values = [{"n": k, "pad": "p" * (k * 37 % 1500)} for k in range(200)]
    with tape.Queue(qpath, codec="lz4+msgpack") as q:
        q.appender().write_many(values)
        assert list(q.tailer()) == values
    flags = {p[:1] for p in payloads(qpath)}
    assert flags == {b"\x00", b"\x01"}


def test_lz4_refuses_to_wrap_what_is_not_a_codec() -> None:
    with pytest.raises(tape.ArgumentTypeError):
        codecs.Lz4Codec("msgpack")  # type: ignore[arg-type]
