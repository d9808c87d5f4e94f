"""A worker process of the durable-object tests: `python objects_worker.py MODE STORE ARG OUT`.

Modes:
  increment  call ObjCounter(ARG... "id:n").increment() n times; after each call
             returns, append its result to OUT as 8 bytes (one write: a worker
             killed at any point leaves whole records).
  alarms     open the store with alarms=True and run until the file OUT.stop
             exists; each AlarmLog alarm that fires appends "<id> <name>\\n"
             to OUT (in on_alarm, one write).
  schedule   schedule AlarmLog alarm "a" on object ARG, due in 0.2 s, with
             alarms=False, and exit (the restart test).
"""

from __future__ import annotations

import os
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tape

REC = struct.Struct("<q")
LOG: list[str] = []  # alarms mode: the output file


class ObjCounter(tape.DurableObject):
    count: int = 0

    def increment(self, amount: int = 1) -> int:
        self.count += amount
        return self.count


class AlarmLog(tape.DurableObject):
    fired: int = 0

    def on_alarm(self, name: str) -> None:
        self.fired += 1
        fd = os.open(LOG[0], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, f"{os.getpid()} {name}\n".encode())
        finally:
            os.close(fd)


def main() -> None:
    mode, store, arg, out = sys.argv[1:5]
    if mode == "increment":
        oid, n = arg.split(":")
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        with tape.Objects(store, alarms=False) as objects:
            c = objects.get(ObjCounter, oid)
            for _ in range(int(n)):
                os.write(fd, REC.pack(c.increment()))
    elif mode == "alarms":
        LOG.append(out)
        with tape.Objects(store, alarms=True):
            while not os.path.exists(out + ".stop"):
                time.sleep(0.02)
    elif mode == "schedule":
        with tape.Objects(store, alarms=False) as objects:
            objects.get(AlarmLog, arg).schedule_alarm("a", delay=0.2)


if __name__ == "__main__":
    main()
