"""`python -m bench [--full] [--runs N] [--dir PATH] [--only NAME[,NAME...]]`.

Runs the quick benchmarks of bench/api.py (and with --full the big ones of
bench/big.py), prints a table of medians with min-max over the runs, and
writes every figure to bench/results-<name>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import api, big
from tape import _core
from bench.api import Benchmark, Context, Result

_HERE = Path(__file__).resolve().parent


def machine(where: Path) -> dict[str, Any]:
    """The CPU, cores, memory, kernel and the filesystem of `where`."""
    model = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kb = int(f.readline().split()[1])
    fs = subprocess.run(["findmnt", "-no", "FSTYPE", "-T", str(where)], capture_output=True, text=True).stdout
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gb": round(mem_kb / 1024**2, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "queue_dir": str(where),
        "filesystem": fs.strip() or "unknown",
    }


def tape_build() -> dict[str, Any]:
    """Which tape extension was imported, and whether it has the test hooks (TAPE_TESTING=1)."""
    core = Path(_core.__file__).resolve()
    return {"extension": str(core), "testing_build": b"tape_kill_point" in core.read_bytes()}


def git_commit() -> str:
    """The commit of the working tree, with "+dirty" when it has changes."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=_HERE, capture_output=True, text=True).stdout.strip()

    head = git("rev-parse", "--short", "HEAD")
    return head + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def select(names: str | None, full: bool) -> list[Benchmark]:
    """The benchmarks to run: --only's names ("big" means all big.*), else quick (+ big)."""
    everything = api.BENCHMARKS + big.BENCHMARKS
    if names is None:
        return list(api.BENCHMARKS + (big.BENCHMARKS if full else ()))
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    known = {b.name for b in everything} | {"big"}
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise SystemExit(f"bench: unknown benchmark {unknown[0]!r}; known: {', '.join(sorted(known))}")
    return [b for b in everything if b.name in wanted or ("big" in wanted and b.name.startswith("big."))]


def fmt(x: float) -> str:
    """A figure with three significant digits (more for large ones)."""
    return f"{x:.3g}" if abs(x) < 1000 else f"{x:.0f}"


def table(results: list[Result], runs: int) -> str:
    """The results as a Markdown table: median, min-max, target, status."""
    lines = [
        f"| benchmark | figure | median of {runs} | min - max | target | |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        if r.skipped:
            why = r.skipped if r.failed else f"skipped: {r.skipped}"
            lines.append(f"| {r.bench.name} | {why} | | | | |")
            continue
        for row in r.rows():
            n = len(row["values"])
            spread = f"{fmt(row['min'])} - {fmt(row['max'])}" if n > 1 else "(1 run)"
            lines.append(
                f"| {r.bench.name} | {row['metric']} | {fmt(row['median'])} {row['unit']} | {spread}"
                f" | {row['target']} | {row['status']} |"
            )
    return "\n".join(lines)


def loadavg() -> list[float]:
    """The 1, 5 and 15 minute load averages."""
    return [round(x, 2) for x in os.getloadavg()]


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, run the benchmarks, print and save the results."""
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[1])
    p.add_argument("--full", action="store_true", help="also the big benchmarks (100M entries, ~12 GB of disk)")
    p.add_argument("--runs", type=int, default=5, help="timed runs per benchmark after a warm-up run (default 5)")
    p.add_argument("--dir", type=Path, default=None, help="where queues go (default: a temporary directory in /tmp)")
    p.add_argument("--only", metavar="NAME", help="comma-separated benchmark names (big: all big.* ones)")
    p.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = p.parse_args(argv)
    if args.list:
        for b in api.BENCHMARKS + big.BENCHMARKS:
            print(f"{b.name:20} {b.title}")
        return 0
    if args.runs < 1:
        p.error("--runs must be at least 1")
    selected = select(args.only, args.full)
    name = args.only.replace(",", "+") if args.only else ("full" if args.full else "quick")

    parent = (args.dir or Path("/tmp")).resolve()
    parent.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="tape-bench-", dir=parent))
    report: dict[str, Any] = {
        "command": shlex.join([sys.executable, "-m", "bench", *(argv if argv is not None else sys.argv[1:])]),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "commit": git_commit(),
        "machine": machine(parent),
        "tape": tape_build(),
        "runs": args.runs,
        "load_before": loadavg(),
    }
    print(f"tape benchmarks in {root}: {len(selected)} benchmark(s), warm-up + {args.runs} runs each", file=sys.stderr)
    print(f"load average {report['load_before']}", file=sys.stderr)
    results = []
    loads: dict[str, list[float]] = {}  # the load average after each benchmark
    t_start = time.monotonic()
    try:
        ctx = Context(root)
        for b in selected:
            t0 = time.monotonic()
            print(f"- {b.name}: {b.title} ...", file=sys.stderr, flush=True)
            results.append(api.measure(b, ctx, args.runs))
            loads[b.name] = loadavg()
            print(f"  {time.monotonic() - t0:.1f} s, load {loads[b.name]}", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    report["load_after"] = loadavg()
    report["seconds"] = round(time.monotonic() - t_start, 1)
    report["results"] = [
        {
            "name": r.bench.name,
            "title": r.bench.title,
            "note": r.bench.note,
            "skipped": r.skipped,
            "failed": r.failed,
            "load_after": loads[r.bench.name],
            "figures": [] if r.skipped else r.rows(),
        }
        for r in results
    ]

    print()
    print(f"{report['machine']['cpu']}, {report['machine']['cores']} cores, Linux {report['machine']['kernel']},"
          f" {report['machine']['filesystem']}; load {report['load_before']} -> {report['load_after']}")
    print(f"tape extension {report['tape']['extension']}"
          f" ({'test hooks compiled in' if report['tape']['testing_build'] else 'release build'})")
    print(table(results, args.runs))
    for r in results:
        if r.bench.note and not r.skipped:
            print(f"{r.bench.name}: {r.bench.note}")
    out = _HERE / f"results-{name}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten to {out}")
    return 1 if any(r.failed for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
