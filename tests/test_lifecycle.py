"""The lifecycle registry: status, close_all, on_lifecycle, closing at exit, repr."""

from __future__ import annotations

import gc
import logging
import subprocess
import sys
import textwrap
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

import tape
from tape import lifecycle


class Resource:
    """A resource of our own, as DurableAtom registers itself."""

    def __init__(self, name: str, log: list[str], *, fails: bool = False) -> None:
        self.name, self.log, self.fails = name, log, fails
        self.open = True
        lifecycle.opening(self)
        lifecycle.register(self)

    def close(self) -> None:
        if not self.open:
            return
        lifecycle.closing(self)
        self.log.append(self.name)
        if self.fails:
            raise OSError(f"{self.name} cannot close")
        self.open = False
        lifecycle.unregister(self)

    def __repr__(self) -> str:
        return f"<Resource {self.name} {'open' if self.open else 'closed'}>"


@pytest.fixture
def events() -> Iterator[list[tuple[str, object]]]:
    """Every lifecycle event while the test runs."""
    seen: list[tuple[str, object]] = []
    stop = tape.on_lifecycle(lambda event, resource: seen.append((event, resource)))
    yield seen
    stop()


def mine(*resources: object) -> list[object]:
    """status(), keeping only `resources` (other tests may leave some open)."""
    return [r for r in tape.status() if any(r is m for m in resources)]


def test_status_lists_open_resources_in_the_order_they_opened(qpath: Path) -> None:
    with tape.Queue(qpath) as q:
        a = q.appender()
        t = q.tailer()
        assert mine(q, a, t) == [q, a, t]
        a.close()
        assert mine(q, a, t) == [q, t]
    assert mine(q, a, t) == []


def test_tracking_does_not_keep_a_resource_alive() -> None:
    r = Resource("r", [])
    assert mine(r) == [r]
    ref = weakref.ref(r)
    del r
    gc.collect()
    assert ref() is None


def test_close_all_closes_newest_first(qpath: Path) -> None:
    log: list[str] = []
    first, second = Resource("first", log), Resource("second", log)
    q = tape.Queue(qpath)
    third = Resource("third", log)
    tape.close_all()
    assert log == ["third", "second", "first"]
    assert "closed" in repr(q)
    assert mine(first, second, third, q) == []


def test_close_all_goes_on_past_a_failure_and_raises_them_all(qpath: Path) -> None:
    log: list[str] = []
    first = Resource("first", log)
    bad = Resource("bad", log, fails=True)
    q = tape.Queue(qpath)
    t = q.tailer()
    last = Resource("last", log)
    try:
        with pytest.raises(ExceptionGroup) as caught:
            tape.close_all()
        assert log == ["last", "bad", "first"]
        assert "closed" in repr(q) and "closed" in repr(t)
        assert mine(first, bad, q, t, last) == [bad]  # it could not close: still open
        (failure,) = caught.value.exceptions
        assert isinstance(failure, OSError) and str(failure) == "bad cannot close"
        assert failure.__notes__ == ["while closing <Resource bad open>"]
    finally:
        lifecycle.unregister(bad)


def test_on_lifecycle_reports_every_step(qpath: Path, events: list[tuple[str, object]]) -> None:
    q = tape.Queue(qpath)
    a = q.appender()
    t = q.tailer()
    q.close()  # closes its tailer and appender first, newest first
    assert events == [
        ("opening", q), ("opened", q),
        ("opening", a), ("opened", a),
        ("opening", t), ("opened", t),
        ("closing", q),
        ("closing", t), ("closed", t),
        ("closing", a), ("closed", a),
        ("closed", q),
    ]  # fmt: skip
    q.close()
    t.close()
    assert len(events) == 12  # closing again does nothing


def test_a_failed_open_reports_only_opening(tmp_path: Path, events: list[tuple[str, object]]) -> None:
    with pytest.raises(tape.QueueNotFoundError):
        tape.Queue(tmp_path / "missing", create=False)
    assert [e for e, _ in events] == ["opening"]


def test_a_failing_callback_is_logged_and_the_step_goes_on(
    qpath: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(event: str, resource: object) -> None:
        raise RuntimeError("broken callback")

    stop = tape.on_lifecycle(broken)
    try:
        with caplog.at_level(logging.ERROR, logger="tape.lifecycle"):
            q = tape.Queue(qpath)
            q.close()
    finally:
        stop()
    assert "closed" in repr(q)
    assert len(caplog.records) == 4
    assert "broken callback" in caplog.text


def test_a_removed_callback_is_not_called(qpath: Path) -> None:
    seen: list[str] = []
    stop = tape.on_lifecycle(lambda event, resource: seen.append(event))
    stop()
    tape.Queue(qpath).close()
    assert seen == []


def test_everything_still_open_is_closed_at_exit(qpath: Path) -> None:
    script = textwrap.dedent(
        """
        import sys
        import tape

        tape.on_lifecycle(lambda event, r: event.startswith("clos") and print(event, type(r).__name__))
        q = tape.Queue(sys.argv[1])
        a = q.appender()
        a.write("kept")
        t = q.tailer("reader")
        print("exiting")
        """
    )
    run = subprocess.run(
        [sys.executable, "-c", script, str(qpath)], capture_output=True, text=True, timeout=60, check=True
    )
    assert run.stdout.splitlines() == [
        "exiting",
        "closing Tailer", "closed Tailer",
        "closing Appender", "closed Appender",
        "closing Queue",
        "closed Queue",
    ]  # fmt: skip
    assert run.stderr == ""


def test_repr_says_what_and_where_and_whether_open(qpath: Path) -> None:
    q = tape.Queue(qpath)
    a = q.appender()
    index = a.write("x")
    t = q.tailer("billing")
    p = str(qpath)
    assert repr(q) == f"<tape.Queue {p!r} daily msgpack open>"
    assert repr(a) == f"<tape.Appender of {p!r} last_index={index} open>"
    assert repr(t) == f"<tape.Tailer 'billing' of {p!r} index={index} open>"
    t.read()
    assert repr(t) == f"<tape.Tailer 'billing' of {p!r} index={index + 1} open>"
    assert repr(q.tailer()) == f"<tape.Tailer of {p!r} index={index} open>"
    q.close()
    assert repr(q) == f"<tape.Queue {p!r} daily msgpack closed>"
    assert repr(a) == f"<tape.Appender of {p!r} closed>"
    assert repr(t) == f"<tape.Tailer 'billing' of {p!r} closed>"


def test_a_durable_atom_is_tracked_and_closed_by_close_all(tmp_path: Path) -> None:
    atom = tape.DurableAtom(tmp_path / "atom", initial=0)
    assert atom in tape.status()
    tape.close_all()
    assert "closed" in repr(atom)
    assert atom not in tape.status()
