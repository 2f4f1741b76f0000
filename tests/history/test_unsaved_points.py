"""Points the store could not take. Before, a full disk paused the store (append returned False)
while the recorder added every point to its curve anyway: nav_history_v7.json showed 152 points
while the store held 32, and the curve shrank to 39 at the restart, silently. Now the points
the store does not hold are kept (at most MAX_UNSAVED, the oldest taken out of the curve too
beyond that, logged) and saved in one transaction once the store takes writes again, or at the
stop; so the curve a restart shows is the one that was published."""

from __future__ import annotations

import contextlib
import errno
import shutil
import tempfile
import time
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from kpi_publisher.history import recorder as recorder_module
from kpi_publisher.history.curves import Series
from kpi_publisher.history.recorder import HistoryRecorder
from kpi_publisher.history.store import HistoryStore, Point
from tests.history.daemons import (
    Daemon,
    Desk,
    curve,
    published,
    require_mount_namespace,
    stored,
    stored_so_far,
    wait_for,
)

pytestmark = pytest.mark.timeout(60)

NO_LIMIT = 1_073_741_823  # SQLite's largest max_page_count
T0 = 1_760_000_000.0


def disk_full(store: HistoryStore, full: bool) -> None:
    """The store's file can grow no more (SQLite's own SQLITE_FULL), or again."""
    assert store.open() and store._db is not None
    pages = store._db.execute("PRAGMA page_count").fetchone()[0]
    store._db.execute(f"PRAGMA max_page_count = {pages if full else NO_LIMIT}")


class NearlyFull:
    """A recorder on a store that already holds 50 minute points, its disk about to fill."""

    def __init__(self, tmp_path: Path) -> None:
        self.path, self.out = tmp_path / "h.sqlite", tmp_path / "out"
        self.out.mkdir()
        self.now = time.time()
        store = HistoryStore(self.path)
        store.extend(Point(self.now - 86_400 + 60 * i, 1000.0 + i) for i in range(50))
        disk_full(store, True)
        self.recorder = HistoryRecorder(store, self.out, None, fsync=False)
        self.next_t = self.now - 3600
        self.recorder.start()
        assert self.recorder.wait_idle(10)

    def publish(self, count: int) -> None:
        for _ in range(count):
            self.next_t += 10
            self.recorder.observe(published(self.next_t, 2000.0 + self.next_t % 1000))
        time.sleep(0.06)
        assert self.recorder.wait_idle(10)

    def restart_curve(self, tmp_path: Path) -> list[float]:
        """The curve a new recorder on the same file publishes at its start."""
        out = tmp_path / "restart"
        out.mkdir()
        again = HistoryRecorder(HistoryStore(self.path), out, None, fsync=False)
        again.start()
        again.stop(10)
        return curve(out)


@pytest.mark.parametrize(
    "gone",
    [[T0 + 180, T0 + 240], [T0 + 60], [T0, T0 + 120, T0 + 999]],
    ids=["latest", "the_peak", "first_and_unheld"],
)
def test_a_series_with_points_taken_out_is_the_series_of_the_rest(gone: list[float]) -> None:
    """Drawdowns (from the running peak) are those of a series built without those points."""
    navs = [(T0, 1000.0), (T0 + 60, 1100.0), (T0 + 120, 990.0), (T0 + 180, 1200.0),
            (T0 + 240, 1150.0)]  # fmt: skip
    series = Series.of(navs)
    series.remove(gone)
    rest = Series.of([(t, nav) for t, nav in navs if t not in gone])
    assert (series.times, series.navs, series.drawdowns, series.peak) == (
        rest.times, rest.navs, rest.drawdowns, rest.peak,
    )  # fmt: skip


def test_points_taken_while_the_store_is_full_are_saved_once_it_takes_writes_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    full = NearlyFull(tmp_path)
    with capture_logs() as logs:
        full.publish(200)  # more than the last page holds: the store pauses
        published_while_full = curve(full.out)
        assert len(published_while_full) == 250
        assert len(stored(full.path)) < 250
        disk_full(full.recorder.store, False)
        monkeypatch.setattr(full.recorder.store, "_paused_until", 1.0)  # the pause is over
        full.publish(1)
    full.recorder.stop()
    assert [e["event"] for e in logs] == ["history_paused", "history_resumed"]
    assert "full" in logs[0]["reason"]
    assert curve(full.out)[:-1] == published_while_full
    assert stored(full.path) == curve(full.out)
    assert full.restart_curve(tmp_path) == curve(full.out)


def test_the_points_kept_are_saved_without_a_new_nav_by_the_idle_refresh(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(recorder_module, "REFRESH_S", 0.1)
    full = NearlyFull(tmp_path)
    full.publish(200)
    assert len(stored(full.path)) < 250
    disk_full(full.recorder.store, False)
    monkeypatch.setattr(full.recorder.store, "_paused_until", 1.0)
    wait_for(lambda: len(stored_so_far(full.path)) == 250, 10)
    full.recorder.stop()
    assert stored(full.path) == curve(full.out)
    assert full.restart_curve(tmp_path) == curve(full.out)


def test_beyond_the_cap_the_oldest_points_kept_leave_the_curve_too_and_are_logged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MAX_UNSAVED 20, DROP_CHUNK 5: the curve never holds more than what the store holds and
    20 points more; each chunk dropped is one `history_unsaved_dropped` line."""
    monkeypatch.setattr(recorder_module, "MAX_UNSAVED", 20)
    monkeypatch.setattr(recorder_module, "DROP_CHUNK", 5)
    full = NearlyFull(tmp_path)
    with capture_logs() as logs:
        for _ in range(50):
            full.publish(4)
    held = len(stored(full.path))
    assert len(curve(full.out)) <= held + 20
    dropped = [e for e in logs if e["event"] == "history_unsaved_dropped"]
    assert len(dropped) > 10
    assert all(e["points"] == 5 and 15 <= e["kept"] <= 20 for e in dropped)
    assert sum(e["points"] for e in dropped) + len(curve(full.out)) == 250
    disk_full(full.recorder.store, False)
    monkeypatch.setattr(full.recorder.store, "_paused_until", 1.0)
    full.publish(1)
    full.recorder.stop()
    assert stored(full.path) == curve(full.out)
    assert full.restart_curve(tmp_path) == curve(full.out)


@pytest.mark.parametrize("room_at_stop", [True, False], ids=["room", "still_full"])
def test_a_stop_makes_one_last_try_and_says_what_it_could_not_save(
    tmp_path: Path, room_at_stop: bool
) -> None:
    """Space freed while the store's pause runs (60 s): the stop saves the points kept. A disk
    still full at the stop loses them, with one `history_unsaved_lost` line naming how many."""
    full = NearlyFull(tmp_path)
    full.publish(200)
    held = len(stored(full.path))
    assert held < 250
    if room_at_stop:
        disk_full(full.recorder.store, False)
    with capture_logs() as logs:
        full.recorder.stop(10)
    lost = [e for e in logs if e["event"] == "history_unsaved_lost"]
    if room_at_stop:
        assert not lost
        assert stored(full.path) == curve(full.out)
        assert full.restart_curve(tmp_path) == curve(full.out)
    else:
        assert [(e["file"], e["points"]) for e in lost] == [(str(full.path), 250 - held)]
        assert len(stored(full.path)) == held


def stored_in_namespace(directory: Path) -> list[float]:
    """What the history file in another mount namespace holds, read from a copy (SQLite would
    resolve the /proc/<pid>/root link back to this namespace's own directory)."""
    copy = Path(tempfile.mkdtemp())
    try:
        for name in ("h.sqlite", "h.sqlite-wal"):
            with contextlib.suppress(FileNotFoundError):
                shutil.copyfile(directory / name, copy / name)
        return stored(copy / "h.sqlite")
    finally:
        shutil.rmtree(copy)


def _fill(directory: Path) -> None:
    """Write into `directory` until its file system is full."""
    with (directory / "filler").open("wb", buffering=0) as filler:
        with contextlib.suppress(OSError):
            while True:
                filler.write(b"\0" * 65536)
        with pytest.raises(OSError) as full:
            filler.write(b"\0" * 65536)
        assert full.value.errno == errno.ENOSPC


def test_a_daemon_on_a_full_disk_publishes_only_what_it_will_save(tmp_path: Path) -> None:
    """The real repro: the history on a 256 KiB tmpfs of the daemon's own mount namespace
    (its retry period shortened to 0.5 s), filled while the daemon runs. Every NAV is
    published; once the filler is removed the store holds exactly the published curve (what
    a restart loads), where before it held the points from before the disk filled and from
    after it had room again, and none of those published in between."""
    require_mount_namespace()
    hist = tmp_path / "hist"
    hist.mkdir()
    desk = Desk.make(tmp_path / "desk", 1000.0)
    mount = f'mount -t tmpfs -o size=256k tmpfs "{hist}" && exec "$@"'
    wrap = ["unshare", "-U", "-r", "-m", "sh", "-c", mount, "sh"]
    daemon = Daemon(desk, hist / "h.sqlite", retry_s=0.5, wrap=wrap)
    try:
        daemon.wait_event("publish")
        inside = Path(f"/proc/{daemon.pid}/root") / hist.relative_to("/")  # its mount
        desk.move_nav(1001.0)
        assert stored_in_namespace(inside) == [1000.0, 1001.0]
        _fill(inside)
        for i in range(2, 12):
            desk.move_nav(1000.0 + i)
        daemon.wait_event("history_paused")
        assert len(desk.curve()) == 12
        assert len(stored_in_namespace(inside)) < 12
        (inside / "filler").unlink()
        time.sleep(0.6)  # past the store's pause
        desk.move_nav(1012.0)
        daemon.wait_event("history_resumed")
        assert desk.curve() == [1000.0 + i for i in range(13)]
        with contextlib.suppress(AssertionError):  # saved by the next NAV or the idle refresh
            wait_for(lambda: stored_in_namespace(inside) == desk.curve(), 5)
        assert stored_in_namespace(inside) == desk.curve()
        assert daemon.stop() == 0
    finally:
        daemon.kill()
    assert len(daemon.named("history_paused")) == 1
