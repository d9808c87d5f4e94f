"""Consumer groups' claims and acks in C (tape/_native/_hot_group.c) against the Python path they stand in for.

A queue opened with a clock (a ManualClock) takes the Python path for every
claim and ack; one without takes the C path."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import tape
from tape.testing import ManualClock

VALUES: dict[str, list[Any]] = {
    "raw": [b"a", b"", b"x" * 5000],
    "msgpack": [{"job": 1}, [1, 2.5, None], "text", b"bytes"],
    "json": [{"job": 1}, [1, 2], "text"],  # decoded by the codec's decode, called from C
}


def no_python(*args: Any, **kw: Any) -> Any:
    raise AssertionError("the Python path was taken")


def handed_out(q: tape.Queue, group: str, many: bool) -> list[tuple[Any, ...]]:
    """What a consumer of `group` is handed, each acked (claim_many + ack_many, or claim + ack)."""
    c = q.group(group).consumer()
    got = c.claim_many(100) if many else list(iter(c.claim, None))
    if many:
        c.ack_many(got)
    else:
        for m in got:
            m.ack()
    assert c.claim() is None
    return [(type(m), m.index, m.value, m.attempt, m.timestamp, m.outcome) for m in got]


@pytest.mark.parametrize("many", [False, True], ids=["claim", "claim_many"])
@pytest.mark.parametrize("codec", ["raw", "msgpack", "json"])
def test_the_c_path_hands_out_what_the_python_path_does(qpath: Path, codec: str, many: bool) -> None:
    clock = ManualClock()
    with tape.Queue(qpath, codec=codec, clock=clock) as q:
        a = q.appender()
        for v in VALUES[codec]:
            a.write(v)
        python_path = handed_out(q, "python", many)
    with tape.Queue(qpath, codec=codec) as q:
        c_path = handed_out(q, "c", many)
    assert c_path == python_path
    assert [(d[0], d[2], d[3], d[5]) for d in c_path] == [(tape.Delivery, v, 1, "acked") for v in VALUES[codec]]


def test_claims_and_acks_without_a_clock_stay_in_c(raw_queue: tape.Queue, monkeypatch: pytest.MonkeyPatch) -> None:
    raw_queue.appender().write_many([b"a", b"b", b"c"])
    c = raw_queue.group("g").consumer()
    monkeypatch.setattr(tape.Consumer, "_claim_slow", no_python)
    monkeypatch.setattr(tape.Consumer, "_claim_batch", no_python)
    monkeypatch.setattr(tape.Consumer, "_ack_many_slow", no_python)
    monkeypatch.setattr(tape.Delivery, "_ack_slow", no_python)
    m = c.claim()
    assert m is not None and m.value == b"a"
    m.ack()
    batch = c.claim_many(10)
    assert [m.value for m in batch] == [b"b", b"c"]
    c.ack_many(batch)
    assert [m.outcome for m in batch] == ["acked", "acked"]


def test_a_lapsed_claim_is_refused_by_ack_and_changes_nothing(raw_queue: tape.Queue) -> None:
    raw_queue.appender().write(b"job")
    g = raw_queue.group("g", ack_wait=0.001)
    c = g.consumer()
    m = c.claim()
    assert m is not None
    time.sleep(0.01)  # past its deadline
    with pytest.raises(tape.StaleDeliveryError, match="lapsed|claim"):
        m.ack()
    assert m.outcome is None
    again = c.claim()
    assert again is not None and (again.index, again.attempt) == (m.index, 2)


def test_ack_many_names_the_lapsed_claims_and_acks_the_others(raw_queue: tape.Queue) -> None:
    raw_queue.appender().write_many([b"a", b"b"])
    g = raw_queue.group("g", ack_wait=0.001)
    c = g.consumer()
    old = c.claim_many(2)
    time.sleep(0.01)
    g2 = raw_queue.group("g", ack_wait=600)
    fresh = c.claim()  # "a" again, with the long deadline
    assert fresh is not None and fresh.index == old[0].index
    with pytest.raises(tape.StaleDeliveryError, match=f"2 of 3 claims had lapsed \\(indexes {old[0].index}, {old[1].index}\\)"):
        c.ack_many([old[0], fresh, old[1]])
    assert [m.outcome for m in (old[0], fresh, old[1])] == [None, "acked", None]
    assert [p.index for p in g2.pending()] == [old[1].index]  # lapsed, not acked: handed out again next


def test_ack_many_refuses_duplicates_and_others_deliveries_and_acks_nothing(raw_queue: tape.Queue) -> None:
    raw_queue.appender().write_many([b"a", b"b"])
    g = raw_queue.group("g")
    c, other = g.consumer(), g.consumer()
    m, n = c.claim(), other.claim()
    assert m is not None and n is not None
    with pytest.raises(tape.ArgumentError, match="each delivery once"):
        c.ack_many([m, m])
    with pytest.raises(tape.ArgumentError, match="deliveries of this consumer"):
        c.ack_many([m, n])
    with pytest.raises(tape.ArgumentError, match="deliveries of this consumer"):
        c.ack_many([m, "not a delivery"])  # type: ignore[list-item]
    assert len(g.pending()) == 2 and m.outcome is None
    c.ack_many(iter([m]))  # any iterable
    c.ack_many([])
    assert m.outcome == "acked" and [p.index for p in g.pending()] == [n.index]


def test_a_closed_consumer_refuses_claims_and_acks(raw_queue: tape.Queue) -> None:
    raw_queue.appender().write_many([b"a", b"b"])
    c = raw_queue.group("g").consumer()
    m = c.claim()
    assert m is not None
    c.close()
    with pytest.raises(tape.QueueClosedError):
        c.claim()
    with pytest.raises(tape.QueueClosedError):
        c.claim_many(5)
    with pytest.raises(tape.QueueClosedError):
        m.ack()
    with pytest.raises(tape.QueueClosedError):
        c.ack_many([m])
    assert m.outcome is None


def test_claim_keeps_its_python_arguments(raw_queue: tape.Queue) -> None:
    c = raw_queue.group("g").consumer()
    assert c.claim(timeout=0.01) is None
    assert c.claim(0) is None
    with pytest.raises(TypeError):
        c.claim(wait=1)  # type: ignore[call-arg]
    raw_queue.appender().write(b"a")
    m = c.claim(timeout=1)
    assert m is not None and m.value == b"a"


def test_a_delivery_keeps_its_fields_repr_and_context_manager(raw_queue: tape.Queue) -> None:
    raw_queue.appender().write_many([b"a", b"b"])
    c = raw_queue.group("g", ack_wait=60).consumer()
    before = time.time()
    with c.claim() as m:  # type: ignore[union-attr]
        assert repr(m) == f"<tape.Delivery index={m.index} attempt=1>"
        assert before + 59 < m.deadline < time.time() + 61
        assert not hasattr(m, "__dict__")
    assert m.outcome == "acked"
    with pytest.raises(RuntimeError), c.claim() as n:  # type: ignore[union-attr]
        raise RuntimeError("handler failed")
    assert n.outcome == "nacked"
    again = c.claim()
    assert again is not None and (again.index, again.attempt) == (n.index, 2)


def test_threads_sharing_one_consumer_ack_each_entry_once(raw_queue: tape.Queue) -> None:
    n = 20_000
    raw_queue.appender().write_many(b"%d" % k for k in range(n))
    c = raw_queue.group("g").consumer()
    seen: list[list[bytes]] = [[] for _ in range(4)]

    def work(k: int) -> None:
        while (m := c.claim()) is not None:
            seen[k].append(m.value)
            m.ack()
            if len(seen[k]) % 100 == 0:
                batch = c.claim_many(50)
                seen[k].extend(m.value for m in batch)
                c.ack_many(batch)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    values = [v for s in seen for v in s]
    assert sorted(values, key=int) == [b"%d" % k for k in range(n)]
    assert raw_queue.group("g").info()["acked"] == n


def test_threads_with_consumers_of_their_own_while_one_closes_its_own(raw_queue: tape.Queue) -> None:
    n = 10_000
    raw_queue.appender().write_many(b"%d" % k for k in range(n))
    g = raw_queue.group("g")
    acked: list[bytes] = []
    lock = threading.Lock()
    closer = g.consumer()

    def work() -> None:
        c = g.consumer()
        while (m := c.claim()) is not None:
            m.ack()
            with lock:
                acked.append(m.value)
        c.close()

    def close_one() -> None:
        for _ in range(100):
            m = closer.claim()
            if m is None:
                break
        closer.close()  # what it held is handed out again

    threads = [threading.Thread(target=work) for _ in range(3)] + [threading.Thread(target=close_one)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rest = g.consumer()
    while (m := rest.claim()) is not None:
        m.ack()
        acked.append(m.value)
    assert sorted(acked, key=int) == [b"%d" % k for k in range(n)]


def test_a_fork_child_gets_closed_errors_from_the_c_path(raw_queue: tape.Queue) -> None:
    raw_queue.appender().write_many([b"a", b"b"])
    c = raw_queue.group("g").consumer()
    m = c.claim()
    assert m is not None
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            try:
                c.claim()
            except tape.QueueClosedError:
                try:
                    m.ack()
                except tape.QueueClosedError:
                    code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    m.ack()  # still the parent's
    assert m.outcome == "acked"


def test_a_redriven_dead_letter_is_claimed_from_its_copy_in_a_batch(queue: tape.Queue) -> None:
    a = queue.appender()
    i = a.write({"job": 0})
    g = queue.group("g")
    c = g.consumer()
    m = c.claim()
    assert m is not None
    m.reject("bad")
    a.write({"job": 1})
    assert g.redrive() == 1
    got = c.claim_many(10)
    assert sorted((m.index, m.value) for m in got) == [(i, {"job": 0}), (i + 1, {"job": 1})]
    c.ack_many(got)
    assert g.dead_letters() == [] and g.pending() == []
