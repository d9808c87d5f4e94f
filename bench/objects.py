"""Durable-object benchmarks (issue 19): calls/s of a handler that changes the state.

    python -m bench.objects [--runs N] [--dir PATH] [--n N]

- one process: `ref.increment()` on one object, n calls (each stores its new
  state with write_if before it returns).
- 4 processes on 4 objects: each process calls its own object n times.
- 4 processes on one object: the same object from all four: conflicts make
  handlers run again; the figure "runs/call" is how many times the handler ran
  per call. Measured twice: as tape does it (optimistic: rerun on conflict),
  and with every call serialised across processes by an exclusive flock() on
  a lock file (the other design the brief allowed), to compare.
- cold objects: a store of --objects objects (100,000), one call each to make
  them; then, in a store just opened, the first call on each of 1,000 objects
  chosen at random (none in memory yet), each timed alone: median and p99; and
  opening the store (Objects(...) then close()), 20 times: median.

Rates are calls per second of wall-clock time over all processes (first start
to last end; processes start together, behind a barrier file). Every process
is a fresh interpreter; prints the median of the runs. With each rate: the
CPU time the calling processes used per call (all their threads), and how many
CPUs they kept busy on average over the span (at most the machine's count: a
figure below it went to waiting, or to other programs on the machine).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import tape

RUNS = [0]  # handler runs in this process


class BenchCounter(tape.DurableObject):
    count: int = 0

    def increment(self) -> int:
        RUNS[0] += 1
        self.count += 1
        return self.count


def worker(store: str, oid: str, n: int, lock: bool, go: str) -> None:
    """One benchmark process: n calls on object `oid`; prints {"start", "end", "cpu", "runs"}."""
    with tape.Objects(store, alarms=False) as objects:
        ref = objects.get(BenchCounter, oid)
        fd = os.open(os.path.join(store, f"{oid}.lock"), os.O_RDWR | os.O_CREAT, 0o644)
        while not os.path.exists(go):
            time.sleep(0.001)
        start, cpu = time.time(), time.process_time()
        if lock:
            for _ in range(n):
                fcntl.flock(fd, fcntl.LOCK_EX)
                try:
                    ref.increment()
                finally:
                    fcntl.flock(fd, fcntl.LOCK_UN)
        else:
            for _ in range(n):
                ref.increment()
        end, cpu = time.time(), time.process_time() - cpu
    print(json.dumps({"start": start, "end": end, "cpu": cpu, "runs": RUNS[0]}))


def one_process(where: Path, n: int) -> tuple[float, float, float, float]:
    """(calls/s, 1 run per call, CPU seconds per call, CPUs busy) of n calls in this process."""
    with tape.Objects(where / "one", alarms=False) as objects:
        ref = objects.get(BenchCounter, "one")
        ref.increment()
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(n):
            ref.increment()
        span, cpu = time.perf_counter() - t0, time.process_time() - c0
        assert ref.state()["count"] == n + 1
    return n / span, 1.0, cpu / n, cpu / span


def processes(where: Path, n: int, ids: list[str], lock: bool) -> tuple[float, float, float, float]:
    """(calls/s in total, handler runs per call, CPU seconds per call, CPUs busy) of len(ids) processes, one per id."""
    store = where / f"procs-{len(set(ids))}-{lock}"
    tape.Objects(store, alarms=False).close()
    go = str(store / "go")
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "bench.objects", "--worker", str(store), oid, str(n), str(int(lock)), go],
            stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parent.parent,
        )
        for oid in ids
    ]
    time.sleep(1.0)  # every interpreter started and opened the store
    Path(go).touch()
    out = [json.loads(p.communicate()[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    with tape.Objects(store, alarms=False) as objects:
        for oid in set(ids):
            assert objects.get(BenchCounter, oid).state()["count"] == n * ids.count(oid)
    span = max(o["end"] for o in out) - min(o["start"] for o in out)
    cpu = sum(o["cpu"] for o in out)
    shutil.rmtree(store)
    calls = n * len(ids)
    return calls / span, sum(o["runs"] for o in out) / calls, cpu / calls, cpu / span


def cold(where: Path, objects_n: int, samples: int = 1000, opens: int = 20) -> tuple[float, float, float]:
    """(median and p99 of a first call on a cold object, median of opening the store), in seconds."""
    store = where / "cold"
    with tape.Objects(store, alarms=False) as objects:
        call = objects.call
        for i in range(objects_n):
            call(BenchCounter, f"o{i}", "increment")
    chosen = random.Random(19).sample(range(objects_n), samples)
    took = []
    with tape.Objects(store, alarms=False) as objects:
        for i in chosen:
            ref = objects.get(BenchCounter, f"o{i}")
            t0 = time.perf_counter()
            ref.increment()
            took.append(time.perf_counter() - t0)
    opened = []
    for _ in range(opens):
        t0 = time.perf_counter()
        tape.Objects(store, alarms=False).close()
        opened.append(time.perf_counter() - t0)
    shutil.rmtree(store)
    took.sort()
    return statistics.median(took), took[int(len(took) * 0.99)], statistics.median(opened)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        store, oid, n, lock, go = sys.argv[2:7]
        worker(store, oid, int(n), lock == "1", go)
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--objects", type=int, default=100_000, help="objects in the store of the cold-call rows")
    ap.add_argument("--dir", default=None, help="where the stores go (default: a temporary directory)")
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="bench-objects-", dir=args.dir))
    try:
        rows: dict[str, list[tuple[float, float, float, float]]] = {}
        colds = []
        for run in range(args.runs):
            where = base / str(run)
            where.mkdir()
            rows.setdefault("1 process, 1 object", []).append(one_process(where, args.n))
            rows.setdefault("4 processes, 4 objects", []).append(
                processes(where, args.n // 4, ["a", "b", "c", "d"], lock=False))
            rows.setdefault("4 processes, 1 object (optimistic)", []).append(
                processes(where, args.n // 8, ["x"] * 4, lock=False))
            rows.setdefault("4 processes, 1 object (flock per call)", []).append(
                processes(where, args.n // 8, ["x"] * 4, lock=True))
            colds.append(cold(where, args.objects))
            shutil.rmtree(where)
        print(f"({os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at the end)")
        for name, got in rows.items():
            rate, runs, cpu, busy = (statistics.median(g[k] for g in got) for k in range(4))
            print(f"{name:42} {rate:>12,.0f} calls/s   {runs:.2f} runs/call"
                  f"   {cpu * 1e6:.2f} us CPU/call   {busy:.2f} CPUs busy")
        median, p99, opened = (statistics.median(c[k] for c in colds) * 1e6 for k in range(3))
        print(f"first call on a cold object ({args.objects:,} in the store): median {median:,.0f} us, p99 {p99:,.0f} us")
        print(f"opening the store ({args.objects:,} objects): median {opened:,.0f} us")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
