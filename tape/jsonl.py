"""JSON lines: the entries of a queue as text `tape dump` writes, and a line of it read back.

Values are shown as JSON. What JSON cannot hold carries a marker, which
from_json_line reads back: bytes as {"$base64": "..."}, a map with keys other
than strings (or whose only key looks like a marker) as {"$map": [[key,
value], ...]}; dates, times, decimals and UUIDs as strings; anything else as
{"$repr": "..."} (for people only: it reads back as a plain object).

Three formats: jsonl, a {"index", "timestamp", "value"} object per line,
and for an entry that has them "key" (a string, or bytes marked as values
are), "not_before" (ISO 8601, like "timestamp") and "origin" ({"index",
"timestamp"}), and "tombstone": true for a delete of its key; pretty, the same objects indented; raw, each payload
undecoded after its length (4 bytes, unsigned, little-endian).
"""

from __future__ import annotations

import base64
import decimal
import itertools
import json
import struct
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import date, datetime
from datetime import time as clock_time
from typing import IO, Any

import tape
from tape._time import iso_time, iso_times

__all__ = [
    "FORMATS", "Decode", "Progress", "unseen", "to_json", "from_json_line", "from_json_record", "write_entries",
    "Loader", "LoadError",
]

Decode = Callable[[bytes], Any]  # a payload to its value
Progress = Callable[[int], None]  # told how many more entries went out

CHUNK = 1024  # entries formatted per write
_MARKERS = frozenset({"$base64", "$map", "$repr"})
_SCALARS = frozenset({str, int, float, bool})
_SEQUENCES = frozenset({list, tuple})
_CONTAINERS = (dict, list, tuple)
_KEYS = frozenset({str})
_RECORD_KEYS = frozenset({"index", "timestamp", "value"})
_RECORD_ATTRS = frozenset({"key", "not_before", "origin", "tombstone"})  # what a record may have besides
_RAW_LENGTH = struct.Struct("<I")

# -- values as JSON, and back -------------------------------------------------------


def to_json(value: Any) -> Any:
    """`value` as JSON can hold it, with markers for what it cannot (see the module doc)."""
    if type(value) in _SCALARS or value is None or isinstance(value, (str, int, float)):
        return value
    if isinstance(value, dict):
        if _plain_keys(value):
            return {k: to_json(v) for k, v in value.items()}
        return {"$map": [[to_json(k), to_json(v)] for k, v in value.items()]}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    return _marker(value)


def _marker(value: Any) -> Any:
    """What JSON shows for a value of a type it does not have."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"$base64": base64.b64encode(value).decode("ascii")}
    if isinstance(value, (date, clock_time)):  # a datetime is a date
        return value.isoformat()
    if isinstance(value, (decimal.Decimal, uuid.UUID)):
        return str(value)
    return {"$repr": repr(value)}


def _plain_keys(d: dict[Any, Any]) -> bool:
    """True when the keys of `d` are strings and it is not one that looks like a marker."""
    return all(type(k) is str for k in d) and not (len(d) == 1 and next(iter(d)) in _MARKERS)


def _nothing_to_mark(values: Sequence[Any]) -> bool:
    """True when no map inside any of `values` must be written as a $map (see _plain_keys).

    Looks at all the values a level at a time, by type, which is quick for many
    values of one shape; says False, when in doubt, for subclasses of dict,
    list or tuple.
    """
    level = values
    while level:
        types = set(map(type, level))
        if any(issubclass(t, _CONTAINERS) for t in types.difference(_CONTAINERS)):
            return False
        dicts = [v for v in level if type(v) is dict] if dict in types else []
        if not _KEYS.issuperset(map(type, itertools.chain.from_iterable(dicts))):
            return False
        if 1 in set(map(len, dicts)) and not all(map(_plain_keys, dicts)):
            return False
        sequences = [v for v in level if type(v) in _SEQUENCES] if not types.isdisjoint(_SEQUENCES) else []
        level = [*itertools.chain.from_iterable(map(dict.values, dicts)), *itertools.chain.from_iterable(sequences)]
    return True


def _from_json_object(obj: dict[str, Any]) -> Any:
    """json.loads' object_hook: undo the $base64 and $map markers."""
    if len(obj) == 1:
        ((key, inner),) = obj.items()
        if key == "$base64" and isinstance(inner, str):
            return base64.b64decode(inner, validate=True)
        if key == "$map" and isinstance(inner, list):
            pairs = [(_hashable(k), v) for k, v in inner]
            return dict(pairs)
    return obj


def _hashable(key: Any) -> Any:
    """A map key read from JSON: arrays become tuples (msgpack keys may be arrays)."""
    return tuple(map(_hashable, key)) if isinstance(key, list) else key


