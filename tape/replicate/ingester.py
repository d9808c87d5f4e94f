"""The Ingester: appends the entries of a JetStream subject to a local queue, each once.

A durable pull consumer hands it frames; a frame's entries are appended with
Appender.write_encoded_many (the stored bytes as they are, each entry's
origin: its index and timestamp in the first queue of the chain of copies),
and the message is acknowledged only after the local write (and a sync,
unless sync="none"). What the local queue holds is the truth: at start the
origin index of its last entry says where it is, and an entry at or before it
(a message delivered again after a crash, or a whole stream read again by a
new consumer) is skipped. A damaged or foreign frame, or a gap after what the
queue holds, stops the run with an error; nothing of that frame is written,
and its message stays unacknowledged. One Ingester per local queue runs at a
time (a flock in the queue's folder, free at once when its holder dies).
"""

from __future__ import annotations

import asyncio
import bisect
import hashlib
import os
from array import array
from collections.abc import Sequence
from typing import Any

import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

import tape
from tape import codecs
from tape._args import as_int, shown
from tape.errors import ArgumentError, IncompatibleQueueError, QueueNotFoundError, ReplicationError
from tape.replicate import frame
from tape.replicate._link import Link, NotYet, discard, log
from tape.replicate._lock import RoleLock

__all__ = ["Ingester"]

_FETCH_WAIT = 0.25  # seconds a fetch waits for messages


