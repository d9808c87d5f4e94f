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

While JetStream stores one frame, the next is read and packed.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Sequence
from typing import Any

import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import Header

import tape
from tape._args import as_int
from tape.errors import ArgumentError, ReplicationError
from tape.records import Entry
from tape.replicate import frame
from tape.replicate._link import Link, log

__all__ = ["Replicator", "replication_status"]

FIRST_INDEX_HEADER = "Tape-First-Index"
LAST_INDEX_HEADER = "Tape-Last-Index"
_FRAME_MIN, _FRAME_MAX = 1024, 8 << 20
_BATCH_ENTRIES = 4096  # the most entries one read hands a frame
_IDLE_POLL = 0.01  # seconds between looks for new entries when following


class Replicator(Link):
    """Ships the queue at `path` to the subject `subject` (default: the stream's name) of `stream` at `url`.

    `url` is a server URL, or several, comma-separated (the nodes of a cluster).

    `name` is the named tailer that records what was shipped. `frame_bytes`
    bounds a frame's payloads (an entry larger than that goes alone). The
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
            self._identity = frame.Identity.of(self.queue).to_json()
            self._position = self.queue.tailer(name)  # moved after each acknowledgement
            self._reader = self.queue.tailer()  # reads ahead of it
        except BaseException:
            self.queue.close()
            raise
        self.last_sequence: int | None = None  # of the subject's last message, once known
        self.shipped = 0  # entries shipped by this Replicator

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
        prev, seq = await self._resume(js, subject)
        inflight: asyncio.Task[Any] | None = None
        sent = (0, 0)  # the count and last index of the frame in flight
        try:
            while True:
                batch = [] if self.stopping else self._reader.read_encoded_batch(_BATCH_ENTRIES, self._frame_bytes)
                data = self._frame(prev, batch) if batch else b""
                if inflight is not None:
                    seq = (await inflight).seq
                    inflight = None
                    self._shipped(seq, *sent)
                if not batch:
                    if not follow or self.stopping:
                        return
                    await self._pause(_IDLE_POLL)
                    continue
                first, last = batch[0].index, batch[-1].index
                if len(data) > self.max_payload:  # one entry larger than a message can be
                    raise ReplicationError(
                        f"{self._what()}: entry {first} makes a message of {len(data)} bytes, "
                        f"the server takes at most {self.max_payload} (its max_payload)"
                    )
                headers = {Header.EXPECTED_LAST_SUBJECT_SEQUENCE.value: str(seq),
                           FIRST_INDEX_HEADER: str(first), LAST_INDEX_HEADER: str(last)}
                inflight = asyncio.ensure_future(js.publish(subject, data, timeout=self._ack_timeout, headers=headers))
                sent, prev = (len(batch), last), last
                await asyncio.sleep(0)  # the publish goes out while the next frame is read and packed
        finally:
            if inflight is not None:
                inflight.cancel()

    def _subject(self) -> str:
        assert self.subject is not None
        return self.subject

    def _frame(self, prev: int | None, batch: Sequence[Entry]) -> bytes:
        """The frame of `batch`, which follows the entry at index `prev`."""
        indexes, timestamps, payloads, keys, not_befores, _, tombstones = zip(*batch)
        return frame.encode(self._identity, prev, indexes, timestamps, payloads, keys, not_befores, tombstones)

    def _shipped(self, seq: int, count: int, last: int) -> None:
        """JetStream stored the frame of `count` entries up to index `last` as `seq`: move the named tailer past it."""
        self.last_sequence = seq
        self.shipped += count
        if self._position.to_index(last):
            self._position.read_encoded_batch(1)

    async def _resume(self, js: JetStreamContext, subject: str) -> tuple[int | None, int]:
        """Place the reader after the last entry the subject holds: (its index or None, its sequence)."""
        try:
            msg = await js.get_last_msg(self.stream, subject)
        except nats.js.errors.NotFoundError:
            self.last_sequence = 0
            self._reader.to_start()
            log.info("%s: the subject is empty: shipping from the start", self._what())
            return None, 0
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
        self._place_after(last.last)
        log.info("%s: the stream holds up to index %d (sequence %d): resuming after it",
                 self._what(), last.last, msg.seq)
        return last.last, msg.seq

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
        """Stop a run in another thread and close the queue; idempotent."""
        self.stop()
        self.queue.close()

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
