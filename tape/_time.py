"""Times and durations, written once: ns since the epoch <-> datetime, ISO 8601 text,
and the durations and times people type (30m, 2h, 2025-11-21T09:00Z, 10m ago).

Timestamps are ints of ns since the epoch everywhere in tape; a datetime
without a zone means local time, as in the standard library.
"""

from __future__ import annotations

import decimal
import functools
import math
import re
import time
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone

from tape.errors import ArgumentError, ArgumentTypeError

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def to_ns(when: datetime | float) -> int:
    """A datetime or epoch seconds (int or float), as ns since the epoch."""
    if isinstance(when, datetime):
        aware = when if when.tzinfo is not None else when.astimezone()
        return (aware - EPOCH) // timedelta(microseconds=1) * 1000
    if isinstance(when, int) and not isinstance(when, bool):
        return when * 1_000_000_000
    if isinstance(when, float):
        if not math.isfinite(when):
            raise ArgumentError(f"a time must be finite, not {when}")
        whole = int(when)
        return whole * 1_000_000_000 + round((when - whole) * 1e9)
    raise ArgumentTypeError(f"a time must be a datetime or epoch seconds, not {type(when).__name__}")


def to_datetime(ns: int) -> datetime:
    """ns since the epoch as an aware datetime in UTC (to the microsecond)."""
    return EPOCH + timedelta(microseconds=ns // 1000)


def duration_ns(seconds: float | timedelta, what: str) -> int:
    """A duration of `seconds` (a number or a timedelta) in ns, not negative."""
    if isinstance(seconds, timedelta):
        ns = seconds // timedelta(microseconds=1) * 1000
    elif isinstance(seconds, (int, float)) and not isinstance(seconds, bool):
        if not math.isfinite(seconds):
            raise ArgumentError(f"{what} must be a finite number of seconds, not {seconds}")
        ns = int(seconds * 1_000_000_000)
    else:
        raise ArgumentTypeError(f"{what} must be seconds or a timedelta, not {type(seconds).__name__}")
    if ns < 0:
        raise ArgumentError(f"{what} must not be negative")
    return ns


@functools.lru_cache(maxsize=256)
def _utc_second(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))


def iso_time(ns: int) -> str:
    """ns since the epoch as ISO 8601 UTC, to the nanosecond: 2025-11-21T00:00:00.000000000Z."""
    return iso_times([ns])[0]


def iso_times(stamps: Sequence[int]) -> list[str]:
    """iso_time of each of `stamps`."""
    return [f"{_utc_second(ns // 1_000_000_000)}.{ns % 1_000_000_000:09d}Z" for ns in stamps]


_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([smhdw]?)", re.IGNORECASE)
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_FRACTION = re.compile(r"(?<=\d\d:\d\d:\d\d)[.,](\d+)")


def parse_duration(text: str) -> float:
    """Seconds in `text`: a number of seconds, or with a unit: 90s, 30m, 2h, 7d, 1w."""
    m = _DURATION.fullmatch(text.strip())
    if m is None:
        raise ValueError(f"{text!r} is not a duration (seconds, or like 30m, 2h, 7d)")
    return float(m[1]) * _UNIT_SECONDS[m[2].lower()]


def parse_time(text: str, now_ns: int) -> int:
    """ns since the epoch of `text`: ISO 8601 (without a zone: local time), epoch
    seconds, or a duration (10m, 2h) before `now_ns`."""
    text = text.strip()
    if _DURATION.fullmatch(text) and not text[-1].isdigit():
        return now_ns - int(parse_duration(text) * 1e9)
    try:
        return int(decimal.Decimal(text) * 1_000_000_000)
    except (decimal.InvalidOperation, ValueError, OverflowError):
        pass
    # datetime keeps microseconds: take the fraction apart to keep nanoseconds.
    fraction = _FRACTION.search(text)
    ns = 0
    if fraction is not None:
        ns = int(fraction[1][:9].ljust(9, "0"))
        text = text[: fraction.start()] + text[fraction.end() :]
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a time (ISO 8601, epoch seconds, or like 10m ago)") from None
    if when.tzinfo is None:
        when = when.astimezone()
    return (when - EPOCH) // timedelta(seconds=1) * 1_000_000_000 + ns
