"""The msgpack codec's fast path (tape._msgpack): msgpack-python's bytes and values, or it steps aside.

Every property is differential: msgpack-python, with the settings the codec
uses, is the specification. The fast path either gives exactly what it gives
or declines (pack: None, unpack: FALLBACK), and the codec then asks it.
"""

from __future__ import annotations

import array
import enum
import itertools
import math
import random
import re
import struct
import sys
from collections import OrderedDict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tape
from tape import _msgpack as fast
from tape import codecs

_UINT64_MAX = 2**64 - 1
_INT64_MIN = -(2**63)


def packer_pack(value: Any) -> bytes:
    """What the codec's msgpack-python Packer makes of `value`."""
    data: bytes = msgpack.Packer(use_bin_type=True, datetime=True).pack(value)
    return data


def unpackb(buf: bytes | memoryview) -> Any:
    """What the codec's msgpack-python settings make of `buf`."""
    return msgpack.unpackb(buf, raw=False, strict_map_key=False, timestamp=3)


def same(a: Any, b: Any) -> bool:
    """Equal, of the same types all the way down (True is not 1), floats bit for bit, dicts in order."""
    todo = [(a, b)]  # a loop, not recursion: values may be nested 1,000 deep
    while todo:
        a, b = todo.pop()
        if type(a) is not type(b):
            return False
        if isinstance(a, float):
            if struct.pack(">d", a) != struct.pack(">d", b):
                return False
        elif isinstance(a, list):
            if len(a) != len(b):
                return False
            todo.extend(zip(a, b))
        elif isinstance(a, dict):
            if len(a) != len(b):
                return False
            for (ka, va), (kb, vb) in zip(a.items(), b.items()):
                todo += [(ka, kb), (va, vb)]
        elif a != b:
            return False
    return True


# -- values of the exact types -------------------------------------------------------------

# Every int format's edges, and those of the fixints.
_INT_EDGES = sorted(
    {
        edge + d
        for edge in (0, 2**7, 2**8, 2**16, 2**32, 2**63, 2**64, -32, -(2**7), -(2**15), -(2**31), -(2**63))
        for d in (-1, 0, 1)
        if _INT64_MIN <= edge + d <= _UINT64_MAX
    }
)
_ints = st.sampled_from(_INT_EDGES) | st.integers(_INT64_MIN, _UINT64_MAX)
_floats = st.floats(allow_nan=False) | st.sampled_from([0.0, -0.0, math.inf, -math.inf, 5e-324])
# Default text leaves out surrogates: every character here is encodable (non-BMP included).
_texts = st.text() | st.text(st.characters(min_codepoint=0x10000), max_size=5)
_keys = _texts | st.binary(max_size=8) | _ints

exact_values = st.recursive(
    st.none() | st.booleans() | _ints | _floats | _texts | st.binary(),
    lambda inner: st.lists(inner, max_size=6)
    | st.lists(inner, max_size=4).map(tuple)
    | st.dictionaries(_keys, inner, max_size=6),
    max_leaves=30,
)


@settings(max_examples=1000, deadline=None)
@given(value=exact_values)
def test_pack_gives_the_bytes_of_msgpack_pythons_packer(value: Any) -> None:
    assert fast.pack(value) == packer_pack(value)


@settings(max_examples=1000, deadline=None)
@given(value=exact_values)
def test_unpack_gives_the_value_of_msgpack_pythons_unpackb(value: Any) -> None:
    data = packer_pack(value)
    assert same(fast.unpack(data), unpackb(data))


@given(nan=st.integers(0, 2**52 - 1).map(lambda m: struct.unpack(">d", struct.pack(">Q", 0x7FF0_0000_0000_0000 | m | 1))[0]))
def test_pack_keeps_the_bits_of_a_nan(nan: float) -> None:
    assert fast.pack([nan]) == packer_pack([nan])
    assert same(fast.unpack(packer_pack(nan)), unpackb(packer_pack(nan)))


