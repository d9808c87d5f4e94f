"""Consumer groups in one process: claims, acks, redelivery, fencing, delays, dead letters, inspection."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

import tape
from tape._time import to_datetime
from tape.testing import ManualClock


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def mq(qpath: Path, clock: ManualClock):  # type: ignore[no-untyped-def]
    """A queue on a manual clock: the group's deadlines and delays move only when the test says."""
    with tape.Queue(qpath, clock=clock) as q:
        yield q


def fill(q: tape.Queue, n: int) -> list[int]:
    a = q.appender()
    return [a.write({"job": i}) for i in range(n)]


def test_claim_ack_hands_each_entry_once_in_order(queue: tape.Queue) -> None:
    indexes = fill(queue, 5)
    c = queue.group("g").consumer("w")
    got = []
    while (m := c.claim()) is not None:
        got.append((m.index, m.value, m.attempt))
        m.ack()
    assert got == [(i, {"job": k}, 1) for k, i in enumerate(indexes)]
    assert c.claim() is None


def test_claim_waits_for_a_new_entry(queue: tape.Queue) -> None:
    c = queue.group("g").consumer()
    assert c.claim(timeout=0.01) is None
    threading.Timer(0.05, lambda: queue.appender().write("late")).start()
    m = c.claim(timeout=5)
    assert m is not None and m.value == "late"


def test_delivery_fields(mq: tape.Queue, clock: ManualClock) -> None:
    [i] = fill(mq, 1)
    m = mq.group("g", ack_wait=60).consumer().claim()
    assert m is not None
    assert (m.index, m.attempt) == (i, 1)
    assert m.timestamp == clock.now
    assert m.deadline == (clock.now + 60 * 10**9) / 1e9


def test_ack_twice_is_stale(queue: tape.Queue) -> None:
    fill(queue, 1)
    m = queue.group("g").consumer().claim()
    assert m is not None
    m.ack()
    with pytest.raises(tape.StaleDeliveryError):
        m.ack()


def test_nack_redelivers_before_newer_entries(queue: tape.Queue) -> None:
    first, second = fill(queue, 2)
    c = queue.group("g").consumer()
    m = c.claim()
    assert m is not None and m.index == first
    m.nack()
    again = c.claim()
    assert again is not None and (again.index, again.attempt) == (first, 2)
    nxt = c.claim()
    assert nxt is not None and nxt.index == second


def test_nack_delay_waits_and_holds_back_nothing(mq: tape.Queue, clock: ManualClock) -> None:
    first, second = fill(mq, 2)
    c = mq.group("g").consumer()
    m = c.claim()
    assert m is not None
    m.nack(delay=10)
    m2 = c.claim()
    assert m2 is not None and m2.index == second  # the delayed one holds nothing back
    m2.ack()
    assert c.claim() is None
    clock.advance(9.999)
    assert c.claim() is None
    clock.advance(0.001)
    m3 = c.claim()
    assert m3 is not None and (m3.index, m3.attempt) == (first, 2)


def test_backoff_delays(mq: tape.Queue, clock: ManualClock) -> None:
    fill(mq, 1)
    c = mq.group("g", backoff=[1, 5], max_deliveries=10).consumer()
    m = c.claim()
    waits = []
    for _ in range(3):
        assert m is not None
        m.nack()
        waited = 0
        while (m := c.claim()) is None:
            clock.advance(1)
            waited += 1
        waits.append(waited)
    assert waits == [1, 5, 5]
    assert m is not None and m.attempt == 4


def test_ack_wait_lapse_redelivers_and_fences_the_old_claim(mq: tape.Queue, clock: ManualClock) -> None:
    [i] = fill(mq, 1)
    g = mq.group("g", ack_wait=30)
    a, b = g.consumer("a"), g.consumer("b")
    old = a.claim()
    assert old is not None
    assert b.claim() is None
    clock.advance(30.001)
    new = b.claim()
    assert new is not None and (new.index, new.attempt) == (i, 2)
    for finish in (old.ack, old.nack, lambda: old.extend(10), old.reject):
        with pytest.raises(tape.StaleDeliveryError):
            finish()
    assert [p.consumer for p in g.pending()] == ["b"]  # nothing changed
    new.ack()
    assert g.pending() == [] and b.claim() is None


