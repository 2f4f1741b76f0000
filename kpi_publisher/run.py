"""`hedge-kpi run`: the long-running publisher that supervisord runs as `hedge:kpi`.

Prints nothing but structlog lines (JSON when stdout is not a TTY). Exit codes: 0 after
SIGTERM/SIGINT, 2 for an unusable config or when another process already publishes into the
same out dir (lock.py; the log line names its pid), 3 when the out dir cannot be created, 1
after an internal crash (having backed off first, see daemon.survival.CrashLog).

This is the composition root: `build_daemon` makes the reader, the watcher (whose rescan asks
the reader which inputs changed since it read them) and the `Daemon` that receives both.

A stdout that is closed or whose reader went away never stops publishing: SIGPIPE is
ignored and log lines that cannot be written are dropped (logs.SafePrintLogger).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kpi_publisher import lock, logs
from kpi_publisher.cli import PATH_OPTION_FIELDS, add_path_options
from kpi_publisher.config import ConfigError, Settings, resolve
from kpi_publisher.contract import ExitCode
from kpi_publisher.daemon import (
    Daemon,
    Observer,
    input_paths,
    install_signal_thread,
    output_paths,
)
from kpi_publisher.fs import DURABILITIES
from kpi_publisher.history.recorder import HistoryRecorder, recorder_for
from kpi_publisher.pipeline import Incremental, Outputs
from kpi_publisher.sources import SourceReader
from kpi_publisher.watcher import Watcher

# The command-line names of the settings `run` accepts (None = not given on the CLI).
CLI_FIELDS: tuple[str, ...] = (
    *PATH_OPTION_FIELDS,
    "metrics_port",
    "debounce_ms",
    "heartbeat_s",
    "rescan_s",
    "retry_ms",
    "fsync",
    "durability",
    "log_format",
)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "run",
        help="watch the state dir and publish on every change (the supervisord program)",
        description="Watch the state directory and publish kpis_v7.json and positions_v7.json "
        "on every coalesced change and on a heartbeat. SIGTERM/SIGINT stop it (exit 0), "
        "SIGHUP re-reads the config file.",
    )
    add_path_options(parser)
    tuning = parser.add_argument_group("tuning (also KPI_* env vars or the config file)")
    tuning.add_argument(
        "--debounce-ms", type=float, help="longest wait before a change is published (50)"
    )
    tuning.add_argument(
        "--heartbeat-s", type=float, help="publish at least this often, even unchanged (5)"
    )
    tuning.add_argument(
        "--rescan-s", type=float, help="safety-net rescan of (inode, mtime, size) (2)"
    )
    tuning.add_argument(
        "--retry-ms", type=float, help="first re-read delay after an invalid input (100)"
    )
    tuning.add_argument(
        "--fsync",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="fsync published files and the out dir (default on)",
    )
    tuning.add_argument(
        "--durability",
        choices=DURABILITIES,
        help="fast: rename, then fsync; strict: fsync, then rename (fast)",
    )
    tuning.add_argument(
        "--log-format", choices=("auto", "json", "console"), help="auto: console on a TTY"
    )
    tuning.add_argument(
        "--metrics-port",
        type=int,
        help="also serve /metrics on 127.0.0.1:PORT (needs the prom extra; 0 = any free port)",
    )
    parser.set_defaults(func=run)


def cli_values(args: argparse.Namespace) -> dict[str, Any]:
    return {name: getattr(args, name, None) for name in CLI_FIELDS}


def build_watcher(
    settings: Settings, reader: SourceReader, watcher_class: type[Watcher] = Watcher
) -> Watcher:
    """The watcher of `reader`'s input files and of the published outputs."""
    return watcher_class(
        input_paths(reader),
        debounce_s=settings.debounce_ms / 1000.0,
        rescan_s=settings.rescan_s,
        outputs=output_paths(settings),
    )


def build_daemon(
    settings: Settings,
    *,
    watcher: Watcher | None = None,
    **seams: Any,
) -> Daemon:
    """The daemon with the real reader and watcher; `seams` go to `Daemon` (publisher, clocks,
    reload, observers ...); the build re-runs only the stages whose inputs changed. The
    watcher's rescan asks the daemon's current reader."""
    seams.setdefault("build", Incremental())
    reader = SourceReader(settings)
    watcher = watcher if watcher is not None else build_watcher(settings, reader)
    daemon = Daemon(settings, batches=watcher, reader=reader, **seams)
    watcher.set_probe(daemon.unread_changes)
    return daemon


