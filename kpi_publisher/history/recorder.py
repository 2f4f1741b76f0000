"""Recording the published NAV into the history, off the publish path.

`HistoryRecorder.observe` is a post-publish observer: it takes the NAV point out of the kpis
just published and, when its timestamp is new, hands it to the recorder's own thread (a few
microseconds; an unchanged NAV costs one comparison). That thread owns the store: at start it
back-fills the executor's NAV logs and loads the series, then for every batch of new points it
saves them (one transaction), rebuilds nav_history_v7.json (written atomically into the
publish dir once the history holds two points) and the `performance` block, which
`with_performance` adds to the next kpis_v7.json; `on_update` (the daemon's `request_publish`)
makes that next one follow at once, so the block covers the NAV beside it milliseconds later,
not a heartbeat later. With no new point the block is recomputed every `REFRESH_S`, so a NAV
that stopped moving shows as a gap, and a nav_history write that failed (a full disk) is tried
again.

A reload moves the history as a restart would (`follow`): another history file is opened and
loaded as at start, and nav_history_v7.json is published in the new out dir from then on.

The published curve is what the store holds, or will: a point the store cannot take now (a
full disk pauses it) is kept with the series, up to `MAX_UNSAVED` points (beyond, the oldest
are taken out of both, with one `history_unsaved_dropped` line per `DROP_CHUNK`), and saved in
one transaction once the store takes writes again; a stop makes one last try
(`history_unsaved_lost` when even that fails). So a restart shows the curve that was published.
The file is followed as the store follows it: deleted under the daemon, it is made again and
the whole series is written into it (`history_restored`); replaced, the new file is loaded as
at start. While another publisher holds the file (`history_locked`) this history is off: no
curve, no performance block, no point kept (they may be another desk's); it is taken over, and
loaded as at start, by the first try after that publisher stops. A file that takes no writes
is read as it is (the store opens it read-only): the whole curve is published, the new points
are kept as on a full disk and saved once it takes writes. A file that cannot even be read
holds points the series does not: no curve and no block are published from the points in
memory alone (`history_withheld`; nav_history_v7.json is left as it is) until it can be read,
then it is loaded as at start with the points kept meanwhile.

The publish dir is written (and the curve removed) only while `may_write(publish_dir)` says so:
the composition root passes the daemon's out-dir lock (`DaemonLock.holds`), so an out dir
replaced under the daemon (by a link to another desk's out dir, say) never gets this history's
curve, and never loses its own. A write held back is logged once (`history_publish_held`) and
made by the next rebuild (a new NAV, or within `REFRESH_S`) once the lock is on the dir again.
"""

from __future__ import annotations

import dataclasses
import itertools
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import structlog

from kpi_publisher import fs
from kpi_publisher.config import Settings
from kpi_publisher.contract import NAV_HISTORY_FILE
from kpi_publisher.daemon.survival import runtime_file
from kpi_publisher.fs import inside
from kpi_publisher.history.backfill import backfill
from kpi_publisher.history.curves import Series, build_nav_history, published_end
from kpi_publisher.history.store import HistoryStore, Point
from kpi_publisher.parse import number
from kpi_publisher.render import render
from kpi_publisher.stages.performance import performance_of_columns

log = structlog.get_logger("hedge-kpi.history")

REFRESH_S = 60.0
LATE_S = 2.0
# At most one rebuild (and so one publish asked for) per this gap: a burst of NAV changes is
# coalesced into a rebuild every 50 ms, as the publisher's own debounce coalesces its passes.
REBUILD_GAP_S = 0.05
# Points kept while the store takes no writes: 10,000 is ~14 hours of a NAV every 5 s (~1 MB).
MAX_UNSAVED = 10_000
DROP_CHUNK = 1_000  # the oldest unsaved points are taken out this many at a time beyond the cap


def point_of(kpis: Mapping[str, Any]) -> Point | None:
    """The history point a kpis_v7 document states: the NAV at its own timestamp."""
    nav = kpis.get("nav") or {}
    risk = kpis.get("risk") or {}
    t, nav_usd = number(nav.get("updated_at")), number(nav.get("nav_usd"))
    if t is None or nav_usd is None or nav_usd <= 0:
        return None
    gross_pct = number(risk.get("gross_exposure_pct"))
    return Point(
        t,
        nav_usd,
        number(nav.get("unrealized_pnl_usd")),
        number(risk.get("drawdown_pct")),
        None if gross_pct is None else gross_pct * nav_usd / 100.0,
    )


