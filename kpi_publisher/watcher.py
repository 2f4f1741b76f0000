"""watchdog behind an iterator of debounced batches of changed input paths.

The pass runs on the thread that reads the events: `next_batch` waits (select) on the inotify
descriptor, opened with watchdog's inotify bindings, and on a wake-up pipe written by
`interrupt()` (stop, reload) and by any observer thread; its timeout is the caller's heartbeat
or retry deadline. No thread sits between the kernel and the pass. When inotify is out of
instances or watches, watchdog's `PollingObserver` runs in its own threads instead; its
handler (like that of any observer a caller passes in) only records a path and wakes the
worker: no I/O, and it never raises. Everything that can fail happens in the worker's thread,
inside `Watcher.next_batch`:

- coalescing: the first change after a quiet spell is returned at once (leading edge); further
  changes are gathered until `debounce_s` after the previous batch, so no change waits longer
  than `debounce_s` and a burst becomes a few batches;
- safety nets, because inotify can lose events: a periodic rescan, an immediate rescan when
  watchdog logs a queue overflow, observer/emitter liveness checks, and a re-watch when a
  watched directory is deleted, recreated or replaced (inode change);
- a fall-back to `PollingObserver` when inotify is out of instances or watches.

The watcher only says which paths had events; whether a file changed is not its question. The
rescan asks a probe which inputs changed since they were last read: in the daemon that is the
`SourceReader` (`unread_changes`), the one owner of "did this source change". A watcher used
on its own keeps a `fs.StampLedger` of what it handed out instead.

Only the paths given to the watcher count: the inputs, and the publisher's own outputs (so
that a write by another process to an output is seen; the daemon tells its own renames from
foreign ones by their stamp). Temp names and dot-files are never in that set.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import select
import struct
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import structlog
from watchdog.events import (
    DirDeletedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers.api import BaseObserver
from watchdog.observers.inotify_c import (
    InotifyConstants,
    inotify_add_watch,
    inotify_init,
)
from watchdog.observers.polling import PollingObserver

from kpi_publisher import fs

log = structlog.get_logger("hedge-kpi.watcher")

# The events that may mean "an input's content changed" (perf_reliability 1.1): rename into
# place (moved, or created when the temp lived in another dir), in-place write finished
# (closed), removal (deleted). "modified" is never read on for inotify: most reads it triggers
# are torn. The polling observer has no close events, so there it takes "modified" too.
INOTIFY_EVENTS: tuple[type[FileSystemEvent], ...] = (
    FileMovedEvent,
    FileCreatedEvent,
    FileClosedEvent,
    FileDeletedEvent,
    DirDeletedEvent,
)
POLLING_EVENTS: tuple[type[FileSystemEvent], ...] = (*INOTIFY_EVENTS, FileModifiedEvent)
_INOTIFY_TRIGGERS = frozenset({"moved", "created", "closed", "deleted"})
_POLLING_TRIGGERS = _INOTIFY_TRIGGERS | {"modified"}
# errno values meaning "inotify is out of instances or watches": poll instead.
_FALLBACK_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOSPC})
# Loggers on which watchdog reports a kernel queue overflow (its only overflow signal).
OVERFLOW_LOGGERS: tuple[str, ...] = ("watchdog.observers.inotify_c", "watchdog.observers.inotify")
REWATCH_RETRY_S = 0.1  # how often a missing watched directory is looked for again
POLL_INTERVAL_S = 0.5  # PollingObserver's scan interval when inotify is unavailable
STOP_JOIN_S = 0.5  # how long stopping waits for watchdog's threads


IN = InotifyConstants
# What the reader asks inotify for on each watched directory (the INOTIFY_EVENTS above, and
# the directory's own removal or rename, which ends its watch).
READER_MASK = (
    IN.IN_MOVED_TO
    | IN.IN_MOVED_FROM
    | IN.IN_CREATE
    | IN.IN_CLOSE_WRITE
    | IN.IN_DELETE
    | IN.IN_DELETE_SELF
    | IN.IN_MOVE_SELF
    | IN.IN_ONLYDIR
)
_FILE_TRIGGERS = IN.IN_MOVED_TO | IN.IN_MOVED_FROM | IN.IN_CREATE | IN.IN_CLOSE_WRITE | IN.IN_DELETE
_WATCH_GONE = IN.IN_DELETE_SELF | IN.IN_MOVE_SELF | IN.IN_IGNORED
_EVENT_HEADER = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len
READ_BUFFER_BYTES = 64 * 1024


# watchdog's own wording for the limits (operators grep for it).
_LIMIT_TEXT = {
    errno.ENOSPC: "inotify watch limit reached",
    errno.EMFILE: "inotify instance limit reached",
}


def _inotify_error(what: str, code: int, *filename: str) -> OSError:
    return OSError(code, _LIMIT_TEXT.get(code, f"{what}: {os.strerror(code)}"), *filename)


class InotifyReader:
    """One inotify instance read by its owner's thread (no threads of its own).

    Opened with watchdog's inotify bindings; `fileno()` is what the owner waits on, `read()`
    returns what is queued without blocking. OSError from the constructor or `add` carries
    the errno (EMFILE/ENOSPC: inotify is out of instances or watches).
    """

    def __init__(self) -> None:
        fd = inotify_init()
        if fd < 0:
            raise _inotify_error("inotify_init", ctypes.get_errno())
        os.set_inheritable(fd, False)
        os.set_blocking(fd, False)
        self._fd = fd
        self._dirs: dict[int, str] = {}

    def fileno(self) -> int:
        return self._fd

    def add(self, directory: str) -> bool:
        """Watch `directory`; False when it is gone (or no longer a directory)."""
        wd = inotify_add_watch(self._fd, os.fsencode(directory), READER_MASK)
        if wd < 0:
            code = ctypes.get_errno()
            if code in (errno.ENOENT, errno.ENOTDIR):
                return False
            raise _inotify_error("inotify_add_watch", code, directory)
        self._dirs[wd] = directory
        return True

    def read(self) -> list[tuple[str | None, int, bytes]]:
        """Queued events as (watched directory or None, mask, name); [] when none are queued."""
        try:
            buffer = os.read(self._fd, READ_BUFFER_BYTES)
        except (BlockingIOError, InterruptedError):
            return []
        events: list[tuple[str | None, int, bytes]] = []
        offset = 0
        while offset + _EVENT_HEADER.size <= len(buffer):
            wd, mask, _cookie, length = _EVENT_HEADER.unpack_from(buffer, offset)
            start = offset + _EVENT_HEADER.size
            name = buffer[start : start + length].rstrip(b"\0")
            offset = start + length
            events.append((self._dirs.get(wd), mask, name))
        return events

    def is_alive(self) -> bool:
        return self._fd >= 0

    def close(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)  # removes every watch


def real_key(path: Path) -> str:
    """The string watchdog reports for `path`: the real path of its directory plus its name."""
    return os.path.join(os.path.realpath(path.parent), path.name)


def _dir_stamp(directory: str) -> int | None:
    """The inode of `directory`, or None when it is missing or not a directory."""
    try:
        st = os.stat(directory)
    except OSError:
        return None
    return st.st_ino if os.path.isdir(directory) else None


class _Handler(FileSystemEventHandler):
    """Records interesting paths and wakes the worker. Pure bookkeeping; never raises."""

    def __init__(self, watcher: Watcher) -> None:
        super().__init__()
        self._watcher = watcher

    def dispatch(self, event: FileSystemEvent) -> None:
        try:
            self._watcher._on_event(event)
        except BaseException as exc:  # a raising handler would kill the observer thread
            self._watcher._handler_errors += 1
            self._watcher._handler_error = f"{type(exc).__name__}: {exc}"


class _OverflowHook(logging.Handler):
    """Turns watchdog's "queue overflowed" warning into an immediate rescan."""

    def __init__(self, watcher: Watcher) -> None:
        super().__init__(level=logging.WARNING)
        self._watcher = watcher

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if "overflow" in record.getMessage().lower():
                self._watcher._request_rescan("queue_overflow")
        except Exception:  # noqa: S110 - logging must never break watchdog's thread
            pass


