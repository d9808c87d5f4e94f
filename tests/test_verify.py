"""Queue.verify: a sound queue passes; damage is found and placed; salvage counts past it."""

from __future__ import annotations

from pathlib import Path

import pytest

import tape


def _cycle_file(q: tape.Queue) -> Path:
    (c,) = q.cycles()
    return Path(c.path)


def test_a_sound_queue_verifies(raw_queue: tape.Queue) -> None:
    raw_queue.appender().write_many([b"x" * 50] * 1000)
    r = raw_queue.verify()
    assert r.ok and r.problems == 0
    assert r.entries == 1000 and r.cycles == 1
    assert r.last_good_index == raw_queue.last_index
    assert r.bad_cycle is None and r.message == ""


def test_a_flipped_byte_is_found_and_salvage_counts_past_it(qpath: Path) -> None:
    with tape.Queue(qpath, codec="raw", roll_cycle="test_secondly", clock=lambda: 1_763_683_200 * 10**9) as q:
        idx = [q.appender().write(bytes([i]) * 40) for i in range(200)]
        path = _cycle_file(q)
    data = bytearray(path.read_bytes())
    at = data.find(bytes([101]) * 40)
    data[at + 5] ^= 0xFF
    path.write_bytes(bytes(data))
    with tape.Queue(qpath) as q:
        r = q.verify()
        assert not r.ok and r.problems == 1
        assert r.last_good_index == idx[100]
        assert "checksum" in r.message
        s = q.verify(salvage=True)
        assert s.entries == 200 - s.skipped and s.skipped >= 1
        t = q.tailer()
        assert [t.read() for _ in range(101)][-1] == bytes([100]) * 40
        try:
            t.read()
        except tape.CorruptionError:
            pass
        else:
            raise AssertionError("a damaged entry was read as data")


def test_a_damaged_queue_is_still_described(raw_queue: tape.Queue) -> None:
    raw_queue.appender().write_many([bytes([i]) * 50 for i in range(100)])
    path = _cycle_file(raw_queue)
    data = bytearray(path.read_bytes())
    data[data.find(bytes([97]) * 50) + 3] ^= 1
    path.write_bytes(bytes(data))
    (c,) = raw_queue.cycles()
    assert c.damaged and c.entries == 100
    assert raw_queue.count() == 100
    assert raw_queue.describe()["cycles"][0]["damaged"] is True
    assert not raw_queue.verify().ok


def test_repair_clears_a_torn_tail_so_writers_append_again(raw_queue: tape.Queue, qpath: Path) -> None:
    raw_queue.appender().write_many([bytes([i]) * 50 for i in range(100)])
    path = _cycle_file(raw_queue)
    raw_queue.close()
    data = bytearray(path.read_bytes())
    at = data.find(bytes([99]) * 50)
    data[at : at + 50] = bytes(50)  # the last payload never reached the disk
    path.write_bytes(bytes(data))
    with tape.Queue(qpath) as q:
        a = q.appender()
        try:
            a.write(b"x")
        except tape.CorruptionError:
            pass
        else:
            raise AssertionError("an append after a torn entry was acknowledged")
        assert q.repair() > 0
        a.write(b"after")
        assert q.verify().ok
        values = list(q.tailer())
        assert values[:99] == [bytes([i]) * 50 for i in range(99)] and values[99:] == [b"after"]
        assert q.repair() == 0


def test_progress_is_told_the_bytes_checked_up_to_those_of_every_cycle(raw_queue: tape.Queue) -> None:
    raw_queue.appender().write_many([b"x" * 1000] * 40_000)  # 40 MB: reports within the file too
    told: list[int] = []
    assert raw_queue.verify(progress=told.append).ok
    assert len(told) >= 3 and told == sorted(told)
    assert told[-1] == sum(c.bytes for c in raw_queue.cycles())


def test_an_exception_in_progress_stops_verify_and_is_raised(raw_queue: tape.Queue) -> None:
    raw_queue.appender().write(b"x")

    def stop(walked: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        raw_queue.verify(progress=stop)
    assert raw_queue.verify().ok
