"""HdrHistogram (the `hdrhistogram` package) for latency samples: percentiles and curves in microseconds.

Samples are collected in an array of ns first and recorded afterwards, so that
recording costs nothing inside the timed loops.
"""

from __future__ import annotations

from array import array
from typing import Any

import numpy as np
from hdrh.histogram import HdrHistogram

PERCENTILES = (50.0, 90.0, 99.0, 99.9, 99.99)
# Points of a percentile curve: 0, 50, 75, 87.5, ... up to 99.9999 (eight a decade), then max.
_CURVE = [0.0] + [100.0 * (1 - 10 ** (-k / 8)) for k in range(2, 49)]


def histogram(samples_ns: array[int], less_ns: int = 0) -> Any:
    """An HdrHistogram (1 ns to 1 hour, 3 significant digits) of the samples less `less_ns`, floored at 0."""
    h = HdrHistogram(1, 3_600_000_000_000, 3)
    values, counts = np.unique(np.maximum(np.frombuffer(samples_ns, dtype=np.int64) - less_ns, 0), return_counts=True)
    for v, c in zip(values.tolist(), counts.tolist()):
        h.record_value(max(v, 1), c)
    return h


def summary(h: Any) -> dict[str, float]:
    """count, mean, p50 ... p99.99 and max, in us."""
    out: dict[str, float] = {"count": h.get_total_count(), "mean": round(h.get_mean_value() / 1000, 4)}
    for p in PERCENTILES:
        out[f"p{p:g}"] = h.get_value_at_percentile(p) / 1000
    out["max"] = h.get_max_value() / 1000
    return out


def curve(h: Any) -> list[list[float]]:
    """[percentile, us] points of the percentile distribution, up to what the count supports, then max."""
    n = h.get_total_count()
    points = [[round(p, 6), h.get_value_at_percentile(p) / 1000] for p in _CURVE if n * (100 - p) / 100 >= 1]
    points.append([100.0, h.get_max_value() / 1000])
    return points
