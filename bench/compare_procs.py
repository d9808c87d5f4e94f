"""The two measurements of `python -m bench.compare` that take several processes.

- End-to-end latency: a writer process writes 100-byte payloads carrying their
  intended send time (CLOCK_MONOTONIC, the same clock in every process) at a
  fixed rate, spinning until each is due; a reader process reads (peers: the
  library's read call, with a 0.1 ms nap when there is nothing; tape:
  read(timeout=...), sleeping on the futex or spinning) and records now -
  intended send time, so a stalled writer shows (no coordinated omission).
- Crash survival: a writer process writes numbered 100-byte payloads as fast as
  it can and, after each write returns, reports the number on a pipe; it is
  killed with SIGKILL at a random moment; a fresh process then opens the queue,
  reads everything, counts which acknowledged numbers are there, and writes one
  more entry.

Children are fresh interpreters: `python -m bench.compare_procs ROLE ARGS...`.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from array import array
from itertools import count
from pathlib import Path
from typing import Any

from bench.peers import Subject, subjects

_ROOT = Path(__file__).resolve().parent.parent
PAYLOAD = 100
_PAD = bytes(PAYLOAD - 8)
# A peer's reader sleeps this long when it finds nothing: a busy loop is slower, since it
# contends with the writer for SQLite's lock (measured: p50 0.2 ms with the nap, 1.3 to 190 ms without).
POLL_S = 0.0001


def _spawn(role: str, *args: object) -> subprocess.Popen[bytes]:
    """A child interpreter running `role` of this module, from the repository root."""
    return subprocess.Popen([sys.executable, "-m", "bench.compare_procs", role, *map(str, args)],
                            cwd=_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE)


def _expect(proc: subprocess.Popen[bytes], word: bytes) -> None:
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if line != word:
        proc.kill()
        raise RuntimeError(f"child said {line!r}, not {word!r}")


def _number(s: Subject, item: Any) -> int:
    return int.from_bytes(s.payload(item)[:8], "little", signed=True)


def _open(key: str, where: Path) -> Subject:
    s = subjects()[key]()
    s.values([_PAD + bytes(8)])
    s.open(where)
    return s


# -- end-to-end latency --------------------------------------------------------------------


def end_to_end(key: str, where: Path, rate: float, seconds: float, spin: bool, samples_path: Path) -> array[int]:
    """Writer process -> reader process latencies (ns) of `rate` entries a second for `seconds`."""
    reader = _spawn("xreader", key, where, "spin" if spin else "wait", samples_path)
    writer = None
    try:
        _expect(reader, b"ready")
        writer = _spawn("xwriter", key, where, rate, seconds)
        _expect(writer, b"ready")
        assert writer.stdin is not None
        writer.stdin.write(b"go\n")
        writer.stdin.close()
        if writer.wait(timeout=seconds + 120) or reader.wait(timeout=120):
            raise RuntimeError(f"end-to-end {key}: writer exited {writer.returncode}, reader {reader.returncode}")
    finally:
        for p in (reader, writer):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
    samples = array("q")
    with open(samples_path, "rb") as f:
        samples.frombytes(f.read())
    return samples


def _xwriter(key: str, where: Path, rate: float, seconds: float) -> None:
    s = _open(key, where)
    write, clock, interval = s.write, time.monotonic_ns, 1e9 / rate
    write(bytes(PAYLOAD))  # a warm-up entry (number 0: not timed) maps what the first ones need
    print("ready", flush=True)
    sys.stdin.readline()
    start = clock() + 10_000_000
    for k in range(int(rate * seconds)):
        due = start + int(k * interval)
        payload = due.to_bytes(8, "little", signed=True) + _PAD
        while clock() < due:
            pass
        write(payload)
    write((-1).to_bytes(8, "little", signed=True) + _PAD)
    s.close()


def _xreader(key: str, where: Path, how: str, samples_path: Path) -> None:
    s = _open(key, where)
    read = s.read
    if s.kind == "tape":
        tailer = s.q.tailer(spin=how == "spin")  # type: ignore[attr-defined]

        def waiting_read() -> Any:
            return tailer.read(timeout=0.1)

        read = waiting_read

    clock, samples = time.monotonic_ns, array("q")
    print("ready", flush=True)
    while True:
        item = read()
        if item is None:
            time.sleep(POLL_S)
            continue
        now = clock()
        sent = _number(s, item)
        if sent < 0:
            break
        if sent:
            samples.append(now - sent)
    s.close()
    with open(samples_path, "wb") as f:
        samples.tofile(f)


# -- crash survival --------------------------------------------------------------------------


def crash_round(key: str, where: Path, rng: random.Random, longest: float) -> dict[str, Any]:
    """One kill: the writer's acknowledged count, and what a fresh process found afterwards."""
    writer = _spawn("crash-writer", key, where)
    acks = bytearray()
    first = threading.Event()

    def drain() -> None:
        assert writer.stdout is not None
        fd = writer.stdout.fileno()
        while chunk := os.read(fd, 65536):
            acks.extend(chunk)
            first.set()

    t = threading.Thread(target=drain)
    t.start()
    try:
        if not first.wait(60):
            raise RuntimeError(f"crash {key}: the writer acknowledged nothing in 60 s")
        time.sleep(rng.uniform(0.02, longest))
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        t.join()
    acked = len(acks) // 8
    numbers = array("q", bytes(acks[: acked * 8]))
    if list(numbers) != list(range(acked)):
        raise RuntimeError(f"crash {key}: the acknowledgements are not 0..{acked - 1}")
    out = subprocess.run([sys.executable, "-m", "bench.compare_procs", "crash-verify", key, str(where), str(acked)],
                         cwd=_ROOT, capture_output=True, text=True, timeout=600)
    if out.returncode:
        return {"acked": acked, "kept": 0, "read": 0, "error": out.stderr.strip().splitlines()[-1:]}
    found: dict[str, Any] = json.loads(out.stdout)
    return {"acked": acked, **found}


def _crash_writer(key: str, where: Path) -> None:
    s = _open(key, where)
    write, ack = s.write, sys.stdout.buffer.fileno()
    for k in count():
        write(k.to_bytes(8, "little") + _PAD)
        os.write(ack, k.to_bytes(8, "little"))


def _crash_verify(key: str, where: Path, acked: int) -> None:
    s = _open(key, where)
    seen = []
    read = s.read
    while (item := read()) is not None:
        seen.append(_number(s, item))
    distinct = set(seen)
    try:
        s.write((2**62).to_bytes(8, "little") + _PAD)
        reopened = True
    except Exception:
        reopened = False
    s.close()
    print(json.dumps({
        "read": len(seen),
        "kept": sum(1 for k in distinct if 0 <= k < acked),
        "duplicates": len(seen) - len(distinct),
        "in_order": seen == sorted(seen),
        "unacknowledged_read": sum(1 for k in distinct if k >= acked),
        "writes_after": reopened,
    }))


def main(argv: list[str]) -> None:
    """Run one child role."""
    role, key, where, *rest = argv
    if role == "xwriter":
        _xwriter(key, Path(where), float(rest[0]), float(rest[1]))
    elif role == "xreader":
        _xreader(key, Path(where), rest[0], Path(rest[1]))
    elif role == "crash-writer":
        _crash_writer(key, Path(where))
    elif role == "crash-verify":
        _crash_verify(key, Path(where), int(rest[0]))
    else:
        raise SystemExit(f"bench.compare_procs: unknown role {role!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