def test_lapsed_claim_refuses_ack_even_before_anyone_claims_it(mq: tape.Queue, clock: ManualClock) -> None:
    fill(mq, 1)
    m = mq.group("g", ack_wait=5).consumer().claim()
    assert m is not None
    clock.advance(6)
    with pytest.raises(tape.StaleDeliveryError):
        m.ack()


def test_extend_moves_the_deadline(mq: tape.Queue, clock: ManualClock) -> None:
    fill(mq, 1)
    g = mq.group("g", ack_wait=10)
    a, b = g.consumer(), g.consumer()
    m = a.claim()
    assert m is not None
    clock.advance(8)
    m.extend(60)
    assert m.deadline == (clock.now + 60 * 10**9) / 1e9
    clock.advance(30)
    assert b.claim() is None
    m.ack()


def test_max_deliveries_sends_to_dead_letters_with_provenance(mq: tape.Queue, clock: ManualClock) -> None:
    [i, j] = fill(mq, 2)
    g = mq.group("g", max_deliveries=2)
    c = g.consumer("w1")
    for attempt in (1, 2):
        m = c.claim()
        assert m is not None and (m.index, m.attempt) == (i, attempt)
        m.nack()
    m = c.claim()
    assert m is not None and m.index == j
    m.ack()
    [dead] = g.dead_letters()
    assert (dead.index, dead.value, dead.attempts, dead.reason, dead.consumer) == (i, {"job": 0}, 2, "max_deliveries", "w1")
    assert dead.when == to_datetime(clock.now)
    assert g.info()["dead_letters"] == 1


def test_lapses_count_as_deliveries(mq: tape.Queue, clock: ManualClock) -> None:
    [i] = fill(mq, 1)
    g = mq.group("g", max_deliveries=2, ack_wait=1)
    c = g.consumer()
    for _ in range(2):
        assert c.claim() is not None
        clock.advance(2)
    assert c.claim() is None
    assert [d.index for d in g.dead_letters()] == [i]


def test_reject_then_redrive(queue: tape.Queue) -> None:
    [i, j] = fill(queue, 2)
    g = queue.group("g")
    c = g.consumer("w")
    m = c.claim()
    assert m is not None
    m.reject("bad input")
    [dead] = g.dead_letters()
    assert (dead.index, dead.reason, dead.attempts, dead.consumer) == (i, "bad input", 1, "w")
    assert g.redrive() == 1
    assert g.dead_letters() == []
    m = c.claim()
    assert m is not None and (m.index, m.value, m.attempt) == (i, {"job": 0}, 1)
    m.ack()
    m = c.claim()
    assert m is not None and m.index == j


def test_redrive_survives_the_log_losing_the_entry(qpath: Path) -> None:
    clock = ManualClock()
    with tape.Queue(qpath, roll_cycle="test_secondly", clock=clock) as q:
        a = q.appender()
        i = a.write("precious")
        g = q.group("g")
        m = g.consumer().claim()
        assert m is not None
        m.reject()
        for _ in range(3):
            clock.advance(1)
            a.write("later")
        assert q.purge(keep_cycles=1)  # the rejected entry's cycle goes: the group finished it
        assert q.first_index != i
        assert g.redrive([i]) == 1
        m = g.consumer().claim()
        assert m is not None and (m.index, m.value) == (i, "precious")


def test_redrive_selected_indexes(queue: tape.Queue) -> None:
    fill(queue, 3)
    g = queue.group("g")
    c = g.consumer()
    rejected = []
    while (m := c.claim()) is not None:
        rejected.append(m.index)
        m.reject()
    assert g.redrive([rejected[1]]) == 1
    assert [d.index for d in g.dead_letters()] == [rejected[0], rejected[2]]
    m = c.claim()
    assert m is not None and m.index == rejected[1]


def test_context_manager_acks_or_nacks(queue: tape.Queue) -> None:
    [i, j] = fill(queue, 2)
    c = queue.group("g").consumer()
    with c.claim() as m:  # type: ignore[union-attr]
        assert m.index == i
    with pytest.raises(ZeroDivisionError):
        with c.claim() as m:  # type: ignore[union-attr]
            assert m.index == j
            1 / 0
    m2 = c.claim()
    assert m2 is not None and (m2.index, m2.attempt) == (j, 2)


def test_follow_yields_deliveries(queue: tape.Queue) -> None:
    fill(queue, 3)
    c = queue.group("g").consumer()
    seen = []
    for m in c.follow(timeout=0.05):
        with m:
            seen.append(m.value["job"])
    assert seen == [0, 1, 2]


