"""The pytest plugin of tape, active wherever tape is installed (entry point pytest11).

Fixtures: tape_queue, a fresh queue in a temporary directory, and
tape_clock, a manual clock (tape.testing.ManualClock) to drive rolls.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tape.queue import Queue
from tape.testing import ManualClock


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "tape_queue(**options): keyword arguments of tape.Queue for the tape_queue fixture"
    )


@pytest.fixture
def tape_clock() -> ManualClock:
    """A manual clock: `advance(seconds)` moves it, `now` is its time in ns."""
    return ManualClock()


@pytest.fixture
def tape_queue(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Queue]:
    """A fresh queue in a temporary directory, closed after the test.

    It runs on tape_clock when the test uses that fixture too;
    @pytest.mark.tape_queue(roll_cycle=..., codec=..., ...) passes options.
    """
    marker = request.node.get_closest_marker("tape_queue")
    options = dict(marker.kwargs) if marker is not None else {}
    if "tape_clock" in request.fixturenames:
        options.setdefault("clock", request.getfixturevalue("tape_clock"))
    with Queue(tmp_path / "tape_queue", **options) as queue:
        yield queue
