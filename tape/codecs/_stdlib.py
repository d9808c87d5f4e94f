"""The codecs the standard library makes: raw (bytes as they are), json, and pickle."""

from __future__ import annotations

import json
import math
import pickle
import reprlib
from typing import Any

from tape.codecs._objection import first_objection
from tape.errors import DecodeError, EncodeError


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
            why = first_objection(obj, _json_objection) or str(exc)
            raise EncodeError(f"json cannot encode the value: {why}") from exc

    def decode(self, buf: bytes | memoryview) -> Any:
        try:
            return json.loads(str(buf, "utf-8"))
        except (ValueError, RecursionError) as exc:
            raise DecodeError(f"not a JSON value in UTF-8: {exc}") from exc


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
