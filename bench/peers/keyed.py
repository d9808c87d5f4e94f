"""Keyed durable state as a Python user would keep it instead of a tape keyed queue or tape.Objects.

Every store has the same interface: `open(dir)` opens (or creates) it in a
directory and sets `put(key, value)` (returns once the library says the value
is stored), `get(key)` (the value, None when there is none) and
`increment(key)` (a read-modify-write of an int counter under the key, as
atomic as the library makes it: one transaction where it has them); `close()`
closes cleanly. `settings` names the durability settings used: each library's
defaults, except where a default would keep nothing on disk until a commit
(said there). Keys are str, values bytes.
"""

from __future__ import annotations

import shelve
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar


class KeyedStore:
    """One store to measure; subclasses fill in the class attributes and open()."""

    name: ClassVar[str]  # as shown in tables
    package: ClassVar[str | None] = None  # PyPI distribution, for its version
    settings: ClassVar[str]  # the durability settings used

    put: Callable[[str, bytes], object]
    get: Callable[[str], bytes | None]
    increment: Callable[[str], int]

    def open(self, path: Path) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class TapeKeys(KeyedStore):
    """A tape keyed queue: write(value, key=), latest(key), and write_if(key=) around a read for increment."""

    name = "tape keyed queue"
    settings = 'sync="none" (the default): in the page cache at once, on disk by the kernel'

    def open(self, path: Path) -> None:
        import tape

        self.q = tape.Queue(path / "keys", codec="msgpack")
        a = self.q.appender()
        write, write_if, latest = a.write, a.write_if, self.q.latest

        def put(key: str, value: bytes) -> None:
            write(value, key=key)

        def get(key: str) -> bytes | None:
            e = latest(key)
            return None if e is None else e.value  # type: ignore[no-any-return]

        def increment(key: str) -> int:
            while True:
                e = latest(key)
                n = 1 if e is None else e.value + 1
                if write_if(n, None if e is None else e.index, key=key) is not None:
                    return n

        self.put, self.get, self.increment = put, get, increment

    def close(self) -> None:
        self.q.close()


class TapeObjects(KeyedStore):
    """tape.Objects: an object per key, put / get / increment its handlers."""

    name = "tape.Objects"
    settings = 'sync="none" (the default), as the keyed queue'

    def open(self, path: Path) -> None:
        import tape

        class Cell(tape.DurableObject):
            value: Any = None

            def set(self, value: bytes) -> None:
                self.value = value

            def read(self) -> Any:
                return self.value

            def increment(self) -> int:
                self.value = (self.value or 0) + 1
                return self.value  # type: ignore[no-any-return]

        self.objects = tape.Objects(path / "objects", alarms=False)
        call = self.objects.call
        self.put = lambda key, value: call(Cell, key, "set", value)
        self.get = lambda key: call(Cell, key, "read")
        self.increment = lambda key: call(Cell, key, "increment")

    def close(self) -> None:
        self.objects.close()


class SqliteDictStore(KeyedStore):
    """sqlitedict's SqliteDict (pickled values in a SQLite table)."""

    name = "sqlitedict"
    package = "sqlitedict"
    settings = ("autocommit=True (its default, False, stores nothing until commit()); journal_mode DELETE, "
                "SQLite's synchronous FULL; each write is committed by its background thread")

    def open(self, path: Path) -> None:
        from sqlitedict import SqliteDict

        self.d = SqliteDict(str(path / "db.sqlite"), autocommit=True)
        d = self.d

        def increment(key: str) -> int:
            n: int = d.get(key, 0) + 1
            d[key] = n
            return n

        self.put, self.get, self.increment = d.__setitem__, d.get, increment

    def close(self) -> None:
        self.d.close()


class DiskcacheIndex(KeyedStore):
    """diskcache's Index (a dict in a SQLite-backed Cache); increment is the Cache's incr()."""

    name = "diskcache Index"
    package = "diskcache"
    settings = "defaults: SQLite in WAL mode, synchronous NORMAL; each write its own transaction"

    def open(self, path: Path) -> None:
        from diskcache import Index

        self.index = Index(str(path / "index"))
        incr = self.index.cache.incr
        self.put, self.get = self.index.__setitem__, self.index.get
        self.increment = lambda key: incr(key, 1, 0)

    def close(self) -> None:
        self.index.cache.close()


class LmdbStore(KeyedStore):
    """py-lmdb: a write transaction per put and per increment, a read transaction per get."""

    name = "lmdb"
    package = "lmdb"
    settings = "defaults (sync=True, metasync=True: fsync at each commit), map_size 1 GiB"

    def open(self, path: Path) -> None:
        import lmdb

        self.env = env = lmdb.open(str(path / "lmdb"), map_size=1 << 30)

        def put(key: str, value: bytes) -> None:
            with env.begin(write=True) as txn:
                txn.put(key.encode(), value)

        def get(key: str) -> bytes | None:
            with env.begin() as txn:
                return txn.get(key.encode())  # type: ignore[no-any-return]

        def increment(key: str) -> int:
            k = key.encode()
            with env.begin(write=True) as txn:
                old = txn.get(k)
                n = 1 if old is None else int(old) + 1
                txn.put(k, b"%d" % n)
            return n

        self.put, self.get, self.increment = put, get, increment

    def close(self) -> None:
        self.env.close()


class ShelveStore(KeyedStore):
    """The standard library's shelve over dbm (dbm.dumb where no gdbm or ndbm is built in)."""

    name = "shelve (dbm)"
    settings = "defaults (writeback=False); dbm.dumb writes each value and key at once, no fsync"

    def open(self, path: Path) -> None:
        self.shelf = shelve.open(str(path / "shelf"))
        shelf = self.shelf

        def increment(key: str) -> int:
            n: int = shelf.get(key, 0) + 1
            shelf[key] = n
            return n

        self.put, self.get, self.increment = shelf.__setitem__, shelf.get, increment

    def close(self) -> None:
        self.shelf.close()


STORES: tuple[type[KeyedStore], ...] = (TapeKeys, TapeObjects, SqliteDictStore, DiskcacheIndex, LmdbStore, ShelveStore)
