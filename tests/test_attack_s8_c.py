"""Attack, session 8 (c): replication frames crafted by hand, read_view's View, a cycle file truncated and grown again."""

from __future__ import annotations

import gc
import os
import pickle
import random
import signal
import struct
import subprocess
import sys
import time
import zlib
from array import array
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("nats")

import tape
from tape.replicate import frame
from tape.replicate import Replicator
from tape.replicate.ingester import Ingester

NOWHERE = "nats://127.0.0.1:1"  # an Ingester connects only in run(); _apply is what run() calls per message


def crafted(identity: bytes, indexes: list[int], timestamps: list[int], payloads: list[bytes],
            attrs: bytes = b"", attributed: int = 0, prev: int = -1) -> bytes:
    """A frame built field by field, its CRC right: what a hostile or buggy writer of the stream could send."""
    body = b"".join([identity, bytes(-len(identity) % 8), array("q", indexes).tobytes(), array("q", timestamps).tobytes(),
                     array("I", map(len, payloads)).tobytes(), attrs, *payloads])
    fields = frame._HEADER.pack(b"TPF1", 1, 0, len(identity), len(indexes), attributed, prev, indexes[0], indexes[-1],
                                timestamps[0], timestamps[-1], 0, 0)[:56]
    return fields + struct.pack("<II", len(body), zlib.crc32(body, zlib.crc32(fields))) + body


def identity_of(tmp_path: Path) -> bytes:
    with tape.Queue(tmp_path / "src") as q:
        return frame.Identity.of(q).to_json()


def entries(path: Path) -> list[bytes]:
    with tape.Queue(path, raw=True, create=False) as q:
        t = q.tailer()
        return list(iter(t.read, None))


# -- frames -------------------------------------------------------------------------------


def test_a_frame_whose_identity_nests_deeply_is_damage(tmp_path: Path) -> None:
    deep = b"[" * 30000 + b"]" * 30000
    with pytest.raises(tape.CorruptionError):
        frame.unpack(crafted(deep, [0], [1], [b"x"]))


def test_a_frame_with_a_negative_timestamp_is_damage(tmp_path: Path) -> None:
    data = crafted(identity_of(tmp_path), [0, 1], [5, -5], [b"a", b"b"])
    with Ingester(NOWHERE, stream="S", path=tmp_path / "dst") as i, pytest.raises(tape.CorruptionError):
        i._apply(data, 1)


def test_a_frame_with_a_negative_not_before_is_damage(tmp_path: Path) -> None:
    attr = frame._ATTR.pack(0, -7, frame.KEY_STR, 0, 1) + b"k"
    data = crafted(identity_of(tmp_path), [0], [5], [b"a"], attr, 1)
    with Ingester(NOWHERE, stream="S", path=tmp_path / "dst") as i, pytest.raises(tape.CorruptionError):
        i._apply(data, 1)


def test_a_frame_with_a_key_too_long_is_damage(tmp_path: Path) -> None:
    attr = frame._ATTR.pack(1, 0, frame.KEY_BYTES, 0, 2000) + b"k" * 2000
    data = crafted(identity_of(tmp_path), [0, 1, 2], [5, 6, 7], [b"a", b"b", b"c"], attr, 1)
    with Ingester(NOWHERE, stream="S", path=tmp_path / "dst") as i, pytest.raises(tape.CorruptionError):
        i._apply(data, 1)


def test_a_refused_frame_writes_nothing_of_it(tmp_path: Path) -> None:
    attr = frame._ATTR.pack(2, -7, frame.KEY_STR, 0, 1) + b"k"  # the last entry's not_before is wrong
    data = crafted(identity_of(tmp_path), [0, 1, 2], [5, 6, 7], [b"a", b"b", b"c"], attr, 1)
    with Ingester(NOWHERE, stream="S", path=tmp_path / "dst") as i:
        with pytest.raises(tape.TapeError):
            i._apply(data, 1)
        assert i.ingested == 0
    assert not (tmp_path / "dst").exists() or entries(tmp_path / "dst") == []


def test_crafted_frames_that_do_not_add_up_are_damage(tmp_path: Path) -> None:
    ident = identity_of(tmp_path)
    good = crafted(ident, [0, 1], [5, 6], [b"a", b"bc"])
    assert frame.decode(good).payloads == [b"a", b"bc"]
    bad = [
        crafted(ident, [1, 0], [5, 6], [b"a", b"b"]),  # indexes not ascending
        crafted(ident, [0, 0], [5, 6], [b"a", b"b"]),  # an index twice
        crafted(ident, [3], [5], [b"a"], prev=3),  # previous not before the first
        crafted(ident, [-4], [5], [b"a"], prev=-5),  # negative indexes
        crafted(ident, [0], [5], [b"a"], frame._ATTR.pack(1, 0, 1, 0, 1) + b"k", 1),  # attribute past the count
        crafted(ident, [0], [5], [b"a"], frame._ATTR.pack(0, 0, 0, 1, 0), 1),  # a tombstone without a key
        crafted(ident, [0], [5], [b"a"], frame._ATTR.pack(0, 0, 3, 0, 0), 1),  # unknown key kind
        crafted(ident, [0], [5], [b"a"], b"", 0xFFFFFFFF),  # a huge attributed count
    ]
    lengths = bytearray(good)  # the lengths column says more than the payloads hold: fix the CRC after
    struct.pack_into("<I", lengths, 64 + len(ident) + (-len(ident) % 8) + 32, 0xFFFFFFFF)
    lengths[60:64] = struct.pack("<I", zlib.crc32(bytes(lengths[64:]), zlib.crc32(bytes(lengths[:56]))))
    bad.append(bytes(lengths))
    huge = bytearray(good)  # a count that does not fit
    struct.pack_into("<I", huge, 8, 0x7FFFFFFF)
    huge[60:64] = struct.pack("<I", zlib.crc32(bytes(huge[64:]), zlib.crc32(bytes(huge[:56]))))
    bad.append(bytes(huge))
    for data in bad:
        with pytest.raises(tape.CorruptionError):
            frame.unpack(data)


