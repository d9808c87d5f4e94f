"""Durable objects in one process: handlers, stored only on change, rollback, hibernation, alarms, bad arguments."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, ClassVar

import pytest

import tape
from tape.objects import ALARM_BACKOFF, ALARM_DELIVERIES, FailedAlarm
from tape.testing import ManualClock, fire_due_alarms

RUNS: list[str] = []  # what the alarm handlers of these tests saw


class Tally(tape.DurableObject):
    count: int = 0
    items: list[Any] = []
    label: ClassVar[str] = "not state"

    def increment(self, amount: int = 1) -> int:
        self.count += amount
        return self.count

    def read(self) -> int:
        return self.count

    def add(self, item: Any) -> None:
        self.items.append(item)

    def fail(self) -> None:
        self.count += 100
        self.items.append("lost")
        raise RuntimeError("handler failed")

    def remind(self, name: str, seconds: float) -> None:
        self.schedule_alarm(name, delay=seconds)

    def on_alarm(self, name: str) -> None:
        RUNS.append(name)
        if name == "boom":
            raise RuntimeError("alarm failed")
        if name == "again":
            self.schedule_alarm("later", delay=10)
        self.count = 0


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def objects(tmp_path: Path, clock: ManualClock) -> Any:
    RUNS.clear()
    with tape.Objects(tmp_path / "store", alarms=False, clock=clock) as objects:
        yield objects


def entries(objects: tape.Objects) -> int:
    return objects._queue.count()


def test_calls_by_reference_and_by_name(objects: tape.Objects) -> None:
    c = objects.get(Tally, "u1")
    assert c.increment(5) == 5
    assert objects.call(Tally, "u1", "increment", 2) == 7
    assert c.state() == {"count": 7, "items": []}
    assert objects.get(Tally, "u2").state() == {"count": 0, "items": []}


def test_state_survives_reopening(tmp_path: Path) -> None:
    with tape.Objects(tmp_path / "s", alarms=False) as objects:
        objects.get(Tally, "u").add({"a": [1, 2]})
    with tape.Objects(tmp_path / "s", alarms=False) as objects:
        assert objects.get(Tally, "u").state() == {"count": 0, "items": [{"a": [1, 2]}]}


def test_state_is_stored_only_when_it_changed(objects: tape.Objects) -> None:
    c = objects.get(Tally, "u")
    c.read()
    c.state()
    c.increment(0)
    assert entries(objects) == 0  # the defaults are not stored
    c.increment()
    c.read()
    c.increment(0)
    assert entries(objects) == 1
    c.add(1)
    c.add(2)
    assert entries(objects) == 3


def test_a_handler_that_raises_changes_nothing(objects: tape.Objects) -> None:
    c = objects.get(Tally, "u")
    c.add("kept")
    before = entries(objects)
    with pytest.raises(RuntimeError, match="handler failed"):
        c.fail()
    assert c.state() == {"count": 0, "items": ["kept"]}  # the in-memory copy rolled back too
    assert entries(objects) == before


def test_threads_on_one_object_run_one_at_a_time(objects: tape.Objects) -> None:
    c = objects.get(Tally, "t")

    def work() -> None:
        for _ in range(500):
            c.increment()

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert c.state()["count"] == 4000


def test_two_stores_on_one_directory_see_each_others_calls(tmp_path: Path) -> None:
    with tape.Objects(tmp_path / "s", alarms=False) as a, tape.Objects(tmp_path / "s", alarms=False) as b:
        a.get(Tally, "x").increment()
        b.get(Tally, "x").increment()
        assert a.get(Tally, "x").read() == 2  # a's cached copy is not the newest: reloaded


def test_idle_objects_hibernate_and_shut_down(tmp_path: Path, clock: ManualClock) -> None:
    with tape.Objects(tmp_path / "s", alarms=False, clock=clock, hibernate_after=10, shutdown_after=100) as objects:
        objects.get(Tally, "a").increment()
        objects.get(Tally, "b").increment()
        assert objects.in_memory() == [("Tally", "a"), ("Tally", "b")]
        clock.advance(5)
        objects.get(Tally, "b").increment()
        clock.advance(6)
        objects.get(Tally, "b").increment()
        assert objects.in_memory() == [("Tally", "b")]  # a: idle 11 s
        assert objects.get(Tally, "a").read() == 1  # loaded again
        clock.advance(200)
        objects.get(Tally, "c").read()
        assert ("Tally", "a") not in objects.in_memory()
        assert b"Tally/a" not in objects._slots  # shut down: forgotten altogether
        objects.stop(Tally, "c")
        assert objects.in_memory() == []
        assert objects.get(Tally, "b").read() == 3


def test_alarms_fire_exactly_when_the_manual_clock_reaches_them(objects: tape.Objects, clock: ManualClock) -> None:
    c = objects.get(Tally, "u")
    c.increment(3)
    c.schedule_alarm("reset", delay=60)
    due = datetime(2025, 1, 1, 0, 1, tzinfo=timezone.utc)
    assert c.list_alarms() == [("reset", due)]
    clock.advance(59.999)
    assert fire_due_alarms(objects) == 0
    assert c.read() == 3
    clock.advance(0.001)
    assert fire_due_alarms(objects) == 1
    assert c.read() == 0 and c.list_alarms() == []
    clock.advance(3600)
    assert fire_due_alarms(objects) == 0
    assert RUNS == ["reset"]


def test_many_alarms_per_object_fire_in_time_order(objects: tape.Objects, clock: ManualClock) -> None:
    c = objects.get(Tally, "u")
    c.schedule_alarm("b", at=datetime(2025, 1, 1, 0, 0, 2, tzinfo=timezone.utc))
    c.schedule_alarm("a", delay=timedelta(seconds=1))
    c.schedule_alarm("c", at=clock.now / 1e9 + 3)
    assert [n for n, _ in c.list_alarms()] == ["a", "b", "c"]
    clock.advance(10)
    assert fire_due_alarms(objects) == 3
    assert RUNS == ["a", "b", "c"]


def test_far_alarms_wait_aside_and_do_not_hold_back_near_ones(objects: tape.Objects, clock: ManualClock) -> None:
    for i in range(1500):  # more than the group keeps waiting
        objects.get(Tally, f"far{i}").schedule_alarm("far", delay=3600)
    objects.get(Tally, "near").schedule_alarm("near", delay=1)
    clock.advance(1)
    assert fire_due_alarms(objects) == 1
    clock.advance(3600 - 1 - 30)
    assert fire_due_alarms(objects) == 0  # within the horizon now: moved, not yet due
    clock.advance(29.999)
    assert fire_due_alarms(objects) == 0
    clock.advance(0.001)
    assert fire_due_alarms(objects) == 1500
    assert objects.failed_alarms() == []


def test_a_far_alarm_missed_while_closed_fires_once_after_reopening(tmp_path: Path, clock: ManualClock) -> None:
    RUNS.clear()
    with tape.Objects(tmp_path / "s", alarms=False, clock=clock) as objects:
        objects.get(Tally, "u").schedule_alarm("reset", delay=7200)
    clock.advance(86400)
    with tape.Objects(tmp_path / "s", alarms=False, clock=clock) as objects:
        assert fire_due_alarms(objects) == 1
        clock.advance(86400)
        assert fire_due_alarms(objects) == 0
    assert RUNS == ["reset"]


def test_an_alarm_in_the_past_fires_at_once(objects: tape.Objects, clock: ManualClock) -> None:
    objects.get(Tally, "u").schedule_alarm("late", at=datetime(2020, 1, 1, tzinfo=timezone.utc))
    assert fire_due_alarms(objects) == 1


def test_on_alarm_and_handlers_schedule_alarms(objects: tape.Objects, clock: ManualClock) -> None:
    c = objects.get(Tally, "u")
    c.remind("again", 5)
    assert entries(objects) == 1  # the state and its alarm in one write
    clock.advance(5)
    assert fire_due_alarms(objects) == 1
    assert [n for n, _ in c.list_alarms()] == ["later"]
    clock.advance(10)
    assert fire_due_alarms(objects) == 1
    assert RUNS == ["again", "later"]


def test_a_replaced_or_cancelled_alarm_does_not_fire(objects: tape.Objects, clock: ManualClock) -> None:
    c = objects.get(Tally, "u")
    c.schedule_alarm("x", delay=10)
    c.schedule_alarm("x", delay=20)  # replaces the first
    c.schedule_alarm("y", delay=10)
    assert c.cancel_alarm("y") is True
    assert c.cancel_alarm("y") is False
    clock.advance(10)
    assert fire_due_alarms(objects) == 0
    clock.advance(10)
    assert fire_due_alarms(objects) == 1
    assert RUNS == ["x"]
    c.schedule_alarm("p", delay=1)
    c.schedule_alarm("q", delay=1)
    assert c.cancel_all_alarms() == 2
    clock.advance(5)
    assert fire_due_alarms(objects) == 0
    assert RUNS == ["x"]


def test_a_raising_on_alarm_is_retried_with_backoff_then_recorded(objects: tape.Objects, clock: ManualClock) -> None:
    c = objects.get(Tally, "u")
    c.increment(7)
    c.schedule_alarm("boom", delay=1)
    clock.advance(1)
    assert fire_due_alarms(objects) == 0
    for step in ALARM_BACKOFF[: ALARM_DELIVERIES - 1]:
        assert c.list_alarms() != []  # still scheduled while retried
        clock.advance(step - 0.001)
        fire_due_alarms(objects)
        assert len(RUNS) < ALARM_DELIVERIES
        clock.advance(0.001)
        fire_due_alarms(objects)
    assert RUNS == ["boom"] * ALARM_DELIVERIES
    assert c.read() == 7 and c.list_alarms() == []
    [failed] = objects.failed_alarms()
    assert isinstance(failed, FailedAlarm)
    assert (failed.type, failed.id, failed.name, failed.attempts) == ("Tally", "u", "boom", ALARM_DELIVERIES)
    assert failed.reason == "RuntimeError: alarm failed"


def test_the_alarm_thread_fires_alarms_when_the_clock_advances(tmp_path: Path, clock: ManualClock) -> None:
    RUNS.clear()
    with tape.Objects(tmp_path / "s", clock=clock) as objects:
        c = objects.get(Tally, "u")
        c.increment()
        c.schedule_alarm("reset", delay=30)
        clock.advance(30)
        done = threading.Event()
        for _ in range(6000):
            if c.read() == 0:
                done.set()
                break
            done.wait(0.01)
        assert done.is_set() and RUNS == ["reset"]


def test_bad_arguments_give_tape_errors_and_change_nothing(objects: tape.Objects, tmp_path: Path) -> None:
    c = objects.get(Tally, "u")
    with pytest.raises(tape.ArgumentError, match="no handler 'nope'"):
        objects.call(Tally, "u", "nope")
    with pytest.raises(tape.ArgumentError, match="not a handler"):
        objects.call(Tally, "u", "_private")
    for name in ("on_alarm", "schedule_alarm", "count", "mro"):
        with pytest.raises(tape.ArgumentError):
            objects.call(Tally, "u", name)
    with pytest.raises(AttributeError):
        c.nope  # noqa: B018
    with pytest.raises(tape.ArgumentTypeError):
        objects.get(dict, "u")  # type: ignore[arg-type]
    with pytest.raises(tape.ArgumentTypeError):
        objects.get(Tally, 5)  # type: ignore[arg-type]
    with pytest.raises(tape.ArgumentError):
        objects.get(Tally, "")
    with pytest.raises(tape.ArgumentError):
        objects.get(Tally, "x" * 2000).read()
    with pytest.raises(tape.EncodeError):
        c.add(object())  # not serialisable: nothing stored
    assert c.state() == {"count": 0, "items": []}
    with pytest.raises(tape.ArgumentError):
        c.schedule_alarm("a")
    with pytest.raises(tape.ArgumentError):
        c.schedule_alarm("a", delay=1, at=2)
    with pytest.raises(tape.ArgumentError):
        c.schedule_alarm("a", delay=-1)
    with pytest.raises(tape.ArgumentTypeError):
        c.schedule_alarm(3, delay=1)  # type: ignore[arg-type]
    assert entries(objects) == 0 and c.list_alarms() == []
    with pytest.raises(tape.ArgumentTypeError, match="needs a default"):
        class NoDefault(tape.DurableObject):
            n: int
    with pytest.raises(tape.ArgumentError):
        tape.Objects(tmp_path / "bad", hibernate_after=-1)
    with pytest.raises(tape.ArgumentTypeError):
        tape.Objects(tmp_path / "bad", alarms="yes")  # type: ignore[arg-type]
    with pytest.raises(tape.ArgumentError):
        tape.Objects(tmp_path / "bad", codec="json")
    with pytest.raises(tape.ArgumentTypeError):
        tape.Objects(tmp_path / "bad", nonsense=1)
    with pytest.raises(tape.ArgumentTypeError, match="retention"):
        tape.Objects(tmp_path / "bad", retention={"keep": 2})
    assert not (tmp_path / "bad").exists()


def test_closed_store_refuses_calls_and_is_tracked(tmp_path: Path) -> None:
    objects = tape.Objects(tmp_path / "s")
    assert objects in tape.status()
    ref = objects.get(Tally, "u")
    tape.close_all()
    assert objects not in tape.status()
    with pytest.raises(tape.QueueClosedError):
        ref.read()
    objects.close()  # idempotent


def test_cli_lists_objects(tmp_path: Path, clock: ManualClock) -> None:
    with tape.Objects(tmp_path / "s", alarms=False, clock=clock) as objects:
        objects.get(Tally, "b").increment()
        objects.get(Tally, "a").remind("ping", 60)
    out = subprocess.run([sys.executable, "-m", "tape", "objects", str(tmp_path / "s"), "--json"],
                         capture_output=True, text=True, check=True).stdout
    rows = [json.loads(line) for line in out.splitlines()]
    assert [(r["type"], r["id"]) for r in rows] == [("Tally", "a"), ("Tally", "b")]
    assert rows[0]["alarms"] == [{"name": "ping", "at": "2025-01-01T00:01:00+00:00"}]
    assert rows[1]["size"] > 0
    text = subprocess.run([sys.executable, "-m", "tape", "objects", str(tmp_path / "s")],
                          capture_output=True, text=True, check=True).stdout
    assert "Tally  a" in text and "ping at 2025-01-01T00:01:00+00:00" in text


class Gate(tape.DurableObject):
    count: int = 0

    def increment(self) -> int:
        self.count += 1
        return self.count

    def read(self) -> int:
        return self.count

    def need(self, at_least: int) -> int:
        if self.count < at_least:
            raise ValueError(f"only {self.count}")
        return self.count


def test_a_call_that_changes_nothing_or_raises_sees_what_another_store_wrote(tmp_path: Path) -> None:
    """Two stores on one directory (as two processes): each call runs on the newest record,
    also one whose cached record is older and that changes nothing or raises."""
    with tape.Objects(tmp_path, alarms=False) as one, tape.Objects(tmp_path, alarms=False) as two:
        a, b = one.get(Gate, "g"), two.get(Gate, "g")
        assert a.increment() == 1 and a.read() == 1  # cached in `one`
        assert b.increment() == 2
        assert a.read() == 2  # not the cached 1
        assert b.increment() == 3
        assert a.need(3) == 3  # would raise on the cached record
        with pytest.raises(ValueError, match="only 3"):
            a.need(4)
        assert b.increment() == 4 and a.increment() == 5 and b.read() == 5


class Planner(tape.DurableObject):
    count: int = 0

    def plan(self, names: list[str], fail: bool = False) -> None:
        self.count += 1
        self.note = "not a field"  # an attribute that is not state: not stored
        for i, name in enumerate(names):
            self.schedule_alarm(name, delay=i + 1)
        if fail:
            raise RuntimeError("plan failed")

    def on_alarm(self, name: str) -> None:
        RUNS.append(name)


def test_a_call_stores_its_fields_and_every_alarm_it_scheduled(objects: tape.Objects, clock: ManualClock) -> None:
    p = objects.get(Planner, "p")
    with pytest.raises(RuntimeError, match="plan failed"):
        p.plan(["lost"], fail=True)
    assert entries(objects) == 0 and p.list_alarms() == []
    p.plan([])
    p.plan(["a", "b", "c"])
    assert p.state() == {"count": 2}
    assert entries(objects) == 2
    assert [n for n, _ in p.list_alarms()] == ["a", "b", "c"]
    clock.advance(3)
    assert fire_due_alarms(objects) == 3
    assert RUNS == ["a", "b", "c"]
