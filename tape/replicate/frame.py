"""Frames: a run of a queue's entries packed into one JetStream message.

A frame carries the identity of the queue it comes from, the index of the
entry shipped before it (so a reader can tell a gap), and per entry its
index, timestamp, key, not_before, tombstone flag and stored payload (already encoded by the
queue's codec), under one CRC-32. Layout (little-endian):

    header, 64 bytes:
      magic "TPF1" | version u8 = 1 | flags u8 (1: origin columns) | identity length u16
      entry count u32 | attributed entries u32
      previous index i64 (-1: none) | first index i64 | last index i64
      first timestamp i64 | last timestamp i64 (ns since the epoch)
      body length u32 | CRC-32 u32 of the 56 bytes before the body length
        and of the whole body
    body:
      identity: JSON {"created", "roll_cycle", "codec", "params" (base64)}
      zeros to a multiple of 8
      indexes i64 x count | timestamps i64 x count | payload lengths u32 x count
      with flag 1 (the entries were themselves copied: their origin in the
        first queue, kept along a chain of copies): previous origin index i64
        (-1: none) | origin indexes i64 x count | origin timestamps i64 x count
        (an entry without an origin: its own index and timestamp)
      attributed entries: position u32, not_before i64 (0: none), key kind u8
        (0 none, 1 str, 2 bytes), flags u8 (1: a tombstone, a delete of the key;
        0 in frames written before tombstones were carried), key length u16,
        the key bytes
      payloads, one after the other

Columns, not one record per entry: pack() takes the columns the replicator
reads in C (Tailer._read_encoded_columns) and unpack() gives columns the
ingester writes in one core call; the checks over a column (order, sign,
the running sums of the lengths) are loops in C (tape._native._hot), so
neither makes an object per entry without a key.
"""

from __future__ import annotations

import base64
import json
import struct
import sys
import zlib
from array import array
from collections.abc import Sequence
from typing import Any, NamedTuple

from tape._native.appender import KEY_MAX
from tape._native.tailer import ascending, smallest, sums
from tape.errors import CorruptionError

__all__ = ["Identity", "Frame", "Columns", "encode", "pack", "KEY_NONE", "KEY_STR", "KEY_BYTES", "decode", "unpack", "HEADER_SIZE"]

MAGIC = b"TPF1"
VERSION = 1
_HEADER = struct.Struct("<4sBBHIIqqqqqII")
HEADER_SIZE = _HEADER.size  # 64
_CRC_AT = HEADER_SIZE - 8  # the CRC covers the header up to the body length, then the body
_ATTR = struct.Struct("<IqBBH")
_TOMBSTONE = 1  # the flags of an attributed entry: a delete of its key
KEY_NONE, KEY_STR, KEY_BYTES = 0, 1, 2
_ORIGINS = 1  # header flag: the origin columns follow the lengths
_SWAP = sys.byteorder != "little"  # array() packs in the machine's order


class Identity(NamedTuple):
    """What identifies a queue wherever it is: its creation time, roll cycle and codec.

    A path is not identity (a queue may move, another may take its place);
    these are stored in the queue when it is created and never change.
    """

    created: str
    roll_cycle: str
    codec: str
    params: bytes

    @classmethod
    def of(cls, queue: Any) -> Identity:
        """The identity of an open tape.Queue."""
        return cls(queue.describe()["created"], queue.roll_cycle, queue.codec_name, queue.codec_params)

    def to_json(self) -> bytes:
        """The identity as JSON, as a frame stores it."""
        return json.dumps(
            {"created": self.created, "roll_cycle": self.roll_cycle, "codec": self.codec,
             "params": base64.b64encode(self.params).decode("ascii")},
            separators=(",", ":"),
        ).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Identity:
        """The identity stored in a frame; ValueError when it does not parse."""
        try:
            obj = json.loads(data)
        except RecursionError:
            raise ValueError("an identity nested too deep") from None
        if not isinstance(obj, dict):
            raise ValueError("not an object")
        created, roll_cycle, codec, params = (obj.get(name) for name in ("created", "roll_cycle", "codec", "params"))
        if not (isinstance(created, str) and isinstance(roll_cycle, str) and isinstance(codec, str)
                and isinstance(params, str)):
            raise ValueError("a field is missing or not a string")
        return cls(created, roll_cycle, codec, base64.b64decode(params, validate=True))

    def __str__(self) -> str:
        return f"queue created {self.created} ({self.roll_cycle}, {self.codec})"


class Frame(NamedTuple):
    """A decoded frame: columns of its entries.

    `attrs` maps an entry's position in the frame to its (key, not_before,
    tombstone): only entries that have a key or a not_before are in it.
    `origins` (None: the entries are originals) are the (previous origin
    index, origin indexes, origin timestamps) of entries that were copies.
    """

    identity: Identity
    prev: int | None
    indexes: list[int]
    timestamps: list[int]
    payloads: list[bytes]
    attrs: dict[int, tuple[str | bytes | None, int | None, bool]]
    origins: tuple[int | None, list[int], list[int]] | None = None

    @property
    def sources(self) -> tuple[int | None, list[int], list[int]]:
        """(previous, indexes, timestamps) of the entries in the first queue of a chain of copies."""
        return self.origins or (self.prev, self.indexes, self.timestamps)

    @property
    def first(self) -> int:
        """Index of the frame's first entry."""
        return self.indexes[0]

    @property
    def last(self) -> int:
        """Index of the frame's last entry."""
        return self.indexes[-1]


