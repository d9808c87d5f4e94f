"""Compaction of keyed entries (issue 19): purge and retention= carry each live key's
newest entry forward before removing its cycle, deleted keys stay deleted, and verify
checks the key directory (tape.keys) against the log."""

from __future__ import annotations

import contextlib

import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import hypothesis.strategies as st
from click.testing import CliRunner
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

import tape
from tape.cli import cli
from tape.testing import ManualClock

START = 1_763_683_200 * 10**9


def secondly(path: Path, clock: ManualClock, **kw: object) -> tape.Queue:
    return tape.Queue(path, roll_cycle="test_secondly", clock=clock, **kw)  # type: ignore[arg-type]


def test_purge_keeps_each_live_keys_newest_value(qpath: Path) -> None:
    clock = ManualClock(START)
    with secondly(qpath, clock) as q:
        a = q.appender()
        for k in range(50):
            a.write(f"v0-{k}", key=f"k{k}")
        a.write("no key")
        clock.advance(1)
        for k in range(0, 50, 2):
            a.write(f"v1-{k}", key=f"k{k}")  # the even keys' newest move to cycle 1
        clock.advance(1)
        a.write("filler")
        before = q.count()
        removed = q.purge(keep_cycles=1)
        assert len(removed) == 2
        for k in range(50):
            e = q.latest(f"k{k}")
            assert e is not None and e.value == (f"v1-{k}" if k % 2 == 0 else f"v0-{k}")
            assert e.key == f"k{k}" and tape.split_index(q, e.index)[0] == q.cycles()[-1].cycle
        assert sorted(q.keys()) == sorted(f"k{k}" for k in range(50))  # type: ignore[type-var]
        assert q.count() == 1 + 50  # the filler, and one copy of each key
        assert before > q.count()
    with tape.Queue(qpath, read_only=True) as q:  # what another process sees
        assert {q.latest(f"k{k}").value for k in range(50)} == {  # type: ignore[union-attr]
            f"v1-{k}" if k % 2 == 0 else f"v0-{k}" for k in range(50)}


def test_a_deleted_key_is_not_resurrected(qpath: Path) -> None:
    clock = ManualClock(START)
    with secondly(qpath, clock) as q:
        a = q.appender()
        a.write("old", key="gone")
        a.write("kept", key="kept")
        clock.advance(1)
        a.delete("gone")  # its tombstone, newer than any value of it
        clock.advance(1)
        a.write("x")
        assert len(q.purge(keep_cycles=2)) == 1  # the cycle of the value: nothing carried for "gone"
        assert q.latest("gone") is None
        assert len(q.purge(keep_cycles=1)) == 1  # the tombstone's: the key is simply gone
        assert q.latest("gone") is None and q.keys() == ["kept"]
        assert [e.key for e in q.tailer().entries()] == [None, "kept"]
        assert q.verify().ok
    os.remove(qpath / "tape.keys")  # rebuilt from what is left: "gone" stays gone
    with tape.Queue(qpath) as q:
        assert q.latest("gone") is None and q.keys() == ["kept"]


def test_dry_run_appends_nothing_and_archive_keeps_the_whole_cycle(qpath: Path, tmp_path: Path) -> None:
    clock = ManualClock(START)
    with secondly(qpath, clock) as q:
        a = q.appender()
        first = [a.write(n, key=f"k{n % 3}") for n in range(6)]
        clock.advance(1)
        a.write("x")
        count = q.count()
        assert len(q.purge(keep_cycles=1, dry_run=True)) == 1
        assert q.count() == count and q.first_index == first[0]
        (archived,) = q.purge(keep_cycles=1, archive=tmp_path / "arch")
        assert [q.latest(f"k{n}").value for n in range(3)] == [3, 4, 5]  # type: ignore[union-attr]
    out = CliRunner().invoke(cli, ["dump", archived])
    assert out.exit_code == 0, out.output
    values = [json.loads(line)["value"] for line in out.output.splitlines()]
    assert values == list(range(6))  # the whole cycle, the old values too


