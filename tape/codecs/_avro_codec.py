"""The avro codec: Avro binary of the schema a queue stores (fastavro).

Loaded when an avro codec is first asked for (see tape.codecs), so that
`import tape` does not load fastavro.
"""

from __future__ import annotations

import io
import json
import reprlib
from typing import Any

import fastavro
from fastavro.validation import ValidationError, validate

from tape._native import PARAMS_MAX
from tape.errors import ArgumentError, DecodeError, EncodeError, IncompatibleQueueError


def _avro_type_name(schema: Any) -> str:
    """A short name for an Avro type, for messages."""
    if isinstance(schema, dict):
        return str(schema.get("name") or schema.get("type"))
    if isinstance(schema, list):
        return " | ".join(map(_avro_type_name, schema))
    return str(schema)


def _avro_problem(error: ValidationError) -> str:
    """What a fastavro ValidationError says, naming the field and leaving out schema dumps."""
    problems = []
    for e in error.errors:
        datum = e.datum
        what = "missing or None" if datum is None else f"{reprlib.repr(datum)} ({type(datum).__name__})"
        problems.append(f"{e.field or 'the record'} is {what}, not {_avro_type_name(e.schema)}")
    return "; ".join(problems)


def _avro_schema(schema: Any) -> tuple[bytes, Any]:
    """The schema as compact JSON with sorted keys, and as fastavro parsed it."""
    if isinstance(schema, (str, bytes)):
        try:
            schema = json.loads(schema)
        except ValueError:
            pass  # a bare type name, such as "string"
    try:
        text = json.dumps(schema, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        parsed = fastavro.parse_schema(json.loads(text))
    except Exception as exc:  # fastavro raises many kinds for a bad schema
        raise ArgumentError(f"not a valid Avro schema: {exc}") from None
    data = text.encode()
    if len(data) > PARAMS_MAX:
        raise ArgumentError(f"the schema is {len(data)} bytes as JSON; a queue stores at most {PARAMS_MAX}")
    return data, parsed


class AvroCodec:
    """Avro binary without per-entry schema (fastavro's schemaless format).

    Every entry of a queue is written with the schema stored in the queue at
    creation; a record that does not match it is refused, naming the field.
    The registered "avro" has no schema: a queue binds it to its own.
    """

    name = "avro"

    def __init__(self, schema: Any = None) -> None:
        self.params: bytes | None = None
        self._parsed: Any = None
        if schema is not None:
            self.params, self._parsed = _avro_schema(schema)

    @property
    def schema(self) -> Any:
        """The schema as plain JSON data, None when unbound."""
        return None if self.params is None else json.loads(self.params)

    def with_params(self, params: bytes) -> AvroCodec:
        if not params:
            raise IncompatibleQueueError("the queue's codec is avro but it stores no schema")
        return AvroCodec(params.decode())

    def _schema(self) -> Any:
        if self._parsed is None:
            raise ArgumentError("the avro codec needs a schema: tape.Queue(path, codec='avro', schema=...)")
        return self._parsed

    def encode(self, obj: Any) -> bytes:
        parsed = self._schema()
        try:
            validate(obj, parsed, raise_errors=True)
        except ValidationError as exc:
            raise EncodeError(f"the record does not match the avro schema: {_avro_problem(exc)}") from None
        out = io.BytesIO()
        try:
            # strict_allow_default: refuse fields the schema does not have.
            fastavro.schemaless_writer(out, parsed, obj, strict_allow_default=True)
        except (TypeError, ValueError, KeyError) as exc:
            raise EncodeError(f"the record does not match the avro schema: {exc}") from exc
        return out.getvalue()

    def decode(self, buf: bytes | memoryview) -> Any:
        parsed = self._schema()
        source = io.BytesIO(buf)
        try:
            value = fastavro.schemaless_reader(source, parsed, None)
        except Exception as exc:  # fastavro raises many kinds for bad input
            raise DecodeError(f"not an avro record of the queue's schema: {exc!r}") from exc
        if source.tell() != len(buf):
            raise DecodeError(f"an avro record of {source.tell()} bytes followed by {len(buf) - source.tell()} more")
        return value