def history_observer(recorder: HistoryRecorder, daemon: Daemon) -> Observer:
    """The history's post-publish observer: the history first follows the daemon's settings
    (a reload moves it with the out dir and history_path), then records the NAV published."""

    def observe(outputs: Outputs) -> None:
        recorder.follow(daemon.settings)
        recorder.observe(outputs)

    return observe


def history_guard(daemon: Daemon) -> Callable[[Path], bool]:
    """The history's `may_write`: its thread writes into an out dir (or removes its curve) only
    while the daemon's lock is on the directory now at that path, the check the daemon makes
    before its own publishes; always, when the daemon holds no lock."""

    def may_write(publish_dir: Path) -> bool:
        out_lock = daemon.out_lock
        return out_lock is None or out_lock.holds(publish_dir)

    return may_write


def _guard_std_streams() -> None:
    """A closed stdout/stderr descriptor (`>&-`) is pointed at /dev/null, so no file the
    daemon opens later takes descriptor 1 or 2; SIGPIPE is ignored (a write to a pipe
    nobody reads fails with EPIPE, which logging drops, instead of killing the process)."""
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)


def _flush_std_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            with contextlib.suppress(OSError, ValueError):
                stream.flush()


def _log_locked(exc: lock.LockHeld) -> None:
    """Another `run` (or a `once` that did not finish) publishes into the same out dir."""
    logs.get_logger("hedge-kpi.run").error(
        "out_dir_locked",
        file=str(exc.path),
        holder_pid=exc.pid,
        holder=exc.command,
        reason=str(exc),
    )


def run(args: argparse.Namespace) -> int:
    """The process entry of `hedge-kpi run`: runs the daemon, then ends the process with its
    exit code (it does not return after the daemon started)."""
    _guard_std_streams()
    cli = cli_values(args)
    try:
        settings: Settings = resolve(cli)
    except ConfigError as exc:
        logs.configure(cli.get("log_format") or "auto")
        logs.get_logger("hedge-kpi.run").error("config_invalid", reason=str(exc))
        return ExitCode.USAGE
    logs.configure(settings.log_format)
    recorder = recorder_for(settings)
    seams: dict[str, Any] = {}
    if recorder is not None:  # the history: its block in the build, a post-publish observer
        seams = {"build": recorder.with_performance(Incremental())}
    daemon = build_daemon(settings, reload=lambda: resolve(cli), **seams)
    if recorder is not None:
        daemon.observers.append(history_observer(recorder, daemon))
        recorder.on_update = daemon.request_publish  # a new performance block is published at once
        recorder.may_write = history_guard(daemon)
    held_elsewhere: list[lock.LockHeld] = []

    def lost_to(exc: lock.LockHeld) -> None:  # the out dir appeared, another daemon was first
        held_elsewhere.append(exc)
        _log_locked(exc)
        daemon.request_stop()

    restore = install_signal_thread(daemon)  # before any other thread starts (the lock's)
    try:
        daemon.out_lock = lock.DaemonLock()
        daemon.out_lock.hold(settings.publish_dir, settings.state_dir, on_held=lost_to)
    except lock.LockHeld as exc:
        _log_locked(exc)
        restore()
        return ExitCode.USAGE
    except OSError as exc:
        logs.get_logger("hedge-kpi.run").error(
            "out_dir_unwritable",
            file=str(exc.filename or settings.publish_dir),
            reason=exc.strerror or str(exc),
        )
        restore()
        return ExitCode.OUT_DIR_UNWRITABLE
    if recorder is not None:
        recorder.start()
    try:
        code = daemon.run()
    finally:
        restore()
        if recorder is not None:
            recorder.stop()
    if held_elsewhere:
        code = ExitCode.USAGE
    # The daemon has stopped its threads and every log line is flushed. Skipping the
    # interpreter's teardown (module and object finalisation, which took 0.3-0.9 s on a
    # loaded 2-core host) keeps "exit within 1 s of SIGTERM" true under load.
    _flush_std_streams()
    os._exit(int(code))
