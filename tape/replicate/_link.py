"""The connection to NATS: connecting, retrying with backoff, the stream and its subject.

Replicator and Ingester are both a `Link`: `run()` connects, runs a session
(`_session`, theirs) and, when the server cannot be reached or the connection
breaks, logs it, waits (0.1 s doubling to 5 s) and starts a new session, which
first asks the stream where to resume. Errors that retrying cannot cure (a
damaged frame, a foreign queue, a gap) are raised.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import StorageType

from tape._args import as_seconds, shown
from tape.errors import ArgumentError, ArgumentTypeError, ReplicationError
from tape.replicate._lock import RoleLock

__all__ = ["Link", "NotYet", "log", "WRONG_LAST_SEQUENCE", "discard", "subject_matches"]

log = logging.getLogger("tape.replicate")

# JetStream's refusals of a fenced publish: Nats-Expected-Last-Subject-Sequence
# (10071) or Nats-Expected-Last-Sequence (10164) did not hold
WRONG_LAST_SEQUENCE = frozenset({10071, 10164})
_BACKOFF_FIRST = 0.1
_BACKOFF_MAX = 5.0



class NotYet(Exception):
    """Something that should come (a stream being made) is not there yet: retried like a broken connection."""


# What a broken or missing connection raises; anything else is not retried.
TRANSIENT: tuple[type[BaseException], ...] = (nats.errors.Error, OSError, asyncio.TimeoutError, NotYet)


def subject_matches(pattern: str, subject: str) -> bool:
    """True when the NATS subject pattern (with `*` and `>` wildcards) covers `subject`."""
    want, have = pattern.split("."), subject.split(".")
    for i, token in enumerate(want):
        if token == ">":
            return len(have) > i
        if i >= len(have) or (token != "*" and token != have[i]):
            return False
    return len(want) == len(have)


def _name(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise ArgumentTypeError(f"{what} must be a str, not {type(value).__name__}")
    if not value or any(c in value for c in " \t\r\n"):
        raise ArgumentError(f"{what} must be a non-empty name without spaces, not {shown(value)}")
    return value


class Link:
    """A NATS connection that a session runs on, made again (with backoff) whenever it fails."""

    def __init__(self, url: str, *, stream: str, subject: str | None, connect_timeout: float,
                 retry_for: float | None) -> None:
        self.url = _name(url, "url")
        self.stream = _name(stream, "stream")
        if "." in stream or "*" in stream or ">" in stream:
            raise ArgumentError(f"a stream name has no '.', '*' or '>': {shown(stream)}")
        self.subject = None if subject is None else _name(subject, "subject")
        self._connect_timeout = as_seconds(connect_timeout)
        self._retry_for = None if retry_for is None else as_seconds(retry_for)
        self._stop = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self.connected = False
        self._closing = False  # the session's connection is being closed on purpose
        self._reached = False  # the session's stream answered (a failure after that starts a new outage)
        self.max_payload = 1 << 20  # the largest message the server takes (it says so when connected)
        self._lock: RoleLock | None = None  # the role's lock, once taken

    # -- what the subclasses provide -----------------------------------------------------------

    async def _session(self, js: JetStreamContext, follow: bool) -> None:
        """Work on a fresh connection until done (follow=False) or stopped; raise to reconnect."""
        raise NotImplementedError

    def _what(self) -> str:
        """Who is talking, for log messages."""
        raise NotImplementedError

    # -- running ------------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the run() in progress to return soon (from any thread); idempotent."""
        self._stop.set()
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(wake.set)
            except RuntimeError:  # the loop closed meanwhile
                pass

    @property
    def stopping(self) -> bool:
        """True once stop() was called."""
        return self._stop.is_set()

    async def _pause(self, seconds: float) -> None:
        """Sleep up to `seconds`, less when stop() is called."""
        wake = self._wake
        if wake is None or wake.is_set():
            return
        try:
            await asyncio.wait_for(wake.wait(), seconds)
        except asyncio.TimeoutError:
            pass

    async def _run(self, follow: bool) -> None:
        """Sessions, one after the other, until one ends without an error or stop() is called."""
        if self._lock is not None:
            self._lock.check(self._what())  # not in a fork child, which does not hold it
        self._stop.clear()  # a stop() ends the run in progress, not the next one
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        delay = _BACKOFF_FIRST
        failing_since: float | None = None
        try:
            while not self._stop.is_set():
                nc: Client | None = None
                self._reached = False
                try:
                    nc = await self._connect()
                    if failing_since is not None:
                        log.warning("%s: connected to %s again", self._what(), self.url)
                    await self._session(nc.jetstream(timeout=self._connect_timeout), follow)
                    return
                except nats.js.errors.APIError as exc:
                    if exc.err_code in WRONG_LAST_SEQUENCE:
                        # Another publish came first (ours, whose ack was lost, or
                        # another replicator's): a new session asks the stream again.
                        log.info("%s: the subject moved on; asking the stream where to resume", self._what())
                        delay, failing_since = _BACKOFF_FIRST, None
                        continue
                    if not _unavailable(exc):
                        raise ReplicationError(f"{self._what()}: the stream refused a request: {exc}") from exc
                    failing_since, delay = await self._failed(exc, failing_since, delay)
                except TRANSIENT as exc:
                    failing_since, delay = await self._failed(exc, failing_since, delay)
                finally:
                    self.connected = False
                    if nc is not None:
                        self._closing = True
                        await _close(nc)
        finally:
            self._loop = self._wake = None

    async def _failed(self, exc: BaseException, failing_since: float | None, delay: float) -> tuple[float, float]:
        """Log a failure and wait `delay` s: (when the outage started, the next delay); ReplicationError past retry_for.

        A session that reached its stream ended the outage before it: this
        failure starts a new one, retried from the shortest delay.
        """
        now = time.monotonic()
        if self._reached:
            failing_since, delay = None, _BACKOFF_FIRST
        failing_since = now if failing_since is None else failing_since
        if self._retry_for is not None and now - failing_since >= self._retry_for:
            raise ReplicationError(
                f"{self._what()}: {self.url} unreachable for {now - failing_since:.1f} s: {_said(exc)}"
            ) from exc
        wait = delay if self._retry_for is None else min(delay, self._retry_for - (now - failing_since))
        log.warning("%s: %s: %s; retrying in %.1f s", self._what(), self.url, _said(exc), wait)
        await self._pause(wait)  # the last try comes when retry_for is up, not a whole delay later
        return failing_since, min(delay * 2, _BACKOFF_MAX)

    async def _connect(self) -> Client:
        async def quiet(exc: Exception) -> None:
            log.debug("%s: %s: %s", self._what(), self.url, _said(exc))

        async def lost() -> None:
            if not self._closing:
                log.warning("%s: connection to %s lost", self._what(), self.url)

        self._closing = False
        nc = await nats.connect(
            self.url.split(","),
            allow_reconnect=False,
            connect_timeout=self._connect_timeout,
            max_reconnect_attempts=1,  # 0 would be for ever; we retry, with backoff and a log line
            reconnect_time_wait=0,
            error_cb=quiet,
            disconnected_cb=lost,
        )
        self.connected = True
        self.max_payload = nc.max_payload
        return nc

    async def _stream_subjects(self, js: JetStreamContext) -> list[str] | None:
        """The stream's subjects, None when there is no such stream."""
        try:
            info = await js.stream_info(self.stream)
        except nats.js.errors.NotFoundError:
            return None
        return list(info.config.subjects or [])

    async def _make_stream(self, js: JetStreamContext, subject: str, replicas: int,
                           duplicate_window: float | None) -> None:
        """Create the stream with `subject`, or check that the one there takes it."""
        subjects = await self._stream_subjects(js)
        if subjects is None:
            params: dict[str, Any] = {"name": self.stream, "subjects": [subject],
                                      "storage": StorageType.FILE, "num_replicas": replicas}
            if duplicate_window is not None:
                params["duplicate_window"] = duplicate_window
            try:
                await js.add_stream(**params)
                log.info("%s: created stream %s (subject %s)", self._what(), self.stream, subject)
                return
            except nats.js.errors.BadRequestError:  # created meanwhile by someone else
                subjects = await self._stream_subjects(js) or []
        if not any(subject_matches(p, subject) for p in subjects):
            raise ReplicationError(
                f"stream {self.stream} does not take subject {subject!r} (its subjects: {', '.join(subjects)})"
            )


def discard(task: asyncio.Future[Any]) -> None:
    """Cancel `task`; if it had ended with an exception, take it (so that it is not logged as never retrieved)."""
    if not task.cancel() and not task.cancelled():
        task.exception()


def _unavailable(exc: nats.js.errors.APIError) -> bool:
    """True for an answer that waiting may change: JetStream not ready yet, no leader yet (a 5xx)."""
    unavailable = (nats.js.errors.ServiceUnavailableError, nats.js.errors.ServerError)
    return isinstance(exc, unavailable) or (exc.code or 0) >= 500


def _said(exc: BaseException) -> str:
    """An exception as a short line for a log."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def _close(nc: Client) -> None:
    try:
        await asyncio.wait_for(nc.close(), 2.0)
    except Exception as exc:  # closing a broken connection: nothing left to save
        log.debug("closing the connection: %s", _said(exc))
