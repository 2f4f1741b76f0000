"""One publisher per out dir: an advisory lock (`flock`) on the out dir itself.

The lock is taken on a descriptor of the directory, so no file is created anywhere (the out
dir is often the executor's state dir, where the publisher writes nothing but its outputs),
and the kernel drops it when the holding process dies, however it dies (SIGKILL included):
nothing stale is left to block a restart. Whoever finds the lock taken names the holder
from the kernel's lock table (/proc/locks) and the holder's command line.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kpi_publisher import fs

DAEMON_COMMAND = "run"
COMMANDS = ("run", "once")
SHORT_HOLDER_WAIT_S = 5.0  # how long to wait for a holder that is not a daemon (`once`)
_POLL_S = 0.05
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)


class LockHeld(Exception):
    """Another live process publishes into the same out dir."""

    def __init__(self, path: Path, pid: int | None, command: str | None) -> None:
        holder = holder_text(pid, command, unknown="another process")
        super().__init__(f"{path} is already published into by {holder}")
        self.path = path
        self.pid = pid
        self.command = command


@dataclass
class OutDirLock:
    """A held lock; `release()` (or the process's death) frees it."""

    path: Path
    fd: int

    def release(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
        self.fd = -1

    def holds(self, out_dir: Path) -> bool:
        """True when the lock is on the directory now at `out_dir` (not on one that was
        removed or renamed away since, whose lock keeps no one out of its replacement),
        whatever path names it (a symlink, `..`)."""
        if self.fd < 0:
            return False
        try:
            held, current = os.fstat(self.fd), os.stat(out_dir)
        except OSError:
            return False
        return (held.st_dev, held.st_ino) == (current.st_dev, current.st_ino)


def holder_pid(fd: int) -> int | None:
    """The pid holding a flock on the file open at `fd`, from /proc/locks (None if unknown).

    /proc/locks names the file as major:minor:inode (hex, hex, decimal); a file system whose
    stat device differs from that (overlayfs, btrfs subvolumes) is matched on the inode alone
    when that match is unique.
    """
    st = os.fstat(fd)
    exact = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as table:
            lines = table.read().splitlines()
    except OSError:
        return None
    by_inode: set[int] = set()
    for line in lines:
        fields = line.split()
        if len(fields) < 6 or fields[1] != "FLOCK":  # "->" lines are waiters, not holders
            continue
        pid_s, file_id = fields[4], fields[5]
        if not pid_s.isdigit() or int(pid_s) == os.getpid():
            continue
        if file_id == exact:
            return int(pid_s)
        if file_id.rsplit(":", 1)[-1] == str(st.st_ino):
            by_inode.add(int(pid_s))
    return by_inode.pop() if len(by_inode) == 1 else None


def holder_text(pid: int | None, command: str | None, *, unknown: str) -> str:
    """A lock's holder for an error: "pid 123 (hedge-kpi run)", or `unknown` with no pid."""
    holder = f"pid {pid}" if pid is not None else unknown
    return f"{holder} (hedge-kpi {command})" if command else holder


def holder_command(pid: int | None) -> str | None:
    """`run` or `once` when `pid` is a hedge-kpi process running that command, else None."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            argv = cmdline.read().decode("utf-8", "replace").split("\0")
    except OSError:
        return None
    return next((arg for arg in argv[1:] if arg in COMMANDS), None)


def acquire(out_dir: Path, *, wait_s: float = 0.0) -> OutDirLock:
    """Take the out dir's lock, or raise LockHeld naming the holder.

    `wait_s`: how long to wait for a holder that is not a daemon (a `once` publishing right
    now); a daemon (`run`) holds the lock for its whole life, so it is never waited for.
    OSError when the out dir cannot be opened.
    """
    deadline = time.monotonic() + wait_s
    fd = os.open(out_dir, _DIR_FLAGS)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pid = holder_pid(fd)
                command = holder_command(pid)
                if command == DAEMON_COMMAND or time.monotonic() >= deadline:
                    raise LockHeld(out_dir, pid, command) from None
                time.sleep(_POLL_S)
                continue
            return OutDirLock(out_dir, fd)
    except BaseException:
        os.close(fd)
        raise


class DaemonLock:
    """The lock `run` holds on its out dir for its whole life, moved by a reload that changes
    the out dir: the new dir's lock is taken first (LockHeld when another publisher has it,
    and then nothing changes), and only then is the old one let go, so two daemons never
    publish into one dir."""

    def __init__(self, *, poll_s: float = 1.0) -> None:
        self._held: OutDirLock | None = None
        self._pending: Path | None = None  # an out dir to lock once it appears
        self._poll_s = poll_s
        self._guard = threading.Lock()  # every acquisition happens under it

    @property
    def path(self) -> Path | None:
        """The out dir whose lock is held (None while it is pending)."""
        held = self._held
        return held.path if held is not None else None

    def hold(self, out_dir: Path, state_dir: Path, on_held: Callable[[LockHeld], None]) -> None:
        """Take the first out dir's lock; LockHeld or OSError at once.

        An out dir inside a missing state dir is not created (the state dir is the executor's
        to create): it is locked as soon as it appears, by `ensure` before the first publish
        there or by a daemon thread that looks every `poll_s`, whichever comes first; the
        thread calls `on_held` when another process was first.
        """
        if out_dir.is_dir() or state_dir.is_dir() or not fs.inside(out_dir, state_dir):
            out_dir.mkdir(parents=True, exist_ok=True)
            held = acquire(out_dir, wait_s=SHORT_HOLDER_WAIT_S)
            with self._guard:
                self._held = held
            return
        with self._guard:
            self._pending = out_dir
        threading.Thread(
            target=self._wait_for, args=(out_dir, on_held), name="hedge-kpi-out-dir-lock",
            daemon=True,
        ).start()  # fmt: skip

    def _take_pending(self, out_dir: Path) -> bool:
        """(Under the guard.) Lock the pending `out_dir` if it exists now; True when nothing
        is left to wait for (locked, or a reload moved on). LockHeld or OSError propagate."""
        if self._pending != out_dir:
            return True
        if not out_dir.is_dir():
            return False
        self._held = acquire(out_dir, wait_s=SHORT_HOLDER_WAIT_S)
        self._pending = None
        return True

    def _wait_for(self, out_dir: Path, on_held: Callable[[LockHeld], None]) -> None:
        while True:
            time.sleep(self._poll_s)
            try:
                with self._guard:
                    if self._take_pending(out_dir):
                        return
            except LockHeld as exc:
                on_held(exc)
                return
            except OSError:
                continue  # e.g. the directory is still being set up: try again

    def holds(self, out_dir: Path) -> bool:
        """True when the lock held is on the directory now at `out_dir` (`OutDirLock.holds`)."""
        held = self._held
        return held is not None and held.holds(out_dir)

    def ensure(self, out_dir: Path) -> None:
        """Hold the lock of the directory now at `out_dir` before anything is written there:
        it may have appeared since (the first out dir inside a state dir the executor has just
        made, or one a reload moved into such a dir) or been removed and made again. LockHeld
        or OSError when another publisher has it; the current lock then stays held."""
        with self._guard:
            if self._pending == out_dir:
                if not self._take_pending(out_dir):
                    raise FileNotFoundError(errno.ENOENT, "out dir not there yet", str(out_dir))
                return
        self.move(out_dir)

    def move(self, out_dir: Path) -> None:
        """Hold `out_dir`'s lock instead; on LockHeld or OSError the current one stays held."""
        with self._guard:
            if self._held is not None and self._held.holds(out_dir):
                self._held.path = out_dir  # the same directory by another path: held already
                return
            new = acquire(out_dir, wait_s=SHORT_HOLDER_WAIT_S)
            old, self._held, self._pending = self._held, new, None
        if old is not None:
            old.release()