def test_claim_many(queue: tape.Queue) -> None:
    fill(queue, 5)
    c = queue.group("g").consumer()
    got = c.claim_many(3)
    assert [m.value["job"] for m in got] == [0, 1, 2]
    assert [m.value["job"] for m in c.claim_many(10)] == [3, 4]
    assert c.claim_many(2) == []


def test_aclaim_and_afollow(queue: tape.Queue) -> None:
    import asyncio

    fill(queue, 2)
    c = queue.group("g").consumer()

    async def main() -> list[int]:
        m = await c.aclaim(timeout=1)
        assert m is not None
        m.ack()
        out = [m.value["job"]]
        async for m in c.afollow():
            m.ack()
            out.append(m.value["job"])
            break
        return out

    assert asyncio.run(main()) == [0, 1]


def test_close_gives_claims_back(queue: tape.Queue) -> None:
    [i] = fill(queue, 1)
    g = queue.group("g", ack_wait=600)
    a, b = g.consumer(), g.consumer()
    m = a.claim()
    assert m is not None
    a.close()
    with pytest.raises(tape.QueueClosedError):
        a.claim()
    again = b.claim()
    assert again is not None and (again.index, again.attempt) == (i, 2)
    with pytest.raises(tape.QueueClosedError):  # its consumer is closed
        m.ack()


def test_not_before_waits_in_the_table(mq: tape.Queue, clock: ManualClock) -> None:
    a = mq.appender()
    later = a.write("later", delay=10)
    now = a.write("now")
    c = mq.group("g").consumer()
    m = c.claim()
    assert m is not None and m.index == now
    m.ack()
    assert c.claim() is None
    clock.advance(10)
    m = c.claim()
    assert m is not None and m.index == later


def test_fan_out_two_groups_each_get_every_entry(queue: tape.Queue) -> None:
    idx = fill(queue, 4)
    for name in ("a", "b"):
        c = queue.group(name).consumer()
        got = []
        while (m := c.claim()) is not None:
            got.append(m.index)
            m.ack()
        assert got == idx


def test_tailers_unaffected(queue: tape.Queue) -> None:
    fill(queue, 3)
    named = queue.tailer("billing")
    assert named.read() == {"job": 0}
    c = queue.group("g").consumer()
    while (m := c.claim()) is not None:
        m.ack()
    assert named.read() == {"job": 1}
    assert [v["job"] for v in queue.tailer()] == [0, 1, 2]
    assert queue.describe()["named_tailers"] == {"billing": named.index}


def test_start_end_and_index(queue: tape.Queue) -> None:
    idx = fill(queue, 3)
    late = queue.group("late", start="end").consumer()
    assert late.claim() is None
    mid = queue.group("mid", start=idx[1]).consumer().claim()
    assert mid is not None and mid.index == idx[1]
    j = queue.appender().write("new")
    m = late.claim()
    assert m is not None and m.index == j


def test_settings_are_stored_and_changed(queue: tape.Queue) -> None:
    g = queue.group("g", ack_wait=12, max_deliveries=3, backoff=[1, 2])
    assert g.info()["settings"] == {"ack_wait": 12.0, "max_deliveries": 3, "backoff": [1.0, 2.0]}
    g2 = queue.group("g", max_deliveries=7)
    assert g2.info()["settings"] == {"ack_wait": 12.0, "max_deliveries": 7, "backoff": [1.0, 2.0]}


def test_pending_and_info(mq: tape.Queue, clock: ManualClock) -> None:
    idx = fill(mq, 4)
    g = mq.group("g", ack_wait=100)
    a, b = g.consumer("a"), g.consumer("b")
    ma = a.claim()
    clock.advance(5)
    mb = b.claim()
    assert ma is not None and mb is not None
    assert [(p.index, p.consumer, p.attempt, p.idle) for p in g.pending()] == [(idx[0], "a", 1, 5.0), (idx[1], "b", 1, 0.0)]
    assert [p.index for p in g.pending(consumer="b")] == [idx[1]]
    assert [p.index for p in g.pending(idle=1)] == [idx[0]]
    mb.ack()
    info = g.info()
    assert info["position"] == idx[1]
    assert info["ack_floor"] == idx[0]
    assert info["lag"] == 2
    assert info["in_flight"] == 1
    assert info["consumers"] == 2
    assert info["dead_letters"] == 0


