"""asyncio: aread, afollow, awrite, async with; waits keep the event loop free and the CPU idle."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar

import pytest

import tape

T = TypeVar("T")

WRITER = textwrap.dedent(
    """
    import sys, time
    import tape

    with tape.Queue(sys.argv[1]) as q:
        a = q.appender()
        k = 0
        while k < 10_000:
            if k % 1000 < 500:
                a.write(k)  # one by one: the follower waits between entries
                k += 1
            else:
                a.write_many(range(k, k + 100))
                k += 100
            if k % 100 == 0:
                time.sleep(0.005)
    """
)


def waited_for_a_cpu() -> float:
    """Seconds this thread spent ready to run but waiting for a CPU (0 where Linux does not say)."""
    try:
        with open("/proc/thread-self/schedstat") as f:
            return int(f.read().split()[1]) / 1e9
    except OSError:
        return 0.0


class Ticker:
    """A task that ticks every 10 ms and records the largest gap between ticks.

    largest_gap leaves out the time the loop's thread waited for a CPU: the
    machine may be busy with other work, and what is measured is whether tape
    blocks the loop.
    """

    def __init__(self) -> None:
        self.ticks = 0
        self.largest_gap = 0.0
        self.largest_raw_gap = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        last, starved = time.monotonic(), waited_for_a_cpu()
        while True:
            await asyncio.sleep(0.01)
            now, now_starved = time.monotonic(), waited_for_a_cpu()
            self.largest_raw_gap = max(self.largest_raw_gap, now - last)
            self.largest_gap = max(self.largest_gap, now - last - (now_starved - starved))
            self.ticks += 1
            last, starved = now, now_starved

    async def __aenter__(self) -> Ticker:
        self._task = asyncio.create_task(self._run())
        await asyncio.sleep(0)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self._task


def run(awaitable: Awaitable[T]) -> T:
    async def main() -> T:
        return await awaitable

    return asyncio.run(main())


def write_later(queue: tape.Queue, value: Any, delay: float) -> threading.Thread:
    def body() -> None:
        time.sleep(delay)
        queue.appender().write(value)

    thread = threading.Thread(target=body)
    thread.start()
    return thread


def test_aread_returns_what_is_there_at_once(queue: tape.Queue) -> None:
    queue.appender().write_many(["a", None])
    t = queue.tailer()

    async def main() -> list[Any]:
        return [await t.aread(), await t.aread(), await t.aread(timeout=0)]

    assert asyncio.run(main()) == ["a", None, None]
    assert t.index == queue.last_index + 1  # type: ignore[operator]


def test_aread_waits_for_an_entry_without_blocking_the_loop(queue: tape.Queue) -> None:
    t = queue.tailer()
    writer = write_later(queue, {"late": True}, 0.5)

    async def main() -> tuple[Any, Ticker]:
        async with Ticker() as ticker:
            value = await t.aread()
        return value, ticker

    value, ticker = asyncio.run(main())
    writer.join()
    assert value == {"late": True}
    assert ticker.ticks >= 10
    assert ticker.largest_gap < 0.1


def test_aread_returns_none_after_its_timeout(queue: tape.Queue) -> None:
    t = queue.tailer()
    start = time.monotonic()
    assert run(t.aread(timeout=0.25)) is None
    assert 0.25 <= time.monotonic() - start < 1


def test_an_idle_wait_costs_almost_no_cpu(queue: tape.Queue) -> None:
    t = queue.tailer()

    async def main() -> tuple[float, float]:
        cpu, wall = time.process_time(), time.monotonic()
        assert await t.aread(timeout=1.0) is None
        return time.process_time() - cpu, time.monotonic() - wall

    cpu, wall = asyncio.run(main())
    assert wall >= 1.0
    assert cpu < 0.05


def test_cancelling_a_task_waiting_in_aread_is_clean(queue: tape.Queue) -> None:
    t = queue.tailer()

    async def main() -> float:
        task = asyncio.create_task(t.aread())
        await asyncio.sleep(0.15)
        assert not task.done()
        start = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        took = time.monotonic() - start
        assert not t._native.lock.locked()  # no worker thread is still waiting with the tailer
        queue.appender().write("after")
        assert await t.aread(timeout=1) == "after"
        return took

    assert asyncio.run(main()) < 0.5  # one slice of 0.1 s, and a busy machine


def test_a_timeout_around_aread_raises_timeout_error(queue: tape.Queue) -> None:
    t = queue.tailer()

    async def main() -> None:
        async with asyncio.timeout(0.2):
            await t.aread()

    with pytest.raises(TimeoutError):
        asyncio.run(main())
    queue.appender().write(1)
    assert t.read() == 1


def test_afollow_gets_10000_entries_another_process_writes_in_order(qpath: Path) -> None:
    async def main() -> tuple[list[int], Ticker]:
        async with tape.Queue(qpath) as q, Ticker() as ticker:
            writer = await asyncio.create_subprocess_exec(sys.executable, "-c", WRITER, str(qpath))
            got: list[int] = []
            async for value in q.tailer().afollow(timeout=10):
                got.append(value)
                if len(got) == 10_000:
                    break
            assert await writer.wait() == 0
        return got, ticker

    got, ticker = asyncio.run(main())
    assert got == list(range(10_000))
    assert ticker.largest_gap < 0.1


def test_afollow_stops_after_its_timeout_without_entries(queue: tape.Queue) -> None:
    queue.appender().write_many([1, 2])
    t = queue.tailer()

    async def main() -> list[Any]:
        return [v async for v in t.afollow(timeout=0.2)]

    start = time.monotonic()
    assert asyncio.run(main()) == [1, 2]
    assert 0.2 <= time.monotonic() - start < 1


def test_afollow_stops_when_the_queue_is_closed(qpath: Path) -> None:
    async def main() -> list[Any]:
        q = tape.Queue(qpath)
        q.appender().write("first")
        asyncio.get_running_loop().call_later(0.2, q.close)
        return [v async for v in q.tailer().afollow()]

    assert asyncio.run(main()) == ["first"]


def test_awrite_writes_and_returns_the_index(queue: tape.Queue) -> None:
    a = queue.appender()
    index = run(a.awrite({"x": 1}))
    assert index == queue.last_index
    assert queue.tailer().read() == {"x": 1}


def test_async_with_closes_the_queue(qpath: Path) -> None:
    async def main() -> tape.Queue:
        async with tape.Queue(qpath) as q:
            await q.appender().awrite(1)
        return q

    q = asyncio.run(main())
    assert "closed" in repr(q)
    with pytest.raises(tape.QueueClosedError):
        q.count()
