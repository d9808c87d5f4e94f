"""`python -m bench.compare [--quick|--full] [--only NAME,...] [--sizes N,...] [--out DIR] [--dir PATH]`.

tape side by side with the Python queues users pick instead (queuelib,
persist-queue, diskcache, litequeue) and with the floors (Python file append,
Python mmap slice assignment, C memcpy into a prefaulted mapping), in one run,
on one disk, with the same payloads: throughput, per-operation latency
(HdrHistogram, at full speed and at a fixed rate timed from each operation's
intended start), writer -> reader latency across processes, bytes on disk per
entry, and how many acknowledged entries survive kill -9 of the writer.

Writes compare.json (every figure, the machine, the versions), compare.md (the
tables, with ratios tape/peer from this run) and PNG plots into --out
(default bench/out for a full run, bench/out/scratch otherwise).
--only takes subject keys and/or phases (throughput, latency, xproc, crash).
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import platform
import random
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from array import array
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from importlib import metadata
from itertools import repeat
from pathlib import Path
from typing import Any

from bench import compare_procs, compare_report, hdr, plots
from bench.__main__ import git_commit, loadavg
from bench.peers import Subject, import_installed_tape, subjects
from bench.peers.floors import CMemcpy

tape = import_installed_tape()

_HERE = Path(__file__).resolve().parent
SIZES = (16, 100, 1024, 65536)
PHASES = ("throughput", "latency", "xproc", "crash")
XPROC_PEERS = 2  # the fastest peers with cross-process reading that get the end-to-end test


@dataclass(frozen=True)
class Settings:
    """How long and how much each measurement may take."""

    mode: str
    sizes: tuple[int, ...] = SIZES
    box: float = 1.0  # seconds per throughput measurement (or cap_items / cap_bytes first)
    cap_items: int = 3_000_000
    cap_bytes: int = 256 << 20
    repeats: int = 3  # throughput rounds at the sizes of repeat_sizes (the median is kept)
    repeat_sizes: tuple[int, ...] = (100, 65536)
    warm_bytes: int = 256 << 20  # touched and freed before each throughput measurement (warm_up)
    lat_box: float = 0.5  # seconds of timed operations at full speed (or lat_cap first)
    lat_cap: int = 500_000
    rate: float = 1000.0  # operations a second in the fixed-rate test
    rate_box: float = 2.0
    rate_box_100: float = 10.0  # at 100 B: more samples for the tail percentiles
    xproc_rate: float = 1000.0
    xproc_seconds: float = 5.0
    kills: int = 20
    kill_within: float = 0.4  # seconds after the writer's first acknowledgement, at most


FULL = Settings("full")
QUICK = Settings("quick", box=0.15, cap_items=300_000, cap_bytes=32 << 20, repeats=1, warm_bytes=32 << 20, lat_box=0.1,
                 lat_cap=50_000, rate_box=0.3, rate_box_100=0.3, xproc_seconds=0.7, kills=4, kill_within=0.2)


# -- the machine -----------------------------------------------------------------------------


def _first(path: str, key: str) -> str:
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def tape_build() -> str:
    """"release" when the imported tape was built without the test hooks, else "test"."""
    so = next(Path(tape.__file__).parent.glob("_core*.so"), None)
    if so is None:
        return "unknown"
    return "test" if b"tape_fault_configure" in so.read_bytes() else "release"


def machine(where: Path, peers: list[str]) -> dict[str, Any]:
    """CPU, cores, memory, kernel, filesystem of `where`, Python, package versions."""
    fs = subprocess.run(["findmnt", "-no", "FSTYPE", "-T", str(where)], capture_output=True, text=True).stdout
    cc = os.environ.get("CC") or shutil.which("cc") or "gcc"
    cc_version = subprocess.run([cc, "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    mem_kb = _first("/proc/meminfo", "MemTotal").split()[0]
    return {
        "cpu": _first("/proc/cpuinfo", "model name"),
        "cpu_mhz": _first("/proc/cpuinfo", "cpu MHz"),
        "cores": os.cpu_count(),
        "memory_gb": round(int(mem_kb) / 1024**2, 1) if mem_kb.isdigit() else None,
        "kernel": platform.release(),
        "filesystem": fs.strip() or "unknown",
        "run_dir": str(where),
        "python": platform.python_version(),
        "cc": cc_version,
        "tape": {"version": _version("tape"), "path": str(Path(tape.__file__).parent), "build": tape_build()},
        "packages": {d: _version(d) for d in sorted({*peers, "hdrhistogram", "matplotlib", "msgpack", "cffi"})},
    }


# -- helpers ---------------------------------------------------------------------------------


def payloads(size: int, k: int) -> list[bytes]:
    """`k` distinct pseudo-random payloads of `size` bytes."""
    rng = random.Random(size)
    return [rng.randbytes(size) for _ in range(k)]


def batch_len(size: int) -> int:
    """Entries per write_many batch: 1,000, or fewer so that a batch stays under 1 MiB."""
    return max(1, min(1000, (1 << 20) // size))


def boxed(step: Callable[[int], int], box: float, cap: int) -> tuple[int, float]:
    """Call step(k) (does up to k operations, returns how many) until `box` seconds, `cap` operations,
    or a short step; k starts at 1 and doubles while a step takes under 1% of the box."""
    clock = time.perf_counter
    k, n = 1, 0
    t0 = clock()
    while n < cap:
        want = min(k, cap - n)
        t1 = clock()
        did = step(want)
        n += did
        now = clock()
        if did < want or now - t0 >= box:
            break
        if now - t1 < box / 100:
            k *= 2
    return n, clock() - t0


def writes(write: Callable[[Any], object], value: Any) -> Callable[[int], int]:
    def step(k: int) -> int:
        for _ in repeat(None, k):
            write(value)
        return k

    return step


def reads(read: Callable[[], object | None]) -> Callable[[int], int]:
    def step(k: int) -> int:
        i = 0
        for _ in repeat(None, k):
            if read() is None:
                return i
            i += 1
        return k

    return step


def disk_bytes(path: Path) -> int:
    """Bytes allocated on disk to the files under `path`."""
    return sum(p.stat().st_blocks * 512 for p in path.rglob("*") if p.is_file())


def log_bytes(path: Path) -> int:
    """What a tape queue's entries occupy (headers and padding included), from its cycle table."""
    with tape.Queue(path, read_only=True) as q:
        return sum(c.bytes for c in q.cycles())


