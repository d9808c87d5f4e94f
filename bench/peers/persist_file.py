"""persist-queue's file-based Queue: pickled items in chunk files, an info file renamed into place per put."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from persistqueue import Empty, Queue

from bench.peers import Subject


class PersistFile(Subject):
    """put / get_nowait (no task_done: reading does not record its progress); no batch call."""

    key = "persist-file"
    name = "persist-queue Queue (file)"
    kind = "peer"
    package = "persist-queue"
    how = "put / put in a loop / get_nowait / get_nowait"
    cross_process = "a reader learns of new items only from its own process's puts (the info file is read at open)"

    def open(self, path: Path) -> None:
        self.q = Queue(str(path))
        self.write = self.q.put
        get = self.q.get_nowait

        def read() -> Any:
            try:
                return get()
            except Empty:
                return None

        self.read = read

    def close(self) -> None:
        self.q.headf.close()
        self.q.tailf.close()


SUBJECTS: tuple[type[Subject], ...] = (PersistFile,)
