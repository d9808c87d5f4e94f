"""A Hypothesis state machine against a model list, with crashes: every tailer returns a prefix of the model.

Rules: append, write_many, move the clock on (so that the queue rolls), open a
tailer at an index, read n entries, reopen the queue, crash a writer (a child
process appends and is killed by a kill point, mostly inside an entry) and
damage the tail beyond the last acknowledged entry (as a torn write or a power
loss leaves it). After a crash the model gains what the child acknowledged,
plus its in-flight entry only if the queue shows it was published (never more
than one). Tail damage is never read as data: an unfinished entry is cleared by
the next append; a look-alike entry makes readers stop (None or
CorruptionError) and appends fail with CorruptionError until the test zeroes
it again (or, should a writer clear such damage itself, what it appends is
read right after the model).
"""

from __future__ import annotations

import shutil
import signal
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import crash_support as cs
import tape

KILL_POINTS = ["after_reserve", "after_copy", "index_slot", "before_publish", "hint_update"]
_fork: cs.ForkServer | None = None


@pytest.fixture(scope="module", autouse=True)
def _fork_server() -> Iterator[None]:
    global _fork
    if not cs.hooks_compiled_in():
        pytest.skip("the core is not a test build (TAPE_TESTING): kill points are not compiled in")
    _fork = cs.ForkServer()
    yield
    _fork.close()
    _fork = None


values = st.binary(max_size=48)


