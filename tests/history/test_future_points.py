"""A point far in the future (a millisecond timestamp stored by an older back-fill) never reaches
nav_history_v7.json nor the performance block, which leave it out by one rule."""

from __future__ import annotations

from pathlib import Path

import orjson

from kpi_publisher.check import check_document
from kpi_publisher.contract import NAV_HISTORY_FILE
from kpi_publisher.history.curves import Series, build_nav_history
from kpi_publisher.history.recorder import HistoryRecorder
from kpi_publisher.history.store import HistoryStore, Point
from kpi_publisher.render import render
from kpi_publisher.stages.performance import MAX_SKEW_S, build_performance

NOW = 1_760_000_000.0
TEN_MIN = [(NOW - 2 * 86_400 + i * 600.0, 3000.0 + i % 50) for i in range(289)]  # to NOW
BOGUS = (NOW * 1000, 3000.0)  # year 57749


def test_the_curve_ends_at_the_latest_real_point():
    """Every window ends where the performance block's history ends, never in year 57749."""
    doc = build_nav_history(Series.of([*TEN_MIN, BOGUS]), NOW)
    assert check_document(render(doc), "nav_history_v7")[1] is None
    history = build_performance([*TEN_MIN, BOGUS], NOW)["history"]
    assert (doc["points"], doc["last_t"]) == (history["points"], history["last_t"]) == (289, NOW)
    for name, window in doc["windows"].items():
        assert window["to_t"] == NOW and max(window["t"]) == NOW, name
    assert doc["windows"]["24h"]["points_in_window"] == 145


def test_a_point_within_the_skew_allowance_is_still_the_latest():
    """The rule is the performance block's (the contract's 60 s clock skew): a point slightly
    after `now` counts, one just past the allowance does not, in the curve and the block alike."""
    soon = (NOW + MAX_SKEW_S / 2, 3100.0)
    past = (NOW + MAX_SKEW_S + 1.0, 3200.0)
    series = [*TEN_MIN, soon, past, BOGUS]
    doc = build_nav_history(Series.of(series), NOW)
    assert doc["last_t"] == build_performance(series, NOW)["history"]["last_t"]
    assert doc["last_t"] == NOW + MAX_SKEW_S / 2


def test_a_stored_future_point_is_published_nowhere(tmp_path: Path):
    """A store written by an older version keeps its bogus point: the recorder publishes the
    curve and the block as if it were not there."""
    store = HistoryStore(tmp_path / "h.sqlite")
    store.extend(Point(t, nav) for t, nav in [*TEN_MIN, BOGUS])
    store.close()
    recorder = HistoryRecorder(
        HistoryStore(tmp_path / "h.sqlite", retention_days=36500),
        tmp_path,
        None,
        fsync=False,
        clock=lambda: NOW + 5,
    )
    recorder.start()
    try:
        assert recorder.wait_idle(10)
    finally:
        recorder.stop()
    doc = orjson.loads((tmp_path / NAV_HISTORY_FILE).read_bytes())
    assert (doc["points"], doc["last_t"]) == (289, NOW)
    assert doc["windows"]["all"]["t"][-1] == NOW
    assert recorder.performance is not None
    assert recorder.performance["history"]["last_t"] == NOW


def test_one_real_point_and_a_future_one_publish_no_curve(tmp_path: Path):
    """Two points in the store, one of them bogus: no curve, as for one point."""
    store = HistoryStore(tmp_path / "h.sqlite")
    store.extend([Point(NOW, 3000.0), Point(*BOGUS)])
    recorder = HistoryRecorder(store, tmp_path, None, fsync=False, clock=lambda: NOW + 5)
    recorder.start()
    try:
        assert recorder.wait_idle(10)
    finally:
        recorder.stop()
    assert not (tmp_path / NAV_HISTORY_FILE).exists()
