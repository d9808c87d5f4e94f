"""Archived cycle files: what purge(archive=DIR) keeps of a cycle file it removes.

An archive, `<cycle file name>.lz4`, is two lz4 frames. The first is a skippable
frame (lz4 tools pass over it) holding "TAPEARC1", the cycle file's name and an lz4
frame of the queue's tape.meta as it was (its roll cycle and codec); the second is the
cycle file itself, with a content checksum, so `lz4 -d` gives back the file. An archive
is written under a temporary name, flushed, then linked to its name (never over another
file) and the directory flushed, before the cycle file may be removed. `opened()` lays
an archive out again as a queue of one cycle file in a temporary directory, which tape
opens read-only like any queue: nothing here reads the queue's file format.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import struct
import tempfile
from collections.abc import Iterator
from typing import IO

from tape.errors import CorruptionError, NotAQueueError, TapeOSError

__all__ = ["SUFFIX", "archive_path", "check_dir", "opened", "remove_leftovers", "write"]

SUFFIX = ".lz4"
META_NAME = "tape.meta"  # the queue's metadata file, copied whole
_SKIPPABLE = 0x184D2A5E  # one of the sixteen magics of an lz4 skippable frame
_MAGIC = b"TAPEARC1"
_CHUNK = 1 << 20
_TMP = ".tmp."


def archive_path(directory: str, cycle_path: str) -> str:
    """Where the archive of the cycle file at `cycle_path` goes in `directory`."""
    return os.path.join(directory, os.path.basename(cycle_path) + SUFFIX)


def check_dir(directory: str) -> str:
    """`directory` as a str, created if missing; TapeOSError unless a file can be made in it."""
    path = os.fsdecode(directory)
    if os.path.lexists(path) and not os.path.isdir(path):
        raise TapeOSError(errno.ENOTDIR, f"archive directory {path}: not a directory")
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, f".tape-probe{_TMP}{os.getpid()}.{secrets.token_hex(4)}")
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
        os.unlink(probe)
    except OSError as exc:
        raise _os_error(exc, f"archive directory {path}") from None
    return path


def write(queue_path: str, cycle_path: str, directory: str) -> tuple[str, bool] | None:
    """Archive the cycle file at `cycle_path` of the queue at `queue_path` into `directory` (checked), on disk.

    Returns the archive's path and whether this call made it (an archive of this
    same file already there, left by an archiver killed before it removed the
    cycle file, is kept), or None when the cycle file is gone. An archive there
    that differs raises TapeOSError (EEXIST) and is not replaced.
    """
    final = archive_path(directory, cycle_path)
    try:
        try:
            src = open(cycle_path, "rb")
        except FileNotFoundError:
            return None  # removed meanwhile by another process
        with src:
            if os.path.lexists(final):
                _check_same(final, src)
                return final, False
            made = _write_new(queue_path, src, final)
        _fsync_dir(directory)
    except OSError as exc:
        raise _os_error(exc, final) from None
    return final, made


def _write_new(queue_path: str, src: IO[bytes], final: str) -> bool:
    """Write the archive of `src` to a temporary name, flush it, link it to `final`: True, or False when
    another archiver linked the same archive there first."""
    with open(os.path.join(queue_path, META_NAME), "rb") as f:
        meta = f.read()
    tmp = f"{final}{_TMP}{os.getpid()}.{secrets.token_hex(4)}"
    try:
        with open(tmp, "xb") as out:
            out.write(_header(os.path.basename(src.name), meta))
            _compress(src, out)
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(tmp, final)  # never over a file that is there
        except FileExistsError:
            src.seek(0)
            _check_same(final, src)
            return False
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


@contextlib.contextmanager
def opened(archive: str) -> Iterator[str]:
    """The archive at `archive` laid out as a queue in a temporary directory (its path), removed on exit."""
    where = tempfile.mkdtemp(prefix="tape-archive-")
    try:
        with open(archive, "rb") as f:
            name, meta = _read_header(f, archive)
            with open(os.path.join(where, META_NAME), "wb") as out:
                out.write(meta)
            with open(os.path.join(where, name), "wb") as out:
                _decompress(f, out, archive)
        yield where
    finally:
        shutil.rmtree(where, ignore_errors=True)


# -- the two frames --------------------------------------------------------------------------


def _header(name: str, meta: bytes) -> bytes:
    """The skippable frame: magic, the cycle file's name, the queue's tape.meta (lz4)."""
    import lz4.frame

    raw = name.encode()
    packed: bytes = lz4.frame.compress(meta)
    body = _MAGIC + struct.pack("<H", len(raw)) + raw + packed
    return struct.pack("<II", _SKIPPABLE, len(body)) + body


def _read_header(f: IO[bytes], archive: str) -> tuple[str, bytes]:
    """The cycle file's name and tape.meta, from the skippable frame at the start of `f`."""
    import lz4.frame

    head = f.read(8)
    magic, size = struct.unpack("<II", head) if len(head) == 8 else (0, 0)
    body = f.read(size)
    if magic != _SKIPPABLE or len(body) != size or not body.startswith(_MAGIC):
        raise NotAQueueError(f"{archive}: neither a queue directory nor a cycle file archived by tape purge --archive")
    try:
        (n,) = struct.unpack_from("<H", body, len(_MAGIC))
        at = len(_MAGIC) + 2
        name = body[at : at + n].decode()
        meta = lz4.frame.decompress(body[at + n :])
    except (struct.error, UnicodeDecodeError, RuntimeError, EOFError) as exc:
        raise CorruptionError(f"{archive}: the archive's header is damaged ({exc})") from None
    if not name or os.path.basename(name) != name or name.startswith("."):
        raise CorruptionError(f"{archive}: the archive's header is damaged (file name {name!r})")
    return name, meta


