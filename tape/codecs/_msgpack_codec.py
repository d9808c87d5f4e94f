"""The msgpack codec, tape's default: tape._msgpack's fast path, msgpack-python for the rest."""

from __future__ import annotations

import reprlib
import threading
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import msgpack

from tape import _msgpack as _fast
from tape.codecs._objection import first_objection
from tape.errors import DecodeError, EncodeError

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
        except (TypeError, OverflowError, ValueError, BufferError) as exc:
            why = first_objection(obj, _msgpack_objection)
            if why is None:  # deeper than msgpack-python goes (512 or 1,024 levels, by version), or containing itself
                why = "value: nested too deeply" if "recursion" in str(exc) else str(exc)
            raise EncodeError(f"msgpack cannot encode the value: {why}") from exc
        # msgpack packs a tuple key as an array, which no reader can turn back
        # into a key: the packed bytes tell, faster than a walk of `obj`.
        if _check_keys(data) != 0:
            why = first_objection(obj, _msgpack_objection) or "a map key that is not a str, bytes or int"
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
