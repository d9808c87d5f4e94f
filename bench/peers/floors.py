"""The floors: what no queue written in Python (or C) on this machine can beat.

- Python buffered file append: `f.write(payload)` on a file opened "ab", no header.
- Python mmap slice assignment: `m[pos:end] = payload` into a fallocated shared mapping.
- C memcpy into a prefaulted shared mapping (bench/floors/memcpy_floor.c, built at run
  time with the system cc): not a Subject, it times itself.
"""

from __future__ import annotations

import json
import mmap
import os
import shutil
import subprocess
from array import array
from pathlib import Path
from typing import Any

from bench.peers import Subject

_C_SOURCE = Path(__file__).resolve().parent.parent / "floors" / "memcpy_floor.c"


class PyFile(Subject):
    """Records appended to a buffered file; read back with f.read(size)."""

    key = "floor-file"
    name = "floor: Python file append"
    kind = "floor"
    how = "f.write / f.write(b''.join(batch)) / f.read(size) / f.read(size)"
    cross_process = "a floor, not a queue"
    crash = False
    size = 0

    def values(self, payloads: list[bytes]) -> list[Any]:
        self.size = len(payloads[0])
        return payloads

    def open(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.f = open(path / "log", "ab")
        self.r = open(path / "log", "rb")
        self.write = self.f.write
        read, size = self.r.read, self.size

        def read_one() -> bytes | None:
            return read(size) or None

        self.read = read_one

    def write_many(self, values: list[Any]) -> None:
        self.f.write(b"".join(values))

    def close(self) -> None:
        self.f.close()
        self.r.close()


class PyMmap(Subject):
    """Slice assignment into a fallocated 1 GiB shared mapping; read back by slicing."""

    key = "floor-mmap"
    name = "floor: Python mmap slice"
    kind = "floor"
    how = "m[pos:end] = p / one slice for the batch / m[pos:end] / m[pos:end]"
    cross_process = "a floor, not a queue"
    crash = False
    capacity = 1 << 30
    size = 0
    written = 0  # bytes written before the last close

    def values(self, payloads: list[bytes]) -> list[Any]:
        self.size = len(payloads[0])
        return payloads

    def open(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        file = path / "log"
        fresh = not file.exists()
        fd = os.open(file, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if fresh:
                os.posix_fallocate(fd, 0, self.capacity)
                self.written = 0
            m = self.m = mmap.mmap(fd, self.capacity)
        finally:
            os.close(fd)
        pos, rpos, limit, size = self.written, 0, self.written, self.size

        def write(p: bytes) -> None:
            nonlocal pos
            end = pos + len(p)
            m[pos:end] = p
            pos = end

        def read() -> bytes | None:
            nonlocal rpos
            if rpos >= limit:
                return None
            end = rpos + size
            v = m[rpos:end]
            rpos = end
            return v

        def written() -> int:
            return pos

        self.write, self.read, self._written = write, read, written

    def write_many(self, values: list[Any]) -> None:
        self.write(b"".join(values))

    def close(self) -> None:
        self.written = self._written()
        self.m.close()


SUBJECTS: tuple[type[Subject], ...] = (PyFile, PyMmap)


class CMemcpy:
    """bench/floors/memcpy_floor.c, compiled into `build_dir`; runs one measurement per call."""

    key = "floor-memcpy-c"
    name = "floor: C memcpy"
    kind = "floor"
    how = "memcpy into a prefaulted MAP_SHARED file mapping (64 MiB, reused round and round) / memcpy out"

    def __init__(self, build_dir: Path) -> None:
        cc = os.environ.get("CC") or shutil.which("cc") or "gcc"
        self.exe = build_dir / "memcpy_floor"
        subprocess.run([cc, "-O2", "-std=c11", "-o", str(self.exe), str(_C_SOURCE)], check=True)

    def _run(self, *args: object) -> dict[str, Any]:
        out = subprocess.run([str(self.exe), *map(str, args)], check=True, capture_output=True, text=True).stdout
        result: dict[str, Any] = json.loads(out)
        return result

    def throughput(self, where: Path, size: int, box: float) -> dict[str, Any]:
        """Write, then read, for `box` seconds each: items and ns of each."""
        where.mkdir(parents=True, exist_ok=True)
        return self._run(where, size, "tput", box)

    def latency(self, where: Path, size: int, box: float, cap: int, rate: float | None) -> tuple[array[int], int]:
        """Per-copy samples (ns) at full speed (rate None) or at `rate` a second; and the clock's cost."""
        where.mkdir(parents=True, exist_ok=True)
        out = where / "samples.bin"
        args = ("lat", box, cap) if rate is None else ("rate", rate, box)
        info = self._run(where, size, *args, out)
        samples = array("q")
        with open(out, "rb") as f:
            samples.fromfile(f, info["samples"])
        return samples, int(info["overhead_ns"])
