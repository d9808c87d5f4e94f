"""The quick benchmarks of the Python API, and the machinery shared with big.py.

Every benchmark uses 100-byte payloads, one process, and (unless its name says
msgpack) the raw codec. A benchmark is a function that does one run and returns
its figures; `measure` runs it once untimed to warm up (the first touch of
fresh memory is slow on this VM), then `runs` times, and keeps every figure.
"""

from __future__ import annotations

import bisect
import itertools
import math
import operator
import random
import resource
import shutil
import statistics
import tempfile
import time
import traceback
from array import array
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack

import tape

PAYLOAD_SIZE = 100
BATCH = 1_000
N_WRITE = 2_000_000
N_WRITE_MANY = 5_000_000
N_LATENCY = 1_000_000
N_READ = 5_000_000
N_SEEK = 100_000


class Skip(Exception):
    """A benchmark cannot run here; the message says why."""


@dataclass(frozen=True)
class Metric:
    """One figure of a benchmark, with its target when it has one."""

    key: str
    label: str
    unit: str
    target: float | None = None
    op: str = ">="  # how a value compares to the target to meet it: ">=", "<=" or "<"

    def status(self, value: float) -> str:
        """The status of `value`: "met", "missed", or "" without a target."""
        if self.target is None:
            return ""
        ok = _COMPARE[self.op](value, self.target)
        return "met" if ok else "missed"

    def target_text(self) -> str:
        """The target as people write it, e.g. ">= 2 M/s"."""
        if self.target is None:
            return ""
        return f"{self.op} {self.target:g} {self.unit}"


_COMPARE: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "<": operator.lt,
}


@dataclass
class Context:
    """Where queues go, and the queues that several benchmarks share."""

    root: Path
    shared: dict[str, Path] = field(default_factory=dict)

    def scratch(self) -> Path:
        """A new empty directory under root; the caller removes it."""
        return Path(tempfile.mkdtemp(prefix="q-", dir=self.root))

    def shared_queue(self, key: str, build: Callable[[Path], None]) -> Path:
        """The queue `key`, built by `build(path)` the first time it is asked for."""
        if key not in self.shared:
            path = self.scratch() / "q"
            build(path)
            self.shared[key] = path
        return self.shared[key]


Run = Callable[[Context], dict[str, float]]


@dataclass(frozen=True)
class Benchmark:
    """A named benchmark: what one run measures and how to run it."""

    name: str
    title: str
    metrics: tuple[Metric, ...]
    run: Run
    note: str = ""
    warmup: bool = True
    single: bool = False  # one run whatever --runs says


@dataclass
class Result:
    """Every run's figures of one benchmark, or why it was skipped (then no figures)."""

    bench: Benchmark
    values: dict[str, list[float]] = field(default_factory=dict)
    skipped: str = ""
    failed: bool = False

    def rows(self) -> list[dict[str, Any]]:
        """One summary per metric: median, min, max over the runs, target, status."""
        rows = []
        for m in self.bench.metrics:
            vals = self.values[m.key]
            med = statistics.median(vals)
            rows.append(
                {
                    "metric": m.label,
                    "unit": m.unit,
                    "median": med,
                    "min": min(vals),
                    "max": max(vals),
                    "values": vals,
                    "target": m.target_text(),
                    "status": m.status(med),
                }
            )
        return rows


def measure(bench: Benchmark, ctx: Context, runs: int) -> Result:
    """Run `bench`: a warm-up run when it wants one, then `runs` runs (or one)."""
    result = Result(bench)
    try:
        if bench.warmup:
            bench.run(ctx)
        for _ in range(1 if bench.single else runs):
            for key, value in bench.run(ctx).items():
                result.values.setdefault(key, []).append(value)
    except Skip as exc:
        result.skipped = str(exc)
    except Exception as exc:  # a failing benchmark must not lose the others' figures
        traceback.print_exc()
        result.skipped = f"FAILED: {type(exc).__name__}: {exc}"
        result.failed = True
    return result


# -- helpers -------------------------------------------------------------------


def payloads(k: int) -> list[bytes]:
    """`k` distinct, fixed pseudo-random payloads of PAYLOAD_SIZE bytes."""
    rng = random.Random(k)
    return [rng.randbytes(PAYLOAD_SIZE) for _ in range(k)]


def msgpack_values(k: int) -> list[dict[str, Any]]:
    """`k` distinct small records, each exactly PAYLOAD_SIZE bytes in msgpack."""
    base = {"seq": 1_000_000, "kind": "order", "sym": "ACME", "price": 101.25, "qty": 7}
    notes = ("x" * n for n in range(PAYLOAD_SIZE))
    note = next(s for s in notes if len(msgpack.packb({**base, "note": s})) == PAYLOAD_SIZE)
    values = [{**base, "seq": 1_000_000 + i, "note": note} for i in range(k)]
    assert all(len(msgpack.packb(v)) == PAYLOAD_SIZE for v in values)
    return values


