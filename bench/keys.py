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

- peers (--peers): the same keyed put and get of a 100-byte value, and a
  read-modify-write of an int counter per key, in tape (a keyed queue, and
  tape.Objects) and in what a Python user would use instead (sqlitedict,
  diskcache Index, py-lmdb, shelve: bench/peers/keyed.py names the
  durability settings of each), over --peer-keys keys round robin, each phase
  --peer-n operations or --peer-seconds, whichever comes first; then kill -9:
  a child process puts key after key, telling each one the library
  acknowledged, is killed 0.3 s in, and the store, reopened, is asked for
  every key acknowledged: how many are lost.

- instructions (--instructions): callgrind's count per operation (the
  difference between 40,000 and 20,000 operations over 20,000, as
  bench/instructions.py counts): keyed write (raw, msgpack), latest() (raw,
  msgpack; 1,000 keys round robin), write_if with a key, and an object call
  that changes state (tape.Objects, `increment` on one object). Needs valgrind;
  set PYTHONPATH to compare two builds.

Rates are per second of wall-clock time; prints the median of the runs.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import tape
from bench.peers.keyed import STORES, KeyedStore
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


def _timed(op: Callable[[str], object], names: list[str], n: int, seconds: float) -> float:
    """op(name) over `names` round robin, n times or for `seconds`, whichever ends first: per second."""
    done, clock = 0, time.perf_counter
    t0 = clock()
    deadline = t0 + seconds
    while done < n:
        for name in names[done % len(names):][:256]:
            op(name)
        done += min(256, len(names) - done % len(names))
        if clock() >= deadline:
            break
    return done / (clock() - t0)


def peer_rates(store: type[KeyedStore], where: Path, keys: int, n: int, seconds: float) -> tuple[float, float, float]:
    """(puts/s, gets/s, increments/s) of `store`."""
    names = [f"key-{k}" for k in range(keys)]
    s = store()
    s.open(where)
    try:
        put, get, increment = s.put, s.get, s.increment
        puts = _timed(lambda k: put(k, VALUE), names, n, seconds)
        for k in names:  # every key there for the gets, whatever the puts got to
            put(k, VALUE)
        gets = _timed(get, names, n, seconds)
        assert get(names[-1]) == VALUE
        counters = [f"count-{k}" for k in range(keys)]
        increments = _timed(increment, counters, n, seconds)
    finally:
        s.close()
    return puts, gets, increments


def kill_child(name: str, where: str) -> None:
    """The child of peer_kill: put key-0, key-1, ... telling each acknowledged one on stdout, until killed."""
    store = next(s for s in STORES if s.__name__ == name)()
    store.open(Path(where))
    put, i = store.put, 0
    while True:
        put(f"key-{i}", VALUE)
        os.write(1, b"%d\n" % i)
        i += 1


def peer_kill(store: type[KeyedStore], where: Path, after: float = 0.3) -> tuple[int, int]:
    """(keys acknowledged, of them lost) when the putting process is killed -9 `after` seconds in."""
    child = subprocess.Popen([sys.executable, "-m", "bench.keys", "--kill-child", store.__name__, str(where)],
                             stdout=subprocess.PIPE, cwd=Path(__file__).resolve().parent.parent)
    assert child.stdout is not None
    first = child.stdout.readline()  # started
    assert first, "the child died"
    time.sleep(after)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    acked = int((first + child.stdout.read()).split()[-1]) + 1
    s = store()
    s.open(where)
    try:
        lost = sum(s.get(f"key-{i}") != VALUE for i in range(acked))
    finally:
        s.close()
    return acked, lost


def peers(args: argparse.Namespace) -> None:
    """The peers' rows: rates, then kill -9."""
    print(f"{'store':18} {'put/s':>10} {'get/s':>10} {'incr/s':>10}   kill -9: lost of acknowledged   version; settings")
    for store in STORES:
        got = []
        for _ in range(args.runs):
            where = Path(tempfile.mkdtemp(dir=args.dir))
            try:
                got.append(peer_rates(store, where, args.peer_keys, args.peer_n, args.peer_seconds))
            finally:
                shutil.rmtree(where)
        where = Path(tempfile.mkdtemp(dir=args.dir))
        try:
            acked, lost = peer_kill(store, where)
        finally:
            shutil.rmtree(where)
        put, get, incr = (statistics.median(r[k] for r in got) for k in range(3))
        version = metadata.version(store.package) if store.package else "tape" if "tape" in store.name else "stdlib"
        print(f"{store.name:18} {put:>10,.0f} {get:>10,.0f} {incr:>10,.0f}   {lost:>6,} of {acked:>8,}"
              f"   {version}; {store.settings}")


INSTRUCTION_OPS = ("write_raw", "write_msgpack", "latest_raw", "latest_msgpack", "write_if", "object_call")


class _Counter(tape.DurableObject):
    count: int = 0

    def increment(self) -> int:
        self.count += 1
        return self.count


def instruction_op(op: str, n: int) -> None:
    """Do `op` n times (what callgrind runs)."""
    names = [f"key-{k}" for k in range(1000)]
    where = Path(tempfile.mkdtemp())
    try:
        if op == "object_call":
            with tape.Objects(where / "o", alarms=False) as objects:
                increment = objects.get(_Counter, "one").increment
                for _ in range(n):
                    increment()
            return
        with tape.Queue(where / "q", codec="msgpack" if op.endswith("msgpack") else "raw", large_pages=False) as q:
            a = q.appender()
            write, latest, write_if = a.write, q.latest, a.write_if
            value = VALUE
            if op.startswith("write_"):
                for i in range(n):
                    write(value, key=names[i % 1000])
            elif op == "write_if":
                last = None
                for _ in range(n):
                    last = write_if(value, last, key="k")
            else:
                for name in names:
                    write(value, key=name)
                for i in range(n):
                    latest(names[i % 1000])
    finally:
        shutil.rmtree(where)


def instructions(ops: list[str]) -> None:
    """Print callgrind's instructions per operation of each op."""
    def count(op: str, n: int) -> int:
        err = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
                              "-m", "bench.keys", "--instruction-op", op, str(n)], capture_output=True, text=True,
                             check=True, cwd=Path(__file__).resolve().parent.parent).stderr
        m = re.search(r"refs:\s*([\d,]+)", err)
        assert m is not None, err
        return int(m[1].replace(",", ""))

    for op in ops:
        print(f"{op:16} {(count(op, 40_000) - count(op, 20_000)) / 20_000:>10,.0f} instructions", flush=True)


def main() -> None:
    if sys.argv[1:2] == ["--kill-child"]:
        kill_child(sys.argv[2], sys.argv[3])
        return
    if sys.argv[1:2] == ["--instruction-op"]:
        instruction_op(sys.argv[2], int(sys.argv[3]))
        return
    if sys.argv[1:2] == ["--instructions"]:
        instructions(sys.argv[2:] or list(INSTRUCTION_OPS))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--dir", default=None)
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=1000)
    ap.add_argument("--peers", action="store_true", help="only the comparison with the peers")
    ap.add_argument("--peer-keys", type=int, default=1000)
    ap.add_argument("--peer-n", type=int, default=200_000)
    ap.add_argument("--peer-seconds", type=float, default=2.0)
    args = ap.parse_args()
    if args.peers:
        peers(args)
        return
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
