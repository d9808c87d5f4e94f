"""Throughput per codec, for a typical event.

    python -m bench.codecs [--entries N] [--runs R] [--dir PATH] [--clock wall|thread]

The value is a typical event: a dict of 10 fields, about 150 bytes in msgpack
(1,000 distinct ones, cycled); raw stores their msgpack bytes. For each codec
it measures the codec alone (encode, decode) and through a queue: write() one
call per entry, write_many() in batches of 1,000, and reading by iteration
(decode included). Each figure is the median of R runs on a fresh queue, in
millions of entries per second. Avro and pickle run a fifth of the entries.
`--clock thread` times by the CPU time of the benchmark's thread instead of
the wall clock: what one uncontended core would do, on a machine other work
shares (the core's background threads are left out).
Run it as a module: as a script, its name would hide the standard `codecs`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import msgpack

import tape
BATCH = 1_000

AVRO_SCHEMA = {
    "type": "record",
    "name": "Event",
    "fields": [
        {"name": "id", "type": "long"},
        {"name": "ts", "type": "long"},
        {"name": "user", "type": "string"},
        {"name": "action", "type": "string"},
        {"name": "sku", "type": "string"},
        {"name": "qty", "type": "int"},
        {"name": "price", "type": "double"},
        {"name": "currency", "type": "string"},
        {"name": "paid", "type": "boolean"},
        {"name": "note", "type": "string"},
    ],
}

# name, Queue options, entries as a fraction of --entries
CODECS: list[tuple[str, dict[str, Any], float]] = [
    ("raw", {}, 1.0),
    ("msgpack", {}, 1.0),
    ("json", {}, 1.0),
    ("avro", {"schema": AVRO_SCHEMA}, 0.2),
    ("pickle", {}, 0.2),
    ("lz4+msgpack", {}, 1.0),
    ("lz4+json", {}, 1.0),
]


def events(k: int) -> list[dict[str, Any]]:
    """`k` distinct events of 10 fields."""
    start = int(datetime(2024, 1, 1, tzinfo=timezone.utc).timestamp() * 1000)
    return [
        {
            "id": 1_000_000 + i,
            "ts": start + 37 * i,
            "user": f"user{i % 977:04}@example.com",
            "action": ("view", "cart", "buy")[i % 3],
            "sku": f"SKU-{i % 5000:05}-XL",
            "qty": 1 + i % 9,
            "price": 9.99 + i % 100,
            "currency": "EUR",
            "paid": i % 2 == 0,
            "note": "gift wrap, leave at the door",
        }
        for i in range(k)
    ]


CLOCKS = {"wall": time.perf_counter, "thread": time.thread_time}
clock = CLOCKS["wall"]


def timed(fn: Callable[[], object]) -> float:
    """Seconds `fn()` took, by `clock`."""
    t0 = clock()
    fn()
    return clock() - t0


def codec_of(where: Path, name: str, options: dict[str, Any]) -> tape.codecs.Codec:
    """The codec a queue of `name` with `options` reads and writes with."""
    with tape.Queue(where / "probe", codec=name, **options) as q:
        return q.codec


def one_run(where: Path, name: str, options: dict[str, Any], n: int, values: list[Any]) -> dict[str, float]:
    """Every figure of one run of codec `name` with `n` entries, in M entries/s."""
    codec = codec_of(where, name, options)
    reps = n // len(values)
    views = [memoryview(codec.encode(v)) for v in values]

    def encode_all() -> None:
        for _ in range(reps):
            list(map(codec.encode, values))

    def decode_all() -> None:
        for _ in range(reps):
            list(map(codec.decode, views))

    figures = {"encode": n / timed(encode_all), "decode": n / timed(decode_all)}
    with tape.Queue(where / "write", codec=name, **options) as q:
        write = q.appender().write

        def write_each() -> None:
            for _ in range(reps):
                for v in values:
                    write(v)

        figures["write"] = n / timed(write_each)
    with tape.Queue(where / "many", codec=name, **options) as q:
        write_many = q.appender().write_many
        figures["write_many"] = n / timed(lambda: [write_many(values) for _ in range(reps)])
        t = q.tailer()
        count = 0

        def iterate() -> None:
            nonlocal count
            for _ in t:
                count += 1

        figures["read"] = n / timed(iterate)
        assert count == n, count
    return {k: v / 1e6 for k, v in figures.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--entries", type=int, default=500_000, help="entries per run (default 500,000)")
    parser.add_argument("--runs", type=int, default=3, help="runs per codec; the median is shown (default 3)")
    parser.add_argument("--dir", type=Path, default=None, help="where the queues go (default: a temporary dir)")
    parser.add_argument("--clock", choices=CLOCKS, default="wall", help="wall (default) or thread CPU time")
    args = parser.parse_args()
    global clock
    clock = CLOCKS[args.clock]

    values = events(BATCH)
    packed = [msgpack.packb(v) for v in values]
    columns = ["encode", "decode", "write", "write_many", "read"]
    header = f"{'codec':<12} {'bytes':>6} " + " ".join(f"{c:>10}" for c in columns)
    print(f"{header}   (M entries/s, median, {args.clock} clock)")
    for name, options, share in CODECS:
        n = max(BATCH, int(args.entries * share) // BATCH * BATCH)
        mine = packed if name == "raw" else values
        runs = []
        for _ in range(args.runs):
            where = Path(tempfile.mkdtemp(prefix="tape-bench-codecs-", dir=args.dir))
            try:
                size = statistics.mean(map(len, map(codec_of(where, name, options).encode, mine)))
                runs.append(one_run(where, name, options, n, mine))
            finally:
                shutil.rmtree(where, ignore_errors=True)
        medians = [statistics.median(r[c] for r in runs) for c in columns]
        print(f"{name:<12} {size:>6.0f} " + " ".join(f"{m:>10.2f}" for m in medians))
    print(f"bytes: the mean payload; load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
