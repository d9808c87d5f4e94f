"""PNG plots of a `python -m bench.compare` report (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator  # noqa: E402

from bench.compare_report import OP_TITLES, OPS, size_name  # noqa: E402

# tape in blues, the peers in warm colours, the floors in greys.
_COLOURS = {
    "tape-raw": "#0b4f9c", "tape-msgpack": "#3d8fd6", "tape-raw-sync": "#8cc0ee",
    "queuelib": "#d95f02", "persist-file": "#e6ab02", "persist-sqlite": "#a6761d",
    "diskcache": "#e7298a", "litequeue": "#7570b3",
    "floor-file": "#999999", "floor-mmap": "#666666", "floor-memcpy-c": "#222222",
}
_DPI = 110


def _colour(key: str) -> str:
    return _COLOURS.get(key, "#1b9e77")


def _name(report: dict[str, Any], key: str) -> str:
    return str(report["subjects"].get(key, {}).get("name", key))


def _style(report: dict[str, Any], key: str) -> dict[str, Any]:
    kind = report["subjects"].get(key, {}).get("kind")
    return {"color": _colour(key), "linestyle": "--" if kind == "floor" else "-",
            "linewidth": 2.2 if kind == "tape" else 1.4}


def _rate_label(x: float, _: object = None) -> str:
    for div, unit in ((1e6, "M"), (1e3, "k")):
        if x >= div:
            return f"{x / div:g} {unit}"
    return f"{x:g}"


def throughput(report: dict[str, Any], path: Path) -> Path | None:
    """Four panels (write, batch write, read, bulk read): bars per payload size, one per subject, log scale."""
    recs = report["throughput"]
    if not recs:
        return None
    sizes = sorted({r["size"] for r in recs})
    keys = [k for k in report["subjects"] if any(r["subject"] == k for r in recs)]
    by = {(r["subject"], r["size"]): r for r in recs}
    fig, axes = plt.subplots(2, 2, figsize=(15, 9.5), sharey=True)
    width = 0.85 / len(keys)
    for ax, op in zip(axes.flat, OPS):
        for i, k in enumerate(keys):
            xs, ys = [], []
            for j, s in enumerate(sizes):
                r = by.get((k, s))
                if r is not None and op in r and r[op]["rate"] > 0:
                    xs.append(j - 0.425 + (i + 0.5) * width)
                    ys.append(r[op]["rate"])
            ax.bar(xs, ys, width, color=_colour(k), label=_name(report, k),
                   hatch="//" if report["subjects"][k]["kind"] == "floor" else None, edgecolor="white", linewidth=0.3)
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FuncFormatter(_rate_label))
        ax.set_xticks(range(len(sizes)), [size_name(s) for s in sizes])
        ax.set_title(f"{OP_TITLES[op]} (items/s, log scale)")
        ax.grid(axis="y", which="major", alpha=0.3)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=6, fontsize=9, frameon=False)
    fig.suptitle(f"Throughput: tape and the Python queues people use instead ({report['machine']['cores']} cores, "
                 f"{report['machine']['filesystem']}, {report['mode']} run)")
    fig.tight_layout(rect=(0, 0.07, 1, 0.97))
    fig.savefig(path, dpi=_DPI)
    plt.close(fig)
    return path


def _percentile_axis(ax: Any, top: float) -> None:
    """x: the percentile on a log scale of 1 / (1 - p)."""
    ax.set_xscale("log")
    ticks = [p for p in (50, 90, 99, 99.9, 99.99, 99.999, 99.9999) if 1 / (1 - p / 100) <= top * 1.01]
    ax.xaxis.set_major_locator(FixedLocator([1 / (1 - p / 100) for p in ticks]))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{100 - 100 / x:.6g}%"))
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}"))
    ax.grid(which="major", alpha=0.3)


def _curves(ax: Any, series: list[tuple[dict[str, Any], str, dict[str, Any]]]) -> None:
    """Plot (record, label, line style) percentile curves; the max (100%) is left to the tables."""
    top = 2.0
    for r, label, style in series:
        pts = [(1 / (1 - p / 100), max(v, 0.01)) for p, v in r["curve"] if p < 100]
        if pts:
            top = max(top, pts[-1][0])
            ax.plot([x for x, _ in pts], [y for _, y in pts], label=label, **style)
    _percentile_axis(ax, top)


def latency(report: dict[str, Any], op: str, mode: str, path: Path) -> Path | None:
    """Percentile curves per payload size (one panel each) for one (op, mode)."""
    recs = [r for r in report["latency"] if r["op"] == op and r["mode"] == mode]
    if not recs:
        return None
    sizes = sorted({r["size"] for r in recs})
    cols = 2 if len(sizes) > 1 else 1
    rows = (len(sizes) + 1) // 2
    fig, axes = plt.subplots(rows, cols, figsize=(7.5 * cols, 4.8 * rows), squeeze=False)
    for ax, s in zip(axes.flat, sizes):
        _curves(ax, [(r, _name(report, r["subject"]), _style(report, r["subject"])) for r in recs if r["size"] == s])
        ax.set_title(f"{size_name(s)}")
        ax.set_ylabel("µs (log)")
    for ax in list(axes.flat)[len(sizes):]:
        ax.set_visible(False)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=5, fontsize=9, frameon=False)
    how = (f"at {recs[0]['rate']:g}/s, from each call's intended start" if mode == "fixed-rate"
           else "back to back, each call timed")
    fig.suptitle(f"{op}() latency by percentile, {how}")
    fig.tight_layout(rect=(0, 0.08, 1, 0.96))
    fig.savefig(path, dpi=_DPI)
    plt.close(fig)
    return path


def crossprocess(report: dict[str, Any], path: Path) -> Path | None:
    """Writer process -> reader process latency by percentile."""
    runs = report["xproc"].get("runs") if report["xproc"] else None
    if not runs:
        return None
    fig, ax = plt.subplots(figsize=(8, 5))
    _curves(ax, [(r, _name(report, r["subject"]) + (" (tailer spins)" if r["spin"] else ""),
                  {**_style(report, r["subject"]), **({"linestyle": ":"} if r["spin"] else {})}) for r in runs])
    ax.set_ylabel("µs (log)")
    ax.legend(fontsize=9)
    ax.set_title(f"Writer process → reader process, 100 B at {runs[0]['rate']:g}/s")
    fig.tight_layout()
    fig.savefig(path, dpi=_DPI)
    plt.close(fig)
    return path


def plot_all(report: dict[str, Any], out: Path) -> list[Path]:
    """Every plot the report has data for; the paths written."""
    made = [
        throughput(report, out / "throughput.png"),
        latency(report, "write", "fixed-rate", out / "latency-write-fixed-rate.png"),
        latency(report, "write", "full-speed", out / "latency-write-full-speed.png"),
        latency(report, "read", "full-speed", out / "latency-read-full-speed.png"),
        crossprocess(report, out / "latency-crossprocess.png"),
    ]
    return [p for p in made if p is not None]
