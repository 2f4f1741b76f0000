"""The filesystem edges: one defensive reader and one atomic writer.

Reading follows stat -> read -> fstat: bytes are accepted only when the file did not change
while we read it (an in-place writer can truncate under us). Writing goes through an
exclusive temp file in the target directory, fchmod 0644, optional fsync, `os.replace`, and
an fsync of the directory; the temp file is removed on any failure.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

TEMP_SUFFIX = ".tmp"
TEMP_PREFIX = "."
OUTPUT_MODE = 0o644


class ReadError(Exception):
    """A file that exists but cannot be used; `reason` is a short operator-facing text."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class FileStamp:
    """(inode, mtime_ns, size): what the rescan and the reader compare."""

    ino: int
    mtime_ns: int
    size: int

    @classmethod
    def of(cls, st: os.stat_result) -> FileStamp:
        return cls(st.st_ino, st.st_mtime_ns, st.st_size)


def stamp(path: Path) -> FileStamp | None:
    """The file's stamp, following symlinks; None when there is no such file."""
    try:
        return FileStamp.of(os.stat(path))
    except OSError:
        return None


def _check_symlink(path: Path, root: Path | None) -> None:
    """Refuse a symlink whose target leaves `root` (contract rule 6)."""
    if root is None:
        return
    target = Path(os.path.realpath(path))
    real_root = Path(os.path.realpath(root))
    if target != real_root and real_root not in target.parents:
        raise ReadError(f"symlink leaves {real_root} (points at {target}); not followed")


def read_bytes(path: Path, *, max_bytes: int, root: Path | None = None) -> tuple[bytes, FileStamp]:
    """Read a whole regular file safely.

    Raises FileNotFoundError when the file is absent, ReadError when it is unusable: not a
    regular file, a symlink out of `root`, larger than `max_bytes` (refused without reading it),
    or changed while being read.
    """
    lst = os.lstat(path)
    if stat.S_ISLNK(lst.st_mode):
        _check_symlink(path, root)
    # O_NONBLOCK: a FIFO planted where a file belongs must never block the reader.
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            raise
        raise ReadError(f"cannot open: {exc.strerror}") from exc
    try:
        before = os.fstat(fd)
        if not stat.S_ISREG(before.st_mode):
            raise ReadError("not a regular file")
        if before.st_size > max_bytes:
            raise ReadError(f"file is {before.st_size} bytes, over the {max_bytes}-byte cap")
        chunks: list[bytes] = []
        total = 0
        while True:
            chunk = os.read(fd, max(65536, before.st_size + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > max_bytes:
                raise ReadError(f"file grew over the {max_bytes}-byte cap while being read")
        after = os.fstat(fd)
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if FileStamp.of(before) != FileStamp.of(after) or len(data) != after.st_size:
        raise ReadError("file changed while being read (in-place write in progress)")
    return data, FileStamp.of(after)


def temp_name(target: Path) -> Path:
    """A temp path beside `target` that no reader glob (`*.json`) and no watcher filter takes."""
    return target.with_name(
        f"{TEMP_PREFIX}{target.name}.{os.getpid()}.{os.urandom(4).hex()}{TEMP_SUFFIX}"
    )


def is_temp_name(name: str) -> bool:
    """True for the temp names of every writer we know (ours, the executor's, sync's)."""
    return name.startswith(".") or name.endswith(TEMP_SUFFIX)


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_temp(target: Path, data: bytes, *, fsync: bool, mode: int) -> Path:
    """An exclusive (O_EXCL) temp file beside `target` holding `data`; removed on failure."""
    tmp = temp_name(target)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fchmod(fd, mode)
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return tmp


def write_atomic_many(
    files: Sequence[tuple[Path, bytes]], *, fsync: bool = True, mode: int = OUTPUT_MODE
) -> None:
    """Replace each target with its data, in order, each atomically (old or new, never a part).

    All temp files are written (and fsynced) before the first rename, so a failure while
    writing leaves every target untouched; the directories are fsynced once at the end.
    Temp files are removed on any failure and the exception propagates.
    """
    temps: list[tuple[Path, Path]] = []
    try:
        for target, data in files:
            temps.append((_write_temp(target, data, fsync=fsync, mode=mode), target))
        while temps:
            tmp, target = temps[0]
            os.replace(tmp, target)
            temps.pop(0)
    except BaseException:
        for tmp, _ in temps:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise
    if fsync:
        for directory in dict.fromkeys(target.parent for target, _ in files):
            fsync_dir(directory)


def write_atomic(target: Path, data: bytes, *, fsync: bool = True, mode: int = OUTPUT_MODE) -> None:
    """Replace `target` with `data` so that a reader sees the old or the new file, never a part.

    The temp file is created exclusively (O_EXCL) in the target's directory. On any error the
    temp file is removed and the exception propagates; the old target is untouched.
    """
    write_atomic_many([(target, data)], fsync=fsync, mode=mode)


def sweep_stale_temps(directory: Path, targets: tuple[str, ...]) -> list[Path]:
    """Remove temp files a killed publisher left behind for `targets`; returns what it removed."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for entry in entries:
        name = entry.name
        if not name.endswith(TEMP_SUFFIX):
            continue
        if any(name.startswith(f"{TEMP_PREFIX}{t}.") for t in targets):
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed
