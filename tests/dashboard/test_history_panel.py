"""The history panel: tiles with the value or a dash and the reason, equity and underwater charts
per window; in real headless Chromium with a history and without one."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dashboard.history_panel import (
    NO_HISTORY,
    curve_caption,
    curve_withheld,
    history_figures,
    history_tiles,
)
from execution.demo_history import month_series, moved
from kpi_publisher import fs
from kpi_publisher.contract import NAV_HISTORY_FILE
from kpi_publisher.history.curves import Series, build_nav_history
from kpi_publisher.render import render
from kpi_publisher.stages.performance import build_performance
from tests.dashboard import browser, published


def history_docs(now: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """The performance block and nav_history_v7 of the real month, ending at `now`."""
    rows = moved(month_series(), now - 30, 10_234.5)
    points = [(r["t"], r["nav"]) for r in rows]
    return build_performance(points, now), build_nav_history(Series.of(points), now)


def tile_texts(kpis: dict[str, Any] | None, window: str) -> dict[str, tuple[str, str]]:
    return {t.label: (t.value, t.caption) for t in history_tiles(kpis, window)}


def test_tiles_show_values_and_reasons():
    performance, _ = history_docs(1_800_000_000.0)
    tiles = tile_texts({"performance": performance}, "30d")
    assert tiles["PnL 30 d"] == ("–", "needs 30.0 d, have 28.5 d")
    assert tiles["Max drawdown 30 d"] == ("–", "needs 30.0 d, have 28.5 d")
    seven = tile_texts({"performance": performance}, "7d")
    assert seven["PnL 7 d"][0] != "–" and seven["PnL 7 d"][1].endswith("% · USD")
    assert seven["Sharpe 30d"][0] != "–"
    assert seven["Max drawdown 7 d"][0].endswith("%")


def test_tiles_without_history():
    tiles = tile_texts({"nav": {}}, "24h")
    assert {value for value, _ in tiles.values()} == {"–"}
    assert {caption for _, caption in tiles.values()} == {NO_HISTORY}


def test_figures_per_window_with_at_most_1000_points():
    _, doc = history_docs(1_800_000_000.0)
    figures = history_figures(doc)
    assert set(figures) == {"24h", "7d", "30d", "all"}
    equity, under = figures["all"]
    assert len(equity.data[0].x) == 1000
    assert max(under.data[0].y) == 0.0 and min(under.data[0].y) < -10  # the real 11.6 % fall
    assert history_figures(None) == {}
    assert history_figures({"schema": "hedge.kpis_v7"}) == {}


# -- in Chromium ----------------------------------------------------------------------------------

PLOTS_JS = "() => document.querySelectorAll('.js-plotly-plot .scatterlayer .trace').length"


@pytest.fixture
def page() -> Iterator[Any]:
    browser.require_chromium()
    with browser.chromium_page() as chromium:
        yield chromium


@pytest.mark.browser
@pytest.mark.timeout(240)
def test_charts_render_with_a_history(tmp_path: Path, page: Any) -> None:
    now = time.time()
    docs = published.publish(tmp_path, "full", now)
    performance, history = history_docs(now)
    published.write_doc(
        tmp_path, "kpis_v7.json", {**docs["kpis_v7.json"], "performance": performance}
    )
    fs.write_atomic(tmp_path / NAV_HISTORY_FILE, render(history), fsync=False)
    with browser.dashboard_server(tmp_path, tmp_path / "dashboard.log") as url:
        page.goto(url)
        browser.wait_text(page, "Equity curve (NAV, USD)")
        browser.wait_text(page, "Underwater")
        page.wait_for_function(f"({PLOTS_JS})() >= 2")
        assert "PnL 7 d" in page.inner_text("body")
        page.get_by_text("30 d", exact=True).first.click()
        browser.wait_text(page, "needs 30.0 d, have 28.5 d")
        # The click re-runs the page: once the run has drawn them again, the overview cards
        # are unchanged (read mid-run, the row not yet redrawn would be missing).
        for label, value in published.FULL_CARDS.items():
            browser.wait_card(page, label, value)
        assert browser.cards(page) == published.FULL_CARDS
        page.screenshot(path=str(tmp_path / "history.png"), full_page=True)
        assert (tmp_path / "history.png").stat().st_size > 10_000


@pytest.mark.browser
@pytest.mark.timeout(240)
def test_panel_without_a_history(tmp_path: Path, page: Any) -> None:
    published.publish(tmp_path, "full", time.time())
    with browser.dashboard_server(tmp_path, tmp_path / "dashboard.log") as url:
        page.goto(url)
        browser.wait_text(page, NO_HISTORY)
        browser.wait_card(page, "NAV (USD)", published.FULL_CARDS["NAV (USD)"])
        assert "Equity curve" not in page.inner_text("body")
        assert "Underwater" not in page.inner_text("body")


def test_curve_is_withheld_unless_it_belongs_with_the_kpis():
    """Drawn only beside a performance block whose last NAV point is within the allowance
    (three heartbeats) of the curve's; otherwise the reason, with when the file was written."""
    now = 1_800_000_000.0
    performance, history = history_docs(now)
    assert curve_withheld({"performance": performance}, history, 15.0) is None
    no_block = curve_withheld({"nav": {}}, history, 15.0)
    assert no_block is not None and "carry no performance block" in no_block
    assert history["updated_at"] in no_block
    _, older = history_docs(now - 20.0)
    late = curve_withheld({"performance": performance}, older, 15.0)
    assert late is not None and "20s before the KPIs' history (allowed 15s)" in late
    assert curve_withheld({"performance": performance}, older, 20.0) is None
    _, newer = history_docs(now + 3600.0)
    ahead = curve_withheld({"performance": performance}, newer, 15.0)
    assert ahead is not None and "1h 00m after the KPIs' history" in ahead
    blank = curve_withheld({"performance": {"history": {}}}, history, 15.0)
    assert blank is not None and "no last NAV point to match" in blank
    assert curve_caption(history) == (
        "NAV curve to 2027-01-15 07:59:30 UTC · written 2027-01-15T08:00:00.000Z"
    )
