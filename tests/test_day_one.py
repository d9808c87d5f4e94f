"""What a new user trips over first (issue 21): None in a queue, which setting differs, a purge without a rule, the version."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

import tape

EMPTY = object()


def test_read_tells_a_stored_none_from_nothing_by_a_default(queue: tape.Queue) -> None:
    queue.appender().write_many([None, 0, None])
    t = queue.tailer()
    assert [t.read(default=EMPTY) for _ in range(4)] == [None, 0, None, EMPTY]
    assert t.read() is None  # the default default: None
    assert t.read(timeout=0.01, default=EMPTY) is EMPTY


def test_aread_returns_the_default_after_its_timeout(queue: tape.Queue) -> None:
    t = queue.tailer()
    assert asyncio.run(t.aread(timeout=0.01, default=EMPTY)) is EMPTY


@pytest.mark.parametrize(
    ("asked", "says"),
    [
        ({"roll_cycle": "hourly"}, "the queue's roll cycle is 'daily', not 'hourly'"),
        ({"codec": "json"}, "the queue's codec is 'msgpack', not 'json'"),
        ({"roll_cycle": "minutely", "codec": "raw"}, "roll cycle is 'daily', not 'minutely'; the queue's codec is"),
    ],
)
def test_an_incompatible_queue_says_what_differs_and_both_values(qpath: Path, asked: dict[str, str], says: str) -> None:
    tape.Queue(qpath, roll_cycle="daily").close()
    with pytest.raises(tape.IncompatibleQueueError, match=re.escape(says)):
        tape.Queue(qpath, **asked)  # type: ignore[arg-type]


def test_purge_without_a_rule_is_refused(queue: tape.Queue) -> None:
    with pytest.raises(tape.ArgumentError, match="needs a rule"):
        queue.purge()
    with pytest.raises(tape.ArgumentError):
        queue.purge(respect_tailers=True, dry_run=True)


def test_the_package_says_its_version() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", tape.__version__)
    from importlib.metadata import version

    assert version("tape") == tape.__version__