@dataclasses.dataclass(frozen=True)
class Target:
    """Where the history lives: its store, the dir nav_history_v7.json is published in, the
    executor's logs dir it back-fills from, and how it writes and thins."""

    store_path: Path
    publish_dir: Path
    logs_dir: Path | None
    fsync: bool
    retention_days: float


def target_of(settings: Settings) -> Target:
    """Where `settings` put the history (what `recorder_for` would open for them)."""
    return Target(
        history_file(settings),
        settings.publish_dir,
        settings.state_dir.parent,
        settings.fsync,
        settings.history_retention_days,
    )


class HistoryRecorder:
    """The history for one publisher: `start()`, register `observe`, wrap the build with
    `with_performance`, `stop()` at the end; `follow` moves it with a reloaded config."""

    def __init__(
        self,
        store: HistoryStore,
        publish_dir: Path,
        logs_dir: Path | None,
        *,
        fsync: bool = True,
        clock: Callable[[], float] = time.time,
        settings: Settings | None = None,
        may_write: Callable[[Path], bool] | None = None,
    ) -> None:
        """`settings`: those it was made from (`follow` compares with them). `may_write`: whether
        the publish dir given may be written now (called on the recorder's thread before each
        write or removal there); None: always."""
        self.store = store
        self.publish_dir = publish_dir
        self.may_write = may_write
        self.logs_dir = logs_dir
        self.fsync = fsync
        self.performance: dict[str, Any] | None = None
        # Called on the recorder's thread when `performance` is new (it must only signal).
        self.on_update: Callable[[], object] | None = None
        self.rebuilds = 0
        self._clock = clock
        self._series = Series()
        self._unsaved: list[Point] = []  # in the series, not yet in the store (in arrival order)
        self._resave = False  # the store's file was made again: the whole series is to be saved
        self._off = False  # another publisher holds the file: no curve, no block, no point kept
        self._behind = False  # the file could not be read: the series lacks what it holds
        # Points, a new Target (a reload), or None (stop), in the order they were asked for.
        self._pending: queue.SimpleQueue[Point | Target | None] = queue.SimpleQueue()
        self._last_t: float | None = None
        self._target = Target(store.path, publish_dir, logs_dir, fsync, store.retention_days)
        self._followed = settings
        self._thread: threading.Thread | None = None
        self._idle = threading.Event()
        self._unwritten = False  # the last curve write failed or was held back: tried again
        self._unremoved = False  # the curve of a history gone off is still to be removed
        self._held_back = False  # `may_write` said no (logged), and has not said yes since
        self._backfill_checked = time.monotonic()
        self._next_rebuild = 0.0  # monotonic

    # -- the publisher's side (loop thread) ----------------------------------------------------

    def observe(self, outputs: Any) -> None:
        """Post-publish observer: queue the published NAV point when it is new."""
        nav = outputs.kpis.get("nav")
        if not isinstance(nav, Mapping) or nav.get("updated_at") == self._last_t:
            return
        point = point_of(outputs.kpis)
        if point is None:
            return
        self._last_t = point.t
        self._idle.clear()
        self._pending.put(point)

    def follow(self, settings: Settings) -> None:
        """Move the history where `settings` put it, as a restart with them would: called on the
        loop thread after each publish, so a reloaded config is followed from its first publish
        (the same settings object costs one comparison). A history file the new settings put in
        the state dir is refused (`history_path_refused`) and the running one is kept."""
        if settings is self._followed:
            return
        self._followed = settings
        target = target_of(settings)
        if target.store_path != self._target.store_path and history_file_refused(
            settings, kept=str(self._target.store_path)
        ):
            target = dataclasses.replace(target, store_path=self._target.store_path)
        if target == self._target:
            return
        if target.store_path != self._target.store_path:
            self._last_t = None  # the new store gets the NAV published now, too
        self._target = target
        self._idle.clear()
        self._pending.put(target)

    def with_performance(self, build: Callable[..., Any]) -> Callable[..., Any]:
        """`build` whose kpis carry the latest `performance` block once there is one."""

        def build_with_performance(*args: Any, **kwargs: Any) -> Any:
            outputs = build(*args, **kwargs)
            if self.performance is not None:
                outputs.kpis["performance"] = self.performance
            return outputs

        return build_with_performance

    # -- the recorder's thread -----------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="history", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 0.5) -> None:
        """Write what is queued, then end the thread; waits at most `timeout_s` (the process
        exits on time: a point not yet written is lost, the file stays whole, WAL)."""
        if self._thread is None:
            return
        self._pending.put(None)
        self._thread.join(timeout_s)
        if not self._thread.is_alive():
            self.store.close()
        self._thread = None

    def wait_idle(self, timeout_s: float) -> bool:
        """True once every queued point is stored and published (for tests and the demo)."""
        return self._idle.wait(timeout_s)

    def _run(self) -> None:
        self._load()
        if self._pending.empty():
            self._idle.set()
        while True:
            try:
                first = self._pending.get(timeout=REFRESH_S)
            except queue.Empty:
                try:
                    self._idle_tick()
                except Exception as exc:  # every path of this thread is guarded: it never ends
                    log.exception("history_failed", reason=f"{type(exc).__name__}: {exc}")
                continue
            wait_s = self._next_rebuild - time.monotonic()
            if wait_s > 0 and isinstance(first, Point):
                time.sleep(wait_s)  # what arrives meanwhile joins this batch
            batch = [first]
            # A new target ends the batch: the points after it belong to the moved history.
            while not isinstance(batch[-1], Target) and not self._pending.empty():
                batch.append(self._pending.get_nowait())
            stop = None in batch
            try:
                tended = self._tend()
                late = self._late_backfill()
                added = self._record([p for p in batch if isinstance(p, Point)])
                if added or late or tended:
                    self._rebuild()
                    self._next_rebuild = time.monotonic() + REBUILD_GAP_S
            except Exception as exc:
                log.exception("history_failed", reason=f"{type(exc).__name__}: {exc}")
            if isinstance(batch[-1], Target):
                try:
                    self._move(batch[-1])
                except Exception as exc:
                    log.exception("history_failed", reason=f"{type(exc).__name__}: {exc}")
            if stop:
                try:
                    self._save_at_stop()
                except Exception as exc:
                    log.exception("history_failed", reason=f"{type(exc).__name__}: {exc}")
            if self._pending.empty():
                self._idle.set()
            if stop:
                return

    def _idle_tick(self) -> None:
        """Every REFRESH_S without a new NAV: follow the file, save what waits, and recompute
        the block (a NAV that stopped moving shows as a gap) or retry a failed curve write."""
        tended = self._tend()
        if self._off:
            if self._unremoved:
                self._remove_curve()
            return
        if tended or self._unwritten:  # the last write failed (a full disk) or waited: again
            self._rebuild()
        else:
            self._refresh_performance()

    def _load(self) -> None:
        """Back-fill the executor's NAV logs, apply retention, load the series and publish; with
        the file held by another publisher, the history is off instead."""
        try:
            opened = self.store.open()
            if not opened and self.store.held_by is not None:
                self._go_off()
                return
            self._off = self._unremoved = False
            self._set_behind(not opened and self.store.unread)
            if self.logs_dir is not None:
                backfill(self.store, self.logs_dir, now=self._clock())
            self.store.thin(self._clock())
            self._series = self._stored_series()
            self._rebuild()
        except Exception as exc:  # the history must never take the publisher down
            log.exception("history_failed", reason=f"{type(exc).__name__}: {exc}")

    def _set_behind(self, behind: bool) -> None:
        """Note whether the series lacks the points of a file that could not be read; while it
        does, no curve and no block are published (a short curve would read as the history)."""
        if behind and not self._behind:
            log.warning(
                "history_withheld",
                file=str(self.store.path),
                reason="the history file cannot be read; no curve or performance block is "
                "published until it can (nav_history_v7.json is left as it is), new points "
                "are kept",
            )
        self._behind = behind

    def _stored_series(self) -> Series:
        """The store's series with the points it does not hold yet; the series as it is while
        the store's file, made again, still waits for it."""
        if self._resave:
            return self._series
        series = Series.of(self.store.nav_rows())
        for point in self._unsaved:
            series.add(point.t, point.nav_usd)
        return series

    def _go_off(self) -> None:
        """Another publisher holds the file: no curve and no block until it is free, and none
        of the points taken meanwhile (they may be another desk's). A nav_history_v7.json this
        out dir still has (a run before, or before a reload moved the history) is removed: the
        dashboard would draw it, undated, as the history of now."""
        if self._off:
            return
        self._off = True
        self._drop_unsaved("another publisher holds the history file")
        self._series = Series()
        self.performance = None
        self._unremoved = True
        self._remove_curve()
        self._notify()

    def _remove_curve(self) -> None:
        """`_go_off`'s removal of the out dir's nav_history_v7.json; held back (and tried again
        while the history is off) until `may_write` allows it."""
        stale = self.publish_dir / NAV_HISTORY_FILE
        if not self._may_write(stale):
            return
        self._unremoved = False
        try:
            stale.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("history_publish_failed", file=str(stale), reason=str(exc))
        else:
            log.info("history_curve_removed", file=str(stale), reason="history off")

    def _may_write(self, file: Path) -> bool:
        """Whether `file` in the publish dir may be written or removed now; the first refusal of
        a run of them is logged."""
        if self.may_write is None or self.may_write(self.publish_dir):
            self._held_back = False
            return True
        if not self._held_back:
            self._held_back = True
            log.warning(
                "history_publish_held",
                file=str(file),
                out_dir=str(self.publish_dir),
                reason="the out dir at this path is not the one this publisher locked (replaced, "
                "or a link to another dir); the curve is written (or removed) there once it is",
            )
        return False

    def _drop_unsaved(self, reason: str) -> None:
        """Forget the points the store never took (a restart would not have them either)."""
        if self._unsaved:
            log.warning(
                "history_unsaved_lost",
                file=str(self.store.path),
                points=len(self._unsaved),
                reason=reason,
            )
        self._unsaved.clear()
        self._resave = False

    def _tend(self) -> bool:
        """Follow the store's file (take it over once free, notice it deleted or replaced) and
        save what waits; True when the series changed and the curve is to be rebuilt."""
        if self._off:
            if self.store.open():
                self._load()
            return False
        if self._behind and self.store.open():  # readable now: loaded as at start
            self._load()
            return self._save() or True
        change = self.store.verify()
        if change == "replaced":
            self._drop_unsaved("another file was put at the history path")
            self._load()
            return False
        if change == "deleted":
            self._resave = True
        return self._save()

    def _record(self, points: list[Point]) -> bool:
        """Add the new points to the series and save them; True when the series changed."""
        if self._off:
            return False
        added = False
        for point in points:
            if self._series.add(point.t, point.nav_usd):
                self._unsaved.append(point)
                added = True
        self._bound_unsaved()
        return self._save() or added

    def _bound_unsaved(self) -> None:
        excess = len(self._unsaved) - MAX_UNSAVED
        if excess <= 0:
            return
        dropped = self._unsaved[: max(excess, DROP_CHUNK)]
        del self._unsaved[: len(dropped)]
        self._series.remove(point.t for point in dropped)
        log.warning(
            "history_unsaved_dropped",
            file=str(self.store.path),
            points=len(dropped),
            kept=len(self._unsaved),
            reason="the store takes no writes; the oldest points it does not hold are dropped",
        )

    def _save(self) -> bool:
        """Write what the store does not hold (the unsaved points; the whole series into a file
        made again) in one transaction; True when retention ran and the series was reloaded."""
        if not (self._unsaved or self._resave):
            return False
        points: Iterable[Point] = self._unsaved
        if self._resave:
            series = (
                Point(t, nav) for t, nav in zip(self._series.times, self._series.navs, strict=True)
            )
            points = itertools.chain(self._unsaved, series)
        thinned = self.store.thinned
        if not self.store.save(points, now=self._clock()):
            if self.store.held_by is not None:  # made again and taken by another meanwhile
                self._go_off()
                return True
            return False
        if self._resave:
            log.info("history_restored", file=str(self.store.path), points=len(self._series.times))
        self._unsaved.clear()
        self._resave = False
        if self.store.thinned != thinned or self._behind:  # hold what the store holds
            self._series = self._stored_series()
            self._set_behind(False)
            return True
        return False

    def _save_at_stop(self) -> None:
        """One last try (the pause ended early) for the points the store does not hold yet."""
        if self._off or not (self._unsaved or self._resave):
            return
        self.store.retry_now()
        self._save()
        if self._unsaved or self._resave:
            unsaved = len(self._series.times) if self._resave else len(self._unsaved)
            log.warning(
                "history_unsaved_lost",
                file=str(self.store.path),
                points=unsaved,
                reason="the store took no writes before the stop",
            )

    def _move(self, target: Target) -> None:
        """Switch to `target` (a reload): another store (or logs dir) is opened and loaded as at
        start; the same store is published again, into the new dir. A new fsync or retention
        applies from the next write and the next thinning."""
        before, before_dir = self.store.path, self.publish_dir
        self.fsync = target.fsync
        self.store.retention_days = target.retention_days
        reload_store = (target.store_path, target.logs_dir) != (before, self.logs_dir)
        if not reload_store and target.publish_dir == before_dir:
            return
        self.publish_dir, self.logs_dir = target.publish_dir, target.logs_dir
        self._unwritten = self._unremoved = False
        if target.store_path != before:
            self._drop_unsaved("the history moved to another file")
            self.store.close()
            self.store = HistoryStore(target.store_path, retention_days=target.retention_days)
        log.info(
            "history_moved",
            file=str(target.store_path),
            out_dir=str(target.publish_dir),
            previous_file=str(before),
            previous_out_dir=str(before_dir),
        )
        if reload_store:
            self._load()
        elif self._off:  # the new out dir's curve from before is not this history's either
            self._unremoved = True
            self._remove_curve()
        else:
            self._rebuild()

    def _late_backfill(self) -> bool:
        """Import an executor NAV file that appeared after start-up (checked every LATE_S)."""
        now = time.monotonic()
        if self._off or self.logs_dir is None or now - self._backfill_checked < LATE_S:
            return False
        self._backfill_checked = now
        if not backfill(self.store, self.logs_dir, now=self._clock(), new_files_only=True):
            return False
        self._series = self._stored_series()
        return True

    def _refresh_performance(self) -> None:
        if self._behind:
            if self.performance is not None:
                self.performance = None
                self._notify()
            return
        now = self._clock()
        try:
            self.performance = performance_of_columns(self._series.times, self._series.navs, now)
        except Exception:
            # No block rather than one frozen at an old `as_of` that publishes go on showing.
            self.performance = None
            raise
        self._notify()

    def _notify(self) -> None:
        """Ask for a publish: `performance` is new."""
        if self.on_update is not None:
            try:
                self.on_update()
            except Exception as exc:  # a publish is only asked for; the heartbeat brings it
                log.warning("history_notify_failed", reason=f"{type(exc).__name__}: {exc}")

    def _rebuild(self) -> None:
        """New performance block; nav_history_v7.json once there is a curve (two points)."""
        if self._off:
            return
        now = self._clock()
        self._refresh_performance()
        if self._behind:
            return
        if published_end(self._series.times, self._series.navs, now) < 2:
            return
        if not self._may_write(self.publish_dir / NAV_HISTORY_FILE):
            self._unwritten = True
            return
        data = render(build_nav_history(self._series, now))
        try:
            fs.write_atomic(self.publish_dir / NAV_HISTORY_FILE, data, fsync=self.fsync)
        except OSError as exc:
            if not self._unwritten:
                log.warning("history_publish_failed", file=NAV_HISTORY_FILE, reason=str(exc))
            self._unwritten = True
            return
        self._unwritten = False
        self.rebuilds += 1


def default_history_file(publish_dir: Path, environ: Mapping[str, str] | None = None) -> Path:
    """Beside the crash log: the private per-user runtime dir, never the state dir."""
    return runtime_file(publish_dir, "history", ".sqlite", environ)


def history_file(settings: Settings) -> Path:
    """The history file `settings` ask for: `history_path`, else the default for the out dir."""
    return settings.history_path or default_history_file(settings.publish_dir)


def history_file_refused(settings: Settings, **kept: str) -> bool:
    """True (with one `history_path_refused` line, naming what is `kept` instead) when the
    history file `settings` ask for lies in the state dir, which the publisher never writes."""
    path = history_file(settings)
    if not inside(path, settings.state_dir):
        return False
    log.error("history_path_refused", file=str(path), reason="inside the state dir", **kept)
    return True


def recorder_for(settings: Settings) -> HistoryRecorder | None:
    """The recorder `settings` ask for; None for a path in the state dir."""
    if history_file_refused(settings):
        return None
    path = history_file(settings)
    store = HistoryStore(path, retention_days=settings.history_retention_days)
    return HistoryRecorder(
        store,
        settings.publish_dir,
        settings.state_dir.parent,
        fsync=settings.fsync,
        settings=settings,
    )
