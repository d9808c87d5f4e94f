"""A worker process of the consumer-group tests: `python group_worker.py MODE QUEUE GROUP OUT [THREADS]`.

Modes:
  work   claim and ack until nothing comes for 0.5 s; each consumer thread
         appends to OUT, for every claim, the record ("c", index, when) and
         after every ack that returned ("a", index, when), when being
         time.monotonic_ns() (one clock for every process): 17 bytes written in
         one call, so a worker killed at any point leaves whole records.
  hold   claim every entry there is, write "held N\\n" to OUT, then sleep
         (to be killed holding its claims).
  storm  as work, but never stops (the supervisor kills it).
GROUP_WORKER_IDLE (environment): work's idle time, seconds (0.5).
"""

from __future__ import annotations

import os
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tape

REC = struct.Struct("<cqq")


def work(q: tape.Queue, group: str, fd: int, idle: float | None) -> None:
    with q.group(group).consumer(f"pid{os.getpid()}") as c:
        last = time.monotonic()
        while True:
            m = c.claim(timeout=0.05)
            if m is None:
                if idle is not None and time.monotonic() - last > idle:
                    return
                continue
            last = time.monotonic()
            os.write(fd, REC.pack(b"c", m.index, time.monotonic_ns()))
            m.ack()
            os.write(fd, REC.pack(b"a", m.index, time.monotonic_ns()))


def main() -> None:
    mode, path, group, out = sys.argv[1:5]
    threads = int(sys.argv[5]) if len(sys.argv) > 5 else 1
    with tape.Queue(path) as q:
        if mode == "hold":
            c = q.group(group).consumer("holder")
            held = c.claim_many(1_000_000)
            with open(out, "w") as f:
                f.write(f"held {len(held)}\n")
            time.sleep(3600)
            return
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        idle = None if mode == "storm" else float(os.environ.get("GROUP_WORKER_IDLE", "0.5"))
        workers = [threading.Thread(target=work, args=(q, group, fd, idle)) for _ in range(threads)]
        for t in workers:
            t.start()
        for t in workers:
            t.join()


if __name__ == "__main__":
    main()