def test_the_column_checks_refuse_columns_of_broken_values() -> None:
    from tape._native.tailer import ascending, smallest, sums
    with pytest.raises(ValueError):
        ascending(b"\x00" * 7, -1)
    with pytest.raises(ValueError):
        smallest(b"")
    with pytest.raises(ValueError):
        sums(b"\x00" * 5)
    assert ascending(array("q"), 5) is True
    assert smallest(array("q", [3, -(1 << 63), 2])) == -(1 << 63)
    assert array("Q", sums(array("I", [0xFFFFFFFF] * 3))).tolist() == [0xFFFFFFFF * k for k in (1, 2, 3)]
    assert ascending(memoryview(b"\x00" + array("q", [1, 2]).tobytes())[1:], 0) is True  # misaligned


# -- read_view's View -----------------------------------------------------------------------


def test_views_outlive_their_tailer_and_queue_and_cannot_be_written_or_pickled(tmp_path: Path) -> None:
    q = tape.Queue(tmp_path / "q", raw=True)
    a = q.appender()
    a.write_encoded_many([(b"%08d" % k, None, None, None, False) for k in range(2000)])
    t = q.tailer()
    views = [t.read_view() for _ in range(2000)]
    t.close()
    q.close()
    assert [bytes(v) for v in views[::500] if v is not None] == [b"%08d" % k for k in range(0, 2000, 500)]
    v = views[7]
    assert v is not None and v.readonly
    with pytest.raises(TypeError):
        v[0] = 1
    with pytest.raises(TypeError):
        pickle.dumps(v.obj)
    assert v.cast("B")[0:8].tobytes() == b"00000007"
    pid = os.fork()
    if pid == 0:
        os._exit(0 if bytes(v) == b"00000007" else 1)
    assert os.waitpid(pid, 0)[1] == 0
    del views, v
    gc.collect()


# -- a cycle file truncated and grown again -------------------------------------------------


def _cut_and_regrow(path: Path) -> None:
    """100 entries written and the queue closed; then its cycle file cut to 4 KiB and grown back to its size."""
    with tape.Queue(path) as q:
        a = q.appender()
        for k in range(100):
            a.write(b"e%d" % k)
    cycle = next(f for f in path.iterdir() if f.name != "tape.meta")
    size = cycle.stat().st_size
    os.truncate(cycle, 4096)
    os.truncate(cycle, size)


@pytest.mark.xfail(strict=True, reason="verify.c: a cycle file cut to 4 KiB and grown back to its size (its 100 "
                                       "entries zeros) verifies ok with 0 entries: the loss is not reported")
def test_verify_reports_entries_truncated_away_and_grown_again(tmp_path: Path) -> None:
    _cut_and_regrow(tmp_path / "q")
    with tape.Queue(tmp_path / "q", create=False) as q:
        assert not q.verify().ok


@pytest.mark.xfail(strict=True, reason="append.c: a writer opened on a cycle file cut to 4 KiB and grown back "
                                       "appends at the cycle's first index again (an index used before); at 8 KiB "
                                       "it refuses (CorruptionError)")
def test_a_writer_refuses_a_cycle_truncated_away_and_grown_again(tmp_path: Path) -> None:
    _cut_and_regrow(tmp_path / "q")
    with tape.Queue(tmp_path / "q", create=False) as q, pytest.raises(tape.CorruptionError):
        q.appender().write(b"new")


WRITER = """
import sys, tape
q = tape.Queue(sys.argv[1], codec="raw")
a = q.appender()
n = 0
try:
    while n < 2_000_000:
        a.write(b"%08d" % n + b"w" * 200)
        n += 1
        if n == 20_000:
            print("started", flush=True)
    print("never refused", flush=True)
except tape.CorruptionError:
    print("refused", flush=True)
"""


@pytest.mark.parametrize("regrow", [False, True])
def test_a_cycle_cut_under_a_live_writer_in_another_process_is_reported(tmp_path: Path, regrow: bool) -> None:
    path = tmp_path / "q"
    tape.Queue(path, codec="raw").close()
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "started\n"
    cycle = next(f for f in path.iterdir() if f.name != "tape.meta")
    size = cycle.stat().st_size
    os.truncate(cycle, 3 * 8192)  # entries the writer was acknowledged for are gone
    if regrow:
        os.truncate(cycle, size)
    out, _ = proc.communicate(timeout=60)
    assert (proc.returncode, out) == (0, "refused\n")  # no SIGBUS, no write past the loss
    with tape.Queue(path, codec="raw", create=False) as q:
        assert not q.verify().ok


