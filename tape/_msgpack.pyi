# The msgpack codec's fast path (tape/_msgpack.c): exact builtin values only.
from collections.abc import Sequence
from typing import Any, Final

FALLBACK: Final[object]

def pack(obj: object, /) -> bytes | None: ...
def unpack(buf: object, /) -> Any: ...  # FALLBACK for what is not a contiguous buffer
def unpack_into(values: list[Any], buf: bytes | bytearray | memoryview, ends: Sequence[int], start: int, /) -> int: ...
def check_keys(data: bytes | bytearray | memoryview, /) -> int: ...  # 0 keys are str, bin or int; 1 one is not; -1 not one well-formed value
