"""persist-queue's SQLiteQueue: a row per item, committed per put (auto_commit, WAL)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from persistqueue import Empty, SQLiteQueue

from bench.peers import Subject


class PersistSqlite(Subject):
    """put / get_nowait (a select and a delete, committed); no batch call."""

    key = "persist-sqlite"
    name = "persist-queue SQLiteQueue"
    kind = "peer"
    sqlite = True
    package = "persist-queue"
    how = "put / put in a loop / get_nowait / get_nowait"

    def open(self, path: Path) -> None:
        self.q = SQLiteQueue(str(path))
        self.write = self.q.put
        get = self.q.get_nowait

        def read() -> Any:
            try:
                return get()
            except Empty:
                return None

        self.read = read

    def close(self) -> None:
        self.q.close()


SUBJECTS: tuple[type[Subject], ...] = (PersistSqlite,)
