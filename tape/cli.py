"""The `tape` command line: dump, tail, info, verify, repair, purge and load a queue; its consumer groups;
replicate and ingest.

A thin shell over the Python API: each command opens a tape.Queue, calls what a
user of the library would call (tape.dump, tape.jsonl, tape.summary) and prints
the result. The command's output goes to stdout, messages for people to stderr.
Exit status: 0 success, 1 a problem found (damage, a missing queue, a tape
error), 2 bad usage. Values are shown as JSON, as tape.jsonl writes them.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import logging
import os
import re
import stat
import sys
import time
from collections.abc import Callable, Iterator
from typing import IO, Any

import click

import tape
from tape import archive
from tape._time import iso_time, parse_duration, parse_time
from tape.dump import Dump, open_reader
from tape.jsonl import FORMATS, Loader, LoadError, Progress, to_json, unseen, write_entries
from tape.objects import summary as objects_summary
from tape.summary import ProgressBar, check_tail, cycle_path, info_text, size_text, verify_text
from tape.window import INT64_MAX, Window

_FOLLOW_WAIT = 1.0  # seconds a follow waits for an entry in one call

# -- option values ------------------------------------------------------------------------

_SIZE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([kmgt]?)(?:i?b)?", re.IGNORECASE)
_UNIT_BYTES = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str) -> int:
    """Bytes in `text`: a number, or with a binary unit: 512K, 10M, 1.5G, 2T (also 10MiB, 10MB)."""
    m = _SIZE.fullmatch(text.strip())
    if m is None:
        raise ValueError(f"{text!r} is not a size (bytes, or like 512K, 10M, 2G)")
    return int(float(m[1]) * _UNIT_BYTES[m[2].lower()])


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


# -- progress on stderr ------------------------------------------------------------------


@contextlib.contextmanager
def _progress(label: str, total: int | None, unit: str, *, shown: bool = True) -> Iterator[Progress]:
    """A function that advances a progress bar on stderr by a number of `unit` (bytes, entries, files).

    The bar is drawn only when `shown` and stderr is a terminal; with `total`
    None it shows how much so far. Its line ends before the block's end.
    """
    if not (shown and sys.stderr.isatty()):
        yield unseen
        return
    bar = ProgressBar(sys.stderr, label, total, unit)
    try:
        yield bar.advance
    finally:
        bar.finish()


def _is_file(stream: IO[Any]) -> bool:
    """True when `stream` is a regular file (not a terminal, a pipe or a device)."""
    try:
        return stat.S_ISREG(os.fstat(stream.fileno()).st_mode)
    except (OSError, ValueError):  # no file descriptor (a test's stream), or closed
        return False


def _file_size(stream: IO[Any]) -> int | None:
    """The size of `stream` when it is a regular file."""
    return os.fstat(stream.fileno()).st_size if _is_file(stream) else None


# -- opening queues, reporting errors ---------------------------------------------------


def _open(path: str) -> tape.Queue:
    """The queue at `path`, read-only, values undecoded: for commands that only look at it."""
    return tape.Queue(path, read_only=True, create=False, raw=True)


@contextlib.contextmanager
def _opening(fmt: str, codec: str | None) -> Iterator[None]:
    """Around opening a queue for dump or tail: --codec with --format raw is bad usage,
    and a queue that needs another codec says how to read it anyway."""
    if fmt == "raw" and codec is not None:
        raise click.UsageError("--codec has no effect with --format raw")
    try:
        yield
    except tape.IncompatibleQueueError as exc:  # a codec not registered here, or pickle
        if fmt != "raw" and codec is None:
            exc.add_note("--codec NAME decodes with the codec named, --format raw shows the stored bytes")
        raise


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
        except BrokenPipeError:  # the reader went (tape dump q | head): not a problem, as for cat
            _quieten_stdout()
            ctx.exit(0)
        except (tape.TapeError, OSError) as exc:
            if ctx.params.get("debug"):
                raise
            raise click.ClickException(_message(exc)) from exc


def _quieten_stdout() -> None:
    """Point stdout at /dev/null, so that flushing what is left in its buffer at exit fails no more."""
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, sys.stdout.fileno())
    finally:
        os.close(null)


class _QueuePath(click.Path):
    """A queue's directory; a file given instead is named as such, with what reads it."""

    def __init__(self) -> None:
        super().__init__(dir_okay=True, file_okay=False, path_type=str)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and os.path.isfile(value):
            hint = ("an archive of tape purge --archive: tape dump reads it" if value.endswith(".lz4")
                    else "give the queue's directory")
            self.fail(f"{value!r} is a file, not a queue directory ({hint})", param, ctx)
        return super().convert(value, param, ctx)