def from_json_line(line: bytes) -> Any:
    """The value of one line: a JSON value, or a jsonl record (its value); ValueError if neither."""
    return from_json_record(line)[0]


def from_json_record(line: bytes) -> tuple[Any, dict[str, Any] | None]:
    """The value of one line and, for a jsonl record with them, its attributes to write it with.

    The attributes are write()'s keywords ("key", "not_before" as a datetime)
    or, for a tombstone, {"key": key, "tombstone": True}; None when the line
    has none. ValueError when the line is no JSON value or its attributes are bad.
    """
    try:
        value = json.loads(line, object_hook=_from_json_object)
    except TypeError as exc:  # a $map with a key that cannot be a key, or pairs that are not pairs
        raise ValueError(str(exc)) from None
    if not (isinstance(value, dict) and _RECORD_KEYS <= value.keys() <= _RECORD_KEYS | _RECORD_ATTRS):
        return value, None
    if value.keys() <= _RECORD_KEYS | {"origin"}:
        return value["value"], None
    attrs: dict[str, Any] = {}
    key = value.get("key")
    if key is not None:
        if not isinstance(key, (str, bytes)):
            raise ValueError(f"a key is a string or {{\"$base64\": ...}}, not {key!r}")
        attrs["key"] = key
    if value.get("tombstone", False) is not False:
        if value["tombstone"] is not True or key is None:
            raise ValueError('"tombstone" is true, with a "key"')
        attrs["tombstone"] = True
    when = value.get("not_before")
    if when is not None:
        try:
            attrs["not_before"] = datetime.fromisoformat(when)
        except (TypeError, ValueError):
            raise ValueError(f'"not_before" is an ISO 8601 time, not {when!r}') from None
    return value["value"], attrs or None


# -- entries as text ------------------------------------------------------------------


_COMPACT = json.JSONEncoder(ensure_ascii=False, check_circular=False, default=_marker).encode
_INDENTED = json.JSONEncoder(ensure_ascii=False, check_circular=False, default=_marker, indent=2).encode


def _jsonable(values: Sequence[Any]) -> Sequence[Any]:
    """`values` as the encoders take them (they call _marker for what JSON has no type for)."""
    return values if _nothing_to_mark(values) else [to_json(v) for v in values]


# The values of a chunk are encoded in one call, this string between them, then split.
_SEPARATOR = "\x00tape\x00"
_SEPARATOR_JSON = ', "\\u0000tape\\u0000", '


def _values_json(values: Sequence[Any]) -> list[str]:
    """The compact JSON text of each of `values`."""
    if not values:
        return []
    items = [_SEPARATOR] * (2 * len(values) - 1)
    items[::2] = _jsonable(values)
    texts = _COMPACT(items)[1:-1].split(_SEPARATOR_JSON)
    # The separator's text shows inside a value's JSON only where a list in it
    # holds the separator after another item, which splits off one piece more:
    # as many pieces as values means each piece is one value's JSON.
    return texts if len(texts) == len(values) else list(map(_COMPACT, items[::2]))


def _utf8(text: str) -> bytes:
    # A lone surrogate (only inside a JSON string) becomes the JSON escape \udXXX.
    return text.encode(errors="backslashreplace")


def _attrs(e: tape.Entry) -> dict[str, Any]:
    """The attributes entry `e` has, as its record shows them."""
    shown: dict[str, Any] = {}
    if e.key is not None:
        shown["key"] = to_json(e.key)
    if e.not_before is not None:
        shown["not_before"] = iso_time(e.not_before)
    if e.origin is not None:
        shown["origin"] = {"index": e.origin[0], "timestamp": iso_time(e.origin[1])}
    if e.tombstone:
        shown["tombstone"] = True
    return shown


def _jsonl(entries: list[tape.Entry]) -> bytes:
    indexes, stamps, values, keys, not_befores, origins, _ = zip(*entries) if entries else ((),) * 7
    lines = zip(indexes, iso_times(stamps), _values_json(values))
    text = [f'{{"index": {i}, "timestamp": "{t}", "value": {v}}}\n' for i, t, v in lines]
    if not keys.count(None) == not_befores.count(None) == origins.count(None) == len(entries):
        for k, e in enumerate(entries):
            if e.key is not None or e.not_before is not None or e.origin is not None:
                text[k] = text[k][:-2] + _COMPACT(_attrs(e))[1:-1].join((", ", "}\n"))
    return _utf8("".join(text))


def _pretty(entries: list[tape.Entry]) -> bytes:
    values = _jsonable([e.value for e in entries])
    return _utf8(
        "".join(
            [
                _INDENTED({"index": e.index, "timestamp": iso_time(e.timestamp), "value": value, **_attrs(e)}) + "\n"
                for e, value in zip(entries, values)
            ]
        )
    )


