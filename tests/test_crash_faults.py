"""Fault injection from Python: failing system calls surface as typed exceptions, never as a crash or bad data.

A short workload (create a test_secondly queue, append across 3 cycles driven
by a test clock, sync after each cycle) runs in a child process with TAPE_FAULT
set: each hooked call (open, ftruncate, fallocate, mmap, fsync, rename) fails
with ENOSPC and with EIO, once and persistently, at its 1st, 2nd, ... call,
until the workload no longer reaches it. Every failure must be a TapeOSError
with the injected errno (or PoisonedError for a write after a failed sync),
the child must exit normally (no SIGBUS), and a reader process without faults
must then find a queue that verifies, holds exactly the acknowledged entries
and accepts a write. csrc/tests/test_fault.c covers the core's full matrix; this
checks the mapping to Python.
"""

from __future__ import annotations

import errno
import json
import shutil
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import crash_support as cs

CALLS = ["open", "ftruncate", "fallocate", "mmap", "fsync", "rename"]
ERRNOS = {"ENOSPC": errno.ENOSPC, "EIO": errno.EIO}
MAX_POSITION = 24  # far beyond what the workload makes of any call
CLEAN_RUNS_TO_STOP = 3  # positions in a row without an error: the workload makes no more such calls


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[cs.ForkServer, cs.Inspector]]:
    fork, inspector = cs.ForkServer(), cs.Inspector()
    yield fork, inspector
    fork.close()
    inspector.close()


def _one(servers: tuple[cs.ForkServer, cs.Inspector], path: Path, fault: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run the workload with `fault` armed, then read the queue without faults."""
    fork, inspector = servers
    shutil.rmtree(path, ignore_errors=True)
    status, out = fork.run("fault-workload", path, fault=fault)
    assert status == 0, f"{fault}: the workload process ended with {cs.killed_by(status)}:\n{out}"
    report = json.loads(out)
    if not path.exists():  # a failed creation leaves nothing behind, not even the directory
        assert not report["acked"], f"{fault}: entries acknowledged in a queue that is gone"
        path.mkdir()
    after = inspector.ask({"dir": str(path), "append": True})
    return report, after


def _check(fault: str, wanted: int, report: dict[str, Any], after: dict[str, Any]) -> None:
    """The failure is typed and carries the errno; the queue holds exactly the acknowledged entries."""
    err = report["error"]
    if err is not None:
        assert err["tape"], f"{fault}: not a TapeError: {err}"
        assert err["type"] == "TapeOSError" and err["errno"] == wanted, f"{fault}: {err}"
        if report["step"] == "sync":
            assert report["after_sync"]["type"] == "PoisonedError", f"{fault}: a write after a failed sync: {report}"
    assert "open_error" not in after, f"{fault}: the queue does not open after the fault: {after['open_error']}"
    assert after["verify"]["ok"], f"{fault}: verify after the fault: {after['verify']['message']}"
    assert after["forward"] == report["acked"], f"{fault}: the queue does not hold exactly the acknowledged entries"
    assert after.get("append_error") is None, f"{fault}: no write after the fault: {after.get('append_error')}"


def test_every_injected_fault_is_a_typed_error_and_leaves_exactly_the_acknowledged_entries(
        servers: tuple[cs.ForkServer, cs.Inspector], tmp_path: Path) -> None:
    if not cs.hooks_compiled_in():
        pytest.skip("the core is not a test build (TAPE_TESTING): fault hooks are not compiled in")
    tally: Counter[str] = Counter()
    positions: dict[str, int] = {}
    path = tmp_path / "q"
    for call in CALLS:
        for name, value in ERRNOS.items():
            for mode in ("", ":always"):
                clean = 0
                for n in range(1, MAX_POSITION + 1):
                    fault = f"{call}:{n}:{name}{mode}"
                    report, after = _one(servers, path, fault)
                    _check(fault, value, report, after)
                    failed = report["error"] is not None
                    tally["failed" if failed else "completed"] += 1
                    if failed:
                        tally[f"{call} at {report['step']}"] += 1
                        positions[call] = max(positions.get(call, 0), n)
                    clean = 0 if failed else clean + 1
                    if clean == CLEAN_RUNS_TO_STOP:
                        break
                else:
                    raise AssertionError(f"{call}: still failing at position {MAX_POSITION}")
    print(f"\nfault injection: {sum(tally[k] for k in ('failed', 'completed'))} runs, {tally['failed']} failed "
          f"cleanly; last failing position per call {positions}; {dict(tally)}", file=sys.stderr)
    assert tally["failed"] > 0
    for call in ("open", "fallocate", "mmap", "fsync", "rename"):
        assert call in positions, f"no {call} fault ever surfaced"
