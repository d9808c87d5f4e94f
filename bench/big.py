"""The big benchmarks (`python -m bench --full`): a 100,000,000-entry queue (~12 GB),
and large payloads (64 KiB entries, 256 MiB).

Each phase runs in a new process (`python -m bench.big <phase> ...`, which
prints its figures as JSON), so that opening finds nothing cached in the
process and each peak resident memory (VmHWM) is that phase's alone:
build the queue with write_many; open it, make a tailer, read one entry, then
move to random indexes; read all of it by iteration. The large phase writes
64 KiB entries with write(), then reads them with read(), by iteration, with
read_view() and with bytes(read_view()), counting CPU time and page faults
(this process's threads, the prefaulter included) per entry.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from array import array
from collections.abc import Callable
from pathlib import Path

import tape
from bench.api import (
    BATCH,
    Benchmark,
    Context,
    Metric,
    Skip,
    payloads,
    percentiles_us,
    random_indexes,
    rate,
    seek_times,
    timing_overhead_ns,
)

N_BIG = 100_000_000
N_BIG_SEEK = 100_000
# On disk an entry takes 16 bytes of header and its payload padded to 8 bytes;
# allow 5% more for the index and the space reserved ahead of the writer.
BIG_BYTES = int(N_BIG * (16 + 104) * 1.05)
_ROOT = Path(__file__).resolve().parent.parent
_MB = 1 << 20


def status_kb(name: str) -> int:
    """A field of /proc/self/status in kB, e.g. VmRSS or VmHWM."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(name + ":"):
                return int(line.split()[1])
    raise KeyError(name)


class RssSampler:
    """Samples this process's VmRSS (bytes) in a thread, every `interval` seconds."""

    def __init__(self, interval: float = 1.0) -> None:
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, args=(interval,), daemon=True)

    def _loop(self, interval: float) -> None:
        while True:
            self.samples.append(status_kb("VmRSS") * 1024)
            if self._stop.wait(interval):
                return

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append(status_kb("VmRSS") * 1024)

    def figures(self) -> dict[str, float]:
        """Largest sampled VmRSS, and VmHWM (the peak), in MB."""
        return {"rss_max": max(self.samples) / _MB, "hwm": status_kb("VmHWM") / 1024}


# -- the phases, each in its own process ---------------------------------------------


def median_us(call: Callable[[], object], n: int, overhead_ns: float) -> float:
    """Median time of `n` calls of `call`, in us, less `overhead_ns`."""
    pc = time.perf_counter_ns
    samples = array("q", bytes(8 * n))
    for k in range(n):
        t0 = pc()
        call()
        samples[k] = pc() - t0
    return percentiles_us(samples, overhead_ns, "")["p50"]


