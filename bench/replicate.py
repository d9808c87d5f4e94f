"""Replication benchmarks (issue 20): entries/s shipped and ingested, lag, frames against one message per entry.

    python -m bench.replicate [--n N] [--dir PATH] [--stages]

Against a nats-server the benchmark starts (tests/nats_support.py), on
loopback, storing in PATH. Entries are 100 bytes (a raw queue).

- ship: Replicator.run() of N entries, frames of 64 KiB and of 256 KiB
  (fenced publishes, up to 8 in flight on a stream of one subject);
- ingest: Ingester.run() of what the 64 KiB run shipped, into a new queue
  (64 messages a fetch, the next fetched while one is written);
- one message per entry: the same fenced publish per entry (what a
  replicator without frames would do), for 20,000 entries;
- lag: this process appends 10,000 entries/s (10 each ms) for 5 s while
  `tape replicate --follow` and `tape ingest --follow` run; the lag of an entry is the time from its append in the
  source to its append in the copy (Entry.timestamp - Entry.origin[1]): an
  upper bound of the replication lag. p50, p99, max.

--stages: instead, where the time of shipping and ingesting N entries goes
(64 KiB frames), in us of wall-clock time per entry: reading the batch
(Tailer._read_encoded_columns), building the frame, waiting for acknowledgements;
decoding frames (frame.unpack), appending (Appender._write_encoded_run), the
whole of each frame;
then each stage on its own, without a server: CPU time per entry, best of 5
loops of 200 calls on batches of 640 entries.

Rates are per second of wall-clock time on a machine shared with the server;
"cpu" is this process's CPU time per entry (user + system), steadier than
wall-clock time on a loaded machine.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nats

import tape
from tape.replicate import Ingester, Replicator

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from nats_support import NatsServer  # noqa: E402

PAYLOAD = b"x" * 100


def fill(path: Path, n: int) -> None:
    with tape.Queue(path, codec="raw") as q:
        a = q.appender()
        for start in range(0, n, 10_000):
            a.write_many([PAYLOAD] * min(10_000, n - start))


def rate(run: Callable[[], int]) -> str:
    """run()'s entries per second of wall-clock time, and its CPU time per entry."""
    t, cpu = time.perf_counter(), time.process_time()
    n = run()
    wall, cpu = time.perf_counter() - t, time.process_time() - cpu
    return f"{n / wall:12,.0f} entries/s  (cpu {cpu / n * 1e6:.2f} us/entry)"


def ship(server: NatsServer, path: Path, stream: str, frame_bytes: int) -> str:
    with Replicator(path, server.url, stream=stream, frame_bytes=frame_bytes) as r:
        return rate(r.run)


def ingest(server: NatsServer, stream: str, path: Path) -> str:
    with Ingester(server.url, stream=stream, path=path, batch=64) as i:
        return rate(i.run)


