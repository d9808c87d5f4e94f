"""Codecs: round trips, refused values, the registry, the stored codec, raw access."""

from __future__ import annotations

import itertools
import math
import pickle
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tape
from tape import codecs

SCHEMA = {
    "type": "record",
    "name": "Order",
    "fields": [{"name": "id", "type": "long"}, {"name": "side", "type": "string"}],
}

# -- round trips ---------------------------------------------------------------------

_UINT64_MAX = 2**64 - 1
_INT64_MIN = -(2**63)

msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(_INT64_MIN, _UINT64_MAX)
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary()
    | st.datetimes(timezones=st.just(timezone.utc)),
    lambda inner: st.lists(inner, max_size=6)
    | st.dictionaries(st.text() | st.binary() | st.integers(_INT64_MIN, _UINT64_MAX), inner, max_size=6),
    max_leaves=25,
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(), inner, max_size=6),
    max_leaves=25,
)


class Pipe:
    """One queue of a codec, with an appender and a tailer, kept across Hypothesis examples."""

    def __init__(self, path: Path, codec: str) -> None:
        self.queue = tape.Queue(path, codec=codec)
        self.appender = self.queue.appender()
        self.tailer = self.queue.tailer()

    def round_trip(self, value: Any) -> Any:
        self.appender.write(value)
        return self.tailer.read()


@pytest.fixture(scope="module")
def msgpack_pipe(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipe]:
    pipe = Pipe(tmp_path_factory.mktemp("codecs") / "msgpack", "msgpack")
    yield pipe
    pipe.queue.close()


@pytest.fixture(scope="module")
def json_pipe(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipe]:
    pipe = Pipe(tmp_path_factory.mktemp("codecs") / "json", "json")
    yield pipe
    pipe.queue.close()


@settings(max_examples=300, deadline=None)
@given(value=msgpack_values)
def test_msgpack_round_trips_generated_values(msgpack_pipe: Pipe, value: Any) -> None:
    assert msgpack_pipe.round_trip(value) == value


@settings(max_examples=300, deadline=None)
@given(value=json_values)
def test_json_round_trips_generated_values(json_pipe: Pipe, value: Any) -> None:
    assert json_pipe.round_trip(value) == value


def test_msgpack_round_trips_common_values(queue: tape.Queue) -> None:
    values = [None, True, 1, -(2**63), 2**64 - 1, 1.5, "é", b"\x00bytes", [1, [2]], {"a": {1: "int key", b"b": 2}}]
    queue.appender().write_many(values)
    assert list(queue.tailer()) == values


def test_msgpack_returns_tuples_as_lists(queue: tape.Queue) -> None:
    queue.appender().write({"pair": (1, (2, 3))})
    assert queue.tailer().read() == {"pair": [1, [2, 3]]}


def test_msgpack_returns_a_datetime_as_the_same_instant_in_utc(queue: tape.Queue) -> None:
    paris = datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2)))
    queue.appender().write({"at": paris})
    got = queue.tailer().read()["at"]
    assert got == paris
    assert got.utcoffset() == timedelta(0)
    assert got.hour == 10


def test_json_stores_compact_utf8_text(qpath: Path) -> None:
    with tape.Queue(qpath, codec="json") as q:
        q.appender().write({"name": "Zoë", "n": [1, 2.5, None, True]})
        assert q.tailer().read() == {"name": "Zoë", "n": [1, 2.5, None, True]}
    with tape.Queue(qpath, raw=True) as q:
        assert q.tailer().read() == '{"name":"Zoë","n":[1,2.5,null,true]}'.encode()


def test_json_turns_non_str_keys_into_str_as_the_json_module_does(qpath: Path) -> None:
    with tape.Queue(qpath, codec="json") as q:
        q.appender().write({1: "one", None: "none"})
        assert q.tailer().read() == {"1": "one", "null": "none"}


def test_json_accepts_nan_when_built_with_allow_nan(qpath: Path) -> None:
    with tape.Queue(qpath, codec=codecs.JsonCodec(allow_nan=True)) as q:
        q.appender().write([math.inf, math.nan])
        inf, nan = q.tailer().read()
        assert inf == math.inf and math.isnan(nan)


