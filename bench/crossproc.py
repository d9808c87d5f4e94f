"""Cross-process benchmarks (issue 3): end-to-end latency, contended writers, lock recovery.

    python -m bench.crossproc [--quick] [--runs N] [--dir PATH] [--only latency,throughput,follow,recovery] [--pin]

- Latency: an appender process writes 100-byte payloads carrying their send
  time (CLOCK_MONOTONIC, time.monotonic_ns: the same clock in every process)
  at a steady rate, paced by busy-waiting; a tailer process reads them with
  read(timeout=...) and records now - send time. Once with a busy-spinning
  tailer (q.tailer(spin=True)), once with the default sleeping one (woken by
  the appender through the futex). With --pin, the writer runs on CPU 0
  and the tailer on CPU 1.
- Throughput: 4 writer processes started together on one queue, each writing
  its share of 100-byte entries with write() or with write_many() batches;
  total entries / (last end - first start).
- Follow: a writer process writes n 100-byte entries with write(), one by
  one; a reader process (started first) counts them with
  `for v in t.follow(timeout=5)`; entries / (the reader's last value - the
  writer's first write), and each process's CPU time per entry (ns). With --pin,
  the writer on CPU 0 and the reader on CPU 1.
- Recovery: a child takes the write lock and dies holding it (TAPE_KILL=
  before_publish:1, so it needs the test build of .venv: the default for
  --test-python); then another process's next append is timed.

Every process is a fresh interpreter (`python -m bench.crossproc --child ...`).
Prints a table of medians over the runs (min-max in brackets) and writes every
figure to bench/results-crossproc.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from array import array
from collections.abc import Callable
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
_ROOT = _HERE.parent
PAYLOAD = 100
_TAPE_USED: set[str] = set()  # where the children imported tape from
T0_NS = 1_763_683_200 * 10**9

# ---- children ------------------------------------------------------------------------------


def _child(role: str, *args: object, python: str | None = None, env: dict[str, str] | None = None,
           stdin: Any = subprocess.PIPE) -> subprocess.Popen[str]:
    """Start `python bench/crossproc.py --child role args...`.

    Run as a script, so that `import tape` finds that interpreter's installed
    tape (the release build in .venv-bench), not the source tree's test build.
    """
    e = {k: v for k, v in os.environ.items() if k not in ("TAPE_KILL", "TAPE_FAULT", "PYTHONPATH")}
    e.update(env or {})
    return subprocess.Popen([python or sys.executable, str(_HERE / "crossproc.py"), "--child", role, *map(str, args)],
                            stdin=stdin, stdout=subprocess.PIPE, text=True, env=e, cwd=tempfile.gettempdir())


def _expect(proc: subprocess.Popen[str], word: str) -> None:
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if line != word:
        proc.kill()
        raise RuntimeError(f"child said {line!r}, not {word!r}")


def _go(procs: list[subprocess.Popen[str]]) -> None:
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()


def _result(proc: subprocess.Popen[str], timeout: float = 600) -> dict[str, Any]:
    out, _ = proc.communicate(timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"child failed ({proc.returncode}): {out}")
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _pin(cpu: str) -> None:
    """Keep this process on one CPU ("-": anywhere)."""
    if cpu != "-":
        os.sched_setaffinity(0, {int(cpu)})


def child_latency_writer(path: str, n: str, rate: str, cpu: str = "-") -> None:
    """Write n payloads at `rate` per second, each starting with its send time (monotonic ns)."""
    import tape

    _pin(cpu)
    count, period = int(n), 10**9 / float(rate)
    filler = bytes(PAYLOAD - 8)
    pack = struct.Struct("<q").pack
    now = time.monotonic_ns
    with tape.Queue(path, codec="raw") as q:
        write = q.appender().write
        write(pack(now()) + filler)  # maps and faults in what the first entry needs
        print("ready", flush=True)
        sys.stdin.readline()
        start = now()
        for k in range(count):
            due = start + int(k * period)
            while now() < due:
                pass
            write(pack(now()) + filler)
    print(json.dumps({"written": count, "seconds": (now() - start) / 1e9}))


def child_latency_tailer(path: str, n: str, spin: str, cpu: str = "-") -> None:
    """Read n entries as they arrive; print latency percentiles (µs) of now - send time."""
    import tape

    _pin(cpu)
    count = int(n)
    lat = array("q", bytes(8 * count))
    unpack = struct.Struct("<q").unpack_from
    now = time.monotonic_ns
    with tape.Queue(path, codec="raw") as q:
        t = q.tailer(start="end", spin=spin == "spin")
        print("ready", flush=True)
        read = t.read
        read(timeout=60)  # the writer's warm-up entry
        k = 0
        while k < count:
            v = read(timeout=5.0)
            if v is None:
                break
            lat[k] = now() - unpack(v)[0]
            k += 1
    warm = count // 100  # the first 1% warms up
    samples = sorted(lat[warm:k])
    print(json.dumps({"received": k, **_percentiles_us(samples)}))


def _percentiles_us(sorted_ns: list[int]) -> dict[str, float]:
    def at(p: float) -> float:
        return sorted_ns[min(len(sorted_ns) - 1, int(p * len(sorted_ns)))] / 1000

    return {"median_us": at(0.5), "p99_us": at(0.99), "p999_us": at(0.999), "max_us": sorted_ns[-1] / 1000}


def child_throughput_writer(path: str, n: str, batch: str) -> None:
    """Write n 100-byte entries (write(), or write_many in batches); print start and end (monotonic ns)."""
    import tape

    count, size = int(n), int(batch)
    payload = bytes(range(PAYLOAD))
    with tape.Queue(path, codec="raw") as q:
        a = q.appender()
        a.write(payload)
        print("ready", flush=True)
        sys.stdin.readline()
        start = time.monotonic_ns()
        if size <= 1:
            write = a.write
            for _ in range(count):
                write(payload)
        else:
            chunk = [payload] * size
            write_many = a.write_many
            for _ in range(count // size):
                write_many(chunk)
        end = time.monotonic_ns()
    done = count // max(size, 1) * max(size, 1)
    print(json.dumps({"start": start, "end": end, "n": done, "tape": os.path.dirname(tape.__file__)}))


def child_follow_writer(path: str, n: str, cpu: str = "-") -> None:
    """On "go", write n 100-byte entries with write(); print the first write's time (monotonic ns) and CPU per entry."""
    import tape

    _pin(cpu)
    count = int(n)
    payload = bytes(range(PAYLOAD))
    with tape.Queue(path, codec="raw") as q:
        write = q.appender().write
        print("ready", flush=True)
        sys.stdin.readline()
        cpu0 = time.process_time_ns()  # the prefaulter thread's work is the writer's too
        start = time.monotonic_ns()
        for _ in range(count):
            write(payload)
        cpu_ns = time.process_time_ns() - cpu0
    print(json.dumps({"start": start, "cpu_ns": cpu_ns}))


def child_follow_reader(path: str, n: str, cpu: str = "-") -> None:
    """Count n entries with follow(timeout=5); print the last one's arrival (monotonic ns) and CPU per entry."""
    import tape

    _pin(cpu)
    count, k = int(n), 0
    with tape.Queue(path, codec="raw") as q:
        t = q.tailer()
        print("ready", flush=True)
        cpu0 = time.process_time_ns()
        for _ in t.follow(timeout=5):
            k += 1
            if k == count:
                break
        end = time.monotonic_ns()
        cpu_ns = time.process_time_ns() - cpu0
    print(json.dumps({"received": k, "end": end, "cpu_ns": cpu_ns, "tape": os.path.dirname(tape.__file__)}))


def child_lock_holder(path: str) -> None:
    """Append once; with TAPE_KILL=before_publish:1 this dies holding the write lock."""
    import tape

    q = tape.Queue(path, codec="raw")
    q.appender().write(b"dies holding the lock")
    print("survived", flush=True)  # the kill point did not fire: not a test build


def child_recovering_writer(path: str) -> None:
    """Open and append once, then on "go" time the next append (after the lock holder died)."""
    import tape

    with tape.Queue(path, codec="raw") as q:
        a = q.appender()
        a.write(b"before")
        print("ready", flush=True)
        sys.stdin.readline()
        t0 = time.perf_counter_ns()
        a.write(b"after the lock holder died")
        t1 = time.perf_counter_ns()
        a.write(b"uncontended")
        t2 = time.perf_counter_ns()
        r = q.verify()
    print(json.dumps({"recovery_ns": t1 - t0, "next_ns": t2 - t1, "verify_ok": r.ok, "entries": r.entries}))


CHILDREN: dict[str, Callable[..., None]] = {
    "latency-writer": child_latency_writer,
    "latency-tailer": child_latency_tailer,
    "throughput-writer": child_throughput_writer,
    "follow-writer": child_follow_writer,
    "follow-reader": child_follow_reader,
    "lock-holder": child_lock_holder,
    "recovering-writer": child_recovering_writer,
}

