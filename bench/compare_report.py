"""The goals of issue 8 and the Markdown report of `python -m bench.compare`, from its JSON report."""

from __future__ import annotations

from typing import Any

TAPE = "tape-raw"
OPS = ("write", "write_many", "read", "read_all")
OP_TITLES = {"write": "write", "write_many": "batch write", "read": "read", "read_all": "bulk read"}
GOAL_SIZE = 100


def rate(x: float) -> str:
    """Items a second as people read them: 2.41 M, 16.2 k, 310."""
    if x >= 1e6:
        return f"{x / 1e6:.3g} M"
    if x >= 1e3:
        return f"{x / 1e3:.3g} k"
    return f"{x:.3g}"


def us(x: float) -> str:
    """Microseconds, three significant digits (whole numbers from 1,000 up)."""
    return f"{x:,.0f}" if x >= 1000 else f"{x:.3g}"


def ratio(x: float | None) -> str:
    """A ratio tape/peer: 7.1x, 1,250x, 0.52x."""
    if x is None:
        return ""
    return f"{x:,.0f}x" if x >= 100 else f"{x:.2g}x" if x < 10 else f"{x:.1f}x"


def size_name(size: int) -> str:
    """16 B, 1 KiB, 64 KiB."""
    return f"{size // 1024} KiB" if size >= 1024 and size % 1024 == 0 else f"{size} B"


def _tput(report: dict[str, Any], size: int) -> dict[str, dict[str, Any]]:
    return {r["subject"]: r for r in report["throughput"] if r["size"] == size}


def _rate_of(rec: dict[str, Any] | None, op: str) -> float | None:
    return rec[op]["rate"] if rec is not None and op in rec else None


