"""Queue: opening, stored settings, sizes, description, read-only, closing."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import tape


def test_a_missing_directory_is_created(qpath: Path) -> None:
    with tape.Queue(qpath) as q:
        assert q.path == str(qpath)
        assert (qpath / "tape.meta").is_file()


def test_defaults_are_daily_and_msgpack(queue: tape.Queue) -> None:
    assert queue.roll_cycle == "daily"
    assert queue.codec.name == "msgpack"


def test_reopening_adopts_the_stored_codec_and_roll_cycle(qpath: Path) -> None:
    with tape.Queue(qpath, codec="raw", roll_cycle="hourly") as q:
        q.appender().write(b"x")
    with tape.Queue(qpath) as q:
        assert (q.codec.name, q.roll_cycle) == ("raw", "hourly")
        assert list(q.tailer()) == [b"x"]


def test_reopening_with_a_different_codec_raises_incompatible(qpath: Path) -> None:
    tape.Queue(qpath, codec="raw").close()
    with pytest.raises(tape.IncompatibleQueueError):
        tape.Queue(qpath, codec="msgpack")


def test_reopening_with_a_different_roll_cycle_raises_incompatible(qpath: Path) -> None:
    tape.Queue(qpath, roll_cycle="hourly").close()
    with pytest.raises(tape.IncompatibleQueueError):
        tape.Queue(qpath, roll_cycle="daily")


def test_reopening_with_the_same_settings_works(qpath: Path) -> None:
    tape.Queue(qpath, codec="raw", roll_cycle="minutely").close()
    with tape.Queue(qpath, codec="raw", roll_cycle="minutely") as q:
        assert q.count() == 0


def test_a_codec_object_is_stored_by_name(qpath: Path) -> None:
    with tape.Queue(qpath, codec=tape.codecs.get("raw")) as q:
        assert q.codec is tape.codecs.get("raw")
    with tape.Queue(qpath) as q:
        assert q.codec.name == "raw"


def test_an_unknown_roll_cycle_raises_and_creates_nothing(qpath: Path) -> None:
    with pytest.raises(tape.ArgumentError):
        tape.Queue(qpath, roll_cycle="fortnightly")
    assert not qpath.exists()


def test_an_unknown_codec_raises_and_creates_nothing(qpath: Path) -> None:
    with pytest.raises(tape.ArgumentError):
        tape.Queue(qpath, codec="morse")
    assert not qpath.exists()


def test_a_directory_that_is_not_a_queue_raises_and_is_left_alone(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(tape.NotAQueueError):
        tape.Queue(tmp_path)
    with pytest.raises(ValueError):
        tape.Queue(tmp_path)
    assert os.listdir(tmp_path) == ["notes.txt"]


def test_an_empty_existing_directory_becomes_a_queue(tmp_path: Path) -> None:
    with tape.Queue(tmp_path) as q:
        assert q.count() == 0


def test_create_false_on_a_missing_queue_raises_queue_not_found(qpath: Path) -> None:
    with pytest.raises(tape.QueueNotFoundError):
        tape.Queue(qpath, create=False)
    with pytest.raises(FileNotFoundError) as raised:
        tape.Queue(qpath, create=False)
    assert raised.value.errno == errno.ENOENT and raised.value.filename == str(qpath)
    assert "no queue (no such directory; create=False creates none)" in str(raised.value)
    assert not qpath.exists()


def test_create_false_on_an_empty_directory_says_it_is_empty(tmp_path: Path) -> None:
    with pytest.raises(tape.QueueNotFoundError, match=r"the directory is empty; create=False creates none"):
        tape.Queue(tmp_path, create=False)
    assert list(tmp_path.iterdir()) == []


def test_create_false_opens_an_existing_queue(qpath: Path) -> None:
    tape.Queue(qpath).close()
    with tape.Queue(qpath, create=False) as q:
        assert q.count() == 0


def test_read_only_reads_but_refuses_an_appender(qpath: Path) -> None:
    with tape.Queue(qpath) as q:
        q.appender().write("kept")
    with tape.Queue(qpath, read_only=True) as q:
        assert q.read_only
        assert list(q.tailer()) == ["kept"]
        with pytest.raises(tape.ReadOnlyError):
            q.appender()
        with pytest.raises(PermissionError):
            q.appender()
        assert q.count() == 1


def test_read_only_on_a_missing_queue_raises_queue_not_found(qpath: Path) -> None:
    with pytest.raises(tape.QueueNotFoundError):
        tape.Queue(qpath, read_only=True)
    assert not qpath.exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_a_queue_without_write_permission_opens_read_only(qpath: Path) -> None:
    with tape.Queue(qpath) as q:
        q.appender().write("kept")
    files = [qpath, *qpath.iterdir()]
    for f in files:
        f.chmod(0o555 if f.is_dir() else 0o444)
    try:
        with tape.Queue(qpath, read_only=True) as q:
            assert list(q.tailer()) == ["kept"]
            with pytest.raises(tape.ReadOnlyError):
                q.appender()
    finally:
        for f in files:
            f.chmod(0o755 if f.is_dir() else 0o644)


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("mount"), reason="needs root to mount")
def test_a_queue_on_a_read_only_filesystem_opens_read_only(tmp_path: Path) -> None:
    with tape.Queue(tmp_path / "src" / "q") as q:
        q.appender().write("kept")
    ro = tmp_path / "ro"
    ro.mkdir()
    if subprocess.run(["mount", "--bind", str(tmp_path / "src"), str(ro)], capture_output=True).returncode:
        pytest.skip("bind mounts are not allowed here")
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(ro)], check=True, capture_output=True)
        with tape.Queue(ro / "q", read_only=True) as q:
            assert list(q.tailer()) == ["kept"]
            with pytest.raises(tape.ReadOnlyError):
                q.appender()
        with pytest.raises(OSError):
            tape.Queue(ro / "q")
    finally:
        subprocess.run(["umount", str(ro)], check=True)


def test_sizes_of_an_empty_queue(queue: tape.Queue) -> None:
    assert queue.first_index is None
    assert queue.last_index is None
    assert queue.count() == 0
    assert queue.cycles() == []


def test_first_and_last_index_and_count(queue: tape.Queue) -> None:
    a = queue.appender()
    first = a.write("a")
    a.write("b")
    last = a.write("c")
    assert (queue.first_index, queue.last_index, queue.count()) == (first, last, 3)


def test_write_many_returns_the_last_index_and_indexes_are_consecutive(queue: tape.Queue) -> None:
    a = queue.appender()
    first = a.write("first")
    last = a.write_many(["x", "y", "z"])
    assert last == first + 3
    assert a.last_index == last
    assert [e.index for e in queue.tailer().entries()] == [first, first + 1, first + 2, first + 3]


def test_write_many_of_nothing_raises(queue: tape.Queue) -> None:
    with pytest.raises(tape.ArgumentError):
        queue.appender().write_many([])


def test_appender_last_index_is_none_before_any_write(queue: tape.Queue) -> None:
    assert queue.appender().last_index is None


def test_cycles_describe_each_cycle_file(queue: tape.Queue) -> None:
    a = queue.appender()
    first = a.write("a")
    last = a.write("b")
    [cycle] = queue.cycles()
    assert cycle.cycle == tape.split_index(queue, first)[0]
    assert os.path.isfile(cycle.path) and os.path.dirname(cycle.path) == queue.path
    assert (cycle.first_index, cycle.last_index, cycle.entries) == (first, last, 2)
    assert 0 < cycle.bytes < os.path.getsize(cycle.path)


def test_describe_tells_everything_about_the_queue(queue: tape.Queue) -> None:
    a = queue.appender()
    first = a.write("a")
    last = a.write("b")
    d = queue.describe()
    assert d["path"] == queue.path
    assert (d["roll_cycle"], d["codec"], d["format_version"]) == ("daily", "msgpack", 1)
    assert d["created"].startswith("20")
    assert (d["entries"], d["first_index"], d["last_index"]) == (2, first, last)
    assert d["bytes"] == sum(c["bytes"] for c in d["cycles"]) > 0
    assert d["cycles"][0]["entries"] == 2
    assert d["last_timestamp"] == list(queue.tailer().entries())[-1].timestamp
    assert (d["read_only"], d["sync"], d["named_tailers"]) == (False, "none", {})


def test_split_and_make_index_are_inverse(queue: tape.Queue) -> None:
    index = queue.appender().write("x")
    cycle, seq = tape.split_index(queue, index)
    assert seq == 0
    assert tape.make_index(queue, cycle, seq) == index
    assert tape.make_index(queue, cycle, 5) == index + 5


def test_split_and_make_index_check_their_arguments(queue: tape.Queue) -> None:
    with pytest.raises(tape.ArgumentTypeError):
        tape.split_index(queue, "1")  # type: ignore[arg-type]
    with pytest.raises(tape.ArgumentTypeError):
        tape.make_index(queue, 1, True)
    with pytest.raises(tape.ArgumentError):
        tape.make_index(queue, 1, 1 << 32)
    with pytest.raises(tape.ArgumentError):
        tape.split_index(queue, -1)


@pytest.mark.parametrize("sync", ["always", "interval:10"])
def test_sync_modes_write_and_read(qpath: Path, sync: str) -> None:
    with tape.Queue(qpath, sync=sync) as q:
        a = q.appender()
        a.write_many(range(100))
        a.write(100)
        a.sync()
        assert list(q.tailer()) == list(range(101))
        assert q.describe()["sync"] == sync


@pytest.mark.parametrize("sync", ["sometimes", "interval:", "interval:-5", "interval:0"])
def test_an_unknown_sync_mode_raises(qpath: Path, sync: str) -> None:
    with pytest.raises(tape.ArgumentError):
        tape.Queue(qpath, sync=sync)


def _writer_vm_flags(q: tape.Queue) -> list[set[str]]:
    """The VmFlags of this process's writable mappings of q's cycle files."""
    found: list[set[str]] = []
    inside = False
    with open("/proc/self/smaps") as f:
        for line in f:
            fields = line.split()
            if not fields[0].endswith(":"):  # a mapping's first line: range perms offset dev inode [path]
                path = fields[5] if len(fields) > 5 else ""
                inside = fields[1] == "rw-s" and os.path.dirname(path) == q.path and path.endswith(".tape")
            elif inside and fields[0] == "VmFlags:":
                found.append(set(fields[1:]))
    return found


@pytest.mark.parametrize(
    ("options", "large"),
    [
        ({}, True),
        ({"sync": "always"}, False),
        ({"sync": "interval:50"}, False),
        ({"sync": "always", "large_pages": True}, True),
        ({"large_pages": False}, False),
        ({"large_pages": None}, True),
        ({"sync": "always", "large_pages": None}, False),
    ],
)
def test_large_pages_follow_the_sync_mode_unless_given(qpath: Path, options: dict[str, Any], large: bool) -> None:
    thp = os.path.exists("/sys/kernel/mm/transparent_hugepage/enabled")
    with tape.Queue(qpath, codec="raw", **options) as q:
        q.appender().write_many([b"x" * 1000] * 5000)
        assert q.large_pages is large and q.describe()["large_pages"] is large
        flags = _writer_vm_flags(q)
        assert flags, "the appender maps the file it appends to"
        assert all(("hg" in f) == (large and thp) for f in flags)
        assert list(q.tailer()) == [b"x" * 1000] * 5000


def test_large_pages_must_be_a_bool(qpath: Path) -> None:
    with pytest.raises(tape.ArgumentTypeError):
        tape.Queue(qpath, large_pages=1)
    assert not qpath.exists()


def test_a_read_only_queue_has_no_large_pages(qpath: Path) -> None:
    tape.Queue(qpath).close()
    with tape.Queue(qpath, read_only=True) as q:
        assert q.large_pages is False and q.describe()["large_pages"] is False


def test_an_unknown_tuning_keyword_raises_type_error(qpath: Path) -> None:
    with pytest.raises(tape.ArgumentTypeError):
        tape.Queue(qpath, chunk_size=4096)


def test_a_queue_written_by_another_process_is_read_here(qpath: Path) -> None:
    script = "import sys, tape\nwith tape.Queue(sys.argv[1]) as q: q.appender().write_many(range(5))"
    subprocess.run([sys.executable, "-c", script, str(qpath)], check=True)
    with tape.Queue(qpath) as q:
        assert list(q.tailer()) == [0, 1, 2, 3, 4]


def test_an_unclosed_queue_is_harmless_at_exit(qpath: Path) -> None:
    script = (
        "import sys, tape\n"
        "q = tape.Queue(sys.argv[1], sync='interval:5')\n"
        "q.appender().write('left open')\n"
        "t = q.tailer()\n"
        "t.read()\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(qpath)], capture_output=True, text=True)
    assert (done.returncode, done.stderr) == (0, "")
    with tape.Queue(qpath) as q:
        assert list(q.tailer()) == ["left open"]


def test_write_many_gives_every_entry_one_timestamp(qpath: Path) -> None:
    ticks = iter(range(10**18, 10**18 + 100 * 10**9, 10**9))
    with tape.Queue(qpath, clock=lambda: next(ticks)) as q:
        q.appender().write_many(["a", "b", "c"])
        assert {e.timestamp for e in q.tailer().entries()} == {10**18}


def test_write_if_appends_only_after_the_expected_entry(queue: tape.Queue) -> None:
    a = queue.appender()
    first = a.write_if("a", None)
    assert first is not None
    assert a.write_if("b", None) is None
    assert a.write_if("b", first) == first + 1
    assert a.write_if("c", first) is None
    assert list(queue.tailer()) == ["a", "b"]


_CLOSE_WHILE_WRITING = """
import sys, threading, time, tape
for i in range(60):
    q = tape.Queue(f"{sys.argv[1]}/q{i}", codec="msgpack")
    a = q.appender()
    def write(k):
        try:
            while True:
                a.write({"k": k}); a.write_many([1, 2]); a.write_if(3, None); a.sync(); a.last_index
        except tape.QueueClosedError:
            pass
    threads = [threading.Thread(target=write, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.002)
    (a.close if i % 2 else q.close)()
    for t in threads:
        t.join()
    q.close()
print("ok")
"""


def test_closing_while_other_threads_write_waits_for_them_and_never_crashes(tmp_path: Path) -> None:
    # A subprocess, so that a crash fails this test instead of ending the run.
    done = subprocess.run(
        [sys.executable, "-c", _CLOSE_WHILE_WRITING, str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "ok\n", "")
