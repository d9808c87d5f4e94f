"""The Replicator: ships a queue's entries to a JetStream subject, in order, exactly once.

Exactly once after any downtime, without the stream's duplicate window: the
queue has one subject; each frame is published with
Nats-Expected-Last-Subject-Sequence set to the sequence of the frame before it,
so a publish that is not on top of what the stream holds is refused (error
10071) instead of stored twice. Each session (at start, after any error) asks
the stream for the subject's last message and starts after the last index it
holds. The position is a named tailer, moved only after JetStream
acknowledged, so retention (purge(respect_tailers=True)) keeps what is not
shipped yet; it is for people and for retention, not for resuming: the stream
says where to resume.

Several frames are in flight at once when the stream has this one subject
(its sequences are then the subject's): frame n+1 is published before frame
n is acknowledged, expecting as the subject's and the stream's last sequence
the one frame n gets if it is stored. Both hold only if the stream's last
message is on this subject at that sequence, which with one publisher (the
lock) is frame n: a refused frame makes every later one refused, and the next
session resumes from what the stream holds. A later frame stored after a
refused one would mean another publisher on the subject: ReplicationError.
On a stream with other subjects, one frame is in flight and each publish
waits for the sequence of the one before.

Entries that were themselves copies (ingested from another stream) keep
their origin: frames carry it, so a copy of a copy records the index and
timestamp each entry had in the first queue.
"""

from __future__ import annotations

import asyncio
import os
import time
from array import array
from collections import deque
from typing import Any, NamedTuple

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import Header

import tape
from tape._args import as_int
from tape.errors import ArgumentError, ReplicationError
from tape._native.tailer import Columns
from tape.replicate import frame
from tape.replicate._link import WRONG_LAST_SEQUENCE, Link, discard, log
from tape.replicate._lock import RoleLock

__all__ = ["Replicator", "replication_status"]

FIRST_INDEX_HEADER = "Tape-First-Index"
LAST_INDEX_HEADER = "Tape-Last-Index"
_FRAME_MIN, _FRAME_MAX = 1024, 8 << 20
_BATCH_ENTRIES = 16384  # the most entries one read hands a frame
_HEADER_ROOM = 1024  # bytes of a message's headers (the fence, the index range), which max_payload counts too
_IDLE_POLL = 0.01  # seconds between looks for new entries when following
_IN_FLIGHT = 8  # frames published and not acknowledged yet, at most


class _Sent(NamedTuple):
    """A frame published and not acknowledged yet."""

    ack: asyncio.Future[Any]
    seq: int  # the stream sequence it gets when stored
    entries: int  # how many it holds
    last: int  # the index of its last entry


