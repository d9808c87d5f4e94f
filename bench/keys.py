"""Keyed-entry benchmarks (issue 19): keyed writes/s, latest()/s, and compaction's disk use.

    python -m bench.keys [--runs N] [--dir PATH] [--keys N] [--n N]

- write: `a.write(value, key=k)` of a 100-byte value (raw codec, and msgpack
  of a 100-byte bytes value) over --keys keys, round robin.
- latest: `q.latest(k)` over the same keys, round robin (each an entry that
  exists).
- compaction: 1,000 keys rewritten 1,000 times (100-byte values), one round
  per cycle of test_secondly under a ManualClock, retention={"keep_cycles": 2}:
  the queue's entry bytes (CycleInfo.bytes) at the end, and their largest
  over the run, against the bytes one copy of the live keys takes, and the
  disk blocks of all its files at the end; again rewriting a tenth of the
  keys per cycle (the rest carried forward).

Rates are per second of wall-clock time; prints the median of the runs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import tape
from tape.testing import ManualClock

VALUE = b"v" * 100


def rates(where: Path, codec: str, keys: int, n: int) -> tuple[float, float]:
    """(keyed writes/s, latest()/s)."""
    names = [f"key-{k}" for k in range(keys)]
    with tape.Queue(where / codec, codec=codec) as q:
        a = q.appender()
        write, latest = a.write, q.latest
        t0 = time.perf_counter()
        for i in range(n):
            write(VALUE, key=names[i % keys])
        t1 = time.perf_counter()
        for i in range(n):
            latest(names[i % keys])
        t2 = time.perf_counter()
    return n / (t1 - t0), n / (t2 - t1)


def compaction(where: Path, keys: int = 1000, rounds: int = 1000, share: int = 1) -> tuple[int, int, int, int]:
    """(entry bytes at the end, most at a round's end, bytes of the live keys' newest entries, disk use at the end).

    Each round rewrites 1/share of the keys, in turn: the others are carried
    forward when their cycle goes.
    """
    clock = ManualClock()
    names = [f"key-{k}" for k in range(keys)]
    most = 0
    with tape.Queue(where / "compact", roll_cycle="test_secondly", codec="raw", clock=clock,
                    retention={"keep_cycles": 2}) as q:
        a = q.appender()
        for r in range(rounds):
            for name in names[r % share::share]:
                a.write(VALUE, key=name)
            clock.advance(1)
            a.write(b"")  # the next cycle: retention runs
            most = max(most, sum(c.bytes for c in q.cycles()))
        end = sum(c.bytes for c in q.cycles())
        assert len(q.keys()) == keys
        disk = sum(os.stat(p).st_blocks * 512 for p in (where / "compact").iterdir())
    live = keys * (16 + len(VALUE) + len(names[0]) + 16)  # header, value, key and its attributes (about)
    return end, most, live, disk


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--dir", default=None)
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=1000)
    args = ap.parse_args()
    for codec in ("raw", "msgpack"):
        got = []
        for _ in range(args.runs):
            where = Path(tempfile.mkdtemp(dir=args.dir))
            try:
                got.append(rates(where, codec, args.keys, args.n))
            finally:
                shutil.rmtree(where)
        w = statistics.median(r[0] for r in got)
        lat = statistics.median(r[1] for r in got)
        print(f"{codec:8} keyed write {w:>12,.0f}/s   latest {lat:>12,.0f}/s   ({args.keys:,} keys, 100 B)")
    for share in (1, 10):
        where = Path(tempfile.mkdtemp(dir=args.dir))
        try:
            t0 = time.perf_counter()
            end, most, live, disk = compaction(where, rounds=args.rounds, share=share)
            seconds = time.perf_counter() - t0
        finally:
            shutil.rmtree(where)
        written = 1000 // share * args.rounds * (16 + len(VALUE) + 6 + 16)
        print(f"compaction: 1,000 keys, 1/{share} of them rewritten per cycle, {args.rounds:,} cycles, keep_cycles=2 "
              f"(about {written / 2**20:,.0f} MiB written, {seconds:.1f} s): {end / 2**20:.2f} MiB at the end, "
              f"at most {most / 2**20:.2f} MiB; live data about {live / 2**20:.2f} MiB; on disk (all files) "
              f"{disk / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
