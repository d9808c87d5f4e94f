"""Instructions per operation, counted by callgrind: a measure that holds on a busy machine.

    python -m bench.instructions OP [OP ...]      (in a venv with valgrind on PATH)
    python bench/instructions.py --one OP N       (what callgrind runs)

Each OP runs in a fresh process under `valgrind --tool=callgrind` twice, with N =
20,000 and 40,000; the difference divided by 20,000 is the instructions one
operation costs, Python and C together (the prefaulter thread included, whose
share varies a few percent from run to run: repeat a run before trusting a
difference of that size). Set PYTHONPATH to compare two builds of tape.
OPs: write, write_many, read, iterate, read_named, iterate_named, each on a raw
queue of 100-byte entries, and write_msgpack, iterate_msgpack on a msgpack queue
of a small event. The read and iterate ops write their entries first
(write_many, about 1,100 instructions an entry).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile

OPS = ("write", "write_many", "read", "iterate", "read_named", "iterate_named", "write_msgpack", "iterate_msgpack")
_SMALL, _LARGE = 20_000, 40_000


def one(op: str, n: int) -> None:
    """Do `op` n times on a new queue."""
    import tape

    where = tempfile.mkdtemp()
    codec = "msgpack" if op.endswith("_msgpack") else "raw"
    value: object = {"id": 1, "name": "event", "v": 1.5, "tags": ["a", "b"]} if codec == "msgpack" else b"x" * 100
    try:
        with tape.Queue(os.path.join(where, "q"), codec=codec, large_pages=False) as q:
            a = q.appender()
            if op.startswith("write_many"):
                a.write_many([value] * n)
            elif op.startswith("write"):
                write = a.write
                for _ in range(n):
                    write(value)
            else:
                a.write_many([value] * n)
                t = q.tailer("named" if "_named" in op else None)
                if op.startswith("iterate"):
                    sum(1 for _ in t)
                else:
                    read = t.read
                    for _ in range(n):
                        read()
    finally:
        shutil.rmtree(where)


def _instructions(op: str, n: int) -> int:
    out = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
         sys.executable, os.path.abspath(__file__), "--one", op, str(n)],
        capture_output=True, text=True, check=True,
    ).stderr
    m = re.search(r"refs:\s*([\d,]+)", out)
    assert m is not None, out
    return int(m[1].replace(",", ""))


def main(argv: list[str]) -> None:
    if argv[:1] == ["--one"]:
        one(argv[1], int(argv[2]))
        return
    for op in argv or OPS:
        per = (_instructions(op, _LARGE) - _instructions(op, _SMALL)) / (_LARGE - _SMALL)
        print(f"{op:16} {per:8,.0f} instructions")


if __name__ == "__main__":
    main(sys.argv[1:])
