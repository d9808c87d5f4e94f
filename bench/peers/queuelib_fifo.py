"""queuelib's FifoDiskQueue (Scrapy's disk queue): length-prefixed records appended to chunk files."""

from __future__ import annotations

from pathlib import Path

from queuelib import FifoDiskQueue

from bench.peers import Subject


class Queuelib(Subject):
    """push / pop; no batch call. Its state (head, tail, size) is in memory until close()."""

    key = "queuelib"
    name = "queuelib FifoDiskQueue"
    kind = "peer"
    package = "queuelib"
    how = "push / push in a loop / pop / pop"
    cross_process = "the queue's state is held in the writer's memory and saved only by close()"

    def open(self, path: Path) -> None:
        self.q = FifoDiskQueue(str(path))
        self.write = self.q.push
        self.read = self.q.pop

    def close(self) -> None:
        self.q.close()


SUBJECTS: tuple[type[Subject], ...] = (Queuelib,)