def _le(col: array[int]) -> bytes:
    """The column's bytes, little-endian."""
    if _SWAP:
        col = array(col.typecode, col)
        col.byteswap()
    return col.tobytes()


def _uncolumn(code: str, data: bytes | memoryview) -> array[int]:
    col = array(code)
    col.frombytes(data)
    if _SWAP:
        col.byteswap()
    return col


def encode(
    identity: bytes,
    prev: int | None,
    indexes: Sequence[int],
    timestamps: Sequence[int],
    payloads: Sequence[bytes],
    keys: Sequence[str | bytes | None],
    not_befores: Sequence[int | None],
    tombstones: Sequence[bool] | None = None,
    origins: tuple[int | None, Sequence[int], Sequence[int]] | None = None,
) -> bytes:
    """A frame of the entries given as columns; `identity` is Identity.to_json().

    `tombstones`: None, no entry is one. `origins`: None, or (previous origin
    index, origin indexes, origin timestamps) for copies of copies.
    """
    count = len(indexes)
    if tombstones is None:
        tombstones = [False] * count
    if not count or not len(timestamps) == len(payloads) == len(keys) == len(not_befores) == len(tombstones) == count:
        raise ValueError("a frame holds one or more entries, each with every column")
    if any(tombstones) and any(t and k is None for k, t in zip(keys, tombstones)):
        raise ValueError("a tombstone needs a key")
    keyed: list[tuple[int, int, bytes, int, bool]] = []
    if any(keys) or any(not_befores):
        for pos, (key, nb, tomb) in enumerate(zip(keys, not_befores, tombstones)):
            if key is None and not nb:
                continue
            if isinstance(key, str):
                keyed.append((pos, KEY_STR, key.encode("utf-8", "surrogateescape"), nb or 0, tomb))
            else:
                keyed.append((pos, KEY_NONE, b"", nb or 0, tomb) if key is None else (pos, KEY_BYTES, bytes(key), nb or 0, tomb))
    if origins is not None:
        prev_origin, origin_indexes, origin_timestamps = origins
        if not len(origin_indexes) == len(origin_timestamps) == count:
            raise ValueError("a frame's origin columns hold one value per entry")
        origins = (prev_origin, array("q", origin_indexes), array("q", origin_timestamps))
    return pack(identity, prev, array("q", indexes), array("q", timestamps), array("I", map(len, payloads)),
                b"".join(payloads), keyed, origins)


def pack(
    identity: bytes,
    prev: int | None,
    indexes: array[int],
    timestamps: array[int],
    lengths: array[int],
    payloads: bytes,
    keyed: Sequence[tuple[int, int, bytes, int, bool]],
    origins: tuple[int | None, Sequence[int], Sequence[int]] | None,
) -> bytes:
    """The frame of checked columns (arrays "q", "q", "I"; the payloads back to back): encode() without the checks.

    `keyed`: (position, key kind, key bytes, not_before (0 none), tombstone) of
    the entries with a key or a not_before, in order. `origins` as in encode(),
    its columns arrays "q".
    """
    parts = [identity, bytes(-len(identity) % 8), _le(indexes), _le(timestamps), _le(lengths)]
    if origins is not None:
        prev_origin, origin_indexes, origin_timestamps = origins
        parts += [_le(array("q", [-1 if prev_origin is None else prev_origin])), _le(array("q", origin_indexes)),
                  _le(array("q", origin_timestamps))]
    for pos, kind, raw, nb, tomb in keyed:
        parts.append(_ATTR.pack(pos, nb, kind, _TOMBSTONE if tomb else 0, len(raw)))
        parts.append(raw)
    parts.append(payloads)
    body = b"".join(parts)
    fields = _HEADER.pack(MAGIC, VERSION, 0 if origins is None else _ORIGINS, len(identity), len(indexes), len(keyed),
                          -1 if prev is None else prev, indexes[0], indexes[-1],
                          timestamps[0], timestamps[-1], 0, 0)[:_CRC_AT]
    crc = zlib.crc32(body, zlib.crc32(fields))
    return b"".join((fields, struct.pack("<II", len(body), crc), body))


class Columns(NamedTuple):
    """A decoded frame as columns, for writing it without an object per entry.

    `ends[k]` is where entry k's payload ends in `payloads` (the frame's
    payloads, back to back); `origins` as in Frame, with arrays.
    """

    identity: Identity
    prev: int | None
    indexes: array[int]
    timestamps: array[int]
    ends: array[int]
    payloads: memoryview
    attrs: dict[int, tuple[str | bytes | None, int | None, bool]]
    origins: tuple[int | None, array[int], array[int]] | None

    @property
    def sources(self) -> tuple[int | None, array[int], array[int]]:
        """(previous, indexes, timestamps) of the entries in the first queue of a chain of copies."""
        return self.origins or (self.prev, self.indexes, self.timestamps)


