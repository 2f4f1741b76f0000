"""The history file deleted or replaced under a running daemon. Before, neither was ever
noticed: after `rm h.sqlite` the daemon wrote on into the deleted file through its connection
and the curve regressed at the next restart (135 -> 9 points), silently; after `mv other.sqlite
h.sqlite` it never opened the new file. Now the path is compared with the open file before each
write and at each idle refresh: `history_file_changed` names the file and what happened; a
deleted file is made again with the whole curve held in memory (`history_restored`); a file put
in its place is opened as that path's history, checked as at start."""

from __future__ import annotations

import os
import time
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from kpi_publisher.contract import NAV_HISTORY_FILE
from kpi_publisher.history import recorder as recorder_module
from kpi_publisher.history.recorder import HistoryRecorder
from kpi_publisher.history.store import HistoryStore, Point
from tests.history.daemons import Daemon, Desk, curve, published, stored, stored_so_far, wait_for

pytestmark = pytest.mark.timeout(60)

T0 = 1_760_000_000.0


def history_of(path: Path, *points: tuple[float, float]) -> Path:
    """A history file of our own, written and closed by another store."""
    other = HistoryStore(path)
    other.extend(Point(t, nav) for t, nav in points)
    other.close()
    return path


def changes(logs: list[MutableMapping[str, Any]]) -> list[tuple[str, str]]:
    return [(e["file"], e["change"]) for e in logs if e["event"] == "history_file_changed"]


def test_a_deleted_file_is_noticed_at_the_next_write_and_made_again(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    store = HistoryStore(path)
    assert store.append(Point(T0, 1000.0), now=T0)
    path.unlink()
    with capture_logs() as logs:
        assert store.append(Point(T0 + 60, 1001.0), now=T0)
    assert changes(logs) == [(str(path), "deleted")]
    assert path.exists()
    assert store.verify() == "deleted"
    assert store.verify() is None  # told once
    store.close()
    assert HistoryStore(path).navs() == [(T0 + 60, 1001.0)]


def test_a_file_put_in_its_place_is_opened_as_the_paths_history(tmp_path: Path) -> None:
    """`mv other.sqlite h.sqlite`: the new file is the history from then on, and nothing of the
    old one is replayed into it (SQLite leaves a moved file's WAL at the path)."""
    path = tmp_path / "h.sqlite"
    other = history_of(tmp_path / "other.sqlite", (T0 - 600, 2000.0), (T0 - 540, 2001.0))
    store = HistoryStore(path)
    store.extend(Point(T0 + i, 1000.0 + i) for i in range(500))  # a WAL of many pages
    os.replace(other, path)
    with capture_logs() as logs:
        assert store.append(Point(T0 + 600, 2002.0), now=T0)
    assert changes(logs) == [(str(path), "replaced")]
    assert store.navs() == [(T0 - 600, 2000.0), (T0 - 540, 2001.0), (T0 + 600, 2002.0)]
    store.close()
    assert stored(path) == [2000.0, 2001.0, 2002.0]


def test_a_file_put_in_its_place_that_is_no_history_is_refused_and_left_alone(
    tmp_path: Path,
) -> None:
    path = tmp_path / "h.sqlite"
    store = HistoryStore(path)
    assert store.append(Point(T0, 1000.0), now=T0)
    document = tmp_path / "holdings.json"
    document.write_bytes(b'{"BTC": {"qty": 0.1}}\n')
    os.replace(document, path)
    with capture_logs() as logs:
        assert not store.append(Point(T0 + 60, 1001.0), now=T0)
    assert [e["event"] for e in logs] == ["history_file_changed", "history_refused"]
    assert path.read_bytes() == b'{"BTC": {"qty": 0.1}}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h.sqlite"]


@pytest.mark.parametrize("noticed_by", ["next_nav", "idle_refresh"])
def test_a_recorder_writes_its_whole_curve_into_a_file_made_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, noticed_by: str
) -> None:
    """Deleted under the recorder, the file is made again and holds every point of the curve
    (by the next NAV, or within a refresh period without one), so a restart shows the curve
    that was published."""
    monkeypatch.setattr(recorder_module, "REFRESH_S", 0.1)
    path, out = tmp_path / "h.sqlite", tmp_path / "out"
    out.mkdir()
    now = time.time()
    recorder = HistoryRecorder(HistoryStore(path), out, None, fsync=False)
    recorder.start()
    try:
        for i in range(5):
            recorder.observe(published(now - 600 + 60 * i, 1000.0 + i))
            time.sleep(0.06)
        assert recorder.wait_idle(10)
        with capture_logs() as logs:
            path.unlink()
            if noticed_by == "next_nav":
                recorder.observe(published(now - 60, 1005.0))
                time.sleep(0.06)
                assert recorder.wait_idle(10)
            wait_for(lambda: len(stored_so_far(path)) >= 5, 10)
        published_curve = curve(out)
    finally:
        recorder.stop()
    assert changes(logs) == [(str(path), "deleted")]
    assert [e["points"] for e in logs if e["event"] == "history_restored"] == [5]
    expected = [1000.0, 1001.0, 1002.0, 1003.0, 1004.0]
    if noticed_by == "next_nav":
        expected.append(1005.0)
    assert published_curve == expected
    assert stored(path) == expected
    restarted = HistoryRecorder(HistoryStore(path), tmp_path, None, fsync=False)
    restarted.start()
    restarted.stop(5)
    assert curve(tmp_path) == expected


def test_a_running_daemon_follows_its_history_file_deleted_then_replaced(tmp_path: Path) -> None:
    """The real repro: `rm h.sqlite` under `hedge-kpi run`, then `mv other.sqlite h.sqlite`.
    Each is logged once; the deleted file is made again with the whole curve; the replacement
    is loaded as at start; a restart publishes exactly the curve published before it."""
    history = tmp_path / "h.sqlite"
    desk = Desk.make(tmp_path / "desk", 1000.0)
    daemon = Daemon(desk, history)
    again: Daemon | None = None
    try:
        daemon.wait_event("publish")
        for nav in (1001.0, 1002.0, 1003.0):
            desk.move_nav(nav)
        history.unlink()
        desk.move_nav(1004.0)
        deleted = daemon.wait_event("history_file_changed", change="deleted")
        assert deleted["file"] == str(history)
        assert daemon.wait_event("history_restored")["points"] == 4
        assert desk.curve() == [1000.0, 1001.0, 1002.0, 1003.0, 1004.0]
        assert stored(history) == desk.curve()

        before = time.time() - 3600
        other = history_of(tmp_path / "other.sqlite", (before, 2000.0), (before + 60, 2001.0))
        os.replace(other, history)
        desk.move_nav(1005.0)
        daemon.wait_event("history_file_changed", change="replaced")
        assert desk.curve() == [2000.0, 2001.0, 1005.0]
        assert stored(history) == [2000.0, 2001.0, 1005.0]
        assert daemon.stop() == 0
        (desk.out / NAV_HISTORY_FILE).unlink()
        again = Daemon(desk, history)
        wait_for(lambda: desk.curve())
        assert desk.curve() == [2000.0, 2001.0, 1005.0]
        assert again.stop() == 0
    finally:
        daemon.kill()
        if again is not None:
            again.kill()
    assert len(daemon.named("history_file_changed")) == 2
    assert not [e for e in daemon.events if e.get("level") == "error"]
