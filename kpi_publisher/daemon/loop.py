"""The thin loop: wait for a batch of events -> one pass -> publish; signals only set Events.

A pass asks the reader what changed (`SourceReader.refresh`, the one judge of "did this source
change"), lets `plan.plan_pass` decide, builds both documents with `pipeline.build`, raises the
ages to their floors, publishes atomically and hands the published outputs to every
post-publish observer. A pass publishes when an input changed, when the heartbeat is due (so
ages and staleness stay current), after a config reload, after a foreign write to an output,
or to retry a failed publish. A source that read as invalid (torn in-place write, malformed
file) is re-read shortly (`retry_ms`, doubling up to the heartbeat).

Post-publish observers: `Daemon(..., observers=[fn])` or `daemon.observers.append(fn)`; each
is called on the loop's thread with the `pipeline.Outputs` just published (the kpis.prom file
and the /metrics endpoint are updated the same way). An observer must be quick and must not
raise: an exception is logged (`observer_failed`) and the loop goes on.

The seams are values, built by the composition root (`run.py`): the batch source (the real
`watcher.Watcher`, or a scripted fake), the publisher, the build function, the clocks, the
config reloader and the crash log.
"""

from __future__ import annotations

import contextlib
import gc
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import structlog

from kpi_publisher import lock, pipeline, prom, publish
from kpi_publisher.config import Settings
from kpi_publisher.contract import SOURCE_NAMES, ExitCode, SourceRead, not_ok
from kpi_publisher.daemon import plan
from kpi_publisher.daemon.metrics import Metrics
from kpi_publisher.daemon.outdir import (
    OwnOutputs,
    StateDirWatch,
    output_paths,
    prepare_out_dir,
)
from kpi_publisher.daemon.reload import apply_reload, input_paths
from kpi_publisher.daemon.survival import (
    CrashLog,
    FailureStreak,
    Liveness,
    crash_backoff_s,
    default_crash_file,
    stuck_limit_s,
)
from kpi_publisher.fs import inside
from kpi_publisher.metrics_server import MetricsServer
from kpi_publisher.pipeline import Outputs
from kpi_publisher.sources import SourceReader

log = structlog.get_logger("hedge-kpi.daemon")

GC_GEN0_THRESHOLD = 50_000


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
    def __call__(
        self, outputs: Outputs, out_dir: Path, *, fsync: bool, durability: str
    ) -> None: ...


BuildFn = Callable[[Mapping[str, SourceRead], float, Settings], Outputs]
ReloadFn = Callable[[], Settings]
Observer = Callable[[Outputs], object]


@dataclass
class PassResult:
    """What one pass did (tests and the log line read it)."""

    published: bool
    changed: list[str] = field(default_factory=list)
    not_ok: dict[str, str] = field(default_factory=dict)


@contextlib.contextmanager
def tuned_gc() -> Iterator[None]:
    """Freeze the start-up objects (they never need collecting) and collect the young generation
    rarely: parsed JSON makes no reference cycles, so a large input is not scanned again and
    again while it is decoded. Restores the collector on the way out."""
    threshold = gc.get_threshold()
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            gc.unfreeze()
            gc.set_threshold(*threshold)


def _tune_gc() -> None:
    gc.freeze()
    gc.set_threshold(GC_GEN0_THRESHOLD, 20, 100)


