"""Keyed entries (issue 19, the key directory): latest, write_if with a key, delete, keys;
shared by processes, rebuilt when missing or damaged."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

import tape
from crash_support import child_env, hooks_compiled_in
from tape.testing import ManualClock


def test_latest_write_if_delete_and_keys(queue: tape.Queue) -> None:
    a = queue.appender()
    assert queue.latest("acct-1") is None and queue.keys() == []
    i = a.write({"balance": 10}, key="acct-1")
    a.write({"other": 1})
    j = a.write({"balance": 5}, key=b"acct-2")
    e = queue.latest("acct-1")
    assert e is not None and (e.index, e.value, e.key) == (i, {"balance": 10}, "acct-1")
    assert queue.latest(b"acct-1") == e  # a key is its bytes: a str is its UTF-8
    assert a.write_if({"balance": 12}, key="acct-1", last=j) is None  # not the key's newest
    k = a.write_if({"balance": 12}, key="acct-1", last=i)
    latest = queue.latest("acct-1")
    assert latest is not None and (latest.index, latest.value) == (k, {"balance": 12})
    assert sorted(map(repr, queue.keys())) == sorted(map(repr, ["acct-1", b"acct-2"]))
    d = a.delete("acct-1")
    assert queue.latest("acct-1") is None and queue.keys() == [b"acct-2"]
    tomb = queue.tailer(start=d).read_entry()  # tailers see the tombstone: value None
    assert tomb is not None and (tomb.index, tomb.value, tomb.key) == (d, None, "acct-1")
    assert a.write_if({"balance": 1}, key="acct-1") is not None  # deleted: as if there were none
    assert a.write_if({"balance": 2}, key="new", last=None) is not None
    assert a.write_if({"balance": 3}, key="new", last=None) is None


def test_a_raw_queue_deletes_with_an_empty_value(raw_queue: tape.Queue) -> None:
    a = raw_queue.appender()
    a.write(b"v", key="k")
    d = a.delete("k")
    assert raw_queue.latest("k") is None
    tomb = list(raw_queue.tailer().entries())[-1]
    assert (tomb.index, tomb.value, tomb.key) == (d, b"", "k")


def test_another_process_sees_the_newest_at_once(qpath: Path) -> None:
    code = (
        "import sys, tape\n"
        "with tape.Queue(sys.argv[1]) as q:\n"
        "    a = q.appender()\n"
        "    for i in range(300):\n"
        "        print(a.write(i, key=f'k{i % 3}'), flush=True)\n"
    )
    with tape.Queue(qpath) as q:
        assert q.latest("k0") is None
        p = subprocess.Popen([sys.executable, "-c", code, str(qpath)], stdout=subprocess.PIPE)
        assert p.stdout is not None
        for i, line in enumerate(p.stdout):
            e = q.latest(f"k{i % 3}")
            assert e is not None and e.index >= int(line) and e.key == f"k{i % 3}"
        assert p.wait(timeout=60) == 0
        assert sorted(map(str, q.keys())) == ["k0", "k1", "k2"]
        e = q.latest("k2")
        assert e is not None and e.value == 299


def test_a_missing_or_damaged_directory_is_rebuilt(qpath: Path) -> None:
    with tape.Queue(qpath) as q:
        a = q.appender()
        want = {f"key-{i}": a.write(i, key=f"key-{i}") for i in range(2000)}
        a.delete("key-5")
    keys = qpath / "tape.keys"
    keys.unlink()
    with tape.Queue(qpath, read_only=True) as q:  # read-only: the answers come from the log
        e = q.latest("key-7")
        assert e is not None and e.index == want["key-7"]
        assert len(q.keys()) == 1999
    with tape.Queue(qpath) as q:
        e = q.latest("key-1999")
        assert e is not None and e.index == want["key-1999"]
    data = bytearray(keys.read_bytes())
    data[0] ^= 0xFF
    keys.write_bytes(bytes(data))
    with tape.Queue(qpath) as q:
        assert q.latest("key-5") is None
        e = q.latest("key-0")
        assert e is not None and e.index == want["key-0"]
        assert len(q.keys()) == 1999


@pytest.mark.parametrize("key", [7, "", b"x" * 1025, "x" * 1025])
def test_bad_keys(queue: tape.Queue, key: object) -> None:
    with pytest.raises((tape.ArgumentError, tape.ArgumentTypeError)):
        queue.latest(key)  # type: ignore[arg-type]
    with pytest.raises((tape.ArgumentError, tape.ArgumentTypeError)):
        queue.appender().delete(key)  # type: ignore[arg-type]
    with pytest.raises((tape.ArgumentError, tape.ArgumentTypeError)):
        queue.appender().write_if(1, key=key)  # type: ignore[arg-type]
    assert queue.count() == 0


def test_a_key_whose_newest_entry_was_purged_is_carried_forward(qpath: Path) -> None:
    clock = ManualClock(1_763_683_200 * 10**9)
    with tape.Queue(qpath, roll_cycle="test_secondly", clock=clock) as q:
        a = q.appender()
        old = a.write(1, key="old")
        clock.advance(2)
        a.write(2, key="new")
        assert q.purge(keep_cycles=1)
        e = q.latest("old")
        assert e is not None and e.value == 1 and e.index > old
        e = q.latest("new")
        assert e is not None and e.value == 2
    with tape.Queue(qpath, read_only=True) as q:
        e = q.latest("old")
        assert e is not None and e.value == 1

def test_keys_that_churn_leave_the_directory_bounded(qpath: Path) -> None:
    """1,000,000 distinct keys written then deleted, 20,000 at a time: the directory forgets
    the deleted ones when it is written anew, so its size follows the live keys, not all ever seen."""
    batch, batches = 20_000, 50
    sizes = []
    clock = ManualClock(1_763_683_200 * 10**9)
    with tape.Queue(qpath, codec="raw", roll_cycle="minutely", clock=clock) as q:
        a = q.appender()
        for b in range(batches):
            clock.advance(60)  # a cycle file a batch
            keys = [b"k%d" % (b * batch + i) for i in range(batch)]
            for k in keys:
                a.write(b"v", key=k)
            for k in keys[1:]:  # one key of each batch stays
                a.delete(k)
            sizes.append((qpath / "tape.keys").stat().st_size)
            if b % 10 == 9:
                q.purge(keep_cycles=1)  # (the log's size is not the question here)
        assert sorted(q.keys()) == sorted(b"k%d" % (b * batch) for b in range(batches))
        assert q.latest(b"k20001") is None
        e = q.latest(b"k40000")
        assert e is not None and e.value == b"v"
    # 20,000 live keys at most, at most 3/8 of the slots after a rewrite: 2^16 slots of 32 B
    # (2 MiB); keeping every deleted key's slot would have taken 2^22 (128 MiB).
    assert max(sizes) <= 4096 + 32 * 2**16, sizes
    (qpath / "tape.keys").unlink()  # rebuilt from the log, whose tombstones it leaves out
    with tape.Queue(qpath, codec="raw") as q:
        assert len(q.keys()) == batches and q.verify().ok
    assert (qpath / "tape.keys").stat().st_size <= 4096 + 32 * 2**10


_KILLED_IN_A_REWRITE = """
import sys, tape
a = tape.Queue(sys.argv[1]).appender()
for n in range(1_000_000):  # distinct keys until the directory is written anew: killed there
    a.write(n, key=f"x{n}")