_path_argument = click.argument("path", type=_QueuePath())
_format_option = click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
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
@click.argument("path", type=click.Path(dir_okay=True, file_okay=True, path_type=str))
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
    PATH may also be a cycle file archived by tape purge --archive (NAME.tape.lz4):
    its entries print as they did from the queue.

    \b
    Examples:
      tape dump /data/orders --since 2025-11-21T09:00Z --limit 100
      tape dump /data/orders --from 7224046387200 --format pretty
      tape dump /data/orders | tape load /tmp/copy -
      tape dump /archive/orders/20251121.tape.lz4
    """
    window = _window(from_index, to_index, since, until)
    with contextlib.ExitStack() as stack:
        source = stack.enter_context(archive.opened(path)) if os.path.isfile(path) else path
        with _opening(fmt, codec):
            d = Dump(source, window, fmt=fmt, codec=codec, backward=backward, limit=limit)
        written = _dump(d, jobs)
    if written == 0 and limit != 0:
        nothing = "the queue holds no entries" if window == Window() else "no entries in the window"
        click.echo(f"{path}: {nothing}", err=True)


def _dump(d: Dump, jobs: int) -> int:
    """Write out `d` to stdout, with a progress bar on a terminal when stdout is a file; the entries written."""
    with d:
        written = 0
        if not d.empty:
            out = sys.stdout.buffer
            shown = _is_file(out) and sys.stderr.isatty()
            with _progress("dumping", d.count() if shown else None, "entries", shown=shown) as progress:
                written = d.write(out, jobs=jobs or len(os.sched_getaffinity(0)), progress=progress)
        if d.backward:
            check_tail(d.queue)  # a torn tail: dumped from the last intact entry, then reported
    return written


def _window(from_index: int | None, to_index: int | None, since: int | None, until: int | None) -> Window:
    """dump's window; a window that ends before it starts is bad usage."""
    if from_index is not None and to_index is not None and from_index > to_index:
        raise click.UsageError(f"--from {from_index} is after --to {to_index}: the window is inverted")
    if since is not None and until is not None and since > until:
        raise click.UsageError(
            f"--since ({iso_time(since)}) is after --until ({iso_time(until)}): the window is inverted"
        )
    return Window(
        0 if from_index is None else from_index,
        INT64_MAX if to_index is None else to_index,
        0 if since is None else since,
        INT64_MAX if until is None else until,
    )


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
    with _opening(fmt, codec):
        q, decode = open_reader(path, fmt, codec)
    with q:
        with q.tailer() as back:
            back.direction = "backward"
            back.to_end()
            newest = list(itertools.islice(back.entries(), count))
        if not follow:
            write_entries(reversed(newest), fmt, out, decode)
            check_tail(q)  # a torn tail: shown up to it, then reported
            return
        t = q.tailer(start=newest[-1].index if newest else "end")
        try:
            write_entries(t.entries(), fmt, out, decode)
            while True:
                entry = t.read_entry(timeout=_FOLLOW_WAIT)
                if entry is not None:
                    write_entries(itertools.chain((entry,), t.entries()), fmt, out, decode)
        except KeyboardInterrupt:
            pass  # Ctrl-C is how a follow ends: not an error


@cli.command(short_help="Describe a queue: settings, cycle files, tailers.")
@_path_argument
@click.option("--json", "as_json", is_flag=True, help="Print Queue.describe() as JSON.")
@click.option("--cycles", "all_cycles", is_flag=True, help="List every cycle file (else the first and last 3).")
def info(path: str, as_json: bool, all_cycles: bool) -> None:
    """Describe the queue at PATH: settings, cycle files, sizes, indexes, named tailers.

    "space used" is what the entries and the index take of the cycle files,
    from their first entry to their end of data (files are allocated ahead).

    \b
    Examples:
      tape info /data/orders --cycles
      tape info /data/orders --json | jq .entries
    """
    with _open(path) as q:
        if as_json:
            click.echo(json.dumps(q.describe(), indent=2))
            return
        text = info_text(q, path, all_cycles=all_cycles)
        groups = q.groups()
        click.echo(text)
        click.echo(f"consumer groups  {len(groups)}" + (f": {', '.join(groups)} (tape groups lists them)" if groups else ""))
        check_tail(q)


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
        with _progress("verifying", total, "bytes", shown=shown) as progress:
            walked = 0

            def advance(now: int) -> None:
                nonlocal walked
                progress(now - walked)
                walked = now

            report = q.verify(salvage=not strict, progress=advance if shown else None)
        where = cycle_path(q, report.bad_cycle)
    if as_json:
        click.echo(json.dumps({**report._asdict(), "bad_path": where}, indent=2))
    else:
        click.echo(verify_text(report, where))
    if not report.ok:
        place = "" if report.bad_cycle is None else f"{where} at offset {report.bad_offset}: "  # None: tape.keys
        click.echo(f"Error: {path}: damaged: {place}{report.message}", err=True)
        ctx.exit(1)


