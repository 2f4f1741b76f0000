"""Survival: what keeps a publisher alive, or ends it in a way supervisord can act on.

- `CrashLog` and `crash_backoff_s`: recent crash times in a private per-user file, so a crash
  loop under supervisord slows down (1, 2, 4 ... 30 s before each exit).
- `Liveness`: a thread that exits the process with 70 when the loop stops making progress
  (a read or fsync hung on a dying disk), not when the whole process was frozen.
- `FailureStreak`: one `publish_failed` (or `prom_failed`) line per failure streak, a reminder
  every minute and `publish_recovered` at its end (the retry schedule itself is planned in
  `plan`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import orjson
import structlog

from kpi_publisher import fs
from kpi_publisher.contract import ExitCode

log = structlog.get_logger("hedge-kpi.daemon")

PUBLISH_REMINDER_S = 60.0  # publish_still_failing is logged this often during a failure streak

# -- crash backoff ---------------------------------------------------------------------------

CRASH_WINDOW_S = 600.0
CRASH_BACKOFF_CAP_S = 30.0


def crash_backoff_s(recent_crashes: int, cap_s: float = CRASH_BACKOFF_CAP_S) -> float:
    """Seconds to wait before exiting after a crash: 1, 2, 4 ... capped; 0 with no crash."""
    if recent_crashes <= 0:
        return 0.0
    return float(min(cap_s, 2.0 ** (recent_crashes - 1)))


RUNTIME_DIR_ENV = "KPI_RUNTIME_DIR"
RUNTIME_DIR_NAME = "hedge-kpi"
CRASH_FILE_MAX_BYTES = 64 * 1024


def runtime_dir_candidates(environ: Mapping[str, str] | None = None) -> list[Path]:
    """Private places for the crash log, best first: $KPI_RUNTIME_DIR, then
    $XDG_STATE_HOME/hedge-kpi, ~/.local/state/hedge-kpi, and <temp dir>/hedge-kpi-<uid>."""
    env = os.environ if environ is None else environ
    found: list[Path] = []
    if env.get(RUNTIME_DIR_ENV):
        found.append(Path(env[RUNTIME_DIR_ENV]))
    xdg = env.get("XDG_STATE_HOME", "")
    if os.path.isabs(xdg):
        found.append(Path(xdg) / RUNTIME_DIR_NAME)
    home = env.get("HOME", "")
    if os.path.isabs(home) and home != "/":
        found.append(Path(home) / ".local" / "state" / RUNTIME_DIR_NAME)
    found.append(Path(tempfile.gettempdir()) / f"{RUNTIME_DIR_NAME}-{os.geteuid()}")
    return found


def runtime_dir(environ: Mapping[str, str] | None = None) -> Path | None:
    """The first candidate that is (or can be made) private: ours, 0700, not a symlink.

    A candidate that cannot be created or is not ours is skipped with a warning; None when
    none is usable (the crash log then counts this process's crash only)."""
    for candidate in runtime_dir_candidates(environ):
        try:
            candidate.parent.mkdir(parents=True, exist_ok=True)
            return fs.private_dir(candidate)
        except OSError as exc:
            log.warning(
                "runtime_dir_unusable", file=str(candidate), reason=exc.strerror or str(exc)
            )
    return None


def runtime_file(
    publish_dir: Path, prefix: str, suffix: str, environ: Mapping[str, str] | None = None
) -> Path:
    """`<runtime dir>/<prefix>-<digest of publish_dir><suffix>`: one file per out dir in the
    private per-user directory (see `runtime_dir`). The digest is of the path's bytes, so a
    path that is not valid UTF-8 (which the config accepts) names a file too."""
    digest = hashlib.sha1(os.fsencode(publish_dir), usedforsecurity=False).hexdigest()[:12]
    directory = runtime_dir(environ) or runtime_dir_candidates(environ)[-1]
    return directory / f"{prefix}-{digest}{suffix}"


def default_crash_file(publish_dir: Path, environ: Mapping[str, str] | None = None) -> Path:
    """Where crash times are kept: a private per-user directory (see `runtime_dir`), never the
    state dir (the contract forbids it) nor a predictable name in a world-writable one."""
    return runtime_file(publish_dir, "crashes", ".json", environ)


@dataclass
class CrashLog:
    """Recent crash times (epoch s) in a small JSON file, so a crash loop under supervisord
    (which restarts a process that ran past `startsecs` at once, forever) slows down.

    The file's directory is verified private before each use and the file is read with the
    inputs' defensive reader (a FIFO never blocks, size capped, no symlink out of the
    directory). Nothing here ever raises: an unusable file only loses earlier crashes."""

    path: Path
    window_s: float = CRASH_WINDOW_S

    def _private(self) -> bool:
        try:
            fs.private_dir(self.path.parent)
        except Exception as exc:  # any failure here must not stop the daemon
            log.warning(
                "crash_log_unusable",
                file=str(self.path),
                reason=f"directory not private: {getattr(exc, 'strerror', None) or exc}",
            )
            return False
        return True

    def _load(self) -> list[float]:
        try:
            raw, _ = fs.read_bytes(self.path, max_bytes=CRASH_FILE_MAX_BYTES, root=self.path.parent)
            data = orjson.loads(raw)
            if not isinstance(data, list):
                return []
            times = [float(t) for t in data if isinstance(t, (int, float))]
        except FileNotFoundError:
            return []
        except Exception as exc:  # any failure here must not stop the daemon
            log.warning(
                "crash_log_unreadable", file=str(self.path), reason=f"{type(exc).__name__}: {exc}"
            )
            return []
        return [t for t in times if t == t and abs(t) != float("inf")]

    def record(self, now: float) -> int:
        """Add a crash at `now`; returns how many crashes fall within the window."""
        if not self._private():
            return 1  # this crash alone: nothing is read from or written to that place
        recent = [t for t in self._load() if now - self.window_s <= t <= now] + [now]
        try:
            fs.write_atomic(self.path, orjson.dumps(recent), fsync=False)
        except Exception as exc:  # counted for this crash all the same
            log.warning(
                "crash_log_unwritable", file=str(self.path), reason=f"{type(exc).__name__}: {exc}"
            )
        return len(recent)

    def clear(self) -> None:
        with contextlib.suppress(OSError):
            self.path.unlink()


# -- liveness of the loop -------------------------------------------------------------------------

STUCK_MIN_S = 60.0
STUCK_HEARTBEATS = 12


def stuck_limit_s(heartbeat_s: float) -> float:
    """Seconds without loop progress after which the loop counts as stuck (>= 60 s)."""
    return max(STUCK_MIN_S, STUCK_HEARTBEATS * heartbeat_s)


class Liveness:
    """A thread that ends the process (exit 70) when the loop stops making progress, e.g. a
    read or fsync hung on a dying disk. supervisord has no liveness check of its own: it
    would show such a process RUNNING forever; after the exit it restarts it.

    `limit_s` is asked again at every look, so a reload that changes the heartbeat moves the
    limit with it (a limit kept from start would end a daemon whose heartbeat was raised past
    it, or miss a hang for hours after the heartbeat was lowered)."""

    def __init__(
        self,
        progress: Callable[[], float],
        limit_s: Callable[[], float],
        exit_fn: Callable[[int], object],
        monotonic: Callable[[], float],
    ) -> None:
        self._progress = progress
        self._limit_s = limit_s
        self._exit = exit_fn
        self._mono = monotonic
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="hedge-kpi-liveness", daemon=True)

    def _watch(self) -> None:
        mark = self._progress()
        frozen_s = 0.0  # seconds the whole process was stopped since the mark last moved
        while True:
            limit_s = self._limit_s()
            interval = min(1.0, limit_s / 4)
            before = self._mono()
            if self._stop.wait(interval):
                return
            now = self._mono()
            progress = self._progress()
            if progress != mark:
                mark, frozen_s = progress, 0.0
            # A sleep that overshot by more than its own length: this thread was not
            # scheduled at all (SIGSTOP, docker pause, a host freeze). The loop was frozen
            # for as long; that time is no evidence against it.
            late_s = now - before - interval
            if late_s > interval:
                frozen_s += late_s
                log.warning("process_resumed", frozen_s=round(late_s, 1))
            stalled_s = now - progress - frozen_s
            if stalled_s > limit_s:
                log.critical(
                    "worker_stuck",
                    stalled_s=round(stalled_s, 1),
                    limit_s=limit_s,
                    exit_code=int(ExitCode.WORKER_STUCK),
                )
                self._exit(int(ExitCode.WORKER_STUCK))
                return

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()