class Replicator(Link):
    """Ships the queue at `path` to the subject `subject` (default: the stream's name) of `stream` at `url`.

    `url` is a server URL, or several, comma-separated (the nodes of a cluster).

    `name` is the named tailer that records what was shipped. `frame_bytes`
    bounds a frame's payloads (an entry larger than that goes alone). One
    Replicator of a queue to a stream runs at a time (ReplicationError
    naming the other's pid); a killed one's lock is free at once. The
    stream is created when missing (file storage, `replicas` copies,
    `duplicate_window` seconds, the server's default when None). When the
    server cannot be reached, run() retries with backoff, logging each failure
    on the "tape.replicate" logger, for ever or until `retry_for` seconds of
    failing (then ReplicationError).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        url: str,
        *,
        stream: str,
        subject: str | None = None,
        name: str = "replicator",
        frame_bytes: int = 64 * 1024,
        create_stream: bool = True,
        replicas: int = 1,
        duplicate_window: float | None = None,
        ack_timeout: float = 5.0,
        connect_timeout: float = 2.0,
        retry_for: float | None = None,
    ) -> None:
        super().__init__(url, stream=stream, subject=subject or stream, connect_timeout=connect_timeout,
                         retry_for=retry_for)
        frame_bytes = as_int(frame_bytes, "frame_bytes")
        if not _FRAME_MIN <= frame_bytes <= _FRAME_MAX:
            raise ArgumentError(f"frame_bytes must be {_FRAME_MIN} to {_FRAME_MAX}, not {frame_bytes}")
        self._frame_bytes = frame_bytes
        self._create_stream = bool(create_stream)
        self._replicas = as_int(replicas, "replicas")
        self._duplicate_window = duplicate_window
        self._ack_timeout = float(ack_timeout)
        self.name = name
        self.queue = tape.Queue(path, raw=True, create=False)
        try:
            self._lock = RoleLock(self.queue.path, f"ship-{self.stream}", self._what())
            self._identity = frame.Identity.of(self.queue).to_json()
            self._position = self.queue.tailer(name)  # moved after each acknowledgement
            self._reader = self.queue.tailer()  # reads ahead of it
        except BaseException:
            self.close()
            raise
        self.last_sequence: int | None = None  # of the subject's last message, once known
        self.shipped = 0  # entries shipped by this Replicator
        self._copies = False  # the last frame built (or found in the stream) carried origins

    def _what(self) -> str:
        return f"replicator {self.queue.path} -> {self.stream}/{self.subject}"

    # -- running ------------------------------------------------------------------------------

    def run(self, follow: bool = False) -> int:
        """Ship every entry not in the stream yet; with follow=True, then every new one until stop().

        Returns the number of entries this call shipped.
        """
        before = self.shipped
        asyncio.run(self._run(bool(follow)))
        return self.shipped - before

    async def arun(self, follow: bool = False) -> int:
        """run() for asyncio code."""
        before = self.shipped
        await self._run(bool(follow))
        return self.shipped - before

    async def _session(self, js: JetStreamContext, follow: bool) -> None:
        subject = self._subject()
        if self._create_stream:
            await self._make_stream(js, subject, self._replicas, self._duplicate_window)
        prev, prev_origin, seq = await self._resume(js, subject)
        info = await js.stream_info(self.stream)
        self._reached = True
        alone = info.config.subjects == [subject] and info.state.last_seq == seq
        depth = _IN_FLIGHT if alone else 1
        sent: deque[_Sent] = deque()
        try:
            while True:
                batch = None if self.stopping else self._reader._read_encoded_columns(_BATCH_ENTRIES, self._frame_bytes)
                if batch is not None:
                    data, indexes, prev_origin = self._fitting_frame(prev, prev_origin, batch)
                    first, last = indexes[0], indexes[-1]
                    if len(data) > self._most():  # one entry larger than a message can be
                        raise ReplicationError(
                            f"{self._what()}: entry {first} makes a message of {len(data)} bytes, the server "
                            f"takes at most {self.max_payload} (its max_payload), headers included"
                        )
                    if len(sent) >= depth:
                        seq = await self._acked(sent, seq)
                    headers = {Header.EXPECTED_LAST_SUBJECT_SEQUENCE.value: str(seq),
                               FIRST_INDEX_HEADER: str(first), LAST_INDEX_HEADER: str(last)}
                    if sent:  # the stream is this subject: its last message is to be the frame in flight
                        headers[Header.EXPECTED_LAST_SEQUENCE.value] = str(seq)
                    # A task per publish: tasks start in the order made, and each puts its
                    # message in the connection's buffer before it first waits, so the
                    # frames go out in order (on the request inbox that resume's requests
                    # proved the stream's leader can answer, also across a cluster).
                    ack = asyncio.ensure_future(js.publish(subject, data, timeout=self._ack_timeout, headers=headers))
                    await asyncio.sleep(0)  # it goes out while the next frame is read and packed
                    seq += 1
                    sent.append(_Sent(ack, seq, len(indexes), last))
                    prev = last
                    while sent and sent[0].ack.done():
                        seq = await self._acked(sent, seq)
                    continue
                if sent:
                    seq = await self._acked(sent, seq)
                    continue
                if not follow or self.stopping:
                    return
                await self._pause(_IDLE_POLL)
        finally:
            for pending in sent:
                discard(pending.ack)

    async def _acked(self, sent: deque[_Sent], seq: int) -> int:
        """Wait for the oldest frame in flight to be stored; move the named tailer past it.

        Returns the sequence the next frame expects: `seq`, or the stored
        frame's when no other is in flight.
        """
        oldest = sent.popleft()
        try:
            ack = await oldest.ack
        except nats.js.errors.APIError as exc:
            if exc.err_code in WRONG_LAST_SEQUENCE and sent:
                await self._none_stored_after(sent)
            raise
        if ack.seq != oldest.seq and sent:
            # Another message came into the stream before it: the frames
            # after it expected the sequence it did not get and are refused.
            log.info("%s: frame stored as sequence %d, not %d", self._what(), ack.seq, oldest.seq)
        self._shipped(ack.seq, oldest.entries, oldest.last)
        return seq if sent else int(ack.seq)

    async def _none_stored_after(self, sent: deque[_Sent]) -> None:
        """A frame was refused: check that none published after it was stored (which another publisher explains)."""
        while sent:
            later = sent.popleft()
            try:
                ack = await later.ack
            except (nats.js.errors.APIError, nats.errors.TimeoutError):
                continue
            raise ReplicationError(
                f"{self._what()}: a frame was refused and the one after it stored (sequence {ack.seq}): "
                f"something else publishes to {self.subject}; the stream may miss entries before index {later.last}"
            )

    def _subject(self) -> str:
        assert self.subject is not None
        return self.subject

    def _most(self) -> int:
        """The largest frame a message can carry: the server's max_payload, less room for the headers."""
        return self.max_payload - _HEADER_ROOM

    def _fitting_frame(self, prev: int | None, prev_origin: int | None,
                       batch: Columns) -> tuple[bytes, array[int], int | None]:
        """_frame of `batch`, or of fewer of its entries (the reader moved back to the first left out) when the
        columns and keys on top of its payloads make a message larger than the server takes."""
        copies = self._copies
        made = self._frame(prev, prev_origin, batch)
        most = self._most()
        while len(made[0]) > most and len(made[1]) > 1:
            data, indexes, _ = made
            self._copies = copies
            self._reader.to_index(indexes[0])
            fewer = self._reader._read_encoded_columns(max(1, len(indexes) * most // len(data) - 1),
                                                       self._frame_bytes)
            assert fewer is not None  # they were there a moment ago
            made = self._frame(prev, prev_origin, fewer)
        return made

    def _frame(self, prev: int | None, prev_origin: int | None, batch: Columns) -> tuple[bytes, array[int], int | None]:
        """The frame of `batch` (Tailer._read_encoded_columns), which follows the entry at index `prev` (origin index `prev_origin`).

        (the frame, the indexes of its entries, the origin index of its last entry).
        """
        idx, ts, lens, payloads, oi, ots, keyed = batch
        indexes, timestamps, lengths = array("q", idx), array("q", ts), array("I", lens)
        rows = [(pos, frame.KEY_NONE if not raw else frame.KEY_STR if is_str else frame.KEY_BYTES, raw, nb, tomb)
                for pos, raw, is_str, nb, tomb in keyed or ()]
        if oi is None and not self._copies:
            return frame.pack(self._identity, prev, indexes, timestamps, lengths, payloads, rows, None), indexes, indexes[-1]
        origins = array("q", [-1]) * len(indexes) if oi is None else array("q", oi)
        times = array("q", [0]) * len(indexes) if ots is None else array("q", ots)
        copies = self._copies
        for pos, origin in enumerate(origins):
            if origin >= 0:
                copies = True
            elif copies:  # written here after copies: its own index is no origin in the first queue
                raise ReplicationError(
                    f"{self._what()}: entry {indexes[pos]} was written here, after copies "
                    "(a queue that mixes ingested entries and others cannot be shipped as a copy)"
                )
            else:  # written here before the first copy: it is its own origin
                origins[pos], times[pos] = indexes[pos], timestamps[pos]
        self._copies = True
        order = [*([] if prev_origin is None else [prev_origin]), *origins]
        if any(a >= b for a, b in zip(order, order[1:])):
            raise ReplicationError(
                f"{self._what()}: the origins of entries {indexes[0]} to {indexes[-1]} are not in order "
                "(a queue that mixes ingested entries and others cannot be shipped as a copy)"
            )
        data = frame.pack(self._identity, prev, indexes, timestamps, lengths, payloads, rows,
                          (prev_origin, origins, times))
        return data, indexes, origins[-1]

    def _shipped(self, seq: int, count: int, last: int) -> None:
        """JetStream stored the frame of `count` entries up to index `last` as `seq`: move the named tailer past it."""
        self.last_sequence = seq
        self.shipped += count
        if self._position.to_index(last):
            self._position.read_encoded_batch(1)

    async def _resume(self, js: JetStreamContext, subject: str) -> tuple[int | None, int | None, int]:
        """Place the reader after the last entry the subject holds: (its index, its origin index, its sequence)."""
        try:
            msg = await js.get_last_msg(self.stream, subject)
        except nats.js.errors.NotFoundError:
            self.last_sequence = 0
            self._copies = False
            self._reader.to_start()
            log.info("%s: the subject is empty: shipping from the start", self._what())
            return None, None, 0
        if msg.data is None or msg.seq is None:
            raise ReplicationError(f"{self._what()}: the stream's last message has no data")
        try:
            last = frame.decode(msg.data)
        except tape.CorruptionError as exc:
            raise ReplicationError(
                f"{self._what()}: the subject's last message (stream sequence {msg.seq}) is not a sound tape frame: {exc}"
            ) from None
        if last.identity.to_json() != self._identity:
            raise ReplicationError(
                f"{self._what()}: the subject holds another queue's entries ({last.identity}), "
                f"not this one's ({frame.Identity.from_json(self._identity)})"
            )
        self.last_sequence = msg.seq
        self._copies = last.origins is not None
        self._place_after(last.last)
        log.info("%s: the stream holds up to index %d (sequence %d): resuming after it",
                 self._what(), last.last, msg.seq)
        return last.last, last.sources[1][-1], msg.seq

    def _place_after(self, index: int) -> None:
        """Move the reader past `index`, the last entry the stream holds."""
        if self._reader.to_index(index):
            self._reader.read_encoded_batch(1)
            return
        # The entry is gone (purged since it was shipped); the named tailer,
        # moved past it when it was acknowledged, says where the next one is.
        position = self._position.index
        end = self.queue.last_index
        if position is not None and position > index:
            if self._reader.to_index(position):
                return
            if end is None or position > end:
                self._reader.to_end()
                return
        if end is not None and end < index:
            raise ReplicationError(
                f"{self._what()}: the stream holds entries up to index {index}, the queue only up to {end}: "
                "is this the queue the stream was fed from?"
            )
        raise ReplicationError(
            f"{self._what()}: the stream's last entry, index {index}, is no longer in the queue "
            "and the named tailer does not say what follows it: entries may be missing from the stream"
        )

    # -- what it did --------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Position (the next index to ship), lag in entries and seconds, the last stream sequence."""
        report = replication_status(self.queue, self.name)
        report.update(stream=self.stream, subject=self.subject, url=self.url,
                      last_sequence=self.last_sequence, connected=self.connected)
        return report

    def close(self) -> None:
        """Stop a run in another thread, close the queue and let another Replicator in; idempotent."""
        self.stop()
        self.queue.close()
        if self._lock is not None:
            self._lock.release()

    def __enter__(self) -> Replicator:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<tape.replicate.Replicator {self.queue.path!r} -> {self.url} {self.stream}/{self.subject}>"


def replication_status(queue: tape.Queue, name: str = "replicator") -> dict[str, Any]:
    """Where the replicator `name` of `queue` is: from the named tailer, no server needed.

    position: the index of the next entry to ship (None: nothing shipped
    yet, or the queue is empty); lag_entries: entries not shipped yet;
    lag_seconds: how long ago the oldest of them was written (0.0 when none).
    """
    position = queue.describe()["named_tailers"].get(name)
    report: dict[str, Any] = {"path": queue.path, "name": name, "position": position,
                              "last_index": queue.last_index, "lag_entries": 0, "lag_seconds": 0.0}
    with queue.tailer() as t:
        if position is None:
            t.to_start()
        elif not t.to_index(position):
            return report  # at the end: nothing to ship
        oldest = t.read_entry()
    if oldest is None:
        return report
    report["lag_entries"] = _count_from(queue, oldest.index)
    report["lag_seconds"] = max(0.0, (time.time_ns() - oldest.timestamp) / 1e9)
    return report


def _count_from(queue: tape.Queue, first: int) -> int:
    """How many entries the queue has from index `first` on."""
    return sum(
        c.entries if first <= c.first_index else c.last_index - first + 1
        for c in queue.cycles()
        if c.first_index is not None and c.last_index is not None and c.last_index >= first
    )
