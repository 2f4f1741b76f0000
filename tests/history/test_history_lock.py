"""One publisher per history file. Two daemons given one `history_path` (two desks, one typo)
mixed both desks' NAVs into one curve, silently: each one's nav_history_v7.json and performance
block read [501, 10001, 502, 10002, ...]. The store now holds a flock on the file; a second one
logs `history_locked` naming the holder, records and publishes no history, and takes the file
over once the holder stops."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from kpi_publisher.contract import NAV_HISTORY_FILE
from kpi_publisher.history import recorder as recorder_module
from kpi_publisher.history import store as store_module
from kpi_publisher.history.recorder import HistoryRecorder
from kpi_publisher.history.store import HistoryStore, Point
from tests.history.daemons import Daemon, Desk, published, stored, wait_for

pytestmark = pytest.mark.timeout(90)

T0 = 1_760_000_000.0
HOLDER = """
import sys, time
from pathlib import Path
from kpi_publisher.history.store import HistoryStore, Point
store = HistoryStore(Path(sys.argv[1]))
assert store.append(Point(1_760_000_000.0, 10_000.0), now=1_760_000_000.0)
print("held", flush=True)
time.sleep(60)
"""


def test_a_store_on_a_file_another_process_holds_is_refused_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing is written or read while the other process holds the file, one
    `history_locked` error names its pid, a try after the pause is refused quietly, and the
    first try after the holder is gone opens the file (`history_resumed`)."""
    path = tmp_path / "h.sqlite"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        store = HistoryStore(path)
        with capture_logs() as logs:
            assert not store.append(Point(T0 + 60, 500.0), now=T0)
            assert not store.save([Point(T0 + 120, 501.0)], now=T0)
            assert store.navs() == [] and store.count() == 0
            monkeypatch.setattr(store, "_paused_until", 1.0)  # the pause is over: still held
            assert not store.append(Point(T0 + 180, 502.0), now=T0)
        assert [(e["event"], e["log_level"]) for e in logs] == [("history_locked", "error")]
        assert logs[0]["holder_pid"] == holder.pid
        assert logs[0]["file"] == str(path)
        assert f"pid {holder.pid}" in logs[0]["reason"]
        assert store.held_by is not None and store.held_by.pid == holder.pid
    finally:
        holder.kill()
        holder.wait()
    assert stored(path) == [10_000.0]
    monkeypatch.setattr(store, "_paused_until", 1.0)
    with capture_logs() as logs:
        assert store.append(Point(T0 + 240, 10_001.0), now=T0)
    assert [e["event"] for e in logs] == ["history_resumed"]
    assert store.held_by is None
    assert store.navs() == [(T0, 10_000.0), (T0 + 240, 10_001.0)]


def test_a_recorder_on_a_held_file_is_off_and_takes_over_when_the_holder_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two recorders, one file: the second publishes no curve and no block and stores nothing
    while the first holds it (the curve its out dir had from before is removed, as the
    dashboard would draw it); once the first stops, the second opens the file as at start and
    records from then on."""
    monkeypatch.setattr(store_module, "PAUSE_RETRY_S", 0.2)
    monkeypatch.setattr(recorder_module, "REFRESH_S", 0.1)
    path, a_out, b_out = tmp_path / "h.sqlite", tmp_path / "A", tmp_path / "B"
    a_out.mkdir()
    b_out.mkdir()
    # B's out dir still has a curve from a run before: it is not B's history now.
    (b_out / NAV_HISTORY_FILE).write_text('{"windows": {}}')
    now = time.time()
    a = HistoryRecorder(HistoryStore(path), a_out, None, fsync=False)
    b = HistoryRecorder(HistoryStore(path), b_out, None, fsync=False)
    a.start()
    try:
        assert a.wait_idle(10)
        with capture_logs() as logs:
            b.start()
            for i in range(3):
                a.observe(published(now - 600 + 60 * i, 10_000.0 + i))
                b.observe(published(now - 590 + 60 * i, 500.0 + i))
                time.sleep(0.06)
            assert a.wait_idle(10) and b.wait_idle(10)
        assert [e["event"] for e in logs if e["log_level"] == "error"] == ["history_locked"]
        assert a.performance is not None and a.performance["history"]["points"] == 3
        assert b.performance is None
        assert not (b_out / NAV_HISTORY_FILE).exists()
        a.stop()
        assert stored(path) == [10_000.0, 10_001.0, 10_002.0]
        wait_for(lambda: b.performance is not None, 10)
        b.observe(published(now - 60, 10_003.0))
        time.sleep(0.06)
        assert b.wait_idle(10)
        assert b.performance is not None and b.performance["history"]["points"] == 4
        assert (b_out / NAV_HISTORY_FILE).exists()
    finally:
        a.stop()
        b.stop()
    assert stored(path) == [10_000.0, 10_001.0, 10_002.0, 10_003.0]


def test_two_daemons_on_one_history_file_never_mix_their_navs(tmp_path: Path) -> None:
    """The real repro: desks at ~10,000 and ~500, two `hedge-kpi run` with one
    KPI_HISTORY_PATH. The second logs one `history_locked` naming the first's pid and
    publishes its KPIs with no performance block and no nav_history_v7.json; the first's curve
    and the file hold its own NAVs only. Stopped, the first hands the file over: the second
    (its retry period shortened to 0.5 s) takes it at its next try, as a restart on that file
    would, and publishes the file's curve and its own NAVs from then on (here a standby of the
    first desk: its NAV is the next one of that desk)."""
    history = tmp_path / "h.sqlite"
    big, small = Desk.make(tmp_path / "big", 10_000.0), Desk.make(tmp_path / "small", 500.0)
    first = Daemon(big, history)
    second: Daemon | None = None
    try:
        first.wait_event("publish")
        big.move_nav(10_001.0)
        second = Daemon(small, history, retry_s=0.5)
        locked = second.wait_event("history_locked")
        assert (locked["holder_pid"], locked["holder"]) == (first.pid, "run")
        assert locked["file"] == str(history)
        for i in range(2, 5):
            big.move_nav(10_000.0 + i)
            small.move_nav(500.0 + i, curve=False)
        assert big.curve() == [10_000.0, 10_001.0, 10_002.0, 10_003.0, 10_004.0]
        assert big.kpis()["performance"]["history"]["points"] == 5
        assert "performance" not in small.kpis()
        assert not (small.out / NAV_HISTORY_FILE).exists()
        assert len(second.named("history_locked")) == 1
        assert first.stop() == 0
        assert stored(history) == [10_000.0, 10_001.0, 10_002.0, 10_003.0, 10_004.0]

        second.wait_event("history_resumed", file=str(history))
        small.move_nav(10_005.0)
        assert small.curve() == [10_000.0, 10_001.0, 10_002.0, 10_003.0, 10_004.0, 10_005.0]
        assert small.kpis()["performance"]["history"]["points"] == 6
        assert second.stop() == 0
    finally:
        first.kill()
        if second is not None:
            second.kill()
    assert stored(history)[-1] == 10_005.0
