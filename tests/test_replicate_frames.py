"""Frames, the messages tape.replicate ships: what goes in comes out, and damage is refused."""

from __future__ import annotations

import zlib

import pytest

pytest.importorskip("nats")

import tape
from tape.replicate import frame
from tape.replicate.frame import Identity

IDENTITY = Identity("2026-12-07T18:00:31.515166+00:00", "daily", "msgpack", b"")


def small() -> bytes:
    return frame.encode(
        IDENTITY.to_json(), 6, [7, 8, 1 << 40], [100, 100, 205], [b"one", b"", b"three"],
        [None, "k\u00e9y", b"\x00raw"], [None, None, 1_700_000_000_000_000_000],
    )


def test_a_frame_gives_back_its_entries_and_their_attributes() -> None:
    got = frame.decode(small())
    assert got.identity == IDENTITY
    assert got.prev == 6
    assert (got.first, got.last) == (7, 1 << 40)
    assert got.indexes == [7, 8, 1 << 40]
    assert got.timestamps == [100, 100, 205]
    assert got.payloads == [b"one", b"", b"three"]
    assert got.attrs == {1: ("k\u00e9y", None, False), 2: (b"\x00raw", 1_700_000_000_000_000_000, False)}


def test_a_frame_carries_tombstones() -> None:
    data = frame.encode(IDENTITY.to_json(), None, [0, 1], [1, 2], [b"a", b"\xc0"], ["k", "k"], [None, None], [False, True])
    assert frame.decode(data).attrs == {0: ("k", None, False), 1: ("k", None, True)}
    with pytest.raises(ValueError):
        frame.encode(IDENTITY.to_json(), None, [0], [1], [b"\xc0"], [None], [None], [True])  # a tombstone needs a key


def test_a_first_frame_has_no_previous_index() -> None:
    data = frame.encode(IDENTITY.to_json(), None, [0], [1], [b"x"], [None], [None])
    got = frame.decode(data)
    assert got.prev is None and got.attrs == {}


def test_identity_keeps_codec_parameters() -> None:
    avro = Identity("2026-01-01T00:00:00+00:00", "hourly", "avro", b'{"type": "long"}')
    data = frame.encode(avro.to_json(), None, [0], [1], [b"\x02"], [None], [None])
    assert frame.decode(data).identity == avro


def test_the_identity_of_a_queue_is_what_it_stores(tmp_path: object) -> None:
    with tape.Queue(f"{tmp_path}/q", roll_cycle="hourly", codec="json") as q:
        ident = Identity.of(q)
        assert (ident.roll_cycle, ident.codec, ident.params) == ("hourly", "json", b"")
        assert ident.created == q.describe()["created"]
    with tape.Queue(f"{tmp_path}/q2", roll_cycle="hourly", codec="json") as other:
        assert Identity.of(other) != ident  # created at another moment


def test_every_damaged_byte_is_refused() -> None:
    data = small()
    for at in range(len(data)):
        for flip in (0x01, 0x80):
            damaged = bytearray(data)
            damaged[at] ^= flip
            with pytest.raises(tape.CorruptionError):
                frame.decode(bytes(damaged))


@pytest.mark.parametrize("cut", [0, 10, frame.HEADER_SIZE, -1])
def test_a_truncated_frame_is_refused(cut: int) -> None:
    with pytest.raises(tape.CorruptionError):
        frame.decode(small()[:cut])


def test_a_message_that_is_not_a_frame_is_refused() -> None:
    with pytest.raises(tape.CorruptionError, match="not a tape frame"):
        frame.decode(b'{"hello": "world"}')


def test_a_frame_needs_entries() -> None:
    with pytest.raises(ValueError):
        frame.encode(IDENTITY.to_json(), None, [], [], [], [], [])


def copied() -> bytes:
    return frame.encode(
        IDENTITY.to_json(), 6, [7, 8], [100, 101], [b"one", b"two"], [None, None], [None, None],
        origins=(40, [41, 45], [10, 11]),
    )


def test_a_frame_of_copies_carries_their_origins() -> None:
    got = frame.decode(copied())
    assert (got.prev, got.indexes, got.timestamps) == (6, [7, 8], [100, 101])
    assert got.origins == (40, [41, 45], [10, 11])
    assert got.sources == (40, [41, 45], [10, 11])
    plain = frame.decode(small())
    assert plain.origins is None and plain.sources == (6, plain.indexes, plain.timestamps)


def test_every_damaged_byte_of_a_frame_of_copies_is_refused() -> None:
    data = copied()
    for at in range(len(data)):
        damaged = bytearray(data)
        damaged[at] ^= 0x01
        with pytest.raises(tape.CorruptionError):
            frame.decode(bytes(damaged))


@pytest.mark.parametrize("origins", [(41, [41, 45], [10, 11]), (None, [45, 41], [10, 11]), (None, [-1, 5], [1, 1]),
                                     (None, [1, 5], [1, -1])])
def test_origins_out_of_order_or_negative_are_refused(origins: tuple[int | None, list[int], list[int]]) -> None:
    data = frame.encode(IDENTITY.to_json(), None, [7, 8], [1, 2], [b"a", b"b"], [None, None], [None, None],
                        origins=origins)
    with pytest.raises(tape.CorruptionError, match="origin"):
        frame.decode(data)


def test_unknown_flags_are_refused() -> None:
    data = bytearray(small())
    data[5] = 2  # flags, under a checksum made again
    data[60:64] = zlib.crc32(data[frame.HEADER_SIZE :], zlib.crc32(data[:56])).to_bytes(4, "little")
    with pytest.raises(tape.CorruptionError, match="flags"):
        frame.decode(bytes(data))


@pytest.mark.parametrize("copies", [False, True])
def test_a_frame_read_as_columns_holds_what_the_queue_holds(tmp_path: object, copies: bool) -> None:
    """The replicator's frame (columns read in C, packed without an object per entry) gives back each entry."""
    from tape.replicate import Replicator

    path = f"{tmp_path}/q"
    with tape.Queue(path, codec="raw") as q:
        a = q.appender()
        rows = [(b"plain", None, None, None, False), (b"", "k\udcff\u00e9", None, None, False),
                (b"nb", b"\x00raw", 1_700_000_000_000_000_000, None, False), (b"", "k\u00e9", None, None, True),
                (b"x" * 300, None, 5, None, False)] + [(b"%d" % i, None, None, None, False) for i in range(600)]
        if copies:
            rows = [(d, k, nb, (1000 + 2 * i, 7 + i), t) for i, (d, k, nb, _, t) in enumerate(rows)]
        a.write_encoded_many(rows)
        want = q.tailer().read_encoded_batch(10_000)
    with Replicator(path, "nats://127.0.0.1:1", stream="COLS") as r:
        columns = r._reader._read_encoded_columns(10_000, 1 << 20)
        assert columns is not None and r._reader._read_encoded_columns(10, 100) is None
        data, indexes, last_origin = r._frame(None, 999 if copies else None, columns)
    got = frame.decode(data)
    assert list(indexes) == got.indexes == [e.index for e in want]
    assert got.timestamps == [e.timestamp for e in want]
    assert got.payloads == [e.value for e in want]
    assert got.attrs == {k: (e.key, e.not_before, e.tombstone) for k, e in enumerate(want)
                         if e.key is not None or e.not_before is not None}
    if copies:
        assert got.origins == (999, [e.origin[0] for e in want], [e.origin[1] for e in want])
        assert last_origin == want[-1].origin[0]
    else:
        assert got.origins is None and last_origin == want[-1].index