@pytest.mark.parametrize("n", [0, 1, 15, 16, 31, 32, 255, 256, 65535, 65536, 70000])
def test_every_length_format_is_msgpack_pythons(n: int) -> None:
    for value in ("a" * n, "é" * (n // 2), b"b" * n, list(range(n)), tuple(range(n)), {k: None for k in range(n)}):
        data = fast.pack(value)
        assert data == packer_pack(value)
        assert same(fast.unpack(data), unpackb(data))


def test_nesting_as_deep_as_the_fast_path_goes_packs_as_msgpack_python_does() -> None:
    value: Any = 0
    for _ in range(511):
        value = [value]
    assert fast.pack(value) == packer_pack(value)


# -- what pack leaves to msgpack-python ----------------------------------------------------------


class Text(str):
    pass


class Number(int):
    pass


class Color(enum.IntEnum):
    RED = 1


class Mapping(dict):  # type: ignore[type-arg]
    pass


_strangers = st.sampled_from(
    [
        Text("x"),
        Number(3),
        Color.RED,
        Mapping(a=1),
        OrderedDict(a=1),
        bytearray(b"x"),
        memoryview(b"x"),
        {1, 2},
        frozenset(),
        datetime(2024, 1, 1, tzinfo=timezone.utc),
        datetime(2024, 1, 1),
        2**64,
        -(2**63) - 1,
        "lone \ud800 surrogate",
        object(),
        msgpack.ExtType(5, b"x"),
        {(1, 2): "tuple key"},
        {1.5: "float key"},
        {None: "None key"},
        {True: "bool key"},
        {Text("k"): "str subclass key"},
        {Number(1): "int subclass key"},
    ]
)


def _holding(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Containers of exact values with one value of `inner` somewhere among them."""
    around = st.lists(exact_values, max_size=3)
    return (
        st.builds(lambda pre, bad, post: pre + [bad] + post, around, inner, around)
        | st.builds(lambda pre, bad: tuple(pre) + (bad,), around, inner)
        | st.builds(lambda d, k, bad: {**d, k: bad}, st.dictionaries(_keys, exact_values, max_size=3), _keys, inner)
    )


@settings(max_examples=500, deadline=None)
@given(value=st.recursive(_strangers, _holding, max_leaves=5))
def test_pack_returns_none_for_a_value_holding_anything_else(value: Any) -> None:
    assert fast.pack(value) is None


def test_pack_returns_none_for_a_value_that_contains_itself() -> None:
    loop: dict[str, Any] = {}
    loop["self"] = loop
    assert fast.pack(loop) is None
    with pytest.raises(tape.EncodeError, match="nested too deeply"):
        codecs.get("msgpack").encode(loop)


def test_pack_returns_none_for_nesting_deeper_than_it_goes() -> None:
    value: Any = 0
    for _ in range(512):
        value = [value]
    assert fast.pack(value) is None
    if msgpack.version < (1, 2):  # msgpack-python stops at 511 levels too
        with pytest.raises(tape.EncodeError, match="nested too deeply"):
            codecs.get("msgpack").encode(value)
    else:  # it goes deeper
        assert codecs.get("msgpack").encode(value) == packer_pack(value)


# -- unpacking bytes of every kind ---------------------------------------------------------------


@st.composite
def encodings(draw: st.DrawFn, value: Any) -> bytes:
    """Some valid msgpack encoding of `value`: any format wide enough, not only the smallest."""
    def head(fix: int | None, fix_max: int, wide: list[tuple[int, int]], n: int) -> bytes:
        choices = [bytes([code]) + n.to_bytes(size, "big") for code, size in wide if n < 2 ** (8 * size)]
        if fix is not None and n <= fix_max:
            choices.append(bytes([fix | n]))
        return draw(st.sampled_from(choices))

    if value is None or isinstance(value, bool):
        return packer_pack(value)
    if isinstance(value, int):
        formats = []
        if 0 <= value < 128 or -32 <= value < 0:
            formats.append(value.to_bytes(1, "big", signed=value < 0))
        for code, size in ((0xCC, 1), (0xCD, 2), (0xCE, 4), (0xCF, 8)):
            if 0 <= value < 2 ** (8 * size):
                formats.append(bytes([code]) + value.to_bytes(size, "big"))
        for code, size in ((0xD0, 1), (0xD1, 2), (0xD2, 4), (0xD3, 8)):
            if -(2 ** (8 * size - 1)) <= value < 2 ** (8 * size - 1):
                formats.append(bytes([code]) + value.to_bytes(size, "big", signed=True))
        return draw(st.sampled_from(formats))
    if isinstance(value, float):
        try:
            single = struct.pack(">f", value)
        except OverflowError:
            single = b""
        if single and struct.unpack(">f", single)[0] == value and draw(st.booleans()):
            return b"\xca" + single
        return b"\xcb" + struct.pack(">d", value)
    if isinstance(value, str):
        data = value.encode()
        return head(0xA0, 31, [(0xD9, 1), (0xDA, 2), (0xDB, 4)], len(data)) + data
    if isinstance(value, bytes):
        return head(None, 0, [(0xC4, 1), (0xC5, 2), (0xC6, 4)], len(value)) + value
    if isinstance(value, (list, tuple)):
        return head(0x90, 15, [(0xDC, 2), (0xDD, 4)], len(value)) + b"".join(draw(encodings(v)) for v in value)
    if isinstance(value, dict):
        items = b"".join(draw(encodings(k)) + draw(encodings(v)) for k, v in value.items())
        return head(0x80, 15, [(0xDE, 2), (0xDF, 4)], len(value)) + items
    raise AssertionError(value)


def msgpack_error_text(exc: Exception) -> str:
    """The codec's message for msgpack-python's error `exc`, as a pattern."""
    return re.escape(f"not a msgpack value: {exc}")


def check_unpack(data: bytes) -> Any:
    """unpack(data) is msgpack-python's value or FALLBACK; the codec's decode is msgpack-python's in all."""
    got = fast.unpack(data)
    try:
        want = unpackb(data)
    except Exception as exc:  # msgpack-python refuses it: so must the fast path
        assert got is fast.FALLBACK, (data, got, exc)
        with pytest.raises(tape.DecodeError, match=msgpack_error_text(exc)):
            codecs.get("msgpack").decode(data)
        return got
    if got is not fast.FALLBACK:
        assert same(got, want), (data, got, want)
    assert same(codecs.get("msgpack").decode(data), want)
    return got


@settings(max_examples=500, deadline=None)
@given(data=st.data(), value=exact_values)
def test_unpack_reads_every_format_of_a_value(data: st.DataObject, value: Any) -> None:
    encoded = data.draw(encodings(value))
    assert check_unpack(encoded) is not fast.FALLBACK


# msgpack-python's own bytes for values the fast path leaves: timestamps, ext, float and nil keys.
_other_payloads = st.recursive(
    st.sampled_from(
        [
            packer_pack(datetime(2024, 1, 1, tzinfo=timezone.utc)),
            packer_pack(datetime(1900, 1, 1, 0, 0, 0, 1, tzinfo=timezone.utc)),
            packer_pack(msgpack.ExtType(7, b"abc")),
            b"\xd4\x01\x00",
            b"\x81\xc0\x01",  # nil key
            b"\x81\xcb" + struct.pack(">d", 1.5) + b"\x02",  # float key
            b"\x81\xc3\x02",  # bool key
            b"\x81\x91\x01\x02",  # array key
            b"\x82\x01\x01\xc3\x02",  # an int key, then true: the same key to a dict
        ]
    )
    | exact_values.map(packer_pack),
    lambda inner: st.lists(inner, max_size=4).map(lambda items: bytes([0x90 | len(items)]) + b"".join(items)),
    max_leaves=8,
)


@settings(max_examples=500, deadline=None)
@given(data=_other_payloads)
def test_unpack_gives_msgpack_pythons_value_or_steps_aside_for_other_values(data: bytes) -> None:
    check_unpack(data)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """Valid msgpack, then cut, extended, or with bytes changed."""
    data = bytearray(draw(_other_payloads))
    for _ in range(draw(st.integers(1, 4))):
        how = draw(st.sampled_from(["cut", "extend", "flip", "set", "insert"]))
        at = draw(st.integers(0, len(data)))
        if how == "cut":
            del data[at:]
        elif how == "extend":
            data += draw(st.binary(min_size=1, max_size=4))
        elif how == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=3))
        elif data and at < len(data):
            data[at] = data[at] ^ draw(st.integers(1, 255)) if how == "flip" else draw(st.sampled_from([0xC1, 0xFF, 0xDB, 0xDD, 0xDF, 0xC6, 0x00]))
    return bytes(data)


@settings(max_examples=2000, deadline=None)
@given(data=mutated())
def test_unpack_of_damaged_bytes_is_msgpack_pythons_value_or_steps_aside(data: bytes) -> None:
    check_unpack(data)


@settings(max_examples=1000, deadline=None)
@given(data=st.binary(max_size=64))
def test_unpack_of_random_bytes_is_msgpack_pythons_value_or_steps_aside(data: bytes) -> None:
    check_unpack(data)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",
        b"\x01\x02",  # trailing bytes
        b"\xdb\xff\xff\xff\xff",  # a 4 GiB str in 5 bytes
        b"\xc6\xff\xff\xff\xff",  # bin likewise
        b"\xdd\xff\xff\xff\xff\x01",  # an array of 2**32-1 items
        b"\xdf\xff\xff\xff\xff\x01\x01",  # a map likewise
        b"\xa2\xc3\x28",  # invalid UTF-8
        b"\x81\xa2\xc3\x28\x01",  # invalid UTF-8 in a key
        b"\x81\xa3\xed\xa0\x80\x01",  # a UTF-8-encoded surrogate key
        b"\x81\xd9\x41" + b"\xff" * 65 + b"\x01",  # invalid UTF-8 in a key too long to cache
        b"\x91" * 600 + b"\x00",  # deeper than the fast path goes
        b"\x91" * 1100 + b"\x00",  # deeper than msgpack-python goes
        b"\x81" * 600 + b"\x00",
        b"\xca\x7f\xc0\x00\x00",  # float32 NaN
    ],
)
def test_unpack_of_edge_bytes_is_msgpack_pythons_value_or_steps_aside(data: bytes) -> None:
    check_unpack(data)