def test_retention_keeps_the_queue_the_size_of_its_live_data(qpath: Path) -> None:
    clock = ManualClock(START)
    value = b"v" * 100
    sizes = []
    with tape.Queue(qpath, roll_cycle="test_secondly", clock=clock, codec="raw",
                    retention={"keep_cycles": 2}) as q:
        a = q.appender()
        for rnd in range(20):
            for k in range(200):
                a.write(value, key=f"key-{k}")
            clock.advance(1)
            a.write(b"tick")  # a new cycle: retention runs
            sizes.append(sum(c.bytes for c in q.cycles()))
        assert len(q.keys()) == 200
        assert all(q.latest(f"key-{k}").value == value for k in range(200))  # type: ignore[union-attr]
    assert max(sizes[5:]) <= 3 * min(sizes[5:])  # bounded: it does not grow with the rounds


WRITER = """
import sys, time, tape
with tape.Queue(sys.argv[1], roll_cycle="test_secondly") as q:
    a = q.appender()
    n = int(sys.argv[2])
    for i in range(n):
        a.write(i, key=f"k{i % 50}")
        if i % 500 == 499:
            time.sleep(0.2)  # test_secondly holds 4,096 entries a cycle
    for k in range(0, 50, 5):
        a.delete(f"k{k}")
    print("done", flush=True)
"""


def test_purge_during_a_concurrent_writer_of_the_same_keys(qpath: Path) -> None:
    with tape.Queue(qpath, roll_cycle="test_secondly") as q:
        q.appender().write(-1, key="k1")
        n = 6_000
        p = subprocess.Popen([sys.executable, "-c", WRITER, str(qpath), str(n)], stdout=subprocess.PIPE, text=True)
        assert p.stdout is not None
        purges = 0
        while p.poll() is None:
            purges += len(q.purge(keep_cycles=1))
        assert p.stdout.read() == "done\n" and p.wait() == 0
        assert purges >= 1  # the writer ran for seconds: cycles went while it wrote
        q.purge(keep_cycles=1)
        for k in range(50):
            e = q.latest(f"k{k}")
            if k % 5 == 0:
                assert e is None, (k, e)
            else:
                last = max(i for i in range(n - 50, n) if i % 50 == k)
                assert e is not None and e.value == last, (k, e)
        assert q.verify().ok
    with tape.Queue(qpath, read_only=True) as q:  # and from another handle
        assert sorted(q.keys()) == sorted(f"k{k}" for k in range(50) if k % 5)  # type: ignore[type-var]


PURGER = """
import sys, tape
with tape.Queue(sys.argv[1]) as q:
    print(len(q.purge(keep_cycles=1)))
"""


def test_a_purge_in_another_process_carries_keys(qpath: Path) -> None:
    clock = ManualClock(START)
    with secondly(qpath, clock) as q:
        a = q.appender()
        a.write({"n": 1}, key=b"\xff binary")
        a.write({"n": 2}, key="text")
        clock.advance(5)
        a.write("x")
    out = subprocess.run([sys.executable, "-c", PURGER, str(qpath)], capture_output=True, text=True, check=True)
    assert out.stdout == "1\n"
    with tape.Queue(qpath) as q:
        e = q.latest(b"\xff binary")
        assert e is not None and (e.value, e.key) == ({"n": 1}, b"\xff binary")
        e = q.latest("text")
        assert e is not None and (e.value, e.key) == ({"n": 2}, "text")


# -- verify and the key directory ---------------------------------------------------------------


def slots(path: Path) -> list[tuple[int, int]]:
    """(offset, word) of each used slot of tape.keys (docs/FORMAT.md)."""
    data = (path / "tape.keys").read_bytes()
    found = []
    for off in range(4096, len(data), 32):
        h1, _, word = struct.unpack_from("<QQq", data, off)
        if h1:
            found.append((off, word))
    return found


def test_verify_reports_a_key_directory_that_disagrees(qpath: Path) -> None:
    with tape.Queue(qpath) as q:
        a = q.appender()
        for k in range(5):
            a.write(k, key=f"k{k}")
        a.write(9, key="k0")
        assert q.verify().ok
    (off, word), *_ = slots(qpath)
    with open(qpath / "tape.keys", "r+b") as f:  # one key names another key's entry
        f.seek(off + 16)
        f.write(struct.pack("<q", word + 1 if word < 5 else word - 1))
    with tape.Queue(qpath) as q:
        r = q.verify()
        assert not r.ok and r.problems == 1 and r.bad_cycle is None and "tape.keys" in r.message
        result = CliRunner().invoke(cli, ["verify", str(qpath)])
        assert result.exit_code == 1 and "tape.keys" in result.output
        q.repair()  # rebuilds it from the log
        assert q.verify().ok
        assert [q.latest(f"k{k}").value for k in range(5)] == [9, 1, 2, 3, 4]  # type: ignore[union-attr]


