"""Durable-atom benchmarks (issue 7): swaps/s, contended swaps/s, value reads/s.

    python -m bench.atom [--runs N] [--dir PATH] [--n N]

- swap, one process: `swap` of a small dict ({"n": k, "name": "counter"}),
  commit="sync" (the snapshot is in the queue when swap returns), then
  commit="async" (swaps, then flush()); both again on a queue with
  sync="always" (every snapshot on disk: per swap, or per batch the async
  committer writes).
- swap, contended: 2 and 4 processes started together on one atom, each
  making its share of the swaps; total swaps / (last end - first start), and
  how many times fn ran per swap (the retries a conflict costs).
- value: reading `value` when nothing changed (one read of the queue), and
  when one new snapshot is there each time (another atom object changes it
  in between; the figure is per pair, change included).

Rates are per second of wall-clock time, and in brackets per second of the
process's CPU time (what the machine's other load does not change). Every
process is a fresh interpreter; prints the median of the runs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tape

_HERE = Path(__file__).resolve()
INITIAL = {"n": 0, "name": "counter"}


def step(s: dict[str, Any]) -> dict[str, Any]:
    return {"n": s["n"] + 1, "name": s["name"]}


def timed(fn: Callable[[], object], n: int) -> tuple[float, float]:
    """(calls/s of wall time, calls/s of CPU time) of calling fn n times."""
    w0, c0 = time.perf_counter(), time.process_time()
    for _ in range(n):
        fn()
    w1, c1 = time.perf_counter(), time.process_time()
    return n / (w1 - w0), n / max(c1 - c0, 1e-9)


# ---- one process ----------------------------------------------------------------------------


def swap_sync(where: Path, n: int, sync: str = "none") -> tuple[float, float]:
    with tape.DurableAtom(where / f"sync-{sync}", initial=INITIAL, sync=sync) as a:
        rates = timed(lambda: a.swap(step), n)
        assert a.value["n"] == n
    return rates


def swap_async(where: Path, n: int, sync: str = "none") -> tuple[float, float]:
    with tape.DurableAtom(where / f"async-{sync}", initial=INITIAL, commit="async", sync=sync) as a:
        w0, c0 = time.perf_counter(), time.process_time()
        for _ in range(n):
            a.swap(step)
        a.flush()
        w1, c1 = time.perf_counter(), time.process_time()
        assert a.history()[-1].value["n"] == n
    return n / (w1 - w0), n / (c1 - c0)


def value_unchanged(where: Path, n: int) -> tuple[float, float]:
    with tape.DurableAtom(where / "read", initial=INITIAL) as a:
        a.swap(step)
        return timed(lambda: a.value, n)


def value_changed(where: Path, n: int) -> tuple[float, float]:
    with tape.DurableAtom(where / "read2", initial=INITIAL) as a, tape.DurableAtom(where / "read2") as b:
        def pair() -> None:
            b.swap(step)
            a.value

        rates = timed(pair, n)
        assert a.value["n"] == n
    return rates


# ---- processes --------------------------------------------------------------------------------


def child_swapper(path: str, n: str) -> None:
    """Open the atom, say ready, wait for a line, make n swaps, print the figures as JSON."""
    calls = 0

    def counted(s: dict[str, Any]) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        return step(s)

    with tape.DurableAtom(path, initial=INITIAL) as a:
        print("ready", flush=True)
        sys.stdin.readline()
        start, c0 = time.monotonic(), time.process_time()
        for _ in range(int(n)):
            a.swap(counted)
        end, c1 = time.monotonic(), time.process_time()
    print(json.dumps({"start": start, "end": end, "cpu": c1 - c0, "calls": calls}), flush=True)


def contended(where: Path, procs: int, n: int) -> tuple[float, float, float]:
    """(swaps/s of wall time, swaps per CPU second of all of them, fn calls per swap) of `procs` processes."""
    path = where / f"contended{procs}"
    children = [
        subprocess.Popen([sys.executable, str(_HERE), "--child", str(path), str(n // procs)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for _ in range(procs)
    ]
    for c in children:
        assert c.stdout is not None and c.stdout.readline() == "ready\n"
    for c in children:
        assert c.stdin is not None
        c.stdin.write("go\n")
        c.stdin.flush()
    results = []
    for c in children:
        out, _ = c.communicate(timeout=600)
        assert c.returncode == 0
        results.append(json.loads(out))
    total = n // procs * procs
    with tape.DurableAtom(path) as a:
        assert a.value["n"] == total, "lost updates"
    span = max(r["end"] for r in results) - min(r["start"] for r in results)
    cpu = sum(r["cpu"] for r in results)
    return total / span, total / cpu, sum(r["calls"] for r in results) / total


# ---- main -------------------------------------------------------------------------------------


def fmt(rate: float) -> str:
    return f"{rate / 1000:.0f} k/s" if rate >= 10_000 else f"{rate:.0f}/s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.atom", description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--n", type=int, default=200_000, help="swaps per benchmark")
    parser.add_argument("--dir", type=Path, default=None, help="where the atoms go (default: a temporary dir)")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child_swapper(*args.child)
        return 0
    rows: dict[str, list[tuple[float, ...]]] = {}
    for _ in range(args.runs):
        where = Path(tempfile.mkdtemp(prefix="tape-bench-atom-", dir=args.dir))
        try:
            for name, run in (
                ("swap, sync, 1 process", lambda: swap_sync(where, args.n)),
                ("swap, async, 1 process", lambda: swap_async(where, args.n)),
                ("swap, sync, sync=always", lambda: swap_sync(where, args.n // 400, "always")),
                ("swap, async (until flushed), sync=always", lambda: swap_async(where, args.n // 10, "always")),
                ("value, unchanged", lambda: value_unchanged(where, 5 * args.n)),
                ("value, 1 new snapshot (with the swap)", lambda: value_changed(where, args.n)),
                ("swap, sync, 2 processes", lambda: contended(where, 2, args.n)),
                ("swap, sync, 4 processes", lambda: contended(where, 4, args.n)),
            ):
                rows.setdefault(name, []).append(run())
        finally:
            shutil.rmtree(where)
    print(f"| benchmark | wall | CPU | fn calls per swap |  ({args.runs} runs, medians; "
          f"load average {open('/proc/loadavg').read().split()[0]})")
    print("|---|---|---|---|")
    for name, runs in rows.items():
        wall = statistics.median(r[0] for r in runs)
        cpu = statistics.median(r[1] for r in runs)
        calls = f"{statistics.median(r[2] for r in runs):.2f}" if len(runs[0]) > 2 else ""
        print(f"| {name} | {fmt(wall)} | {fmt(cpu)} | {calls} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
