"""Small queues start small (issue 21, item 7): a new cycle file holds its index and a little
room, and grows as entries arrive; measured with st_blocks (the disk actually used)."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import tape

KIB = 1024
MIB = 1024 * KIB
BOUND = 256 * KIB  # tape.meta (64 KiB) and a daily cycle file with its first index array


def disk_used(path: Path) -> int:
    """Bytes of disk the files under `path` occupy."""
    return sum(p.stat().st_blocks * 512 for p in path.rglob("*") if p.is_file())


def test_a_fresh_queue_with_one_entry_takes_little_disk(tmp_path: Path) -> None:
    with tape.Queue(tmp_path / "q") as q:
        q.appender().write({"id": 1})
    assert disk_used(tmp_path / "q") < BOUND


def test_a_hundred_small_entries_fit_in_the_first_room(tmp_path: Path) -> None:
    with tape.Queue(tmp_path / "q") as q:
        q.appender().write_many({"id": i, "name": "event"} for i in range(100))
    assert disk_used(tmp_path / "q") < BOUND


def test_a_durable_atom_takes_little_disk(tmp_path: Path) -> None:
    with tape.DurableAtom(tmp_path / "atom", initial={"n": 0}) as a:
        for _ in range(10):
            a.swap(lambda s: {"n": s["n"] + 1})
    assert disk_used(tmp_path / "atom") < BOUND


def test_an_entry_larger_than_the_first_room_is_written_and_read(tmp_path: Path) -> None:
    big = os.urandom(3 * MIB)
    with tape.Queue(tmp_path / "q", codec="raw") as q:
        q.appender().write(b"small")
        q.appender().write(big)
        assert list(q.tailer()) == [b"small", big]
        assert q.verify().ok


def _write_mib(path: str, who: int, n: int) -> None:
    """Append n entries of 64 KiB, each starting with the writer's number and its count."""
    with tape.Queue(path, codec="raw") as q:
        a = q.appender()
        for i in range(n):
            a.write(bytes([who]) + i.to_bytes(4, "little") + os.urandom(64 * KIB - 5))


def test_a_queue_grows_to_many_megabytes_from_two_processes(tmp_path: Path) -> None:
    path = str(tmp_path / "q")
    tape.Queue(path, codec="raw").close()
    n = 160  # 10 MiB per process
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_write_mib, args=(path, who, n)) for who in (1, 2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
        assert p.exitcode == 0
    with tape.Queue(path, read_only=True) as q:
        seen: dict[int, list[int]] = {1: [], 2: []}
        for v in q.tailer():
            seen[v[0]].append(int.from_bytes(v[1:5], "little"))
        assert seen == {1: list(range(n)), 2: list(range(n))}
        assert q.verify().ok
        (cycle,) = q.cycles()
    assert os.stat(cycle.path).st_size >= 2 * n * 64 * KIB
