"""One publisher per out dir: an advisory lock (`flock`) on the out dir itself.

The lock is taken on a descriptor of the directory, so no file is created anywhere (the out
dir is often the executor's state dir, where the publisher writes nothing but its outputs),
and the kernel drops it when the holding process dies, however it dies (SIGKILL included):
nothing stale is left to block a restart. Whoever finds the lock taken names the holder
from the kernel's lock table (/proc/locks) and the holder's command line.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

DAEMON_COMMAND = "run"
COMMANDS = ("run", "once")
SHORT_HOLDER_WAIT_S = 5.0  # how long to wait for a holder that is not a daemon (`once`)
_POLL_S = 0.05
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)


class LockHeld(Exception):
    """Another live process publishes into the same out dir."""

    def __init__(self, path: Path, pid: int | None, command: str | None) -> None:
        holder = f"pid {pid}" if pid is not None else "another process"
        if command:
            holder += f" (hedge-kpi {command})"
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
        removed or renamed away since, whose lock keeps no one out of its replacement)."""
        if self.fd < 0 or self.path != out_dir:
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


def _inside(path: Path, directory: Path) -> bool:
    p, d = Path(os.path.abspath(path)), Path(os.path.abspath(directory))
    return p == d or d in p.parents


def hold_for_daemon(
    out_dir: Path,
    state_dir: Path,
    on_held: Callable[[LockHeld], None],
    *,
    poll_s: float = 1.0,
    on_acquired: Callable[[OutDirLock], None] | None = None,
) -> OutDirLock | None:
    """Take the out dir's lock for `run`, for the rest of the process's life.

    Raises LockHeld or OSError at once when the out dir exists or can be created. An out dir
    inside a missing state dir is not created (the state dir is the executor's to create): a
    daemon thread then takes the lock as soon as the directory appears, calling `on_held`
    when another process was first, or `on_acquired` with the lock. Returns the lock, or None
    while it is pending.
    """
    if out_dir.is_dir() or state_dir.is_dir() or not _inside(out_dir, state_dir):
        out_dir.mkdir(parents=True, exist_ok=True)
        return acquire(out_dir, wait_s=SHORT_HOLDER_WAIT_S)

    held: list[OutDirLock] = []

    def _wait() -> None:
        while not held:
            time.sleep(poll_s)
            if not out_dir.is_dir():
                continue
            try:
                held.append(acquire(out_dir, wait_s=SHORT_HOLDER_WAIT_S))
            except LockHeld as exc:
                on_held(exc)
                return
            except OSError:
                continue  # e.g. the directory is still being set up: try again
            if on_acquired is not None:
                on_acquired(held[0])

    threading.Thread(target=_wait, name="hedge-kpi-out-dir-lock", daemon=True).start()
    return None


class DaemonLock:
    """The lock `run` holds on its out dir for its whole life, moved by a reload that changes
    the out dir: the new dir's lock is taken first (LockHeld when another publisher has it,
    and then nothing changes), and only then is the old one let go, so two daemons never
    publish into one dir."""

    def __init__(self) -> None:
        self._held: OutDirLock | None = None
        self._pending: Path | None = None  # the dir `hold`'s thread waits to lock
        self._moved = False
        self._guard = threading.Lock()

    @property
    def path(self) -> Path | None:
        """The out dir whose lock is held (None while it is pending)."""
        held = self._held
        return held.path if held is not None else None

    def hold(self, out_dir: Path, state_dir: Path, on_held: Callable[[LockHeld], None]) -> None:
        """Take the first out dir's lock (`hold_for_daemon`); LockHeld or OSError at once."""
        with self._guard:
            self._pending = out_dir
        held = hold_for_daemon(out_dir, state_dir, on_held, on_acquired=self._acquired_late)
        if held is not None:
            self._acquired_late(held)

    def _acquired_late(self, held: OutDirLock) -> None:
        with self._guard:
            self._pending = None
            if self._moved:  # a reload moved on before the first dir appeared
                held.release()
            else:
                self._held = held

    def ensure(self, out_dir: Path) -> None:
        """Hold the lock of the directory now at `out_dir` before anything is written there:
        it may have been created since (a reload moved the out dir into a state dir that has
        appeared since) or removed and made again. LockHeld or OSError when another publisher
        has it; the current lock then stays held."""
        with self._guard:
            if self._held is None and self._pending == out_dir:
                return  # `hold`'s thread takes it as the directory appears
        self.move(out_dir)

    def move(self, out_dir: Path) -> None:
        """Hold `out_dir`'s lock instead; on LockHeld or OSError the current one stays held."""
        with self._guard:
            if self._held is not None and self._held.holds(out_dir):
                return
            new = acquire(out_dir, wait_s=SHORT_HOLDER_WAIT_S)
            old, self._held, self._moved = self._held, new, True
        if old is not None:
            old.release()
