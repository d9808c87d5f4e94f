# The hot calls of Appender, Tailer and Queue.latest in C (tape/_native/_hot*.c): the binding layer's own.
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timedelta
from typing import Any, Final, Literal, overload

from typing_extensions import Buffer

from tape.records import Entry

BATCH_BYTES: Final[int]
BATCH_SLOTS: Final[int]
RAW: Final[int]
MSGPACK: Final[int]
OTHER: Final[int]

def bind(
    append: int, append_many_ex: int, peek_many_ex: int, read_many_ex: int, key_read: int, set_wait_hooks: int, /
) -> None: ...

def ascending(col: Buffer, after: int, /) -> bool: ...
def smallest(col: Buffer, /) -> int: ...
def sums(col: Buffer, /) -> bytes: ...

class Writer:
    _fast: bool
    _watch: int
    def _hot_setup(self, handle: object, ptr: int, kind: int, encode: Callable[[Any], bytes], /) -> None: ...
    @overload
    def write(self, obj: Any) -> int: ...
    @overload
    def write(
        self,
        obj: Any,
        *,
        key: str | bytes | None = None,
        delay: float | timedelta | None = None,
        not_before: datetime | float | None = None,
    ) -> int: ...
    def write_many(
        self,
        objs: Iterable[Any],
        *,
        delay: float | timedelta | None = None,
        not_before: datetime | float | None = None,
    ) -> int: ...

class Reader:
    def _serve(self, it: Iterator[Any] | None, mode: int, /) -> None: ...
    def read(self, timeout: float | None = None, default: Any = None) -> Any: ...
    def read_entry(self, timeout: float | None = None) -> Entry | None: ...

class Batches:
    def __init__(self, ptr: int, entry: type[Entry], /) -> None: ...
    def configure(
        self, kind: int, decode: Callable[[bytes], Any], decode_many: Callable[..., tuple[list[Any], Exception | None]] | None, /
    ) -> None: ...
    def shut(self) -> None: ...
    def peek(self, slots: int, entries: bool, /) -> tuple[list[Any], int, Exception | None] | int | None: ...
    def read_many(self, max_entries: int, max_bytes: int, /) -> list[Entry] | int | None: ...
    def read_columns(
        self, max_entries: int, max_bytes: int, /
    ) -> tuple[bytes, bytes, bytes, bytes, bytes | None, bytes | None, list[tuple[int, bytes, bool, int, bool]] | None] | int | None: ...
    def index(self, k: int, /) -> int: ...

class Keys:
    def __init__(
        self, queue: int, tailer: int, kind: int, decode: Callable[[bytes], Any], entry: type[Entry], /
    ) -> None: ...
    def latest(self, key: Any, /) -> Entry | None | Literal[False]: ...
    def shut(self) -> None: ...