def goals(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Each goal of issue 8 at 100 B: the figure, the target, met or not, from this run."""
    subj = report["subjects"]
    t = _tput(report, GOAL_SIZE)
    out: list[dict[str, Any]] = []
    tape = t.get(TAPE)
    peers = [k for k, d in subj.items() if d["kind"] == "peer" and k in t]
    for op in ("write", "read"):
        tape_rate = _rate_of(tape, op)
        if tape_rate is None or not peers:
            continue
        groups = (("the fastest peer", peers, 5.0), ("the fastest SQLite-based peer", [k for k in peers if subj[k]["sqlite"]], 100.0))
        for what, keys, target in groups:
            rated = [(k, r) for k in keys if (r := _rate_of(t[k], op))]
            if not rated:
                continue
            best, best_rate = max(rated, key=lambda kr: kr[1])
            x = tape_rate / best_rate
            out.append({
                "goal": f"tape {op}s at {GOAL_SIZE} B at least {target:g}x faster than {what}",
                "figure": x, "unit": "x", "target": target, "met": x >= target,
                "detail": f"tape (raw) {op}() {rate(tape_rate)}/s; {subj[best]['name']} {rate(best_rate)}/s",
            })
    crash = {c["subject"]: c for c in report["crash"]}
    if TAPE in crash and crash[TAPE]["acked"]:
        c = crash[TAPE]
        out.append({
            "goal": "tape keeps 100% of acknowledged entries across kill -9",
            "figure": c["kept_pct"], "unit": "%", "target": 100.0,
            "met": c["kept"] == c["acked"] and not c["duplicates"] and not c["out_of_order"] and not c["reopen_failures"],
            "detail": f"{c['kept']:,} of {c['acked']:,} over {c['kills']} kills; {c['duplicates']} duplicates, "
                      f"{c['out_of_order']} out of order, {c['reopen_failures']} failed reopenings",
        })
    if "queuelib" in crash and crash["queuelib"]["acked"]:
        c = crash["queuelib"]
        out.append({
            "goal": "queuelib FifoDiskQueue keeps none (it is not crash-safe)",
            "figure": c["kept_pct"], "unit": "%", "target": 0.0, "met": c["kept"] == 0,
            "detail": f"{c['kept']:,} of {c['acked']:,} over {c['kills']} kills",
        })
    return out


def _name(report: dict[str, Any], key: str) -> str:
    return str(report["subjects"].get(key, {}).get("name", key))


def _order(report: dict[str, Any], keys: set[str]) -> list[str]:
    return [k for k in report["subjects"] if k in keys]


def _table(head: list[str], rows: list[list[str]], right_from: int = 1) -> list[str]:
    align = ["---" if i < right_from else "---:" for i in range(len(head))]
    return ["| " + " | ".join(head) + " |", "|" + "|".join(align) + "|", *("| " + " | ".join(r) + " |" for r in rows)]


def headline(report: dict[str, Any]) -> list[str]:
    """The 100 B table: every subject's rates, tape's ratios to it, latency, disk, kill -9."""
    t = _tput(report, GOAL_SIZE)
    tape = t.get(TAPE)
    lat = {(r["subject"], r["op"], r["mode"]): r for r in report["latency"] if r["size"] == GOAL_SIZE}
    crash = {c["subject"]: c for c in report["crash"]}
    rows = []
    for k in _order(report, set(t)):
        r = t[k]
        cells = [_name(report, k)]
        for op in ("write", "read"):
            x = _rate_of(r, op)
            mine = _rate_of(tape, op)
            spread = f" ({rate(min(r[op]['runs']))}-{rate(max(r[op]['runs']))})" if x and "runs" in r[op] else ""
            cells += [rate(x) + spread if x else "", ratio(mine / x) if x and mine and k != TAPE else ""]
        for op in ("write_many", "read_all"):
            x = _rate_of(r, op)
            cells.append(rate(x) if x else "")
        if lat:
            fixed = lat.get((k, "write", "fixed-rate"))
            cells.append(f"{us(fixed['us']['p50'])} / {us(fixed['us']['p99.9'])}" if fixed else "")
        cells.append(f"{r['disk']['per_entry']:.0f}" if "disk" in r else "")
        c = crash.get(k)
        cells.append(f"{c['kept']:,} of {c['acked']:,}" if c else "")
        rows.append(cells)
    head = ["subject", "write/s", "tape ÷", "read/s", "tape ÷", "batch write/s", "bulk read/s"]
    if lat:
        head.append(f"write µs p50 / p99.9 at {report['settings']['rate']:g}/s")
    head += ["disk B/entry", "kill -9: kept of acked"]
    return _table(head, rows)


def throughput_tables(report: dict[str, Any]) -> list[str]:
    """Per payload size: each subject's four rates and tape (raw)'s ratio to each."""
    lines: list[str] = []
    for size in sorted({r["size"] for r in report["throughput"]}):
        t = _tput(report, size)
        tape = t.get(TAPE)
        rows = []
        for k in _order(report, set(t)):
            cells = [_name(report, k)]
            for op in OPS:
                x, mine = _rate_of(t[k], op), _rate_of(tape, op)
                cells += [rate(x) if x else "", ratio(mine / x) if x and mine and k != TAPE else ""]
            rows.append(cells)
        head = ["subject"] + [c for op in OPS for c in (f"{OP_TITLES[op]}/s", "tape ÷")]
        lines += [f"**{size_name(size)}**", "", *_table(head, rows), ""]
    return lines


def latency_tables(report: dict[str, Any]) -> list[str]:
    """Percentiles at 100 B for each (op, mode), then p99.9 by payload size."""
    lines: list[str] = []
    kinds = [("write", "fixed-rate"), ("write", "full-speed"), ("read", "full-speed")]
    sizes = sorted({r["size"] for r in report["latency"]})
    for op, mode in kinds:
        by = {(r["subject"], r["size"]): r for r in report["latency"] if r["op"] == op and r["mode"] == mode}
        if not by:
            continue
        at = {k: r for (k, s), r in by.items() if s == GOAL_SIZE}
        rate_txt = f" at {report['settings']['rate']:g}/s, timed from each call's intended start" if mode == "fixed-rate" else ""
        lines += [f"**{op}, {mode}{rate_txt}** (µs)", ""]
        rows = []
        for k in _order(report, {s for s, _ in by}):
            r = at.get(k)
            cells = [_name(report, k)]
            cells += [us(r["us"][p]) for p in ("p50", "p90", "p99", "p99.9", "p99.99", "max")] if r else [""] * 6
            cells.append(f"{r['us']['count']:,.0f}" if r else "")
            cells += [us(by[(k, s)]["us"]["p99.9"]) if (k, s) in by else "" for s in sizes if s != GOAL_SIZE]
            rows.append(cells)
        head = ["subject", "p50", "p90", "p99", "p99.9", "p99.99", "max", "samples"]
        head += [f"p99.9 at {size_name(s)}" for s in sizes if s != GOAL_SIZE]
        lines += [f"At {GOAL_SIZE} B:", "", *_table(head, rows), ""]
    return lines


def xproc_table(report: dict[str, Any]) -> list[str]:
    """Writer process -> reader process latency."""
    x = report["xproc"]
    if not x or not x["runs"]:
        return []
    rows = []
    for r in x["runs"]:
        how = "tailer spins" if r["spin"] else ("tailer sleeps, woken by the futex" if r["subject"].startswith("tape")
                                                else "reader polls, 0.1 ms nap when empty")
        rows.append([_name(report, r["subject"]), how] + [us(r["us"][p]) for p in ("p50", "p90", "p99", "p99.9", "p99.99", "max")]
                    + [f"{r['us']['count']:,.0f}"])
    lines = _table(["subject", "reader", "p50", "p90", "p99", "p99.9", "p99.99", "max", "messages"], rows, 2)
    return [*lines, "", f"Not able to follow a writer in another process: {x['not_supported']}.", ""]


def disk_table(report: dict[str, Any]) -> list[str]:
    """Bytes allocated on disk per entry, by payload size."""
    sizes = sorted({r["size"] for r in report["throughput"] if "disk" in r})
    keys = {r["subject"] for r in report["throughput"] if "disk" in r}
    by = {(r["subject"], r["size"]): r["disk"] for r in report["throughput"] if "disk" in r}
    rows = []
    for k in _order(report, keys):
        rows.append([_name(report, k)] + [f"{by[(k, s)]['per_entry']:,.0f} ({by[(k, s)]['entries']:,})" if (k, s) in by else ""
                                          for s in sizes])
    lines = _table(["subject"] + [size_name(s) for s in sizes], rows)
    logs = [f"{size_name(s)}: {by[(TAPE, s)]['log_per_entry']:.0f}" for s in sizes if (TAPE, s) in by]
    if logs:
        lines += ["", "tape's entries themselves (header and padding included) take " + ", ".join(logs) + " bytes."]
    return lines


def crash_table(report: dict[str, Any]) -> list[str]:
    """kill -9 of the writer: acknowledged and kept, per subject."""
    rows = []
    for c in report["crash"]:
        pct = "" if c["kept_pct"] is None else f"{c['kept_pct']:.1f}%"
        rows.append([_name(report, c["subject"]), str(c["kills"]), f"{c['acked']:,}", f"{c['kept']:,}", pct,
                     str(c["rounds_with_loss"]), str(c["duplicates"]), str(c["out_of_order"]), str(c["reopen_failures"])])
    return _table(["subject", "kills", "acknowledged", "kept", "kept %", "kills with loss", "duplicates",
                   "rounds out of order", "failed to reopen and write"], rows)


def markdown(report: dict[str, Any]) -> str:
    """The whole report: run, machine, goals, tables, how each subject was called."""
    m = report["machine"]
    st = report["settings"]
    lines = [
        f"# tape and its peers ({report['mode']} run)",
        "",
        f"`{report['command']}` at {report['started']}, commit {report['commit']}, {report['seconds']:.0f} s.",
        "",
        f"Machine: {m['cpu']} ({m['cpu_mhz']} MHz), {m['cores']} cores, {m['memory_gb']} GB, Linux {m['kernel']}, "
        f"queues on {m['filesystem']} ({m['run_dir']}); Python {m['python']}; tape {m['tape']['version']} "
        f"({m['tape']['build']} build); " + ", ".join(f"{k} {v}" for k, v in m["packages"].items()) + ".",
        f"Load average (1, 5, 15 min): {report['load_before']} before, {report['load_after']} after"
        + "".join(f"; after {k} {v}" for k, v in report["load"].items()) + ".",
        "",
        f"Each throughput figure is one time-boxed measurement ({st['box']:g} s or {st['cap_items']:,} items "
        f"or {st['cap_bytes'] >> 20} MiB, whichever comes first; at {', '.join(f'{n:,} B' for n in st['repeat_sizes'])} "
        f"the median of {st['repeats']} rounds that interleave the subjects, each first once, "
        "with the lowest and highest in brackets; each measurement after the same warm-up: "
        f"{st['warm_bytes'] >> 20} MiB of fresh memory touched and freed). "
        "Ratios (tape ÷) are tape (raw)'s rate over the subject's for the same operation, from this run.",
        "",
    ]
    if report["goals"]:
        rows = [[g["goal"], f"{g['figure']:,.1f}{g['unit']}",
                 "met" if g["met"] else "**missed**", g["detail"]] for g in report["goals"]]
        lines += ["## Goals (issue 8)", "", *_table(["goal", "figure", "", "from"], rows, 9), ""]
    if report["throughput"]:
        lines += [f"## At {GOAL_SIZE} B", "", *headline(report), "",
                  "## Throughput by payload size (items/s)", "", *throughput_tables(report),
                  "## Bytes on disk per entry", "", "Allocated blocks after the write test, per entry (entries written in brackets).", "",
                  *disk_table(report), ""]
    if report["latency"]:
        lines += ["## Latency per operation (HdrHistogram)", "",
                  f"Full speed: {st['lat_box']:g} s (or {st['lat_cap']:,} calls) of back-to-back calls, each timed with "
                  "perf_counter_ns(), less the median cost of an empty timing pair. Fixed rate: "
                  f"{st['rate']:g} calls a second for {st['rate_box']:g} s ({st['rate_box_100']:g} s at 100 B), each timed from the moment it was due, "
                  "so a stall also counts against the calls that had to wait (coordinated omission corrected).", "",
                  *latency_tables(report)]
    if report["xproc"]:
        lines += ["## Writer process to reader process", "",
                  f"{st['xproc_rate']:g} messages of 100 B a second for {st['xproc_seconds']:g} s; latency = the "
                  "reader's clock when it has the message - the moment the writer was due to send it.", "",
                  *xproc_table(report)]
    if report["crash"]:
        lines += ["## kill -9 of the writer", "",
                  f"Each kill: a writer process writes numbered 100 B entries as fast as it can and reports each "
                  f"number on a pipe once write returns; SIGKILL within {st['kill_within']:g} s of the first report; "
                  "a fresh process reads the queue and writes one more entry.", "", *crash_table(report), ""]
    lines += ["## How each subject was called", "",
              *_table(["subject", "write / batch write / read / bulk read", "cross-process reader"],
                      [[d["name"], d["how"], d["cross_process"]] for d in report["subjects"].values()], 9), ""]
    return "\n".join(lines)
