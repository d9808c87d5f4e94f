"""A consumer group behaves like a model of one, however claims, acks, nacks, extensions,
rejections, lapses, closes and reopens interleave (a manual clock drives the deadlines)."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import tape
from tape.testing import ManualClock

S = 10**9
ACK_WAIT = 10
MAX = 3
FLOOD = 4097  # more than the table's 4,096 slots


@dataclass
class Held:
    """The model of one entry in the group's table."""

    state: str  # "claimed" or "waiting"
    due: int
    attempt: int
    owner: int | None = None
    delivery: tape.Delivery | None = None


class GroupMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp()
        self.clock = ManualClock()
        self.written: list[int] = []
        self.taken = 0  # entries of `written` the group has taken
        self.table: dict[int, Held] = {}
        self.finished: set[int] = set()
        self.dead: set[int] = set()
        self.old: list[tape.Delivery] = []  # deliveries whose claim is over
        self.flooded = False
        self.open()

    def open(self) -> None:
        self.q = tape.Queue(self.dir + "/q", clock=self.clock)
        self.a = self.q.appender()
        self.g = self.q.group("g", ack_wait=ACK_WAIT, max_deliveries=MAX)
        self.consumers = [self.g.consumer(f"c{k}") for k in range(2)]

    def teardown(self) -> None:
        self.q.close()
        shutil.rmtree(self.dir)

    def release(self, k: int) -> None:
        """Consumer k closed: what it held is due at once."""
        for h in self.table.values():
            if h.state == "claimed" and h.owner == k:
                assert h.delivery is not None
                self.old.append(h.delivery)
                h.state, h.due, h.owner, h.delivery = "waiting", 0, None, None

    # -- rules ---------------------------------------------------------------------------

    @rule(n=st.integers(1, 5))
    def write(self, n: int) -> None:
        self.written += [self.a.write(len(self.written) + k) for k in range(n)]

    @rule(seconds=st.sampled_from([1, 5, 10, 11]))
    def advance(self, seconds: int) -> None:
        self.clock.advance(seconds)

    @rule(k=st.integers(0, 1))
    def claim(self, k: int) -> None:
        now = self.clock.now
        due = []
        for index, h in list(self.table.items()):
            if h.due > now or (h.state == "claimed" and h.due == now):
                continue
            if h.attempt >= MAX:
                del self.table[index]
                self.dead.add(index)
                if h.delivery is not None:
                    self.old.append(h.delivery)
                continue
            due.append(index)
        m = self.consumers[k].claim()
        if due:
            index = min(due)
        elif self.taken < len(self.written):
            index = self.written[self.taken]
            self.taken += 1
            self.table[index] = Held("waiting", 0, 0)
        else:
            assert m is None
            return
        assert m is not None and m.index == index
        h = self.table[index]
        if h.delivery is not None:
            self.old.append(h.delivery)
        h.state, h.due, h.owner, h.delivery = "claimed", now + ACK_WAIT * S, k, m
        h.attempt += 1
        assert m.attempt == h.attempt and m.value == self.written.index(index)

    def live(self) -> list[tuple[int, Held]]:
        return sorted((i, h) for i, h in self.table.items() if h.state == "claimed")

    def pick(self, data: st.DataObject) -> tuple[int, Held, bool] | None:
        """A delivery held now (fresh: its deadline not passed), or None."""
        held = self.live()
        if not held:
            return None
        index, h = data.draw(st.sampled_from(held))
        return index, h, self.clock.now <= h.due

    @rule(data=st.data())
    def ack(self, data: st.DataObject) -> None:
        got = self.pick(data)
        if got is None:
            return
        index, h, fresh = got
        assert h.delivery is not None
        if not fresh:
            try:
                h.delivery.ack()
            except tape.StaleDeliveryError:
                return
            raise AssertionError("a lapsed claim was acked")
        h.delivery.ack()
        del self.table[index]
        self.finished.add(index)
        self.old.append(h.delivery)

    @rule(data=st.data(), delay=st.sampled_from([0, 5]))
    def nack(self, data: st.DataObject, delay: int) -> None:
        got = self.pick(data)
        if got is None:
            return
        index, h, fresh = got
        assert h.delivery is not None
        if not fresh:
            try:
                h.delivery.nack(delay=delay)
            except tape.StaleDeliveryError:
                return
            raise AssertionError("a lapsed claim was nacked")
        h.delivery.nack(delay=delay)
        self.old.append(h.delivery)
        if h.attempt >= MAX:
            del self.table[index]
            self.dead.add(index)
        else:
            h.state, h.due, h.owner, h.delivery = "waiting", self.clock.now + delay * S, None, None

    @precondition(lambda self: not self.flooded and not self.table and self.taken == len(self.written))
    @rule(k=st.integers(0, 1))
    def nack_more_than_the_table_holds(self, k: int) -> None:
        """FLOOD new entries claimed and nacked for later: they wait out of the table, holding back nothing."""
        self.flooded = True
        first = len(self.written)
        self.a.write_many(range(first, first + FLOOD))
        c = self.consumers[k]
        values: list[int] = []
        while batch := c.claim_many(1000):
            for m in batch:
                m.nack(delay=5)
                values.append(m.value)
                self.written.append(m.index)
                self.table[m.index] = Held("waiting", self.clock.now + 5 * S, 1)
                self.old.append(m)
        assert values == list(range(first, first + FLOOD))
        self.taken = len(self.written)

    @rule(data=st.data())
    def extend(self, data: st.DataObject) -> None:
        got = self.pick(data)
        if got is None:
            return
        index, h, fresh = got
        assert h.delivery is not None
        if not fresh:
            try:
                h.delivery.extend(20)
            except tape.StaleDeliveryError:
                return
            raise AssertionError("a lapsed claim was extended")
        h.delivery.extend(20)
        h.due = self.clock.now + 20 * S

    @rule(data=st.data())
    def reject(self, data: st.DataObject) -> None:
        got = self.pick(data)
        if got is None or not got[2]:
            return
        index, h, _ = got
        assert h.delivery is not None
        h.delivery.reject("model")
        self.old.append(h.delivery)
        del self.table[index]
        self.dead.add(index)

    @rule(data=st.data())
    def stale_ack(self, data: st.DataObject) -> None:
        if not self.old:
            return
        d = data.draw(st.sampled_from(self.old))
        try:
            d.ack()
        except (tape.StaleDeliveryError, tape.QueueClosedError):
            return
        raise AssertionError("a finished or superseded delivery was acked")

    @rule(k=st.integers(0, 1))
    def reopen_consumer(self, k: int) -> None:
        self.consumers[k].close()
        self.release(k)
        self.consumers[k] = self.g.consumer(f"c{k}")

    @rule()
    def reopen_queue(self) -> None:
        self.q.close()
        self.release(0)
        self.release(1)
        self.open()

    # -- what the group says -------------------------------------------------------------

    @invariant()
    def counts_agree(self) -> None:
        info = self.g.info()
        claimed = sum(h.state == "claimed" for h in self.table.values())
        assert info["in_flight"] == claimed
        assert info["waiting"] == len(self.table) - claimed
        assert info["dead_letters"] == len(self.dead)
        assert info["acked"] == len(self.finished)
        assert info["position"] == (self.written[self.taken - 1] if self.taken else None)


GroupMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
test_group_model = GroupMachine.TestCase
