"""The `tape` command line: dump, tail, info, verify, purge and load a queue.

A thin shell over the Python API: each command opens a tape.Queue, calls what a
user of the library would call and prints the result. The command's output goes
to stdout, messages for people to stderr. Exit status: 0 success, 1 a problem
found (damage, a missing queue, a tape error), 2 bad usage.

Values are shown as JSON. What JSON cannot hold carries a marker, which `load`
reads back: bytes as {"$base64": "..."}, a map with keys other than strings (or
whose only key looks like a marker) as {"$map": [[key, value], ...]}; dates,
times, decimals and UUIDs as strings; anything else as {"$repr": "..."} (for
people only: load takes it as a plain object).
"""

from __future__ import annotations

import base64
import contextlib
import decimal
import functools
import io
import itertools
import json
import multiprocessing
import os
import re
import signal
import stat
import struct
import sys
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from datetime import date, datetime, timedelta, timezone
from datetime import time as clock_time
from typing import IO, Any, NamedTuple

import click

import tape

_INT64_MAX = 2**63 - 1
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MARKERS = frozenset({"$base64", "$map", "$repr"})
_SCALARS = frozenset({str, int, float, bool})
_SEQUENCES = frozenset({list, tuple})
_CONTAINERS = (dict, list, tuple)
_KEYS = frozenset({str})
_RECORD_KEYS = frozenset({"index", "timestamp", "value"})
_CHUNK = 1024  # entries formatted, or lines loaded, per write
_FOLLOW_WAIT = 1.0  # seconds a follow waits for an entry in one call
_REDRAW = 0.1  # seconds between redraws of a progress bar
_RAW_LENGTH = struct.Struct("<I")  # --format raw: each payload's length prefix

# -- values as JSON, and back -------------------------------------------------------


def to_json(value: Any) -> Any:
    """`value` as JSON can hold it, with markers for what it cannot (see the module doc)."""
    if type(value) in _SCALARS or value is None or isinstance(value, (str, int, float)):
        return value
    if isinstance(value, dict):
        if _plain_keys(value):
            return {k: to_json(v) for k, v in value.items()}
        return {"$map": [[to_json(k), to_json(v)] for k, v in value.items()]}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    return _marker(value)


def _marker(value: Any) -> Any:
    """What JSON shows for a value of a type it does not have."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"$base64": base64.b64encode(value).decode("ascii")}
    if isinstance(value, (date, clock_time)):  # a datetime is a date
        return value.isoformat()
    if isinstance(value, (decimal.Decimal, uuid.UUID)):
        return str(value)
    return {"$repr": repr(value)}


def _plain_keys(d: dict[Any, Any]) -> bool:
    """True when the keys of `d` are strings and it is not one that looks like a marker."""
    return all(type(k) is str for k in d) and not (len(d) == 1 and next(iter(d)) in _MARKERS)


def _nothing_to_mark(values: Sequence[Any]) -> bool:
    """True when no map inside any of `values` must be written as a $map (see _plain_keys).

    Looks at all the values a level at a time, by type, which is quick for many
    values of one shape; says False, when in doubt, for subclasses of dict,
    list or tuple.
    """
    level = values
    while level:
        types = set(map(type, level))
        if any(issubclass(t, _CONTAINERS) for t in types.difference(_CONTAINERS)):
            return False
        dicts = [v for v in level if type(v) is dict] if dict in types else []
        if not _KEYS.issuperset(map(type, itertools.chain.from_iterable(dicts))):
            return False
        if 1 in set(map(len, dicts)) and not all(map(_plain_keys, dicts)):
            return False
        sequences = [v for v in level if type(v) in _SEQUENCES] if not types.isdisjoint(_SEQUENCES) else []
        level = [*itertools.chain.from_iterable(map(dict.values, dicts)), *itertools.chain.from_iterable(sequences)]
    return True


def _from_json_object(obj: dict[str, Any]) -> Any:
    """json.loads' object_hook: undo the $base64 and $map markers."""
    if len(obj) == 1:
        ((key, inner),) = obj.items()
        if key == "$base64" and isinstance(inner, str):
            return base64.b64decode(inner, validate=True)
        if key == "$map" and isinstance(inner, list):
            pairs = [(_hashable(k), v) for k, v in inner]
            return dict(pairs)
    return obj


def _hashable(key: Any) -> Any:
    """A map key read from JSON: arrays become tuples (msgpack keys may be arrays)."""
    return tuple(map(_hashable, key)) if isinstance(key, list) else key


def from_json_line(line: bytes) -> Any:
    """The value of one input line of `load`: a JSON value, or a record as `dump` writes it."""
    try:
        value = json.loads(line, object_hook=_from_json_object)
    except TypeError as exc:  # a $map with a key that cannot be a key, or pairs that are not pairs
        raise ValueError(str(exc)) from None
    if isinstance(value, dict) and value.keys() == _RECORD_KEYS:
        return value["value"]
    return value


