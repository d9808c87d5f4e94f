"""Shared helpers of the crash-safety suite: child processes, acks, payloads, the file format.

The tests of tests/test_crash_*.py run the code under test in child processes
(this file run as a script: `python crash_support.py ROLE ARGS...`), so that a
child can be killed with SIGKILL, armed with TAPE_KILL / TAPE_FAULT (read by the
test build of the core from the environment), or crash without taking pytest
with it. The pytest process itself never sets those variables.

Children report to their supervisor through a pipe, in fixed 24-byte records
(kind, a, b): see the REC_* kinds. A writer sends REC_ACK as soon as write()
has returned, so the supervisor knows exactly what was acknowledged when the
writer dies.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import select
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

HERE = Path(__file__).resolve()
PYTHON = sys.executable
T0_NS = 1_763_683_200 * 10**9  # 2025-11-21T00:00Z: a fixed start for test clocks
SECOND = 10**9

# ---- records on the report pipe ----------------------------------------------------

REC = struct.Struct("<qqq")
REC_ACK = 0  # (index, seq): write() returned for the writer's entry `seq`
REC_READ = 1  # (index, writer << 32 | seq): an entry seen while checking
REC_VERIFY = 2  # (ok | abandoned << 1 | unsealed << 32, entries)
REC_VERIFY2 = 3  # (problems, last_good_index or -1)
REC_READY = 4  # (last_index or -1, count): checked, about to write
REC_BAD = 5  # (index, 0): an entry whose payload is not what any writer wrote
REC_DONE = 6  # (entries written, 0): a clean stop

ALL_WRITERS = -2  # check_writer of role_storm_writer: report every entry


def send(fd: int, kind: int, a: int = 0, b: int = 0) -> None:
    """Write one record to the pipe `fd` (whole: records are far below PIPE_BUF)."""
    os.write(fd, REC.pack(kind, a, b))


class RecordReader:
    """Reads the records a child writes to a pipe, without blocking past a deadline."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._buf = bytearray()
        self.eof = False

    def poll(self, timeout: float) -> list[tuple[int, int, int]]:
        """The records that arrive within `timeout` seconds (fewer when the pipe closes)."""
        if self.eof:
            return []
        ready, _, _ = select.select([self.fd], [], [], max(timeout, 0))
        if not ready:
            return []
        chunk = os.read(self.fd, 1 << 16)
        if not chunk:
            self.eof = True
        self._buf += chunk
        n = len(self._buf) // REC.size * REC.size
        out = list(REC.iter_unpack(bytes(self._buf[:n])))
        del self._buf[:n]
        return out

    def until(self, deadline: float) -> Iterator[tuple[int, int, int]]:
        """Every record until the monotonic `deadline` or the end of the pipe."""
        while not self.eof:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            yield from self.poll(left)

    def rest(self, timeout: float = 30) -> Iterator[tuple[int, int, int]]:
        """Every record until the pipe closes (the child has exited)."""
        deadline = time.monotonic() + timeout
        while not self.eof:
            if time.monotonic() > deadline:
                raise TimeoutError("the child kept its end of the pipe open")
            yield from self.poll(deadline - time.monotonic())

    def close(self) -> None:
        os.close(self.fd)


# ---- payloads ------------------------------------------------------------------------


def crc32c(data: bytes, seed: int = 0) -> int:
    """CRC-32C (Castagnoli) as docs/FORMAT.md defines it: ~update(~seed, data); for files a test patches."""
    crc = seed ^ 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def payload(writer: int, seq: int) -> bytes:
    """What writer `writer` stores as its entry `seq`: both numbers, then a filler of varying length."""
    n = (writer * 7 + seq) % 23
    return struct.pack("<II", writer, seq) + bytes((writer + seq + k) & 0xFF for k in range(n))


def parse_payload(data: bytes) -> tuple[int, int]:
    """(writer, seq) of a payload; ValueError when it is not exactly what payload() makes."""
    if len(data) < 8:
        raise ValueError(f"payload of {len(data)} bytes")
    writer, seq = struct.unpack_from("<II", data)
    if data != payload(writer, seq):
        raise ValueError(f"payload of writer {writer} seq {seq} does not match")
    return writer, seq


# ---- child processes -------------------------------------------------------------------


def child_env(*, kill: str | None = None, fault: str | None = None) -> dict[str, str]:
    """The environment of a child: ours without any hook, plus the hooks asked for."""
    env = {k: v for k, v in os.environ.items() if k not in ("TAPE_KILL", "TAPE_FAULT")}
    if kill:
        env["TAPE_KILL"] = kill
    if fault:
        env["TAPE_FAULT"] = fault
    return env


