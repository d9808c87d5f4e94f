"""Codecs: how a value becomes an entry's payload and back, and the registry of them.

A queue records its codec's name (and, for avro, the schema) when it is
created, so a reader finds the codec here by that name. Built in: "raw" (bytes
in, bytes out), "msgpack" (the default), "json", "avro" (a schema per queue),
"pickle" (unsafe: only when named), and "lz4+<name>", lz4 frame compression
around any of them. `register()` adds one; `get()` finds one by name.

A codec may take parameters that its queue stores (ParamCodec): `params` is
what a queue created with it stores, None when it needs the stored ones, and
`with_params()` binds it to a queue's stored parameters.
"""

from __future__ import annotations

import io
import json
import math
import pickle
import reprlib
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

import fastavro
import lz4.frame
import msgpack
from fastavro.validation import ValidationError, validate

from tape import _msgpack as _fast
from tape._core import lib
from tape.errors import (
    ArgumentError,
    ArgumentTypeError,
    DecodeError,
    EncodeError,
    IncompatibleQueueError,
)

__all__ = [
    "Codec",
    "ParamCodec",
    "RawCodec",
    "MsgpackCodec",
    "JsonCodec",
    "AvroCodec",
    "PickleCodec",
    "Lz4Codec",
    "register",
    "get",
    "names",
]


@runtime_checkable
class Codec(Protocol):
    """Turns values into bytes and back; `name` is what a queue records.

    A codec may also have `decode_many(buf, ends)`, as MsgpackCodec has:
    tailers then decode a batch of payloads in one call.
    """

    @property
    def name(self) -> str: ...

    def encode(self, obj: Any) -> bytes:
        """The payload for `obj`; raises EncodeError when `obj` cannot be encoded."""
        ...

    def decode(self, buf: bytes | memoryview) -> Any:
        """The value stored in `buf`; raises DecodeError when `buf` is not valid."""
        ...


@runtime_checkable
class ParamCodec(Codec, Protocol):
    """A codec with parameters stored in its queue at creation (avro: the schema)."""

    @property
    def params(self) -> bytes | None:
        """What a queue created with this codec stores; None: it needs the stored ones."""
        ...

    def with_params(self, params: bytes) -> Codec:
        """This codec bound to the parameters a queue stored."""
        ...


# -- the registry ---------------------------------------------------------------

_REGISTRY: dict[str, Codec] = {}
_LZ4_PREFIX = "lz4+"


def register(codec: Codec) -> Codec:
    """Make `codec` findable by its name, replacing any codec of that name; return it."""
    if not isinstance(codec, Codec):
        raise ArgumentTypeError(f"a codec needs name, encode and decode, not {codec!r}")
    name = codec.name
    if not isinstance(name, str) or not name:
        raise ArgumentTypeError(f"a codec's name must be a non-empty str, not {name!r}")
    if len(name.encode()) >= lib.TAPE_NAME_MAX:
        raise ArgumentError(f"codec name {name!r} is longer than {lib.TAPE_NAME_MAX - 1} bytes")
    _REGISTRY[name] = codec
    return codec


def get(name: str) -> Codec:
    """The codec registered as `name`; "lz4+<name>" compresses that codec's payloads."""
    codec = _REGISTRY.get(name)
    if codec is not None:
        return codec
    if name.startswith(_LZ4_PREFIX) and name[len(_LZ4_PREFIX) :] in _REGISTRY:
        return Lz4Codec(_REGISTRY[name[len(_LZ4_PREFIX) :]])
    raise ArgumentError(f"unknown codec {name!r} (known: {', '.join(names())}, and lz4+ any of them)")


def names() -> list[str]:
    """The names of the registered codecs, sorted."""
    return sorted(_REGISTRY)


# -- finding what a value cannot hold ----------------------------------------------


