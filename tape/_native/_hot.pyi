# The hot calls of Appender, Tailer, Queue.latest and consumer groups in C (tape/_native/_hot*.c): the binding layer's own.
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timedelta
from typing import Any, Final, Literal, overload

from tape.records import Entry

BATCH_BYTES: Final[int]
BATCH_SLOTS: Final[int]
RAW: Final[int]
MSGPACK: Final[int]
OTHER: Final[int]

def bind(
    append: int, append_many_ex: int, peek_many_ex: int, read_many_ex: int, key_read: int, set_wait_hooks: int, /
) -> None: ...

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
    def index(self, k: int, /) -> int: ...

class Keys:
    def __init__(
        self, queue: int, tailer: int, kind: int, decode: Callable[[bytes], Any], entry: type[Entry], /
    ) -> None: ...
    def latest(self, key: Any, /) -> Entry | None | Literal[False]: ...
    def shut(self) -> None: ...

def bind_group(claim: int, claim_many: int, ack: int, ack_many: int, /) -> None: ...

class Claims:
    def __init__(self, consumer: int, tailer: int, lock: Any, /) -> None: ...
    def shut(self) -> None: ...

class DeliveryBase:
    value: Any
    index: int
    attempt: int
    timestamp: int
    _slot: int
    _gen: int
    _due: int
    _outcome: str | None
    _consumer: Any
    def ack(self) -> None: ...

class Claimer:
    def _hot_setup(self, claims: Claims, kind: int, decode: Callable[[bytes], Any], delivery: type[DeliveryBase], fast: bool, /) -> None: ...
    def claim(self, timeout: float | None = None) -> Any: ...
    def _hot_batch(self, n: int, /) -> list[Any] | Literal[False]: ...
    def _hot_ack_many(self, deliveries: list[Any], now: int, /) -> list[int] | int | Literal[False]: ...
