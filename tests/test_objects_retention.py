"""Objects with retention=: compaction keeps every live object's record and every pending alarm."""

from __future__ import annotations

from pathlib import Path

import tape
from tape.objects import ALARMS_DIR, LATER_DIR, STATE_DIR
from tape.testing import ManualClock, fire_due_alarms

T0 = 1_763_683_200 * 10**9
N = 300
HOT = range(2, 7)
ROUNDS = 80  # of a second each: a cycle file each (test_secondly)


class Meter(tape.DurableObject):
    count: int = 0
    rang: int = 0

    def increment(self) -> int:
        self.count += 1
        return self.count

    def on_alarm(self, name: str) -> None:
        self.rang += 1


def cycle_files(path: Path) -> int:
    return len(list(path.glob("*.tape")))


def test_retention_keeps_every_object_and_alarm_and_bounds_the_disk(tmp_path: Path) -> None:
    clock = ManualClock(T0)
    options = {"roll_cycle": "test_secondly", "clock": clock, "alarms": False}
    most = {d: 0 for d in (STATE_DIR, ALARMS_DIR, LATER_DIR)}
    with tape.Objects(tmp_path, retention={"keep_cycles": 2}, **options) as objects:  # type: ignore[arg-type]
        refs = [objects.get(Meter, f"m{i}") for i in range(N)]
        for i, ref in enumerate(refs):
            ref.increment()
            if i % 10 == 0:
                ref.schedule_alarm("far", delay=3600)  # in later/ (beyond the horizon)
            elif i % 10 == 1:
                ref.schedule_alarm("near", delay=30)  # in alarms/, fires at round 30
        for r in range(1, ROUNDS + 1):
            clock.advance(1)  # each write that rolls a queue purges it
            fire_due_alarms(objects)
            for i in HOT:
                for _ in range(3):
                    refs[i].increment()
                refs[i].schedule_alarm("tick", delay=0.5)  # fires next round
                refs[i].schedule_alarm("far", delay=3600)  # replaced: later/ rolls and compacts too
            if r == 60:
                for i in range(1, N, 10):
                    refs[i].schedule_alarm("late", delay=50)  # still to come at the end
            for d in most:
                most[d] = max(most[d], cycle_files(tmp_path / d))
        ends = {d: cycle_files(tmp_path / d) for d in most}
    # keep_cycles=2, the newest, one rolling. alarms/ also keeps every cycle from the
    # oldest holding an alarm not fired yet: the "near" alarms until round 30, then
    # the "late" ones, written at round 60.
    assert most[STATE_DIR] <= 4 and most[LATER_DIR] <= 4 and ends[LATER_DIR] >= 2, most
    assert most[ALARMS_DIR] <= 34 and ends[ALARMS_DIR] <= 24, (most, ends)
    with tape.Objects(tmp_path, **options) as objects:  # type: ignore[arg-type]
        for i in range(N):
            ref = objects.get(Meter, f"m{i}")
            hot = i in HOT
            want = {"count": 1 + 3 * ROUNDS if hot else 1, "rang": ROUNDS - 1 if hot else 1 if i % 10 == 1 else 0}
            assert ref.state() == want, i
            names = [name for name, _ in ref.list_alarms()]
            assert names == (["far"] if i % 10 == 0 else ["late"] if i % 10 == 1 else ["tick", "far"] if hot else []), i
        clock.advance(60)
        assert fire_due_alarms(objects) == N // 10 + len(HOT)  # every late alarm and the last ticks, once
        assert fire_due_alarms(objects) == 0
        clock.advance(3600)
        assert fire_due_alarms(objects) == N // 10 + len(HOT)  # the far ones, from later/ after its compactions
        for i in range(N):
            rang = objects.get(Meter, f"m{i}").state()["rang"]
            assert rang == (ROUNDS + 1 if i in HOT else 2 if i % 10 == 1 else 1 if i % 10 == 0 else 0), i