class Point:
    """A class only pickle can store."""

    def __init__(self, x: int, y: int) -> None:
        self.x, self.y = x, y

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)


def test_pickle_round_trips_what_other_codecs_refuse(qpath: Path) -> None:
    values = [{1, 2}, Point(1, 2), (1, "tuple"), {(1, 2): 3.5j}, 2**100]
    with tape.Queue(qpath, codec="pickle") as q:
        q.appender().write_many(values)
        assert list(q.tailer()) == values


@pytest.mark.parametrize(
    ("codec", "value"),
    [
        ("raw", b"bytes"),
        ("msgpack", {"k": [1, "two", b"3", None]}),
        ("json", {"k": [1, "two", None]}),
        ("pickle", {"k": {1, 2}}),
        ("lz4+msgpack", {"k": "x" * 2000}),
    ],
)
def test_every_codec_decodes_from_a_memoryview(codec: str, value: Any) -> None:
    c = codecs.get(codec)
    assert c.decode(memoryview(c.encode(value))) == value


# -- values a codec refuses --------------------------------------------------------------


@pytest.mark.parametrize(
    ("codec", "bad", "named"),
    [
        ("msgpack", {1, 2}, "a set"),
        ("msgpack", {"a": [1, {"nested": object()}]}, "value['a'][1]['nested']: a value of type object"),
        ("msgpack", 2**64, "an int of 65 bits"),
        ("msgpack", {"big": [-(2**63) - 1]}, "value['big'][0]: an int of 64 bits"),
        ("msgpack", {"k": {(1, 2): "tuple key"}}, "value['k']: a map key of type tuple"),
        ("msgpack", {1.5: "float key"}, "a map key of type float"),
        ("msgpack", {None: "None key"}, "a map key of type NoneType"),
        ("msgpack", {True: "bool key"}, "a map key of type bool"),
        ("msgpack", datetime(2024, 1, 1), "a datetime without a time zone"),
        ("json", math.nan, "nan (JSON has no NaN or Infinity)"),
        ("json", {"x": [1, -math.inf]}, "value['x'][1]: -inf"),
        ("json", {"b": b"bytes"}, "value['b']: a value of type bytes"),
        ("json", {(1,): 2}, "a map key of type tuple"),
        ("raw", "text", "not str"),
        ("raw", 5, "not int"),
        ("pickle", lambda: None, "pickle cannot encode"),
        ("lz4+msgpack", {3, 4}, "a set"),
    ],
)
def test_a_value_the_codec_cannot_encode_raises_naming_the_problem_and_writes_nothing(
    qpath: Path, codec: str, bad: Any, named: str
) -> None:
    with tape.Queue(qpath, codec=codec) as q:
        a = q.appender()
        a.write(b"ok" if codec == "raw" else "ok")
        with pytest.raises(tape.EncodeError, match=None) as caught:
            a.write(bad)
        assert named in str(caught.value)
        assert isinstance(caught.value, TypeError)
        with pytest.raises(TypeError):
            a.write_many([b"ok" if codec == "raw" else "ok", bad])
        assert q.count() == 1


def test_msgpack_refuses_a_value_that_contains_itself() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(tape.EncodeError, match="nested too deeply"):
        codecs.get("msgpack").encode(loop)


_any_key = (
    st.text(max_size=3)
    | st.binary(max_size=3)
    | st.integers(_INT64_MIN, _UINT64_MAX)
    | st.floats(allow_nan=False)
    | st.booleans()
    | st.none()
    | st.tuples(st.integers(0, 3))
)
_values_with_any_keys = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_any_key, inner, max_size=4),
    max_leaves=20,
)


def _keys_plain(value: Any) -> bool:
    """Whether every map key in `value` is a str, bytes or int (not bool)."""
    if isinstance(value, dict):
        return all(type(k) in (str, bytes, int) for k in value) and all(map(_keys_plain, value.values()))
    if isinstance(value, list):
        return all(map(_keys_plain, value))
    return True