def timing_overhead_ns() -> int:
    """Median cost of an empty perf_counter_ns() pair."""
    pc = time.perf_counter_ns
    s = array("q", bytes(8 * 200_000))
    for i in range(len(s)):
        t0 = pc()
        s[i] = pc() - t0
    return int(statistics.median(s))


def warm_up(nbytes: int) -> None:
    """Touch `nbytes` of fresh anonymous memory and free it: the same before every throughput measurement.

    The memory a subject's files get next was then touched just before,
    whoever went first. On a VM that hands free memory back to its host
    (virtio-balloon free page reporting), the first touch of memory not used
    for a while costs many times more, and fell on whichever subject ran
    first after an idle spell or a large free.
    """
    chunk = bytes(1 << 20)
    with mmap.mmap(-1, max(1, nbytes >> 20) << 20) as m:
        m.madvise(mmap.MADV_HUGEPAGE)  # large free blocks too, as a file mapped in huge folios takes
        for pos in range(0, len(m), len(chunk)):
            m[pos:pos + len(chunk)] = chunk


@contextmanager
def scratch(root: Path, name: str) -> Iterator[Path]:
    """root/name, removed afterwards."""
    d = root / name
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


# -- in-process measurements -------------------------------------------------------------------


def throughput(s: Subject, size: int, st: Settings, root: Path) -> dict[str, Any]:
    """Items a second of write, write_many, read and read_all; bytes on disk per entry."""
    values = s.values(payloads(size, batch_len(size)))
    cap = min(st.cap_items, st.cap_bytes // size)
    out: dict[str, Any] = {"subject": s.key, "size": size}
    with scratch(root, f"{s.key}-{size}-w") as d:
        s.open(d)
        n, secs = boxed(writes(s.write, values[0]), st.box, cap)
        s.close()
        out["write"] = {"items": n, "seconds": secs, "rate": n / secs}
        if s.kind != "floor" and s.reads:  # not for the floors nor tape's write-only variant
            out["disk"] = {"entries": n, "bytes": disk_bytes(d), "per_entry": disk_bytes(d) / n}
            if s.kind == "tape":
                out["disk"]["log_per_entry"] = log_bytes(d) / n
        if s.reads:
            s.open(d)
            r, secs = boxed(reads(s.read), st.box, n)
            s.close()
            out["read"] = {"items": r, "seconds": secs, "rate": r / secs}
    with scratch(root, f"{s.key}-{size}-m") as d:
        s.open(d)

        def batches(k: int) -> int:
            for _ in repeat(None, k):
                s.write_many(values)
            return k

        b, secs = boxed(batches, st.box, max(1, cap // len(values)))
        s.close()
        n = b * len(values)
        out["write_many"] = {"items": n, "seconds": secs, "rate": n / secs, "batch": len(values)}
        if s.reads:
            s.open(d)
            t0 = time.perf_counter()
            r = s.read_all(t0 + st.box)
            secs = time.perf_counter() - t0
            s.close()
            out["read_all"] = {"items": r, "seconds": secs, "rate": r / secs}
    return out


def c_throughput(c: CMemcpy, size: int, st: Settings, root: Path) -> dict[str, Any]:
    """The C floor's write and read rates."""
    with scratch(root, f"{c.key}-{size}") as d:
        r = c.throughput(d, size, st.box)
    w_s, r_s = r["write_ns"] / 1e9, r["read_ns"] / 1e9
    return {
        "subject": c.key, "size": size,
        "write": {"items": r["write_items"], "seconds": w_s, "rate": r["write_items"] / w_s},
        "read": {"items": r["read_items"], "seconds": r_s, "rate": r["read_items"] / r_s},
    }


def _latency_record(key: str, size: int, op: str, mode: str, samples: array[int], overhead: int,
                    rate: float | None) -> dict[str, Any]:
    h = hdr.histogram(samples, overhead)
    return {"subject": key, "size": size, "op": op, "mode": mode, "rate": rate, "overhead_ns": overhead,
            "us": hdr.summary(h), "curve": hdr.curve(h)}


def latency(s: Subject, size: int, st: Settings, root: Path, overhead: int) -> list[dict[str, Any]]:
    """Per-operation latency of write and read at full speed, and of write at a fixed rate.

    Each loop stops at its time box (the fixed-rate one at twice its box, for a
    subject that cannot keep up with the rate) or at its count.
    """
    value = s.values(payloads(size, 1))[0]
    cap = max(1, min(st.lat_cap, st.cap_bytes // size))
    pc = time.perf_counter_ns
    out = []
    with scratch(root, f"{s.key}-{size}-lat") as d:
        s.open(d)
        write, samples, i = s.write, array("q", bytes(8 * cap)), 0
        end = pc() + int(st.lat_box * 1e9)
        while i < cap:
            t0 = pc()
            write(value)
            t1 = pc()
            samples[i] = t1 - t0
            i += 1
            if t1 >= end:
                break
        s.close()
        del samples[i:]
        out.append(_latency_record(s.key, size, "write", "full-speed", samples, overhead, None))
        if s.reads:
            s.open(d)
            read, samples, i = s.read, array("q", bytes(8 * i)), 0
            end = pc() + int(st.lat_box * 1e9)
            while i < len(samples):
                t0 = pc()
                read()
                t1 = pc()
                samples[i] = t1 - t0
                i += 1
                if t1 >= end:
                    break
            s.close()
            del samples[i:]
            out.append(_latency_record(s.key, size, "read", "full-speed", samples, overhead, None))
    with scratch(root, f"{s.key}-{size}-rate") as d:
        s.open(d)
        write = s.write
        box = rate_box(st, size)
        n = max(1, min(int(st.rate * box), st.cap_bytes // size))
        samples, interval = array("q", bytes(8 * n)), 1e9 / st.rate
        start = pc() + 1_000_000
        give_up = start + int(2e9 * box)
        for k in range(n):
            due = start + int(k * interval)
            wait_until(due, pc)
            write(value)
            samples[k] = t1 = pc() - due
            if t1 + due >= give_up:
                del samples[k + 1:]
                break
        s.close()
        out.append(_latency_record(s.key, size, "write", "fixed-rate", samples, overhead, st.rate))
    return out


def rate_box(st: Settings, size: int) -> float:
    """Seconds of the fixed-rate test at this payload size."""
    return st.rate_box_100 if size == 100 else st.rate_box


def wait_until(due: int, clock: Callable[[], int]) -> None:
    """Sleep until 1 ms before `due` (ns of `clock`) if that is more than 2 ms away, then spin."""
    ahead = due - clock()
    if ahead > 2_000_000:
        time.sleep((ahead - 1_000_000) / 1e9)
    while clock() < due:
        pass


def c_latency(c: CMemcpy, size: int, st: Settings, root: Path) -> list[dict[str, Any]]:
    """The C floor's per-copy latency at full speed and at the fixed rate."""
    out = []
    for mode, rate in (("full-speed", None), ("fixed-rate", st.rate)):
        with scratch(root, f"{c.key}-{size}-{mode}") as d:
            cap = max(1, min(st.lat_cap, st.cap_bytes // size))
            samples, overhead = c.latency(d, size, rate_box(st, size) if rate else st.lat_box, cap, rate)
        out.append(_latency_record(c.key, size, "write", mode, samples, overhead, rate))
    return out


# -- the run ---------------------------------------------------------------------------------


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One throughput record whose rates are the medians of the runs' (each run kept under "runs")."""
    if len(runs) == 1:
        return runs[0]
    out = dict(runs[-1])
    for op in ("write", "write_many", "read", "read_all"):
        if op in out:
            rates = [r[op]["rate"] for r in runs]
            out[op] = {**out[op], "rate": statistics.median(rates), "runs": rates}
    return out


def xproc_peers(table: dict[str, type[Subject]], chosen: list[str], tput: list[dict[str, Any]], st: Settings,
                root: Path) -> list[str]:
    """The XPROC_PEERS fastest peers at 100 B (by the lower of write and read rate) among those
    whose reader can follow a writer in another process; rates of this run, or measured now."""
    able = [k for k in chosen if table[k].kind == "peer" and not table[k].cross_process]
    recs = {r["subject"]: r for r in tput if r["size"] == 100 and "read" in r}
    for k in able:
        if k not in recs:
            recs[k] = throughput(table[k](), 100, replace(st, box=0.3), root)
    return sorted(able, key=lambda k: -min(recs[k]["write"]["rate"], recs[k]["read"]["rate"]))[:XPROC_PEERS]


def _say(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)


def run(st: Settings, keys: list[str], phases: list[str], root: Path) -> dict[str, Any]:
    """Every measurement of the run, as the JSON report's sections."""
    table = subjects()
    chosen = [k for k in keys if k in table]
    c_floor = CMemcpy(root) if "floor-memcpy-c" in keys else None
    report: dict[str, Any] = {"throughput": [], "latency": [], "xproc": {}, "crash": [], "load": {}}
    t_start = time.monotonic()

    def phase_done(name: str) -> None:
        report["load"][name] = loadavg()
        _say(f"  {name} done at {time.monotonic() - t_start:.0f} s, load {report['load'][name]}")

    if "throughput" in phases:
        for size in st.sizes:
            # Rounds interleave the subjects (A B C, B C A, C A B...: each goes
            # first once), each measurement after the same warm-up, so that
            # neither the order nor the memory's state decides; medians kept.
            by_key: dict[str, list[dict[str, Any]]] = {key: [] for key in chosen}
            rounds = st.repeats if size in st.repeat_sizes else 1
            for k in range(rounds):
                for key in chosen[k % len(chosen):] + chosen[:k % len(chosen)]:
                    warm_up(st.warm_bytes)
                    by_key[key].append(throughput(table[key](), size, st, root))
            for key in chosen:
                report["throughput"].append(rec := _median_run(by_key[key]))
                _say(f"  {size:>6} B {key:16} " + "  ".join(
                    f"{op} {rec[op]['rate'] / 1e3:,.1f} k/s" for op in ("write", "write_many", "read", "read_all") if op in rec))
            if c_floor:
                report["throughput"].append(c_throughput(c_floor, size, st, root))
        phase_done("throughput")
    if "latency" in phases:
        overhead = timing_overhead_ns()
        for size in st.sizes:
            for key in chosen:
                report["latency"] += latency(table[key](), size, st, root, overhead)
            if c_floor:
                report["latency"] += c_latency(c_floor, size, st, root)
            _say(f"  latency {size} B done")
        phase_done("latency")
    if "xproc" in phases:
        peers = xproc_peers(table, chosen, report["throughput"], st, root)
        why = "; ".join(f"{c.name}: {c.cross_process}" for c in table.values() if c.kind == "peer" and c.cross_process)
        e2e: list[dict[str, Any]] = []
        cases = [("tape-raw", False), ("tape-raw", True)] if "tape-raw" in chosen else []
        for key, spin in cases + [(k, False) for k in peers]:
            with scratch(root, f"x-{key}") as d:
                samples = compare_procs.end_to_end(key, d, st.xproc_rate, st.xproc_seconds, spin, root / "x.bin")
            label = f"{key}{' (spin)' if spin else ''}"
            e2e.append({**_latency_record(key, 100, "end-to-end", "fixed-rate", samples, 0, st.xproc_rate),
                        "label": label, "spin": spin})
            _say(f"  end-to-end {label}: p50 {e2e[-1]['us']['p50']:.1f} us, p99.9 {e2e[-1]['us']['p99.9']:.1f} us")
        report["xproc"] = {"runs": e2e, "peers": peers, "not_supported": why}
        phase_done("xproc")
    if "crash" in phases:
        rng = random.Random(8)
        for key in chosen:
            if not table[key].crash:
                continue
            rounds = []
            for k in range(st.kills):
                with scratch(root, f"crash-{key}-{k}") as d:
                    rounds.append(compare_procs.crash_round(key, d, rng, st.kill_within))
            acked = sum(r["acked"] for r in rounds)
            kept = sum(r["kept"] for r in rounds)
            report["crash"].append({
                "subject": key, "kills": len(rounds), "acked": acked, "kept": kept,
                "kept_pct": 100.0 * kept / acked if acked else None,
                "rounds_with_loss": sum(1 for r in rounds if r["kept"] < r["acked"]),
                "duplicates": sum(r.get("duplicates", 0) for r in rounds),
                "out_of_order": sum(1 for r in rounds if not r.get("in_order", True)),
                "reopen_failures": sum(1 for r in rounds if not r.get("writes_after", False)),
                "rounds": rounds,
            })
            _say(f"  crash {key}: kept {kept:,} of {acked:,} acknowledged over {len(rounds)} kills")
        phase_done("crash")
    return report


def _describe(table: dict[str, type[Subject]], keys: list[str]) -> dict[str, Any]:
    out = {k: {"name": c.name, "kind": c.kind, "package": c.package, "how": c.how, "sqlite": c.sqlite,
               "cross_process": c.cross_process or "yes", "doc": (c.__doc__ or "").strip()}
           for k, c in table.items() if k in keys}
    if "floor-memcpy-c" in keys:
        out[CMemcpy.key] = {"name": CMemcpy.name, "kind": CMemcpy.kind, "package": None, "how": CMemcpy.how, "sqlite": False,
                            "cross_process": "a floor, not a queue", "doc": (CMemcpy.__doc__ or "").strip()}
    return out


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, run, write the JSON, the Markdown and the plots."""
    doc = (__doc__ or "").split("\n\n")
    p = argparse.ArgumentParser(prog="python -m bench.compare", description=doc[1])
    g = p.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true", help="short measurements (under 2 minutes)")
    g.add_argument("--full", action="store_true", help="the full run (the default)")
    p.add_argument("--only", metavar="NAME", help="comma-separated subject keys and/or phases "
                   f"({', '.join(PHASES)}); see --list")
    p.add_argument("--sizes", metavar="N", help=f"comma-separated payload sizes (default {','.join(map(str, SIZES))})")
    p.add_argument("--out", type=Path, help="where the JSON, Markdown and PNGs go")
    p.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()), help="where queues go (default /tmp)")
    p.add_argument("--list", action="store_true", help="list the subjects and exit")
    args = p.parse_args(argv)
    table = subjects()
    every = [*table, CMemcpy.key]
    if args.list:
        for k in every:
            print(f"{k:16} {table[k].name if k in table else CMemcpy.name}")
        return 0
    st = QUICK if args.quick else FULL
    if args.sizes:
        st = replace(st, sizes=tuple(int(x) for x in args.sizes.split(",")))
    wanted = [w.strip() for w in (args.only or "").split(",") if w.strip()]
    unknown = [w for w in wanted if w not in every and w not in PHASES]
    if unknown:
        p.error(f"unknown name {unknown[0]!r}; subjects: {', '.join(every)}; phases: {', '.join(PHASES)}")
    keys = [k for k in every if k in wanted] or every
    phases = [ph for ph in PHASES if ph in wanted] or list(PHASES)
    partial = bool(wanted) or bool(args.sizes)
    out_dir = args.out or (_HERE / "out" if st.mode == "full" and not partial else _HERE / "out" / "scratch")
    out_dir.mkdir(parents=True, exist_ok=True)

    args.dir.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="tape-compare-", dir=args.dir))
    peers = sorted({c.package for c in table.values() if c.package})
    report: dict[str, Any] = {
        "command": shlex.join(["python", "-m", "bench.compare", *(sys.argv[1:] if argv is None else argv)]),
        "mode": st.mode,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "commit": git_commit(),
        "machine": machine(args.dir, peers),
        "settings": asdict(st),
        "load_before": loadavg(),
        "subjects": _describe(table, keys),
    }
    _say(f"bench.compare ({st.mode}) in {root}: {len(keys)} subjects, phases {', '.join(phases)}, "
         f"load {report['load_before']}, tape {report['machine']['tape']['build']} build")
    if report["machine"]["tape"]["build"] != "release":
        _say("  note: not the release build of tape (run it with .venv-bench/bin/python, as make bench does)")
    t0 = time.monotonic()
    try:
        report.update(run(st, keys, phases, root))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    report["seconds"] = round(time.monotonic() - t0, 1)
    report["load_after"] = loadavg()
    report["goals"] = compare_report.goals(report)
    (out_dir / "compare.json").write_text(json.dumps(report, indent=1) + "\n")
    md = compare_report.markdown(report)
    (out_dir / "compare.md").write_text(md)
    pngs = plots.plot_all(report, out_dir)
    print(md)
    _say(f"written: {out_dir / 'compare.json'}, {out_dir / 'compare.md'}, " + ", ".join(str(p) for p in pngs))
    _say(f"{report['seconds']:.0f} s; load {report['load_before']} -> {report['load_after']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