def stages(server: NatsServer, where: Path, n: int) -> None:
    """Print the time per entry of each stage of shipping and ingesting the queue `where`/src."""
    from tape.replicate import ingester, replicator

    spent: dict[str, float] = {}

    def timed(name: str, f: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return f(*args, **kwargs)
            finally:
                spent[name] = spent.get(name, 0.0) + time.perf_counter() - t
        return run

    def atimed(name: str, f: Callable[..., Any]) -> Callable[..., Any]:
        async def run(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return await f(*args, **kwargs)
            finally:
                spent[name] = spent.get(name, 0.0) + time.perf_counter() - t
        return run

    def report(what: str, rate_line: str) -> None:
        print(f"{what}: {rate_line}; us/entry: " + ", ".join(f"{k} {v / n * 1e6:.2f}" for k, v in spent.items()))
        spent.clear()

    replicator.Replicator._frame = timed("frame", replicator.Replicator._frame)  # type: ignore[method-assign]
    replicator.Replicator._acked = atimed("ack wait", replicator.Replicator._acked)  # type: ignore[method-assign]
    with Replicator(where / "src", server.url, stream="STAGES") as r:
        r._reader._read_encoded_columns = timed("read", r._reader._read_encoded_columns)  # type: ignore[method-assign]
        report("ship", rate(r.run))
    ingester.frame.unpack = timed("decode", ingester.frame.unpack)
    ingester._append = timed("append", ingester._append)
    ingester.Ingester._apply = timed("frame in all", ingester.Ingester._apply)  # type: ignore[method-assign]
    with Ingester(server.url, stream="STAGES", path=where / "copy", batch=64) as i:
        report("ingest", rate(i.run))


def stages_alone(where: Path) -> None:
    """Print the CPU time per entry of each stage called in a loop: read, frame, decode, append."""
    from tape.replicate import frame, ingester

    n = 640

    def best(call: Callable[[], Any]) -> str:
        times = []
        for _ in range(5):
            cpu = time.process_time()
            for _ in range(200):
                call()
            times.append((time.process_time() - cpu) / 200 / n * 1e6)
        return f"{min(times):.2f}"

    with Replicator(where / "src", "nats://127.0.0.1:1", stream="ALONE") as r:
        t = r.queue.tailer()
        batch = t._read_encoded_columns(n, 1 << 20)
        assert batch is not None
        read = best(lambda: (t.to_start(), t._read_encoded_columns(n, 1 << 20)))
        framing = best(lambda: r._frame(None, None, batch))
        data = r._frame(None, None, batch)[0]
    got = frame.unpack(data)
    decoding = best(lambda: frame.unpack(data))
    with tape.Queue(where / "alone", codec="raw") as q:
        a = q.appender()
        appending = best(lambda: ingester._append(a, got, 0))
    print(f"alone, cpu us/entry: read {read}, frame {framing}, decode {decoding}, append {appending}")


def one_message_per_entry(server: NatsServer, n: int) -> float:
    async def go() -> float:
        nc = await nats.connect(server.url)
        js = nc.jetstream()
        await js.add_stream(name="SINGLE", subjects=["single"])
        seq = 0
        t = time.perf_counter()
        for _ in range(n):
            ack = await js.publish("single", PAYLOAD, headers={"Nats-Expected-Last-Subject-Sequence": str(seq)})
            seq = ack.seq
        rate = n / (time.perf_counter() - t)
        await nc.close()
        return rate

    return asyncio.run(go())


def lag(server: NatsServer, where: Path, rate: int = 10_000, seconds: float = 5.0) -> list[float]:
    """Per entry, ms from its append in the source to its append in the copy, at `rate` entries/s."""
    src, dst = where / "lag-src", where / "lag-dst"
    with tape.Queue(src, codec="raw") as q:
        q.appender().write(PAYLOAD)
    # The replicator and the ingester are processes of their own, as in production.
    tape_cmd = [sys.executable, "-m", "tape"]
    procs = [subprocess.Popen([*tape_cmd, "replicate", str(src), server.url, "--stream", "LAG", "--follow"],
                              stderr=subprocess.DEVNULL),
             subprocess.Popen([*tape_cmd, "ingest", server.url, "--stream", "LAG", str(dst), "--follow"],
                              stderr=subprocess.DEVNULL)]
    try:
        time.sleep(2)  # both connected
        total = int(rate * seconds)
        with tape.Queue(src, codec="raw") as q:
            a = q.appender()
            start = time.perf_counter()
            for k in range(0, total, 10):  # 10 entries each ms
                pause = start + k / rate - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
                a.write_many([PAYLOAD] * 10)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with tape.Queue(dst, codec="raw", read_only=True) as q:
                if q.count() >= total + 1:
                    break
            time.sleep(0.1)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGINT)
            proc.wait()
    with tape.Queue(dst, codec="raw") as q:
        return [(e.timestamp - e.origin[1]) / 1e6 for e in q.tailer().entries() if e.origin is not None][1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000, help="entries shipped and ingested")
    parser.add_argument("--dir", type=Path, default=None, help="where the queues and the server's store go")
    parser.add_argument("--stages", action="store_true", help="where the time goes, per stage")
    args = parser.parse_args()
    where = Path(tempfile.mkdtemp(prefix="bench-replicate-", dir=args.dir))
    server = NatsServer(where / "nats").start()
    try:
        src = where / "src"
        fill(src, args.n)
        print(f"{args.n:,} entries of {len(PAYLOAD)} B, nats-server on loopback")
        if args.stages:
            stages(server, where, args.n)
            stages_alone(where)
            return
        print(f"ship, 64 KiB frames:      {ship(server, src, 'S64', 64 << 10)}")
        with tape.Queue(src) as q:
            q.remove_tailer("replicator")
        print(f"ship, 256 KiB frames:     {ship(server, src, 'S256', 256 << 10)}")
        print(f"ingest (64 KiB frames):   {ingest(server, 'S64', where / 'copy')}")
        print(f"one message per entry:    {one_message_per_entry(server, 20_000):12,.0f} entries/s")
        lags = sorted(lag(server, where))
        p = lambda q: lags[min(len(lags) - 1, int(q * len(lags)))]  # noqa: E731
        print(f"lag at 10,000 entries/s (append to copied), ms: p50 {p(0.5):.1f}  p99 {p(0.99):.1f}  "
              f"max {lags[-1]:.1f}  (mean {statistics.fmean(lags):.1f}, {len(lags):,} entries)")
    finally:
        server.stop()
        shutil.rmtree(where, ignore_errors=True)


if __name__ == "__main__":
    main()
