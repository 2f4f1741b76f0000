"""The filesystem edges: one defensive reader and one atomic writer.

Reading follows stat -> read -> fstat: bytes are accepted only when the file did not change
while we read it (an in-place writer can truncate under us). A file of the state dir is opened
relative to a descriptor of that directory without following symlinks; a symlink is followed
only to a file inside it, judged on the opened descriptor (no check-then-open window).
Writing goes through an exclusive temp file in the target directory, fchmod 0644, `os.replace`,
and (optionally) an fsync of the file, before or after the rename, and of the directory; the
temp file is removed on any failure. `OutputWriter`, the daemon's writer, does the same with
its temp files made ahead and the files it published held until the next are in place.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

TEMP_SUFFIX = ".tmp"
TEMP_PREFIX = "."
OUTPUT_MODE = 0o644
# When the published files reach the disk relative to their renames (write_atomic_many).
FAST = "fast"  # rename, then fsync: visible ~0.5 ms sooner, durable before the write returns
STRICT = "strict"  # fsync, then rename: never visible before it is durable
DURABILITIES = (FAST, STRICT)


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


class StampLedger:
    """What was last seen of each path (its stamp, None for no file): the one record that
    answers "did this file change since it was looked at?"."""

    def __init__(self) -> None:
        self._seen: dict[Path, FileStamp | None] = {}

    def see(self, path: Path, seen: FileStamp | None) -> None:
        self._seen[path] = seen

    def look(self, paths: Iterable[Path]) -> None:
        """Record the current stamp of `paths`."""
        for path in paths:
            self._seen[path] = stamp(path)

    def forget(self, paths: Iterable[Path]) -> None:
        for path in paths:
            self._seen.pop(path, None)

    def moved(self) -> set[Path]:
        """Paths whose stamp is no longer the one seen (one stat each)."""
        return {p for p, seen in list(self._seen.items()) if stamp(p) != seen}


# O_NONBLOCK: a FIFO planted where a file belongs must never block the reader. O_NOCTTY: a
# terminal device must never become the process's controlling terminal.
_READ_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)
_O_PATH = getattr(os, "O_PATH", 0)
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DELETED = " (deleted)"


def _fd_path(fd: int) -> str | None:
    """The kernel's path of an open descriptor (/proc/self/fd), or None where there is no /proc."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None


def inside(path: Path, directory: Path) -> bool:
    """True when `path` is `directory` or lies below it (lexically, on absolute paths)."""
    p, d = Path(os.path.abspath(path)), Path(os.path.abspath(directory))
    return p == d or d in p.parents


def _below(target: str, real_root: str) -> bool:
    return os.path.commonpath([target, real_root]) == real_root and target != real_root


def _check_opened(fd: int, path: Path, real_root: str) -> None:
    """Refuse the open descriptor `fd` unless it is a file inside `real_root`.

    docs/CONTRACT_RULES.md, rule 6.

    The check is on what was opened, never on the path before opening: swapping a symlink
    between an inside and an outside file cannot get an outside file past it.
    """
    st = os.fstat(fd)
    target = _fd_path(fd)
    if target is None:
        # No /proc: the opened file must be the very file (device, inode) that the path's
        # real location inside the root names now.
        target = os.path.realpath(path)
        try:
            named = os.stat(target, follow_symlinks=False)
        except OSError:
            named = None
        if named is None or (named.st_dev, named.st_ino) != (st.st_dev, st.st_ino):
            raise ReadError("file changed while being read (symlink re-pointed while opening)")
    elif st.st_nlink == 0 or target.endswith(_DELETED):
        raise ReadError("file changed while being read (replaced while opening)")
    if not _below(target, real_root):
        raise ReadError(f"symlink leaves {real_root} (points at {target}); not followed")