class FailureStreak:
    """The log lines of a failure streak of one kind ("publish", "prom"): one `<kind>_failed`
    line when it starts, `<kind>_still_failing` (failures, failing_s) every
    PUBLISH_REMINDER_S, `<kind>_recovered` (failures, failing_s) on the first success after
    it. A write that fails on every publish, heartbeats included, is one line, not 720 an
    hour. The counting is the caller's (the plan's for publishes)."""

    def __init__(self, kind: str) -> None:
        self._kind = kind
        self._since = 0.0
        self._next_reminder = 0.0

    def failed(
        self, failures_before: int, file: str, reason: str, now: float, *, trace: bool = False
    ) -> None:
        """One `<kind>_failed` line per failure streak, then a reminder every minute."""
        if failures_before == 0:
            self._since = now
            self._next_reminder = now + PUBLISH_REMINDER_S
            (log.exception if trace else log.error)(
                f"{self._kind}_failed", file=file, reason=reason
            )
        elif now >= self._next_reminder:
            self._next_reminder = now + PUBLISH_REMINDER_S
            log.error(
                f"{self._kind}_still_failing",
                file=file,
                reason=reason,
                failures=failures_before + 1,
                failing_s=round(max(0.0, now - self._since), 1),
            )

    def recovered(self, failures: int, now: float) -> None:
        """The streak of `failures` is over."""
        if failures:
            log.info(
                f"{self._kind}_recovered",
                failures=failures,
                failing_s=round(max(0.0, now - self._since), 1),
            )