class Daemon:
    """Owns the loop. Construct, then `run()` (blocks) -> exit code; `request_stop()` ends it."""

    def __init__(
        self,
        settings: Settings,
        *,
        batches: BatchSource,
        reader: SourceReader | None = None,
        publisher: Publisher | None = None,
        build: BuildFn = pipeline.build,
        reload: ReloadFn | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        crash_log: CrashLog | None = None,
        stuck_after_s: float | None = None,
        exit_fn: Callable[[int], object] = os._exit,
        observers: Iterable[Observer] = (),
    ) -> None:
        self.settings = settings
        self.reader = reader if reader is not None else SourceReader(settings)
        self.batches = batches
        self.reload_settings = reload
        # The out dir's lock (`run` sets it): a reload to another out dir moves it first.
        self.out_lock: lock.DaemonLock | None = None
        self.observers: list[Observer] = list(observers)
        self.crash_log = crash_log or CrashLog(default_crash_file(settings.publish_dir))
        self.stop_event = threading.Event()
        self.reload_event = threading.Event()
        self.publish_event = threading.Event()
        self.seq = 0
        self.state = plan.PassState()
        self._publisher: Publisher = publisher if publisher is not None else publish.Publisher()
        self._build = build
        self._clock = clock
        self._mono = monotonic
        self._stuck_after_s = stuck_after_s
        self._exit_fn = exit_fn
        self._progress = monotonic()
        self._metrics = Metrics()
        self._streak = FailureStreak("publish")
        self._own = OwnOutputs(monotonic)
        # The real watcher drops events of our own renames before they open a debounce window
        # (a scripted batch source in tests need not know about outputs).
        own_filter = getattr(batches, "set_own_outputs", None)
        if own_filter is not None:
            own_filter(self._own.is_own)
        self._state_dir = StateDirWatch(monotonic)
        self._out_dir_ready = False
        self._content_changed_at: dict[str, float] = {}
        self._retained: tuple[object, ...] = ()  # see run_pass

    @property
    def health(self) -> prom.PublisherHealth:
        return self._metrics.health

    @property
    def metrics(self) -> MetricsServer | None:
        return self._metrics.server

    def unread_changes(self) -> set[Path]:
        """The watcher's rescan probe: inputs changed since the current reader read them."""
        return self.reader.unread_changes()

    # -- control (any thread; these only set Events) -----------------------------------

    def request_stop(self) -> None:
        """Finish the current pass and leave `run()` with exit code 0."""
        self.stop_event.set()
        self.batches.interrupt()

    def request_reload(self) -> None:
        """Re-read the config file before the next pass (SIGHUP)."""
        self.reload_event.set()
        self.batches.interrupt()

    def request_publish(self) -> None:
        """Publish again at once, whatever changed (reason "history": the history's thread has
        a new performance block for the NAV just published, which the build adds)."""
        self.publish_event.set()
        self.batches.interrupt()

    # -- one pass -------------------------------------------------------------------------

    def prepare_out_dir(self) -> None:
        """Create the out dir and lock it (`lock.DaemonLock.ensure`: it may be new or made
        again since it was locked), sweep stale temps, and watch the outputs for foreign
        writes. LockHeld when another publisher holds it."""
        spares = getattr(self._publisher, "spares", None)
        lock = self.out_lock.ensure if self.out_lock is not None else None
        prepare_out_dir(self.settings, spares() if callable(spares) else (), lock)
        set_outputs = getattr(self.batches, "set_outputs", None)
        if callable(set_outputs):  # the real Watcher
            set_outputs(output_paths(self.settings))
        self._own.reset()
        self._out_dir_ready = True

    _prepare_out_dir = prepare_out_dir

    def out_dir_unprepared(self) -> None:
        """The out dir is to be prepared by the next pass that can (see `run_pass`)."""
        self._out_dir_ready = False

    def _ready_out_dir(self) -> PassResult | None:
        """Prepare the out dir if it is not ready (`prepare_out_dir`); a failure is the pass's
        result."""
        if self._out_dir_ready:
            return None
        try:
            self.prepare_out_dir()
        except OSError as exc:
            return self._failed("publish", str(exc.filename or self.settings.publish_dir), exc)
        except lock.LockHeld as exc:  # another publisher has it: retried, never shared
            return self._failed("publish", str(exc.path), exc)
        return None

    def _check_out_dir(self) -> None:
        """Before a publish, and after one failed: when the directory at the out dir's path is
        not the one locked (removed, renamed away, replaced by another directory or by a
        symlink), the next pass that can prepares the one there now and locks it before
        anything is written into it, or is refused and retries: two daemons never share an
        out dir, and a lock on a directory that is gone keeps no one out. A separate out dir
        is made again at once; one inside the state dir once the state dir is there."""
        s = self.settings
        if not self._out_dir_ready:
            return  # the next pass prepares (and locks) it anyway
        if self.out_lock is not None:
            replaced = not self.out_lock.holds(s.publish_dir)
        else:  # no lock (an embedding that locks nothing): the directory must still be there
            replaced = not s.publish_dir.is_dir()
        if replaced:
            log.warning("out_dir_replaced", file=str(s.publish_dir))
            self.out_dir_unprepared()

    def run_pass(self, reason: str, paths: Iterable[Path] = ()) -> PassResult:
        """Read every source; publish when something changed, or when forced by `reason`.

        `paths` had events: they are re-read even if their stamp looks unchanged (an in-place
        rewrite of the same size within one mtime tick keeps the stamp).
        """
        started = time.perf_counter()
        # The previous pass's reads and outputs stay referenced until this pass returns, so the
        # objects that this pass's reads and build replace are freed after its publish, off
        # the path from an input's rename to the outputs' (a new risk snapshot replaces about
        # a thousand of them).
        _retired, self._retained = self._retained, ()
        s = self.settings
        if not self._state_dir.present(s) and inside(s.publish_dir, s.state_dir):
            # Nowhere to publish without creating the state dir: look again soon. (A separate
            # out dir gets every source as `missing`, which `check` reports.)
            self.state = plan.waiting_for_state_dir(self.state, self._mono(), s)
            return PassResult(published=False)
        if (failed := self._ready_out_dir()) is not None:
            return failed
        report = self.reader.refresh(paths)
        self._retained = (report,)
        decided = plan.plan_pass(
            self.state, reason, report.sources, report.changed, self._mono(), s
        )
        self.state = decided.state
        for line in decided.logs:
            getattr(log, line.level)(line.event, **line.fields)
        self._content_changed_at, floors = plan.age_floors(
            self._content_changed_at, report.content_changed, self._mono()
        )
        if not decided.publish:
            return PassResult(published=False)
        self._check_out_dir()
        if (failed := self._ready_out_dir()) is not None:
            return failed
        sources = {
            name: read.aged(floors[name]) if floors.get(name) else read
            for name, read in report.sources.items()
        }
        try:
            outputs = self._build(sources, self._clock(), s)
            self._retained = (report, outputs)
        except Exception as exc:  # a stage bug must not take the publisher down
            log.exception("build_failed", reason=f"{type(exc).__name__}: {exc}")
            self._metrics.failed("build")
            self.state = plan.failed(self.state, self._mono(), s)
            return PassResult(published=False)
        try:
            self._publisher(outputs, s.publish_dir, fsync=s.fsync, durability=s.durability)
        except OSError as exc:
            self._check_out_dir()
            return self._failed("publish", str(exc.filename or s.publish_dir), exc)
        except Exception as exc:
            return self._failed("publish", str(s.publish_dir), exc, trace=True)
        return self._published(reason, outputs, started)

    def _published(self, reason: str, outputs: Outputs, started: float) -> PassResult:
        self._own.record(self.settings)
        self._streak.recovered(self.state.publish_failures, self._mono())
        changed = sorted(self.state.unpublished, key=SOURCE_NAMES.index)
        self.state = plan.published(self.state, self._mono(), self.settings)
        self._metrics.published(
            outputs,
            self.settings,
            duration_s=time.perf_counter() - started,
            ts=self._clock(),
        )
        for observer in list(self.observers):
            try:
                observer(outputs)
            except Exception as exc:  # an observer must not take the publisher down
                log.exception("observer_failed", reason=f"{type(exc).__name__}: {exc}")
        self.seq += 1
        bad = not_ok(outputs.kpis)
        log.info(
            "publish",
            seq=self.seq,
            reason=reason,
            duration_ms=round((time.perf_counter() - started) * 1000.0, 3),
            changed=changed,
            not_ok=bad,
        )
        return PassResult(published=True, changed=changed, not_ok=bad)

    def _failed(
        self, kind: str, file: str, exc: BaseException, *, trace: bool = False
    ) -> PassResult:
        if isinstance(exc, OSError) and not trace:
            reason = exc.strerror or str(exc)
        else:
            reason = f"{type(exc).__name__}: {exc}"
        self._streak.failed(self.state.publish_failures, file, reason, self._mono(), trace=trace)
        self._metrics.failed(kind)
        self.state = plan.failed(self.state, self._mono(), self.settings)
        return PassResult(published=False)

    # -- the loop ----------------------------------------------------------------------------

    def _loop(self) -> None:
        self.run_pass("start")
        _tune_gc()
        while not self.stop_event.is_set():
            self._progress = self._mono()
            batch = self.batches.next_batch(self.state.wait_s(self._mono()))
            self._progress = self._mono()
            if self.stop_event.is_set():
                break
            if self.reload_event.is_set():
                self.reload_event.clear()
                if apply_reload(self):
                    self.state = plan.reloaded(self.state)
                self.run_pass("reload")
                continue
            outputs = set(output_paths(self.settings))
            changes = batch - outputs
            asked = self.publish_event.is_set()
            self.publish_event.clear()  # any publish below carries what was asked for
            if batch & outputs and self._own.foreign(sorted(batch & outputs)):
                self.run_pass("foreign_writer", changes)
            elif changes:
                self.run_pass("change", changes)
            elif asked:
                self.run_pass("history")
            elif batch:
                continue  # only our own renames
            elif (due := self.state.due(self._mono())) is not None:
                self.run_pass(due)

    def run(self) -> int:
        """Run until `request_stop()`; returns an ExitCode."""
        s = self.settings
        if s.state_dir.is_dir() or not inside(s.publish_dir, s.state_dir):
            try:
                self.prepare_out_dir()
            except OSError as exc:
                log.error(
                    "out_dir_unwritable", file=str(s.publish_dir), reason=exc.strerror or str(exc)
                )
                return ExitCode.OUT_DIR_UNWRITABLE
        # else: the out dir is (inside) the missing state dir: prepared once that appears.
        with tuned_gc():
            if (code := self._metrics.start(s)) is not None:
                return code
            try:
                return self._run_loop(s)
            finally:
                self._metrics.stop()
                close = getattr(self._publisher, "close", None)
                if callable(close):  # the spare temp files of fs.OutputWriter
                    with contextlib.suppress(OSError):
                        close()

    def _stuck_limit_s(self) -> float:
        """The liveness limit for the settings in force (a reload may change the heartbeat)."""
        return self._stuck_after_s or stuck_limit_s(self.settings.heartbeat_s)

    def _run_loop(self, s: Settings) -> int:
        log.info(
            "start",
            pid=os.getpid(),
            config_file=str(s.config_file) if s.config_file is not None else None,
            state_dir=str(s.state_dir),
            out_dir=str(s.publish_dir),
            debounce_ms=s.debounce_ms,
            heartbeat_s=s.heartbeat_s,
            rescan_s=s.rescan_s,
            fsync=s.fsync,
            durability=s.durability,
        )
        # A missing state dir is not fatal: state_dir_missing is logged now and every minute,
        # and the directory is watched and published from once it appears (run_pass).
        liveness = Liveness(lambda: self._progress, self._stuck_limit_s, self._exit_fn, self._mono)
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
        log.info("stopped", seq=self.seq)
        return ExitCode.OK


__all__ = ["BatchSource", "Daemon", "PassResult", "Publisher", "input_paths"]