class Ingester(Link):
    """Appends what `stream` (its subject `subject`, or its only one) holds to the queue at `path`.

    The queue is created on the first frame with the source's codec and roll
    cycle when missing; an existing one must have the source's codec
    (IncompatibleQueueError). `durable` names the consumer (default: one per
    local queue, from its absolute path). `sync` is the local queue's sync
    mode: unless "none", the queue is synced before each acknowledgement.
    A second Ingester of the same queue gets ReplicationError naming the
    first one's pid.
    """

    def __init__(
        self,
        url: str,
        *,
        stream: str,
        path: str | os.PathLike[str],
        subject: str | None = None,
        durable: str | None = None,
        sync: str = "none",
        batch: int = 16,
        connect_timeout: float = 2.0,
        retry_for: float | None = None,
    ) -> None:
        super().__init__(url, stream=stream, subject=subject, connect_timeout=connect_timeout, retry_for=retry_for)
        self.path = os.path.abspath(os.fspath(path))
        if durable is None:
            durable = "tape-ingest-" + hashlib.sha256(self.path.encode()).hexdigest()[:16]
        elif not isinstance(durable, str) or not durable or any(c in durable for c in " .*>\t\r\n"):
            raise ArgumentError(f"durable must be a consumer name (no spaces, '.', '*' or '>'), not {shown(durable)}")
        self.durable = durable
        if sync not in ("none", "always") and not (isinstance(sync, str) and sync.startswith("interval:")):
            raise ArgumentError(f"sync must be 'none', 'always' or 'interval:<ms>', not {shown(sync)}")
        self._sync = sync != "none"
        self._batch = as_int(batch, "batch")
        if not 1 <= self._batch <= 10_000:
            raise ArgumentError(f"batch must be 1 to 10000 messages, not {self._batch}")
        self.queue: tape.Queue | None = None
        self._appender: tape.Appender | None = None
        try:
            self._open(tape.Queue(self.path, raw=True, create=False))
        except QueueNotFoundError:
            pass  # made from the first frame, with its codec
        try:
            self._origin: int | None = self._last_origin()
        except BaseException:
            self.close()
            raise
        self._source: frame.Identity | None = None
        self.ingested = 0  # entries appended by this Ingester

    def _what(self) -> str:
        return f"ingester {self.stream} -> {self.path}"

    def _open(self, queue: tape.Queue) -> None:
        """Work on `queue`: take its ingester lock (or close it and raise), make an appender."""
        try:
            self._lock = RoleLock(queue.path, "ingest", self._what())
        except BaseException:
            queue.close()
            raise
        self.queue = queue
        self._appender = queue.appender()

    def _last_origin(self) -> int | None:
        """The source index of the local queue's last entry (None: the queue is empty or missing)."""
        if self.queue is None or self.queue.last_index is None:
            return None
        with self.queue.tailer(start=self.queue.last_index) as t:
            entry = t.read_entry()
        if entry is None:
            return None
        if entry.origin is None:
            raise IncompatibleQueueError(
                f"{self.path}: its last entry (index {entry.index}) was not ingested (it has no origin): "
                "ingest into a queue of its own"
            )
        return int(entry.origin[0])

    # -- running ------------------------------------------------------------------------------

    def run(self, follow: bool = False) -> int:
        """Append what the stream holds that the queue does not; with follow=True, then new entries until stop().

        Returns the number of entries this call appended.
        """
        before = self.ingested
        asyncio.run(self._run(bool(follow)))
        return self.ingested - before

    async def arun(self, follow: bool = False) -> int:
        """run() for asyncio code."""
        before = self.ingested
        await self._run(bool(follow))
        return self.ingested - before

    async def _session(self, js: JetStreamContext, follow: bool) -> None:
        subject = await self._the_subject(js, follow)
        sub = await self._subscribe(js, subject)
        self._reached = True
        fetching = asyncio.ensure_future(sub.fetch(self._batch, timeout=_FETCH_WAIT))
        try:
            while not self.stopping:
                try:
                    msgs = await fetching
                except asyncio.TimeoutError:  # nats.errors.TimeoutError, or asyncio's own when the
                    # loop was busy past the fetch's deadline (nats-py raises that one then)
                    if not follow:
                        # Done when the stream has nothing more for it, and nothing it
                        # was sent waits for an ack (a fetch that timed out while the
                        # loop was writing leaves its messages to the next fetch).
                        info = await sub.consumer_info()
                        if info.num_pending == 0 and info.num_ack_pending == 0:
                            return
                    msgs = []
                # The next batch comes while this one is written: a few turns of the
                # loop let the fetch put its pull request out (the connection's
                # flusher writes it) before the writing holds the loop.
                fetching = asyncio.ensure_future(sub.fetch(self._batch, timeout=_FETCH_WAIT))
                for _ in range(3):
                    await asyncio.sleep(0)
                for msg in msgs:
                    self._apply(msg.data, msg.metadata.sequence.stream)
                    await msg.ack()
        finally:
            discard(fetching)

    async def _subscribe(self, js: JetStreamContext, subject: str) -> JetStreamContext.PullSubscription:
        """A pull subscription of the durable consumer, which delivers in stream order from here.

        Messages a dead session had fetched but not acknowledged would come
        again only after the consumer's ack wait, after newer ones: the
        consumer is made again, from the first message not acknowledged.
        """
        policy, start = DeliverPolicy.ALL, None
        try:
            info = await js.consumer_info(self.stream, self.durable)
        except nats.js.errors.NotFoundError:
            pass
        else:
            if info.num_ack_pending or info.config.filter_subject != subject:
                if info.config.filter_subject == subject and info.ack_floor is not None:
                    policy, start = DeliverPolicy.BY_START_SEQUENCE, info.ack_floor.stream_seq + 1
                await js.delete_consumer(self.stream, self.durable)
                log.info("%s: consumer %s made again, from stream sequence %s", self._what(), self.durable, start or 1)
        config = ConsumerConfig(durable_name=self.durable, ack_policy=AckPolicy.EXPLICIT,
                                deliver_policy=policy, opt_start_seq=start, filter_subject=subject)
        return await js.pull_subscribe(subject, durable=self.durable, stream=self.stream, config=config)

    async def _the_subject(self, js: JetStreamContext, follow: bool) -> str:
        subjects = await self._stream_subjects(js)
        if subjects is None:
            if follow:  # the replicator may not have made it yet
                raise NotYet(f"no stream {self.stream} yet")
            raise ReplicationError(f"{self._what()}: there is no stream {self.stream} at {self.url}")
        if self.subject is not None:
            return self.subject
        if len(subjects) != 1:
            raise ArgumentError(f"stream {self.stream} has subjects {', '.join(subjects)}: say which with subject=")
        return subjects[0]

    def _apply(self, data: bytes, seq: int) -> None:
        """Append the entries of the frame `data` (stream sequence `seq`) that the queue does not hold yet."""
        try:
            got = frame.unpack(data)
        except tape.CorruptionError as exc:
            raise tape.CorruptionError(f"{self._what()}: stream sequence {seq}: {exc}; nothing of it was written") from None
        if self._source is None:
            self._source = got.identity
        elif got.identity != self._source:
            raise ReplicationError(
                f"{self._what()}: stream sequence {seq} is a frame of another queue ({got.identity}, "
                f"not {self._source}); nothing of it was written"
            )
        origin = self._origin
        prev, indexes, _ = got.sources
        if origin is not None and indexes[-1] <= origin:
            return  # held already
        if origin is not None and prev is not None and prev > origin:
            raise ReplicationError(
                f"{self._what()}: stream sequence {seq} follows index {prev}, the queue holds up to {origin}: "
                "entries between them are missing from the stream"
            )
        appender = self._local(got.identity)
        start = 0 if origin is None else bisect.bisect_right(indexes, origin)
        try:
            _append(appender, got, start)
        except BaseException:  # what reached the queue of a write that failed midway
            self._origin = self._last_origin()
            self.ingested += _count_after(indexes, origin, self._origin)
            raise
        self._origin = indexes[-1]
        self.ingested += len(indexes) - start
        if self._sync:
            appender.sync()

    def _local(self, source: frame.Identity) -> tape.Appender:
        """The local queue's appender; the queue is made (with the source's codec) on first use."""
        if self.queue is None:
            codec: Any = source.codec
            if source.params:
                codec = codecs.get(source.codec)
                if not isinstance(codec, codecs.ParamCodec):
                    raise tape.CorruptionError(f"{self._what()}: the stream's entries are {source.codec!r}, a codec "
                                               "that takes no parameters, and its frames carry some")
                codec = codec.with_params(source.params)
                with tape.Queue(self.path, codec=codec, roll_cycle=source.roll_cycle):
                    pass
                self._open(tape.Queue(self.path, raw=True, create=False))
            else:
                self._open(tape.Queue(self.path, raw=True, codec=codec, roll_cycle=source.roll_cycle))
            log.info("%s: created the queue (codec %s, roll cycle %s)", self._what(), source.codec, source.roll_cycle)
        assert self.queue is not None and self._appender is not None
        if self.queue.codec_name != source.codec:
            raise IncompatibleQueueError(
                f"{self.path}: its codec is {self.queue.codec_name!r}, the stream's entries are {source.codec!r}"
            )
        if self.queue.codec_params != source.params:
            raise IncompatibleQueueError(
                f"{self.path}: its codec {source.codec!r} has other parameters (for avro: another schema) "
                "than the stream's entries"
            )
        return self._appender

    # -- closing ------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop a run in another thread, close the local queue and let another Ingester in; idempotent."""
        self.stop()
        if self.queue is not None:
            self.queue.close()
        if self._lock is not None:
            self._lock.release()

    def __enter__(self) -> Ingester:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<tape.replicate.Ingester {self.url} {self.stream} -> {self.path!r}>"


def _append(appender: tape.Appender, got: frame.Columns, start: int) -> None:
    """Append the entries of `got` from position `start` on, with their origins."""
    _, indexes, timestamps = got.sources
    if not got.attrs:  # one core call, no object per entry
        at = got.ends[start - 1] if start else 0
        ends = got.ends[start:] if not at else array("Q", (end - at for end in got.ends[start:]))
        appender._write_encoded_run(got.payloads[at:], ends, indexes[start:], timestamps[start:])
        return
    payloads = got.payloads.tobytes()
    bounds = [0, *got.ends]
    rows: list[Any] = [(payloads[bounds[k]:bounds[k + 1]], None, None, (indexes[k], timestamps[k]), False)
                       for k in range(start, len(indexes))]
    for k, (key, not_before, tombstone) in got.attrs.items():
        if k >= start:
            rows[k - start] = (rows[k - start][0], key, not_before, rows[k - start][3], tombstone)
    appender.write_encoded_many(rows)


def _count_after(indexes: Sequence[int], before: int | None, upto: int | None) -> int:
    """How many of `indexes` are after `before` and not after `upto`."""
    if upto is None:
        return 0
    return sum(1 for i in indexes if (before is None or i > before) and i <= upto)
