"""Concurrent writers: 8 processes x 100,000 entries on one queue, followed by 2 tailer processes.

Every writer's payload holds its id and its sequence number. The queue must
end with exactly 800,000 entries, each writer's in its own order, none twice;
two tailers in two other processes, started before the writers and following
until they have read 800,000 entries, must see the identical global order
(the same SHA-256 of the sequence of indexes and payloads).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import crash_support as cs
import tape

WRITERS = 8
PER_WRITER = int(os.environ.get("TAPE_CONC_ENTRIES", "100000") or 100000)
TOTAL = WRITERS * PER_WRITER


def _run(qpath: Path) -> tuple[list[dict[str, object]], float]:
    """Start the tailers, then the writers all at once; the tailers' summaries and the writers' time."""
    tape.Queue(qpath, codec="raw").close()
    tailers = [
        cs.spawn("follow-tailer", qpath, TOTAL, WRITERS, 300, stdout=subprocess.PIPE) for _ in range(2)
    ]
    for t in tailers:
        assert t.stdout is not None
        assert t.stdout.readline().strip() == b"ready"
    writers = [
        cs.spawn("conc-writer", qpath, w, PER_WRITER, stdin=subprocess.PIPE) for w in range(WRITERS)
    ]
    time.sleep(0.3)  # let every writer open the queue and wait for the signal
    start = time.monotonic()
    for w in writers:
        assert w.stdin is not None
        w.stdin.write(b"go\n")
        w.stdin.close()
    statuses = [w.wait(timeout=600) for w in writers]
    took = time.monotonic() - start
    assert statuses == [0] * WRITERS, [cs.killed_by(s) for s in statuses]
    summaries = []
    for t in tailers:
        out, _ = t.communicate(timeout=600)
        assert t.returncode == 0, cs.killed_by(t.returncode)
        summaries.append(json.loads(out))
    return summaries, took


def test_eight_writer_processes_and_two_tailer_processes_agree_on_every_entry(qpath: Path) -> None:
    summaries, took = _run(qpath)
    print(f"{TOTAL} entries from {WRITERS} processes in {took:.2f} s ({TOTAL / took:,.0f}/s)", file=sys.stderr)
    for s in summaries:
        assert s["count"] == TOTAL
        assert s["disorder"] is None, f"a writer's entries out of order or damaged: {s['disorder']}"
        assert s["per_writer"] == [PER_WRITER] * WRITERS
    assert summaries[0]["sha256"] == summaries[1]["sha256"], "the two tailers saw different orders"
    with tape.Queue(qpath) as q:
        assert q.count() == TOTAL
        r = q.verify()
        assert r.ok and r.entries == TOTAL