"""


def test_a_new_directory_left_half_written_by_a_killed_writer_is_removed_at_open(tmp_path: Path) -> None:
    # Killed (kill point keys_moved) after writing tape.keys.tmp.<pid> and
    # before renaming it: the next writable open removes it (holding the
    # write lock, so never a live writer's); a read-only open leaves it.
    if not hooks_compiled_in():
        pytest.skip("needs the kill points of a test build")
    qpath = tmp_path / "q"
    with tape.Queue(qpath) as q:
        q.appender().write(0, key="k")
    killed = subprocess.Popen([sys.executable, "-c", _KILLED_IN_A_REWRITE, str(qpath)],
                              env=child_env(kill="keys_moved:1"))
    assert killed.wait(timeout=120) == -signal.SIGKILL
    assert [p.name for p in qpath.glob("tape.keys.tmp.*")] == [f"tape.keys.tmp.{killed.pid}"]
    (qpath / "tape.keys.tmp.1").write_bytes(b"not a live writer's: none writes without the write lock")
    with tape.Queue(qpath, read_only=True) as q:
        assert len(list(qpath.glob("tape.keys.tmp.*"))) == 2
        assert q.latest("k") is not None
    with tape.Queue(qpath) as q:
        assert list(qpath.glob("tape.keys.tmp.*")) == []
        x5 = q.latest("x5")
        assert x5 is not None and x5.value == 5
        assert q.verify().ok


def _slots(path: Path) -> list[tuple[int, int, int]]:
    """(offset of the slot's hint, word, hint) of each taken slot of tape.keys (docs/FORMAT.md)."""
    import struct

    data = (path / "tape.keys").read_bytes()
    log2 = struct.unpack_from("<I", data, 12)[0]
    out = []
    for k in range(1 << log2):
        h1, _h2, word, hint = struct.unpack_from("<QQqQ", data, 4096 + 32 * k)
        if h1:
            out.append((4096 + 32 * k + 24, word, hint))
    return out


def test_latest_reads_where_the_directory_says_and_a_wrong_hint_never_reads_as_the_entry(tmp_path: Path) -> None:
    # Each slot keeps where its entry starts (a hint); latest reads there. A
    # hint that is stale (the key's entry in the cycle before: what a writer
    # of an earlier release leaves, updating only the index), mid-entry, past
    # the end or none is checked by the entry's checksum
    # (it covers the sequence number) and latest finds the entry by its index.
    import struct

    clock = ManualClock()
    qpath = tmp_path / "q"
    with tape.Queue(qpath, roll_cycle="test_secondly", clock=clock) as q:
        a = q.appender()
        for k in range(50):
            a.write({"v": 0, "k": k}, key=f"k{k}")
        first = {off: hint for off, _, hint in _slots(qpath)}
        for k in range(0, 50, 3):  # a third again in the same cycle: their first hint is stale there
            a.write({"v": 3, "k": k}, key=f"k{k}")
        clock.advance(1)
        for k in range(0, 50, 2):  # half of them again, in the next cycle
            a.write({"v": 1, "k": k}, key=f"k{k}")
        for k in range(1, 50, 4):
            a.write({"v": 2, "k": k}, key=f"k{k}")  # again in the same cycle
        want = {f"k{k}": q.latest(f"k{k}").value for k in range(50)}  # type: ignore[union-attr]
        assert all(hint for _, _, hint in _slots(qpath))
    with tape.Queue(qpath, roll_cycle="test_secondly", clock=clock) as q:
        for bad in ("stale", "shifted", "past", "none"):
            with open(qpath / "tape.keys", "r+b") as f:
                for off, _word, hint in _slots(qpath):
                    f.seek(off)
                    wrong = {"stale": first[off], "shifted": hint + 8, "past": hint + (1 << 40), "none": 0}[bad]
                    f.write(struct.pack("<Q", wrong))
            assert {f"k{k}": q.latest(f"k{k}").value for k in range(50)} == want, bad  # type: ignore[union-attr]
        assert q.verify().ok
