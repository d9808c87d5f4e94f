"""The `tape` command line: every command's output and exit status, in-process
through click's CliRunner and as real processes (the console script and
`python -m tape`) against queues this process wrote."""

from __future__ import annotations

import json
import os
import pty
import queue as queue_mod
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

import tape
from tape._time import parse_duration, parse_time
from tape.cli import cli, parse_size
from tape.summary import size_text

T0 = 1_763_683_200 * 10**9  # 2025-11-21T00:00:00Z
SECOND = 10**9
TAPE = str(Path(sys.executable).parent / "tape")  # the console script of this venv


def invoke(*args: str, input: str | bytes | None = None) -> Result:
    """Run the command line in this process; an exception other than an exit is a failure."""
    result = CliRunner().invoke(cli, list(args), input=input)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert "Traceback" not in result.output
    return result


def lines(result: Result) -> list[Any]:
    return [json.loads(line) for line in result.stdout.splitlines()]


def build(path: Path, values: Iterable[Any], *, step: int = SECOND // 4, codec: str | None = None) -> list[tape.Entry]:
    """A test_secondly queue of `values`, written `step` ns apart from T0 (4 per cycle file by default)."""
    now = [T0]
    with tape.Queue(path, roll_cycle="test_secondly", codec=codec, clock=lambda: now[0]) as q:
        a = q.appender()
        for v in values:
            a.write(v)
            now[0] += step
        return list(q.tailer().entries())


def values_of(result: Result) -> list[Any]:
    return [record["value"] for record in lines(result)]


def iso(ns: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // SECOND)) + f".{ns % SECOND:09d}Z"


# -- dump ---------------------------------------------------------------------------------


def test_dump_prints_a_json_line_per_entry_with_index_iso_timestamp_and_value(qpath: Path) -> None:
    entries = build(qpath, [{"id": 1, "side": "buy"}, [1, 2.5, None, True], "é"])
    result = invoke("dump", str(qpath))
    assert result.exit_code == 0 and result.stderr == ""
    assert lines(result) == [{"index": e.index, "timestamp": iso(e.timestamp), "value": e.value} for e in entries]
    assert lines(result)[1]["timestamp"] == "2025-11-21T00:00:00.250000000Z"


def test_dump_shows_bytes_as_base64_and_maps_json_cannot_key_as_pairs(qpath: Path) -> None:
    build(qpath, [b"\x00\xff", {"k": [b"ab"]}, {1: "one"}, {"$base64": "not bytes"}])
    assert values_of(invoke("dump", str(qpath))) == [
        {"$base64": "AP8="},
        {"k": [{"$base64": "YWI="}]},
        {"$map": [[1, "one"]]},
        {"$map": [["$base64", "not bytes"]]},
    ]


def test_dump_marks_a_map_deep_inside_one_entry_among_thousands(qpath: Path) -> None:
    values: list[Any] = [{"n": i, "tags": ["a", {"k": i}]} for i in range(3000)]
    values[2500] = {"n": 2500, "tags": ["a", {"k": {7: "seven"}}]}
    values[2900] = [{"$map": "looks like a marker"}]
    with tape.Queue(qpath) as q:
        q.appender().write_many(values)
    dumped = values_of(invoke("dump", str(qpath)))
    assert dumped[2500] == {"n": 2500, "tags": ["a", {"k": {"$map": [[7, "seven"]]}}]}
    assert dumped[2900] == [{"$map": [["$map", "looks like a marker"]]}]
    assert dumped[:2500] == values[:2500] and dumped[2501:2900] == values[2501:2900]


def test_dump_keeps_values_that_hold_the_text_between_encoded_values(qpath: Path) -> None:
    tricky = ["\x00tape\x00", [0, "\x00tape\x00", 1], {"k": "\x00tape\x00"}, 'a", "\\u0000tape\\u0000", "b']
    build(qpath, [*tricky, *range(5)])
    assert values_of(invoke("dump", str(qpath))) == [*tricky, *range(5)]


def test_dump_from_and_to_are_inclusive_indexes(qpath: Path) -> None:
    entries = build(qpath, range(10))
    result = invoke("dump", str(qpath), "--from", str(entries[2].index), "--to", str(entries[6].index))
    assert values_of(result) == [2, 3, 4, 5, 6]


def test_dump_from_an_index_between_cycles_starts_at_the_next_entry(qpath: Path) -> None:
    entries = build(qpath, range(6), step=SECOND * 3 // 2)  # a cycle file every 1.5 s: gaps between
    gap = entries[0].index + 1
    assert entries[1].index > gap
    assert values_of(invoke("dump", str(qpath), "--from", str(gap))) == [1, 2, 3, 4, 5]
    assert values_of(invoke("dump", str(qpath), "--from", "0", "--to", str(gap))) == [0]


def test_dump_since_and_until_select_by_time_inclusive_to_the_nanosecond(qpath: Path) -> None:
    entries = build(qpath, range(10), step=SECOND // 3)
    since, until = iso(entries[3].timestamp), iso(entries[7].timestamp)
    assert values_of(invoke("dump", str(qpath), "--since", since, "--until", until)) == [3, 4, 5, 6, 7]
    just_after = iso(entries[3].timestamp + 1)
    assert values_of(invoke("dump", str(qpath), "--since", just_after, "--limit", "1")) == [4]


def test_dump_since_takes_epoch_seconds_and_durations_ago(qpath: Path) -> None:
    build(qpath, range(8))  # T0 .. T0 + 1.75 s
    assert values_of(invoke("dump", str(qpath), "--since", str(T0 // SECOND + 1))) == [4, 5, 6, 7]
    assert values_of(invoke("dump", str(qpath), "--until", "1763683200.5")) == [0, 1, 2]
    assert values_of(invoke("dump", str(qpath), "--since", "10m")) == []  # all written in 2025


def test_dump_limit_stops_after_n_entries(qpath: Path) -> None:
    build(qpath, range(10))
    assert values_of(invoke("dump", str(qpath), "--limit", "3")) == [0, 1, 2]
    assert values_of(invoke("dump", str(qpath), "--limit", "0")) == []


def test_dump_backward_reads_newest_first_within_the_bounds(qpath: Path) -> None:
    entries = build(qpath, range(10))
    assert values_of(invoke("dump", str(qpath), "--backward", "--limit", "3")) == [9, 8, 7]
    to, since = str(entries[6].index), iso(entries[4].timestamp)
    result = invoke("dump", str(qpath), "--backward", "--to", to, "--since", since)
    assert values_of(result) == [6, 5, 4]
    assert values_of(invoke("dump", str(qpath), "--backward", "--until", iso(entries[1].timestamp))) == [1, 0]


def test_dump_format_pretty_writes_indented_records(qpath: Path) -> None:
    entries = build(qpath, [{"a": 1}, b"x"])
    text = invoke("dump", str(qpath), "--format", "pretty").stdout
    assert '\n  "value": {\n    "a": 1\n  }\n}\n' in text
    decoder, records, at = json.JSONDecoder(), [], 0
    while text[at:].strip():
        record, at = decoder.raw_decode(text, at + len(text[at:]) - len(text[at:].lstrip()))
        records.append(record)
    assert records == [
        {"index": entries[0].index, "timestamp": iso(entries[0].timestamp), "value": {"a": 1}},
        {"index": entries[1].index, "timestamp": iso(entries[1].timestamp), "value": {"$base64": "eA=="}},
    ]


def test_dump_format_raw_writes_each_payload_after_its_length(qpath: Path) -> None:
    build(qpath, [b"abc", b"", b"\x00" * 300], codec="raw")
    out = invoke("dump", str(qpath), "--format", "raw").stdout_bytes
    payloads = []
    while out:
        (n,) = struct.unpack_from("<I", out)
        payloads.append(out[4 : 4 + n])
        out = out[4 + n :]
    assert payloads == [b"abc", b"", b"\x00" * 300]


def test_dump_format_raw_gives_the_stored_bytes_whatever_the_codec(qpath: Path) -> None:
    build(qpath, [{"a": 1}])
    out = invoke("dump", str(qpath), "--format", "raw").stdout_bytes
    assert out == struct.pack("<I", 4) + tape.codecs.get("msgpack").encode({"a": 1})


def test_dump_codec_decodes_with_another_codec(qpath: Path) -> None:
    build(qpath, [7])
    assert values_of(invoke("dump", str(qpath), "--codec", "raw")) == [{"$base64": "Bw=="}]


def test_dump_of_an_empty_queue_prints_nothing(qpath: Path) -> None:
    tape.Queue(qpath).close()
    result = invoke("dump", str(qpath))
    assert result.exit_code == 0 and result.stdout == ""


# -- tail --------------------------------------------------------------------------------


def test_tail_prints_the_last_n_entries_oldest_first_across_cycles(qpath: Path) -> None:
    build(qpath, range(12))  # three cycle files of 4
    assert values_of(invoke("tail", str(qpath), "-n", "6")) == [6, 7, 8, 9, 10, 11]
    assert values_of(invoke("tail", str(qpath))) == list(range(2, 12))  # 10 by default
    assert values_of(invoke("tail", str(qpath), "-n", "50")) == list(range(12))
    assert invoke("tail", str(qpath), "-n", "0").stdout == ""


def test_tail_follow_prints_new_entries_and_exits_0_on_ctrl_c(qpath: Path) -> None:
    build(qpath, ["old", "last"])
    proc = subprocess.Popen([TAPE, "tail", "-f", "-n", "1", str(qpath)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    got: queue_mod.Queue[bytes] = queue_mod.Queue()

    def pump() -> None:
        for line in proc.stdout or ():
            got.put(line)

    threading.Thread(target=pump, daemon=True).start()
    try:
        assert json.loads(got.get(timeout=10))["value"] == "last"
        with tape.Queue(qpath) as q:
            q.appender().write({"new": 1})
            written = time.monotonic()
            assert json.loads(got.get(timeout=10))["value"] == {"new": 1}
            assert time.monotonic() - written < 2
            q.appender().write_many(["a", "b"])
            assert [json.loads(got.get(timeout=10))["value"] for _ in range(2)] == ["a", "b"]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
        assert proc.stderr is not None and proc.stderr.read() == b""
    finally:
        proc.kill()
        proc.wait()


# -- info --------------------------------------------------------------------------------


def test_info_summarizes_settings_cycles_and_named_tailers(qpath: Path) -> None:
    entries = build(qpath, range(6))
    with tape.Queue(qpath) as q:
        billing = q.tailer("billing")
        assert [billing.read() for _ in range(4)] == [0, 1, 2, 3]
        files = [Path(c.path).name for c in q.cycles()]
        position = q.describe()["named_tailers"]["billing"]
    result = invoke("info", str(qpath))
    assert result.exit_code == 0
    text = result.stdout
    first, last = iso(entries[0].timestamp), iso(entries[-1].timestamp)
    for expected in ("test_secondly", "msgpack", "version 1", first, last, *files):
        assert expected in text
    assert [line.split()[:2] for line in text.splitlines() if line.startswith("entries")] == [["entries", "6"]]
    billing_line = next(line for line in text.splitlines() if "billing" in line)
    assert billing_line.split() == ["billing", str(position), "2"]  # next index, entries behind


def test_info_shows_the_bytes_the_files_take_on_disk(qpath: Path) -> None:
    build(qpath, range(6))
    allocated = sum(p.stat().st_blocks * 512 for p in qpath.iterdir())
    rows = [line.split(maxsplit=2) for line in invoke("info", str(qpath)).stdout.splitlines()]
    assert ["on", "disk", size_text(allocated)] in rows


def test_info_json_is_the_queues_description(qpath: Path) -> None:
    build(qpath, range(3))
    result = invoke("info", str(qpath), "--json")
    assert result.exit_code == 0
    with tape.Queue(qpath, read_only=True) as q:
        assert json.loads(result.stdout) == json.loads(json.dumps(q.describe()))


# -- verify ------------------------------------------------------------------------------


PAYLOADS = [bytes([i]) * 40 for i in range(200)]


def damaged_copy(qpath: Path, tmp_path: Path) -> Path:
    """A copy of the queue at qpath with one byte flipped inside entry 101's payload."""
    copy = tmp_path / "damaged"
    shutil.copytree(qpath, copy)
    (f,) = copy.glob("*.tape")
    data = bytearray(f.read_bytes())
    data[data.find(PAYLOADS[101]) + 7] ^= 0xFF
    f.write_bytes(bytes(data))
    return copy


def test_info_marks_a_cycle_file_whose_last_entry_is_damaged(qpath: Path, tmp_path: Path) -> None:
    build(qpath, PAYLOADS, step=1000)  # all in one cycle file
    assert "(damaged)" not in invoke("info", str(qpath)).stdout
    (f,) = qpath.glob("*.tape")
    data = bytearray(f.read_bytes())
    data[data.rfind(PAYLOADS[-1]) + 7] ^= 0xFF  # info finds the end; damage further back is verify's
    f.write_bytes(bytes(data))
    result = invoke("info", str(qpath))
    assert result.exit_code == 1  # shown, then reported (issue 21 item 3)
    assert "damaged entries after index" in result.stderr and "`tape repair`" in result.stderr
    assert ".tape (damaged)" in result.stdout
    rows = [line.split(maxsplit=1) for line in result.stdout.splitlines()]
    assert ["damaged", "1 cycle file (counts from headers; see tape verify)"] in rows


def test_verify_a_sound_queue_exits_0_with_its_report(qpath: Path) -> None:
    build(qpath, PAYLOADS, step=1000)  # all in one cycle file
    result = invoke("verify", str(qpath))
    assert result.exit_code == 0 and result.stderr == ""
    assert result.stdout.splitlines()[0].split() == ["status", "ok"]
    assert "200 intact" in result.stdout


def test_verify_a_damaged_copy_exits_1_naming_the_place_and_the_problem(qpath: Path, tmp_path: Path) -> None:
    entries = build(qpath, PAYLOADS, step=1000)
    copy = damaged_copy(qpath, tmp_path)
    with tape.Queue(copy, read_only=True) as q:
        report = q.verify()
    result = invoke("verify", str(copy))
    assert result.exit_code == 1
    assert result.stdout.splitlines()[0].split() == ["status", "damaged"]
    assert f"last good index    {entries[100].index}" in result.stdout
    (message,) = result.stderr.splitlines()
    assert message.startswith(f"Error: {copy}: damaged: ")
    assert f"cycle {report.bad_cycle}" in message and f"offset {report.bad_offset}" in message
    assert "checksum" in message
    assert invoke("verify", str(qpath)).exit_code == 0  # the original is untouched


def test_verify_salvage_and_json_report_what_is_intact(qpath: Path, tmp_path: Path) -> None:
    build(qpath, PAYLOADS, step=1000)
    copy = damaged_copy(qpath, tmp_path)
    result = invoke("verify", str(copy), "--salvage", "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False and report["skipped"] >= 1
    assert report["entries"] == 200 - report["skipped"]
    assert "checksum" in report["message"]


def test_verify_strict_is_the_default_and_stops_a_cycle_at_its_first_problem(qpath: Path, tmp_path: Path) -> None:
    build(qpath, PAYLOADS, step=1000)
    copy = damaged_copy(qpath, tmp_path)
    strict = invoke("verify", str(copy), "--strict", "--json")
    assert strict.exit_code == 1 and strict.stdout == invoke("verify", str(copy), "--json").stdout
    report = json.loads(strict.stdout)
    assert (report["entries"], report["skipped"]) == (101, 0)


def test_dump_stops_at_damage_with_exit_1_after_the_good_entries(qpath: Path, tmp_path: Path) -> None:
    build(qpath, PAYLOADS, step=1000)
    copy = damaged_copy(qpath, tmp_path)
    result = invoke("dump", str(copy))
    assert result.exit_code == 1
    assert len(lines(result)) == 101
    assert result.stderr.startswith("Error: ") and len(result.stderr.splitlines()) == 1


# -- purge -------------------------------------------------------------------------------


def test_purge_dry_run_lists_what_would_go_and_removes_nothing(qpath: Path) -> None:
    build(qpath, range(12))  # three cycle files
    files = sorted(str(p) for p in qpath.glob("*.tape"))
    result = invoke("purge", str(qpath), "--keep-cycles", "1", "--dry-run")
    assert result.exit_code == 0
    assert result.stdout.splitlines() == files[:2]
    assert "would remove 2 cycle files" in result.stderr
    assert sorted(str(p) for p in qpath.glob("*.tape")) == files


def test_purge_removes_cycle_files_and_prints_them(qpath: Path) -> None:
    build(qpath, range(12))
    files = sorted(str(p) for p in qpath.glob("*.tape"))
    result = invoke("purge", str(qpath), "--max-bytes", "1K", "--older-than", "30d")
    assert result.exit_code == 0
    assert result.stdout.splitlines() == files[:2] and "removed 2 cycle files" in result.stderr
    assert sorted(str(p) for p in qpath.glob("*.tape")) == files[2:]
    assert values_of(invoke("dump", str(qpath))) == [8, 9, 10, 11]


def test_purge_respect_tailers_keeps_what_a_named_tailer_has_not_read(qpath: Path) -> None:
    build(qpath, range(12))
    with tape.Queue(qpath) as q:
        assert q.tailer("slow").read() == 0
    result = invoke("purge", str(qpath), "--keep-cycles", "1", "--respect-tailers")
    assert result.exit_code == 0 and result.stdout == ""
    assert "removed 0 cycle files" in result.stderr


def test_purge_without_a_rule_is_bad_usage(qpath: Path) -> None:
    build(qpath, range(3))
    result = invoke("purge", str(qpath), "--dry-run")
    assert result.exit_code == 2 and "--keep-cycles" in result.stderr


def test_durations_sizes_and_times_parse_with_their_units() -> None:
    assert [parse_duration(t) for t in ("90", "1.5", "30s", "30m", "2h", "7d", "1w")] == [
        90, 1.5, 30, 1800, 7200, 7 * 86400, 7 * 86400,
    ]
    assert [parse_size(t) for t in ("1000", "1K", "10M", "1.5G", "2T", "10MiB", "10mb")] == [
        1000, 1024, 10 << 20, 3 << 29, 2 << 40, 10 << 20, 10 << 20,
    ]
    assert parse_time("2025-11-21T00:00:00.123456789Z", 0) == T0 + 123_456_789
    assert parse_time("2025-11-21T01:00:00+01:00", 0) == T0
    assert parse_time("1763683200.25", 0) == T0 + SECOND // 4
    assert parse_time("10m", T0) == T0 - 600 * SECOND
    for bad in ("", "2x", "-1", "ten"):
        with pytest.raises(ValueError):
            parse_duration(bad)
        with pytest.raises(ValueError):
            parse_size(bad)


# -- load --------------------------------------------------------------------------------


VALUES = [{"id": 1, "tags": ["a", "b"]}, 42, "text", None, [1.5, False], {"$base64": "AP8="}, {"$map": [[1, "one"]]}]


def test_load_appends_each_line_of_a_file_then_dump_gives_the_values_back(qpath: Path, tmp_path: Path) -> None:
    source = tmp_path / "values.jsonl"
    source.write_text("".join(json.dumps(v) + "\n" for v in VALUES) + "\n")  # a blank line is skipped
    result = invoke("load", str(qpath), str(source), "--roll-cycle", "hourly")
    assert result.exit_code == 0 and f"appended {len(VALUES)} entries" in result.stdout
    assert values_of(invoke("dump", str(qpath))) == VALUES
    with tape.Queue(qpath, read_only=True) as q:
        assert (q.roll_cycle, q.codec.name) == ("hourly", "msgpack")
        assert list(q.tailer())[5:] == [b"\x00\xff", {1: "one"}]


def test_load_reads_stdin_and_appends_to_an_existing_queue(qpath: Path) -> None:
    build(qpath, ["first"])
    result = invoke("load", str(qpath), "-", input='"second"\n{"third": 3}\n')
    assert result.exit_code == 0 and "appended 2 entries" in result.stdout
    assert values_of(invoke("dump", str(qpath))) == ["first", "second", {"third": 3}]


def test_dump_then_load_copies_every_value(qpath: Path, tmp_path: Path) -> None:
    originals = [b"\x01\x02", {1: [b"x"], "k": (1, 2)}, {"index": 1}, {"$map": 1}, 2**63, -0.5, "ünï"]
    build(qpath, originals)
    copy = tmp_path / "copy"
    assert invoke("load", str(copy), "-", input=invoke("dump", str(qpath)).stdout_bytes).exit_code == 0
    with tape.Queue(copy, read_only=True) as q:
        copied = list(q.tailer())
    assert copied == [b"\x01\x02", {1: [b"x"], "k": [1, 2]}, {"index": 1}, {"$map": 1}, 2**63, -0.5, "ünï"]


def test_load_codec_and_base64_build_a_raw_queue(qpath: Path) -> None:
    result = invoke("load", str(qpath), "-", "--codec", "raw", input='{"$base64": "aGk="}\n')
    assert result.exit_code == 0
    with tape.Queue(qpath, read_only=True) as q:
        assert q.codec.name == "raw" and list(q.tailer()) == [b"hi"]


def test_load_stops_at_a_line_that_is_not_json_after_appending_those_before(qpath: Path) -> None:
    result = invoke("load", str(qpath), "-", input="1\n2\n{oops\n4\n")
    assert result.exit_code == 1
    assert "<stdin>:3: not a JSON value" in result.stderr and "appended 2 entries" in result.stdout
    assert values_of(invoke("dump", str(qpath))) == [1, 2]


def test_load_stops_at_a_value_the_codec_refuses(qpath: Path) -> None:
    result = invoke("load", str(qpath), "-", "--codec", "raw", input='{"$base64": "eA=="}\n"a str"\n')
    assert result.exit_code == 1
    assert "<stdin>:2:" in result.stderr and "raw codec" in result.stderr
    assert "appended 1 entry" in result.stdout


def test_load_into_a_queue_with_another_codec_exits_1(qpath: Path) -> None:
    build(qpath, [1])
    result = invoke("load", str(qpath), "-", "--codec", "raw", input='{"$base64": "eA=="}\n')
    assert result.exit_code == 1 and result.stderr.startswith("Error: ")


# -- errors and usage -----------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [["dump"], ["tail"], ["tail", "-f"], ["info"], ["info", "--json"], ["verify"], ["purge", "--keep-cycles", "1"]],
)
def test_a_missing_queue_exits_1_with_one_clear_line(tmp_path: Path, args: list[str]) -> None:
    missing = tmp_path / "nothing"
    result = invoke(*args, str(missing))
    assert result.exit_code == 1
    assert result.stderr == f"Error: {missing}: no queue there\n" and result.stdout == ""
    assert not missing.exists()


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["frobnicate"],
        ["dump"],
        ["dump", "Q", "--bogus"],
        ["dump", "Q", "--format", "xml"],
        ["dump", "Q", "--limit", "-1"],
        ["dump", "Q", "--since", "yesterday"],
        ["dump", "Q", "--format", "raw", "--codec", "raw"],
        ["dump", "Q", "--codec", "morse"],
        ["dump", "Q", "--jobs", "-1"],
        ["tail", "Q", "-n", "ten"],
        ["purge", "Q", "--max-bytes", "lots"],
        ["purge", "Q", "--older-than", "soon"],
        ["load", "Q"],
        ["load", "Q", "no-such-file.jsonl"],
        ["load", "Q", "-", "--roll-cycle", "fortnightly"],
    ],
)
def test_bad_usage_exits_2(qpath: Path, args: list[str]) -> None:
    build(qpath, [1])
    result = invoke(*[str(qpath) if a == "Q" else a for a in args], input="1\n")
    assert result.exit_code == 2
    assert result.stdout == "" or args == []  # with no command at all, click shows the help


# -- real processes ---------------------------------------------------------------------


def run(*args: str, input: bytes | None = None, module: bool = False) -> subprocess.CompletedProcess[bytes]:
    command = [sys.executable, "-m", "tape"] if module else [TAPE]
    return subprocess.run([*command, *args], input=input, capture_output=True, timeout=60)


@pytest.mark.parametrize(
    ("args", "status"),
    [
        (["dump", "--limit", "2"], 0),
        (["tail", "-n", "1"], 0),
        (["info"], 0),
        (["info", "--json"], 0),
        (["verify"], 0),
        (["purge", "--keep-cycles", "1", "--dry-run"], 0),
        (["repair"], 0),
        (["dump", "--format", "xml"], 2),
    ],
)
def test_the_console_script_reads_a_queue_another_process_wrote(qpath: Path, args: list[str], status: int) -> None:
    build(qpath, range(8))
    done = run(args[0], str(qpath), *args[1:])
    assert done.returncode == status, done.stderr
    assert b"Traceback" not in done.stderr
    assert (done.stdout != b"") == (status == 0)


def test_python_m_tape_runs_the_command_line(qpath: Path) -> None:
    assert run("--version", module=True).stdout.decode().split()[-1] == "0.1.0"
    build(qpath, ["x"])
    done = run("tail", str(qpath), module=True)
    assert done.returncode == 0 and json.loads(done.stdout)["value"] == "x"


def test_dump_piped_into_load_in_real_processes_copies_the_queue(qpath: Path, tmp_path: Path) -> None:
    build(qpath, [{"n": i, "b": bytes([i])} for i in range(50)])
    dumped = run("dump", str(qpath))
    loaded = run("load", str(tmp_path / "copy"), "-", input=dumped.stdout)
    assert loaded.returncode == 0 and b"appended 50 entries" in loaded.stdout
    assert [json.loads(line)["value"] for line in run("dump", str(tmp_path / "copy")).stdout.splitlines()] == [
        json.loads(line)["value"] for line in dumped.stdout.splitlines()
    ]


def test_a_missing_queue_in_a_real_process_is_one_line_without_traceback(tmp_path: Path) -> None:
    done = run("info", str(tmp_path / "nothing"))
    assert done.returncode == 1
    assert done.stderr.decode() == f"Error: {tmp_path / 'nothing'}: no queue there\n"


def test_a_closed_pipe_ends_dump_quietly(qpath: Path) -> None:
    with tape.Queue(qpath) as q:
        q.appender().write_many(range(20000))  # more than a pipe holds
    writer = subprocess.Popen([TAPE, "dump", str(qpath)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert writer.stdout is not None and writer.stderr is not None
    reader = subprocess.run(["head", "-n", "1"], stdin=writer.stdout, capture_output=True, timeout=30)
    writer.stdout.close()
    assert json.loads(reader.stdout)["value"] == 0
    assert writer.wait(timeout=30) == 0
    assert writer.stderr.read() == b""


# -- worker processes ----------------------------------------------------------------

MANY = 100_000  # more than dump formats in one process (4 units of 16,384)


@pytest.fixture(scope="module")
def big_queue(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A queue of MANY entries over three cycle files, written by this process."""
    path = tmp_path_factory.mktemp("big") / "q"
    now = [T0]
    with tape.Queue(path, roll_cycle="minutely", clock=lambda: now[0]) as q:
        a = q.appender()
        for first in range(0, MANY, 1000):
            a.write_many({"n": i, "entry": f"entry-{i:06d}", "b": bytes([i % 256])} for i in range(first, first + 1000))
            now[0] += 60 * SECOND // 40  # 40,000 entries a cycle file
    return path


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--backward"],
        ["--limit", "70001"],
        ["--backward", "--limit", "80000"],
        ["--format", "pretty"],
        ["--from", "FROM"],
        ["--codec", "msgpack"],
    ],
)
def test_dump_with_worker_processes_writes_what_one_process_writes(big_queue: Path, args: list[str]) -> None:
    with tape.Queue(big_queue, read_only=True) as q:
        first = q.first_index
    assert first is not None
    args = [str(first + 12_345) if a == "FROM" else a for a in args]  # inside the first cycle file
    alone = run("dump", str(big_queue), "--jobs", "1", *args)
    helped = run("dump", str(big_queue), "--jobs", "2", *args)
    assert alone.returncode == helped.returncode == 0
    assert helped.stdout == alone.stdout and helped.stderr == alone.stderr == b""


def test_dump_with_worker_processes_stops_at_damage_after_the_good_entries(big_queue: Path, tmp_path: Path) -> None:
    copy = tmp_path / "damaged"
    shutil.copytree(big_queue, copy)
    for f in copy.glob("*.tape"):
        data = bytearray(f.read_bytes())
        at = data.find(b"entry-070000")
        if at >= 0:
            data[at + 6] ^= 0xFF
            f.write_bytes(bytes(data))
    alone = run("dump", str(copy), "--jobs", "1")
    helped = run("dump", str(copy), "--jobs", "2")
    assert alone.returncode == helped.returncode == 1
    assert helped.stdout == alone.stdout and len(helped.stdout.splitlines()) == 70_000
    assert helped.stderr == alone.stderr and helped.stderr.startswith(b"Error: ")


def test_a_closed_pipe_ends_a_dump_with_worker_processes_quietly(big_queue: Path) -> None:
    writer = subprocess.Popen([TAPE, "dump", str(big_queue), "--jobs", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert writer.stdout is not None and writer.stderr is not None
    reader = subprocess.run(["head", "-n", "1"], stdin=writer.stdout, capture_output=True, timeout=30)
    writer.stdout.close()
    assert json.loads(reader.stdout)["value"]["n"] == 0
    assert writer.wait(timeout=30) == 0
    assert writer.stderr.read() == b""


# -- progress bars -------------------------------------------------------------------


def run_on_terminal(args: list[str], stdout: Path, input: bytes = b"") -> tuple[int, str]:
    """Run the console script with stderr on a pseudo-terminal, stdout to a file
    and `input` piped in: its exit status and what the terminal received."""
    controller, terminal = pty.openpty()
    with stdout.open("wb") as out:
        proc = subprocess.Popen([TAPE, *args], stdin=subprocess.PIPE, stdout=out, stderr=terminal)
    os.close(terminal)
    assert proc.stdin is not None
    proc.stdin.write(input)  # less than a pipe holds
    proc.stdin.close()
    shown = []
    try:
        while data := os.read(controller, 4096):
            shown.append(data)
    except OSError:  # EIO: the process closed the terminal's last open end
        pass
    finally:
        os.close(controller)
    return proc.wait(timeout=60), b"".join(shown).decode()


def test_dump_to_a_file_draws_a_progress_bar_on_a_terminal_and_writes_the_same_data(
    qpath: Path, tmp_path: Path
) -> None:
    build(qpath, [{"n": i} for i in range(3000)])
    status, terminal = run_on_terminal(["dump", str(qpath)], tmp_path / "out.jsonl")
    assert status == 0
    assert "dumping" in terminal and "100%" in terminal
    assert (tmp_path / "out.jsonl").read_bytes() == run("dump", str(qpath)).stdout


def test_load_from_a_file_draws_a_progress_bar_on_a_terminal(qpath: Path, tmp_path: Path) -> None:
    source = tmp_path / "values.jsonl"
    source.write_text("".join(f"{i}\n" for i in range(3000)))
    status, terminal = run_on_terminal(["load", str(qpath), str(source)], tmp_path / "out.txt")
    assert status == 0
    assert "loading" in terminal and "100%" in terminal
    assert (tmp_path / "out.txt").read_text() == f"appended 3000 entries to {qpath}\n"


def test_load_from_stdin_on_a_terminal_counts_the_bytes_read(qpath: Path, tmp_path: Path) -> None:
    text = "".join(f"{i}\n" for i in range(3000)).encode()
    status, terminal = run_on_terminal(["load", str(qpath), "-"], tmp_path / "out.txt", input=text)
    assert status == 0
    assert "loading" in terminal and f"{size_text(len(text))} read" in terminal  # 13.6 KiB, not 13890


def test_purge_draws_a_progress_bar_on_a_terminal(qpath: Path, tmp_path: Path) -> None:
    build(qpath, range(12))  # three cycle files
    files = sorted(str(p) for p in qpath.glob("*.tape"))
    status, terminal = run_on_terminal(["purge", str(qpath), "--keep-cycles", "1"], tmp_path / "out.txt")
    assert status == 0
    assert "purging" in terminal and "100%" in terminal and "removed 2 cycle files" in terminal
    assert (tmp_path / "out.txt").read_text().splitlines() == files[:2]


def test_verify_draws_a_progress_bar_on_a_terminal_and_prints_the_same_report(qpath: Path, tmp_path: Path) -> None:
    build(qpath, range(12))  # three cycle files
    status, terminal = run_on_terminal(["verify", str(qpath)], tmp_path / "out.txt")
    assert status == 0
    assert "verifying" in terminal and "100%" in terminal
    assert (tmp_path / "out.txt").read_bytes() == run("verify", str(qpath)).stdout


def test_dump_to_a_pipe_draws_no_bar_on_a_terminal(qpath: Path, tmp_path: Path) -> None:
    build(qpath, range(100))
    controller, terminal = pty.openpty()
    try:
        done = subprocess.run([TAPE, "dump", str(qpath)], stdout=subprocess.PIPE, stderr=terminal, timeout=60)
        os.set_blocking(controller, False)
        with pytest.raises(BlockingIOError):
            os.read(controller, 4096)
    finally:
        os.close(terminal)
        os.close(controller)
    assert done.returncode == 0 and len(done.stdout.splitlines()) == 100


def test_no_progress_bar_when_stderr_is_not_a_terminal(qpath: Path, tmp_path: Path) -> None:
    build(qpath, range(12))  # three cycle files
    dumped = tmp_path / "dumped.jsonl"

    def stderr_of(*args: str) -> str:
        with dumped.open("ab") as out:
            done = subprocess.run([TAPE, *args], stdout=out, stderr=subprocess.PIPE, timeout=60)
        assert done.returncode == 0
        return done.stderr.decode()

    assert stderr_of("dump", str(qpath)) == ""
    assert stderr_of("load", str(tmp_path / "copy"), str(dumped)) == ""
    assert stderr_of("verify", str(qpath)) == ""
    (message,) = stderr_of("purge", str(qpath), "--keep-cycles", "1").splitlines()
    assert message.startswith("removed 2 cycle files (")


# -- codecs ----------------------------------------------------------------------------

SCHEMA = {
    "type": "record",
    "name": "Order",
    "fields": [{"name": "id", "type": "long"}, {"name": "side", "type": "string"}],
}


@pytest.mark.parametrize("codec", ["msgpack", "json", "lz4+msgpack", "lz4+json", "avro"])
def test_load_and_dump_work_with_every_codec(qpath: Path, tmp_path: Path, codec: str) -> None:
    records = [{"id": i, "side": "buy" if i % 2 else "sell"} for i in range(600)]  # lz4 compresses a batch
    schema = tmp_path / "order.avsc"
    schema.write_text(json.dumps(SCHEMA))
    options = ["--schema", str(schema)] if codec == "avro" else []
    text = "".join(json.dumps(r) + "\n" for r in records)
    assert invoke("load", str(qpath), "-", "--codec", codec, *options, input=text).exit_code == 0
    assert values_of(invoke("dump", str(qpath))) == records
    assert json.loads(invoke("info", str(qpath), "--json").stdout)["codec"] == codec


def test_a_pickle_queue_is_decoded_only_when_named(qpath: Path) -> None:
    with tape.Queue(qpath, codec="pickle") as q:
        q.appender().write({"a": {1, 2}})
    refused = invoke("dump", str(qpath))
    assert refused.exit_code == 1 and "--codec" in refused.stderr
    assert values_of(invoke("dump", str(qpath), "--codec", "pickle")) == [{"a": {"$repr": "{1, 2}"}}]
    assert invoke("info", str(qpath)).exit_code == 0  # looking needs no decoding


def test_avro_without_a_schema_is_bad_usage(qpath: Path) -> None:
    assert invoke("load", str(qpath), "-", "--codec", "avro", input="{}\n").exit_code == 2
    assert not qpath.exists()


# -- help and debugging ------------------------------------------------------------------


@pytest.mark.parametrize("command", ["dump", "tail", "info", "verify", "repair", "purge", "load"])
def test_every_command_has_help_with_an_example(command: str) -> None:
    result = invoke(command, "--help")
    assert result.exit_code == 0 and f"tape {command} /" in result.stdout


def test_debug_lets_the_exception_through(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["--debug", "info", str(tmp_path / "nothing")])
    assert isinstance(result.exception, tape.QueueNotFoundError)


def test_repair_reports_a_sound_tail(tmp_path: Path) -> None:
    q = tape.Queue(tmp_path / "q")
    q.appender().write(1)
    q.close()
    result = CliRunner().invoke(cli, ["repair", str(tmp_path / "q")])
    assert result.exit_code == 0 and "sound" in result.output