def _first_objection(obj: Any, objection: Callable[[Any, bool], str | None]) -> str | None:
    """Where in `obj` the first part `objection` refuses is, and why; None if nothing is.

    `objection(part, is_key)` describes what is wrong with one value or map
    key. Only called once encoding failed, so it favours clear over fast.
    """
    seen: set[int] = set()

    def walk(part: Any, path: str) -> Iterator[str]:
        why = objection(part, False)
        if why is not None:
            yield f"{path}: {why}"
            return
        if id(part) in seen:  # shared, or a reference cycle
            return
        if isinstance(part, dict):
            seen.add(id(part))
            for key, value in part.items():
                why = objection(key, True)
                if why is not None:
                    yield f"{path}: {why}"
                    return
                yield from walk(value, f"{path}[{reprlib.repr(key)}]")
        elif isinstance(part, (list, tuple)):
            seen.add(id(part))
            for k, value in enumerate(part):
                yield from walk(value, f"{path}[{k}]")

    try:
        return next(walk(obj, "value"), None)
    except RecursionError:
        return "value: nested too deeply"


# -- raw ------------------------------------------------------------------------------


class RawCodec:
    """The payload is the value: bytes, bytearray or memoryview in, bytes out."""

    name = "raw"

    def encode(self, obj: Any) -> bytes:
        if type(obj) is bytes:
            return obj
        if isinstance(obj, (bytes, bytearray, memoryview)):
            return bytes(obj)
        raise EncodeError(
            f"the raw codec takes bytes, bytearray or memoryview, not {type(obj).__name__}"
        )

    def decode(self, buf: bytes | memoryview) -> bytes:
        return bytes(buf)


# -- msgpack ---------------------------------------------------------------------------

_MSGPACK_INT_MIN = -(2**63)
_MSGPACK_INT_END = 2**64
_check_keys = _fast.check_keys


def _msgpack_objection(part: Any, is_key: bool) -> str | None:
    """What msgpack (as tape uses it) cannot hold about `part`, or None."""
    if is_key and (isinstance(part, bool) or not isinstance(part, (str, bytes, int))):
        return f"a map key of type {type(part).__name__} ({reprlib.repr(part)}): keys must be str, bytes or int"
    if isinstance(part, bool) or part is None:
        return None
    if isinstance(part, int):
        if _MSGPACK_INT_MIN <= part < _MSGPACK_INT_END:
            return None
        return f"an int of {part.bit_length()} bits: msgpack holds ints from -2**63 to 2**64-1"
    if isinstance(part, datetime):
        return None if part.tzinfo is not None else "a datetime without a time zone (tzinfo)"
    if isinstance(part, (set, frozenset)):
        return f"a {type(part).__name__}: msgpack has no sets (use a list)"
    if isinstance(part, (str, bytes, bytearray, memoryview, float, dict, list, tuple)):
        return None
    if isinstance(part, (msgpack.ExtType, msgpack.Timestamp)):
        return None
    return f"a value of type {type(part).__name__}, which msgpack cannot encode"


class MsgpackCodec:
    """MessagePack: str stays str, bytes stay bytes; tuples come back as lists.

    Map keys are str, bytes or int; ints range from -2**63 to 2**64-1; a
    datetime must be timezone-aware and comes back in UTC (msgpack's timestamp
    extension).

    Values made of exact builtin types (dict, list, tuple, str, bytes, int,
    float, bool, None) take tape's own fast path (tape/_msgpack.c), which
    gives the very bytes and values msgpack-python does; everything else, and
    every error, is msgpack-python's.
    """

    name = "msgpack"

    def __init__(self) -> None:
        # A Packer per thread: reusing one is over twice as fast as packb(),
        # and a Packer must not be used by two threads at once.
        self._local = threading.local()

    def encode(self, obj: Any) -> bytes:
        fast = _fast.pack(obj)
        if fast is not None:
            return fast
        try:
            pack = self._local.pack
        except AttributeError:
            pack = self._local.pack = msgpack.Packer(use_bin_type=True, datetime=True).pack
        try:
            data: bytes = pack(obj)
        except (TypeError, OverflowError, ValueError) as exc:
            why = _first_objection(obj, _msgpack_objection)
            if why is None:  # deeper than msgpack-python goes (512 or 1,024 levels, by version), or containing itself
                why = "value: nested too deeply" if "recursion" in str(exc) else str(exc)
            raise EncodeError(f"msgpack cannot encode the value: {why}") from exc
        # msgpack packs a tuple key as an array, which no reader can turn back
        # into a key: the packed bytes tell, faster than a walk of `obj`.
        if _check_keys(data) != 0:
            why = _first_objection(obj, _msgpack_objection) or "a map key that is not a str, bytes or int"
            raise EncodeError(f"msgpack cannot encode the value: {why}")
        return data

    def decode(self, buf: bytes | memoryview) -> Any:
        value = _fast.unpack(buf)
        if value is not _fast.FALLBACK:
            return value
        try:
            return msgpack.unpackb(buf, raw=False, strict_map_key=False, timestamp=3)
        except (ValueError, TypeError, OverflowError, BufferError, msgpack.UnpackException) as exc:
            raise DecodeError(f"not a msgpack value: {exc}") from exc

    def decode_many(self, buf: bytes, ends: Sequence[int]) -> tuple[list[Any], Exception | None]:
        """The values of the payloads buf[:ends[0]], buf[ends[0]:ends[1]], ...

        Decoded in one call to the fast path, up to the first payload that is
        not exactly one value; also returns why that one is not (None when all
        are). A payload the fast path leaves (a timestamp, an error) is
        decode()d alone, and the batch goes on after it.
        """
        values: list[Any] = []
        done = _fast.unpack_into(values, buf, ends, 0)
        while done < len(ends):
            start = ends[done - 1] if done else 0
            try:
                values.append(self.decode(memoryview(buf)[start : ends[done]]))
            except Exception as exc:
                return values, exc
            done = _fast.unpack_into(values, buf, ends, done + 1)
        return values, None