@cli.command(short_help="Clear a torn tail so writers can append again.")
@_path_argument
def repair(path: str) -> None:
    """Clear what follows the last intact entry of the newest cycle of the queue at PATH.

    After a power loss the last entries may be torn: readers stop before them
    and writers refuse to append. This clears them (nothing a reader could
    read), fills back index slots lost before intact entries, seals a cycle
    before the newest that a roll cut short left damaged, and prints what it
    did; run tape verify first to see what is damaged.

    \b
    Example:
      tape verify /data/orders || tape repair /data/orders
    """
    with tape.Queue(path, create=False, raw=True) as q:
        cleared, refilled, sealed, corrected = q.repair_report()
    done = []
    if cleared:
        done.append(f"cleared {size_text(cleared)} after the last intact entry")
    if refilled:
        done.append(f"refilled {refilled} lost index slot{'s' if refilled > 1 else ''}")
    if sealed:
        done.append("sealed the cycle before the newest after its last intact entry")
    if corrected:
        done.append(f"corrected {size_text(corrected)} of tape.meta's hints")
    click.echo("; ".join(done) if done else "the tail is sound")


@cli.command(short_help="Remove old cycle files.")
@_path_argument
@click.option("--keep-cycles", type=click.IntRange(0), metavar="N", help="Keep the last N cycle files.")
@click.option(
    "--older-than", callback=_parsed(parse_duration), metavar="DURATION",
    help="Remove cycles that ended longer ago: seconds, 30m, 2h, 7d.",
)
@click.option(
    "--max-bytes", callback=_parsed(parse_size), metavar="SIZE",
    help="Keep at most this much space used (as tape info counts it): bytes, 512K, 10M, 2G.",
)
@click.option("--respect-tailers", is_flag=True, help="Never remove what a named tailer has not read.")
@click.option(
    "--archive", "archive_dir", type=click.Path(file_okay=False, path_type=str), metavar="DIR",
    help="Move each file into DIR, lz4-compressed (NAME.tape.lz4; tape dump reads it), instead of deleting it.",
)
@click.option("--dry-run", is_flag=True, help="Only print what would be removed.")
def purge(
    path: str,
    keep_cycles: int | None,
    older_than: float | None,
    max_bytes: int | None,
    respect_tailers: bool,
    archive_dir: str | None,
    dry_run: bool,
) -> None:
    """Remove whole cycle files of the queue at PATH; print their paths.

    A cycle file goes when any rule given picks it; the newest cycle file and
    the newest holding entries always stay. With --archive DIR each goes into
    DIR compressed, on disk before it is removed, and the archives' paths are
    printed.

    \b
    Examples:
      tape purge /data/orders --older-than 7d --respect-tailers
      tape purge /data/orders --max-bytes 10G --dry-run
      tape purge /data/orders --keep-cycles 30 --archive /archive/orders
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
            archive=archive_dir,
        )
        shown = not dry_run and sys.stderr.isatty()
        total = len(purge(dry_run=True)) if shown else None
        with _progress("purging", total, "files", shown=shown) as progress:
            removed = purge(dry_run=dry_run, on_remove=lambda _: progress(1))
    for p in removed:
        click.echo(p)
    if archive_dir is None:
        verb = "would remove" if dry_run else "removed"
        freed = size_text(sum(sizes.get(p, 0) for p in removed))
    else:
        verb = "would archive" if dry_run else "archived"
        by_name = {os.path.basename(p) + archive.SUFFIX: n for p, n in sizes.items()}
        freed = size_text(sum(by_name.get(os.path.basename(p), 0) for p in removed))
    click.echo(f"{verb} {len(removed)} cycle files ({freed} space used)", err=True)


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
        raise click.UsageError(str(exc).replace("needs schema=", "needs --schema FILE")) from None
    source = getattr(file, "name", "<stdin>")
    with q:
        loader = Loader(q.appender(), source)
        try:
            with _progress("loading", _file_size(file), "bytes") as progress:
                loader.load(file, progress)
            loader.appender.sync()
        except LoadError as exc:
            raise click.ClickException(str(exc)) from None
        finally:  # after the bar's line has ended
            click.echo(f"appended {loader.count} {'entry' if loader.count == 1 else 'entries'} to {path}")


# -- consumer groups ----------------------------------------------------------------------


@contextlib.contextmanager
def _group(path: str, name: str, *, write: bool = False) -> Iterator[tape.Group]:
    """Group `name` of the queue at `path` (read-only unless `write`); a missing one is a problem found."""
    with tape.Queue(path, read_only=not write, create=False) as q:
        if name not in q.groups():
            raise click.ClickException(f"{path}: no consumer group {name!r} (tape groups lists them)")
        g = q.group(name)
        try:
            yield g
        finally:
            g.close()


@cli.command(short_help="List the consumer groups of a queue.")
@_path_argument
@click.option("--json", "as_json", is_flag=True, help="One JSON object per group (Group.info()).")
def groups(path: str, as_json: bool) -> None:
    """List the consumer groups of the queue at PATH: position, lag, in flight, dead letters, consumers.

    \b
    Example:
      tape groups /data/jobs --json | jq .lag
    """
    with _open(path) as q:
        infos = []
        for name in q.groups():
            with q.group(name) as g:
                infos.append(g.info())
    if as_json:
        for i in infos:
            click.echo(json.dumps(i))
        return
    keys = ("name", "position", "ack_floor", "lag", "in_flight", "dead_letters", "consumers")
    table = [["group", "position", "ack floor", "lag", "in flight", "dead", "consumers"]]
    table += [["-" if i[k] is None else str(i[k]) for k in keys] for i in infos]
    widths = [max(len(row[k]) for row in table) for k in range(len(table[0]))]
    for row in table:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())


@cli.command(short_help="Print the entries a group's consumers hold now (JSON lines).")
@_path_argument
@click.argument("group")
def pending(path: str, group: str) -> None:
    """Print the entries the consumers of GROUP hold now, oldest first, as JSON lines.

    \b
    Example:
      tape pending /data/jobs mailer
    """
    with _group(path, group) as g:
        held = g.pending()
    for p in held:
        click.echo(json.dumps({"index": p.index, "consumer": p.consumer, "attempt": p.attempt,
                               "deadline": p.deadline.isoformat(), "idle": p.idle}))


@cli.command(short_help="Print a group's dead letters (JSON lines).")
@_path_argument
@click.argument("group")
def dead(path: str, group: str) -> None:
    """Print the dead letters of GROUP (entries given up on), oldest first, as JSON lines.

    \b
    Example:
      tape dead /data/jobs mailer | jq .reason
    """
    with _group(path, group) as g:
        letters = g.dead_letters()
    for d in letters:
        click.echo(json.dumps({"index": d.index, "value": to_json(d.value), "attempts": d.attempts,
                               "reason": d.reason, "when": d.when.isoformat(), "consumer": d.consumer}))


@cli.command(short_help="Hand a group's dead letters out again.")
@_path_argument
@click.argument("group")
@click.option("--index", "indexes", type=click.IntRange(0), multiple=True, metavar="INDEX",
              help="Only this entry's dead letter (may be repeated).")
def redrive(path: str, group: str, indexes: tuple[int, ...]) -> None:
    """Hand the dead letters of GROUP out again, as new deliveries; print how many.

    \b
    Example:
      tape redrive /data/jobs mailer --index 89309549953025
    """
    with _group(path, group, write=True) as g:
        unknown = sorted(set(indexes) - {d.index for d in g.dead_letters()})
        n = g.redrive(indexes or None)
    click.echo(f"{n} dead letters handed out again")
    if unknown:
        raise click.ClickException(f"not a dead letter of {group}: {', '.join(map(str, unknown))}")


# -- replication (tape.replicate, which needs nats-py: pip install tape[nats]) ---------------


def _replication() -> Any:
    """tape.replicate, logging to stderr; a clear error when nats-py is not installed."""
    try:
        import tape.replicate as replication
    except ImportError as exc:
        raise click.ClickException(f"replication needs nats-py: pip install 'tape[nats]' ({exc})") from None
    logger = logging.getLogger("tape.replicate")
    if not any(isinstance(h, _ToStderr) for h in logger.handlers):
        handler = _ToStderr()
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    return replication


class _ToStderr(logging.Handler):
    """Log records as lines on the command's stderr (whatever sys.stderr is at the time)."""

    def emit(self, record: logging.LogRecord) -> None:
        click.echo(self.format(record), err=True)