@contextmanager
def scratch_queue(ctx: Context, codec: str = "raw") -> Iterator[tape.Queue]:
    """A fresh queue in a new directory, removed afterwards."""
    where = ctx.scratch()
    try:
        with tape.Queue(where / "q", codec=codec) as q:
            yield q
    finally:
        shutil.rmtree(where, ignore_errors=True)


def fill(q: tape.Queue, n: int, values: list[Any]) -> None:
    """Append `n` entries to `q` with write_many, in batches of `values`."""
    a = q.appender()
    full, rest = divmod(n, len(values))
    for _ in range(full):
        a.write_many(values)
    if rest:
        a.write_many(values[:rest])
    a.close()


def random_indexes(q: tape.Queue, k: int, seed: int = 42) -> list[int]:
    """`k` indexes of existing entries of `q`, uniformly at random."""
    spans = [(c.first_index, c.entries) for c in q.cycles() if c.entries and c.first_index is not None]
    ends = list(itertools.accumulate(n for _, n in spans))
    rng = random.Random(seed)
    out = []
    for _ in range(k):
        r = rng.randrange(ends[-1])
        i = bisect.bisect_right(ends, r)
        first, _ = spans[i]
        out.append(first + r - (ends[i - 1] if i else 0))
    return out


def timing_overhead_ns(n: int) -> float:
    """Median cost of an empty `perf_counter_ns()` pair, in the loop shape of the timed loops."""
    pc = time.perf_counter_ns
    samples = array("q", bytes(8 * n))
    for i in range(n):
        t0 = pc()
        samples[i] = pc() - t0
    return statistics.median(samples)


def percentiles_us(samples: array[int], overhead_ns: float, prefix: str) -> dict[str, float]:
    """Median, p99, p99.9, p99.99 and max of `samples` (ns) less `overhead_ns`, in us."""
    s = sorted(samples)
    n = len(s)

    def at(p: float) -> float:
        return max(0.0, s[max(0, math.ceil(p * n) - 1)] - overhead_ns) / 1000

    return {
        f"{prefix}p50": at(0.5),
        f"{prefix}p99": at(0.99),
        f"{prefix}p99.9": at(0.999),
        f"{prefix}p99.99": at(0.9999),
        f"{prefix}max": at(1.0),
    }


def seek_times(t: tape.Tailer, targets: list[int]) -> tuple[array[int], float]:
    """Time `t.to_index(i)` for each target (ns); check each lands on its entry (untimed).

    Also returns the minor page faults per move (the checking reads included).
    """
    pc = time.perf_counter_ns
    to_index, read_entry = t.to_index, t.read_entry
    samples = array("q", bytes(8 * len(targets)))
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for k, i in enumerate(targets):
        t0 = pc()
        ok = to_index(i)
        samples[k] = pc() - t0
        e = read_entry()
        if not ok or e is None or e.index != i:
            raise AssertionError(f"to_index({i}) returned {ok}, then read {e and e.index}")
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    return samples, faults / len(targets)


def rate(n: int, seconds: float) -> float:
    """Millions per second."""
    return n / seconds / 1e6


# -- writing -------------------------------------------------------------------


def _write(codec: str) -> Run:
    def run(ctx: Context) -> dict[str, float]:
        value: Any = payloads(1)[0] if codec == "raw" else msgpack_values(1)[0]
        with scratch_queue(ctx, codec) as q:
            write = q.appender().write
            t0 = time.perf_counter()
            for _ in range(N_WRITE):
                write(value)
            dt = time.perf_counter() - t0
            assert q.count() == N_WRITE
        return {"rate": rate(N_WRITE, dt)}

    return run


