"""Codecs: how a value becomes an entry's payload and back, and the registry of them.

A queue records its codec's name when it is created, so a reader finds the codec
here by that name. Built in: "raw" (bytes in, bytes out) and "msgpack" (the
default). `register()` adds one.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol, runtime_checkable

import msgpack

from tape._core import lib
from tape.errors import ArgumentError, ArgumentTypeError, DecodeError, EncodeError

__all__ = ["Codec", "RawCodec", "MsgpackCodec", "register", "get"]


@runtime_checkable
class Codec(Protocol):
    """Turns values into bytes and back; `name` is what a queue records."""

    @property
    def name(self) -> str: ...

    def encode(self, obj: Any) -> bytes:
        """The payload for `obj`; raises EncodeError when `obj` cannot be encoded."""
        ...

    def decode(self, buf: bytes | memoryview) -> Any:
        """The value stored in `buf`; raises DecodeError when `buf` is not valid."""
        ...


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


class MsgpackCodec:
    """MessagePack: str stays str, bytes stay bytes, maps may have any keys."""

    name = "msgpack"

    def __init__(self) -> None:
        # A Packer per thread: reusing one is over twice as fast as packb(),
        # and a Packer must not be used by two threads at once.
        self._local = threading.local()

    def encode(self, obj: Any) -> bytes:
        try:
            pack = self._local.pack
        except AttributeError:
            pack = self._local.pack = msgpack.Packer(use_bin_type=True).pack
        try:
            data: bytes = pack(obj)
        except (TypeError, OverflowError, ValueError) as exc:
            raise EncodeError(f"msgpack cannot encode the value: {exc}") from exc
        return data

    def decode(self, buf: bytes | memoryview) -> Any:
        try:
            return msgpack.unpackb(buf, raw=False, strict_map_key=False)
        except (ValueError, msgpack.UnpackException) as exc:
            raise DecodeError(f"not a msgpack value: {exc}") from exc


_REGISTRY: dict[str, Codec] = {}


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
    """The codec registered as `name`."""
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise ArgumentError(f"unknown codec {name!r} (known: {known})") from None


register(RawCodec())
register(MsgpackCodec())
