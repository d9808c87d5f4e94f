"""One replicator per (queue, stream), one ingester per queue: a flock the kernel drops when its holder dies.

The lock files are in the queue's folder `replication/` (which the cycle
listing, verify and purge ignore): `ship-<stream>.lock` and `ingest.lock`,
each holding the pid of the process that last took it (for the message a
second one gets; the lock, not the pid, says whether it is held). A fork
child lets go of its copy at once: the lock stays its parent's, and is free
when the parent dies, whether the child lives or not; a Replicator or
Ingester made before the fork refuses to run in the child (check()).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import urllib.parse
import weakref

from tape.errors import ReplicationError

__all__ = ["RoleLock"]


class RoleLock:
    """An exclusive flock on `<queue>/replication/<name>.lock`, taken at once or ReplicationError."""

    def __init__(self, queue_path: str, name: str, who: str) -> None:
        folder = os.path.join(queue_path, "replication")
        self.path = os.path.join(folder, _file_name(name))
        try:
            os.makedirs(folder, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise ReplicationError(f"{who}: cannot take {self.path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _pid_in(fd)
            os.close(fd)
            by = f"process {holder}" if holder else "another process"
            raise ReplicationError(f"{who}: already running in {by} (it holds {self.path})") from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd: int | None = fd
        self._pid = os.getpid()
        _HELD.add(self)

    def check(self, who: str) -> None:
        """ReplicationError in a fork child of the process that took the lock (the child let go of its copy)."""
        if self._pid != os.getpid():
            raise ReplicationError(
                f"{who}: made in process {self._pid}, whose lock ({self.path}) a fork child does not hold: "
                "make a new one in this process"
            )

    def release(self) -> None:
        """Let the next one in; idempotent."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


_HELD: weakref.WeakSet[RoleLock] = weakref.WeakSet()  # the locks taken in this process


def _after_fork_in_child() -> None:
    """Close a fork child's copies: a flock lasts while any copy of its file is open."""
    for lock in list(_HELD):
        lock.release()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _file_name(name: str) -> str:
    """The lock file's name for `name`: quoted, and cut with a digest when too long for a file name."""
    quoted = urllib.parse.quote(name, safe="")
    if len(quoted) > 200:
        quoted = quoted[:100] + "-" + hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return quoted + ".lock"


def _pid_in(fd: int) -> int | None:
    """The pid the file says holds it, None when it does not say."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None