def test_unpack_takes_any_contiguous_buffer_and_leaves_the_rest() -> None:
    data = packer_pack({"k": [1, "two"]})
    assert fast.unpack(memoryview(data)) == {"k": [1, "two"]}
    assert fast.unpack(memoryview(b"xx" + data)[2:]) == {"k": [1, "two"]}
    assert fast.unpack(bytearray(data)) == {"k": [1, "two"]}
    assert fast.unpack(memoryview(data + data)[::2]) is fast.FALLBACK  # not contiguous
    assert fast.unpack("not a buffer") is fast.FALLBACK
    with pytest.raises(tape.DecodeError):
        codecs.get("msgpack").decode("not a buffer")  # type: ignore[arg-type]


# -- map keys ---------------------------------------------------------------------------------------


def test_many_distinct_keys_decode_right_as_they_displace_each_other() -> None:
    # More keys than the cache has slots, so some share one; each is read many times, in a shuffled order.
    rng = random.Random(5)
    keys = [f"key{k}" for k in range(5000)] + ["é" * k for k in range(1, 40)] + ["\U0001f600" * 16]
    for _ in range(20):
        chosen = rng.sample(keys, 12)
        value = {k: i for i, k in enumerate(chosen)}
        data = packer_pack(value)
        got = fast.unpack(data)
        assert same(got, unpackb(data))
        assert list(got) == chosen