def _raw(entries: list[tape.Entry]) -> bytes:
    return b"".join([_RAW_LENGTH.pack(len(e.value)) + e.value for e in entries])


_FORMATTERS: dict[str, Callable[[list[tape.Entry]], bytes]] = {"jsonl": _jsonl, "pretty": _pretty, "raw": _raw}
FORMATS = tuple(sorted(_FORMATTERS))  # the names write_entries takes


def unseen(steps: int) -> None:
    """Progress that nobody is shown."""


def write_entries(
    entries: Iterable[tape.Entry],
    fmt: str,
    out: IO[bytes],
    decode: Decode | None = None,
    progress: Progress = unseen,
) -> None:
    """Write `entries` to `out` in format `fmt` (one of FORMATS), CHUNK entries at a time, then flush.

    `decode` turns payloads (of a queue opened raw) into values first;
    `progress` is told how many entries went out after each chunk. When
    `entries` raises, what was taken before is written, then the error goes on.
    """
    format_chunk = _FORMATTERS[fmt]
    if decode is not None:
        entries = (e._replace(value=decode(e.value)) for e in entries)
    entries = iter(entries)
    chunk: list[tape.Entry] = []
    try:
        # extend() keeps what it took when the iterator raises (damage, Ctrl-C):
        # the finally clause writes it.
        while True:
            chunk.extend(itertools.islice(entries, CHUNK))
            if len(chunk) < CHUNK:
                break
            done, chunk = chunk, []
            out.write(format_chunk(done))
            progress(len(done))
    finally:
        out.write(format_chunk(chunk))
        out.flush()
        progress(len(chunk))


# -- JSON lines into a queue -----------------------------------------------------------


class LoadError(ValueError):
    """A line Loader.load could not append: "source:line: why"."""


class Loader:
    """Appends the values of JSON lines (as from_json_line reads them) in batches, counting them."""

    def __init__(self, appender: tape.Appender, source: str) -> None:
        self.appender = appender
        self.source = source  # the name of the lines' file, for messages
        self.count = 0  # values appended
        self._batch: list[tuple[int, Any]] = []  # (line number, value) of lines without attributes

    def load(self, lines: Iterable[bytes], progress: Progress = unseen) -> None:
        """Append the value of each line of `lines` (blank lines are skipped); `progress` is told
        how many bytes were taken. At a line that is not JSON or a value the codec refuses,
        append the values before it and raise LoadError. A record's key, tombstone and not_before
        (as `tape dump` writes them) are written with its value; its index, timestamp and origin
        are not (the entry gets this queue's)."""
        for lineno, line in enumerate(_reporting(lines, progress), 1):
            if not line.strip():
                continue
            try:
                value, attrs = from_json_record(line)
            except ValueError as exc:
                self._flush()
                raise LoadError(f"{self.source}:{lineno}: not a JSON value: {exc}") from None
            if attrs is not None:
                self._flush()
                self._write_with(lineno, value, attrs)
                continue
            self._batch.append((lineno, value))
            if len(self._batch) >= CHUNK:
                self._flush()
        self._flush()

    def _write_with(self, lineno: int, value: Any, attrs: dict[str, Any]) -> None:
        """Append one value with its attributes (a tombstone: a delete of its key)."""
        try:
            if attrs.get("tombstone"):
                self.appender.delete(attrs["key"])
            else:
                self.appender.write(value, key=attrs.get("key"), not_before=attrs.get("not_before"))
        except (tape.EncodeError, tape.ArgumentError, tape.ArgumentTypeError) as exc:
            raise LoadError(f"{self.source}:{lineno}: {exc}") from None
        self.count += 1

    def _flush(self) -> None:
        """Append the batch; at a value the codec refuses, append those before it and stop."""
        batch, self._batch = self._batch, []
        if not batch:
            return
        try:
            self.appender.write_many([value for _, value in batch])
            self.count += len(batch)
            return
        except tape.EncodeError:
            pass  # nothing of the batch was written: go one by one to find the culprit
        for lineno, value in batch:
            try:
                self.appender.write(value)
            except tape.EncodeError as exc:
                raise LoadError(f"{self.source}:{lineno}: {exc}") from None
            self.count += 1


def _reporting(lines: Iterable[bytes], progress: Progress) -> Iterator[bytes]:
    """`lines`, telling `progress` how many bytes were taken, a chunk of lines at a time."""
    it = iter(lines)
    while chunk := list(itertools.islice(it, CHUNK)):
        yield from chunk
        progress(sum(map(len, chunk)))