def test_verify_reports_a_damaged_key_directory_header(qpath: Path) -> None:
    with tape.Queue(qpath) as q:
        q.appender().write(1, key="k")
    with open(qpath / "tape.keys", "r+b") as f:
        f.write(b"GARBAGE!")
    with tape.Queue(qpath) as q:
        r = q.verify()
        assert not r.ok and "tape.keys" in r.message
        e = q.latest("k")  # the next use rebuilds it
        assert e is not None and e.value == 1
        assert q.verify().ok


def test_a_missing_key_directory_is_not_damage(qpath: Path) -> None:
    with tape.Queue(qpath) as q:
        q.appender().write(1, key="k")
    os.remove(qpath / "tape.keys")
    with tape.Queue(qpath, read_only=True) as q:
        assert q.verify().ok


# -- a model: the queue against a dict ------------------------------------------------------------


class KeyedQueueModel(RuleBasedStateMachine):
    """Writes, deletes, write_if, rolls, purges and reopens; latest() and keys() always match a dict."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="tape-keys-model-")
        self.clock = ManualClock(START)
        self.model: dict[str, int] = {}
        self.n = 0
        self.open()

    def open(self) -> None:
        self.q = tape.Queue(self.dir + "/q", roll_cycle="test_secondly", clock=self.clock)
        self.a = self.q.appender()

    def teardown(self) -> None:
        self.q.close()
        shutil.rmtree(self.dir)

    @rule(key=st.sampled_from("abcdef"))
    def write(self, key: str) -> None:
        self.n += 1
        self.a.write(self.n, key=key)
        self.model[key] = self.n

    @rule(key=st.sampled_from("abcdef"))
    def delete(self, key: str) -> None:
        self.a.delete(key)
        self.model.pop(key, None)

    @rule(key=st.sampled_from("abcdef"))
    def write_if(self, key: str) -> None:
        e = self.q.latest(key)
        self.n += 1
        assert self.a.write_if(self.n, key=key, last=None if e is None else e.index) is not None
        self.model[key] = self.n

    @rule(seconds=st.integers(1, 3))
    def roll(self, seconds: int) -> None:
        self.clock.advance(seconds)
        self.a.write("tick")

    @rule(keep=st.integers(0, 3))
    def purge(self, keep: int) -> None:
        self.q.purge(keep_cycles=keep)

    @rule()
    def reopen(self) -> None:
        self.q.close()
        self.open()

    @rule()
    def lose_the_directory(self) -> None:
        self.q.close()
        with contextlib.suppress(FileNotFoundError):  # none yet before the first keyed write
            os.remove(self.dir + "/q/tape.keys")
        self.open()

    @invariant()
    def matches(self) -> None:
        for key in "abcdef":
            e = self.q.latest(key)
            assert (None if e is None else e.value) == self.model.get(key), key
        assert sorted(self.q.keys()) == sorted(self.model)  # type: ignore[type-var]


TestKeyedQueueModel = KeyedQueueModel.TestCase
TestKeyedQueueModel.settings = settings(max_examples=40, stateful_step_count=25, deadline=None)


def test_a_queue_without_keys_builds_no_key_directory(tmp_path: Path) -> None:
    """Purging, latest() and keys() on a queue that never had a key read no log and write no tape.keys."""
    clock = ManualClock(START)
    with secondly(tmp_path / "q", clock) as q:
        a = q.appender()
        for _ in range(3):
            a.write(b"x")
            clock.advance(1.0)
        assert q.latest("k") is None and q.keys() == []
        assert q.purge(keep_cycles=1)
        assert q.verify().ok
        assert not (tmp_path / "q" / "tape.keys").exists()
        a.write(b"y", key="k")  # the first keyed write: from now on the directory exists
        assert q.latest("k") is not None and (tmp_path / "q" / "tape.keys").exists()
