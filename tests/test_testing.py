"""tape.testing and the pytest plugin: golden logs, replay, assert_entries, the fixtures."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

import tape
from tape.cli import cli
from tape.testing import ManualClock, assert_entries, load_jsonl, replay, run_worker

DAY = 86_400


def test_the_plugin_works_in_a_project_that_only_installs_tape(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "orders.jsonl").write_text('{"id": 1}\n\n{"index": 7, "timestamp": "x", "value": {"id": 2}}\n')
    (project / "test_orders.py").write_text(
        textwrap.dedent(
            """
            from pathlib import Path

            import pytest
            from tape.testing import assert_entries, load_jsonl, replay


            def test_the_clock_drives_rolls(tape_queue, tape_clock):
                a = tape_queue.appender()
                a.write("monday")
                tape_clock.advance(86400)
                a.write("tuesday")
                assert [c.entries for c in tape_queue.cycles()] == [1, 1]


            def test_a_golden_log_replays(tape_queue):
                assert load_jsonl(Path(__file__).parent / "orders.jsonl", tape_queue) == 2
                seen = []
                assert replay(tape_queue, seen.append) == 2
                assert seen == [{"id": 1}, {"id": 2}]
                assert_entries(tape_queue, seen)


            @pytest.mark.tape_queue(codec="raw", roll_cycle="hourly")
            def test_the_marker_passes_options(tape_queue):
                assert (tape_queue.codec.name, tape_queue.roll_cycle) == ("raw", "hourly")
            """
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--basetemp", str(tmp_path / "tmp")],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "3 passed" in run.stdout


def test_tape_queue_is_a_fresh_open_queue(tape_queue: tape.Queue) -> None:
    assert tape_queue.count() == 0
    assert "open" in repr(tape_queue)


def test_tape_queue_runs_on_tape_clock(tape_queue: tape.Queue, tape_clock: ManualClock) -> None:
    tape_queue.appender().write("x")
    entry = tape_queue.tailer().read_entry()
    assert entry is not None and entry.timestamp == tape_clock.now


def test_the_manual_clock_moves_only_forward_when_told() -> None:
    clock = ManualClock(now=1_000)
    assert clock() == 1_000
    assert clock.advance(1.5) == 1_000 + 1_500_000_000
    assert clock.advance(timedelta(milliseconds=1)) == clock.now == 1_000 + 1_501_000_000
    with pytest.raises(ValueError):
        clock.advance(-1)


def test_replay_calls_the_handler_for_each_of_100000_entries_in_order(tape_queue: tape.Queue) -> None:
    tape_queue.appender().write_many(range(100_000))
    seen: list[int] = []
    assert replay(tape_queue, seen.append) == 100_000
    assert seen == list(range(100_000))


def test_replay_opens_a_path_read_only(qpath: Path) -> None:
    with tape.Queue(qpath) as q:
        q.appender().write_many(["a", "b"])
    before = sorted(os.listdir(qpath))
    seen: list[str] = []
    assert replay(qpath, seen.append) == 2
    assert seen == ["a", "b"]
    assert sorted(os.listdir(qpath)) == before


def test_replay_of_an_empty_queue_calls_nothing(tape_queue: tape.Queue) -> None:
    assert replay(tape_queue, pytest.fail) == 0


def test_replay_start_and_stop_are_indexes(tape_queue: tape.Queue, tape_clock: ManualClock) -> None:
    a = tape_queue.appender()
    first = [a.write(k) for k in range(3)]
    tape_clock.advance(3 * DAY)  # two cycles without entries between
    second = [a.write(k) for k in range(3, 6)]
    seen: list[int] = []
    assert replay(tape_queue, seen.append, start=first[1], stop=second[1]) == 3
    assert seen == [1, 2, 3]
    seen.clear()
    gap = tape.make_index(tape_queue, tape.split_index(tape_queue, first[0])[0] + 1, 0)
    assert replay(tape_queue, seen.append, start=gap) == 3
    assert seen == [3, 4, 5]
    assert replay(tape_queue, pytest.fail, start=second[2] + 1) == 0
    assert replay(tape_queue, pytest.fail, start=first[2], stop=first[2]) == 0


def test_replay_does_not_replay_what_the_handler_appends(tape_queue: tape.Queue) -> None:
    a = tape_queue.appender()
    a.write_many([1, 2])
    assert replay(tape_queue, a.write) == 2
    assert tape_queue.count() == 4


def test_load_jsonl_takes_values_and_dump_records(tape_queue: tape.Queue, tmp_path: Path) -> None:
    lines = tmp_path / "in.jsonl"
    lines.write_text('1\n"two"\n\n{"value": 3}\n{"index": 9, "timestamp": "t", "value": {"$base64": "AAE="}}\n')
    assert load_jsonl(lines, tape_queue) == 4
    assert_entries(tape_queue, [1, "two", {"value": 3}, b"\x00\x01"])


def test_load_jsonl_reads_back_what_tape_dump_wrote(tape_queue: tape.Queue, tmp_path: Path) -> None:
    values = [{"id": 1, "tags": ["a"]}, None, b"\xff", {1: "int key"}, 2.5]
    tape_queue.appender().write_many(values)
    dump = CliRunner().invoke(cli, ["dump", tape_queue.path])
    assert dump.exit_code == 0, dump.output
    golden = tmp_path / "golden.jsonl"
    golden.write_text(dump.stdout)
    with tape.Queue(tmp_path / "copy") as copy:
        assert load_jsonl(golden, copy) == len(values)
        assert_entries(copy, values)


def test_load_jsonl_names_the_bad_line_and_appends_nothing(tape_queue: tape.Queue, tmp_path: Path) -> None:
    lines = tmp_path / "in.jsonl"
    lines.write_text("1\n{oops\n")
    with pytest.raises(ValueError) as caught:
        load_jsonl(lines, tape_queue)
    assert f"{lines}:2" in caught.value.__notes__
    assert tape_queue.count() == 0


def test_load_jsonl_keeps_keys_tombstones_and_not_before(tape_queue: tape.Queue, tmp_path: Path) -> None:
    a = tape_queue.appender()
    a.write({"n": 1}, key="acct-1")
    a.write({"n": 2}, key="acct-2")
    a.write("plain")
    a.delete("acct-2")
    a.write("later", not_before=4_000_000_000)
    golden = tmp_path / "golden.jsonl"
    golden.write_text(CliRunner().invoke(cli, ["dump", tape_queue.path]).stdout)
    with tape.Queue(tmp_path / "copy") as copy:
        assert load_jsonl(golden, copy) == 5
        assert [(e.value, e.key, e.tombstone, e.not_before) for e in copy.tailer().entries()] == [
            (e.value, e.key, e.tombstone, e.not_before) for e in tape_queue.tailer().entries()]
        assert copy.latest("acct-1").value == {"n": 1}  # type: ignore[union-attr]
        assert copy.latest("acct-2") is None


def test_load_jsonl_with_a_bad_key_appends_nothing(tape_queue: tape.Queue, tmp_path: Path) -> None:
    lines = tmp_path / "in.jsonl"
    lines.write_text('1\n{"index": 1, "timestamp": "t", "value": 2, "key": ""}\n')
    with pytest.raises(tape.ArgumentError) as caught:
        load_jsonl(lines, tape_queue)
    assert f"{lines}:2" in caught.value.__notes__
    assert tape_queue.count() == 0


def test_assert_entries_passes_when_the_values_match(tape_queue: tape.Queue) -> None:
    tape_queue.appender().write_many([{"a": 1}, [2]])
    assert_entries(tape_queue, [{"a": 1}, [2]])
    assert_entries(tape_queue.path, iter([{"a": 1}, [2]]))


def test_assert_entries_shows_the_first_difference(tape_queue: tape.Queue) -> None:
    orders = [{"id": k, "side": "buy", "note": "x" * 60} for k in range(5)]
    indexes = [tape_queue.appender().write(o) for o in orders]
    expected = [dict(o) for o in orders]
    expected[3]["side"] = "sell"
    expected[4]["side"] = "sell"
    with pytest.raises(AssertionError) as caught:
        assert_entries(tape_queue, expected)
    message = str(caught.value)
    assert f"entry 3 (index {indexes[3]}:" in message
    assert "expected: " + repr(expected[3]) in message
    assert "actual:   " + repr(orders[3]) in message
    assert "-  'side': 'sell'" in message and "+  'side': 'buy'" in message
    assert "the queue holds 5 entries, 5 expected" in message
    assert "entry 4" not in message


def test_assert_entries_reports_missing_and_extra_entries(tape_queue: tape.Queue) -> None:
    tape_queue.appender().write_many(["a", "b", "c"])
    with pytest.raises(AssertionError, match=r"holds 3 entries, 4 expected; the first missing is entry 3:\n  'd'"):
        assert_entries(tape_queue, ["a", "b", "c", "d"])
    with pytest.raises(AssertionError, match=r"holds 3 entries, 2 expected; the first extra is entry 2 .*\n  'c'"):
        assert_entries(tape_queue, ["a", "b"])



def test_run_worker_reports_what_the_handler_did(tape_queue: tape.Queue, tape_clock: ManualClock) -> None:
    tape_queue.appender().write_many([{"job": k} for k in range(5)])
    group = tape_queue.group("mailer", backoff=[60])

    def handle(m: tape.Delivery) -> None:
        job = m.value["job"]
        if job == 1:
            raise ValueError("smtp down")  # nacked, with the group's backoff
        if job == 2:
            m.reject("bad address")
        if job == 3:
            m.nack(delay=30)

    run = run_worker(group, handle)
    assert [d.value["job"] for d in run.acked] == [0, 4]
    assert [d.value["job"] for d in run.nacked] == [1, 3]
    assert [d.value["job"] for d in run.rejected] == [2]
    assert [(d.value["job"], str(e)) for d, e in run.errors] == [(1, "smtp down")]
    assert [d.index for d in group.dead_letters()] == [run.rejected[0].index]

    assert run_worker(group, handle).acked == []  # nothing is due yet
    tape_clock.advance(30)
    again = run_worker(group, handle)
    assert [(d.value["job"], d.attempt) for d in again.nacked] == [(3, 2)]  # due after 30 s, nacked again
    tape_clock.advance(30)
    assert [(d.value["job"], d.attempt) for d in run_worker(group, lambda m: None).acked] == [(1, 2), (3, 3)]
    assert group.info()["in_flight"] == 0


def test_run_worker_stops_after_limit_claims(tape_queue: tape.Queue) -> None:
    tape_queue.appender().write_many(range(10))
    group = tape_queue.group("g")
    assert len(run_worker(group, lambda m: None, limit=3).acked) == 3
    assert [d.value for d in run_worker(group, lambda m: None).acked] == list(range(3, 10))