def _open_symlink(name: str, dir_fd: int, path: Path, real_root: str) -> int:
    """Open the file a symlink names, relative to `dir_fd`, only when it is inside the root.

    With O_PATH the link is resolved without opening the file (no FIFO or device is ever
    opened): the resolved descriptor is checked, then that same inode is reopened for reading
    through /proc/self/fd, so no path is resolved twice. Elsewhere the file is opened and the
    opened descriptor checked.
    """
    if _O_PATH:
        pfd = os.open(name, _O_PATH | getattr(os, "O_CLOEXEC", 0), dir_fd=dir_fd)
        try:
            _check_opened(pfd, path, real_root)
            if not stat.S_ISREG(os.fstat(pfd).st_mode):
                raise ReadError("not a regular file")
            try:
                return os.open(f"/proc/self/fd/{pfd}", _READ_FLAGS)
            except FileNotFoundError:
                pass  # no /proc: open by name below and check the descriptor
        finally:
            os.close(pfd)
    fd = os.open(name, _READ_FLAGS, dir_fd=dir_fd)
    try:
        _check_opened(fd, path, real_root)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open_beneath(path: Path, root: Path) -> int:
    """Open `path` for reading only if what is opened lies inside `root`.

    A file directly in `root` is opened without following a symlink in its name. A symlink
    (allowed while it stays inside the root), or a path deeper below the root, is opened
    relative to a descriptor of the root, then resolved and checked on the opened descriptor,
    never by a look at the path beforehand.
    """
    direct = path.parent == root
    if direct:
        # The common case, in one open: the root's own path is followed either way (a
        # descriptor of it would be opened the same), and the name is never followed.
        try:
            return os.open(path, _READ_FLAGS | _O_NOFOLLOW)
        except OSError as exc:
            # ELOOP (Linux) / EMLINK (BSD): the name is a symlink.
            if exc.errno not in (errno.ELOOP, errno.EMLINK):
                raise
    dir_fd = os.open(root, _DIR_FLAGS)
    try:
        name = path.name if direct else os.path.abspath(path)  # deeper: judged when opened
        real_root = _fd_path(dir_fd) or os.path.realpath(root)
        return _open_symlink(name, dir_fd, path, real_root)
    finally:
        os.close(dir_fd)


CHANGED_WHILE_READ = "file changed while being read (in-place write in progress)"


def open_regular(
    path: Path, *, max_bytes: int, root: Path | None = None
) -> tuple[int, os.stat_result]:
    """(an open read-only descriptor, its fstat) of a regular file of at most `max_bytes`,
    before a byte is read; the caller closes it. FileNotFoundError when the file is absent,
    ReadError when it cannot be opened, is not a regular file (a FIFO never blocks the open, a
    terminal never becomes ours), leaves `root`, or is over the cap (see `read_bytes`)."""
    try:
        fd = _open_beneath(path, root) if root is not None else os.open(path, _READ_FLAGS)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            raise
        raise ReadError(f"cannot open: {exc.strerror}") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ReadError("not a regular file")
        if info.st_size > max_bytes:
            raise ReadError(f"file is {info.st_size} bytes, over the {max_bytes}-byte cap")
    except BaseException:
        os.close(fd)
        raise
    return fd, info


def read_bytes(path: Path, *, max_bytes: int, root: Path | None = None) -> tuple[bytes, FileStamp]:
    """Read a whole regular file safely.

    Raises FileNotFoundError when the file is absent, ReadError when it is unusable: not a
    regular file, a symlink out of `root`, larger than `max_bytes` (refused without reading it),
    or changed while being read. With `root`, the file is opened relative to a descriptor of
    `root` without following symlinks, and a symlink is followed only to a file inside `root`
    (checked on the opened descriptor, so re-pointing a link while we open it cannot escape).
    Without `root`, symlinks are followed.
    """
    fd, before = open_regular(path, max_bytes=max_bytes, root=root)
    try:
        chunks: list[bytes] = []
        total = 0
        while True:
            wanted = max(65536, before.st_size + 1 - total)
            chunk = os.read(fd, wanted)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > max_bytes:
                raise ReadError(f"file grew over the {max_bytes}-byte cap while being read")
            if len(chunk) < wanted:
                break  # a short read of a regular file is its end; the fstat below confirms
        after = os.fstat(fd)
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if FileStamp.of(before) != FileStamp.of(after) or len(data) != after.st_size:
        raise ReadError(CHANGED_WHILE_READ)
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


