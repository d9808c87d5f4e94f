"""A fuzz campaign against damaged queue files: the reader and the writer's recovery.

    python tests/fuzz_damage.py MUTATIONS [SEED [FAILURES_FILE]]    (make fuzz: 10,000)

FAILURES_FILE, if given, receives every failing mutation, one a line. With
FUZZ_SYNCED=1 in the environment the queue is synced before the damage.

A test_secondly raw queue of two cycles (150 entries each, the first sealed by
the roll) is damaged by one seeded, random mutation at a time, aimed where a
power loss, a bad disk or an attacker hurts most: the hints of tape.meta's
page 1 (the writer's cycle, offset and seq, the newest timestamp, the cycle
range, the generation), the index slots of a cycle file, entry headers, and
the file's end (cut short, extended, garbage or an end-of-file marker after the
data). For each, a reader process (crash_support.Inspector) opens the queue,
reads it forward and backward, verifies it, writes one entry and reads the
queue forward from the start again; then the damage is undone.

Counted, each of which must stay 0: signals (the reader process died), hangs
(no answer in 30 s), wrong values (a value read that was not the one written
at that index), gaps (forward reading returned something other than a
prefix of the log), reused indexes (a write returned an index of an entry
already written) and unreachable writes (a write returned an index that a
reader going forward from the start does not reach). A write may be refused:
that is a CorruptionError, counted but not a failure.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import select
import struct
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import crash_support as cs

ENTRIES_PER_CYCLE = 150
CYCLE_SEQS = (1 << 12) - 1  # test_secondly: the seq bits of an index
ANSWER_TIMEOUT = 30.0
FAILURES = ("signal", "hang", "wrong", "gap", "reused", "unreachable")

# tape.meta page 1: the writer's hints and the cycle range (docs/FORMAT.md).
META_FIELDS = {
    "generation": 4104,
    "hint cycle": 4112,
    "hint offset": 4120,
    "hint seq": 4128,
    "newest timestamp": 4136,
    "lowest cycle": 4160,
    "highest cycle": 4168,
    "modcount": 4176,
    "checked cycle": 4184,
    "checked offset": 4192,
    "checked seq": 4200,
    "checked check word": 4208,
}
INDEX2INDEX_AT = 40  # cycle file header: offset of the index2index array


# ---- mutations ------------------------------------------------------------------------------

Op = tuple[Any, ...]


def _word64(rng: random.Random, old: int) -> int:
    """A damaging value for an 8-byte field that held `old`."""
    return rng.choice([
        0, (1 << 64) - 1, 1 << 62, (1 << 63) - 1, rng.getrandbits(64),
        (old + rng.randint(-300, 300)) % (1 << 64), old ^ (1 << rng.randrange(64)),
        4_102_444_800 * 10**9,  # 2100-01-01: a timestamp far ahead
    ])


def _word32(rng: random.Random, old: int) -> int:
    """A damaging value for a 4-byte header word that held `old`."""
    return rng.choice([
        0, cs.H_EOF, rng.getrandbits(32), old ^ (1 << rng.randrange(32)),
        (old + rng.choice([-8, -1, 1, 8, 4096])) % (1 << 32), 0x3FFFFFF0,
    ])


def _meta_hint(q: cs.Built, rng: random.Random) -> tuple[str, list[Op]]:
    name, at = rng.choice(sorted(META_FIELDS.items()))
    meta = (q.path / "tape.meta").read_bytes()
    (old,) = struct.unpack_from("<Q", meta, at)
    value = _word64(rng, old)
    return f"meta {name} = {value:#x}", [("patch", "tape.meta", at, struct.pack("<Q", value).hex())]


def _index_slot(q: cs.Built, rng: random.Random) -> tuple[str, list[Op]]:
    k = rng.choice([-1, -1, -1, 0])  # mostly the newest cycle
    data = q.data[k]
    (i2i,) = struct.unpack_from("<Q", data, INDEX2INDEX_AT)
    first_entry = q.layouts[k].entries[0].offset
    # A word of the index area: the index2index array and the index arrays after it,
    # mostly where slots are filled or would be filled next.
    at = rng.choice([i2i + 8 * rng.randrange(8), rng.randrange(i2i, first_entry - 8, 8)])
    (old,) = struct.unpack_from("<Q", data, at)
    if rng.random() < 0.3:  # a slot pointing at another entry, or just past the end of data
        target = rng.choice(q.layouts[k].entries + [cs.Loc(q.layouts[k].end, 0, 0)])
        value = target.offset
    else:
        value = _word64(rng, old)
    return f"cycle {k} index word at {at} = {value:#x}", [("patch", q.names[k], at, struct.pack("<Q", value).hex())]


def _entry_header(q: cs.Built, rng: random.Random) -> tuple[str, list[Op]]:
    k = rng.choice([-1, -1, -1, 0])
    entries = q.layouts[k].entries
    e = entries[-rng.randint(1, min(40, len(entries)))] if rng.random() < 0.8 else rng.choice(entries)
    value = _word32(rng, e.header)
    return f"cycle {k} header at {e.offset} = {value:#x}", [("patch", q.names[k], e.offset, struct.pack("<I", value).hex())]


def _file_end(q: cs.Built, rng: random.Random) -> tuple[str, list[Op]]:
    k = -1 if rng.random() < 0.85 else 0
    lay, name, size = q.layouts[k], q.names[k], len(q.data[k])
    kind = rng.randrange(5)
    if kind == 0:  # cut short near the end of data
        cut = rng.randint(max(lay.end - 4000, lay.entries[0].offset), lay.end + 8)
        return f"cycle {k} cut at {cut}", [("truncate", name, cut)]
    if kind == 1:  # cut inside the index or the header
        cut = rng.randrange(0, lay.entries[0].offset)
        return f"cycle {k} cut at {cut}", [("truncate", name, cut)]
    if kind == 2:  # garbage after the end of data
        length = rng.choice([4, 8, 16, 64, 4096])
        at = lay.end + rng.choice([0, 0, 8, 64, 4096])
        return f"cycle {k} {length} garbage bytes at {at}", [("patch", name, at, rng.randbytes(length).hex())]
    if kind == 3:  # an end-of-file marker at or before the end of data
        at = rng.choice([lay.end] + [e.offset for e in lay.entries[-20:]])
        return f"cycle {k} end-of-file marker at {at}", [("patch", name, at, struct.pack("<I", cs.H_EOF).hex())]
    at = rng.randrange(lay.end, max(lay.end + 1, size - 8)) & ~7  # a stray word far past the end
    return f"cycle {k} stray word at {at}", [("patch", name, at, rng.randbytes(8).hex())]


AIMS: dict[str, Callable[[cs.Built, random.Random], tuple[str, list[Op]]]] = {
    "meta hints": _meta_hint,
    "index slots": _index_slot,
    "entry headers": _entry_header,
    "file ends": _file_end,
}


def mutations(q: cs.Built, n: int, seed: int) -> Iterator[tuple[str, str, list[Op]]]:
    """`n` mutations (aim, label, ops), the aims taken in turn."""
    rng = random.Random(seed)
    aims = sorted(AIMS)
    for k in range(n):
        aim = aims[k % len(aims)]
        label, ops = AIMS[aim](q, rng)
        # Sometimes two at once: a hint that agrees with damage elsewhere is the hard case.
        if rng.random() < 0.15:
            other, more = AIMS[rng.choice(aims)](q, rng)
            label, ops = f"{label}; {other}", ops + more
        yield aim, label, ops


# ---- judging ----------------------------------------------------------------------------------


@dataclass
class Tally:
    """What a campaign found: counts by outcome and by aim, and the first examples of each failure."""

    by_outcome: Counter[str] = field(default_factory=Counter)
    by_aim: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    every: list[str] = field(default_factory=list)

    def failed(self, kind: str, aim: str, label: str, detail: str = "") -> None:
        self.by_outcome[kind] += 1
        self.every.append(f"{kind}\t[{aim}] {label} {detail}".strip())
        self.examples.setdefault(kind, [])
        if len(self.examples[kind]) < 5:
            self.examples[kind].append(f"[{aim}] {label} {detail}".strip())

    @property
    def failures(self) -> int:
        return sum(self.by_outcome[k] for k in FAILURES)


def judge(q: cs.Built, aim: str, label: str, ans: dict[str, Any], tally: Tally) -> None:
    """Count what one answer of the reader shows."""
    if ans.get("wrong"):
        tally.failed("wrong", aim, label, str(ans["wrong"][:3]))
    forward = ans.get("forward", [])
    if forward != q.indexes[: len(forward)]:
        tally.failed("gap", aim, label, f"forward read {len(forward)} entries, not a prefix")
    if "appended" in ans:
        tally.by_outcome["written"] += 1
        if ans["appended"] in set(q.indexes):
            tally.failed("reused", aim, label, f"index {ans['appended']}")
        elif not ans.get("appended_reached"):
            reachable = ans.get("appended_reached_in_cycle") or ans.get("appended_read") == b"after".hex()
            if reachable and forward[-1:] < [ans["appended"] & ~CYCLE_SEQS] and ans.get("forward_error"):
                # Forward reading stopped at damage in an older cycle, before every entry of the
                # newest one; reading that cycle from its start (or moving to the write's index)
                # reaches the write.
                tally.by_outcome["behind damage in an older cycle"] += 1
            else:
                tally.failed("unreachable", aim, label, f"index {ans['appended']}")
    elif "append_error" in ans:
        tally.by_outcome["refused"] += 1
    if "open_error" in ans:
        tally.by_outcome["open refused"] += 1
    verify = ans.get("verify", {})
    if verify.get("ok") is False:
        tally.by_outcome["reported by verify"] += 1


def _answer(insp: cs.Inspector) -> dict[str, Any] | None:
    """The next answer, or None when none comes within ANSWER_TIMEOUT (a hang)."""
    assert insp.proc.stdout is not None
    ready, _, _ = select.select([insp.proc.stdout], [], [], ANSWER_TIMEOUT)
    if not ready:
        return None
    return insp.receive()[1]


def campaign(root: Path, n: int, seed: int, synced: bool = False) -> tuple[Tally, float]:
    """Run `n` mutations under `root`; the tally and the seconds it took.

    `synced`: the queue is synced before it is damaged, so tape.meta's checked point
    stands at its end, and writers check only what follows it (docs/FORMAT.md).
    """
    q = cs.build_two_cycles(root, ENTRIES_PER_CYCLE)
    if synced:
        import tape

        with tape.Queue(q.path, clock=lambda: cs.T0_NS + cs.SECOND) as queue:
            queue.appender().sync()
        q = dataclasses.replace(q, meta=(q.path / "tape.meta").read_bytes())
    tally = Tally()
    clock_ns = cs.T0_NS + cs.SECOND + cs.SECOND // 2  # still in the newest cycle
    insp = cs.Inspector()
    start = time.monotonic()
    try:
        for aim, label, ops in mutations(q, n, seed):
            tally.by_aim[aim] += 1
            snapshots: list[Op] = [("snapshot", name) for name in q.names]  # the write is undone too
            insp.send({"dir": str(q.path), "ops": snapshots + ops, "expect": str(q.expect_file), "append": True,
                       "clock_ns": clock_ns})
            try:
                ans = _answer(insp)
            except AssertionError as exc:  # the reader died
                tally.failed("signal", aim, label, str(exc).split(" on ")[0])
                _restore(q)
                insp = cs.Inspector()
                continue
            if ans is None:
                tally.failed("hang", aim, label)
                insp.proc.kill()
                insp.proc.wait()
                _restore(q)
                insp = cs.Inspector()
                continue
            judge(q, aim, label, ans, tally)
    finally:
        insp.close()
    return tally, time.monotonic() - start


def _restore(q: cs.Built) -> None:
    """Put the pristine files back after a reader died before undoing its damage."""
    for name, data in [*zip(q.names, q.data), ("tape.meta", q.meta)]:
        (q.path / name).write_bytes(data)
    for extra in set(p.name for p in q.path.iterdir()) - set(q.names) - {"tape.meta"}:
        (q.path / extra).unlink()


def main() -> None:
    import tempfile

    n = int(sys.argv[1])
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    with tempfile.TemporaryDirectory() as root:
        tally, took = campaign(Path(root), n, seed, synced=os.environ.get("FUZZ_SYNCED") == "1")
    if len(sys.argv) > 3:
        Path(sys.argv[3]).write_text("".join(line + "\n" for line in tally.every))
    print(json.dumps({
        "mutations": n, "seed": seed, "seconds": round(took, 1),
        "aims": dict(tally.by_aim), "outcomes": dict(tally.by_outcome), "examples": tally.examples,
    }, indent=2))
    sys.exit(1 if tally.failures else 0)


if __name__ == "__main__":
    main()
