"""The long-running loop: batches -> read -> pipeline -> publish; signals only set Events.

One pass reads every source through one `SourceReader` (it re-parses only files whose stamp
changed and keeps the last good content of each source), builds both documents with
`pipeline.build`, and publishes them atomically. A pass publishes when an input changed, when
the heartbeat is due (so ages and staleness stay current), after a config reload, or to retry
a failed publish. A source that read as invalid (torn in-place write, malformed file) is
re-read shortly (`retry_ms`, doubling up to the heartbeat).

The seams are values: the batch source (the real `Watcher`, or a scripted fake), the
publisher, the build function, the clocks and the config reloader.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import hashlib
import os
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import orjson
import structlog

from kpi_publisher import fs, pipeline, prom, publish
from kpi_publisher.cli import ExitCode
from kpi_publisher.config import ConfigError, Settings
from kpi_publisher.metrics_server import MetricsServer, MetricsUnavailable
from kpi_publisher.pipeline import Outputs
from kpi_publisher.sources import INVALID, OK, OUTPUT_FILES, SOURCE_NAMES, SourceRead, SourceReader

log = structlog.get_logger("hedge-kpi.daemon")

PROM_FILES: tuple[str, ...] = (prom.PROM_FILE,)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
GC_GEN0_THRESHOLD = 50_000
RELOAD_SIGNALS = (signal.SIGHUP,)


class BatchSource(Protocol):
    """What the daemon needs from a watcher (watcher.Watcher, or a scripted fake in tests)."""

    debounce_s: float
    rescan_s: float

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def next_batch(self, timeout_s: float) -> frozenset[Path]: ...

    def interrupt(self) -> None: ...

    def set_paths(self, paths: Iterable[Path]) -> None: ...


class Publisher(Protocol):
    def __call__(self, outputs: Outputs, out_dir: Path, *, fsync: bool) -> None: ...


BuildFn = Callable[[Mapping[str, SourceRead], float, Settings], Outputs]
ReloadFn = Callable[[], Settings]


def input_paths(reader: SourceReader) -> list[Path]:
    """Every candidate input path, in source order (what the watcher watches)."""
    return [p for paths in reader.paths.values() for p in paths]


def fingerprint(read: SourceRead) -> tuple[Any, ...]:
    """What makes a source 'changed' between passes: status, file, stamp, error and parse."""
    return (read.status, read.path, read.stamp, read.error, read.version)


def retry_delay_s(failures: int, retry_s: float, cap_s: float) -> float:
    """Seconds until the next re-read after `failures` consecutive invalid passes (>= 1)."""
    return float(min(cap_s, retry_s * 2 ** max(0, failures - 1)))


# -- crash backoff ---------------------------------------------------------------------------

CRASH_WINDOW_S = 600.0
CRASH_BACKOFF_CAP_S = 30.0


def crash_backoff_s(recent_crashes: int, cap_s: float = CRASH_BACKOFF_CAP_S) -> float:
    """Seconds to wait before exiting after a crash: 1, 2, 4 ... capped; 0 with no crash."""
    if recent_crashes <= 0:
        return 0.0
    return float(min(cap_s, 2.0 ** (recent_crashes - 1)))


def default_crash_file(publish_dir: Path) -> Path:
    """Where crash times are kept: /tmp, never the state dir (the contract forbids it)."""
    digest = hashlib.sha1(str(publish_dir).encode(), usedforsecurity=False).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"hedge-kpi-{digest}.crashes.json"


@dataclass
class CrashLog:
    """Recent crash times (epoch s) in a small JSON file, so a crash loop under supervisord
    (which restarts a process that ran past `startsecs` at once, forever) slows down."""

    path: Path
    window_s: float = CRASH_WINDOW_S

    def _load(self) -> list[float]:
        try:
            data = orjson.loads(self.path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return []
        if not isinstance(data, list):
            return []
        return [float(t) for t in data if isinstance(t, (int, float))]

    def record(self, now: float) -> int:
        """Add a crash at `now`; returns how many crashes fall within the window."""
        recent = [t for t in self._load() if now - self.window_s <= t <= now] + [now]
        with contextlib.suppress(OSError):
            fs.write_atomic(self.path, orjson.dumps(recent), fsync=False)
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


class _Liveness:
    """A thread that ends the process (exit 70) when the loop stops making progress, e.g. a
    read or fsync hung on a dying disk. supervisord has no liveness check of its own: it
    would show such a process RUNNING forever; after the exit it restarts it."""

    def __init__(
        self,
        progress: Callable[[], float],
        limit_s: float,
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
        while not self._stop.wait(min(1.0, self._limit_s / 4)):
            stalled_s = self._mono() - self._progress()
            if stalled_s > self._limit_s:
                log.critical(
                    "worker_stuck",
                    stalled_s=round(stalled_s, 1),
                    limit_s=self._limit_s,
                    exit_code=int(ExitCode.WORKER_STUCK),
                )
                self._exit(int(ExitCode.WORKER_STUCK))
                return

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()


# -- the daemon --------------------------------------------------------------------------------


@dataclass
class PassResult:
    """What one pass did (tests and the log line read it)."""

    published: bool
    changed: list[str] = field(default_factory=list)
    not_ok: dict[str, str] = field(default_factory=dict)


class Daemon:
    """Owns the loop. Construct, then `run()` (blocks) -> exit code; `request_stop()` ends it."""

    def __init__(
        self,
        settings: Settings,
        *,
        batches: BatchSource | None = None,
        publisher: Publisher = publish.publish,
        build: BuildFn = pipeline.build,
        reload: ReloadFn | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        crash_log: CrashLog | None = None,
        stuck_after_s: float | None = None,
        exit_fn: Callable[[int], object] = os._exit,
    ) -> None:
        self.settings = settings
        self._stuck_after_s = stuck_after_s
        self._exit_fn = exit_fn
        self._progress = monotonic()
        self.reader = SourceReader(settings)
        if batches is None:
            from kpi_publisher.watcher import Watcher

            batches = Watcher(
                input_paths(self.reader),
                debounce_s=settings.debounce_ms / 1000.0,
                rescan_s=settings.rescan_s,
                monotonic=monotonic,
            )
        self.batches = batches
        self._publisher = publisher
        self._build = build
        self._reload = reload
        self._clock = clock
        self._mono = monotonic
        self.crash_log = crash_log or CrashLog(default_crash_file(settings.publish_dir))
        self.stop_event = threading.Event()
        self.reload_event = threading.Event()
        self.seq = 0
        self.health = prom.PublisherHealth()
        self.metrics: MetricsServer | None = None
        self._fingerprints: dict[str, tuple[Any, ...]] = {}
        self._unpublished: set[str] = set()
        self._dirty = True  # publish on the first pass whatever the inputs
        self._invalid_passes = 0
        self._retry_at: float | None = None
        self._next_heartbeat = 0.0

    # -- control (any thread; these only set Events) -----------------------------------

    def request_stop(self) -> None:
        """Finish the current pass and leave `run()` with exit code 0."""
        self.stop_event.set()
        self.batches.interrupt()

    def request_reload(self) -> None:
        """Re-read the config file before the next pass (SIGHUP)."""
        self.reload_event.set()
        self.batches.interrupt()

    # -- one pass -------------------------------------------------------------------------

    def _schedule_retry(self, now_mono: float) -> None:
        self._invalid_passes += 1
        delay = retry_delay_s(
            self._invalid_passes, self.settings.retry_ms / 1000.0, self.settings.heartbeat_s
        )
        self._retry_at = now_mono + delay

    def run_pass(self, reason: str, paths: Iterable[Path] = ()) -> PassResult:
        """Read every source; publish when something changed, or when forced by `reason`.

        `paths` had events: they are re-read even if their stamp looks unchanged (an in-place
        rewrite of the same size within one mtime tick keeps the stamp).
        """
        started = time.perf_counter()
        self.reader.invalidate(paths)
        sources = self.reader.read_all()
        prints = {name: fingerprint(sources[name]) for name in SOURCE_NAMES}
        changed = {n for n in SOURCE_NAMES if prints[n] != self._fingerprints.get(n)}
        self._fingerprints = prints
        self._unpublished |= changed
        invalid = [n for n in SOURCE_NAMES if sources[n].status == INVALID]
        if invalid:
            for name in sorted(changed & set(invalid)):
                read = sources[name]
                log.warning(
                    "source_invalid",
                    source=name,
                    file=str(read.path) if read.path else None,
                    reason=read.error,
                    last_good=read.data is not None,
                )
            self._schedule_retry(self._mono())
        else:
            self._invalid_passes = 0
            self._retry_at = None
        forced = self._dirty or reason in ("start", "heartbeat", "reload")
        if not self._unpublished and not forced:
            return PassResult(published=False)
        out_dir = self.settings.publish_dir
        try:
            outputs = self._build(sources, self._clock(), self.settings)
        except Exception as exc:  # a stage bug must not take the publisher down
            log.exception("build_failed", reason=f"{type(exc).__name__}: {exc}")
            return self._failed("build")
        try:
            self._publisher(outputs, out_dir, fsync=self.settings.fsync)
        except OSError as exc:
            if not out_dir.is_dir():
                # The out dir went away (e.g. it is the state dir, deleted and recreated): it is
                # ours to create, and the retry then publishes into it.
                with contextlib.suppress(OSError):
                    out_dir.mkdir(parents=True, exist_ok=True)
            log.error(
                "publish_failed",
                file=str(exc.filename or out_dir),
                reason=exc.strerror or str(exc),
            )
            return self._failed("publish")
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            log.exception("publish_failed", file=str(out_dir), reason=reason)
            return self._failed("publish")
        self.health = self.health.published(
            duration_s=time.perf_counter() - started, ts=self._clock()
        )
        self._export_metrics(outputs)
        self.seq += 1
        self._dirty = False
        published = sorted(self._unpublished, key=SOURCE_NAMES.index)
        self._unpublished.clear()
        self._next_heartbeat = self._mono() + self.settings.heartbeat_s
        statuses = outputs.kpis.get("sources", {}) if isinstance(outputs.kpis, dict) else {}
        not_ok = {
            str(name): str(entry.get("status"))
            for name, entry in statuses.items()
            if isinstance(entry, dict) and entry.get("status") != OK
        }
        log.info(
            "publish",
            seq=self.seq,
            reason=reason,
            duration_ms=round((time.perf_counter() - started) * 1000.0, 3),
            changed=published,
            not_ok=not_ok,
        )
        return PassResult(published=True, changed=published, not_ok=not_ok)

    def _export_metrics(self, outputs: Outputs) -> None:
        """kpis.prom (when prom_dir is set) and the /metrics endpoint (when it runs)."""
        if self.settings.prom_dir is not None:
            try:
                prom.publish_prom(outputs, self.settings, self.health)
            except OSError as exc:
                self.health = self.health.failed("prom")
                log.error(
                    "prom_failed",
                    file=str(exc.filename or self.settings.prom_dir / prom.PROM_FILE),
                    reason=exc.strerror or str(exc),
                )
        if self.metrics is not None:
            self.metrics.update(outputs, self.health)

    def _failed(self, kind: str) -> PassResult:
        self.health = self.health.failed(kind)
        if self.metrics is not None:
            self.metrics.update(None, self.health)
        self._dirty = True
        # A failing publish is retried on the retry schedule, not hammered by the heartbeat.
        self._next_heartbeat = self._mono() + self.settings.heartbeat_s
        self._schedule_retry(self._mono())
        return PassResult(published=False)

    # -- reload -----------------------------------------------------------------------------

    def _apply_reload(self) -> None:
        if self._reload is None:
            return
        old = self.settings
        try:
            new = self._reload()
        except ConfigError as exc:
            log.error(
                "config_reload_failed",
                file=str(old.config_file) if old.config_file else None,
                reason=str(exc),
                kept="previous config",
            )
            return
        changed = sorted(
            f.name for f in dataclasses.fields(new) if getattr(new, f.name) != getattr(old, f.name)
        )
        if new.publish_dir != old.publish_dir:
            try:
                new.publish_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                log.error(
                    "config_reload_failed",
                    file=str(old.config_file) if old.config_file else None,
                    reason=f"out dir {new.publish_dir}: {exc.strerror or exc}",
                    kept="previous config",
                )
                return
        old_paths = input_paths(self.reader)
        self.settings = new
        if (new.state_dir, new.max_input_bytes) != (old.state_dir, old.max_input_bytes) or (
            input_paths(SourceReader(new)) != old_paths
        ):
            # Different files: start afresh. Otherwise keep the reader and with it the last
            # good content of every source (a reload must not blank an invalid source).
            self.reader = SourceReader(new)
            self._fingerprints = {}
        self.batches.debounce_s = new.debounce_ms / 1000.0
        self.batches.rescan_s = new.rescan_s
        if input_paths(self.reader) != old_paths:
            self.batches.set_paths(input_paths(self.reader))
        if new.publish_dir != old.publish_dir:
            self._prepare_out_dir()
        if new.log_format != old.log_format:
            from kpi_publisher import logs

            logs.configure(new.log_format)
        self._dirty = True
        log.info(
            "config_reloaded",
            file=str(new.config_file) if new.config_file else None,
            changed=changed,
            # The /metrics listener is bound once, at start-up.
            needs_restart=[n for n in changed if n == "metrics_port"],
        )

    # -- the loop ----------------------------------------------------------------------------

    def _prepare_out_dir(self) -> None:
        """Create the out dir and remove temp files a killed publisher left there."""
        out_dir = self.settings.publish_dir
        out_dir.mkdir(parents=True, exist_ok=True)
        removed = fs.sweep_stale_temps(out_dir, OUTPUT_FILES)
        if self.settings.prom_dir is not None:
            removed += fs.sweep_stale_temps(self.settings.prom_dir, PROM_FILES)
        if removed:
            log.info("stale_temps_removed", files=[str(p) for p in removed])

    def _wait_s(self) -> float:
        due = self._next_heartbeat
        if self._retry_at is not None:
            due = min(due, self._retry_at)
        return max(0.0, due - self._mono())

    def _loop(self) -> None:
        self.run_pass("start")
        gc.freeze()  # the start-up objects never need collecting; keeps GC pauses short
        # Parsed JSON makes no reference cycles: collect the young generation rarely, so a large
        # input is not scanned again and again while it is being decoded.
        gc.set_threshold(GC_GEN0_THRESHOLD, 20, 100)
        while not self.stop_event.is_set():
            self._progress = self._mono()
            batch = self.batches.next_batch(self._wait_s())
            self._progress = self._mono()
            if self.stop_event.is_set():
                break
            if self.reload_event.is_set():
                self.reload_event.clear()
                self._apply_reload()
                self.run_pass("reload")
                continue
            now = self._mono()
            if batch:
                self.run_pass("change", batch)
            elif now >= self._next_heartbeat:
                self.run_pass("heartbeat")
            elif self._retry_at is not None and now >= self._retry_at:
                self.run_pass("retry")

    def run(self) -> int:
        """Run until `request_stop()`; returns an ExitCode."""
        s = self.settings
        try:
            self._prepare_out_dir()
        except OSError as exc:
            log.error(
                "out_dir_unwritable", file=str(s.publish_dir), reason=exc.strerror or str(exc)
            )
            return ExitCode.OUT_DIR_UNWRITABLE
        gc_threshold = gc.get_threshold()
        self.metrics = MetricsServer.from_settings(s)
        if self.metrics is not None:
            try:
                port = self.metrics.start()
            except MetricsUnavailable as exc:
                log.error("metrics_unavailable", reason=str(exc))
                self.metrics = None
                return ExitCode.USAGE
            log.info("metrics_listening", url=f"http://127.0.0.1:{port}/metrics")
        log.info(
            "start",
            pid=os.getpid(),
            state_dir=str(s.state_dir),
            out_dir=str(s.publish_dir),
            debounce_ms=s.debounce_ms,
            heartbeat_s=s.heartbeat_s,
            rescan_s=s.rescan_s,
            fsync=s.fsync,
        )
        if not s.state_dir.is_dir():
            # Not fatal: every source reads as missing, and the directory is watched once it
            # appears (the executor creates it).
            log.warning("state_dir_missing", file=str(s.state_dir))
        limit_s = self._stuck_after_s or stuck_limit_s(s.heartbeat_s)
        liveness = _Liveness(lambda: self._progress, limit_s, self._exit_fn, self._mono)
        try:
            self.batches.start()
            self._progress = self._mono()
            liveness.start()
            try:
                self._loop()
            finally:
                liveness.stop()
                self.batches.stop()
        except Exception as exc:
            recent = self.crash_log.record(self._clock())
            delay = crash_backoff_s(recent)
            log.exception(
                "crashed",
                reason=f"{type(exc).__name__}: {exc}",
                recent_crashes=recent,
                backoff_s=delay,
            )
            self.stop_event.wait(delay)  # a SIGTERM ends the backoff at once
            return ExitCode.FAILURE
        finally:
            with contextlib.suppress(Exception):
                gc.unfreeze()
                gc.set_threshold(*gc_threshold)
            if self.metrics is not None:
                self.metrics.stop()
        log.info("stopped", seq=self.seq)
        return ExitCode.OK


# -- signals ------------------------------------------------------------------------------------


def install_signal_thread(daemon: Daemon) -> Callable[[], None]:
    """Route SIGTERM/SIGINT (stop) and SIGHUP (reload) to `daemon` from a dedicated thread.

    The signals are blocked in every thread and taken with `sigwait` by one helper thread,
    which then sets the daemon's Events. A Python-level signal handler would run inside the
    main thread, possibly while it holds the very Event lock the handler needs (a deadlock).
    Call this from the main thread before any other thread starts, so all threads inherit
    the mask. Returns a function restoring the previous mask.
    """
    wanted = {*STOP_SIGNALS, *RELOAD_SIGNALS}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, wanted)

    def _take() -> None:
        while True:
            signum = signal.sigwait(wanted)
            if signum in RELOAD_SIGNALS:
                daemon.request_reload()
            else:
                daemon.request_stop()

    threading.Thread(target=_take, name="hedge-kpi-signals", daemon=True).start()

    def restore() -> None:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)

    return restore