def phase_build(path: str, n: int) -> dict[str, float]:
    """Append `n` entries with write_many, sampling resident memory."""
    batch = payloads(BATCH)
    with RssSampler() as rss, tape.Queue(path, codec="raw") as q:
        write_many = q.appender().write_many
        t0 = time.perf_counter()
        for k in range(1, n // BATCH + 1):
            write_many(batch)
            if k % 10_000 == 0:
                print(f"  built {k * BATCH:,} entries in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        dt = time.perf_counter() - t0
        if q.count() != n:
            raise AssertionError(f"{q.count()} entries, not {n}")
    size = sum(f.stat().st_size for f in Path(path).iterdir())
    return {"rate": rate(n, dt), "seconds": dt, "gb": size / 1e9, **rss.figures()}


def phase_open(path: str, seeks: int) -> dict[str, float]:
    """Time opening, a new tailer and its first read; then `seeks` moves to random indexes."""
    pc = time.perf_counter_ns
    t0 = pc()
    q = tape.Queue(path)
    t1 = pc()
    t = q.tailer()
    t2 = pc()
    first = t.read()
    t3 = pc()
    if first is None:
        raise AssertionError("the queue is empty")
    targets = random_indexes(q, seeks)
    overhead = timing_overhead_ns(seeks)
    rss_before = status_kb("VmRSS") / 1024
    samples, faults = seek_times(t, targets)
    us = percentiles_us(samples, overhead, "")
    to_index, read_entry = t.to_index, t.read_entry
    it = iter(targets)
    moves_and_reads = median_us(lambda: (to_index(next(it)), read_entry()), len(targets), overhead)
    last_index = median_us(lambda: q.last_index, 10_000, overhead)
    count = median_us(q.count, 10_000, overhead)
    to_end = median_us(t.to_end, 10_000, overhead)
    q.close()
    return {
        "open_ms": (t1 - t0) / 1e6,
        "tailer_ms": (t2 - t1) / 1e6,
        "first_read_ms": (t3 - t2) / 1e6,
        "total_ms": (t3 - t0) / 1e6,
        "seek_p50": us["p50"],
        "seek_p99": us["p99"],
        "seek_faults": faults,
        "seek_read_p50": moves_and_reads,
        "last_index_us": last_index,
        "count_us": count,
        "to_end_us": to_end,
        "rss_before": rss_before,
        "hwm": status_kb("VmHWM") / 1024,
    }


def phase_read(path: str, n: int) -> dict[str, float]:
    """Read every entry by iteration, sampling resident memory."""
    with RssSampler() as rss, tape.Queue(path) as q:
        count = 0
        t0 = time.perf_counter()
        for _ in q.tailer():
            count += 1
        dt = time.perf_counter() - t0
    if count != n:
        raise AssertionError(f"read {count} entries, not {n}")
    return {"rate": rate(n, dt), "seconds": dt, **rss.figures()}


LARGE = 64 << 10
N_LARGE = 4096


def _per_entry(name: str, n: int, step: Callable[[], int]) -> dict[str, float]:
    """Run step() (returns how many entries it did, which must be n): k entries/s, CPU us and page faults per entry."""
    before = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    did = step()
    dt = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_SELF)
    if did != n:
        raise AssertionError(f"{name}: {did} entries, not {n}")
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return {
        f"{name}_rate": n / dt / 1e3,
        f"{name}_cpu_us": cpu / n * 1e6,
        f"{name}_faults": (after.ru_minflt - before.ru_minflt) / n,
    }


def phase_large(path: str, n: int) -> dict[str, float]:
    """Write n entries of 64 KiB with write(), then read them four ways, each with a new tailer."""
    value = os.urandom(LARGE)
    figures: dict[str, float] = {}
    with tape.Queue(path, codec="raw") as q:
        write = q.appender().write

        def writes() -> int:
            for _ in range(n):
                write(value)
            return n

        figures.update(_per_entry("write", n, writes))

        def reads(kind: str) -> Callable[[], int]:
            def step() -> int:
                t = q.tailer()
                if kind == "iter":
                    return sum(1 for _ in t)
                read, count = (t.read if kind == "read" else t.read_view), 0
                while (got := read()) is not None:
                    if kind == "copy":
                        bytes(got)
                    count += 1
                return count

            return step

        # (a build before read_view, measured for comparison, reads two ways)
        for kind in ("read", "iter", "view", "copy")[: 4 if hasattr(tape.Tailer, "read_view") else 2]:
            figures.update(_per_entry(kind, n, reads(kind)))
    return figures


_PHASES = {"build": phase_build, "open": phase_open, "read": phase_read, "large": phase_large}


def _child(phase: str, path: Path, n: int) -> dict[str, float]:
    """Run a phase in a new Python process and return its figures."""
    out = subprocess.run(
        [sys.executable, "-m", "bench.big", phase, str(path), str(n)],
        cwd=_ROOT,
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    )
    figures: dict[str, float] = json.loads(out.stdout)
    return figures


# -- the benchmarks, run from the parent process -------------------------------------


def _build(ctx: Context) -> dict[str, float]:
    free = shutil.disk_usage(ctx.root).free
    if free < 3 * BIG_BYTES:
        raise Skip(
            f"needs {3 * BIG_BYTES / 1e9:.0f} GB free in {ctx.root} (3x the ~{BIG_BYTES / 1e9:.0f} GB queue);"
            f" {free / 1e9:.1f} GB free"
        )
    path = ctx.scratch() / "q"
    figures = _child("build", path, N_BIG)
    ctx.shared["big"] = path
    return figures


def _big_queue(ctx: Context) -> Path:
    """The 100M-entry queue, built now if big.build did not run."""
    if "big" not in ctx.shared:
        _build(ctx)
    return ctx.shared["big"]


def _open(ctx: Context) -> dict[str, float]:
    return _child("open", _big_queue(ctx), N_BIG_SEEK)


def _read(ctx: Context) -> dict[str, float]:
    return _child("read", _big_queue(ctx), N_BIG)


def _large(ctx: Context) -> dict[str, float]:
    where = ctx.scratch()
    try:
        return _child("large", where / "q", N_LARGE)
    finally:
        shutil.rmtree(where, ignore_errors=True)


_LARGE_WAYS = (
    ("write", "write()"),
    ("read", "read()"),
    ("iter", "iteration"),
    ("view", "read_view()"),
    ("copy", "bytes(read_view())"),
)


_MEMORY = (
    Metric("rss_max", "VmRSS, largest sample (~1 s apart)", "MB", 100, "<"),
    Metric("hwm", "VmHWM (peak resident)", "MB", 100, "<"),
)


BENCHMARKS: tuple[Benchmark, ...] = (
    Benchmark(
        "big.build",
        f"build a {N_BIG:,}-entry queue with write_many (batches of {BATCH:,}), new process",
        (
            Metric("rate", "throughput", "M/s"),
            Metric("seconds", "time", "s"),
            Metric("gb", "queue files on disk", "GB"),
            *_MEMORY,
        ),
        _build,
        warmup=False,
        single=True,
    ),
    Benchmark(
        "big.open",
        f"new process: open the {N_BIG:,}-entry queue, tailer, first read; to_index to {N_BIG_SEEK:,} random indexes",
        (
            Metric("open_ms", "tape.Queue(path)", "ms", 10, "<="),
            Metric("tailer_ms", "q.tailer()", "ms"),
            Metric("first_read_ms", "first t.read()", "ms"),
            Metric("total_ms", "open + tailer + first read", "ms", 10, "<="),
            Metric("seek_p50", "to_index median per call", "us", 5, "<="),
            Metric("seek_p99", "to_index p99 per call", "us"),
            Metric("seek_faults", "minor page faults per move", ""),
            Metric("seek_read_p50", "to_index + read_entry median", "us"),
            Metric("last_index_us", "q.last_index median", "us"),
            Metric("count_us", "q.count() median", "us"),
            Metric("to_end_us", "t.to_end() median", "us"),
            Metric("rss_before", "VmRSS before the moves", "MB"),
            Metric("hwm", "VmHWM (peak resident)", "MB", 100, "<"),
        ),
        _open,
        note="to_index calls timed with perf_counter_ns(), less an empty timing pair; each move is checked by reading",
    ),
    Benchmark(
        "big.read",
        f"new process: read all {N_BIG:,} entries by iteration",
        (Metric("rate", "throughput", "M/s"), Metric("seconds", "time", "s"), *_MEMORY),
        _read,
        note="no warm-up run: the build has just written every page",
        warmup=False,
    ),
    Benchmark(
        "big.large",
        f"new process: write {N_LARGE:,} entries of 64 KiB, read them four ways",
        tuple(
            m
            for key, label in _LARGE_WAYS
            for m in (
                Metric(f"{key}_rate", label, "k/s"),
                Metric(f"{key}_cpu_us", f"{label} CPU per entry (all threads)", "us"),
                Metric(f"{key}_faults", f"{label} page faults per entry", ""),
            )
        ),
        _large,
        note="raw codec; each read with a new tailer from the start; bytes(read_view()) is one copy",
    ),
)


def main(argv: list[str]) -> None:
    """`python -m bench.big PHASE PATH N`: run one phase, print its figures as JSON."""
    phase, path, n = argv
    print(json.dumps(_PHASES[phase](path, int(n))))


if __name__ == "__main__":
    main(sys.argv[1:])