@given(value=_values_with_any_keys)
def test_msgpack_refuses_exactly_the_values_with_other_map_keys(value: Any) -> None:
    c = codecs.get("msgpack")
    if _keys_plain(value):
        assert c.decode(c.encode(value)) == value
    else:
        with pytest.raises(tape.EncodeError, match="a map key of type"):
            c.encode(value)


def test_msgpack_accepts_int_subclasses_as_keys() -> None:
    import enum

    class Color(enum.IntEnum):
        RED = 1

    c = codecs.get("msgpack")
    assert c.decode(c.encode({Color.RED: "red"})) == {1: "red"}


# -- the registry -------------------------------------------------------------------------


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
        assert q.codec.name == "upper"
        assert list(q.tailer()) == ["SHOUT"]


def test_lz4_wraps_a_registered_custom_codec_by_name(qpath: Path) -> None:
    codecs.register(Upper())
    with tape.Queue(qpath, codec="lz4+upper") as q:
        q.appender().write("quiet " * 200)
        assert q.tailer().read() == "QUIET " * 200


def test_an_unregistered_codec_object_can_be_passed_directly(qpath: Path) -> None:
    class Lower(Upper):
        name = "lower-unregistered"

    with tape.Queue(qpath, codec=Lower()) as q:
        q.appender().write("x")
        assert q.tailer().read() == "X"


def test_register_refuses_what_is_not_a_codec() -> None:
    with pytest.raises(tape.ArgumentTypeError):
        codecs.register("msgpack")  # type: ignore[arg-type]


def test_get_of_an_unknown_name_raises_naming_it() -> None:
    with pytest.raises(tape.ArgumentError, match="unknown codec 'nope'"):
        codecs.get("nope")
    with pytest.raises(tape.ArgumentError, match="unknown codec 'lz4\\+nope'"):
        codecs.get("lz4+nope")


def test_the_built_in_codecs_are_registered() -> None:
    assert {"raw", "msgpack", "json", "avro", "pickle"} <= set(codecs.names())
    assert codecs.get("lz4+json").name == "lz4+json"


# -- the codec stored in the queue ------------------------------------------------------------


def test_reopening_without_a_codec_uses_the_stored_one(qpath: Path) -> None:
    tape.Queue(qpath, codec="json").close()
    with tape.Queue(qpath) as q:
        assert q.codec.name == q.codec_name == "json"
        assert q.describe()["codec"] == "json"


@pytest.mark.parametrize("other", ["msgpack", "lz4+json", "raw"])
def test_reopening_with_another_codec_raises_incompatible(qpath: Path, other: str) -> None:
    tape.Queue(qpath, codec="json").close()
    with pytest.raises(tape.IncompatibleQueueError):
        tape.Queue(qpath, codec=other)


def test_a_codec_that_is_not_a_codec_is_refused(qpath: Path) -> None:
    with pytest.raises(tape.ArgumentTypeError):
        tape.Queue(qpath, codec=42)  # type: ignore[arg-type]
    assert not qpath.exists()


class Gone(Upper):
    name = "gone"


def test_opening_a_queue_whose_codec_is_not_registered_names_it_and_points_to_raw(qpath: Path) -> None:
    with tape.Queue(qpath, codec=Gone()) as q:
        q.appender().write("a")
    with pytest.raises(tape.IncompatibleQueueError, match="'gone' is not registered") as caught:
        tape.Queue(qpath)
    assert "raw=True" in str(caught.value)


def test_raw_access_reads_the_stored_bytes_of_a_queue_whose_codec_is_not_registered(qpath: Path) -> None:
    with tape.Queue(qpath, codec=Gone()) as q:
        q.appender().write_many(["a", "b"])
    with tape.Queue(qpath, raw=True) as q:
        assert q.codec_name == "gone"
        assert list(q.tailer()) == [b"A", b"B"]


def test_raw_access_reads_and_writes_payloads_in_the_stored_codec(queue: tape.Queue) -> None:
    queue.appender().write({"k": 1})
    with tape.Queue(queue.path, raw=True) as raw:
        assert raw.codec_name == "msgpack"
        assert raw.tailer().read() == msgpack.packb({"k": 1})
        raw.appender().write(msgpack.packb([2]))
    assert list(queue.tailer()) == [{"k": 1}, [2]]