def _write_many(codec: str) -> Run:
    def run(ctx: Context) -> dict[str, float]:
        batch: list[Any] = payloads(BATCH) if codec == "raw" else msgpack_values(BATCH)
        with scratch_queue(ctx, codec) as q:
            write_many = q.appender().write_many
            t0 = time.perf_counter()
            for _ in range(N_WRITE_MANY // BATCH):
                write_many(batch)
            dt = time.perf_counter() - t0
            assert q.count() == N_WRITE_MANY
        return {"rate": rate(N_WRITE_MANY, dt)}

    return run


def _write_latency(ctx: Context) -> dict[str, float]:
    value = payloads(1)[0]
    overhead = timing_overhead_ns(N_LATENCY)
    pc = time.perf_counter_ns
    samples = array("q", bytes(8 * N_LATENCY))
    with scratch_queue(ctx) as q:
        write = q.appender().write
        for i in range(N_LATENCY):
            t0 = pc()
            write(value)
            samples[i] = pc() - t0
    return {**percentiles_us(samples, overhead, ""), "overhead": overhead}


# -- reading -------------------------------------------------------------------


def _read_queue(ctx: Context, codec: str) -> Path:
    """The shared queue of N_READ entries for the reading benchmarks."""

    def build(path: Path) -> None:
        with tape.Queue(path, codec=codec) as q:
            fill(q, N_READ, payloads(BATCH) if codec == "raw" else msgpack_values(BATCH))

    return ctx.shared_queue(f"read-{codec}", build)


def _iterate(codec: str) -> Run:
    def run(ctx: Context) -> dict[str, float]:
        with tape.Queue(_read_queue(ctx, codec)) as q:
            t = q.tailer()
            n = 0
            t0 = time.perf_counter()
            for _ in t:
                n += 1
            dt = time.perf_counter() - t0
        assert n == N_READ, n
        return {"rate": rate(n, dt)}

    return run


def _read(codec: str) -> Run:
    def run(ctx: Context) -> dict[str, float]:
        with tape.Queue(_read_queue(ctx, codec)) as q:
            read = q.tailer().read
            n = 0
            t0 = time.perf_counter()
            while read() is not None:
                n += 1
            dt = time.perf_counter() - t0
        assert n == N_READ, n
        return {"rate": rate(n, dt)}

    return run


def _entries(ctx: Context) -> dict[str, float]:
    with tape.Queue(_read_queue(ctx, "raw")) as q:
        t = q.tailer()
        n = 0
        t0 = time.perf_counter()
        for _ in t.entries():
            n += 1
        dt = time.perf_counter() - t0
    assert n == N_READ, n
    return {"rate": rate(n, dt)}


def _to_index(ctx: Context) -> dict[str, float]:
    with tape.Queue(_read_queue(ctx, "raw")) as q:
        targets = random_indexes(q, N_SEEK)
        overhead = timing_overhead_ns(N_SEEK)
        samples, faults = seek_times(q.tailer(), targets)
    us = percentiles_us(samples, overhead, "")
    return {"p50": us["p50"], "p99": us["p99"], "faults": faults, "overhead": overhead}


def _rate_metric(target: float | None = None) -> tuple[Metric, ...]:
    return (Metric("rate", "throughput", "M/s", target),)


_LATENCY = (
    Metric("p50", "median", "us", 0.5, op="<="),
    Metric("p99", "p99", "us"),
    Metric("p99.9", "p99.9", "us", 10, op="<="),
    Metric("p99.99", "p99.99", "us"),
    Metric("max", "max", "us"),
    Metric("overhead", "empty timing pair (subtracted)", "ns"),
)

BENCHMARKS: tuple[Benchmark, ...] = (
    Benchmark("write", f"write(), {N_WRITE:,} calls", _rate_metric(2), _write("raw")),
    Benchmark(
        "write_many", f"write_many, batches of {BATCH:,}, {N_WRITE_MANY:,} entries", _rate_metric(5), _write_many("raw")
    ),
    Benchmark(
        "write_latency",
        f"write() latency, {N_LATENCY:,} calls each timed",
        _LATENCY,
        _write_latency,
        note="each call timed with perf_counter_ns(); the median cost of an empty timing pair is subtracted",
    ),
    Benchmark("iterate", f"read by iteration (for v in tailer), {N_READ:,} entries", _rate_metric(5), _iterate("raw")),
    Benchmark("read", f"read() in a loop, {N_READ:,} entries", _rate_metric(2), _read("raw")),
    Benchmark("entries", f"tailer.entries(), {N_READ:,} entries", _rate_metric(), _entries),
    Benchmark(
        "to_index",
        f"to_index to {N_SEEK:,} random indexes of the {N_READ:,}-entry queue",
        (
            Metric("p50", "median per call", "us"),
            Metric("p99", "p99 per call", "us"),
            Metric("faults", "minor page faults per move", ""),
            Metric("overhead", "empty timing pair (subtracted)", "ns"),
        ),
        _to_index,
        note="each call timed with perf_counter_ns(), less an empty timing pair; each move is checked by reading",
    ),
    Benchmark("write_msgpack", f"msgpack: write(), {N_WRITE:,} calls", _rate_metric(), _write("msgpack")),
    Benchmark(
        "write_many_msgpack",
        f"msgpack: write_many, batches of {BATCH:,}, {N_WRITE_MANY:,} entries",
        _rate_metric(),
        _write_many("msgpack"),
    ),
    Benchmark("iterate_msgpack", f"msgpack: read by iteration, {N_READ:,} entries", _rate_metric(), _iterate("msgpack")),
    Benchmark("read_msgpack", f"msgpack: read() in a loop, {N_READ:,} entries", _rate_metric(), _read("msgpack")),
)
