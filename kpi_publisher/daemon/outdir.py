"""Where the daemon publishes: the out dir made ready, a missing state dir waited for, and a
second writer of an output told from our own renames.

The published files are watched: an event on one whose (inode, mtime, size) is not what our
last publish renamed into place is another writer's (the executor writes its own
`kpis_v7.json` into the state dir), and is overwritten by a publish at once.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from pathlib import Path

import structlog

from kpi_publisher import fs
from kpi_publisher.config import Settings
from kpi_publisher.contract import OUTPUT_FILES
from kpi_publisher.daemon.metrics import PROM_FILES
from kpi_publisher.fs import inside

log = structlog.get_logger("hedge-kpi.daemon")

FOREIGN_LOG_EVERY_S = 600.0  # at most one foreign_writer line per output file per 10 minutes
STATE_DIR_LOG_EVERY_S = 60.0  # state_dir_missing is repeated this often while it is missing


def output_paths(settings: Settings) -> tuple[Path, ...]:
    """The published files (watched for writes that are not ours)."""
    return _output_paths(settings.publish_dir)


@functools.lru_cache(maxsize=8)
def _output_paths(publish_dir: Path) -> tuple[Path, ...]:
    return tuple(publish_dir / name for name in OUTPUT_FILES)


def prepare_out_dir(
    settings: Settings, keep: Iterable[Path] = (), lock: Callable[[Path], None] | None = None
) -> None:
    """Create the out dir, `lock` it (before anything is written there), and remove temp files
    a killed publisher left there (not `keep`, the publisher's own live spares)."""
    out_dir = settings.publish_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    if lock is not None:
        lock(out_dir)
    removed = fs.sweep_stale_temps(out_dir, OUTPUT_FILES, keep)
    if settings.prom_dir is not None:
        removed += fs.sweep_stale_temps(settings.prom_dir, PROM_FILES)
    if removed:
        log.info("stale_temps_removed", files=[str(p) for p in removed])


class StateDirWatch:
    """Says whether the state dir exists; while it does not, says so now and then.

    `run` never creates the state dir (a mistyped path must not become an empty tree), nor an
    out dir inside it: publishing there waits for the executor to create it."""

    def __init__(self, monotonic: Callable[[], float]) -> None:
        self._mono = monotonic
        self._missing_since: float | None = None
        self._next_log = 0.0

    def present(self, s: Settings) -> bool:
        now = self._mono()
        if s.state_dir.is_dir():
            if self._missing_since is not None:
                log.info(
                    "state_dir_found",
                    file=str(s.state_dir),
                    missing_s=round(now - self._missing_since, 1),
                )
                self._missing_since = None
            return True
        if self._missing_since is None:
            self._missing_since = now
            self._next_log = now
        if now >= self._next_log:
            log.warning(
                "state_dir_missing",
                file=str(s.state_dir),
                missing_s=round(now - self._missing_since, 1),
                out_dir=str(s.publish_dir),
                waiting="publishing waits for it"
                if inside(s.publish_dir, s.state_dir)
                else "publishing every source as missing",
            )
            self._next_log = now + STATE_DIR_LOG_EVERY_S
        return False


class OwnOutputs:
    """The stamp of each output we last renamed into place, and foreign writes to them."""

    def __init__(self, monotonic: Callable[[], float]) -> None:
        self._mono = monotonic
        self._stamps: dict[Path, fs.FileStamp | None] = {}
        self._logged: dict[Path, float] = {}
        self._unlogged: dict[Path, int] = {}

    def reset(self) -> None:
        """A new out dir: nothing published there yet."""
        self._stamps = {}

    def record(self, settings: Settings) -> None:
        """Remember the stamp of each output we just renamed into place."""
        self._stamps = {p: fs.stamp(p) for p in output_paths(settings)}

    def is_own(self, path: Path) -> bool:
        """True when `path` is still the output file we last renamed into place."""
        return path in self._stamps and fs.stamp(path) == self._stamps[path]

    def foreign(self, paths: Iterable[Path]) -> list[Path]:
        """Outputs among `paths` whose current file is not the one we last published (written
        or removed by someone else); each is logged as foreign_writer at most every 10 min."""
        foreign: list[Path] = []
        now = self._mono()
        for path in paths:
            if path not in self._stamps or fs.stamp(path) == self._stamps[path]:
                continue  # ours (or nothing published yet): no feedback loop on our renames
            if not path.parent.is_dir():
                continue  # the whole out dir went away: the publish retry deals with that
            foreign.append(path)
            last = self._logged.get(path)
            if last is not None and now - last < FOREIGN_LOG_EVERY_S:
                self._unlogged[path] = self._unlogged.get(path, 0) + 1
                continue
            self._logged[path] = now
            log.warning(
                "foreign_writer",
                file=str(path),
                change="removed" if not path.exists() else "written",
                action="overwritten by a publish now",
                unlogged_since_last=self._unlogged.pop(path, 0),
            )
        return foreign
