"""asyncio over the log: reading and following without blocking the event loop.

A tailer's wait is the core's futex wait, which blocks its thread. Here it
runs in the loop's default executor, one slice (at most 0.1 s) per call: an
idle tailer costs a wake-up per slice, never a busy loop, and holds a worker
thread only for a slice at a time, so any number of waiting tailers share the
executor. What is already there is read in the loop's thread without waiting.
A task cancelled while waiting lets its worker finish the slice before the
cancellation goes on, so the tailer is never used by two threads afterwards.
Writes take microseconds and stay synchronous.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from tape import queue as _queue
from tape.errors import QueueClosedError

if TYPE_CHECKING:
    from tape.queue import Appender, Queue, Tailer

__all__ = ["aread", "afollow", "awrite", "aclose"]


async def _wait(tailer: Tailer, seconds: float) -> None:
    """One slice of the tailer's wait, in a worker thread."""
    done = asyncio.get_running_loop().run_in_executor(None, tailer._wait, seconds)
    try:
        await asyncio.shield(done)
    except asyncio.CancelledError:
        # The worker goes on until its slice ends: wait for it (even if
        # cancelled again), so that the tailer is free when the task ends.
        while not done.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait([done])
        raise


async def aread(tailer: Tailer, timeout: float | None = None) -> Any:
    """The next value of `tailer`, waiting for it.

    Waits forever when timeout is None, else up to `timeout` seconds (then
    returns None). Unlike Tailer.read, None does not mean "do not wait".
    """
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + _queue._as_seconds(timeout)
    while (item := tailer._next(False)) is _queue._NOTHING:
        seconds = _queue._WAIT_SLICE
        if deadline is not None:
            seconds = min(seconds, deadline - loop.time())
            if seconds <= 0:
                return None
        await _wait(tailer, seconds)
    return item


async def afollow(tailer: Tailer, timeout: float | None = None) -> AsyncIterator[Any]:
    """Yield values of `tailer` as they arrive, like Tailer.follow().

    Runs until no entry arrives for `timeout` seconds (forever when None) or
    until the tailer or its queue is closed. Other tasks run between batches.
    """
    loop = asyncio.get_running_loop()
    limit = None if timeout is None else _queue._as_seconds(timeout)
    last = loop.time()
    try:
        while True:
            for batch in tailer._batches(entries=False):
                for value in batch:
                    yield value
                last = loop.time()
                await asyncio.sleep(0)
            seconds = _queue._WAIT_SLICE
            if limit is not None:
                seconds = min(seconds, last + limit - loop.time())
                if seconds <= 0:
                    return
            await _wait(tailer, seconds)
    except QueueClosedError:
        return


async def awrite(appender: Appender, obj: Any) -> int:
    """Append `obj` with `appender` and return its index (synchronously: a write takes microseconds)."""
    return appender.write(obj)


async def aclose(queue: Queue) -> None:
    """Close `queue` in a worker thread: closing waits for each waiting tailer to end its slice."""
    await asyncio.to_thread(queue.close)