# -- json --------------------------------------------------------------------------------


def _json_objection(part: Any, is_key: bool) -> str | None:
    """What JSON cannot hold about `part`, or None."""
    if is_key:
        if part is None or isinstance(part, (str, int, float)):
            return None
        return f"a map key of type {type(part).__name__} ({reprlib.repr(part)}): JSON keys are str"
    if isinstance(part, float) and not math.isfinite(part):
        return f"{part!r} (JSON has no NaN or Infinity)"
    if part is None or isinstance(part, (str, int, float, dict, list, tuple)):
        return None
    return f"a value of type {type(part).__name__}, which JSON cannot encode"


class JsonCodec:
    """JSON as UTF-8: what the json module accepts (int, float, bool and None keys become str).

    NaN and Infinity are refused unless allow_nan=True (they are not JSON).
    """

    name = "json"

    def __init__(self, *, allow_nan: bool = False) -> None:
        self._encoder = json.JSONEncoder(ensure_ascii=False, allow_nan=allow_nan, separators=(",", ":"))

    def encode(self, obj: Any) -> bytes:
        try:
            return self._encoder.encode(obj).encode()
        except (TypeError, ValueError, RecursionError) as exc:
            why = _first_objection(obj, _json_objection) or str(exc)
            raise EncodeError(f"json cannot encode the value: {why}") from exc

    def decode(self, buf: bytes | memoryview) -> Any:
        try:
            return json.loads(str(buf, "utf-8"))
        except (ValueError, RecursionError) as exc:
            raise DecodeError(f"not a JSON value in UTF-8: {exc}") from exc


# -- avro --------------------------------------------------------------------------------


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
    if len(data) > lib.TAPE_PARAMS_MAX:
        raise ArgumentError(f"the schema is {len(data)} bytes as JSON; a queue stores at most {lib.TAPE_PARAMS_MAX}")
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


# -- pickle -------------------------------------------------------------------------------


class PickleCodec:
    """pickle: any picklable value. UNSAFE: reading an entry can run any code its writer chose.

    Use it only for queues whose every writer you trust. A queue storing it is
    opened only by a caller who names it (codec="pickle"), never adopted.
    """

    name = "pickle"
    explicit = True

    def encode(self, obj: Any) -> bytes:
        try:
            return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # __reduce__ of any class may raise anything
            raise EncodeError(f"pickle cannot encode the value: {exc}") from exc

    def decode(self, buf: bytes | memoryview) -> Any:
        try:
            return pickle.loads(buf)
        except Exception as exc:  # unpickling may raise anything
            raise DecodeError(f"not a pickle this process can load: {exc!r}") from exc


# -- lz4 ----------------------------------------------------------------------------------

# The first byte of an lz4-wrapped payload says how the rest is stored.
_STORED = b"\x00"
_LZ4_FRAME = b"\x01"