def spawn(
    role: str,
    *args: object,
    kill: str | None = None,
    fault: str | None = None,
    pass_fds: Sequence[int] = (),
    stdin: Any = subprocess.DEVNULL,
    stdout: Any = None,
) -> subprocess.Popen[bytes]:
    """Start `python crash_support.py role args...` with the given hooks armed."""
    return subprocess.Popen(
        [PYTHON, str(HERE), role, *map(str, args)],
        env=child_env(kill=kill, fault=fault),
        pass_fds=tuple(pass_fds),
        stdin=stdin,
        stdout=stdout,
    )


def spawn_reporting(role: str, *args: object, kill: str | None = None) -> tuple[subprocess.Popen[bytes], RecordReader]:
    """Start a child that reports through a pipe; its fd number is the first argument."""
    r, w = os.pipe()
    try:
        proc = spawn(role, w, *args, kill=kill, pass_fds=(w,))
    finally:
        os.close(w)
    return proc, RecordReader(r)


def killed_by(status: int | None) -> str:
    """A child's return code in words."""
    if status is None:
        return "still running"
    if status < 0:
        return f"killed by {signal.Signals(-status).name}"
    return f"exit status {status}"


def hooks_compiled_in() -> bool:
    """True when the installed core is a test build (TAPE_KILL has an effect)."""
    code = (
        "import tape, tempfile\n"
        "with tempfile.TemporaryDirectory() as d:\n"
        "    tape.Queue(d, codec='raw').appender().write(b'x')\n"
    )
    proc = subprocess.run([PYTHON, "-c", code], env=child_env(kill="after_copy:1"), capture_output=True)
    return proc.returncode == -signal.SIGKILL


# ---- the file format (docs/FORMAT.md), for damaging files on purpose ------------------

H_NC = 0x80000000
H_META = 0x40000000
H_LEN = 0x3FFFFFFF
H_EOF = 0xC0000000
ENTRY_HDR = 16
L_EXTRA = 12
CYCLE_DATA_OFF_AT = 48
META_SIZE = 65536


@dataclass(frozen=True)
class Loc:
    """Where one entry of a cycle file lies."""

    offset: int
    size: int
    header: int

    @property
    def is_data(self) -> bool:
        return not self.header & H_META

    @property
    def end(self) -> int:
        return self.offset + self.size


@dataclass
class Layout:
    """The entries of a cycle file and what follows them."""

    entries: list[Loc] = field(default_factory=list)
    end: int = 0  # offset just after the last published entry
    end_header: int = 0  # the header word found there (0, H_EOF or a "not complete" word)

    @property
    def data(self) -> list[Loc]:
        return [e for e in self.entries if e.is_data]


def entry_size(header: int) -> int:
    """Bytes an entry with this published header occupies."""
    length = (header & H_LEN) - L_EXTRA
    return (ENTRY_HDR + length + 7) & ~7


def layout(data: bytes) -> Layout:
    """Walk the published entries of a cycle file's bytes (no checksum checks)."""
    (p,) = struct.unpack_from("<Q", data, CYCLE_DATA_OFF_AT)
    out = Layout()
    while p + 4 <= len(data):
        (h,) = struct.unpack_from("<I", data, p)
        if h == 0 or h & H_NC:
            out.end, out.end_header = p, h
            return out
        size = entry_size(h)
        out.entries.append(Loc(p, size, h))
        p += size
    out.end, out.end_header = p, 0
    return out


def cycle_files(qdir: str | os.PathLike[str]) -> list[Path]:
    """The cycle files of a queue directory, oldest first."""
    return sorted(Path(qdir).glob("*.tape"))


@dataclass
class Built:
    """The pristine queue: its files, its entries' indexes in order, and the layout of each cycle."""

    path: Path
    indexes: list[int]
    expect_file: Path
    names: list[str]
    layouts: list[Layout]
    data: list[bytes]
    meta: bytes  # tape.meta as built


