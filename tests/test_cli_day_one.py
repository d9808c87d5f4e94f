"""What a new user of the `tape` command trips over (issue 21, items 8 to 12), each
through a real process: the console script of this venv."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

import tape
from tape.summary import WIDTH, progress_text, size_text

TAPE = str(Path(sys.executable).parent / "tape")
SECOND = 10**9
T0 = 1_763_683_200 * SECOND  # 2025-11-21T00:00:00Z
READ_ONE_LINE = "import sys; sys.stdin.buffer.readline(); sys.stdin.close()"


def run(*args: str, input: bytes | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([TAPE, *args], input=input, capture_output=True, timeout=120)
    return subprocess.CompletedProcess(done.args, done.returncode, done.stdout.decode(), done.stderr.decode())


def many(qpath: Path, n: int = 20_000) -> None:
    """A queue of more entries than a pipe holds as JSON lines."""
    with tape.Queue(qpath) as q:
        q.appender().write_many({"n": i, "pad": "x" * 40} for i in range(n))


# -- 8: a closed pipe ---------------------------------------------------------------------


@pytest.mark.parametrize("args", [["dump"], ["tail", "-n", "20000"], ["tail", "-n", "20000", "-f"]])
def test_a_reader_that_closes_the_pipe_ends_the_command_quietly_with_exit_0(qpath: Path, args: list[str]) -> None:
    many(qpath)
    reader = subprocess.Popen([sys.executable, "-c", READ_ONE_LINE], stdin=subprocess.PIPE)
    writer = subprocess.Popen(
        [TAPE, args[0], str(qpath), *args[1:]], stdout=reader.stdin, stderr=subprocess.PIPE
    )
    assert reader.stdin is not None
    reader.stdin.close()  # only the two processes hold the pipe
    try:
        assert reader.wait(timeout=60) == 0
        _, stderr = writer.communicate(timeout=60)
        assert writer.returncode == 0
        assert stderr == b""
    finally:
        writer.kill()
        reader.kill()


# -- 9: empty and inverted windows ----------------------------------------------------------


def test_an_empty_window_says_so_on_stderr_and_exits_0(qpath: Path) -> None:
    with tape.Queue(qpath) as q:  # written now, by the wall clock
        q.appender().write_many(range(5))
    for window in (["--backward", "--until", "10m"], ["--until", "10m"], ["--since", "1h", "--until", "10m"],
                   ["--from", "1", "--to", "1", "--since", "2099-01-01T00:00Z"]):
        done = run("dump", str(qpath), *window)
        assert (done.returncode, done.stdout) == (0, ""), window
        assert done.stderr == f"{qpath}: no entries in the window\n", window
    assert run("dump", str(qpath), "--since", "10m").stdout.count("\n") == 5  # the queue is there
    assert run("dump", str(qpath), "--limit", "0").stderr == ""  # nothing asked: nothing to say


def test_an_empty_queue_says_it_holds_no_entries(qpath: Path) -> None:
    tape.Queue(qpath).close()
    done = run("dump", str(qpath))
    assert (done.returncode, done.stdout, done.stderr) == (0, "", f"{qpath}: the queue holds no entries\n")


@pytest.mark.parametrize(
    ("window", "says"),
    [
        (["--since", "10m", "--until", "1h"], "--since (2"),
        (["--from", "5", "--to", "4"], "--from 5 is after --to 4"),
    ],
)
def test_an_inverted_window_is_bad_usage(qpath: Path, window: list[str], says: str) -> None:
    with tape.Queue(qpath) as q:
        q.appender().write_many(range(5))
    done = run("dump", str(qpath), *window)
    assert done.returncode == 2 and done.stdout == ""
    assert says in done.stderr and "inverted" in done.stderr


# -- 10 and 11: tape info in 80 columns, and what its sizes count ------------------------------


def long_queue(tmp_path: Path, cycles: int) -> Path:
    """A queue `cycles` test_secondly cycle files long, at a path of some 150 characters."""
    path = tmp_path.joinpath(*["a-rather-long-folder-name"] * 5, "queue")
    now = [T0]
    with tape.Queue(path, roll_cycle="test_secondly", clock=lambda: now[0]) as q:
        a = q.appender()
        for i in range(cycles):
            a.write_many([{"i": i}] * 3)
            now[0] += SECOND
        q.tailer("a-named-tailer").read()
    return path


def test_info_fits_80_columns_and_summarizes_many_cycle_files(tmp_path: Path) -> None:
    path = long_queue(tmp_path, 50)
    files = sorted(p.name for p in path.glob("*.tape"))
    assert len(str(path)) > 150 and len(files) == 50
    text = run("info", str(path)).stdout
    lines = text.splitlines()
    assert max(map(len, lines)) <= WIDTH, max(lines, key=len)
    shown = [f for f in files if f in text]
    assert shown == files[:3] + files[-3:]
    assert "... 44 more cycle files (tape info --cycles lists them all)" in text
    assert len(lines) < 40
    # the path, wrapped, is all there
    path_lines = lines[: next(k for k, line in enumerate(lines) if line.startswith("format"))]
    assert "".join(line.removeprefix("path").strip() for line in path_lines) == str(path)

    every = run("info", str(path), "--cycles").stdout
    assert [f for f in files if f in every] == files
    assert max(map(len, every.splitlines())) <= WIDTH


def test_verify_wraps_a_long_problem_between_words(tmp_path: Path) -> None:
    path = long_queue(tmp_path, 1)
    cycle = next(path.glob("*.tape"))
    data = bytearray(cycle.read_bytes())
    data[data.rfind(b"\x81\xa1i") + 3] ^= 0xFF  # the last entry's payload: its checksum fails
    cycle.write_bytes(data)
    done = run("verify", str(path))
    assert done.returncode == 1
    problem = done.stderr.strip().split(": damaged: ", 1)[1]
    lines = done.stdout.splitlines()
    start = next(k for k, line in enumerate(lines) if line.startswith("first problem"))
    pieces = [line.removeprefix("first problem").strip() for line in lines[start:]]
    assert max(map(len, lines)) <= WIDTH
    # a line ends between two words or after a slash of the path, never inside a word
    joined = pieces[0]
    for piece in pieces[1:]:
        joined += piece if joined.endswith("/") else " " + piece
    assert joined == problem


def test_info_and_verify_name_their_two_sizes_differently(qpath: Path) -> None:
    with tape.Queue(qpath) as q:
        q.appender().write_many(range(1000))
        used = sum(c.bytes for c in q.cycles())
        checked = q.verify().bytes
    assert used != checked  # the index arrays count in one, not in the other
    info = run("info", str(qpath)).stdout
    verify = run("verify", str(qpath)).stdout
    assert f"space used   {size_text(used)} of the cycle files (entries, index)" in info
    assert f"entry bytes        {size_text(checked)} (the intact entries: headers, payloads)" in verify
    assert "space used" not in verify and "bytes" not in info


# -- 12: progress bars ---------------------------------------------------------------------------


def test_progress_text_fits_the_line_and_counts_for_people() -> None:
    assert progress_text("loading", 43_766_670, None, "bytes", 3.0) == "loading  41.7 MiB read  00:00:03"
    assert progress_text("dumping", 1234, None, "entries", 0) == "dumping  1,234 entries  00:00:00"
    line = progress_text("verifying", 512 << 20, 1 << 30, "bytes", 65)
    assert line.startswith("verifying  [") and line.endswith("]   50%  512.0 MiB of 1.0 GiB  00:01:05")
    assert line.count("#") == line.count("-") and len(line) == WIDTH - 1
    assert "100%" in progress_text("purging", 3, 3, "files", 1)
    assert "100%" in progress_text("purging", 0, 0, "files", 1)  # nothing to do is done


def on_terminal(args: list[str], stdin: bytes) -> tuple[int, bytes]:
    """Run the console script with stdout and stderr on one pseudo-terminal, as a user sees it."""
    controller, terminal = pty.openpty()
    proc = subprocess.Popen([TAPE, *args], stdin=subprocess.PIPE, stdout=terminal, stderr=terminal)
    os.close(terminal)
    assert proc.stdin is not None
    proc.stdin.write(stdin)
    proc.stdin.close()
    shown = []
    try:
        while data := os.read(controller, 4096):
            shown.append(data)
    except OSError:  # EIO: the process is gone
        pass
    finally:
        os.close(controller)
    return proc.wait(timeout=120), b"".join(shown)


def test_load_ends_the_bars_line_before_its_summary_and_shows_stdin_in_binary_units(
    qpath: Path, tmp_path: Path
) -> None:
    text = "".join(f'{{"n": {i}, "pad": "{"x" * 60}"}}\n' for i in range(30_000)).encode()
    source = tmp_path / "values.jsonl"
    source.write_bytes(text)
    for args, stdin in ((["load", str(qpath), str(source)], b""), (["load", str(qpath), "-"], text)):
        status, shown = on_terminal(args, stdin)
        assert status == 0
        screen = shown.decode()
        summary = f"appended 30000 entries to {qpath}"
        assert f"\n{summary}" in screen.replace("\r\n", "\n"), screen  # on a line of its own
        last_bar = screen.split(summary)[0].split("\r")[-2]  # then "\r\n"
        assert "loading" in last_bar and size_text(len(text)) in last_bar, screen
        assert str(len(text)) not in screen
        bars = [part for part in screen.replace("\x1b[K", "").split("\r") if part.startswith("loading")]
        assert bars and all(len(bar) < WIDTH for bar in bars)


def test_a_file_given_for_a_queue_is_named_as_such(tmp_path: Path) -> None:
    archived = tmp_path / "20251121.tape.lz4"
    archived.write_bytes(b"x")
    other = tmp_path / "notes.txt"
    other.write_text("x")
    for command in ("info", "verify", "tail"):
        done = run(command, str(archived))
        assert done.returncode == 2
        assert "is a file, not a queue directory (an archive of tape purge --archive: tape dump reads it)" in done.stderr
    done = run("info", str(other))
    assert done.returncode == 2 and "give the queue's directory" in done.stderr


def test_load_of_a_new_avro_queue_without_schema_names_the_option(tmp_path: Path) -> None:
    done = run("load", str(tmp_path / "q"), "-", "--codec", "avro", input=b'{"a": 1}\n')
    assert done.returncode == 2 and "needs --schema FILE" in done.stderr
    assert not (tmp_path / "q").exists()


def test_load_counts_one_entry_in_the_singular(tmp_path: Path) -> None:
    done = run("load", str(tmp_path / "q"), "-", input=b'{"a": 1}\n')
    assert done.returncode == 0 and f"appended 1 entry to {tmp_path / 'q'}" in done.stdout
