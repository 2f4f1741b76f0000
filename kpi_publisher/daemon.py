"""The long-running loop: batches -> read -> pipeline -> publish; signals only set Events.

One pass reads every source through one `SourceReader` (it re-parses only files whose stamp
changed and keeps the last good content of each source), builds both documents with
`pipeline.build`, and publishes them atomically. A pass publishes when an input changed, when
the heartbeat is due (so ages and staleness stay current), after a config reload, or to retry
a failed publish. A source that read as invalid (torn in-place write, malformed file) is
re-read shortly (`retry_ms`, doubling up to the heartbeat).

The published files are watched too: an event on one whose (inode, mtime, size) is not what
our last publish renamed into place is another writer's (the executor writes its own
`kpis_v7.json` into the state dir), and is overwritten by a publish at once.

Ages never run backwards with the wall clock: a source's age is at least the monotonic time
since this process last saw its content change (`apply_age_floors`).

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
from kpi_publisher.sources import (
    INVALID,
    MISSING,
    OK,
    OUTPUT_FILES,
    SOURCE_NAMES,
    SourceRead,
    SourceReader,
    expected_absent,
)

log = structlog.get_logger("hedge-kpi.daemon")

PROM_FILES: tuple[str, ...] = (prom.PROM_FILE,)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
GC_GEN0_THRESHOLD = 50_000
RELOAD_SIGNALS = (signal.SIGHUP,)
STALE = "stale"
FOREIGN_LOG_EVERY_S = 600.0  # at most one foreign_writer line per output file per 10 minutes
STATE_DIR_LOG_EVERY_S = 60.0  # state_dir_missing is repeated this often while it is missing
STATE_DIR_POLL_S = 1.0  # how often a missing state dir is looked for
PUBLISH_REMINDER_S = 60.0  # publish_still_failing is logged this often during a failure streak


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


def output_paths(settings: Settings) -> list[Path]:
    """The published files (watched for writes that are not ours)."""
    return [settings.publish_dir / name for name in OUTPUT_FILES]


def inside(path: Path, directory: Path) -> bool:
    """True when `path` is `directory` or lies below it (lexically, on absolute paths)."""
    p, d = Path(os.path.abspath(path)), Path(os.path.abspath(directory))
    return p == d or d in p.parents


def apply_age_floors(outputs: Outputs, floors: Mapping[str, float], settings: Settings) -> Outputs:
    """Raise every published age to at least its source's floor (seconds), in place.

    A floor is the monotonic time since the daemon last saw that source's content change, so
    a wall clock stepped back cannot make old data look new. A raised age re-decides what
    depends on it: `nav.fresh`, and `ok` -> `stale` past the source's stale limit. A null age
    (no timestamp, or one too far ahead) stays null: it is already not fresh.
    """

    def floored(age: Any, source: Any) -> Any:
        floor = floors.get(source) if isinstance(source, str) else None
        if floor is None or not isinstance(age, (int, float)) or isinstance(age, bool):
            return age
        return round(max(float(age), floor), 3)

    def restatus(entry: dict[str, Any], source: str) -> None:
        age = entry.get("age_s")
        limit = settings.stale_limit_s(source)
        stale = isinstance(age, float) and limit is not None and age > limit
        if entry.get("status") == OK and stale:
            entry["status"] = STALE

    kpis, positions_doc = outputs.kpis, outputs.positions
    nav = kpis.get("nav")
    if isinstance(nav, dict) and isinstance(nav.get("age_s"), (int, float)):
        nav["age_s"] = floored(nav["age_s"], nav.get("source"))
        if isinstance(nav.get("fresh"), bool):
            nav["fresh"] = nav["fresh"] and nav["age_s"] <= settings.nav_fresh_s
    statuses = kpis.get("sources")
    if isinstance(statuses, dict):
        for name, entry in statuses.items():
            if isinstance(entry, dict) and "age_s" in entry:
                entry["age_s"] = floored(entry["age_s"], name)
                restatus(entry, name)
    pos_source = positions_doc.get("source")
    if isinstance(pos_source, dict) and "age_s" in pos_source:
        pos_source["age_s"] = floored(pos_source["age_s"], "positions")
        restatus(pos_source, "positions")
    return outputs


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


def default_crash_file(publish_dir: Path, environ: Mapping[str, str] | None = None) -> Path:
    """Where crash times are kept: a private per-user directory (see `runtime_dir`), never the
    state dir (the contract forbids it) nor a predictable name in a world-writable one."""
    digest = hashlib.sha1(str(publish_dir).encode(), usedforsecurity=False).hexdigest()[:12]
    directory = runtime_dir(environ) or runtime_dir_candidates(environ)[-1]
    return directory / f"crashes-{digest}.json"


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
        interval = min(1.0, self._limit_s / 4)
        mark = self._progress()
        frozen_s = 0.0  # seconds the whole process was stopped since the mark last moved
        while True:
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
                outputs=output_paths(settings),
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
        self._source_retry_at: float | None = None
        self._next_heartbeat = 0.0
        # Publish failures: the streak's length, its start, the next retry and reminder.
        self._publish_failures = 0
        self._failing_since = 0.0
        self._publish_retry_at: float | None = None
        self._next_reminder = 0.0
        # Per source: the fingerprint of its content and when (monotonic) it last changed.
        self._content: dict[str, tuple[Any, ...]] = {}
        self._content_changed: dict[str, float] = {}
        # Our outputs: the stamp of what we last renamed into place; foreign_writer log times.
        self._own_stamps: dict[Path, fs.FileStamp | None] = {}
        self._foreign_logged: dict[Path, float] = {}
        self._foreign_unlogged: dict[Path, int] = {}
        # The state dir: missing since (monotonic), next state_dir_missing line.
        self._state_missing_since: float | None = None
        self._next_state_log = 0.0
        self._out_dir_ready = False

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

    @property
    def _retry_at(self) -> float | None:
        """The earliest re-read of an invalid source or retry of a failed publish."""
        due = [t for t in (self._source_retry_at, self._publish_retry_at) if t is not None]
        return min(due) if due else None

    def _schedule_retry(self, now_mono: float) -> None:
        self._invalid_passes += 1
        delay = retry_delay_s(
            self._invalid_passes, self.settings.retry_ms / 1000.0, self.settings.heartbeat_s
        )
        self._source_retry_at = now_mono + delay

    # -- the state dir and our own outputs ------------------------------------------------

    def _state_dir_present(self) -> bool:
        """True when the state dir exists; while it does not, says so now and then.

        `run` never creates the state dir (a mistyped path must not become an empty tree),
        nor an out dir inside it: publishing there waits for the executor to create it."""
        s = self.settings
        now = self._mono()
        if s.state_dir.is_dir():
            if self._state_missing_since is not None:
                log.info(
                    "state_dir_found",
                    file=str(s.state_dir),
                    missing_s=round(now - self._state_missing_since, 1),
                )
                self._state_missing_since = None
            return True
        if self._state_missing_since is None:
            self._state_missing_since = now
            self._next_state_log = now
        if now >= self._next_state_log:
            log.warning(
                "state_dir_missing",
                file=str(s.state_dir),
                missing_s=round(now - self._state_missing_since, 1),
                out_dir=str(s.publish_dir),
                waiting="publishing waits for it"
                if inside(s.publish_dir, s.state_dir)
                else "publishing every source as missing",
            )
            self._next_state_log = now + STATE_DIR_LOG_EVERY_S
        return False

    def _record_own_outputs(self) -> None:
        """Remember the stamp of each output we just renamed into place."""
        self._own_stamps = {p: fs.stamp(p) for p in output_paths(self.settings)}

    def _foreign_outputs(self, paths: Iterable[Path]) -> list[Path]:
        """Outputs among `paths` whose current file is not the one we last published (written
        or removed by someone else); each is logged as foreign_writer at most every 10 min."""
        foreign: list[Path] = []
        now = self._mono()
        for path in paths:
            if path not in self._own_stamps or fs.stamp(path) == self._own_stamps[path]:
                continue  # ours (or nothing published yet): no feedback loop on our renames
            if not path.parent.is_dir():
                continue  # the whole out dir went away: the publish retry deals with that
            foreign.append(path)
            last = self._foreign_logged.get(path)
            if last is not None and now - last < FOREIGN_LOG_EVERY_S:
                self._foreign_unlogged[path] = self._foreign_unlogged.get(path, 0) + 1
                continue
            self._foreign_logged[path] = now
            log.warning(
                "foreign_writer",
                file=str(path),
                change="removed" if not path.exists() else "written",
                action="overwritten by a publish now",
                unlogged_since_last=self._foreign_unlogged.pop(path, 0),
            )
        return foreign

    def _content_floors(self, sources: Mapping[str, SourceRead]) -> dict[str, float]:
        """Per source, the monotonic seconds since its content last changed (a new parse, a
        different file, or appearing / disappearing)."""
        now = self._mono()
        floors: dict[str, float] = {}
        for name in SOURCE_NAMES:
            read = sources[name]
            content = (id(self.reader), read.status == MISSING, read.path, read.version)
            if content != self._content.get(name):
                self._content[name] = content
                self._content_changed[name] = now
            floors[name] = max(0.0, now - self._content_changed[name])
        return floors

    def run_pass(self, reason: str, paths: Iterable[Path] = ()) -> PassResult:
        """Read every source; publish when something changed, or when forced by `reason`.

        `paths` had events: they are re-read even if their stamp looks unchanged (an in-place
        rewrite of the same size within one mtime tick keeps the stamp).
        """
        started = time.perf_counter()
        if not self._state_dir_present() and inside(
            self.settings.publish_dir, self.settings.state_dir
        ):
            # Nowhere to publish without creating the state dir: look again soon. The first
            # pass after it appears publishes. (A separate out dir gets every source as
            # `missing`, which `check` reports.)
            self._dirty = True
            self._source_retry_at = self._mono() + min(STATE_DIR_POLL_S, self.settings.heartbeat_s)
            self._next_heartbeat = self._mono() + self.settings.heartbeat_s
            return PassResult(published=False)
        if not self._out_dir_ready:
            try:
                self._prepare_out_dir()
            except OSError as exc:
                self._log_publish_failure(
                    str(exc.filename or self.settings.publish_dir), exc.strerror or str(exc)
                )
                return self._failed("publish")
        self.reader.invalidate(paths)
        sources = self.reader.read_all()
        prints = {name: fingerprint(sources[name]) for name in SOURCE_NAMES}
        changed = {n for n in SOURCE_NAMES if prints[n] != self._fingerprints.get(n)}
        self._fingerprints = prints
        self._unpublished |= changed
        for read in (sources[n] for n in sorted(changed) if sources[n].dropped_count):
            extra = {"keys": list(read.dropped), "count": read.dropped_count}
            log.warning("source_value_dropped", source=read.name, file=str(read.path), **extra)
        floors = self._content_floors(sources)
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
            self._source_retry_at = None
        forced = self._dirty or reason in ("start", "heartbeat", "reload", "foreign_writer")
        if not self._unpublished and not forced:
            return PassResult(published=False)
        out_dir = self.settings.publish_dir
        try:
            outputs = apply_age_floors(
                self._build(sources, self._clock(), self.settings), floors, self.settings
            )
        except Exception as exc:  # a stage bug must not take the publisher down
            log.exception("build_failed", reason=f"{type(exc).__name__}: {exc}")
            return self._failed("build")
        try:
            self._publisher(outputs, out_dir, fsync=self.settings.fsync)
        except OSError as exc:
            if not out_dir.is_dir() and not inside(out_dir, self.settings.state_dir):
                # A separate out dir went away: it is ours to create, and the retry then
                # publishes into it. One inside the state dir waits for the executor.
                with contextlib.suppress(OSError):
                    out_dir.mkdir(parents=True, exist_ok=True)
            self._log_publish_failure(str(exc.filename or out_dir), exc.strerror or str(exc))
            return self._failed("publish")
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            if self._publish_failures == 0:
                log.exception("publish_failed", file=str(out_dir), reason=reason)
            else:
                self._log_publish_failure(str(out_dir), reason)
            return self._failed("publish")
        self._record_own_outputs()
        if self._publish_failures:
            log.info(
                "publish_recovered",
                failures=self._publish_failures,
                failing_s=round(self._mono() - self._failing_since, 1),
            )
        self._publish_failures = 0
        self._publish_retry_at = None
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
            if isinstance(entry, dict)
            and entry.get("status") != OK
            and not expected_absent(str(name), entry.get("status"))
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

    def _log_publish_failure(self, file: str, reason: str) -> None:
        """One publish_failed line per failure streak, then a reminder every minute."""
        now = self._mono()
        if self._publish_failures == 0:
            self._failing_since = now
            self._next_reminder = now + PUBLISH_REMINDER_S
            log.error("publish_failed", file=file, reason=reason)
        elif now >= self._next_reminder:
            self._next_reminder = now + PUBLISH_REMINDER_S
            log.error(
                "publish_still_failing",
                file=file,
                reason=reason,
                failures=self._publish_failures + 1,
                failing_s=round(now - self._failing_since, 1),
            )

    def _failed(self, kind: str) -> PassResult:
        self.health = self.health.failed(kind)
        if self.metrics is not None:
            self.metrics.update(None, self.health)
        self._dirty = True
        # A failing publish is retried on its own schedule, doubling from retry_ms up to the
        # heartbeat, not hammered by the heartbeat or by the invalid-source re-reads.
        self._publish_failures += 1
        now = self._mono()
        self._next_heartbeat = now + self.settings.heartbeat_s
        self._publish_retry_at = now + retry_delay_s(
            self._publish_failures, self.settings.retry_ms / 1000.0, self.settings.heartbeat_s
        )
        return PassResult(published=False)

    # -- reload -----------------------------------------------------------------------------

    def _apply_reload(self) -> None:
        """SIGHUP: switch to freshly resolved Settings, or keep the running ones and log why.

        Any exception, not only ConfigError, keeps the running config: a reload must never
        end the process (supervisord marks a program that keeps dying FATAL).
        """
        if self._reload is None:
            return
        old = self.settings
        try:
            new = self._reload()
        except Exception as exc:
            self._reload_failed(old, exc)
            return
        saved = (self.reader, self._fingerprints, self.batches.debounce_s, self.batches.rescan_s)
        try:
            self._switch_settings(old, new)
        except Exception as exc:
            self.settings = old
            self.reader, self._fingerprints, self.batches.debounce_s, self.batches.rescan_s = saved
            with contextlib.suppress(Exception):
                self.batches.set_paths(input_paths(self.reader))
            self._reload_failed(old, exc)

    @staticmethod
    def _reload_failed(old: Settings, exc: Exception) -> None:
        reason = str(exc) if isinstance(exc, ConfigError) else f"{type(exc).__name__}: {exc}"
        log.error(
            "config_reload_failed",
            file=str(old.config_file) if old.config_file else None,
            reason=reason,
            kept="previous config",
        )

    def _switch_settings(self, old: Settings, new: Settings) -> None:
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
        set_outputs = getattr(self.batches, "set_outputs", None)
        if callable(set_outputs):  # watch the outputs for foreign writes (the real Watcher)
            set_outputs(output_paths(self.settings))
        self._own_stamps = {}
        self._out_dir_ready = True
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
            outputs = set(output_paths(self.settings))
            changes = batch - outputs
            if batch & outputs and self._foreign_outputs(sorted(batch & outputs)):
                self.run_pass("foreign_writer", changes)
            elif changes:
                self.run_pass("change", changes)
            elif batch:
                continue  # only our own renames
            elif now >= self._next_heartbeat:
                self.run_pass("heartbeat")
            elif self._retry_at is not None and now >= self._retry_at:
                self.run_pass("retry")

    def run(self) -> int:
        """Run until `request_stop()`; returns an ExitCode."""
        s = self.settings
        if s.state_dir.is_dir() or not inside(s.publish_dir, s.state_dir):
            try:
                self._prepare_out_dir()
            except OSError as exc:
                log.error(
                    "out_dir_unwritable", file=str(s.publish_dir), reason=exc.strerror or str(exc)
                )
                return ExitCode.OUT_DIR_UNWRITABLE
        # else: the out dir is (inside) the missing state dir: prepared once that appears.
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
        # A missing state dir is not fatal: state_dir_missing is logged now and every minute,
        # and the directory is watched and published from once it appears (run_pass).
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
