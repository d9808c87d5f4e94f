"""A tailer behaves like a cursor over a list, however reads, iterations and moves interleave."""

from __future__ import annotations

import itertools
import shutil
import tempfile

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import tape


class TailerMachine(RuleBasedStateMachine):
    """The model: the values written, their indexes, and the tailer's position in them."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp()
        self.q = tape.Queue(self.dir + "/q")
        self.a = self.q.appender()
        self.t = self.q.tailer()
        self.values: list[int] = []
        self.indexes: list[int] = []
        self.pos = 0
        self.last_read: int | None = None

    def teardown(self) -> None:
        self.q.close()
        shutil.rmtree(self.dir)

    def handed_out(self, n: int) -> None:
        if n:
            self.last_read = self.indexes[self.pos + n - 1]
            self.pos += n

    @rule(n=st.integers(1, 3000))
    def write_many(self, n: int) -> None:
        start = len(self.values)
        last = self.a.write_many(range(start, start + n))
        self.values.extend(range(start, start + n))
        self.indexes.extend(range(last - n + 1, last + 1))

    @rule()
    def write(self) -> None:
        self.indexes.append(self.a.write(len(self.values)))
        self.values.append(len(self.values))

    @rule()
    def read(self) -> None:
        expected = self.values[self.pos] if self.pos < len(self.values) else None
        assert self.t.read() == expected
        self.handed_out(expected is not None)

    @rule()
    def read_entry(self) -> None:
        entry = self.t.read_entry()
        if self.pos < len(self.values):
            assert entry is not None
            assert (entry.index, entry.value) == (self.indexes[self.pos], self.values[self.pos])
            self.handed_out(1)
        else:
            assert entry is None

    @rule(k=st.integers(0, 5000), entries=st.booleans())
    def iterate_and_break(self, k: int, entries: bool) -> None:
        it = self.t.entries() if entries else iter(self.t)
        got = list(itertools.islice(it, k))
        if entries:
            got = [e.value for e in got]
        assert got == self.values[self.pos : self.pos + k]
        self.handed_out(len(got))

    @rule()
    def iterate_all(self) -> None:
        assert list(self.t) == self.values[self.pos :]
        self.handed_out(len(self.values) - self.pos)

    @precondition(lambda self: self.values)
    @rule(data=st.data())
    def to_index(self, data: st.DataObject) -> None:
        k = data.draw(st.integers(0, len(self.values) - 1))
        assert self.t.to_index(self.indexes[k])
        self.pos = k

    @rule()
    def to_start(self) -> None:
        self.t.to_start()
        self.pos = 0

    @rule()
    def to_end(self) -> None:
        self.t.to_end()
        self.pos = len(self.values)

    @invariant()
    def index_is_the_next_entry(self) -> None:
        if self.pos < len(self.values):
            assert self.t.index == self.indexes[self.pos]

    @invariant()
    def last_read_index_is_the_last_handed_out(self) -> None:
        assert self.t.last_read_index == self.last_read


TailerMachine.TestCase.settings = settings(max_examples=40, stateful_step_count=30, deadline=None)
test_tailer_matches_the_model = TailerMachine.TestCase
