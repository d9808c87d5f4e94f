"""Speed of `tape dump` (issue 6): entries/s of `tape dump Q > /dev/null`, a real process.

    python -m bench.dump [--entries N] [--runs R] [--dir PATH]

Builds a msgpack queue of N typical events (default 1,000,000; a dict of 9
fields, about 130 bytes, every one distinct), then runs the `tape` console
script of this Python, `tape dump Q` with stdout to /dev/null, R times in
each variant: jsonl (the default: worker processes, one per core), jsonl
with --jobs 1 (this process alone), pretty and raw, taking turns within each
run. Prints per variant the median entries/s over the wall clock, and over
the CPU time of the process and its workers (user + system), with the range,
and the start-up cost alone (`--limit 0`). The target (issue 6) is 300 k
entries/s for jsonl. On a shared machine compare the variants of one run,
and read the load average.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import tape
from bench.__main__ import git_commit, loadavg, machine, tape_build

BATCH = 10_000
VARIANTS = {
    "jsonl": [],
    "jsonl --jobs 1": ["--jobs", "1"],
    "pretty": ["--format", "pretty"],
    "raw": ["--format", "raw"],
}
TARGET = 300_000  # jsonl entries/s (issue 6)
START = 1_704_067_200_000  # 2024-01-01 in ms: the events' own time field


def events(first: int, n: int) -> Iterator[dict[str, Any]]:
    """Events `first` .. `first + n - 1`: an order-shop event, 9 fields, none two alike."""
    for i in range(first, first + n):
        yield {
            "id": 1_000_000 + i,
            "ts": START + 37 * i,
            "user": f"user{i % 9973:04}@example.com",
            "action": ("view", "cart", "buy")[i % 3],
            "sku": f"SKU-{i % 50_000:05}-XL",
            "qty": 1 + i % 9,
            "price": round(9.99 + (i % 10_000) / 100, 2),
            "paid": i % 2 == 0,
            "note": "gift wrap, leave at the door" if i % 7 else "",
        }


def build(where: Path, n: int) -> None:
    """Write the queue of `n` events at `where`."""
    with tape.Queue(where) as q:
        a = q.appender()
        for first in range(0, n, BATCH):
            a.write_many(events(first, min(BATCH, n - first)))
        assert q.count() == n, q.count()


def payload_size() -> float:
    """The mean size of an event in msgpack, in bytes (over the first 10,000)."""
    encode = tape.codecs.get("msgpack").encode
    return statistics.mean(len(encode(e)) for e in events(0, 10_000))


def tape_script() -> list[str]:
    """The command that runs this environment's `tape`."""
    script = Path(sys.executable).parent / "tape"
    return [str(script)] if script.exists() else [sys.executable, "-m", "tape"]


def timed(command: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of running `command` with stdout to /dev/null."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(command, stdout=subprocess.DEVNULL, check=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def spread(rates: list[float]) -> str:
    """Median and range of `rates` (entries/s), in k entries/s."""
    return f"{statistics.median(rates) / 1e3:7.0f} ({min(rates) / 1e3:.0f}-{max(rates) / 1e3:.0f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--entries", type=int, default=1_000_000, help="entries in the queue (default 1,000,000)")
    parser.add_argument("--runs", type=int, default=5, help="runs of every variant; medians are shown (default 5)")
    parser.add_argument("--dir", type=Path, default=None, help="where the queue goes (default: a temporary dir)")
    args = parser.parse_args()

    where = Path(tempfile.mkdtemp(prefix="tape-bench-dump-", dir=args.dir))
    try:
        t0 = time.perf_counter()
        build(where / "q", args.entries)
        print(f"queue of {args.entries:,} msgpack events, {payload_size():.0f} bytes each on average,"
              f" built in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        command = [*tape_script(), "dump", str(where / "q")]
        timed([*command, "--limit", "0"])  # a warm-up: the interpreter's and the packages' files in the page cache
        load_before = loadavg()
        startup: list[float] = []
        wall: dict[str, list[float]] = {v: [] for v in VARIANTS}
        cpu: dict[str, list[float]] = {v: [] for v in VARIANTS}
        for run in range(args.runs):
            startup.append(timed([*command, "--limit", "0"])[0])
            for variant, options in VARIANTS.items():
                w, c = timed([*command, *options])
                wall[variant].append(args.entries / w)
                cpu[variant].append(args.entries / c)
            print(f"run {run + 1}: " + ", ".join(f"{v} {wall[v][-1] / 1e3:.0f} k/s" for v in VARIANTS)
                  + f"; load {loadavg()}", file=sys.stderr, flush=True)
        load_after = loadavg()
    finally:
        shutil.rmtree(where, ignore_errors=True)

    m = machine(where.parent)
    build_info = tape_build()
    print(f"{m['cpu']}, {m['cores']} cores, Linux {m['kernel']}, Python {m['python']}, {m['filesystem']};"
          f" commit {git_commit()}; tape extension {build_info['extension']}"
          f" ({'test hooks compiled in' if build_info['testing_build'] else 'release build'})")
    print(f"command: {' '.join(command)} [options] > /dev/null; {args.runs} runs; load {load_before} -> {load_after}")
    print(f"start-up alone (--limit 0): median {statistics.median(startup) * 1e3:.0f} ms")
    print("| variant | k entries/s, wall clock: median (min-max) | k entries/s of CPU time | wall clock vs jsonl |")
    print("|---|---|---|---|")
    for variant in VARIANTS:
        ratio = statistics.median(w / j for w, j in zip(wall[variant], wall["jsonl"]))
        print(f"| {variant} | {spread(wall[variant])} | {spread(cpu[variant])} | {ratio:.2f}x |")
    verdict = "meets" if statistics.median(wall["jsonl"]) >= TARGET else "misses"
    print(f"jsonl {verdict} the target of {TARGET / 1e3:.0f} k entries/s (wall clock, median)")


if __name__ == "__main__":
    main()