def build_two_cycles(root: Path, per_cycle: int) -> Built:
    """Two cycles of `per_cycle` entries in a test_secondly raw queue under `root`, the first sealed by the roll."""
    import tape

    path = root / "q"
    now = [T0_NS]
    expect: dict[int, str] = {}
    indexes = []
    with tape.Queue(path, codec="raw", roll_cycle="test_secondly", clock=lambda: now[0]) as q:
        a = q.appender()
        for cycle in range(2):
            now[0] = T0_NS + cycle * SECOND
            for seq in range(per_cycle):
                value = payload(cycle, seq)
                i = a.write(value)
                expect[i] = value.hex()
                indexes.append(i)
    expect_file = root / "expect.json"
    expect_file.write_text(json.dumps(expect))
    files = cycle_files(path)
    data = [f.read_bytes() for f in files]
    layouts = [layout(d) for d in data]
    return Built(path, indexes, expect_file, [f.name for f in files], layouts, data, (path / "tape.meta").read_bytes())


# ---- roles run in child processes -----------------------------------------------------


def _open_raw(path: str, roll_cycle: str, **kw: Any) -> Any:
    import tape

    return tape.Queue(path, codec="raw", roll_cycle=roll_cycle, **kw)


class _Clock:
    """A test clock. "count:PER": one cycle (second) per PER entries of the whole queue,
    counted from `base`; "wall:M0:SCALE": CLOCK_MONOTONIC since M0, sped up SCALE times."""

    def __init__(self, spec: str, base: int) -> None:
        kind, *rest = spec.split(":")
        self.n = base
        if kind == "count":
            per = int(rest[0])
            self.fn: Callable[[], int] = lambda: T0_NS + (self.n // per) * SECOND
        elif kind == "wall":
            m0, scale = int(rest[0]), int(rest[1])
            self.fn = lambda: T0_NS + (time.monotonic_ns() - m0) * scale
        else:
            raise ValueError(spec)

    def __call__(self) -> int:
        return self.fn()


def role_storm_writer(argv: list[str]) -> None:
    """Check what earlier writers left, then append and acknowledge until killed or told to stop.

    argv: fd path roll_cycle clock writer_id check_writer from_index pace_per_s max_entries
    Checking (before this process writes anything): verify(), then every entry
    from `from_index` on (-1: from the start); the entries of `check_writer`
    (every entry with ALL_WRITERS) are reported as REC_READ, any entry whose
    payload is wrong as REC_BAD.
    SIGTERM stops the writing cleanly (REC_DONE).
    """
    fd = int(argv[0])
    path, roll_cycle, clock_spec = argv[1], argv[2], argv[3]
    writer, check_writer, from_index = int(argv[4]), int(argv[5]), int(argv[6])
    pace, max_entries = float(argv[7]), int(argv[8])
    stop = False

    def on_term(signum: int, frame: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    clock = _Clock(clock_spec, 0)
    q = _open_raw(path, roll_cycle, clock=clock)
    r = q.verify()
    send(fd, REC_VERIFY, int(r.ok) | r.abandoned << 1 | r.unsealed << 32, r.entries)
    send(fd, REC_VERIFY2, r.problems, -1 if r.last_good_index is None else r.last_good_index)
    t = q.tailer()
    if from_index >= 0 and not t.to_index(from_index):
        send(fd, REC_BAD, from_index, 1)
    for e in t.entries():
        try:
            w, s = parse_payload(e.value)
        except ValueError:
            send(fd, REC_BAD, e.index, 0)
            continue
        if w == check_writer or check_writer == ALL_WRITERS:
            send(fd, REC_READ, e.index, w << 32 | s)
    t.close()
    last = q.last_index
    clock.n = q.count()
    send(fd, REC_READY, -1 if last is None else last, clock.n)
    a = q.appender()
    write = a.write
    seq = 0
    start = time.monotonic()
    while not stop and seq < max_entries:
        index = write(payload(writer, seq))
        send(fd, REC_ACK, index, seq)
        seq += 1
        clock.n += 1
        if pace:
            ahead = start + seq / pace - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
    send(fd, REC_DONE, seq)
    q.close()


def role_conc_writer(argv: list[str]) -> None:
    """Wait for a line on stdin, then append `n` entries as writer `writer_id`.

    argv: path writer_id n
    """
    path, writer, n = argv[0], int(argv[1]), int(argv[2])
    import tape

    with tape.Queue(path, codec="raw") as q:
        a = q.appender()
        write = a.write
        sys.stdin.readline()
        for seq in range(n):
            write(payload(writer, seq))


def role_follow_tailer(argv: list[str]) -> None:
    """Follow the queue from its start until `total` entries are read; print a JSON summary.

    argv: path total writers timeout_s
    The summary: count, a SHA-256 of the sequence of (index, payload), entries
    per writer, and the first out-of-order entry of any writer (null if none).
    Prints "ready" first, once the tailer is open.
    """
    path, total, writers, timeout = argv[0], int(argv[1]), int(argv[2]), float(argv[3])
    import tape

    with tape.Queue(path, codec="raw") as q:
        t = q.tailer()
        print("ready", flush=True)
        h = hashlib.sha256()
        nxt = [0] * writers
        count = 0
        disorder = None
        deadline = time.monotonic() + timeout
        while count < total and time.monotonic() < deadline:
            waited = t.read_entry(timeout=0.5)  # sleeps until a writer publishes
            if waited is None:
                continue
            for e in itertools.chain((waited,), t.entries()):
                h.update(struct.pack("<q", e.index))
                h.update(e.value)
                w, s = struct.unpack_from("<II", e.value)
                if disorder is None and (w >= writers or s != nxt[w] or e.value != payload(w, s)):
                    disorder = [e.index, w, s]
                if w < writers:
                    nxt[w] = s + 1
                count += 1
        print(json.dumps({"count": count, "sha256": h.hexdigest(), "per_writer": nxt, "disorder": disorder}))


def role_inspect(argv: list[str]) -> None:
    """Serve inspection requests (one JSON object per line on stdin, one answer per line on stdout).

    A request: {"dir": queue, "ops": [damage...], "expect": path or null,
    "append": bool, "clock_ns": the queue's clock or null}. Damage ops, undone after the request: ["truncate", file,
    size] and ["patch", file, offset, hex]. The queue is opened, read forward
    from the start and backward from the end (every value compared with
    `expect`, a JSON file mapping index -> hex, or returned when there is none),
    verified strictly and in salvage mode, and with "append", written to once.
    Files the request created are removed after it.
    Used for the tail sweep and the fault checks: if this process crashes,
    the supervisor knows which request did it.
    """
    expects: dict[str, dict[int, bytes]] = {}
    for line in sys.stdin:
        req = json.loads(line)
        expect = None
        if req.get("expect"):
            if req["expect"] not in expects:
                raw = json.loads(Path(req["expect"]).read_text())
                expects[req["expect"]] = {int(k): bytes.fromhex(v) for k, v in raw.items()}
            expect = expects[req["expect"]]
        before = set(os.listdir(req["dir"]))
        undo = _apply(req["dir"], req.get("ops", []))
        try:
            answer = _inspect(req["dir"], expect, bool(req.get("append")), req.get("clock_ns"))
        finally:
            _undo(undo)
            for name in set(os.listdir(req["dir"])) - before:
                os.unlink(os.path.join(req["dir"], name))
        print(json.dumps(answer), flush=True)


Undo = tuple[Path, int, bytes, int, bool]


def _apply(qdir: str, ops: list[list[Any]]) -> list[Undo]:
    """Damage files as `ops` say; returns what restores them.

    Ops: ["truncate", file, size], ["patch", file, offset, hex] and
    ["snapshot", file] (nothing changes; the whole file is restored after).
    """
    if not ops:
        return []
    meta = Path(qdir) / "tape.meta"
    undo: list[Undo] = [(meta, 0, meta.read_bytes(), META_SIZE, False)]
    for op in ops:
        f = Path(qdir) / op[1]
        size = f.stat().st_size
        with open(f, "r+b") as fh:
            if op[0] == "snapshot":
                undo.append((f, 0, fh.read().rstrip(b"\0"), size, True))
                continue
            fh.seek(op[2])
            if op[0] == "truncate":
                undo.append((f, op[2], fh.read().rstrip(b"\0"), size, False))  # zeros come back as a hole
                fh.truncate(op[2])
            else:
                data = bytes.fromhex(op[3])
                undo.append((f, op[2], fh.read(len(data)), size, False))
                fh.seek(op[2])
                fh.write(data)
    return undo


def _undo(undo: list[Undo]) -> None:
    """Write back what _apply changed, newest change first."""
    for f, at, data, size, whole in reversed(undo):
        with open(f, "r+b") as fh:
            if whole:
                fh.truncate(at + len(data))  # what was written after it goes
            fh.seek(at)
            fh.write(data)
            fh.truncate(size)


def _inspect(qdir: str, expect: dict[int, bytes] | None, append: bool, clock_ns: int | None) -> dict[str, Any]:
    import tape

    out: dict[str, Any] = {"wrong": []}
    try:
        q = tape.Queue(qdir, clock=None if clock_ns is None else lambda: clock_ns)
    except tape.TapeError as exc:
        out["open_error"] = f"{type(exc).__name__}: {exc}"
        return out
    with q:
        for direction in ("forward", "backward"):
            t = q.tailer()
            if direction == "backward":
                t.direction = "backward"
                try:
                    t.to_end()
                except tape.TapeError as exc:
                    out["backward_error"] = f"{type(exc).__name__}: {exc}"
                    out["backward"] = []
                    continue
            seen: list[Any] = []
            error = None
            for _ in range(1_000_000):
                try:
                    e = t.read_entry()
                except tape.TapeError as exc:
                    error = f"{type(exc).__name__}: {exc}"
                    break
                if e is None:
                    break
                if expect is None:
                    seen.append([e.index, e.value.hex()])
                else:
                    seen.append(e.index)
                    if expect.get(e.index) != e.value:
                        out["wrong"].append([direction, e.index, e.value.hex()])
            t.close()
            out[direction] = seen
            out[direction + "_error"] = error
        for mode, salvage in (("verify", False), ("salvage", True)):
            try:
                out[mode] = q.verify(salvage=salvage)._asdict()
            except tape.TapeError as exc:
                out[mode] = {"error": f"{type(exc).__name__}: {exc}"}
        if append:
            try:
                i = q.appender().write(b"after")
                out["appended"] = i
                t = q.tailer()
                t.to_index(i)
                out["appended_read"] = (t.read() or b"").hex()
                out["appended_reached"] = _reached_from_start(q, i)
                # from the start of its own cycle (past damage in an older one)
                own = tape.make_index(q, tape.split_index(q, i)[0], 0)
                out["appended_reached_in_cycle"] = _reached_from_start(q, i, own)
            except tape.TapeError as exc:
                out["append_error"] = f"{type(exc).__name__}: {exc}"
    return out


def _reached_from_start(q: Any, index: int, start: int | None = None) -> bool:
    """Whether a tailer reading forward from the start (or from index `start`) reaches the entry at `index`."""
    import tape

    t = q.tailer()
    try:
        if start is not None:
            t.to_index(start)
        for e in t.entries():
            if e.index >= index:
                return bool(e.index == index)
    except tape.TapeError:
        return False
    finally:
        t.close()
    return False


class Inspector:
    """A child serving role_inspect; `ask` sends one request and returns the answer.

    If the child dies while handling a request, `ask` raises AssertionError
    naming the request and how the child died.
    """

    def __init__(self) -> None:
        self.proc = spawn("inspect", stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._in: BinaryIO = self.proc.stdin  # type: ignore[assignment]
        self._out: BinaryIO = self.proc.stdout  # type: ignore[assignment]
        self.pending: list[dict[str, Any]] = []

    def send(self, req: dict[str, Any]) -> None:
        """Queue a request (answers come back in order)."""
        self.pending.append(req)
        self._in.write(json.dumps(req).encode() + b"\n")
        self._in.flush()

    def receive(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The oldest pending request and its answer."""
        req = self.pending.pop(0)
        line = self._out.readline()
        if not line:
            status = self.proc.wait(timeout=30)
            raise AssertionError(f"the reader crashed ({killed_by(status)}) on {req}")
        return req, json.loads(line)

    def ask(self, req: dict[str, Any]) -> dict[str, Any]:
        self.send(req)
        return self.receive()[1]

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=60)
        if self.proc.stdout:
            self.proc.stdout.close()


def _describe_error(exc: BaseException) -> dict[str, Any]:
    """An exception as JSON: its class, whether it is a TapeError, errno, message and notes."""
    import tape

    return {
        "type": type(exc).__name__,
        "tape": isinstance(exc, tape.TapeError),
        "errno": getattr(exc, "errno", None),
        "message": str(exc),
        "notes": list(getattr(exc, "__notes__", [])),
    }


def role_fault_workload(argv: list[str]) -> None:
    """The fault-injection workload; prints a JSON report of what was acknowledged and what failed.

    argv: path. Creates a test_secondly raw queue with a test clock, writes 4
    entries in each of 3 cycles (those of the second with one write_many),
    syncing after each cycle. Stops at the first error; after a failed sync it
    tries one more write, which must be refused (PoisonedError).
    """
    import tape

    path = argv[0]
    now = [T0_NS]
    acked: list[list[Any]] = []
    report: dict[str, Any] = {"acked": acked, "error": None, "after_sync": None, "step": "open"}
    try:
        q = tape.Queue(path, codec="raw", roll_cycle="test_secondly", clock=lambda: now[0])
    except BaseException as exc:
        report["error"] = _describe_error(exc)
        print(json.dumps(report))
        return
    with q:
        try:
            report["step"] = "appender"
            a = q.appender()
            for cycle in range(3):
                now[0] = T0_NS + cycle * SECOND
                values = [f"c{cycle}-{k}".encode() for k in range(4)]
                if cycle == 1:
                    report["step"] = "write_many"
                    try:
                        last = a.write_many(values)
                    except tape.TapeError as exc:
                        # "<n> of <m> entries were written before the error"
                        done = int(exc.__notes__[-1].split()[0])
                        last_done = a.last_index
                        first = last_done - done + 1 if done and last_done is not None else 0
                        acked.extend([first + k, v.hex()] for k, v in enumerate(values[:done]))
                        raise
                    acked.extend([last - len(values) + 1 + k, v.hex()] for k, v in enumerate(values))
                else:
                    report["step"] = "write"
                    for v in values:
                        acked.append([a.write(v), v.hex()])
                report["step"] = "sync"
                a.sync()
            report["step"] = "done"
        except BaseException as exc:  # every failure is reported; the test judges it
            report["error"] = _describe_error(exc)
            if report["step"] == "sync":
                try:
                    a.write(b"after a failed sync")
                    report["after_sync"] = {"type": None}
                except BaseException as exc2:
                    report["after_sync"] = _describe_error(exc2)
    print(json.dumps(report))


def role_model_writer(argv: list[str]) -> None:
    """Append `count` entries b"child-<tag>-<k>" at the clock `clock_ns`, printing each index once written.

    argv: path clock_ns count tag
    """
    import tape

    path, clock_ns, count, tag = argv[0], int(argv[1]), int(argv[2]), argv[3]
    with tape.Queue(path, clock=lambda: clock_ns) as q:
        a = q.appender()
        for k in range(count):
            i = a.write(model_value(tag, k))
            print(i, flush=True)


def model_value(tag: str, k: int) -> bytes:
    """The k-th value role_model_writer writes."""
    return f"child-{tag}-{k}".encode()


def role_fork_server(argv: list[str]) -> None:
    """Run roles in forked children, one per JSON request line on stdin: {"env": {...}, "role", "args"}.

    Answers {"status": the child's return code (negative: killed by that
    signal), "out": its stdout}. Forking from this process, which imported
    tape but never opened a queue nor made a hooked call, costs a millisecond
    instead of an interpreter start; the child sets its TAPE_FAULT / TAPE_KILL
    before its first hooked call, when the core reads them.
    """
    import tape  # noqa: F401  (imported once, for every child)

    for line in sys.stdin:
        req = json.loads(line)
        r, w = os.pipe()
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            os.dup2(w, 1)
            code = 0
            try:
                os.environ.update(req.get("env", {}))
                ROLES[req["role"]](req.get("args", []))
                sys.stdout.flush()
            except BaseException:
                import traceback

                traceback.print_exc()
                code = 1
            os._exit(code)
        os.close(w)
        with os.fdopen(r, "rb") as fh:
            out = fh.read()
        _, status = os.waitpid(pid, 0)
        code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        print(json.dumps({"status": code, "out": out.decode(errors="replace")}), flush=True)


class ForkServer:
    """A child serving role_fork_server; `run` runs a role in a fresh fork of it with hooks armed."""

    def __init__(self) -> None:
        self.proc = spawn("fork-server", stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def run(self, role: str, *args: object, kill: str | None = None, fault: str | None = None) -> tuple[int, str]:
        """(return code, stdout) of `role` run with TAPE_KILL / TAPE_FAULT set as given."""
        env = {k: v for k, v in (("TAPE_KILL", kill), ("TAPE_FAULT", fault)) if v}
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"env": env, "role": role, "args": list(map(str, args))}).encode() + b"\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError(f"the fork server died: {killed_by(self.proc.wait(timeout=30))}")
        ans = json.loads(line)
        return ans["status"], ans["out"]

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=60)
        if self.proc.stdout:
            self.proc.stdout.close()


ROLES: dict[str, Callable[[list[str]], None]] = {
    "fork-server": role_fork_server,
    "model-writer": role_model_writer,
    "storm-writer": role_storm_writer,
    "conc-writer": role_conc_writer,
    "follow-tailer": role_follow_tailer,
    "inspect": role_inspect,
    "fault-workload": role_fault_workload,
}

if __name__ == "__main__":
    ROLES[sys.argv[1]](sys.argv[2:])
