"""The avro codec: one schema per queue, stored at creation, checked on every write."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

import tape
from tape import codecs

SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "Event",
    "namespace": "shop",
    "fields": [
        {"name": "id", "type": "long"},
        {"name": "user", "type": "string"},
        {"name": "price", "type": "double"},
        {"name": "paid", "type": "boolean"},
        {"name": "blob", "type": "bytes"},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
        {"name": "attrs", "type": {"type": "map", "values": "int"}},
        {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["BUY", "SELL"]}},
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        {
            "name": "ship",
            "type": {"type": "record", "name": "Ship", "fields": [{"name": "city", "type": "string"}]},
        },
        {"name": "note", "type": ["null", "string"], "default": None},
    ],
}

EVENT: dict[str, Any] = {
    "id": 2**40,
    "user": "zoë",
    "price": 9.5,
    "paid": True,
    "blob": b"\x00\x01",
    "tags": ["a", "b"],
    "attrs": {"x": 1},
    "kind": "SELL",
    "at": datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=timezone.utc),
    "ship": {"city": "Lyon"},
    "note": None,
}


@pytest.fixture
def avro_queue(qpath: Path) -> Any:
    with tape.Queue(qpath, codec="avro", schema=SCHEMA) as q:
        yield q


def test_a_record_round_trips(avro_queue: tape.Queue) -> None:
    avro_queue.appender().write(EVENT)
    assert avro_queue.tailer().read() == EVENT


def test_a_field_with_a_default_may_be_left_out(avro_queue: tape.Queue) -> None:
    without_note = {k: v for k, v in EVENT.items() if k != "note"}
    avro_queue.appender().write(without_note)
    assert avro_queue.tailer().read() == EVENT


def test_readers_use_the_stored_schema_without_being_given_it(avro_queue: tape.Queue) -> None:
    avro_queue.appender().write(EVENT)
    for reopened in (tape.Queue(avro_queue.path), tape.Queue(avro_queue.path, codec="avro")):
        with reopened as q:
            assert isinstance(q.codec, codecs.AvroCodec)
            assert q.codec.schema == SCHEMA
            assert q.tailer().read() == EVENT
            q.appender().write(EVENT)


def test_the_schema_is_stored_as_compact_json_with_sorted_keys(avro_queue: tape.Queue) -> None:
    assert avro_queue.codec_params == json.dumps(SCHEMA, sort_keys=True, separators=(",", ":")).encode()


def test_the_schema_may_be_given_as_json_text(qpath: Path) -> None:
    with tape.Queue(qpath, codec="avro", schema=json.dumps(SCHEMA, indent=2)) as q:
        q.appender().write(EVENT)
        assert q.tailer().read() == EVENT


def test_a_schema_of_a_bare_type_works(qpath: Path) -> None:
    with tape.Queue(qpath, codec="avro", schema="string") as q:
        q.appender().write("plain")
        assert q.tailer().read() == "plain"


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"user": None}, "shop.Event.user is missing or None, not string"),
        ({"id": "7"}, "shop.Event.id is '7' (str), not long"),
        ({"id": 1.5}, "shop.Event.id is 1.5 (float), not long"),
        ({"paid": 1}, "shop.Event.paid is 1 (int), not boolean"),
        ({"tags": "ab"}, "shop.Event.tags is 'ab' (str), not array"),
        ({"kind": "LEND"}, "shop.Event.kind is 'LEND' (str), not shop.Kind"),
        ({"ship": {}}, "shop.Ship.city is missing or None, not string"),
        ({"surplus": 1}, "surplus"),
    ],
)
def test_a_record_that_does_not_match_raises_naming_the_field_and_writes_nothing(
    avro_queue: tape.Queue, change: dict[str, Any], named: str
) -> None:
    bad = {k: v for k, v in {**EVENT, **change}.items() if v is not None or k == "note"}
    a = avro_queue.appender()
    a.write(EVENT)
    with pytest.raises(tape.EncodeError) as caught:
        a.write(bad)
    assert isinstance(caught.value, TypeError)
    assert named in str(caught.value)
    with pytest.raises(tape.EncodeError):
        a.write_many([EVENT, bad])
    assert avro_queue.count() == 1


def test_a_value_that_is_not_a_record_raises(avro_queue: tape.Queue) -> None:
    with pytest.raises(tape.EncodeError, match="the record is 5 \\(int\\), not shop.Event"):
        avro_queue.appender().write(5)


def test_creating_an_avro_queue_needs_a_schema_and_creates_nothing_without(qpath: Path) -> None:
    with pytest.raises(tape.ArgumentError, match="needs schema="):
        tape.Queue(qpath, codec="avro")
    assert not qpath.exists()


def test_a_schema_goes_only_with_avro(qpath: Path) -> None:
    with pytest.raises(tape.ArgumentError, match="schema= goes with codec='avro'"):
        tape.Queue(qpath, schema=SCHEMA)
    with pytest.raises(tape.ArgumentError, match="not 'json'"):
        tape.Queue(qpath, codec="json", schema=SCHEMA)
    assert not qpath.exists()


def test_an_invalid_schema_is_refused(qpath: Path) -> None:
    with pytest.raises(tape.ArgumentError, match="not a valid Avro schema"):
        tape.Queue(qpath, codec="avro", schema={"type": "record", "name": "R", "fields": [{"name": "x"}]})
    assert not qpath.exists()


def test_a_schema_over_32_kib_is_refused(qpath: Path) -> None:
    fields = [{"name": f"field_{k:05}", "type": "string"} for k in range(1000)]
    with pytest.raises(tape.ArgumentError, match="at most 32768"):
        tape.Queue(qpath, codec="avro", schema={"type": "record", "name": "Wide", "fields": fields})


def test_reopening_with_the_same_schema_written_differently_works(avro_queue: tape.Queue) -> None:
    reordered = dict(reversed(list(SCHEMA.items())))
    tape.Queue(avro_queue.path, codec="avro", schema=json.dumps(reordered, indent=4)).close()


def test_reopening_with_another_schema_raises_incompatible(avro_queue: tape.Queue) -> None:
    other = {**SCHEMA, "fields": SCHEMA["fields"][:2]}
    with pytest.raises(tape.IncompatibleQueueError, match="schema"):
        tape.Queue(avro_queue.path, codec="avro", schema=other)


def test_lz4_wraps_avro_with_the_schema_stored(qpath: Path) -> None:
    big = {**EVENT, "tags": ["repeated"] * 500}
    with tape.Queue(qpath, codec="lz4+avro", schema=SCHEMA) as q:
        q.appender().write_many([EVENT, big])
    with tape.Queue(qpath) as q:
        assert q.codec.name == "lz4+avro"
        assert list(q.tailer()) == [EVENT, big]


def test_the_registered_avro_codec_has_no_schema() -> None:
    with pytest.raises(tape.ArgumentError, match="needs a schema"):
        codecs.get("avro").encode(EVENT)


def test_a_payload_with_bytes_after_the_record_raises_decode_error() -> None:
    c = codecs.AvroCodec(SCHEMA)
    with pytest.raises(tape.DecodeError, match="followed by 1 more"):
        c.decode(memoryview(c.encode(EVENT) + b"\x00"))
    with pytest.raises(tape.DecodeError):
        c.decode(c.encode(EVENT)[:5])
