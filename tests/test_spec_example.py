"""The example of SPEC.md, "The log", runs as written."""

from pathlib import Path

import tape


def test_the_log_example_runs_as_written(tmp_path: Path) -> None:
    with tape.Queue(tmp_path / "q1") as q:          # a directory; created if missing
        t = q.tailer()                          # anonymous tailer at the start
        assert t.read() is None                 # nothing yet: None, never blocks
        a = q.appender()
        i = a.write({"foo": ["bar", {"baz": 0}]})   # returns the entry's index (int)
        j = a.write({"another": "thing"})
        assert j > i
        assert t.read() == {"foo": ["bar", {"baz": 0}]}
        assert t.read() == {"another": "thing"}
        assert t.read() is None
        assert t.to_index(i)                    # rewind: True when the index exists
        assert [m for m in t] == [{"foo": ["bar", {"baz": 0}]}, {"another": "thing"}]


def test_tape_open_is_queue(tmp_path: Path) -> None:
    with tape.open(tmp_path / "q") as q:
        assert isinstance(q, tape.Queue)
