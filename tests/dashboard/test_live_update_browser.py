"""What only the browser shows, after a live update: the positions grid (drawn on a canvas)
never cuts a value, and a bar of no height still shows its 0.00; in real headless Chromium."""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kpi_publisher.contract import KPIS_FILE, POSITIONS_FILE
from tests.dashboard import browser, published

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]

HEADER = [
    "symbol",
    "side",
    "qty",
    "entry",
    "mark",
    "notional (USD)",
    "PnL (USD)",
    "leverage",
    "ATR ratio",
    "DD today",
    "dd_state",
]
ROWS_JS = "(n) => document.querySelectorAll('[data-testid=stDataFrame] tr[role=row]').length === n"


def position(symbol: str, entry: float, mark: float, **more: Any) -> dict[str, Any]:
    row = copy.deepcopy(published.load("full", POSITIONS_FILE)["positions"][1])
    row.update(symbol=symbol, entry_price=entry, mark_price=mark, **more)
    return row


# The probe's book: the first publish has no ETHUSDT / BTCUSDT, the next one adds them.
SMALL = [
    position("LTCUSDT", 88.04, 87.95395913, qty=-1.373),
    position("LINKUSDT", 15.067, 14.91956339, qty=-8.04),
    position("WIFUSDT", 0.4283, 0.42573278, qty=-281.7),
]
LARGE = [
    position("ETHUSDT", 3381.57946787, 3361.20869225, qty=-0.079),
    position("BTCUSDT", 102672.45630196, 102694.37430622, qty=-0.002, dd_today_pct=-0.001127),
    *SMALL,
]


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("published")


def publish(out_dir: Path, rows: list[dict[str, Any]], **kpis_changes: Any) -> None:
    """One publish as the publisher makes it: positions, then KPIs, one generated_at."""
    now = time.time()
    positions = published.restamp(published.load("full", POSITIONS_FILE), now)
    positions["positions"] = rows
    kpis = published.restamp(published.load("full", KPIS_FILE), now)
    kpis.update(kpis_changes)
    published.write_doc(out_dir, POSITIONS_FILE, positions)
    published.write_doc(out_dir, KPIS_FILE, kpis)


@pytest.fixture(scope="module")
def page(out_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The dashboard drawn first from the SMALL book, in a 1500 px wide window."""
    browser.require_chromium()
    publish(out_dir, SMALL)
    log = tmp_path_factory.mktemp("logs") / "dashboard.log"
    with (
        browser.dashboard_server(out_dir, log, heartbeat_s=600.0) as url,
        browser.chromium_page() as chromium,
    ):
        chromium.goto(url)
        chromium.wait_for_function(ROWS_JS, arg=1 + len(SMALL))
        yield chromium


def drawn_after(page: Any, rows: int) -> dict[str, Any]:
    """The grid once it shows `rows` data rows and has painted them (two animation frames)."""
    page.wait_for_function(ROWS_JS, arg=1 + rows, timeout=browser.CHANGE_MS)
    page.wait_for_timeout(500)
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
    return browser.grid(page)


def test_first_draw_shows_every_value_whole(page: Any) -> None:
    drawn = drawn_after(page, len(SMALL))
    assert drawn["mirror"][0] == HEADER
    assert drawn["columns"] == drawn["colcount"] == len(HEADER)  # all in view, none scrolled off
    assert browser.cut_cells(drawn) == []


def test_wider_values_of_a_later_publish_are_not_cut(page: Any, out_dir: Path) -> None:
    """The grid keeps the widths of its first draw for columns it measured: ETHUSDT's and
    BTCUSDT's prices came later and showed as "81.5795" and "2672.46". Every cell's text, as
    the grid's accessibility mirror has it, fits its cell in the grid's own font, and no ink
    runs into a cell's edge."""
    publish(out_dir, LARGE)
    drawn = drawn_after(page, len(LARGE))
    assert browser.cut_cells(drawn) == []
    assert drawn["columns"] == drawn["colcount"] == len(HEADER)
    rows = {r[0]: r for r in drawn["mirror"][1:]}
    assert rows["ETHUSDT"][2:5] == ["-0.079", "3,381.5795", "3,361.2087"]
    assert rows["BTCUSDT"][2:5] == ["-0.002", "102,672.46", "102,694.37"]
    assert rows["BTCUSDT"][9] == "0.00%"  # -0.001127 %: the contract's 0.00, not "-0.00%"


def test_a_wide_value_beyond_the_grids_sample_rows_is_not_cut(page: Any, out_dir: Path) -> None:
    """The grid measures a column from its first nine rows and its last, leaving out values
    twice the mean: a long symbol and a large price in the tenth of twelve rows still fit."""
    rows = [position(f"S{k}USDT", 1.5 + k, 1.25 + k) for k in range(12)]
    rows[9] = position("1000PEPEUSDT", 1234567.891, 0.00012345)
    publish(out_dir, rows)
    drawn = drawn_after(page, 12)
    assert browser.cut_cells(drawn) == []
    tenth = drawn["mirror"][10]
    assert tenth[:5] == ["1000PEPEUSDT", "SHORT", "-1.50", "1,234,567.89", "0.00012345"]


def test_a_real_zero_drawdown_shows_as_zero_and_a_missing_one_as_missing(
    page: Any, out_dir: Path
) -> None:
    """Every symbol at 0.0 % drawdown today: bars of no height, whose text Plotly drops when
    it sits inside the bar, so zero looked like nothing published. Each shows "0.00%" now; a
    symbol without a value shows the missing marker."""
    symbols = copy.deepcopy(published.load("full", KPIS_FILE)["symbols"])
    for entry in symbols.values():
        entry["dd_today_pct"] = 0.0
    symbols["SOLUSDT"]["dd_today_pct"] = None
    publish(out_dir, SMALL, symbols=symbols)
    title = "Drawdown today (%)"
    # The page's first load and Plotly's layout take their time on a loaded machine: the
    # figure is looked at until it is drawn in full (FIRST_LOAD_MS), then judged.
    deadline = time.monotonic() + browser.FIRST_LOAD_MS / 1000
    expected = ["0.00% cautious", "0.00% normal", "\u2013 defensive"]
    texts: list[list[Any]] = []

    def drawn() -> bool:
        return sorted(t[0] for t in texts) == expected and all(
            width > 0 and inside for _, width, inside in texts
        )

    while time.monotonic() < deadline:
        try:
            texts = browser.plot_texts(page, title).get("x2y2", [])
        except AssertionError:  # mid-run: the chart being replaced and its successor, both
            texts = []
        if drawn():
            break
        page.wait_for_timeout(100)
    assert sorted(t[0] for t in texts) == expected
    assert all(width > 0 and inside for _, width, inside in texts), texts
