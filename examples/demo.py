"""The main job of tape, on an example queue in ./demo-queue (recreated each run).

Writes a million small msgpack dicts in batches, reads them back, seeks to the
middle, reads the newest three backwards, and describes the queue.
"""

import json
import shutil
import time

import tape

PATH = "demo-queue"
N = 1_000_000
BATCH = 10_000


def main() -> None:
    shutil.rmtree(PATH, ignore_errors=True)
    with tape.Queue(PATH) as q:
        appender = q.appender()
        start = time.perf_counter()
        for first in range(0, N, BATCH):
            appender.write_many({"id": k, "price": k * 0.01, "side": "buy"} for k in range(first, first + BATCH))
        elapsed = time.perf_counter() - start
        print(f"wrote {N:,} entries in {elapsed:.2f} s: {N / elapsed:,.0f} entries/s")

        tailer = q.tailer()
        start = time.perf_counter()
        count = sum(1 for _ in tailer)
        elapsed = time.perf_counter() - start
        print(f"read  {count:,} entries in {elapsed:.2f} s: {count / elapsed:,.0f} entries/s")

        first_index = q.first_index
        assert first_index is not None
        middle = first_index + N // 2
        tailer.to_index(middle)
        entry = tailer.read_entry()
        assert entry is not None
        cycle, seq = tape.split_index(q, entry.index)
        print(f"to_index({middle}) -> cycle {cycle}, seq {seq}: {entry.value}")

        tailer.direction = "backward"
        tailer.to_end()
        print("newest three, backwards:", [tailer.read()["id"] for _ in range(3)])

        print(json.dumps(q.describe(), indent=2))


if __name__ == "__main__":
    main()
