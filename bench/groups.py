"""Work queues: claim + ack per second through a consumer group, a killed worker's claims, and the peers.

    python -m bench.groups [--n N] [--before PATH] [--after PATH]

tape's figures come from a child process per build: PYTHONPATH=PATH for
--before/--after (a folder holding a built `tape` package, e.g. from
`pip install --target`), else the tape this Python imports outside the source
tree (.venv-bench's release build), so that two builds are measured side by side
in one run:

- claim() + ack() of N entries of 100 bytes (raw codec), 1 consumer;
- claim_many(1000) + ack_many() of each batch (a build without ack_many:
  ack() of each);
- claim() + ack() of N entries by 2 and by 4 worker processes sharing one
  group, counted from the start of all to the end of the last;
- redelivery after kill -9: a process holds 100 claims (ack_wait 600 s) and is
  killed; the time from its death (waitpid) to another consumer's claim of
  them, median of 10;
- claim latency: a producer process writes 20,000 entries at 10,000 a second
  (paced by busy-waiting), each stamped with time.monotonic_ns(); a consumer
  process claims them with `for m in consumer.follow()` (sleeping in between)
  and acks; median and p99 of claim time - stamp, the first 1% left out
  (of 3 runs, the one of the middle median). --latency measures only this.

Then the peers (bench/peers/work_queues.py), in this process: persist-queue's
SQLiteAckQueue and litequeue (get + ack of N / 200 entries: each call commits,
a few hundred to a few thousand a second, so fewer entries give the same
rate), huey with SqliteHuey (N / 200 tasks enqueued untimed, then run by huey's
consumer with one worker thread: its dequeue is the take and the ack), and
Redis Streams (N / 10 entries, one at a time and in batches of 1,000) when
redis-server and redis-py are installed.

Figures are entries per second, medians of 3 runs (the kill: median of 10).

    python -m bench.groups --kill

measures instead what becomes of a task whose worker is killed: for tape's
group and each peer (bench/peers/work_queues.py, default settings), a worker
process takes one task and sleeps as if working; it is killed with SIGKILL and
reaped, and another worker, opened before the kill, tries to take the task
every millisecond for 5 s. Redelivered (after how many ms from the reaping,
median of 5), or not: then where the task is (stuck, or lost).

    python -m bench.groups --latency [--before PATH] [--after PATH]

measures only the claim latency (below).

    python -m bench.groups --instructions [--before PATH] [--after PATH]

counts instead the instructions of one claim() + ack(), and of one entry of
claim_many(1000) + ack_many(), Python and C together, with callgrind (as
bench/instructions.py does: two runs, 10,000 and 30,000 entries, the
difference divided by 20,000): a measure that holds on a busy machine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import tape

if TYPE_CHECKING:
    from bench.peers.work_queues import Peer

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
        ack_many = getattr(c, "ack_many", None)
        while batch := c.claim_many(1000):
            if ack_many is not None:
                ack_many(batch)
            else:
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


_LAT_PRODUCER = """
import struct, sys, time, tape
n, rate = int(sys.argv[2]), float(sys.argv[3])
pack, now, filler = struct.Struct("<q").pack, time.monotonic_ns, bytes(92)
with tape.Queue(sys.argv[1], codec="raw") as q:
    write = q.appender().write
    sys.stdin.readline()
    start, period = now(), 1e9 / rate
    for k in range(n):
        due = start + int(k * period)
        while now() < due:
            pass
        write(pack(now()) + filler)
"""

_LAT_CONSUMER = """
import json, struct, sys, time, tape
n = int(sys.argv[2])
unpack, now, lat = struct.Struct("<q").unpack_from, time.monotonic_ns, []
with tape.Queue(sys.argv[1], codec="raw") as q:
    c = q.group("g").consumer()
    print("ready", flush=True)
    for m in c.follow(timeout=10):
        lat.append(now() - unpack(m.value)[0])
        m.ack()
        if len(lat) == n:
            break