def test_raw_access_checks_a_codec_name_without_needing_it_registered(qpath: Path) -> None:
    tape.Queue(qpath, codec=Gone()).close()
    tape.Queue(qpath, raw=True, codec="gone").close()
    with pytest.raises(tape.IncompatibleQueueError):
        tape.Queue(qpath, raw=True, codec="msgpack")


def test_raw_access_takes_no_schema_nor_codec_object(qpath: Path) -> None:
    with pytest.raises(tape.ArgumentError):
        tape.Queue(qpath, raw=True, schema=SCHEMA)
    with pytest.raises(tape.ArgumentError):
        tape.Queue(qpath, raw=True, codec=codecs.get("json"))


def test_a_pickle_queue_is_opened_only_by_naming_pickle(qpath: Path) -> None:
    with tape.Queue(qpath, codec="pickle") as q:
        q.appender().write({1, 2})
    with pytest.raises(tape.IncompatibleQueueError, match="codec='pickle'"):
        tape.Queue(qpath)
    with tape.Queue(qpath, raw=True) as q:
        assert pickle.loads(q.tailer().read()) == {1, 2}
    with tape.Queue(qpath, codec="pickle") as q:
        assert q.tailer().read() == {1, 2}


# -- reading in another process ------------------------------------------------------------------

_CHILD = """
import pickle, sys, tape
kwargs = {"codec": sys.argv[2]} if len(sys.argv) > 2 else {}
with tape.Queue(sys.argv[1], read_only=True, **kwargs) as q:
    sys.stdout.buffer.write(pickle.dumps((q.codec.name, list(q.tailer()))))
"""


def read_in_a_new_process(path: Path, *codec: str) -> tuple[str, list[Any]]:
    """(codec name, every value) of the queue at `path`, read by a fresh interpreter."""
    done = subprocess.run([sys.executable, "-c", _CHILD, str(path), *codec], capture_output=True, check=True)
    result: tuple[str, list[Any]] = pickle.loads(done.stdout)
    return result


_WHEN = datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("codec", "options", "values"),
    [
        ("raw", {}, [b"one", b"", b"\x00" * 3]),
        ("msgpack", {}, [{"at": _WHEN, "n": [1, 2]}, None, b"bin"]),
        ("json", {}, [{"a": [1, 2.5, "é"]}, None]),
        ("avro", {"schema": SCHEMA}, [{"id": 1, "side": "buy"}, {"id": 2, "side": "sell"}]),
        ("lz4+msgpack", {}, [{"big": "x" * 5000}, "small"]),
        ("lz4+json", {}, [["y"] * 3000, 1]),
        ("lz4+raw", {}, [b"z" * 5000, b"tiny"]),
        ("lz4+avro", {"schema": SCHEMA}, [{"id": 3, "side": "buy" * 500}]),
    ],
)
def test_a_new_process_reads_the_queue_without_naming_its_codec(
    qpath: Path, codec: str, options: dict[str, Any], values: list[Any]
) -> None:
    with tape.Queue(qpath, codec=codec, **options) as q:
        q.appender().write_many(values)
    assert read_in_a_new_process(qpath) == (codec, values)


def test_a_new_process_reads_a_pickle_queue_when_it_names_pickle(qpath: Path) -> None:
    with tape.Queue(qpath, codec="pickle") as q:
        q.appender().write_many([{1, 2}, (3, 4)])
    assert read_in_a_new_process(qpath, "pickle") == ("pickle", [{1, 2}, (3, 4)])


# -- undecodable entries ------------------------------------------------------------------------


class StrictMsgpack:
    """msgpack under the name "raw", to read raw payloads that are not all msgpack."""

    name = "raw"
    decode = staticmethod(codecs.get("msgpack").decode)
    encode = staticmethod(codecs.get("msgpack").encode)


class BatchMsgpack(StrictMsgpack):
    """StrictMsgpack that decodes batches in one stream, as the msgpack codec does."""

    decode_many = staticmethod(codecs.MsgpackCodec().decode_many)