class QueueWithCrashes(RuleBasedStateMachine):
    """The queue under test, the model (index, value) list, and tailers with their model positions."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="tape-model-"))
        self.path = self.dir / "q"
        self.now = cs.T0_NS
        self.model: list[tuple[int, bytes]] = []
        self.tailers: list[tuple[tape.Tailer, int]] = []
        self.crashes = 0
        self._open()

    def _open(self) -> None:
        self.q = tape.Queue(self.path, codec="raw", roll_cycle="test_secondly", clock=lambda: self.now)
        self.a = self.q.appender()

    def teardown(self) -> None:
        self.q.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- writing -----------------------------------------------------------------

    def _added(self, index: int, value: bytes) -> None:
        if self.model:
            assert index > self.model[-1][0], "indexes must increase"
        self.model.append((index, value))

    @rule(value=values)
    def append(self, value: bytes) -> None:
        self._added(self.a.write(value), value)

    @rule(batch=st.lists(values, min_size=1, max_size=8))
    def write_many(self, batch: list[bytes]) -> None:
        last = self.a.write_many(batch)
        for k, v in enumerate(batch):
            self._added(last - len(batch) + 1 + k, v)

    @rule(seconds=st.integers(1, 3))
    def move_the_clock_on(self, seconds: int) -> None:
        self.now += seconds * cs.SECOND

    # -- reading -----------------------------------------------------------------

    @rule(data=st.data())
    def new_tailer_at_an_index(self, data: st.DataObject) -> None:
        if not self.model or data.draw(st.booleans(), label="from the start"):
            self.tailers.append((self.q.tailer(), 0))
            return
        pos = data.draw(st.integers(0, len(self.model) - 1), label="position")
        self.tailers.append((self.q.tailer(start=self.model[pos][0]), pos))

    @precondition(lambda self: self.tailers)
    @rule(data=st.data(), n=st.integers(1, 20))
    def read_n(self, data: st.DataObject, n: int) -> None:
        k = data.draw(st.integers(0, len(self.tailers) - 1), label="tailer")
        t, pos = self.tailers[k]
        for _ in range(n):
            e = t.read_entry()
            if pos == len(self.model):
                assert e is None, f"read {e} beyond the model"
                break
            assert e is not None, f"nothing read at model position {pos} of {len(self.model)}"
            assert (e.index, e.value) == self.model[pos]
            pos += 1
        self.tailers[k] = (t, pos)

    @rule()
    def reopen(self) -> None:
        self.q.close()
        self.tailers.clear()
        self._open()

    # -- crashes -----------------------------------------------------------------

    @rule(point=st.sampled_from(KILL_POINTS), count=st.integers(1, 6), data=st.data())
    def crash_a_writer_in_another_process(self, point: str, count: int, data: st.DataObject) -> None:
        n = data.draw(st.integers(1, count), label="killed at the n-th time")
        self.crashes += 1
        tag = str(self.crashes)
        assert _fork is not None
        status, out = _fork.run("model-writer", self.path, self.now, count, tag, kill=f"{point}:{n}")
        assert status in (0, -signal.SIGKILL), f"the child ended with {cs.killed_by(status)}: {out}"
        acked = [int(line) for line in out.split()]
        # Read what follows the model: the acknowledged entries, and perhaps the one in flight.
        t = self.q.tailer()
        if self.model:
            assert t.to_index(self.model[-1][0])
            t.read()
        found = [(e.index, e.value) for e in t.entries()]
        t.close()
        expected = [(i, cs.model_value(tag, k)) for k, i in enumerate(acked)]
        assert found[: len(acked)] == expected, "an acknowledged entry is missing or wrong"
        extra = found[len(acked):]
        assert len(extra) <= (1 if status else 0), f"{len(extra)} unacknowledged entries after the crash"
        if extra:
            assert extra[0][1] == cs.model_value(tag, len(acked)), "the in-flight entry is not what was written"
        for index, value in found:
            self._added(index, value)
        event(f"crash: {'killed' if status else 'not reached'}, in-flight entry {'published' if extra else 'not published'}")

    @precondition(lambda self: self.model)
    @rule(kind=st.sampled_from(["unfinished", "lookalike", "torn"]))
    def damage_the_tail_beyond_the_last_entry(self, kind: str) -> None:
        path = Path(self.q.cycles()[-1].path)
        data = path.read_bytes()
        lay = cs.layout(data)
        last = lay.data[-1] if lay.data else None
        if last is None or lay.end_header:
            event("damage: skipped")
            return  # the newest cycle holds no entry, or its end is not clean
        event(f"damage: {kind}")
        blob = bytearray(data[last.offset:last.end])
        if kind == "unfinished":
            struct.pack_into("<I", blob, 0, struct.unpack_from("<I", blob)[0] | cs.H_NC)
        elif kind == "torn":
            blob[8:] = bytes(len(blob) - 8)  # the header reached the disk, the rest did not
        with open(path, "r+b") as fh:
            fh.seek(lay.end)
            fh.write(blob)
        t = self.q.tailer()
        got: list[tuple[int, bytes]] = []
        error = None
        try:
            for e in t.entries():
                got.append((e.index, e.value))
        except tape.CorruptionError as exc:
            error = exc
        t.close()
        assert got == self.model, "every entry before the damage is read, and nothing of it"
        if kind == "unfinished":
            assert error is None, "an unfinished entry is what a killed writer leaves, not damage"
            return  # the next append clears it
        try:
            index = self.a.write(b"over the damage")
        except tape.CorruptionError:
            assert not self.q.verify().ok
            with open(path, "r+b") as fh:  # the operator's repair: zero what follows the end
                fh.seek(lay.end)
                fh.write(bytes(len(blob)))
            assert self.q.verify().ok
            event("damage: appends refused until repaired")
            return
        # The writer cleared the damage itself: what it wrote must follow the model.
        self._added(index, b"over the damage")
        t = self.q.tailer()
        assert [(e.index, e.value) for e in t.entries()] == self.model
        t.close()

    # -- always ------------------------------------------------------------------

    @invariant()
    def the_queue_holds_the_model(self) -> None:
        assert self.q.count() == len(self.model)
        assert self.q.last_index == (self.model[-1][0] if self.model else None)


QueueWithCrashes.TestCase.settings = settings(
    max_examples=200,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestQueueWithCrashes = QueueWithCrashes.TestCase