def _cache_slot(key: bytes) -> tuple[int, int]:
    """The key cache's slot and the key's length, as kc_hash in tape/_msgpack.c computes them.

    Only used to build keys that meet in one slot: if the C hash changes, the
    test below still checks decoding, without the collisions.
    """
    m = 2**64 - 1
    h, p, n = (len(key) * 0x9E3779B97F4A7C15) & m, 0, len(key)
    while n > 0:
        k = min(n, 8)
        h = ((h ^ int.from_bytes(key[p : p + k], "little")) * 0xFF51AFD7ED558CCD) & m
        h ^= h >> 32
        p, n = p + k, n - k
    return (h & 0xFFFFFFFF) & 1023, len(key)


def test_keys_of_one_length_that_meet_in_one_cache_slot_are_not_confused() -> None:
    rng = random.Random(1)
    seen: dict[tuple[int, int], str] = {}
    pairs: list[tuple[str, str]] = []
    while len(pairs) < 50:
        key = "".join(rng.choice(["a", "\x00", "é", "€", "\U0001f600", "Z"]) for _ in range(rng.randint(1, 12)))
        other = seen.setdefault(_cache_slot(key.encode()), key)
        if other != key:
            pairs.append((other, key))
    for a, b in pairs:
        for _ in range(3):
            for key in (a, b):
                (got,) = fast.unpack(packer_pack({key: 1}))
                assert got == key and got is sys.intern(key)