ObserverFactory = Callable[[], BaseObserver]
# The rescan's question: which inputs changed since they were last read?
Probe = Callable[[], set[Path]]


def _no_move_pairing_delay(observer: BaseObserver) -> None:
    """Stop watchdog holding IN_MOVED_FROM events back for 0.5 s to pair them with IN_MOVED_TO.

    watchdog's emitter sleeps out that delay (uninterruptibly) whenever it reaches the
    MOVED_FROM before the reader thread has queued the matching MOVED_TO, which under load
    delays a rename-into-place by up to 0.5 s. Pairing buys us nothing: an unpaired
    MOVED_TO arrives as "created" for the target, which is all the handler needs.
    """
    for emitter in list(observer.emitters):
        group = getattr(emitter, "_inotify", None)
        grouper = getattr(group, "_move_event_grouper", None)
        queue = getattr(grouper, "_queue", None)
        if queue is not None and hasattr(queue, "delay"):
            queue.delay = 0.0


def _stop_quietly(observer: BaseObserver) -> None:
    with contextlib.suppress(Exception):
        observer.stop()
        observer.join(STOP_JOIN_S)


def _inotify_observer() -> BaseObserver:
    """watchdog's threaded inotify observer (for callers that want one; the default reads
    inotify on the caller's thread)."""
    from watchdog.observers.inotify import InotifyObserver

    return InotifyObserver()