def test_groups_listed_and_removed(queue: tape.Queue) -> None:
    queue.group("b").close()
    queue.group("a").close()
    assert queue.groups() == ["a", "b"]
    assert queue.describe()["groups"] == ["a", "b"]
    queue.remove_group("a")
    assert queue.groups() == ["b"]
    with pytest.raises(KeyError):
        queue.remove_group("a")


@pytest.mark.parametrize("name", ["", "x" * 48, "a/b", ".hidden", "nul\0"])
def test_bad_names(queue: tape.Queue, name: str) -> None:
    with pytest.raises(tape.ArgumentError):
        queue.group(name)


def test_bad_arguments(queue: tape.Queue) -> None:
    with pytest.raises(tape.ArgumentError):
        queue.group("g", ack_wait=0)
    with pytest.raises(tape.ArgumentError):
        queue.group("g", max_deliveries=0)
    with pytest.raises(tape.ArgumentTypeError):
        queue.group("g", max_deliveries="5")
    with pytest.raises(tape.ArgumentTypeError):
        queue.group("g", backoff=5)
    with pytest.raises(tape.ArgumentError):
        queue.group("g", backoff=[-1])
    with pytest.raises(tape.ArgumentError):
        queue.group("g", start="middle")
    fill(queue, 1)
    c = queue.group("g").consumer()
    m = c.claim()
    assert m is not None
    with pytest.raises(tape.ArgumentError):
        m.nack(delay=-1)
    with pytest.raises(tape.ArgumentError):
        c.claim(timeout=-1)
    with pytest.raises(tape.ArgumentError):
        c.claim_many(0)


def test_reopen_keeps_everything(qpath: Path) -> None:
    with tape.Queue(qpath) as q:
        idx = fill(q, 3)
        g = q.group("g", ack_wait=600, max_deliveries=4)
        c = g.consumer()
        m = c.claim()
        assert m is not None
        m.ack()
        m = c.claim()
        assert m is not None
        m.reject("no")
    with tape.Queue(qpath) as q:
        g = q.group("g")
        assert g.info()["settings"]["max_deliveries"] == 4
        assert [d.index for d in g.dead_letters()] == [idx[1]]
        m = g.consumer().claim()
        assert m is not None and m.index == idx[2]


def test_position_beyond_the_data_is_clamped(qpath: Path) -> None:
    """A group file durable ahead of the log (a power cut lost entries): entries written later are not skipped."""
    with tape.Queue(qpath) as q:
        fill(q, 3)
        g = q.group("g")
        c = g.consumer()
        while (m := c.claim()) is not None:
            m.ack()
    saved = (qpath / "groups" / "g.group").read_bytes()
    # the log as it was before its last two entries: a fresh queue with one entry
    import shutil

    shutil.rmtree(qpath)
    with tape.Queue(qpath) as q:
        fill(q, 1)
    (qpath / "groups").mkdir()
    (qpath / "groups" / "g.group").write_bytes(saved)
    with tape.Queue(qpath) as q:
        g = q.group("g")
        j = q.appender().write("after the power cut")
        m = g.consumer().claim()
        assert m is not None and m.index == j


def test_retention_keeps_what_a_group_has_not_finished(qpath: Path) -> None:
    clock = ManualClock()
    with tape.Queue(qpath, roll_cycle="test_secondly", clock=clock) as q:
        a = q.appender()
        first = a.write("old")
        g = q.group("g")
        c = g.consumer()
        m = c.claim()
        assert m is not None  # held, not finished
        for _ in range(4):
            clock.advance(1)
            a.write("new")
        assert q.purge(keep_cycles=1, respect_tailers=True) == []
        assert q.first_index == first
        m.ack()
        while (m2 := c.claim()) is not None:
            if m2.index < q.last_index:  # type: ignore[operator]
                m2.ack()
            else:
                break
        assert len(q.purge(keep_cycles=1, respect_tailers=True)) == 4  # all but the held entry's cycle


def test_retention_option_respects_groups(qpath: Path) -> None:
    clock = ManualClock()
    with tape.Queue(qpath, roll_cycle="test_secondly", clock=clock, retention={"keep_cycles": 1}) as q:
        a = q.appender()
        first = a.write("old")
        q.group("g")  # has finished nothing
        for _ in range(4):
            clock.advance(1)
            a.write("new")
        assert q.first_index == first