def test_keys_of_the_same_bytes_but_another_length_or_type_are_not_confused() -> None:
    value = {"a": 1, "aa": 2, "a\x00": 3, b"a": 4, 97: 5, "": 6, b"": 7, "A": 8}
    for _ in range(3):
        assert same(fast.unpack(packer_pack(value)), value)


@pytest.mark.parametrize("n", [63, 64, 65, 200])
def test_keys_about_the_cached_length_decode_as_msgpack_python_does(n: int) -> None:
    value = {"k" * n: 1, "é" * (n // 2): 2, "x" * (n - 1) + "y": 3}
    for _ in range(2):
        data = packer_pack(value)
        assert same(fast.unpack(data), unpackb(data))


def test_a_repeated_key_keeps_its_first_place_and_its_last_value() -> None:
    data = b"\x83\xa1a\x01\xa1b\x02\xa1a\x03"
    assert same(fast.unpack(data), unpackb(data))
    assert list(fast.unpack(data).items()) == [("a", 3), ("b", 2)]


def test_str_keys_come_back_interned_as_msgpack_pythons_do() -> None:
    name = "".join(["fi", "eld"])  # not a constant: not interned by the compiler
    data = packer_pack({name: 1})
    for _ in range(2):
        (key,) = fast.unpack(data)
        assert key is sys.intern(name)


def test_int_and_bytes_keys_decode_as_msgpack_python_does() -> None:
    value = {0: "a", -1: "b", _UINT64_MAX: "c", _INT64_MIN: "d", b"\x00\xff": "e", b"": "f"}
    data = packer_pack(value)
    assert same(fast.unpack(data), unpackb(data))


def test_float32_nans_decode_to_the_bits_msgpack_python_gives() -> None:
    for bits in (0x7F800001, 0x7FBFFFFF, 0x7FC00000, 0xFF800001, 0xFFC00001):
        data = b"\xca" + bits.to_bytes(4, "big")
        assert struct.pack(">d", fast.unpack(data)) == struct.pack(">d", unpackb(data))


@pytest.mark.parametrize("wide", [lambda b: memoryview(b).cast("I"), lambda b: array.array("I", b)], ids=["memoryview", "array"])
def test_a_buffer_of_wider_items_is_refused_as_msgpack_python_refuses_it(wide: Any) -> None:
    data = packer_pack([1, 2, 3])  # 4 bytes: one 32-bit item
    with pytest.raises(BufferError):
        unpackb(wide(data))
    assert fast.unpack(wide(data)) is fast.FALLBACK
    with pytest.raises(tape.DecodeError):
        codecs.get("msgpack").decode(wide(data))
    values: list[Any] = []
    assert fast.unpack_into(values, wide(data), [4], 0) == 0 and values == []


def test_unpack_into_takes_ends_as_any_sequence_and_copes_with_ends_that_are_values() -> None:
    buf = bytes(range(1, 101)) * 20  # 2,000 one-byte payloads (fixints)
    for ends in (list(range(1, 2001)), tuple(range(1, 2001)), range(1, 2001)):
        values: list[Any] = []
        assert fast.unpack_into(values, buf, ends, 0) == 2000
        assert values == list(buf)
    same_list: list[Any] = list(range(1, 2001))  # appending moves the list's items as it reads them
    assert fast.unpack_into(same_list, buf, same_list, 0) == 2000
    assert same_list[2000:] == list(buf)


# -- decode_many ---------------------------------------------------------------------------------------


def decode_each(payloads: list[bytes]) -> tuple[list[Any], type[Exception] | None, str | None]:
    """decode() of each payload up to the first that fails: the values, and that failure's type and text."""
    c = codecs.get("msgpack")
    values = []
    for p in payloads:
        try:
            values.append(c.decode(p))
        except Exception as exc:
            return values, type(exc), str(exc)
    return values, None, None


@settings(max_examples=300, deadline=None)
@given(payloads=st.lists(_other_payloads | mutated(), max_size=12))
def test_decode_many_gives_what_decode_of_each_gives_up_to_the_first_failure(payloads: list[bytes]) -> None:
    buf = b"".join(payloads)
    ends = list(itertools.accumulate(map(len, payloads)))
    values, error = codecs.get("msgpack").decode_many(buf, ends)  # type: ignore[attr-defined]
    want_values, want_type, want_text = decode_each(payloads)
    assert len(values) == len(want_values) and all(map(same, values, want_values))
    if want_type is None:
        assert error is None
    else:
        assert (type(error), str(error)) == (want_type, want_text)


def test_decode_many_stops_at_a_bad_payload_and_says_why() -> None:
    payloads = [packer_pack(k) for k in range(3)] + [b"\x92\x01"] + [packer_pack(k) for k in range(3, 6)]
    ends = list(itertools.accumulate(map(len, payloads)))
    values, error = codecs.get("msgpack").decode_many(b"".join(payloads), ends)  # type: ignore[attr-defined]
    assert values == [0, 1, 2]
    assert isinstance(error, tape.DecodeError)


def test_decode_many_goes_past_a_payload_only_msgpack_python_reads() -> None:
    when = datetime(2024, 1, 1, tzinfo=timezone.utc)
    payloads = [packer_pack(v) for v in ({"a": 1}, when, {"a": 2}, when)]
    ends = list(itertools.accumulate(map(len, payloads)))
    assert codecs.get("msgpack").decode_many(b"".join(payloads), ends) == ([{"a": 1}, when, {"a": 2}, when], None)  # type: ignore[attr-defined]


# -- through a queue -----------------------------------------------------------------------------------

_EVENT = {
    "id": 1_000_001,
    "ts": 1_704_067_200_037,
    "user": "user0001@example.com",
    "action": "cart",
    "sku": "SKU-00001-XL",
    "qty": 2,
    "price": 10.99,
    "currency": "EUR",
    "paid": False,
    "note": "gift wrap, leave at the door",
}


def test_a_queue_stores_msgpack_pythons_bytes_and_reads_them_back(tmp_path: Path) -> None:
    values = [_EVENT, {**_EVENT, "id": 2, "tags": ("a", "b")}, None, [1.5, b"x", "é"], datetime(2024, 1, 1, tzinfo=timezone.utc)]
    with tape.Queue(tmp_path / "q") as q:
        a = q.appender()
        for v in values:
            a.write(v)
        a.write_many(values * 10)
    with tape.Queue(tmp_path / "q", raw=True) as q:
        assert list(q.tailer()) == [packer_pack(v) for v in values * 11]
    with tape.Queue(tmp_path / "q") as q:
        want = [unpackb(packer_pack(v)) for v in values * 11]
        got = list(q.tailer())  # in batches: decode_many
        assert len(got) == len(want) and all(map(same, got, want))
        t = q.tailer()
        one_by_one = [t.read() for _ in range(len(values))]
        assert all(map(same, one_by_one, want))


def test_a_queue_reads_past_a_bad_payload_in_the_middle_of_a_batch(tmp_path: Path) -> None:
    with tape.Queue(tmp_path / "q") as q:
        q.appender().write_many([{"n": k} for k in range(10)])
    with tape.Queue(tmp_path / "q", raw=True) as q:
        q.appender().write(b"\x81\xa1n\xc1")  # a map whose value is the reserved byte
    with tape.Queue(tmp_path / "q") as q:
        q.appender().write_many([{"n": k} for k in range(10, 20)])
        t = q.tailer()
        got = []
        with pytest.raises(tape.DecodeError):
            for value in t:
                got.append(value)
        assert got == [{"n": k} for k in range(10)]
        assert list(t) == [{"n": k} for k in range(10, 20)]


def test_the_codec_refuses_what_msgpack_python_refuses_with_the_same_words(tmp_path: Path) -> None:
    with tape.Queue(tmp_path / "q") as q:
        a = q.appender()
        for bad, words in [({"k": {(1, 2): 1}}, "a map key of type tuple"), ({"n": 2**64}, "an int of 65 bits"), ("\ud800", "surrogate")]:
            with pytest.raises(tape.EncodeError, match=words):
                a.write(bad)
        assert q.count() == 0
