"""tape load keeps what tape dump shows of keyed entries: keys, tombstones, not_before."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from click.testing import CliRunner

import tape
from tape.cli import cli


def run(*args: str, input: bytes | None = None) -> bytes:
    result = CliRunner().invoke(cli, list(args), input=input)
    assert result.exit_code == 0, result.output
    return result.stdout_bytes


def records(dump: bytes) -> list[dict[str, Any]]:
    """The dump's records without their timestamps (a load writes its own)."""
    out = []
    for line in dump.splitlines():
        record = json.loads(line)
        del record["timestamp"]
        out.append(record)
    return out


def test_dump_load_dump_keeps_keys_tombstones_and_not_before(tmp_path: Path) -> None:
    source, copy = tmp_path / "source", tmp_path / "copy"
    due = datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=timezone.utc)
    with tape.Queue(source) as q:
        a = q.appender()
        a.write({"n": 1}, key="a")
        a.write("plain")
        a.write({"n": 2}, key=b"\x00\xffbin")
        a.write({"n": 3}, key="a")
        a.delete(b"\x00\xffbin")
        a.write([1, 2], key="later", not_before=due)
        a.write("due", not_before=due)
    first = run("dump", str(source))
    assert b'"tombstone": true' in first and b'"not_before"' in first
    run("load", str(copy), "-", input=first)
    assert records(run("dump", str(copy))) == records(first)
    with tape.Queue(copy, read_only=True) as q:
        assert sorted(map(repr, q.keys())) == ["'a'", "'later'"]
        latest = q.latest("a")
        assert latest is not None and latest.value == {"n": 3}
        assert q.latest(b"\x00\xffbin") is None
        later = q.latest("later")
        assert later is not None and later.not_before == int(due.timestamp()) * 10**9 + 678_000_000


def test_a_record_with_a_bad_key_stops_the_load(tmp_path: Path) -> None:
    lines = b'{"index": 1, "timestamp": "2026-01-01T00:00:00Z", "value": 1, "key": "k"}\n' \
            b'{"index": 2, "timestamp": "2026-01-01T00:00:00Z", "value": 2, "key": 7}\n'
    result = CliRunner().invoke(cli, ["load", str(tmp_path / "q"), "-"], input=lines)
    assert result.exit_code == 1 and "<stdin>:2:" in result.stderr
    with tape.Queue(tmp_path / "q", read_only=True) as q:
        assert [e.key for e in q.tailer().entries()] == ["k"]