def test_two_writers_in_other_processes_rolling_and_a_purge_never_trip_the_cut_check(tmp_path: Path) -> None:
    path = tmp_path / "q"
    tape.Queue(path, codec="raw", roll_cycle="test_secondly").close()
    code = """
import sys, time, tape
q = tape.Queue(sys.argv[1], codec="raw", roll_cycle="test_secondly")
a = q.appender()
end = time.monotonic() + 2.5
n = 0
while time.monotonic() < end:  # under the cycle's 4,096 entries a second
    a.write(b"w" * ((n * 7919) % 100_000))
    n += 1
    if n % 100 == 0:
        time.sleep(0.08)
print("ok", flush=True)
"""
    procs = [subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    with tape.Queue(path, codec="raw", roll_cycle="test_secondly") as q:
        while any(p.poll() is None for p in procs):
            q.purge(keep_cycles=1)
            time.sleep(0.05)
        assert [p.communicate()[0] for p in procs] == ["ok\n", "ok\n"]
        assert q.verify().ok


# -- the ingester's local queue ---------------------------------------------------------------


def test_a_local_queue_of_another_schema_is_refused_saying_so(tmp_path: Path) -> None:
    pytest.importorskip("fastavro")
    theirs = {"type": "record", "name": "R", "fields": [{"name": "b", "type": "string"}]}
    ours = {"type": "record", "name": "R", "fields": [{"name": "a", "type": "int"}]}
    with tape.Queue(tmp_path / "src", codec="avro", schema=theirs) as q:
        q.appender().write({"b": "hi"})
        identity = frame.Identity.of(q).to_json()
    with tape.Queue(tmp_path / "src", raw=True) as q:
        e = next(iter(q.tailer().entries()))
    tape.Queue(tmp_path / "dst", codec="avro", schema=ours).close()
    data = frame.encode(identity, None, [e.index], [e.timestamp], [e.value], [None], [None])
    with Ingester(NOWHERE, stream="S", path=tmp_path / "dst") as i, \
            pytest.raises(tape.IncompatibleQueueError, match="schema|param"):
        i._apply(data, 1)


def test_a_frame_whose_codec_takes_no_params_leaves_no_queue_behind(tmp_path: Path) -> None:
    ident = b'{"created":"2026-01-01T00:00:00+00:00","roll_cycle":"daily","codec":"raw","params":"enp6"}'
    with Ingester(NOWHERE, stream="S", path=tmp_path / "dst") as i, pytest.raises(tape.TapeError):
        i._apply(crafted(ident, [0], [1], [b"x"]), 1)
    assert not (tmp_path / "dst").exists()


# -- kill -9 of an ingester writing large frames of keyless runs and keyed entries -----------------


def mixed_frames(src: Path, url: str) -> None:
    """300,000 entries, each thousandth with a key, shipped to stream S in frames of about 800 KB."""
    with tape.Queue(src, codec="raw") as q:
        a = q.appender()
        for k in range(0, 300_000, 1000):
            a.write_many([b"%07d" % n + b"p" * 50 for n in range(k, k + 999)])
            a.write(b"%07d" % (k + 999), key="k%d" % (k % 7))
    with Replicator(src, url, stream="S", frame_bytes=500_000) as r:
        r.run()


def test_an_ingester_killed_amid_large_mixed_frames_appends_each_entry_once(tmp_path: Path, nats_server: Any) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    mixed_frames(src, nats_server.url)
    rng = random.Random(5)
    for _ in range(4):
        proc = subprocess.Popen([sys.executable, "-m", "tape", "ingest", nats_server.url, "--stream", "S", str(dst)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.4, 0.6))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with Ingester(nats_server.url, stream="S", path=dst) as i:
        while i.run():  # (one run() may stop short: see the test below)
            pass
    with tape.Queue(src, raw=True) as q:
        want = [(e.index, e.value, e.key) for e in q.tailer().entries()]
    with tape.Queue(dst, raw=True) as q:
        got = [(e.origin[0], e.value, e.key) for e in q.tailer().entries() if e.origin is not None]
    assert got == want


def test_frames_of_many_small_entries_stay_within_frame_bytes(tmp_path: Path, nats_server: Any) -> None:
    src = tmp_path / "src"
    with tape.Queue(src, codec="raw") as q:
        q.appender().write_many([b"%07d" % n + b"p" * 50 for n in range(40_000)])
    with Replicator(src, nats_server.url, stream="S", frame_bytes=900_000) as r:
        assert r.run() == 40_000


def test_one_run_ingests_the_whole_stream(tmp_path: Path, nats_server: Any) -> None:
    mixed_frames(tmp_path / "src", nats_server.url)
    with Ingester(nats_server.url, stream="S", path=tmp_path / "dst") as i:
        assert i.run() == 300_000