def test_state_file_size_bounded(queue: tape.Queue) -> None:
    a = queue.appender()
    a.write_many(range(100_000))
    c = queue.group("g").consumer()
    path = os.path.join(queue.path, "groups", "g.group")
    size = os.path.getsize(path)
    n = 0
    for m in c.claim_many(100_000):
        m.ack()
        n += 1
    while (more := c.claim_many(4096)):
        for m in more:
            m.ack()
            n += 1
    assert n == 100_000
    assert os.path.getsize(path) == size
    assert queue.group("g").info()["acked"] == 100_000


def test_table_full_holds_new_entries_back(queue: tape.Queue) -> None:
    from tape._native.group import SLOTS

    queue.appender().write_many(range(SLOTS + 5))
    c = queue.group("g").consumer()
    held = c.claim_many(SLOTS + 5)
    assert len(held) == SLOTS
    held[0].ack()
    m = c.claim()
    assert m is not None and m.value == SLOTS


def test_damaged_group_file_is_corruption(qpath: Path) -> None:
    with tape.Queue(qpath) as q:
        q.group("g").close()
    path = qpath / "groups" / "g.group"
    data = bytearray(path.read_bytes())
    for off in (0, 20, 4096 + 16):  # magic, header (CRC), settings (CRC)
        bad = bytearray(data)
        bad[off] ^= 0xFF
        path.write_bytes(bytes(bad))
        with tape.Queue(qpath) as q, pytest.raises(tape.CorruptionError):
            q.group("g")
    path.write_bytes(bytes(data[:5000]))
    with tape.Queue(qpath) as q, pytest.raises(tape.CorruptionError):
        q.group("g")
    bad = bytearray(data)
    bad[32768 + 32] = 9  # a slot's state
    path.write_bytes(bytes(bad))
    with tape.Queue(qpath) as q, pytest.raises(tape.CorruptionError):
        q.group("g")


def test_read_only_queue_inspects_groups(qpath: Path) -> None:
    with tape.Queue(qpath) as q:
        fill(q, 2)
        g = q.group("g")
        m = g.consumer("w").claim()
        assert m is not None
        m.reject("x")
    with tape.Queue(qpath, read_only=True) as q:
        assert q.groups() == ["g"]
        g = q.group("g")
        assert [d.reason for d in g.dead_letters()] == ["x"]
        assert g.info()["position"] is not None
        with pytest.raises(tape.ReadOnlyError):
            g.consumer()
        with pytest.raises(KeyError):
            q.group("missing")


def test_queue_close_closes_groups(qpath: Path) -> None:
    q = tape.Queue(qpath)
    fill(q, 1)
    c = q.group("g").consumer()
    q.close()
    with pytest.raises(tape.QueueClosedError):
        c.claim()


def test_consumer_per_thread(queue: tape.Queue) -> None:
    n = 2000
    queue.appender().write_many(range(n))
    g = queue.group("g")
    seen: list[int] = []
    lock = threading.Lock()

    def work() -> None:
        with g.consumer() as c:
            while (m := c.claim()) is not None:
                with lock:
                    seen.append(m.value)
                m.ack()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(seen) == list(range(n))


def test_a_consumer_garbage_collected_gives_its_claims_back(queue: tape.Queue) -> None:
    import gc

    [i] = fill(queue, 1)
    g = queue.group("g", ack_wait=600)
    c = g.consumer()
    assert c.claim() is not None
    del c
    gc.collect()
    m = g.consumer().claim()
    assert m is not None and (m.index, m.attempt) == (i, 2)


def test_group_file_truncated_under_a_consumer_is_reported_not_a_crash(queue: tape.Queue) -> None:
    fill(queue, 3)
    c = queue.group("g").consumer()
    m = c.claim()
    assert m is not None
    os.truncate(os.path.join(queue.path, "groups", "g.group"), 5000)
    with pytest.raises(tape.CorruptionError):
        for _ in range(2):  # the call that meets the missing pages, or the next
            c.claim()
    with pytest.raises(tape.CorruptionError):
        m.ack()


def test_sync_always_group(qpath: Path) -> None:
    with tape.Queue(qpath, sync="always") as q:
        [i] = fill(q, 1)
        m = q.group("g").consumer().claim()
        assert m is not None and m.index == i
        m.ack()
        assert q.group("g").info()["acked"] == 1


