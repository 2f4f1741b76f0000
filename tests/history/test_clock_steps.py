"""Retention in data time. Before, the store thinned and deleted at the recorder's wall clock: a
clock stepped 45 days ahead for five seconds, while two NAVs arrived, took a 20-day history of
5,762 points down to 1,059 for good (30 d Sharpe 2.466 -> 2.077), and 401 days ahead left 2
points; nothing was logged. Now no retention path acts on a time past the newest point stored,
and a clock far from the data is logged once."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import orjson
import pytest
from structlog.testing import capture_logs

from kpi_publisher.contract import NAV_HISTORY_FILE
from kpi_publisher.history import store as store_module
from kpi_publisher.history.recorder import HistoryRecorder
from kpi_publisher.history.store import DAY_S, HistoryStore, Point
from kpi_publisher.stages.performance import build_performance

pytestmark = pytest.mark.timeout(60)

T0 = 1_760_000_000.0
STEPS_S = {
    "31 d": 31 * DAY_S,
    "45 d": 45 * DAY_S,
    "366 d": 366 * DAY_S,
    "401 d": 401 * DAY_S,
    "a century": 36_500 * DAY_S,
}


def twenty_days(end: float = T0) -> list[Point]:
    """A NAV every 5 minutes for 20 days up to `end`, wobbling so thinning would show."""
    return [
        Point(end - 20 * DAY_S + 300.0 * i, 2000.0 + (i % 50) * 0.7 + i * 0.01)
        for i in range(20 * 288 + 1)
    ]


def _thin(store: HistoryStore, clock: float) -> None:
    store.thin(clock)


def _append(store: HistoryStore, clock: float) -> None:
    store.append(Point(T0 + 300.0, 2100.0), now=clock)


def _save(store: HistoryStore, clock: float) -> None:
    store.save([Point(T0 + 300.0, 2100.0), Point(T0 + 600.0, 2101.0)], now=clock)


def _extend(store: HistoryStore, clock: float) -> None:
    store.extend([Point(T0 + 300.0, 2100.0)], thin_at=clock)


ENTRIES: dict[str, Callable[[HistoryStore, float], None]] = {
    "thin": _thin,
    "append": _append,
    "save": _save,
    "extend(thin_at)": _extend,
}


@pytest.mark.parametrize("step", STEPS_S.values(), ids=STEPS_S.keys())
@pytest.mark.parametrize("entry", ENTRIES.values(), ids=ENTRIES.keys())
def test_no_clock_step_thins_what_the_data_calls_recent(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    entry: Callable[[HistoryStore, float], None],
    step: float,
):
    """Every way retention runs, at a clock stepped ahead by a month to a century: the store
    keeps exactly what it keeps with the clock right (the clock at the newest point), and says
    once that the clock is far from the data."""
    monkeypatch.setattr(store_module, "THIN_BATCH", 1)  # an import thins after each point
    stepped = HistoryStore(tmp_path / "stepped.sqlite", retention_days=400)
    right = HistoryStore(tmp_path / "right.sqlite", retention_days=400)
    for store in (stepped, right):
        store.extend(twenty_days())
    with capture_logs() as logs:
        entry(stepped, T0 + step)
        entry(stepped, T0 + step + 7200.0)  # still stepped an hour or two later
    entry(right, T0 + 600.0)
    assert stepped.navs() == right.navs()
    assert len(stepped.navs()) > 20 * 288
    far = [e for e in logs if e["event"] == "history_clock_far"]
    assert len(far) == 1
    assert far[0]["ahead_s"] >= step - 600.0


def test_a_clock_behind_the_data_thins_nothing_more_than_before(tmp_path: Path):
    """Stepped back a year, the clock is far from the data too (logged once); retention acts
    at the clock, which deletes nothing a right clock keeps."""
    store = HistoryStore(tmp_path / "h.sqlite", retention_days=400)
    store.extend(twenty_days())
    with capture_logs() as logs:
        assert store.thin(T0 - 365 * DAY_S) == 0
    assert len(store.navs()) == 20 * 288 + 1
    assert [e["event"] for e in logs] == ["history_clock_far"]


def _published(t: float, nav: float) -> SimpleNamespace:
    return SimpleNamespace(kpis={"nav": {"updated_at": t, "nav_usd": nav}, "risk": {}})


@pytest.mark.parametrize("step", [45 * DAY_S, 401 * DAY_S], ids=["45 d", "401 d"])
def test_a_clock_stepped_ahead_while_navs_arrive_leaves_the_published_history_whole(
    tmp_path: Path, step: float
):
    """The probe's daemon: 20 days of 5-minute points, the clock 45 (401) days ahead while two
    NAVs arrive, then right again for a third. The curve, the store and the performance block
    (30 d Sharpe, every window) are those of all 5,764 points, as if the clock never moved."""
    path = tmp_path / "h.sqlite"
    history = twenty_days()
    HistoryStore(path).extend(history)
    clock = [T0 + 5.0]
    recorder = HistoryRecorder(
        HistoryStore(path), tmp_path, None, fsync=False, clock=lambda: clock[0]
    )
    live = [(T0 + 300.0, 2100.0), (T0 + 600.0, 2101.0), (T0 + 900.0, 2102.0)]
    recorder.start()
    try:
        assert recorder.wait_idle(10)
        before = recorder.performance
        assert before is not None and before["ratios"]["30d"]["sharpe"] is not None
        clock[0] = T0 + step
        for t, nav in live[:2]:
            recorder.observe(_published(t, nav))
            time.sleep(0.06)
            assert recorder.wait_idle(10)
        clock[0] = T0 + 905.0
        recorder.observe(_published(*live[2]))
        time.sleep(0.06)
        assert recorder.wait_idle(10)
    finally:
        recorder.stop()
    everything = [(p.t, p.nav_usd) for p in history] + live
    want = build_performance(everything, T0 + 905.0)
    assert recorder.performance == want
    assert want["history"]["points"] == 20 * 288 + 4
    assert want["ratios"]["30d"]["sharpe"] is not None
    doc = orjson.loads((tmp_path / NAV_HISTORY_FILE).read_bytes())
    assert doc["points"] == 20 * 288 + 4
    assert HistoryStore(path).navs() == everything