class Lz4Codec:
    """lz4 frame compression around another codec, named "lz4+<its name>".

    Payloads shorter than `threshold` bytes, and those that compression would
    not shrink, are stored as they are: one leading byte says which, so small
    entries grow by that byte only.
    """

    def __init__(self, inner: Codec, *, threshold: int = 512, level: int = 0) -> None:
        if not isinstance(inner, Codec):
            raise ArgumentTypeError(f"lz4 wraps a codec, not {inner!r}")
        self.inner = inner
        self.name = _LZ4_PREFIX + inner.name
        self.threshold = threshold
        self.level = level

    @property
    def explicit(self) -> bool:
        """Whether a queue storing this codec is opened only by naming it (as for pickle)."""
        return bool(getattr(self.inner, "explicit", False))

    @property
    def params(self) -> bytes | None:
        return self.inner.params if isinstance(self.inner, ParamCodec) else b""

    def with_params(self, params: bytes) -> Lz4Codec:
        if not isinstance(self.inner, ParamCodec):
            return self
        return Lz4Codec(self.inner.with_params(params), threshold=self.threshold, level=self.level)

    def encode(self, obj: Any) -> bytes:
        data = self.inner.encode(obj)
        if len(data) >= self.threshold:
            packed: bytes = lz4.frame.compress(data, compression_level=self.level)
            if len(packed) < len(data):
                return _LZ4_FRAME + packed
        return _STORED + data

    def decode(self, buf: bytes | memoryview) -> Any:
        view = memoryview(buf)
        flag = view[:1].tobytes()
        if flag == _STORED:
            return self.inner.decode(view[1:])
        if flag != _LZ4_FRAME:
            raise DecodeError(f"not an lz4-wrapped payload (first byte {flag!r})")
        try:
            data = lz4.frame.decompress(view[1:])
        except (RuntimeError, ValueError) as exc:  # what lz4.frame raises for a bad frame
            raise DecodeError(f"not an lz4 frame: {exc}") from exc
        return self.inner.decode(data)


# -- what a queue opens with ---------------------------------------------------------


def requested(codec: str | Codec | None, schema: Any = None) -> Codec | None:
    """The codec a caller of Queue asked for (None: the stored one), bound to `schema` if given."""
    if codec is None:
        if schema is not None:
            raise ArgumentError("schema= goes with codec='avro' (or 'lz4+avro')")
        return None
    if isinstance(codec, str):
        codec = get(codec)
    elif not isinstance(codec, Codec):
        raise ArgumentTypeError(f"codec must be a name or a Codec, not {type(codec).__name__}")
    return codec if schema is None else _with_schema(codec, schema)


def _with_schema(codec: Codec, schema: Any) -> Codec:
    if isinstance(codec, Lz4Codec):
        return Lz4Codec(_with_schema(codec.inner, schema), threshold=codec.threshold, level=codec.level)
    if isinstance(codec, AvroCodec):
        return AvroCodec(schema)
    raise ArgumentError(f"schema= goes with codec='avro' (or 'lz4+avro'), not {codec.name!r}")


def stored_params(codec: Codec) -> bytes | None:
    """The parameters a queue created with `codec` stores; None when it needs a queue's own."""
    return codec.params if isinstance(codec, ParamCodec) else b""


def opened(asked: Codec | None, name: str, params: bytes) -> Codec:
    """The codec for a queue whose stored codec is `name` with `params`.

    `asked` is what the caller passed (the queue's core already checked its
    name), None to adopt the stored codec.
    """
    if asked is None:
        try:
            asked = get(name)
        except ArgumentError:
            raise IncompatibleQueueError(
                f"the queue's codec {name!r} is not registered in this process (known: {', '.join(names())}); "
                f"register it with tape.codecs.register(), or open the queue with raw=True to read its stored bytes"
            ) from None
        if getattr(asked, "explicit", False):
            raise IncompatibleQueueError(
                f"the queue's codec is {name!r}, which can run any code when reading: "
                f"open it with codec={name!r} only if you trust every writer, or with raw=True"
            )
    if not isinstance(asked, ParamCodec):
        return asked
    bound = asked.with_params(params)
    own = asked.params
    if own is None:
        return bound
    if own != stored_params(bound):
        raise IncompatibleQueueError(f"the queue stores other {name} parameters (for avro: the schema) than those given")
    return asked


register(RawCodec())
register(MsgpackCodec())
register(JsonCodec())
register(AvroCodec())
register(PickleCodec())