# ---- measurements ------------------------------------------------------------------------------


def latency(where: Path, n: int, rate: int, mode: str, pin: bool = False) -> dict[str, float]:
    """One run: a writer and a tailer process on a fresh queue (with `pin`, each on its own CPU)."""
    path = where / f"lat-{mode}"
    shutil.rmtree(path, ignore_errors=True)
    import tape

    tape.Queue(path, codec="raw").close()
    tailer = _child("latency-tailer", path, n, mode, 1 if pin else "-", stdin=subprocess.DEVNULL)
    _expect(tailer, "ready")
    writer = _child("latency-writer", path, n, rate, 0 if pin else "-")
    _expect(writer, "ready")
    _go([writer])
    w = _result(writer)
    r = _result(tailer)
    shutil.rmtree(path, ignore_errors=True)
    if r["received"] != n:
        raise RuntimeError(f"the tailer received {r['received']} of {n}")
    return {**{k: v for k, v in r.items() if k != "received"}, "rate_per_s": n / w["seconds"]}


def throughput(where: Path, n: int, batch: int, writers: int = 4) -> dict[str, float]:
    """One run: `writers` processes, n entries in all."""
    path = where / "tput"
    shutil.rmtree(path, ignore_errors=True)
    import tape

    tape.Queue(path, codec="raw").close()
    procs = [_child("throughput-writer", path, n // writers, batch) for _ in range(writers)]
    for p in procs:
        _expect(p, "ready")
    _go(procs)
    results = [_result(p) for p in procs]
    with tape.Queue(path) as q:
        count = q.count()
    shutil.rmtree(path, ignore_errors=True)
    total = sum(r["n"] for r in results)
    if count != total + writers:
        raise RuntimeError(f"{count} entries in the queue, {total + writers} written")
    seconds = (max(r["end"] for r in results) - min(r["start"] for r in results)) / 1e9
    _TAPE_USED.add(results[0]["tape"])
    return {"entries_per_s": total / seconds, "seconds": seconds}


def follow(where: Path, n: int, pin: bool = False) -> dict[str, float]:
    """One run: a reader process follows what a writer process writes (with `pin`, each on its own CPU)."""
    path = where / "follow"
    shutil.rmtree(path, ignore_errors=True)
    import tape

    tape.Queue(path, codec="raw").close()
    reader = _child("follow-reader", path, n, 1 if pin else "-", stdin=subprocess.DEVNULL)
    _expect(reader, "ready")
    writer = _child("follow-writer", path, n, 0 if pin else "-")
    _expect(writer, "ready")
    _go([writer])
    w = _result(writer)
    r = _result(reader)
    shutil.rmtree(path, ignore_errors=True)
    if r["received"] != n:
        raise RuntimeError(f"the reader received {r['received']} of {n}")
    _TAPE_USED.add(r["tape"])
    return {"msgs_per_s": n / ((r["end"] - w["start"]) / 1e9), "writer_cpu_ns": w["cpu_ns"] / n,
            "reader_cpu_ns": r["cpu_ns"] / n}


def recovery(where: Path, test_python: str) -> dict[str, float]:
    """One run: a child dies holding the lock; another process's next append is timed."""
    path = where / "recovery"
    shutil.rmtree(path, ignore_errors=True)
    import tape

    tape.Queue(path, codec="raw").close()
    timer = _child("recovering-writer", path)
    _expect(timer, "ready")
    holder = _child("lock-holder", path, python=test_python, env={"TAPE_KILL": "before_publish:1"},
                    stdin=subprocess.DEVNULL)
    holder.wait(timeout=60)
    if holder.returncode != -signal.SIGKILL:
        timer.kill()
        raise RuntimeError(f"{test_python}: the lock holder was not killed at its kill point (a test build? "
                           f"run `make venv`): {holder.returncode}")
    _go([timer])
    r = _result(timer)
    shutil.rmtree(path, ignore_errors=True)
    if not r["verify_ok"] or r["entries"] != 3:
        raise RuntimeError(f"after the recovery: {r}")
    return {"recovery_ms": r["recovery_ns"] / 1e6, "next_append_us": r["next_ns"] / 1e3}


# ---- reporting --------------------------------------------------------------------------------


def machine(where: Path) -> dict[str, Any]:
    """CPU, cores, kernel, filesystem of `where`, load average."""
    model = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    fs = subprocess.run(["findmnt", "-no", "FSTYPE", "-T", str(where)], capture_output=True, text=True).stdout
    return {"cpu": model, "cores": os.cpu_count(), "kernel": platform.release(), "python": platform.python_version(),
            "queue_dir": str(where), "filesystem": fs.strip() or "unknown"}


def git_commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=_ROOT, capture_output=True, text=True).stdout.strip()

    head = git("rev-parse", "--short", "HEAD")
    return head + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def summarize(runs: list[dict[str, float]]) -> dict[str, dict[str, Any]]:
    """Per figure: median, min and max over the runs, and every run's value."""
    return {k: {"median": statistics.median(r[k] for r in runs), "min": min(r[k] for r in runs),
                "max": max(r[k] for r in runs), "runs": [r[k] for r in runs]} for k in runs[0]}


def fmt(v: float) -> str:
    return f"{v:,.0f}" if v >= 1000 else f"{v:.3g}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.crossproc", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer messages and runs (a smoke test)")
    ap.add_argument("--runs", type=int, default=None, help="runs of each measurement (default 5, quick 1)")
    ap.add_argument("--dir", type=Path, default=None, help="where the queues go (default: a temporary directory)")
    ap.add_argument("--only", default="latency,throughput,follow,recovery")
    ap.add_argument("--rate", type=int, default=20_000, help="messages per second in the latency test")
    ap.add_argument("--pin", action="store_true", help="latency and follow: writer on CPU 0, tailer on CPU 1")
    ap.add_argument("--test-python", default=str(_ROOT / ".venv" / "bin" / "python"),
                    help="interpreter with a test build of tape, for the lock holder that dies")
    ap.add_argument("--child", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        CHILDREN[args.child[0]](*args.child[1:])
        return 0
    runs = args.runs or (1 if args.quick else 5)
    n_lat = 20_000 if args.quick else 100_000
    n_tput = 400_000 if args.quick else 4_000_000
    reps = 5 if args.quick else 20
    only = set(args.only.split(","))
    base = Path(tempfile.mkdtemp(prefix="tape-crossproc-", dir=args.dir))
    results: dict[str, Any] = {"machine": machine(base), "commit": git_commit(), "python": sys.executable,
                               "command": " ".join([sys.executable, "-m", "bench.crossproc", *(argv or sys.argv[1:])]),
                               "runs": runs, "loadavg_before": os.getloadavg()}
    rows: list[tuple[str, dict[str, dict[str, Any]]]] = []
    try:
        if "latency" in only:
            for mode in ("spin", "sleep"):
                s = summarize([latency(base, n_lat, args.rate, mode, args.pin) for _ in range(runs)])
                results[f"latency_{mode}"] = s
                pinned = ", pinned" if args.pin else ""
                rows.append((f"latency, {mode} tailer, {n_lat:,} x {PAYLOAD} B at {args.rate:,}/s{pinned}", s))
        if "throughput" in only:
            for label, batch in (("write()", 1), ("write_many(100)", 100)):
                s = summarize([throughput(base, n_tput, batch) for _ in range(runs)])
                results[f"throughput_{batch}"] = s
                rows.append((f"4 writer processes, {label}, {n_tput:,} x {PAYLOAD} B", s))
            s = summarize([throughput(base, n_tput // 4, 1, writers=1) for _ in range(runs)])
            results["throughput_single"] = s
            rows.append((f"1 writer process, write(), {n_tput // 4:,} x {PAYLOAD} B", s))
        if "follow" in only:
            n_follow = n_tput // 2
            s = summarize([follow(base, n_follow, args.pin) for _ in range(runs)])
            results["follow"] = s
            pinned = ", pinned" if args.pin else ""
            rows.append((f"1 writer process, 1 follow() reader process, {n_follow:,} x {PAYLOAD} B{pinned}", s))
        if "recovery" in only:
            s = summarize([recovery(base, args.test_python) for _ in range(reps)])
            results["recovery"] = s
            rows.append((f"lock recovery after a killed holder ({reps} times)", s))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    results["loadavg_after"] = os.getloadavg()
    results["children_imported_tape_from"] = sorted(_TAPE_USED)
    for label, s in rows:
        print(label)
        for k, v in s.items():
            print(f"    {k:16} {fmt(v['median']):>12}  [{fmt(v['min'])} - {fmt(v['max'])}]")
    print(f"load average before {results['loadavg_before']}, after {results['loadavg_after']}")
    out = _HERE / f"results-crossproc{'-quick' if args.quick else ''}{'-pinned' if args.pin else ''}.json"
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