@cli.command(short_help="Ship a queue to a NATS JetStream stream, exactly once.")
@_path_argument
@click.argument("url", required=False)
@click.option("--stream", metavar="NAME", help="The stream (created when missing).")
@click.option("--subject", metavar="SUBJECT", help="The queue's subject (default: the stream's name).")
@click.option("-f", "--follow", is_flag=True, help="Then ship new entries as they come, until Ctrl-C.")
@click.option("--status", is_flag=True, help="Print where replication is (JSON) and exit; needs only PATH.")
@click.option("--name", default="replicator", show_default=True, help="The named tailer that keeps the position.")
@click.option("--frame-bytes", default="64KiB", show_default=True, callback=_parsed(parse_size), metavar="SIZE",
              help="How many bytes of entries one message carries.")
def replicate(path: str, url: str | None, stream: str | None, subject: str | None, follow: bool, status: bool,
              name: str, frame_bytes: int) -> None:
    """Ship the entries of the queue at PATH to the stream at URL, in order, each once.

    Resumes after the last entry the stream holds, after any downtime. While
    the server cannot be reached it retries, saying so on stderr.

    \b
    Examples:
      tape replicate /data/orders nats://127.0.0.1:4222 --stream ORDERS --follow
      tape replicate --status /data/orders
    """
    replication = _replication()
    if status:
        with _open(path) as q:
            click.echo(json.dumps(replication.replication_status(q, name), indent=2))
        return
    if url is None or stream is None:
        raise click.UsageError("tape replicate PATH URL --stream NAME (or --status PATH)")
    with replication.Replicator(path, url, stream=stream, subject=subject, name=name, frame_bytes=frame_bytes) as r:
        try:
            r.run(follow=follow)
        except KeyboardInterrupt:
            pass  # Ctrl-C is how a follow ends; what was acknowledged is recorded
        click.echo(f"shipped {r.shipped} entries to {stream}/{r.subject}", err=True)


