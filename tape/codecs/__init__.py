"""Codecs: how a value becomes an entry's payload and back, and the registry of them.

A queue records its codec's name (and, for avro, the schema) when it is
created, so a reader finds the codec here by that name. Built in: "raw" (bytes
in, bytes out), "msgpack" (the default), "json", "avro" (a schema per queue),
"pickle" (unsafe: only when named), and "lz4+<name>", lz4 frame compression
around any of them. `register()` adds one; `get()` finds one by name.

A codec may take parameters that its queue stores (ParamCodec): `params` is
what a queue created with it stores, None when it needs the stored ones, and
`with_params()` binds it to a queue's stored parameters.

This module holds the protocols, the registry and what a queue opens with;
each codec family has its own module: _stdlib (raw, json, pickle),
_msgpack_codec, _avro_codec and _lz4_codec. The last two load fastavro and
lz4, so they are loaded only when an avro or lz4 codec is first asked for.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from tape._native import NAME_MAX
from tape.codecs._msgpack_codec import MsgpackCodec
from tape.codecs._stdlib import JsonCodec, PickleCodec, RawCodec
from tape.errors import ArgumentError, ArgumentTypeError, IncompatibleQueueError

if TYPE_CHECKING:
    from tape.codecs._avro_codec import AvroCodec
    from tape.codecs._lz4_codec import Lz4Codec

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
    if len(name.encode()) >= NAME_MAX:
        raise ArgumentError(f"codec name {name!r} is longer than {NAME_MAX - 1} bytes")
    _REGISTRY[name] = codec
    _LATER.pop(name, None)
    return codec


def get(name: str) -> Codec:
    """The codec registered as `name`; "lz4+<name>" compresses that codec's payloads."""
    codec = _registered(name)
    if codec is not None:
        return codec
    if name.startswith(_LZ4_PREFIX):
        inner = _registered(name[len(_LZ4_PREFIX) :])
        if inner is not None:
            from tape.codecs._lz4_codec import Lz4Codec  # lz4 is loaded when first asked for

            return Lz4Codec(inner)
    raise ArgumentError(f"unknown codec {name!r} (known: {', '.join(names())}, and lz4+ any of them)")


def names() -> list[str]:
    """The names of the registered codecs, sorted."""
    return sorted(_REGISTRY.keys() | _LATER.keys())


# -- codecs loaded when first asked for ----------------------------------------------
#
# Their modules load a third-party package (fastavro, lz4): `import tape`
# loads neither, and the encode and decode of a loaded codec import nothing.


def _avro() -> Codec:
    from tape.codecs._avro_codec import AvroCodec

    return AvroCodec()


# Registered by name, made by get() the first time it is asked for.
_LATER: dict[str, Callable[[], Codec]] = {"avro": _avro}

# Attributes of this module (PEP 562), each loading its module on first use.
_LAZY_CLASSES = {"AvroCodec": "tape.codecs._avro_codec", "Lz4Codec": "tape.codecs._lz4_codec"}


def _registered(name: str) -> Codec | None:
    """The codec registered as `name`, made now if it is one of _LATER; None if none is."""
    codec = _REGISTRY.get(name)
    if codec is None:
        make = _LATER.get(name)
        if make is not None:
            codec = _REGISTRY.setdefault(name, make())
    return codec


def __getattr__(name: str) -> Any:
    """AvroCodec and Lz4Codec, their module loaded on first use."""
    module = _LAZY_CLASSES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(globals().keys() | _LAZY_CLASSES.keys())


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
    # No codec is an Lz4Codec or an AvroCodec before its module is loaded:
    # telling needs no loading.
    if _LAZY_CLASSES["Lz4Codec"] in sys.modules:
        from tape.codecs._lz4_codec import Lz4Codec

        if isinstance(codec, Lz4Codec):
            return Lz4Codec(_with_schema(codec.inner, schema), threshold=codec.threshold, level=codec.level)
    if _LAZY_CLASSES["AvroCodec"] in sys.modules:
        from tape.codecs._avro_codec import AvroCodec

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
register(PickleCodec())  # and "avro", in _LATER