def _compress(src: IO[bytes], out: IO[bytes]) -> None:
    """`src` to its end as one lz4 frame with a content checksum, into `out`."""
    import lz4.frame

    with lz4.frame.LZ4FrameCompressor(content_checksum=True) as c:
        out.write(c.begin())
        while chunk := src.read(_CHUNK):
            out.write(c.compress(chunk))
        out.write(c.flush())


def _frames(f: IO[bytes], archive: str) -> Iterator[bytes]:
    """The cycle file, in pieces, from the lz4 frame that follows the header; CorruptionError if damaged."""
    import lz4.frame

    try:
        with lz4.frame.LZ4FrameFile(f, "rb") as r:
            while chunk := r.read(_CHUNK):
                yield chunk
    except (RuntimeError, EOFError) as exc:
        raise CorruptionError(f"{archive}: the archived cycle file is damaged or cut short ({exc})") from None


def _decompress(f: IO[bytes], out: IO[bytes], archive: str) -> None:
    """The archived cycle file into `out`, leaving holes where it holds only zeros."""
    size = 0
    for chunk in _frames(f, archive):
        if chunk.count(0) == len(chunk):
            out.seek(len(chunk), os.SEEK_CUR)
        else:
            out.write(chunk)
        size += len(chunk)
    out.truncate(size)


def _check_same(final: str, src: IO[bytes]) -> None:
    """TapeOSError (EEXIST) unless the archive at `final` holds what `src` holds (from the start), byte for byte."""
    try:
        with open(final, "rb") as f:
            _read_header(f, final)
            for chunk in _frames(f, final):
                if src.read(len(chunk)) != chunk:
                    break
            else:
                if not src.read(1):
                    return
    except (CorruptionError, NotAQueueError):
        pass
    raise TapeOSError(errno.EEXIST, f"{final} is there and is not an archive of {src.name}: not replaced; move it away")


# -- files -----------------------------------------------------------------------------------


def remove_leftovers(directory: str) -> None:
    """Remove the temporary files that archivers which died (their pid is gone) left in `directory`."""
    try:
        names = os.listdir(directory)
    except OSError as exc:
        raise _os_error(exc, f"archive directory {directory}") from None
    for name in names:
        stem, tmp, rest = name.partition(SUFFIX + _TMP)
        pid = rest.split(".", 1)[0]
        if stem and tmp and pid.isdigit() and not _alive(int(pid)):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(directory, name))


def _alive(pid: int) -> bool:
    """True when a process `pid` exists (or might: one we may not signal)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fsync_dir(directory: str) -> None:
    """Flush `directory`'s entries to disk."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _os_error(exc: OSError, what: str) -> TapeOSError:
    """`exc` as a TapeOSError about `what`."""
    if isinstance(exc, TapeOSError):
        return exc
    return TapeOSError(exc.errno or errno.EIO, f"{what}: {exc.strerror or exc}")