@cli.command(short_help="Append what a NATS JetStream stream holds to a queue, each entry once.")
@click.argument("url")
@click.option("--stream", metavar="NAME", required=True, help="The stream to read.")
@_path_argument
@click.option("--subject", metavar="SUBJECT", help="The subject to read (default: the stream's only one).")
@click.option("--durable", metavar="NAME", help="The durable consumer's name (default: one per local queue).")
@click.option("-f", "--follow", is_flag=True, help="Then append new entries as they come, until Ctrl-C.")
def ingest(url: str, stream: str, path: str, subject: str | None, durable: str | None, follow: bool) -> None:
    """Append the entries the stream at URL holds to the queue at PATH (made when missing), each once.

    Resumes after the last entry the queue holds. While the server cannot be
    reached it retries, saying so on stderr.

    \b
    Example:
      tape ingest nats://127.0.0.1:4222 --stream ORDERS /data/orders-copy --follow
    """
    replication = _replication()
    with replication.Ingester(url, stream=stream, path=path, subject=subject, durable=durable) as i:
        try:
            i.run(follow=follow)
        except KeyboardInterrupt:
            pass  # Ctrl-C is how a follow ends; what was written is acknowledged or comes again
        click.echo(f"appended {i.ingested} entries to {path}", err=True)


# -- durable objects ------------------------------------------------------------------------


@cli.command(short_help="List the durable objects of a store.")
@_path_argument
@click.option("--json", "as_json", is_flag=True, help="One JSON object per object.")
def objects(path: str, as_json: bool) -> None:
    """List the durable objects of the store at PATH (a tape.Objects directory): type, id, state size, alarms.

    \b
    Example:
      tape objects /data/objects --json | jq .alarms
    """
    found = objects_summary(path)
    if as_json:
        for o in found:
            click.echo(json.dumps(o))
        return
    for o in found:
        alarms = ", ".join(f"{a['name']} at {a['at']}" for a in o["alarms"]) or "-"
        click.echo(f"{o['type']}  {o['id']}  {o['size']} B  alarms: {alarms}")


def main() -> None:
    """Run the command line: the `tape` script and `python -m tape`."""
    cli()