def _polling_observer() -> BaseObserver:
    return PollingObserver(timeout=POLL_INTERVAL_S)


class Watcher:
    """Watches the directories holding `paths`; `next_batch` returns debounced changes.

    `paths` are the input files (as the caller names them; batches contain these objects).
    Times are seconds on the monotonic clock. Without `observer_factory`, inotify is read on
    the caller's thread inside `next_batch`; with one (or when polling), watchdog's threads
    call only `_on_event` / `_request_rescan`; everything else runs on the caller's thread.
    """

    def __init__(
        self,
        paths: Iterable[Path],
        *,
        debounce_s: float = 0.05,
        rescan_s: float = 2.0,
        observer_factory: ObserverFactory | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        outputs: Iterable[Path] = (),
        probe: Probe | None = None,
    ) -> None:
        self.debounce_s = debounce_s
        self.rescan_s = rescan_s
        self._observer_factory = observer_factory
        self._mono = monotonic
        self._lock = threading.Lock()
        # The wake-up pipe: written on a change seen by an observer thread, a rescan request
        # or an interrupt; `next_batch` waits on it beside the inotify descriptor.
        self._wake_lock = threading.Lock()
        self._wake_r, self._wake_w = -1, -1
        self._open_wake_pipe()
        self._interrupt = threading.Event()  # an interrupt only (signals): ends any wait
        self._pending: set[Path] = set()
        self._rescan_reason: str | None = None
        self._rewatch_reason: str | None = None
        self._handler_errors = 0  # events our handler failed to record (logged by _maintain)
        self._handler_error = ""
        self._handler_errors_logged = 0
        self._watch_failures = 0
        self._handler = _Handler(self)
        self._overflow_hook = _OverflowHook(self)
        self._observer: BaseObserver | None = None
        self._reader: InotifyReader | None = None  # inotify read on the caller's thread
        self._polling = False
        self._watched: dict[str, int | None] = {}  # real dir -> inode when scheduled
        self._lost: set[str] = set()  # watched directories that vanished
        self._last_batch = -1e18
        self._next_maintain = 0.0
        self.restarts = 0  # how many times the observer was rebuilt (tests, logs)
        self._outputs: tuple[Path, ...] = tuple(outputs)
        # Tells the publisher's own current output files; events on them are its own renames.
        self._is_own: Callable[[Path], bool] | None = None
        # Without a probe the watcher keeps its own record of what it handed out.
        self._ledger = fs.StampLedger() if probe is None else None
        self._probe: Probe = probe if probe is not None else self._ledger_changes
        self._set_paths(paths)

    # -- the wake-up pipe (any thread) ----------------------------------------------------

    def _open_wake_pipe(self) -> None:
        with self._wake_lock:
            if self._wake_r < 0:
                self._wake_r, self._wake_w = os.pipe()
                os.set_blocking(self._wake_r, False)
                os.set_blocking(self._wake_w, False)

    def _close_wake_pipe(self) -> None:
        with self._wake_lock:
            fds, (self._wake_r, self._wake_w) = (self._wake_r, self._wake_w), (-1, -1)
        for fd in fds:
            if fd >= 0:
                os.close(fd)

    def _wake(self) -> None:
        """Wake `next_batch`. Never raises (observer threads and signal handlers call it)."""
        with self._wake_lock:
            if self._wake_w >= 0:
                with contextlib.suppress(OSError):  # full: a wake-up is already pending
                    os.write(self._wake_w, b"\0")

    def _drain_wake(self) -> None:
        with contextlib.suppress(OSError):
            while os.read(self._wake_r, 4096):
                pass

    # -- configuration ------------------------------------------------------------------

    def _set_paths(self, paths: Iterable[Path]) -> None:
        self._inputs = tuple(dict.fromkeys(paths))
        self._paths = tuple(dict.fromkeys((*self._inputs, *self._outputs)))
        self._resolve()
        if self._ledger is not None:
            self._ledger = fs.StampLedger()
            self._ledger.look(self._inputs)

    def _resolve(self) -> bool:
        """Map the real paths watchdog reports to our paths; True when that mapping changed
        (a state dir that is a symlink was re-pointed)."""
        by_key = {real_key(p): p for p in self._paths}
        if by_key == getattr(self, "_by_key", None):
            return False
        self._by_key = by_key
        # The same map keyed as raw inotify events name a file: (watched directory, name bytes).
        self._by_name = {
            (os.path.dirname(k), os.fsencode(os.path.basename(k))): p for k, p in by_key.items()
        }
        self._dirs = tuple(dict.fromkeys(os.path.dirname(k) for k in by_key))
        return True

    def set_paths(self, paths: Iterable[Path]) -> None:
        """Watch a new set of input paths (after a config reload); rebuilds the observer."""
        self._set_paths(paths)
        self._restart("paths changed")
        with self._lock:
            self._pending.update(self._inputs)
        self._wake()

    def set_outputs(self, outputs: Iterable[Path]) -> None:
        """Watch a new set of output paths; rebuilds a running observer when their
        directories are not watched yet."""
        outputs = tuple(outputs)
        if outputs == self._outputs:
            return
        self._outputs = outputs
        dirs = self._dirs
        self._set_paths(self._inputs)
        if self.observer is not None and self._dirs != dirs:
            self._restart("out dir changed")

    @property
    def polling(self) -> bool:
        """True when inotify was unavailable and the polling observer is in use."""
        return self._polling

    @property
    def observer(self) -> BaseObserver | InotifyReader | None:
        """What delivers the events now: the inotify reader, a watchdog observer, or None."""
        return self._reader if self._reader is not None else self._observer

    # -- watchdog-thread side (no I/O, never raises) ------------------------------------

    def _on_event(self, event: FileSystemEvent) -> None:
        kind = event.event_type
        if event.is_directory:
            if kind == "deleted" and event.src_path in self._watched:
                self._rewatch_reason = f"directory deleted: {event.src_path}"
                self._wake()
            return
        if kind not in (_POLLING_TRIGGERS if self._polling else _INOTIFY_TRIGGERS):
            return
        hit = None
        for raw in (event.src_path, event.dest_path):
            path = self._by_key.get(raw if isinstance(raw, str) else os.fsdecode(raw))
            if path is not None:
                hit = path
                with self._lock:
                    self._pending.add(path)
        if hit is not None:
            self._wake()

    def _request_rescan(self, reason: str) -> None:
        self._rescan_reason = reason
        self._wake()

    # -- the inotify reader (caller's thread) --------------------------------------------

    def _on_inotify(self, directory: str | None, mask: int, name: bytes) -> None:
        """One raw inotify event: record the path, or ask for a rescan or a re-watch."""
        if mask & IN.IN_Q_OVERFLOW:
            self._rescan_reason = "queue_overflow"
            return
        if directory is None:
            return
        if mask & _WATCH_GONE:
            self._rewatch_reason = f"directory deleted or moved: {directory}"
            return
        if mask & IN.IN_ISDIR or not mask & _FILE_TRIGGERS:
            return
        path = self._by_name.get((directory, name))
        if path is not None:
            with self._lock:
                self._pending.add(path)

    def _pump(self) -> None:
        """Record every event the reader has queued. Never raises: a failure is counted and
        logged by `_maintain`, and the rescan covers the event."""
        reader = self._reader
        if reader is None:
            return
        try:
            events = reader.read()
        except OSError as exc:
            self._rewatch_reason = f"inotify read failed: {exc.strerror or exc}"
            return
        for directory, mask, name in events:
            try:
                self._on_inotify(directory, mask, name)
            except Exception as exc:
                self._handler_errors += 1
                self._handler_error = f"{type(exc).__name__}: {exc}"

    def _wait(self, timeout_s: float) -> None:
        """Sleep until an inotify event, a wake-up or `timeout_s`; record what arrived."""
        fds = [self._wake_r]
        reader = self._reader
        if reader is not None:
            fds.append(reader.fileno())
        try:
            ready, _, _ = select.select(fds, [], [], max(0.0, timeout_s))
        except InterruptedError:
            return
        if self._wake_r in ready:
            self._drain_wake()
        if reader is not None and reader.fileno() in ready:
            self._pump()

    def interrupt(self) -> None:
        """End the current `next_batch` wait now (signal handlers call this)."""
        self._interrupt.set()
        self._wake()

    def set_probe(self, probe: Probe) -> None:
        """Let the rescan ask `probe` (the reader) which inputs changed since they were read."""
        self._probe, self._ledger = probe, None

    # -- observer lifecycle -------------------------------------------------------------

    def _build_observer(
        self, factory: ObserverFactory, events: tuple[type[FileSystemEvent], ...]
    ) -> BaseObserver:
        self._resolve()
        observer = factory()
        watched: dict[str, int | None] = {}
        try:
            for directory in self._dirs:
                inode = _dir_stamp(directory)
                if inode is None:
                    continue  # looked for again by _maintain
                observer.schedule(
                    self._handler, directory, recursive=False, event_filter=list(events)
                )
                watched[directory] = inode
            observer.start()
        except BaseException:
            with contextlib.suppress(Exception):
                observer.stop()
            raise
        _no_move_pairing_delay(observer)
        self._watched = watched
        return observer

    def _build_reader(self) -> InotifyReader:
        self._resolve()
        reader = InotifyReader()
        watched: dict[str, int | None] = {}
        try:
            for directory in self._dirs:
                inode = _dir_stamp(directory)
                if inode is not None and reader.add(directory):
                    watched[directory] = inode  # a missing one is looked for by _maintain
        except BaseException:
            reader.close()
            raise
        self._watched = watched
        return reader

    def _start_observer(self) -> None:
        if not self._polling:
            try:
                if self._observer_factory is None:
                    self._reader = self._build_reader()
                else:
                    self._observer = self._build_observer(self._observer_factory, INOTIFY_EVENTS)
                return
            except OSError as exc:
                if exc.errno not in _FALLBACK_ERRNOS:
                    raise
                log.warning(
                    "watch_fallback_polling",
                    reason=f"inotify unavailable: {exc.strerror or exc}",
                    interval_s=POLL_INTERVAL_S,
                )
                self._polling = True
        self._observer = self._build_observer(_polling_observer, POLLING_EVENTS)

    def _stop_observer(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.close()
        observer, self._observer = self._observer, None
        if observer is None:
            return
        # watchdog's stop() joins its emitters without a timeout; bound the whole of it.
        stopper = threading.Thread(target=_stop_quietly, args=(observer,), daemon=True)
        stopper.start()
        stopper.join(STOP_JOIN_S)

    def _restart(self, reason: str) -> None:
        self._stop_observer()
        self.restarts += 1
        try:
            self._start_observer()
        except OSError as exc:
            # No observer now: the rescan keeps covering every input, and the next scheduled
            # maintenance (every rescan_s, never sooner) tries again.
            self._watch_failures += 1
            if self._watch_failures == 1 or self._watch_failures % 30 == 0:
                log.error(
                    "watch_failed",
                    reason=f"{reason}; cannot watch: {exc.strerror or exc}",
                    attempts=self._watch_failures,
                )
            return
        self._watch_failures = 0
        log.warning("rewatch", reason=reason, dirs=sorted(self._watched), polling=self._polling)

    def start(self) -> None:
        """Start watching; the rescan baseline is taken now.

        If no observer can be started, the failure is logged and retried at every
        maintenance; the rescan covers the inputs meanwhile.
        """
        self._open_wake_pipe()
        for name in OVERFLOW_LOGGERS:
            logging.getLogger(name).addHandler(self._overflow_hook)
        if self._ledger is not None:
            self._ledger.look(self._inputs)
        try:
            self._start_observer()
        except OSError as exc:
            # _dead_reason() sees no observer; the next maintenance tries again.
            self._watch_failures += 1
            log.error("watch_failed", reason=f"cannot watch: {exc.strerror or exc}", attempts=1)
        self._next_maintain = self._mono() + self.rescan_s

    def stop(self) -> None:
        """Close the inotify reader or stop watchdog's threads (bounded wait), detach the
        overflow hook and close the wake-up pipe."""
        self._stop_observer()
        for name in OVERFLOW_LOGGERS:
            logging.getLogger(name).removeHandler(self._overflow_hook)
        self._close_wake_pipe()

    def __enter__(self) -> Watcher:
        self.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self.stop()

    # -- safety nets (caller's thread) ---------------------------------------------------

    def _dead_reason(self) -> str | None:
        observer = self._observer
        if observer is None and self._reader is None:
            return "observer not running"
        if observer is None:
            pass  # the reader has no thread to die; a lost watch shows in the inodes below
        elif not observer.is_alive():
            return "observer thread died"
        else:
            for emitter in list(observer.emitters):
                if not emitter.is_alive():
                    return f"emitter for {emitter.watch.path} died"
            reader = getattr(observer, "_inotify_fd", None)
            if isinstance(reader, threading.Thread) and not reader.is_alive():
                return "inotify reader thread died"
        if self._resolve():
            return "a watched directory now resolves elsewhere (symlink re-pointed)"
        for directory in self._dirs:
            inode = _dir_stamp(directory)
            if inode != self._watched.get(directory):
                if inode is None:
                    return f"directory missing: {directory}"
                return f"directory replaced or appeared: {directory}"
        return None

    def _ledger_changes(self) -> set[Path]:
        assert self._ledger is not None
        changed = self._ledger.moved()
        self._ledger.look(changed)  # reported once: the caller reads them after this
        return changed

    def rescan(self) -> set[Path]:
        """Inputs that changed since they were last read (the probe's answer). The outputs are
        left out: they change on every publish, and the heartbeat rewrites them anyway should
        a foreign write's event be lost."""
        inputs = set(self._inputs)
        return {p for p in self._probe() if p in inputs}

    def _log_handler_errors(self) -> None:
        errors = self._handler_errors
        if errors != self._handler_errors_logged:
            log.error(
                "watch_handler_failed",
                events=errors - self._handler_errors_logged,
                total=errors,
                reason=self._handler_error,
                covered_by="rescan",
            )
            self._handler_errors_logged = errors

    def _maintain(self, now: float) -> None:
        """Liveness, re-watch and rescan. Runs on the caller's thread, at most every rescan_s."""
        self._log_handler_errors()
        dead = self._rewatch_reason or self._dead_reason()
        self._rewatch_reason = None
        if dead is not None:
            self._lost.update(d for d in self._watched if _dir_stamp(d) is None)
            self._restart(dead)
        self._lost = {d for d in self._lost if _dir_stamp(d) is None}
        reason, self._rescan_reason = self._rescan_reason, None
        self._pump()  # events already queued were not lost: they are pending, not found
        changed = self.rescan()
        with self._lock:
            # A change whose event waits in a debounce window is unread but not missed.
            missed = changed - self._pending
            self._pending.update(changed)
        if missed:
            log.info(
                "rescan_found_changes",
                reason=reason or "periodic",
                paths=sorted(str(p) for p in missed),
            )
        elif reason is not None:
            log.info("rescan", reason=reason)
        # A watched directory that vanished is looked for often, so events resume quickly.
        fast = bool(self._lost)
        self._next_maintain = now + (min(self.rescan_s, REWATCH_RETRY_S) if fast else self.rescan_s)

    # -- the batches ----------------------------------------------------------------------

    def set_own_outputs(self, is_own: Callable[[Path], bool] | None) -> None:
        """Give the predicate that tells the publisher's own current output files. An event on
        an output that is still the file the publisher renamed into place is its own rename: it
        is dropped before it can count as a batch, so it never opens a debounce window that
        would delay the next input change (a foreign write still comes through)."""
        self._is_own = is_own

    def _has_pending(self) -> bool:
        """True when a change is pending, once the publisher's own renames are dropped."""
        with self._lock:
            if self._is_own is not None and self._pending and self._outputs:
                for path in [p for p in self._pending if p in self._outputs]:
                    if self._is_own(path):
                        self._pending.discard(path)
            return bool(self._pending)

    def _take(self, now: float) -> frozenset[Path]:
        with self._lock:
            batch = frozenset(self._pending)
            self._pending.clear()
        if batch:
            self._last_batch = now
            if self._ledger is not None:
                # Handed out: the next rescan looks only for what events missed. (With a probe,
                # the reader records what it reads.)
                self._ledger.look(batch & set(self._inputs))
        return batch

    def next_batch(self, timeout_s: float) -> frozenset[Path]:
        """Changed input paths, debounced; empty after `timeout_s` or an `interrupt()`.

        The first change after a quiet spell (no batch within `debounce_s`) returns at once;
        otherwise changes are gathered until `debounce_s` after the previous batch.
        """
        deadline = self._mono() + max(0.0, timeout_s)
        while True:
            now = self._mono()
            if self._interrupt.is_set():
                self._interrupt.clear()
                return self._take(now) if now >= self._last_batch + self.debounce_s else frozenset()
            if now >= self._next_maintain or self._rescan_reason or self._rewatch_reason:
                self._maintain(now)
            if self._has_pending():
                ready_at = self._last_batch + self.debounce_s
                if now >= ready_at or now >= deadline:
                    return self._take(now)
                # Gathering: events are recorded; an interrupt or the bound ends this wait.
                self._wait(min(ready_at, deadline) - now)
                continue
            if now >= deadline:
                return frozenset()
            if self._rescan_reason or self._rewatch_reason:
                continue
            self._wait(min(deadline, self._next_maintain) - now)
