"""litequeue's LiteQueue: a SQLite table of messages (WAL, synchronous=NORMAL), each put autocommitted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from litequeue import LiteQueue

from bench.peers import Subject


class Litequeue(Subject):
    """put / puts in one transaction / pop (marks the message locked; done() not called)."""

    key = "litequeue"
    name = "litequeue"
    kind = "peer"
    sqlite = True
    package = "litequeue"
    how = "put / put in one transaction() / pop / pop"

    def open(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.q = LiteQueue(str(path / "queue.db"))
        self.write = self.q.put
        self.read = self.q.pop

    def write_many(self, values: list[Any]) -> None:
        put = self.q.put
        with self.q.transaction():
            for v in values:
                put(v)

    def payload(self, item: Any) -> bytes:
        return bytes(item.data)

    def close(self) -> None:
        self.q.close()


SUBJECTS: tuple[type[Subject], ...] = (Litequeue,)
