"""Work queues: claim + ack per second through a consumer group, and a killed worker's claims.

    python -m bench.groups [--n N]

- tape, 1 consumer: claim() + ack() of N entries of 100 bytes (raw codec);
  then claim_many(1000) + ack() of each;
- tape, 2 worker processes sharing one group: claim() + ack() of N entries,
  counted from the start of both to the end of the last;
- redelivery after kill -9: a process holds 100 claims (ack_wait 600 s) and is
  killed; the time from its death (waitpid) to another consumer's claim of
  them, median of 10;
- persist-queue's SQLiteAckQueue (when importable): get() + ack() of N / 200
  entries (put beforehand), in one process (it commits every call: a few
  hundred per second, so fewer entries give the same rate).

Figures are entries per second, best of 3 runs (the kill: median of 10).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import tape

PAYLOAD = b"x" * 100


def _fill(path: str, n: int) -> None:
    with tape.Queue(path, codec="raw") as q:
        q.group("g", ack_wait=600)
        q.appender().write_many(PAYLOAD for _ in range(n))


def tape_one(path: str, n: int) -> float:
    _fill(path, n)
    with tape.Queue(path, codec="raw") as q:
        c = q.group("g").consumer()
        t0 = time.perf_counter()
        got = 0
        while (m := c.claim()) is not None:
            m.ack()
            got += 1
        took = time.perf_counter() - t0
    assert got == n, got
    return n / took


def tape_many(path: str, n: int) -> float:
    _fill(path, n)
    with tape.Queue(path, codec="raw") as q:
        c = q.group("g").consumer()
        t0 = time.perf_counter()
        got = 0
        while batch := c.claim_many(1000):
            for m in batch:
                m.ack()
            got += len(batch)
        took = time.perf_counter() - t0
    assert got == n, got
    return n / took


def _worker(path: str, start: multiprocessing.synchronize.Event, done: multiprocessing.Queue) -> None:  # type: ignore[name-defined]
    with tape.Queue(path, codec="raw") as q:
        c = q.group("g").consumer()
        start.wait()
        got = 0
        while (m := c.claim()) is not None:
            m.ack()
            got += 1
        done.put((got, time.perf_counter()))


def tape_procs(path: str, n: int, procs: int = 2) -> float:
    _fill(path, n)
    ctx = multiprocessing.get_context("spawn")
    start, done = ctx.Event(), ctx.Queue()
    workers = [ctx.Process(target=_worker, args=(path, start, done)) for _ in range(procs)]
    for w in workers:
        w.start()
    time.sleep(1.0)  # all started and opened
    t0 = time.perf_counter()
    start.set()
    results = [done.get() for _ in workers]
    for w in workers:
        w.join()
    assert sum(r[0] for r in results) == n, results
    return n / (max(r[1] for r in results) - t0)


_HOLDER = """
import sys, time, tape
with tape.Queue(sys.argv[1], codec="raw") as q:
    held = q.group("g").consumer().claim_many(100)
    print(len(held), flush=True)
    time.sleep(3600)
"""


def kill_redelivery_ms(path: str, trials: int = 10) -> float:
    with tape.Queue(path, codec="raw") as q:
        q.group("g", ack_wait=600)
        a = q.appender()
        c = q.group("g").consumer()
        times = []
        for _ in range(trials):
            a.write_many(PAYLOAD for _ in range(100))
            p = subprocess.Popen([sys.executable, "-c", _HOLDER, path], stdout=subprocess.PIPE)
            assert p.stdout is not None and p.stdout.readline().strip() == b"100"
            assert c.claim() is None
            p.send_signal(signal.SIGKILL)
            p.wait()
            t0 = time.perf_counter()
            m = c.claim(timeout=30)
            times.append((time.perf_counter() - t0) * 1000)
            assert m is not None
            m.ack()
            for m in c.claim_many(1000):
                m.ack()
    return statistics.median(times)


def persist_queue(path: str, n: int) -> float | None:
    try:
        from persistqueue import SQLiteAckQueue  # type: ignore[import-not-found]
    except ImportError:
        return None
    q = SQLiteAckQueue(path, auto_commit=True, multithreading=False)
    for _ in range(n):
        q.put(PAYLOAD)
    t0 = time.perf_counter()
    for _ in range(n):
        item = q.get(block=False)
        q.ack(item)
    return n / (time.perf_counter() - t0)


def best(fn, n: int, runs: int = 3) -> float:  # type: ignore[no-untyped-def]
    figures = []
    for _ in range(runs):
        d = tempfile.mkdtemp(prefix="tape-bench-groups-")
        try:
            figures.append(fn(os.path.join(d, "q"), n))
        finally:
            shutil.rmtree(d, ignore_errors=True)
    return max(figures)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200_000)
    n = ap.parse_args().n
    print(f"tape claim+ack, 1 consumer:         {best(tape_one, n):12,.0f} /s")
    print(f"tape claim_many(1000)+ack:          {best(tape_many, n):12,.0f} /s")
    print(f"tape claim+ack, 2 processes:        {best(tape_procs, n):12,.0f} /s")
    d = tempfile.mkdtemp(prefix="tape-bench-groups-")
    try:
        print(f"redelivery after kill -9 (median):  {kill_redelivery_ms(os.path.join(d, 'q')):12.2f} ms")
    finally:
        shutil.rmtree(d, ignore_errors=True)
    pq = best(persist_queue, max(n // 200, 1))
    if pq is None:
        print("persist-queue SQLiteAckQueue:       not installed (make bench installs it)")
    else:
        print(f"persist-queue SQLiteAckQueue get+ack:{pq:11,.0f} /s")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()