def test_claim_many_large_entries_and_redeliveries(raw_queue: tape.Queue) -> None:
    a = raw_queue.appender()
    big = [bytes([k]) * (600 << 10) for k in range(3)] + [b"h" * (3 << 20)]
    idx = [a.write(v) for v in big] + [a.write(b"small")]
    c = raw_queue.group("g").consumer()
    first = c.claim()
    assert first is not None and first.index == idx[0]
    first.nack()
    got = c.claim_many(10)
    assert [m.index for m in got] == idx  # the redelivery first, each payload whole
    assert [m.value for m in got] == [*big, b"small"]
    assert got[0].attempt == 2 and all(m.attempt == 1 for m in got[1:])


def test_a_group_takes_no_consumer_slot_and_the_limit_says_consumers(queue: tape.Queue) -> None:
    g = queue.group("g")
    consumers = [g.consumer() for _ in range(254)]
    groups = [queue.group("g") for _ in range(10)]  # an open Group holds no slot
    consumers.append(g.consumer())
    with pytest.raises(tape.LimitError, match="255 consumers"):
        g.consumer()
    with pytest.raises(tape.LimitError, match="255 consumers"):
        queue.group("g")  # opening takes a slot while it holds the group's lock
    consumers.pop().close()
    assert groups[-1].consumer() is not None


def test_far_settings_are_argument_errors(queue: tape.Queue) -> None:
    with pytest.raises(tape.ArgumentError):
        queue.group("g", ack_wait=1e12)
    with pytest.raises(tape.ArgumentError):
        queue.group("g", backoff=[1, 1e12])
    queue.appender().write("job")
    m = queue.group("g").consumer().claim()
    assert m is not None
    with pytest.raises(tape.ArgumentError):
        m.extend(1e12)
    m.ack()


def test_a_fork_child_cannot_use_the_parents_consumer_and_opens_its_own(qpath: Path) -> None:
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent("""
        import os, sys, tape
        q = tape.Queue(sys.argv[1]); q.appender().write_many(["a", "b"])
        g = q.group("g"); c = g.consumer("parent")
        m = c.claim()
        pid = os.fork()
        if pid == 0:
            try:
                c.claim()
                os._exit(1)
            except tape.QueueClosedError:
                pass
            d = tape.Queue(sys.argv[1]).group("g").consumer("child").claim()
            os._exit(0 if d is not None and d.value == "b" else 2)
        _, status = os.waitpid(pid, 0)
        m.ack()  # still the parent's
        print(os.waitstatus_to_exitcode(status))
    """)
    r = subprocess.run([sys.executable, "-c", code, str(qpath)], capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == "0", r.stdout + r.stderr


def test_ack_many_acks_a_batch(queue: tape.Queue) -> None:
    indexes = fill(queue, 10)
    g = queue.group("g")
    c = g.consumer()
    batch = c.claim_many(10)
    c.ack_many(batch)
    assert g.info()["acked"] == 10 and g.floor() == indexes[-1] + 1
    c.ack_many([])
    with pytest.raises(tape.StaleDeliveryError):
        batch[0].ack()  # finished already


def test_ack_many_acks_the_live_claims_and_names_the_lapsed_ones(mq: tape.Queue, clock: ManualClock) -> None:
    indexes = fill(mq, 3)
    g = mq.group("g", ack_wait=10)
    c1, c2 = g.consumer("c1"), g.consumer("c2")
    first = c1.claim()
    assert first is not None
    clock.advance(11)  # the first claim lapses
    again = c2.claim()
    assert again is not None and again.index == first.index
    rest = c1.claim_many(2)
    with pytest.raises(tape.StaleDeliveryError, match=str(first.index)):
        c1.ack_many([first, *rest])
    assert g.info()["acked"] == 2
    again.ack()  # the redelivery is untouched
    assert g.floor() == indexes[-1] + 1


def test_ack_many_takes_only_this_consumers_deliveries(queue: tape.Queue) -> None:
    fill(queue, 2)
    g = queue.group("g")
    c1, c2 = g.consumer(), g.consumer()
    m = c1.claim()
    assert m is not None
    with pytest.raises(tape.ArgumentError):
        c2.ack_many([m])
    with pytest.raises(tape.ArgumentError):
        c1.ack_many(["not a delivery"])  # type: ignore[list-item]
    c1.ack_many(iter([m]))
    assert g.info()["acked"] == 1