# -- times, durations and sizes --------------------------------------------------------


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
_SIZE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([kmgt]?)(?:i?b)?", re.IGNORECASE)
_UNIT_BYTES = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_FRACTION = re.compile(r"(?<=\d\d:\d\d:\d\d)[.,](\d+)")


def parse_duration(text: str) -> float:
    """Seconds in `text`: a number of seconds, or with a unit: 90s, 30m, 2h, 7d, 1w."""
    m = _DURATION.fullmatch(text.strip())
    if m is None:
        raise ValueError(f"{text!r} is not a duration (seconds, or like 30m, 2h, 7d)")
    return float(m[1]) * _UNIT_SECONDS[m[2].lower()]


def parse_size(text: str) -> int:
    """Bytes in `text`: a number, or with a binary unit: 512K, 10M, 1.5G, 2T (also 10MiB, 10MB)."""
    m = _SIZE.fullmatch(text.strip())
    if m is None:
        raise ValueError(f"{text!r} is not a size (bytes, or like 512K, 10M, 2G)")
    return int(float(m[1]) * _UNIT_BYTES[m[2].lower()])


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
    return (when - _EPOCH) // timedelta(seconds=1) * 1_000_000_000 + ns


def _parsed(parse: Callable[[str], Any]) -> Callable[[click.Context, click.Parameter, str | None], Any]:
    """An option callback converting its text with `parse`: a ValueError is bad usage."""

    def convert(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
        if value is None:
            return None
        try:
            return parse(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None

    return convert


def _time_ago(text: str) -> int:
    """parse_time, relative to now."""
    return parse_time(text, time.time_ns())


def _codec_name(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Check a --codec option against the registered codecs."""
    if value is not None:
        try:
            tape.codecs.get(value)
        except tape.ArgumentError as exc:
            raise click.BadParameter(str(exc)) from None
    return value


def _size(n: int) -> str:
    """`n` bytes for people: 368 B, 1.5 KiB, 48.8 MiB."""
    if n < 1024:
        return f"{n} B"
    amount = float(n)
    for unit in ("KiB", "MiB", "GiB"):
        amount /= 1024
        if amount < 1024:
            break
    return f"{amount:.1f} {unit}"


# -- progress on stderr ------------------------------------------------------------------


_Progress = Callable[[int], None]


def _unseen(steps: int) -> None:
    """Progress that nobody is shown."""


@contextlib.contextmanager
def _progress(label: str, total: int | None, *, shown: bool = True) -> Iterator[_Progress]:
    """A function that advances a progress bar on stderr by a number of steps.

    The bar is drawn only when `shown` and stderr is a terminal, at most every
    _REDRAW seconds; with `total` None it shows a count instead.
    """
    if not (shown and sys.stderr.isatty()):
        yield _unseen
        return
    steps: Iterable[None] | None = itertools.repeat(None) if total is None else None
    with click.progressbar(steps, length=total, label=label, file=sys.stderr, show_pos=total is None) as bar:
        pending = 0
        due = time.monotonic() + _REDRAW

        def advance(n: int) -> None:
            nonlocal pending, due
            pending += n
            if time.monotonic() >= due:
                bar.update(pending)
                pending = 0
                due = time.monotonic() + _REDRAW

        try:
            yield advance
        finally:
            bar.update(pending)


def _is_file(stream: IO[Any]) -> bool:
    """True when `stream` is a regular file (not a terminal, a pipe or a device)."""
    try:
        return stat.S_ISREG(os.fstat(stream.fileno()).st_mode)
    except (OSError, ValueError):  # no file descriptor (a test's stream), or closed
        return False


def _file_size(stream: IO[Any]) -> int | None:
    """The size of `stream` when it is a regular file."""
    return os.fstat(stream.fileno()).st_size if _is_file(stream) else None


# -- output formats ------------------------------------------------------------------


_COMPACT = json.JSONEncoder(ensure_ascii=False, check_circular=False, default=_marker).encode
_INDENTED = json.JSONEncoder(ensure_ascii=False, check_circular=False, default=_marker, indent=2).encode


def _jsonable(values: Sequence[Any]) -> Sequence[Any]:
    """`values` as the encoders take them (they call _marker for what JSON has no type for)."""
    return values if _nothing_to_mark(values) else [to_json(v) for v in values]


# The values of a chunk are encoded in one call, this string between them, then split.
_SEPARATOR = "\x00tape\x00"
_SEPARATOR_JSON = ', "\\u0000tape\\u0000", '


def _values_json(values: Sequence[Any]) -> list[str]:
    """The compact JSON text of each of `values`."""
    if not values:
        return []
    items = [_SEPARATOR] * (2 * len(values) - 1)
    items[::2] = _jsonable(values)
    texts = _COMPACT(items)[1:-1].split(_SEPARATOR_JSON)
    # The separator's text shows inside a value's JSON only where a list in it
    # holds the separator after another item, which splits off one piece more:
    # as many pieces as values means each piece is one value's JSON.
    return texts if len(texts) == len(values) else list(map(_COMPACT, items[::2]))


def _utf8(text: str) -> bytes:
    # A lone surrogate (only inside a JSON string) becomes the JSON escape \udXXX.
    return text.encode(errors="backslashreplace")


def _jsonl(entries: list[tape.Entry]) -> bytes:
    indexes, stamps, values = zip(*entries) if entries else ((), (), ())
    lines = zip(indexes, iso_times(stamps), _values_json(values))
    return _utf8("".join([f'{{"index": {i}, "timestamp": "{t}", "value": {v}}}\n' for i, t, v in lines]))


def _pretty(entries: list[tape.Entry]) -> bytes:
    values = _jsonable([e.value for e in entries])
    return _utf8(
        "".join(
            [
                _INDENTED({"index": e.index, "timestamp": iso_time(e.timestamp), "value": value}) + "\n"
                for e, value in zip(entries, values)
            ]
        )
    )


def _raw(entries: list[tape.Entry]) -> bytes:
    return b"".join([_RAW_LENGTH.pack(len(e.value)) + e.value for e in entries])


_FORMATS: dict[str, Callable[[list[tape.Entry]], bytes]] = {"jsonl": _jsonl, "pretty": _pretty, "raw": _raw}
_Decode = Callable[[bytes], Any]


def _write(
    entries: Iterable[tape.Entry],
    fmt: str,
    out: IO[bytes],
    decode: _Decode | None = None,
    progress: _Progress = _unseen,
) -> None:
    """Write `entries` to `out` in format `fmt`, a chunk at a time, then flush.

    `decode` turns payloads (of a queue opened raw) into values first;
    `progress` is told how many entries went out.
    """
    format_chunk = _FORMATS[fmt]
    if decode is not None:
        entries = (e._replace(value=decode(e.value)) for e in entries)
    entries = iter(entries)
    chunk: list[tape.Entry] = []
    try:
        # extend() keeps what it took when the iterator raises (damage, Ctrl-C):
        # the finally clause writes it.
        while True:
            chunk.extend(itertools.islice(entries, _CHUNK))
            if len(chunk) < _CHUNK:
                break
            done, chunk = chunk, []
            out.write(format_chunk(done))
            progress(len(done))
    finally:
        out.write(format_chunk(chunk))
        out.flush()
        progress(len(chunk))


# -- reading a window of entries -----------------------------------------------------


class _Window(NamedTuple):
    """Inclusive bounds on index and timestamp (ns)."""

    lo_index: int = 0
    hi_index: int = _INT64_MAX
    lo_ns: int = 0
    hi_ns: int = _INT64_MAX


def _spans(cycles: list[tape.CycleInfo]) -> list[tuple[int, int]]:
    """(first, last) index of every cycle holding entries; indexes are dense within a cycle."""
    return [(c.first_index, c.last_index) for c in cycles if c.first_index is not None and c.last_index is not None]


def _first_at_or_after(cycles: list[tape.CycleInfo], index: int) -> int | None:
    """Index of the first entry at or after `index`."""
    return next((max(index, first) for first, last in _spans(cycles) if last >= index), None)


def _last_at_or_before(cycles: list[tape.CycleInfo], index: int) -> int | None:
    """Index of the last entry at or before `index`."""
    return next((min(index, last) for first, last in reversed(_spans(cycles)) if first <= index), None)


def _as_datetime(ns: int) -> datetime:
    return _EPOCH + timedelta(microseconds=ns // 1000)


def _place(q: tape.Queue, t: tape.Tailer, w: _Window, backward: bool) -> bool:
    """Move `t` to the first entry of `w` in its direction; False when `w` is empty.

    Times go through to_time(), which takes microseconds: the tailer may land a
    few entries outside the window, which _in_window then skips. Cycles are
    listed only for an index bound (Queue.cycles() fails on a damaged cycle).
    """
    if not backward:
        start = None
        if w.lo_index > 0:
            start = _first_at_or_after(q.cycles(), w.lo_index)
            if start is None:
                return False
        if w.lo_ns > 0:
            if not t.to_time(_as_datetime(w.lo_ns)) or t.index is None:
                return False
            start = t.index if start is None else max(start, t.index)
        return start is None or t.to_index(start)
    t.direction = "backward"
    end = None
    if w.hi_index < _INT64_MAX:
        end = _last_at_or_before(q.cycles(), w.hi_index)
        if end is None:
            return False
    # Reading starts at the first entry after the window's end in time, if any.
    if w.hi_ns < _INT64_MAX and t.to_time(_as_datetime(w.hi_ns) + timedelta(microseconds=1)) and t.index is not None:
        end = t.index if end is None else min(end, t.index)
    if end is None:
        t.to_end()
        return True
    return t.to_index(end)


def _spans_ahead(q: tape.Queue, t: tape.Tailer, w: _Window, backward: bool) -> list[tuple[int, int]] | None:
    """The spans (first, last index) of `w` the placed tailer `t` will read, oldest first.

    None when only reading tells: where a bound in time falls is found by
    reading (the tailer may even start a few entries outside it), and a
    damaged cycle cannot be listed.
    """
    if t.index is None or w.lo_ns > 0 or w.hi_ns < _INT64_MAX:
        return None
    lo, hi = (w.lo_index, t.index) if backward else (t.index, w.hi_index)
    try:
        spans = _spans(q.cycles())
    except tape.CorruptionError:
        return None
    return [(max(first, lo), min(last, hi)) for first, last in spans if first <= hi and last >= lo]


def _in_window(t: tape.Tailer, w: _Window, backward: bool) -> Iterator[tape.Entry]:
    """The tailer's entries inside `w`, until the first beyond it (indexes and times only grow)."""
    for e in t.entries():
        before = e.index < w.lo_index or e.timestamp < w.lo_ns
        after = e.index > w.hi_index or e.timestamp > w.hi_ns
        if after if backward else before:
            continue
        if before if backward else after:
            return
        yield e


# -- dumping with worker processes -----------------------------------------------------
#
# Decoding and JSON encoding take some 4 us per entry of a typical event
# (bench/dump.py), nearly all of it inside msgpack and the json module, so one
# process goes little faster than 250 k entries/s. A large window is cut into
# units of consecutive indexes that worker processes (one per core) read and
# format; this process writes their output in order, then reads on from there
# itself: that takes in entries written meanwhile and, where a worker stopped
# short, reports the problem as a dump in one process would.

_UNIT = 16_384  # entries a worker reads and formats in one go
_FEW = 4 * _UNIT  # a window of fewer entries is formatted in this process
_Unit = tuple[int, int]  # the index reading starts at, and how many entries to read

_reader: tuple[tape.Tailer, _Decode | None] | None = None  # a worker process's tailer and decoder


def _units(spans: list[tuple[int, int]], backward: bool, limit: int | None) -> list[_Unit]:
    """`spans` cut into units of at most _UNIT entries in reading order, `limit` entries in all."""
    units = []
    left = _INT64_MAX if limit is None else limit
    for first, last in reversed(spans) if backward else spans:
        size = last - first + 1
        for done in range(0, min(size, left), _UNIT):
            units.append((last - done if backward else first + done, min(_UNIT, size - done, left - done)))
        left -= min(size, left)
    return units


def _start_worker(path: str, fmt: str, codec: str | None, backward: bool) -> None:
    """Open the queue in a new worker process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the process writing the output
    global _reader
    q, decode = _open_reader(path, fmt, codec)
    t = q.tailer()
    if backward:
        t.direction = "backward"
    _reader = (t, decode)


def _format_unit(fmt: str, unit: _Unit) -> tuple[bytes, int]:
    """In a worker: the entries of `unit` in format `fmt`, and how many (fewer when reading failed)."""
    assert _reader is not None
    t, decode = _reader
    start, count = unit
    out = io.BytesIO()
    written = 0

    def tally(n: int) -> None:
        nonlocal written
        written += n

    try:
        if t.to_index(start):
            _write(itertools.islice(t.entries(), count), fmt, out, decode, tally)
    except tape.TapeError:
        pass  # the writing process reads this entry itself, and reports the problem
    return out.getvalue(), written


def _write_units(
    path: str, fmt: str, codec: str | None, backward: bool, units: list[_Unit], jobs: int,
    out: IO[bytes], progress: _Progress,
) -> tuple[int, int]:
    """Write `units`, formatted by `jobs` worker processes, in order, until one comes short.

    Returns how many entries were written and the index to read on from.
    """
    total = 0
    after = units[0][0]
    jobs = min(jobs, len(units))  # with fork, the pool starts all its workers at once
    with ProcessPoolExecutor(
        max_workers=jobs,
        mp_context=multiprocessing.get_context("fork"),
        initializer=_start_worker,
        initargs=(path, fmt, codec, backward),
    ) as pool:
        todo = iter(units)
        # At most two units a worker in flight: a slow reader of the output holds the rest back.
        running: deque[tuple[_Unit, Future[tuple[bytes, int]]]] = deque(
            (unit, pool.submit(_format_unit, fmt, unit)) for unit in itertools.islice(todo, 2 * jobs)
        )
        while running:
            (start, count), done = running.popleft()
            data, written = done.result()
            out.write(data)
            progress(written)
            total += written
            after = start - written if backward else start + written
            if written < count:
                for _, waiting in running:
                    waiting.cancel()
                break
            running.extend((unit, pool.submit(_format_unit, fmt, unit)) for unit in itertools.islice(todo, 1))
    return total, after


# -- opening queues, reporting errors ---------------------------------------------------


def _open(path: str) -> tape.Queue:
    """The queue at `path`, read-only, values undecoded: for commands that only look at it."""
    return tape.Queue(path, read_only=True, create=False, raw=True)


def _open_reader(path: str, fmt: str, codec: str | None) -> tuple[tape.Queue, _Decode | None]:
    """The queue at `path`, read-only, for dump and tail; and the decode function of --codec, if given.

    Values are decoded with the stored codec; with --format raw not at all;
    with --codec, the queue is opened raw and its payloads decoded here.
    """
    if fmt == "raw" and codec is not None:
        raise click.UsageError("--codec has no effect with --format raw")
    if fmt != "raw" and codec is None:
        try:
            return tape.Queue(path, read_only=True, create=False), None
        except tape.IncompatibleQueueError as exc:  # a codec not registered here, or pickle
            exc.add_note("--codec NAME decodes with the codec named, --format raw shows the stored bytes")
            raise
    q = _open(path)
    if codec is None:
        return q, None
    chosen = tape.codecs.get(codec)
    if codec == q.codec_name and isinstance(chosen, tape.codecs.ParamCodec):
        chosen = chosen.with_params(q.codec_params)  # e.g. avro: the queue's schema
    return q, chosen.decode


def _message(exc: BaseException) -> str:
    """One line for an expected error: what went wrong, where."""
    if isinstance(exc, tape.QueueNotFoundError):
        text = f"{exc.filename}: no queue there"
    elif isinstance(exc, OSError) and exc.strerror:
        text = f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    else:
        text = str(exc)
    return "; ".join([text, *getattr(exc, "__notes__", ())])


class _Group(click.Group):
    """The command group: a tape error or OSError becomes one line on stderr and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (tape.TapeError, OSError) as exc:
            if ctx.params.get("debug") or isinstance(exc, BrokenPipeError):
                raise  # click quietens a closed pipe (tape dump q | head)
            raise click.ClickException(_message(exc)) from exc


_path_argument = click.argument("path", type=click.Path(dir_okay=True, file_okay=False, path_type=str))
_format_option = click.option(
    "--format",
    "fmt",
    type=click.Choice(sorted(_FORMATS)),
    default="jsonl",
    show_default=True,
    help="jsonl: a JSON object per line; pretty: indented JSON; "
    "raw: each payload undecoded, after its length (4 bytes, unsigned, little-endian).",
)
_codec_option = click.option(
    "--codec", callback=_codec_name, metavar="NAME", help="Decode with this codec instead of the stored one."
)


# -- commands ---------------------------------------------------------------------------


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="tape", prog_name="tape")
@click.option("--debug", is_flag=True, help="Show a Python traceback on errors.")
def cli(debug: bool) -> None:
    """Look into and maintain tape queues.

    Exit status: 0 success, 1 a problem found (damage, a missing queue, a tape
    error), 2 bad usage.
    """


@cli.command(short_help="Print entries as JSON lines (or pretty, or raw).")
@_path_argument
@click.option("--from", "from_index", type=click.IntRange(0), metavar="INDEX", help="First index (inclusive).")
@click.option("--to", "to_index", type=click.IntRange(0), metavar="INDEX", help="Last index (inclusive).")
@click.option(
    "--since", callback=_parsed(_time_ago), metavar="TIME",
    help="First time (inclusive): ISO 8601, epoch seconds, or 10m (ago).",
)
@click.option("--until", callback=_parsed(_time_ago), metavar="TIME", help="Last time (inclusive), like --since.")
@click.option("--limit", type=click.IntRange(0), metavar="N", help="At most N entries.")
@click.option("--backward", is_flag=True, help="Newest first.")
@_format_option
@_codec_option
@click.option(
    "-j", "--jobs", type=click.IntRange(0), default=0, metavar="N",
    help="Processes formatting a large window (jsonl, pretty): 0 (the default) one per core, 1 only this one.",
)
def dump(
    path: str,
    from_index: int | None,
    to_index: int | None,
    since: int | None,
    until: int | None,
    limit: int | None,
    backward: bool,
    fmt: str,
    codec: str | None,
    jobs: int,
) -> None:
    """Print the entries of the queue at PATH: {"index", "timestamp", "value"} per line.

    Values are decoded with the queue's codec; bytes show as {"$base64": ...}.

    \b
    Examples:
      tape dump /data/orders --since 2025-11-21T09:00Z --limit 100
      tape dump /data/orders --from 7224046387200 --format pretty
      tape dump /data/orders | tape load /tmp/copy -
    """
    window = _Window(
        0 if from_index is None else from_index,
        _INT64_MAX if to_index is None else to_index,
        0 if since is None else since,
        _INT64_MAX if until is None else until,
    )
    q, decode = _open_reader(path, fmt, codec)
    with q:
        t = q.tailer()
        if not _place(q, t, window, backward):
            return
        out = sys.stdout.buffer
        shown = _is_file(out) and sys.stderr.isatty()
        jobs = jobs or len(os.sched_getaffinity(0))
        helped = jobs > 1 and fmt != "raw" and (limit is None or limit >= _FEW)  # raw is quick alone
        spans = _spans_ahead(q, t, window, backward) if shown or helped else None
        units = [] if spans is None else _units(spans, backward, limit)
        total = None if spans is None else sum(count for _, count in units)
        with _progress("dumping", total, shown=shown) as progress:
            if helped and total is not None and total >= _FEW:
                written, after = _write_units(path, fmt, codec, backward, units, jobs, out, progress)
                limit = None if limit is None else limit - written
                window = window._replace(hi_index=after) if backward else window._replace(lo_index=after)
                if not _place(q, t, window, backward):
                    return
            entries = t.entries() if window == _Window() else _in_window(t, window, backward)
            _write(itertools.islice(entries, limit), fmt, out, decode, progress)


@cli.command(short_help="Print the last entries; -f follows new ones.")
@_path_argument
@click.option("-n", "--lines", "count", type=click.IntRange(0), default=10, show_default=True, help="How many.")
@click.option("-f", "--follow", is_flag=True, help="Then print new entries as they come, until Ctrl-C.")
@_format_option
@_codec_option
def tail(path: str, count: int, follow: bool, fmt: str, codec: str | None) -> None:
    """Print the last entries of the queue at PATH, oldest first, like dump.

    \b
    Examples:
      tape tail /data/orders -n 5
      tape tail -f /data/orders
    """
    out = sys.stdout.buffer
    q, decode = _open_reader(path, fmt, codec)
    with q:
        with q.tailer() as back:
            back.direction = "backward"
            back.to_end()
            newest = list(itertools.islice(back.entries(), count))
        if not follow:
            _write(reversed(newest), fmt, out, decode)
            return
        t = q.tailer(start=newest[-1].index if newest else "end")
        try:
            _write(t.entries(), fmt, out, decode)
            while True:
                entry = t.read_entry(timeout=_FOLLOW_WAIT)
                if entry is not None:
                    _write(itertools.chain((entry,), t.entries()), fmt, out, decode)
        except KeyboardInterrupt:
            pass  # Ctrl-C is how a follow ends: not an error


@cli.command(short_help="Describe a queue: settings, cycle files, tailers.")
@_path_argument
@click.option("--json", "as_json", is_flag=True, help="Print Queue.describe() as JSON.")
def info(path: str, as_json: bool) -> None:
    """Describe the queue at PATH: settings, cycle files, sizes, indexes, named tailers.

    \b
    Examples:
      tape info /data/orders
      tape info /data/orders --json | jq .entries
    """
    with _open(path) as q:
        described = q.describe()
        if as_json:
            click.echo(json.dumps(described, indent=2))
            return
        times = _cycle_times(q)
    click.echo(_info_text(described, times, _on_disk(path)))


def _on_disk(path: str) -> int:
    """Bytes the files of the queue at `path` take on disk: their allocated blocks, as du counts."""
    total = 0
    with os.scandir(path) as files:
        for f in files:
            try:
                total += f.stat(follow_symlinks=False).st_blocks * 512
            except FileNotFoundError:  # removed since it was listed (a purge)
                pass
    return total


def _cycle_times(q: tape.Queue) -> dict[int, tuple[int, int]]:
    """cycle -> timestamps of its first and last entries (damaged cycles are left out); `q` is raw."""
    times = {}
    with q.tailer() as t:
        for c in q.cycles():
            if c.first_index is None or c.last_index is None:
                continue
            try:
                first = t.to_index(c.first_index) and t.read_entry()
                last = t.to_index(c.last_index) and t.read_entry()
            except tape.CorruptionError:
                continue
            if first and last:
                times[c.cycle] = (first.timestamp, last.timestamp)
    return times


def _info_text(d: dict[str, Any], times: dict[int, tuple[int, int]], on_disk: int) -> str:
    """tape info's summary for people, from Queue.describe(), the cycles' times and the bytes on disk."""
    cycles = d["cycles"]
    first_ns = min((a for a, _ in times.values()), default=None)
    last_ns = max((b for _, b in times.values()), default=None)
    rows = [
        ("path", d["path"]),
        ("format", f"version {d['format_version']}"),
        ("roll cycle", d["roll_cycle"]),
        ("codec", d["codec"]),
        ("created", d["created"]),
        ("entries", str(d["entries"])),
        ("bytes", f"{_size(d['bytes'])} of entries"),
        ("on disk", _size(on_disk)),
        ("first index", str(d["first_index"])),
        ("last index", str(d["last_index"])),
        ("first entry", "-" if first_ns is None else iso_time(first_ns)),
        ("last entry", "-" if last_ns is None else iso_time(last_ns)),
        ("cycle files", str(len(cycles))),
    ]
    damaged = sum(c["damaged"] for c in cycles)
    if damaged:
        rows.append(("damaged", f"{damaged} cycle file{'s' if damaged > 1 else ''} (counts from headers; see tape verify)"))
    lines = _table(rows)
    if cycles:
        header = ("cycle", "file", "entries", "bytes", "first index", "last index", "first time", "last time")
        table: list[tuple[str, ...]] = [header]
        for c in cycles:
            span = times.get(c["cycle"])
            table.append(
                (
                    str(c["cycle"]),
                    c["path"].rsplit("/", 1)[-1] + (" (damaged)" if c["damaged"] else ""),
                    str(c["entries"]),
                    _size(c["bytes"]),
                    "-" if c["first_index"] is None else str(c["first_index"]),
                    "-" if c["last_index"] is None else str(c["last_index"]),
                    "-" if span is None else iso_time(span[0]),
                    "-" if span is None else iso_time(span[1]),
                )
            )
        lines += ["  " + line for line in _table(table)]
    named = d["named_tailers"]
    lines += _table([("named tailers", str(len(named)))])
    if named:
        table = [("name", "next index", "behind")]
        for name, nxt in sorted(named.items()):
            behind = sum(_entries_from(c, nxt) for c in cycles)
            table.append((name, "start" if nxt is None else str(nxt), str(behind)))
        lines += ["  " + line for line in _table(table)]
    return "\n".join(lines)


def _entries_from(c: dict[str, Any], index: int | None) -> int:
    """How many entries of cycle `c` are at or after `index` (None: all)."""
    first: int | None = c["first_index"]
    last: int | None = c["last_index"]
    if first is None or last is None:
        return 0
    if index is None or index <= first:
        return last - first + 1
    return max(0, last - index + 1)


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
    """Rows as lines of left-aligned columns."""
    widths = [max(len(r[k]) for r in rows) for k in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]


@cli.command(short_help="Check a queue for damage (exit 1 if any).")
@_path_argument
@click.option(
    "--strict/--salvage", default=True,
    help="Stop in a cycle file at its first problem (the default), or go on past damage and count what is intact.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
def verify(ctx: click.Context, path: str, strict: bool, as_json: bool) -> None:
    """Check every cycle file of the queue at PATH: headers, checksums, index, ordering.

    Prints the report; exit status 1 when anything is damaged, with the file,
    the offset and the problem on stderr.

    \b
    Example:
      tape verify /data/orders || tape verify /data/orders --salvage
    """
    with _open(path) as q:
        shown = sys.stderr.isatty()
        total = sum(c.bytes for c in q.cycles()) if shown else None
        with _progress("verifying", total, shown=shown) as progress:
            walked = 0

            def advance(now: int) -> None:
                nonlocal walked
                progress(now - walked)
                walked = now

            report = q.verify(salvage=not strict, progress=advance if shown else None)
        where = _cycle_path(q, report.bad_cycle)
    if as_json:
        click.echo(json.dumps({**report._asdict(), "bad_path": where}, indent=2))
    else:
        click.echo("\n".join(_verify_text(report, where)))
    if not report.ok:
        click.echo(f"Error: {path}: damaged: {where} at offset {report.bad_offset}: {report.message}", err=True)
        ctx.exit(1)


def _cycle_path(q: tape.Queue, cycle: int | None) -> str | None:
    """The file of `cycle`, or None."""
    if cycle is None:
        return None
    try:
        return next((c.path for c in q.cycles() if c.cycle == cycle), f"cycle {cycle}")
    except tape.CorruptionError:
        return f"cycle {cycle}"


def _verify_text(r: tape.VerifyReport, where: str | None) -> list[str]:
    """tape verify's report for people."""
    rows = [
        ("status", "ok" if r.ok else "damaged"),
        ("cycle files", str(r.cycles)),
        ("entries", f"{r.entries} intact"),
        ("bytes", _size(r.bytes)),
        ("last good index", str(r.last_good_index)),
        ("problems", str(r.problems)),
        ("skipped", str(r.skipped)),
        ("unsealed cycles", f"{r.unsealed} (harmless)"),
        ("abandoned entries", f"{r.abandoned} (harmless)"),
    ]
    if not r.ok:
        rows.append(("first problem", f"{where} at offset {r.bad_offset}: {r.message}"))
    return _table(rows)


@cli.command(short_help="Clear a torn tail so writers can append again.")
@_path_argument
def repair(path: str) -> None:
    """Clear what follows the last intact entry of the newest cycle of the queue at PATH.

    After a power loss the last entries may be torn: readers stop before them
    and writers refuse to append. This clears them (nothing a reader could
    read) and prints how many bytes it cleared; run tape verify first to see
    what is damaged.

    \b
    Example:
      tape verify /data/orders || tape repair /data/orders
    """
    with tape.Queue(path, create=False, raw=True) as q:
        cleared = q.repair()
    click.echo(f"cleared {_size(cleared)} after the last intact entry" if cleared else "the tail is sound")


@cli.command(short_help="Remove old cycle files.")
@_path_argument
@click.option("--keep-cycles", type=click.IntRange(0), metavar="N", help="Keep the last N cycle files.")
@click.option(
    "--older-than", callback=_parsed(parse_duration), metavar="DURATION",
    help="Remove cycles that ended longer ago: seconds, 30m, 2h, 7d.",
)
@click.option(
    "--max-bytes", callback=_parsed(parse_size), metavar="SIZE",
    help="Keep at most this much of entries: bytes, 512K, 10M, 2G.",
)
@click.option("--respect-tailers", is_flag=True, help="Never remove what a named tailer has not read.")
@click.option("--dry-run", is_flag=True, help="Only print what would be removed.")
def purge(
    path: str,
    keep_cycles: int | None,
    older_than: float | None,
    max_bytes: int | None,
    respect_tailers: bool,
    dry_run: bool,
) -> None:
    """Remove whole cycle files of the queue at PATH; print their paths.

    A cycle file goes when any rule given picks it; the newest cycle file and
    the newest holding entries always stay.

    \b
    Examples:
      tape purge /data/orders --older-than 7d --respect-tailers
      tape purge /data/orders --max-bytes 10G --dry-run
    """
    if keep_cycles is None and older_than is None and max_bytes is None:
        raise click.UsageError("give at least one of --keep-cycles, --older-than, --max-bytes")
    with tape.Queue(path, create=False, read_only=dry_run, raw=True) as q:
        sizes = {c.path: c.bytes for c in q.cycles()}
        purge = functools.partial(
            q.purge,
            keep_cycles=keep_cycles,
            older_than=older_than,
            max_bytes=max_bytes,
            respect_tailers=respect_tailers,
        )
        shown = not dry_run and sys.stderr.isatty()
        total = len(purge(dry_run=True)) if shown else None
        with _progress("purging", total, shown=shown) as progress:
            removed = purge(dry_run=dry_run, on_remove=lambda _: progress(1))
    for p in removed:
        click.echo(p)
    verb = "would remove" if dry_run else "removed"
    freed = _size(sum(sizes.get(p, 0) for p in removed))
    click.echo(f"{verb} {len(removed)} cycle files ({freed} of entries)", err=True)


@cli.command(short_help="Append JSON lines to a queue.")
@_path_argument
@click.argument("file", type=click.File("rb"))
@click.option("--codec", callback=_codec_name, metavar="NAME", help="Codec of a new queue [default: msgpack].")
@click.option("--roll-cycle", metavar="NAME", help="Roll cycle of a new queue [default: daily].")
@click.option("--schema", type=click.File("rb"), help="Avro schema (a JSON file) of a new avro queue.")
def load(path: str, file: IO[bytes], codec: str | None, roll_cycle: str | None, schema: IO[bytes] | None) -> None:
    """Append the values of FILE (JSON lines; - for stdin) to the queue at PATH.

    Each line is a JSON value, or a record as dump writes it (an object of
    exactly index, timestamp and value: its value); {"$base64": ...} is bytes.
    Entries get new indexes and timestamps. The queue is created if missing; an
    existing one keeps its codec and roll cycle. Stops at the first bad line,
    after appending those before it.

    \b
    Examples:
      tape load /tmp/fixture values.jsonl --roll-cycle test_secondly
      tape dump /data/orders | tape load /tmp/copy -
    """
    try:
        avro_schema = None if schema is None else json.load(schema)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="'--schema'") from None
    try:
        q = tape.Queue(path, codec=codec, roll_cycle=roll_cycle, schema=avro_schema)
    except tape.ArgumentError as exc:  # an unknown roll cycle, a schema without avro or avro without one
        raise click.UsageError(str(exc)) from None
    source = getattr(file, "name", "<stdin>")
    with q, _progress("loading", _file_size(file)) as progress:
        loader = _Loader(q.appender(), source)
        try:
            for lineno, line in enumerate(_reporting(file, progress), 1):
                if not line.strip():
                    continue
                try:
                    value = from_json_line(line)
                except ValueError as exc:
                    loader.flush()
                    raise click.ClickException(f"{source}:{lineno}: not a JSON value: {exc}") from None
                loader.add(lineno, value)
            loader.flush()
            loader.appender.sync()
        finally:
            click.echo(f"appended {loader.count} entries to {path}")


def _reporting(lines: Iterable[bytes], progress: _Progress) -> Iterator[bytes]:
    """`lines`, telling `progress` how many bytes were taken, a chunk of lines at a time."""
    it = iter(lines)
    while chunk := list(itertools.islice(it, _CHUNK)):
        yield from chunk
        progress(sum(map(len, chunk)))


class _Loader:
    """Appends values in batches, knowing each one's line and how many went in."""

    def __init__(self, appender: tape.Appender, source: str) -> None:
        self.appender = appender
        self.source = source
        self.count = 0
        self._batch: list[tuple[int, Any]] = []

    def add(self, lineno: int, value: Any) -> None:
        self._batch.append((lineno, value))
        if len(self._batch) >= _CHUNK:
            self.flush()

    def flush(self) -> None:
        """Append the batch; at a value the codec refuses, append those before it and stop."""
        batch, self._batch = self._batch, []
        if not batch:
            return
        try:
            self.appender.write_many([value for _, value in batch])
            self.count += len(batch)
            return
        except tape.EncodeError:
            pass  # nothing of the batch was written: go one by one to find the culprit
        for lineno, value in batch:
            try:
                self.appender.write(value)
            except tape.EncodeError as exc:
                raise click.ClickException(f"{self.source}:{lineno}: {exc}") from None
            self.count += 1


def main() -> None:
    """Run the command line: the `tape` script and `python -m tape`."""
    cli()