def _one_bad_in_the_middle(path: Path, bad: bytes) -> Path:
    """A raw queue of msgpack 0..9 with the payload `bad` after 4."""
    with tape.Queue(path, codec="raw") as q:
        a = q.appender()
        a.write_many(msgpack.packb(k) for k in range(5))
        a.write(bad)
        a.write_many(msgpack.packb(k) for k in range(5, 10))
    return path


@pytest.fixture
def one_bad_in_the_middle(qpath: Path) -> Path:
    return _one_bad_in_the_middle(qpath, b"\xc1")  # never valid msgpack


def test_an_undecodable_entry_raises_decode_error_when_read_then_reading_goes_on(
    one_bad_in_the_middle: Path,
) -> None:
    with tape.Queue(one_bad_in_the_middle, codec=StrictMsgpack()) as q:
        t = q.tailer()
        assert [t.read() for _ in range(5)] == [0, 1, 2, 3, 4]
        with pytest.raises(tape.DecodeError):
            t.read()
        assert [t.read() for _ in range(5)] == [5, 6, 7, 8, 9]


@pytest.mark.parametrize("entries", [False, True], ids=["read", "read_entry"])
def test_an_undecodable_entry_right_after_a_move_raises_then_reading_goes_on(
    one_bad_in_the_middle: Path, entries: bool
) -> None:
    with tape.Queue(one_bad_in_the_middle, codec=StrictMsgpack()) as q:
        t = q.tailer()
        first = q.first_index
        assert first is not None
        bad = first + 5

        def read() -> Any:
            if not entries:
                return t.read()
            e = t.read_entry()
            assert e is not None
            return (e.index, e.value)

        assert t.to_index(bad)
        with pytest.raises(tape.DecodeError):
            read()
        assert read() == ((bad + 1, 5) if entries else 5)
        assert t.to_index(bad - 1)
        assert read() == ((bad - 1, 4) if entries else 4)


@pytest.mark.parametrize("codec", [StrictMsgpack, BatchMsgpack], ids=["each", "one-stream"])
@pytest.mark.parametrize(
    "bad",
    [
        b"\xc1",  # never valid
        b"",  # no value
        b"\x05\x06",  # two values
        b"\x92\x01",  # an array cut short, which the next payload would complete
    ],
    ids=["reserved-byte", "empty", "two-values", "cut-short"],
)
def test_an_undecodable_entry_ends_iteration_with_decode_error_then_it_goes_on(
    qpath: Path, codec: type[StrictMsgpack], bad: bytes
) -> None:
    with tape.Queue(_one_bad_in_the_middle(qpath, bad), codec=codec()) as q:
        t = q.tailer()
        got = []
        with pytest.raises(tape.DecodeError):
            for value in t:
                got.append(value)
        assert got == [0, 1, 2, 3, 4]
        assert isinstance(tape.DecodeError("x"), tape.CorruptionError)
        assert list(t) == [5, 6, 7, 8, 9]


def test_decode_many_matches_decode_for_generated_batches() -> None:
    c = codecs.get("msgpack")
    values = [{"n": k, "s": "x" * k, "l": [k, None, b"b"]} for k in range(50)]
    payloads = [c.encode(v) for v in values]
    ends = list(itertools.accumulate(map(len, payloads)))
    assert c.decode_many(b"".join(payloads), ends) == (values, None)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("codec", "payload"),
    [
        ("msgpack", b"\x81\x92\x01\x02\x03"),  # a map whose key is an array
        ("msgpack", b"\x01\x02"),  # trailing bytes
        ("json", b"{"),
        ("json", b'"\xff"'),  # not UTF-8
        ("pickle", b"not a pickle"),
        ("lz4+msgpack", b"\x07\x01"),  # unknown flag
        ("lz4+msgpack", b"\x01garbage"),  # not an lz4 frame
    ],
)
def test_a_payload_the_codec_cannot_decode_raises_decode_error(codec: str, payload: bytes) -> None:
    with pytest.raises(tape.DecodeError):
        codecs.get(codec).decode(memoryview(payload))