def decode(data: bytes) -> Frame:
    """The frame in `data`; CorruptionError when it is not one, is damaged or does not add up."""
    got = unpack(data)
    ends = got.ends.tolist()
    payloads = got.payloads.tobytes()
    origins = None if got.origins is None else (got.origins[0], got.origins[1].tolist(), got.origins[2].tolist())
    return Frame(got.identity, got.prev, got.indexes.tolist(), got.timestamps.tolist(),
                 list(map(payloads.__getitem__, map(slice, [0, *ends], ends))), got.attrs, origins)


def unpack(data: bytes) -> Columns:
    """The frame in `data` as columns; CorruptionError when it is not one, is damaged or does not add up."""
    if len(data) < HEADER_SIZE or data[:4] != MAGIC:
        raise CorruptionError("not a tape frame (no TPF1 header)")
    (_, version, flags, id_len, count, attributed, prev, first, last, _, _, body_len, crc) = _HEADER.unpack_from(data)
    if version != VERSION:
        raise CorruptionError(f"tape frame version {version} is not known here (known: {VERSION})")
    view = memoryview(data)
    if len(data) != HEADER_SIZE + body_len:
        raise CorruptionError(f"tape frame of {len(data)} bytes, its header says {HEADER_SIZE + body_len}")
    if zlib.crc32(view[HEADER_SIZE:], zlib.crc32(view[:_CRC_AT])) != crc:
        raise CorruptionError("tape frame checksum mismatch: the frame is damaged")
    try:
        if flags & ~_ORIGINS:
            raise ValueError(f"unknown flags {flags:#x}")
        return _body(view, id_len, count, attributed, prev, first, last, bool(flags & _ORIGINS))
    except (ValueError, UnicodeDecodeError, struct.error, IndexError) as exc:
        raise CorruptionError(f"tape frame does not parse: {exc}") from None


def _body(
    view: memoryview, id_len: int, count: int, attributed: int, prev: int, first: int, last: int, copies: bool
) -> Columns:
    at = HEADER_SIZE
    identity = Identity.from_json(bytes(view[at : at + id_len]))
    at += id_len + (-id_len % 8)
    if count == 0 or at + count * 20 > len(view):
        raise ValueError(f"{count} entries do not fit")
    indexes = _uncolumn("q", view[at : at + 8 * count])
    timestamps = _uncolumn("q", view[at + 8 * count : at + 16 * count])
    ends = array("Q", sums(_uncolumn("I", view[at + 16 * count : at + 20 * count])))
    at += 20 * count
    if smallest(timestamps) < 0:
        raise ValueError("a negative timestamp")
    origins = None
    if copies:
        if at + 8 + count * 16 > len(view):
            raise ValueError(f"the origins of {count} entries do not fit")
        prev_origin = _uncolumn("q", view[at : at + 8])[0]
        origin_indexes = _uncolumn("q", view[at + 8 : at + 8 + 8 * count])
        origin_timestamps = _uncolumn("q", view[at + 8 + 8 * count : at + 8 + 16 * count])
        at += 8 + 16 * count
        if not ascending(origin_indexes, prev_origin):
            raise ValueError("origin indexes are not in order")
        if prev_origin < -1 or origin_indexes[0] < 0 or smallest(origin_timestamps) < 0:
            raise ValueError("a negative origin")
        origins = (None if prev_origin < 0 else prev_origin, origin_indexes, origin_timestamps)
    attrs: dict[int, tuple[str | bytes | None, int | None, bool]] = {}
    for _ in range(attributed):
        pos, nb, kind, flags, key_len = _ATTR.unpack_from(view, at)
        at += _ATTR.size
        raw = bytes(view[at : at + key_len])
        at += key_len
        tomb = bool(flags & _TOMBSTONE)
        if (pos >= count or pos in attrs or kind > KEY_BYTES or len(raw) != key_len or flags & ~_TOMBSTONE
                or (tomb and kind == KEY_NONE) or nb < 0 or (kind != KEY_NONE and not 1 <= key_len <= KEY_MAX)):
            raise ValueError("bad attribute record")
        key = None if kind == KEY_NONE else raw.decode("utf-8", "surrogateescape") if kind == KEY_STR else raw
        attrs[pos] = (key, nb or None, tomb)
    if at + ends[-1] != len(view):
        raise ValueError("payload lengths do not add up to the frame's length")
    if first < 0 or prev < -1:
        raise ValueError("a negative index")
    if prev >= first:
        raise ValueError(f"the previous index {prev} is not before the first, {first}")
    if indexes[0] != first or indexes[-1] != last or not ascending(indexes, prev):
        raise ValueError("indexes are not in order or disagree with the header")
    return Columns(identity, None if prev < 0 else prev, indexes, timestamps, ends, view[at:], attrs, origins)
