"""diskcache's Deque: a deque kept in a SQLite-backed Cache (values of 32 KiB and more in files of their own)."""

from __future__ import annotations

import time
from itertools import repeat
from pathlib import Path
from typing import Any

from diskcache import Deque

from bench.peers import Subject


class DiskcacheDeque(Subject):
    """append / extend / popleft / iteration (which reads without removing)."""

    key = "diskcache"
    name = "diskcache Deque"
    kind = "peer"
    sqlite = True
    package = "diskcache"
    how = "append / extend / popleft / for v in deque"

    def open(self, path: Path) -> None:
        self.q = Deque(directory=str(path))
        self.write = self.q.append
        popleft = self.q.popleft

        def read() -> Any:
            try:
                return popleft()
            except IndexError:
                return None

        self.read = read

    def write_many(self, values: list[Any]) -> None:
        self.q.extend(values)

    def read_all(self, deadline: float) -> int:
        it, n, clock = iter(self.q), 0, time.perf_counter
        while True:
            for _ in repeat(None, 256):
                if next(it, None) is None:
                    return n
                n += 1
            if clock() >= deadline:
                return n

    def close(self) -> None:
        self.q.cache.close()


SUBJECTS: tuple[type[Subject], ...] = (DiskcacheDeque,)
