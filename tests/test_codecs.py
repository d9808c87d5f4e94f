"""Codecs: raw and msgpack, unencodable values, custom codecs, undecodable entries."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgpack
import pytest

import tape
from tape import codecs


def test_msgpack_round_trips_common_values(queue: tape.Queue) -> None:
    values = [None, True, 1, -(2**63), 2**64 - 1, 1.5, "é", b"\x00bytes", [1, [2]], {"a": {1: "int key"}}]
    queue.appender().write_many(values)
    assert list(queue.tailer()) == values


@pytest.mark.parametrize(
    ("codec", "bad"),
    [("msgpack", {1, 2}), ("msgpack", {"nested": object()}), ("msgpack", 2**64), ("raw", "text"), ("raw", 5)],
)
def test_a_value_the_codec_cannot_encode_raises_and_writes_nothing(qpath: Path, codec: str, bad: Any) -> None:
    with tape.Queue(qpath, codec=codec) as q:
        a = q.appender()
        with pytest.raises(tape.EncodeError):
            a.write(bad)
        with pytest.raises(TypeError):
            a.write(bad)
        assert q.count() == 0


def test_write_many_with_one_unencodable_value_writes_nothing(queue: tape.Queue) -> None:
    with pytest.raises(tape.EncodeError):
        queue.appender().write_many([1, 2, {3}, 4])
    assert queue.count() == 0


class Upper:
    """A custom codec: ASCII text stored upper-case."""

    name = "upper"

    def encode(self, obj: Any) -> bytes:
        if not isinstance(obj, str):
            raise tape.EncodeError("upper takes str")
        return obj.upper().encode("ascii")

    def decode(self, buf: bytes | memoryview) -> str:
        return bytes(buf).decode("ascii")


def test_a_registered_codec_is_found_by_its_stored_name(qpath: Path) -> None:
    codecs.register(Upper())
    with tape.Queue(qpath, codec="upper") as q:
        q.appender().write("shout")
    with tape.Queue(qpath) as q:
        assert list(q.tailer()) == ["SHOUT"]


def test_an_unregistered_codec_object_can_be_passed_directly(qpath: Path) -> None:
    class Lower(Upper):
        name = "lower-unregistered"

    with tape.Queue(qpath, codec=Lower()) as q:
        q.appender().write("x")
        assert q.tailer().read() == "X"


def test_reopening_a_queue_whose_codec_is_unknown_raises_incompatible(qpath: Path) -> None:
    class Gone(Upper):
        name = "gone"

    tape.Queue(qpath, codec=Gone()).close()
    with pytest.raises(tape.IncompatibleQueueError):
        tape.Queue(qpath)


def test_register_refuses_what_is_not_a_codec() -> None:
    with pytest.raises(tape.ArgumentTypeError):
        codecs.register("msgpack")  # type: ignore[arg-type]


def test_get_of_an_unknown_name_raises() -> None:
    with pytest.raises(tape.ArgumentError):
        codecs.get("nope")


class StrictMsgpack:
    """msgpack under the name "raw", to read raw payloads that are not all msgpack."""

    name = "raw"
    decode = staticmethod(codecs.get("msgpack").decode)
    encode = staticmethod(codecs.get("msgpack").encode)


@pytest.fixture
def one_bad_in_the_middle(qpath: Path) -> Path:
    """A raw queue of msgpack 0..9 with one undecodable payload after 4."""
    with tape.Queue(qpath, codec="raw") as q:
        a = q.appender()
        a.write_many(msgpack.packb(k) for k in range(5))
        a.write(b"\xc1")  # never valid msgpack
        a.write_many(msgpack.packb(k) for k in range(5, 10))
    return qpath


def test_an_undecodable_entry_raises_decode_error_when_read_then_reading_goes_on(
    one_bad_in_the_middle: Path,
) -> None:
    with tape.Queue(one_bad_in_the_middle, codec=StrictMsgpack()) as q:
        t = q.tailer()
        assert [t.read() for _ in range(5)] == [0, 1, 2, 3, 4]
        with pytest.raises(tape.DecodeError):
            t.read()
        assert [t.read() for _ in range(5)] == [5, 6, 7, 8, 9]


def test_an_undecodable_entry_ends_iteration_with_decode_error_then_it_goes_on(
    one_bad_in_the_middle: Path,
) -> None:
    with tape.Queue(one_bad_in_the_middle, codec=StrictMsgpack()) as q:
        t = q.tailer()
        got = []
        with pytest.raises(tape.DecodeError):
            for value in t:
                got.append(value)
        assert got == [0, 1, 2, 3, 4]
        assert isinstance(tape.DecodeError("x"), tape.CorruptionError)
        assert list(t) == [5, 6, 7, 8, 9]