lat = sorted(lat[n // 100:])
print(json.dumps({"got": len(lat) + n // 100, "median": lat[len(lat) // 2] / 1e3, "p99": lat[int(len(lat) * 0.99)] / 1e3}))
"""
# The same with a plain tailer's follow() in place of the group: the floor the machine sets.
_LAT_TAILER = (_LAT_CONSUMER.replace('c = q.group("g").consumer()', "t = q.tailer()")
               .replace("for m in c.follow(timeout=10):", "for v in t.follow(timeout=10):")
               .replace("unpack(m.value)", "unpack(v)").replace("        m.ack()\n", ""))


def claim_latency_us(path: str, n: int = 20_000, rate: int = 10_000, tailer: bool = False) -> tuple[float, float]:
    """(median, p99) in us of a sleeping consumer's claim (a tailer's read when `tailer`) of entries a producer
    process writes at `rate`/s."""
    with tape.Queue(path, codec="raw") as q:
        q.group("g", ack_wait=600)
    script = _LAT_TAILER if tailer else _LAT_CONSUMER
    consumer = subprocess.Popen([sys.executable, "-c", script, path, str(n)], stdout=subprocess.PIPE, text=True)
    assert consumer.stdout is not None and consumer.stdout.readline().strip() == "ready"
    producer = subprocess.Popen([sys.executable, "-c", _LAT_PRODUCER, path, str(n), str(rate)], stdin=subprocess.PIPE,
                                text=True)
    assert producer.stdin is not None
    producer.stdin.write("go\n")
    producer.stdin.close()
    assert producer.wait() == 0
    out = json.loads(consumer.stdout.read().splitlines()[-1])
    assert consumer.wait() == 0 and out["got"] == n, out
    return out["median"], out["p99"]


@contextlib.contextmanager
def opened_peer(cls: type[Peer]) -> Iterator[tuple[Peer | None, str]]:
    """(the peer opened in a temporary directory, or None when not installed; that directory), removed after."""
    from bench.peers.work_queues import open_peer

    d = tempfile.mkdtemp(prefix="tape-bench-groups-")
    try:
        peer = open_peer(cls, os.path.join(d, "q"))
        try:
            yield peer, d
        finally:
            if peer is not None:
                peer.close()
    finally:
        shutil.rmtree(d, ignore_errors=True)


def peer_rate(cls: type[Peer], n: int, batched: bool = False) -> float | None:
    """Entries per second of a peer's take + ack (None: not installed)."""
    with opened_peer(cls) as (peer, _):
        if peer is None:
            return None
        peer.fill([PAYLOAD] * n)
        t0 = time.perf_counter()
        got = peer.take_ack_batched(n) if batched else peer.take_ack(n)
        took = time.perf_counter() - t0
    assert got == n, got
    return n / took


def kill_fate(cls: type[Peer], cap: float = 5.0) -> tuple[float | None, str] | None:
    """(ms from a killed worker's reaping to another's take of its task, or None; where it is then), or None."""
    with opened_peer(cls) as (peer, d):
        if peer is None:
            return None
        peer.fill([PAYLOAD])
        p = subprocess.Popen([sys.executable, "-c", cls.HOLDER, peer.address], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, cwd=d)
        assert p.stdout is not None and p.stdout.readline().strip() == b"took"
        p.send_signal(signal.SIGKILL)
        p.wait()
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < cap:
            if peer.try_take():
                return (time.perf_counter() - t0) * 1000, ""
            time.sleep(0.001)
        return None, peer.after_wait()


def kill_table(trials: int = 5) -> None:
    """Print what becomes of a killed worker's task, for tape's group and each peer."""
    from bench.peers.work_queues import KILL_PEERS

    for cls in KILL_PEERS:
        fates = [kill_fate(cls) for _ in range(trials)]
        if fates[0] is None:
            print(f"{cls.name:42} not installed")
            continue
        ms = [f[0] for f in fates if f is not None and f[0] is not None]
        if len(ms) == trials:
            print(f"{cls.name:42} redelivered after {statistics.median(ms):,.2f} ms (median of {trials})")
        else:
            notes = sorted({f[1] for f in fates if f is not None and f[0] is None})
            print(f"{cls.name:42} not taken again in 5 s in {trials - len(ms)} of {trials}: {'; '.join(notes)}")
        print(f"{'':42} default: {cls.default}")


def median_of(fn, n: int, runs: int = 3) -> float:  # type: ignore[no-untyped-def]
    figures: list[float] = []
    for _ in range(runs):
        d = tempfile.mkdtemp(prefix="tape-bench-groups-")
        try:
            figures.append(fn(os.path.join(d, "q"), n))
        finally:
            shutil.rmtree(d, ignore_errors=True)
    return statistics.median(figures)


ROWS = (
    ("one", "tape claim()+ack(), 1 consumer", "/s"),
    ("many", "tape claim_many(1000)+ack_many()", "/s"),
    ("procs2", "tape claim()+ack(), 2 processes", "/s"),
    ("procs4", "tape claim()+ack(), 4 processes", "/s"),
    ("kill", "redelivery after kill -9 (median)", "ms"),
    ("lat50", "claim latency at 10,000/s, median", "us"),
    ("lat99", "claim latency at 10,000/s, p99", "us"),
    ("tlat50", "a tailer's follow() at 10,000/s, median", "us"),
    ("tlat99", "a tailer's follow() at 10,000/s, p99", "us"),
)


def latency_figures() -> dict[str, float]:
    """The latency rows, of the group's claims and of a tailer's follow() alternately: of 3 runs each, the one of
    the middle median."""
    runs: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    for _ in range(3):
        for tailer in (False, True):
            d = tempfile.mkdtemp(prefix="tape-bench-groups-")
            try:
                runs[tailer].append(claim_latency_us(os.path.join(d, "q"), tailer=tailer))
            finally:
                shutil.rmtree(d, ignore_errors=True)
    (median, p99), (tmedian, tp99) = sorted(runs[False])[1], sorted(runs[True])[1]
    return {"lat50": median, "lat99": p99, "tlat50": tmedian, "tlat99": tp99}


def tape_figures(n: int, only_latency: bool = False) -> dict[str, float]:
    """Every tape row (only the latency's), with the tape this process imports."""
    if only_latency:
        return latency_figures()
    d = tempfile.mkdtemp(prefix="tape-bench-groups-")
    try:
        kill = kill_redelivery_ms(os.path.join(d, "q"))
    finally:
        shutil.rmtree(d, ignore_errors=True)
    return {
        **latency_figures(),
        "one": median_of(tape_one, n),
        "many": median_of(tape_many, n),
        "procs2": median_of(lambda p, k: tape_procs(p, k, 2), n),
        "procs4": median_of(lambda p, k: tape_procs(p, k, 4), n),
        "kill": kill,
    }


def tape_in_child(n: int, path: str | None, only_latency: bool = False) -> dict[str, float]:
    """tape_figures in a child process importing tape from `path` (None: as installed)."""
    env = dict(os.environ)
    if path is not None:
        env["PYTHONPATH"] = os.path.abspath(path)
    else:
        env.pop("PYTHONPATH", None)
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--tape-only", "--n", str(n)]
                         + (["--latency"] if only_latency else []), env=env,
                         cwd=tempfile.gettempdir(), check=True, capture_output=True, text=True).stdout
    figures: dict[str, float] = json.loads(out.splitlines()[-1])
    return figures


def _loop(mode: str, n: int) -> None:
    """What callgrind runs: n claims and acks (mode "one" or "many") on a queue of 30,000 entries."""
    d = tempfile.mkdtemp(prefix="tape-bench-groups-")
    try:
        with tape.Queue(os.path.join(d, "q"), codec="raw", large_pages=False) as q:
            q.group("g", ack_wait=600)
            q.appender().write_many(PAYLOAD for _ in range(30_000))
            c = q.group("g").consumer()
            if mode == "one":
                for _ in range(n):
                    m = c.claim()
                    assert m is not None
                    m.ack()
                return
            ack_many = getattr(c, "ack_many", None)
            for _ in range(n // 1000):
                batch = c.claim_many(1000)
                if ack_many is not None:
                    ack_many(batch)
                else:
                    for m in batch:
                        m.ack()
    finally:
        shutil.rmtree(d, ignore_errors=True)


def instructions(mode: str, path: str | None) -> int:
    """Instructions per entry of _loop(mode) with the tape of `path` (None: as installed)."""
    env = dict(os.environ)
    if path is not None:
        env["PYTHONPATH"] = os.path.abspath(path)
    else:
        env.pop("PYTHONPATH", None)
    counts = []
    for n in (10_000, 30_000):
        out = tempfile.mktemp(prefix="tape-bench-callgrind-")
        try:
            r = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable,
                                os.path.abspath(__file__), "--loop", mode, "--n", str(n)], env=env,
                               cwd=tempfile.gettempdir(), check=True, capture_output=True, text=True)
        finally:
            if os.path.exists(out):
                os.unlink(out)
        counts.append(int(r.stderr.split("Collected : ")[1].split()[0]))
    return (counts[1] - counts[0]) // 20_000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--before", help="a folder holding the tape package to compare against")
    ap.add_argument("--after", help="a folder holding the tape package to measure (default: as installed)")
    ap.add_argument("--instructions", action="store_true", help="count instructions with callgrind instead")
    ap.add_argument("--latency", action="store_true", help="measure only the claim latency at 10,000/s")
    ap.add_argument("--kill", action="store_true", help="what becomes of a task whose worker is killed, each peer")
    ap.add_argument("--tape-only", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--loop", help=argparse.SUPPRESS)
    args = ap.parse_args()
    n = args.n
    if args.loop:
        _loop(args.loop, n)
        return
    if args.kill:
        kill_table()
        return
    if args.tape_only:
        print(json.dumps(tape_figures(n, args.latency)))
        return
    builds = ([("before", args.before)] if args.before else []) + [("after", args.after)]
    if args.instructions:
        print(f"{'instructions per entry':38}" + "".join(f"{label:>14}" for label, _ in builds))
        for mode, what in (("one", "claim()+ack()"), ("many", "claim_many(1000)+ack_many()")):
            print(f"{what:38}" + "".join(f"{instructions(mode, path):14,}" for _, path in builds))
        return
    columns = {label: tape_in_child(n, path, args.latency) for label, path in builds}
    print(f"{'':38}" + "".join(f"{label:>14}" for label in columns))
    for key, what, unit in ROWS:
        if key not in next(iter(columns.values())):
            continue
        cells = "".join(f"{c[key]:14,.0f}" if unit == "/s" else f"{c[key]:14,.2f}" for c in columns.values())
        print(f"{what:38}{cells} {unit}")
    if args.latency:
        return
    from bench.peers.work_queues import PEERS

    for cls in PEERS:
        k = max(n // 10, 1) if cls.batched else max(n // 200, 1)
        rates = [r for r in (peer_rate(cls, k) for _ in range(3)) if r is not None]
        rate = statistics.median(rates) if rates else None
        if rate is None:
            print(f"{cls.name:38} not installed (make bench installs the libraries; Redis: apt-get install redis-server)")
            continue
        print(f"{cls.name:38}{rate:14,.0f} /s")
        if cls.batched:
            rate = statistics.median(r for r in (peer_rate(cls, k, batched=True) for _ in range(3)) if r is not None)
            print(f"{cls.name + ', batches of 1,000':38}{rate:14,.0f} /s")


if __name__ == "__main__":
    sys.path.append(str(Path(__file__).resolve().parent.parent))  # bench.peers; tape as installed comes first
    main()
