"""SIGHUP: switch the running daemon to freshly resolved Settings, or keep the running ones.

What differs decides what is rebuilt: other input files or another size cap reconfigure the
reader, which keeps the last good content of every source whose file did not move (a reload
must never blank good data) and starts afresh only for those that did; new timings go to the
watcher, a new out dir is prepared and watched, a new log format reconfigures logging. A state
dir that is not there (or not a directory) is refused, like an out dir nothing can be written
into: a mistyped path would blank every source. (At start-up a missing state dir is waited
for instead, see outdir.StateDirWatch.) The NAV history follows the new settings from the first
publish under them (`run.history_observer`). Any exception, not only ConfigError, keeps (and
restores) the running config: a reload must never end the process (supervisord marks a
program that keeps dying FATAL).
"""

from __future__ import annotations

import contextlib
import dataclasses
import stat
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from kpi_publisher import fs
from kpi_publisher.config import ConfigError, Settings
from kpi_publisher.contract import KPIS_FILE
from kpi_publisher.fs import inside
from kpi_publisher.lock import LockHeld
from kpi_publisher.sources import SourceReader, source_paths

if TYPE_CHECKING:
    from kpi_publisher.daemon.loop import Daemon

log = structlog.get_logger("hedge-kpi.daemon")


def input_paths(reader: SourceReader) -> list[Path]:
    """Every candidate input path, in source order (what the watcher watches)."""
    return [p for paths in reader.paths.values() for p in paths]


def changed_fields(old: Settings, new: Settings) -> list[str]:
    return sorted(
        f.name for f in dataclasses.fields(new) if getattr(new, f.name) != getattr(old, f.name)
    )


def apply_reload(daemon: Daemon) -> bool:
    """Reload `daemon`'s config; True when the new settings are in force."""
    if daemon.reload_settings is None:
        return False
    old = daemon.settings
    try:
        new = daemon.reload_settings()
    except Exception as exc:
        _reload_failed(old, exc)
        return False
    batches = daemon.batches
    saved = (daemon.reader, batches.debounce_s, batches.rescan_s)
    try:
        return _switch(daemon, old, new)
    except Exception as exc:
        daemon.settings = old
        daemon.reader, batches.debounce_s, batches.rescan_s = saved
        with contextlib.suppress(Exception):
            batches.set_paths(input_paths(daemon.reader))
        out_lock = daemon.out_lock
        if out_lock is not None and out_lock.path not in (None, old.publish_dir):
            with contextlib.suppress(Exception):  # the lock had moved: take the old dir's back
                out_lock.move(old.publish_dir)
        _reload_failed(old, exc)
        return False


def _reload_failed(old: Settings, exc: Exception) -> None:
    reason = str(exc) if isinstance(exc, ConfigError) else f"{type(exc).__name__}: {exc}"
    _refused(old, reason)


def _refused(old: Settings, reason: str) -> bool:
    log.error(
        "config_reload_failed",
        file=str(old.config_file) if old.config_file else None,
        reason=reason,
        kept="previous config",
    )
    return False


def _not_a_directory(path: Path) -> str | None:
    """Why `path` is no directory to read from (it is missing, a file, unreachable), or None."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        return exc.strerror or str(exc)
    return None if stat.S_ISDIR(mode) else "not a directory"


def _switch(daemon: Daemon, old: Settings, new: Settings) -> bool:
    changed = changed_fields(old, new)
    if new.state_dir != old.state_dir and (problem := _not_a_directory(new.state_dir)):
        return _refused(old, f"state_dir {new.state_dir}: {problem}")
    # An out dir inside a state dir that is not there is never created here (that would create
    # the state dir; only the running one can be missing here, a new one is refused above): the
    # first pass after the executor creates it prepares it.
    waits = inside(new.publish_dir, new.state_dir) and not new.state_dir.is_dir()
    if new.publish_dir != old.publish_dir and not waits:
        # The new dir's lock is taken before anything is written there: another publisher may
        # own it.
        try:
            new.publish_dir.mkdir(parents=True, exist_ok=True)
            if daemon.out_lock is not None:
                daemon.out_lock.move(new.publish_dir)
            try:
                # A dir nothing can be written into (read-only, no permission) is refused
                # too; tried once it is locked (its probe is a write).
                fs.probe_writable(new.publish_dir / KPIS_FILE)
            except OSError:
                if daemon.out_lock is not None:
                    with contextlib.suppress(LockHeld, OSError):  # else the next pass locks it
                        daemon.out_lock.move(old.publish_dir)
                raise
        except (LockHeld, OSError) as exc:
            reason = (exc.strerror or str(exc)) if isinstance(exc, OSError) else str(exc)
            return _refused(old, f"out dir {new.publish_dir}: {reason}")
    old_paths = input_paths(daemon.reader)
    daemon.settings = new
    if source_paths(new) != daemon.reader.paths or (
        (new.state_dir, new.max_input_bytes) != (old.state_dir, old.max_input_bytes)
    ):
        # The sources whose files moved start afresh (and are reported as changed); every other
        # keeps its last good content, parse and stamp.
        daemon.reader = daemon.reader.reconfigured(new)
    daemon.batches.debounce_s = new.debounce_ms / 1000.0
    daemon.batches.rescan_s = new.rescan_s
    if input_paths(daemon.reader) != old_paths:
        daemon.batches.set_paths(input_paths(daemon.reader))
    if new.publish_dir != old.publish_dir:
        if waits:
            daemon.out_dir_unprepared()
        else:
            daemon.prepare_out_dir()
    if new.log_format != old.log_format:
        from kpi_publisher import logs

        logs.configure(new.log_format)
    log.info(
        "config_reloaded",
        file=str(new.config_file) if new.config_file else None,
        changed=changed,
        # The /metrics listener is bound once, at start-up.
        needs_restart=[n for n in changed if n == "metrics_port"],
    )
    return True