def _create_temp(target: Path, *, mode: int) -> tuple[Path, int]:
    """An exclusive (O_EXCL) empty temp file beside `target` with `mode`, and its descriptor."""
    tmp = temp_name(target)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        os.fchmod(fd, mode)
    except BaseException:
        _discard(tmp, fd)
        raise
    return tmp, fd


def probe_writable(target: Path) -> None:
    """Create and remove a temp file beside `target`, as a publish would: OSError (read-only
    file system, no permission, no such directory) when nothing could be published there."""
    _discard(*_create_temp(target, mode=0o600))


def _fill(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _close_all(fds: Iterable[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def _discard(tmp: Path, fd: int) -> None:
    _close_all((fd,))
    with contextlib.suppress(OSError):
        os.unlink(tmp)


def _write_temp(target: Path, data: bytes, *, mode: int) -> tuple[Path, int]:
    """An exclusive (O_EXCL) temp file beside `target` holding `data`, and its still-open
    descriptor (the caller fsyncs and closes it); removed and closed on failure."""
    tmp, fd = _create_temp(target, mode=mode)
    try:
        _fill(fd, data)
    except BaseException:
        _discard(tmp, fd)
        raise
    return tmp, fd


def _replace_in_order(
    filled: list[tuple[Path, int, Path]], *, fsync: bool, durability: str
) -> None:
    """Rename each filled temp (tmp, fd, target) over its target in order, syncing as
    `durability` says; the directories are fsynced once at the end. On a failure before a
    temp's rename, that temp and every later one are removed; descriptors stay open."""
    sync_before = fsync and durability == STRICT
    done = 0
    try:
        if sync_before:
            for _tmp, fd, _target in filled:
                os.fsync(fd)
        for tmp, _fd, target in filled:
            os.replace(tmp, target)
            done += 1
        if fsync and not sync_before:
            for _tmp, fd, _target in filled:
                os.fsync(fd)
    except BaseException:
        for tmp, _fd, _target in filled[done:]:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise
    if fsync:
        for directory in dict.fromkeys(target.parent for _tmp, _fd, target in filled):
            fsync_dir(directory)


def write_atomic_many(
    files: Sequence[tuple[Path, bytes]],
    *,
    fsync: bool = True,
    mode: int = OUTPUT_MODE,
    durability: str = STRICT,
) -> None:
    """Replace each target with its data, in order, each atomically (old or new, never a part).

    All temp files are written before the first rename, so a failure while writing leaves
    every target untouched. With `fsync`, `durability` orders the syncs: STRICT fsyncs each
    temp file before any rename (a reader never sees a file that is not yet on disk); FAST
    renames first and then fsyncs the files (through the descriptors written, so the synced
    inodes are the renamed ones). Either way the directories are fsynced once at the end and
    every sync is done before this returns. An fsync that fails after the renames raises
    OSError: the targets are whole new files, only their durability is unknown, and the
    caller's retry writes them again. Temp files are removed on any failure.
    """
    filled: list[tuple[Path, int, Path]] = []
    try:
        for target, data in files:
            tmp, fd = _write_temp(target, data, mode=mode)
            filled.append((tmp, fd, target))
        _replace_in_order(filled, fsync=fsync, durability=durability)
    except BaseException:
        for tmp, fd, _target in filled:
            _discard(tmp, fd)  # a renamed temp name no longer exists: only the close counts
        raise
    _close_all(fd for _tmp, fd, _target in filled)


class OutputWriter:
    """`write_atomic_many` for a publisher that replaces the same targets again and again, with
    the two slow filesystem steps taken off the path to visibility:

    - The temp files of the next write are created after this one is done (on ext4, creating
      an inode costs 0.1-0.25 ms each). A spare is an empty hidden temp (`is_temp_name`, swept
      by `sweep_stale_temps` if the process dies); one found unlinked or not empty is dropped
      and a fresh temp is made.
    - The descriptors of the files it published are held until its next write is in place, so
      the rename over them only unlinks them and freeing their blocks (done inside the rename
      for a file nobody holds) waits for the close after the new files are visible.

    The files written, their order, modes and syncs are those of `write_atomic_many`.
    `close()` removes the spares and closes everything held.
    """

    def __init__(self, *, mode: int = OUTPUT_MODE) -> None:
        self._mode = mode
        self._spares: dict[Path, tuple[Path, int]] = {}
        self._held: list[int] = []

    def write(
        self, files: Sequence[tuple[Path, bytes]], *, fsync: bool = True, durability: str = STRICT
    ) -> None:
        targets = [target for target, _data in files]
        for target in [t for t in self._spares if t not in targets]:
            _discard(*self._spares.pop(target))  # the out dir moved: spares of old targets
        filled: list[tuple[Path, int, Path]] = []
        try:
            for target, data in files:
                tmp, fd = self._take_spare(target)
                filled.append((tmp, fd, target))
                _fill(fd, data)
            _replace_in_order(filled, fsync=fsync, durability=durability)
        except BaseException:
            for tmp, fd, _target in filled:
                _discard(tmp, fd)
            self._drop_spares()  # a failed write leaves no temp file at all
            raise
        held, self._held = self._held, [fd for _tmp, fd, _target in filled]
        with contextlib.suppress(OSError):  # the next spares; a failure makes them on use
            for target in targets:
                self._spares[target] = _create_temp(target, mode=self._mode)
        _close_all(held)

    def _take_spare(self, target: Path) -> tuple[Path, int]:
        spare = self._spares.pop(target, None)
        if spare is not None:
            try:
                info = os.fstat(spare[1])
                if info.st_nlink == 1 and info.st_size == 0:
                    return spare
            except OSError:
                pass
            _discard(*spare)
        return _create_temp(target, mode=self._mode)

    def spares(self) -> list[Path]:
        """The temp files made ahead for the next write (live: a sweep must leave them)."""
        return [tmp for tmp, _fd in self._spares.values()]

    def _drop_spares(self) -> None:
        for tmp, fd in self._spares.values():
            _discard(tmp, fd)
        self._spares.clear()

    def close(self) -> None:
        self._drop_spares()
        held, self._held = self._held, []
        _close_all(held)


def write_atomic(
    target: Path,
    data: bytes,
    *,
    fsync: bool = True,
    mode: int = OUTPUT_MODE,
    durability: str = STRICT,
) -> None:
    """Replace `target` with `data` so that a reader sees the old or the new file, never a part.

    The temp file is created exclusively (O_EXCL) in the target's directory. On any error the
    temp file is removed and the exception propagates; the old target is untouched.
    """
    write_atomic_many([(target, data)], fsync=fsync, mode=mode, durability=durability)


def sweep_stale_temps(
    directory: Path, targets: tuple[str, ...], keep: Iterable[Path] = ()
) -> list[Path]:
    """Remove temp files a killed publisher left behind for `targets`; returns what it removed.
    `keep` are live temps (an `OutputWriter`'s spares), left alone."""
    live = {path.name for path in keep if path.parent == directory}
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
            if name in live:
                continue
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed


def private_dir(directory: Path) -> Path:
    """`directory`, created 0700 when missing, once verified private; OSError otherwise.

    Private: a real directory (a symlink there is refused, not followed) owned by this user,
    which no one else can write to (group/other write bits on a directory of ours are
    removed). A directory someone else planted at a predictable name is refused.
    """
    with contextlib.suppress(FileExistsError):
        os.mkdir(directory, 0o700)
    try:
        fd = os.open(directory, _DIR_FLAGS | _O_NOFOLLOW)
    except OSError as exc:
        if exc.errno in (errno.ENOTDIR, errno.ELOOP):
            reason = "not a real directory (a symlink or a file)"
            raise OSError(exc.errno, reason, str(directory)) from None
        raise
    try:
        st = os.fstat(fd)
        if st.st_uid != os.geteuid():
            raise OSError(
                errno.EPERM, f"owned by uid {st.st_uid}, not by uid {os.geteuid()}", str(directory)
            )
        if stat.S_IMODE(st.st_mode) & 0o022:
            os.fchmod(fd, stat.S_IMODE(st.st_mode) & ~0o077)
    finally:
        os.close(fd)
    return directory
