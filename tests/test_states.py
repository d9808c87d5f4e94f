"""tape.state: lazy, resettable, tracked values (redelay's State)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import tape
from tape import lifecycle


@pytest.fixture
def events() -> Iterator[list[tuple[str, object]]]:
    seen: list[tuple[str, object]] = []
    stop = tape.on_lifecycle(lambda event, resource: seen.append((event, resource)))
    yield seen
    stop()


def test_start_runs_on_first_use_only() -> None:
    calls: list[int] = []
    s = tape.state(lambda: calls.append(1) or len(calls), name="n")
    assert calls == [] and not s.started and s.peek() is None
    assert s.value == 1 and s.value == 1 and s.deref() == 1
    assert calls == [1] and s.started and s.peek() == 1
    s.close()


def test_eight_threads_start_it_once() -> None:
    calls: list[int] = []
    barrier = threading.Barrier(8)

    def start() -> object:
        calls.append(1)
        time.sleep(0.05)  # a slow start: the other threads arrive meanwhile
        return object()

    s = tape.state(start)
    got: list[object] = []

    def use() -> None:
        barrier.wait()
        got.append(s.value)

    threads = [threading.Thread(target=use) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert len(got) == 8 and all(v is got[0] for v in got)
    s.close()


def test_close_stops_and_resets_so_the_next_use_starts_again() -> None:
    stopped: list[int] = []
    n = iter(range(10))
    s = tape.state(lambda: next(n), stop=stopped.append)
    assert s.value == 0
    s.close()
    assert stopped == [0] and not s.started and s.peek() is None
    assert s.value == 1
    s.close()
    s.close()  # closing a state that is not started does nothing
    assert stopped == [0, 1]


def test_a_failing_start_leaves_it_not_started_and_the_next_use_retries() -> None:
    attempts: list[int] = []

    def start() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise ConnectionError("database down")
        return "conn"

    s = tape.state(start)
    with pytest.raises(ConnectionError):
        _ = s.value
    assert not s.started and s not in tape.status()
    assert s.value == "conn" and len(attempts) == 2
    s.close()


def test_a_failing_stop_keeps_it_started_until_force_close() -> None:
    def stop(v: str) -> None:
        raise OSError("cannot close " + v)

    s = tape.state(lambda: "conn", stop=stop, name="db")
    assert s.value == "conn"
    with pytest.raises(OSError):
        s.close()
    assert s.started and s.peek() == "conn" and s in tape.status()
    s.force_close()
    assert not s.started and s not in tape.status()


def test_force_close_does_not_run_stop() -> None:
    stopped: list[str] = []
    s = tape.state(lambda: "x", stop=stopped.append)
    _ = s.value
    s.force_close()
    assert stopped == [] and not s.started


def test_close_all_stops_states_and_queues_newest_first(tmp_path: Path) -> None:
    order: list[str] = []
    config = tape.state(lambda: {"dsn": "x"}, stop=lambda v: order.append("config"), name="config")
    db = tape.state(lambda: config.value["dsn"], stop=lambda v: order.append("db"), name="db")
    assert db.value == "x"  # starts db, which starts config first: config is older
    q = tape.Queue(tmp_path / "q")  # newer than both: closed first
    seen: list[object] = []
    stop_watch = tape.on_lifecycle(lambda e, r: seen.append(r) if e in ("closed", "stopped") else None)
    try:
        tape.close_all()
    finally:
        stop_watch()
    assert order == ["db", "config"]
    assert seen == [q, db, config]
    assert not db.started and not config.started


def test_status_lists_started_states_only() -> None:
    s = tape.state(lambda: 1, name="lazy")
    assert s not in tape.status()
    _ = s.value
    assert s in tape.status()
    s.close()
    assert s not in tape.status()


def test_events_are_starting_started_stopping_stopped(events: list[tuple[str, object]]) -> None:
    s = tape.state(lambda: 1, name="e")
    _ = s.value
    s.close()
    assert [e for e, r in events if r is s] == ["starting", "started", "stopping", "stopped"]


def test_a_failed_start_emits_starting_only(events: list[tuple[str, object]]) -> None:
    s = tape.state(lambda: 1 / 0, name="broken")
    with pytest.raises(ZeroDivisionError):
        _ = s.value
    assert [e for e, r in events if r is s] == ["starting"]


def test_context_manager_stops_on_exit() -> None:
    stopped: list[int] = []
    with tape.state(lambda: 7, stop=stopped.append) as s:
        assert s.value == 7
    assert stopped == [7] and not s.started


def test_a_start_that_uses_its_own_state_is_an_error() -> None:
    s: tape.State[int]
    s = tape.state(lambda: s.value + 1, name="loop")
    with pytest.raises(tape.TapeError, match="its own start"):
        _ = s.value
    assert not s.started


def test_repr_names_it_and_says_whether_it_started() -> None:
    s = tape.state(lambda: 1, name="db")
    assert repr(s) == "<tape.State 'db' not started>"
    _ = s.value
    assert repr(s) == "<tape.State 'db' started>"
    s.close()


def test_the_name_defaults_to_the_start_function() -> None:
    def connect() -> int:
        return 1

    assert tape.state(connect).name.endswith("connect")


@pytest.mark.parametrize(
    "args, kwargs",
    [((None,), {}), ((lambda: 1,), {"stop": 5}), ((lambda: 1,), {"name": 3})],
)
def test_bad_arguments_are_argument_type_errors(args: tuple[object, ...], kwargs: dict[str, object]) -> None:
    with pytest.raises(tape.ArgumentTypeError):
        tape.state(*args, **kwargs)  # type: ignore[arg-type]


def test_registry_holds_it_weakly() -> None:
    s = tape.state(lambda: 1)
    _ = s.value
    assert s in lifecycle.status()
    del s
    import gc

    gc.collect()
    assert not any(isinstance(r, tape.State) for r in lifecycle.status())
