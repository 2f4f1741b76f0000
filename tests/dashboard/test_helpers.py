"""The dashboard's pure helpers: reader cache, badges, AUM slices, positions frame, figures."""

from __future__ import annotations

import os
from pathlib import Path

import jsonschema
import pytest

from dashboard import aum_slices, charts, freshness, grid_width, positions_table
from dashboard.data import Published, PublishedStore, Snapshot
from kpi_publisher import schemas
from kpi_publisher.contract import INVALID, MISSING, OK
from tests.dashboard import published

NOW = 1_790_000_000.0


@pytest.mark.parametrize("book", published.BOOKS)
@pytest.mark.parametrize("name", ["kpis_v7", "positions_v7"])
def test_fixture_books_match_the_published_schema(book: str, name: str) -> None:
    """The fixtures are documents the publisher could have written (CONTRACT 4 and 5)."""
    jsonschema.validate(published.load(book, f"{name}.json"), schemas.load(name))


def test_store_rereads_only_when_the_stat_changes(tmp_path: Path) -> None:
    published.publish(tmp_path, "full", NOW)
    store = PublishedStore(tmp_path)
    first = store.kpis()
    assert first.status == OK
    assert store.kpis() is first
    published.publish(tmp_path, "zeros", NOW + 1)
    second = store.kpis()
    assert second is not first
    assert second.doc is not None and second.doc["nav"]["nav_usd"] == 0.0


def test_store_keeps_last_good_on_a_torn_file_then_recovers(tmp_path: Path) -> None:
    published.publish(tmp_path, "full", NOW)
    store = PublishedStore(tmp_path)
    store.kpis()
    (tmp_path / "kpis_v7.json").write_bytes(b'{"schema": "hedge.kpis_v7", "na')
    torn = store.kpis()
    assert (torn.status, torn.stale_read) == (INVALID, True)
    assert torn.doc is not None and torn.doc["nav"]["nav_usd"] == 10234.5
    assert torn.error is not None and "not valid JSON" in torn.error
    published.publish(tmp_path, "zeros", NOW + 1)
    healed = store.kpis()
    assert (healed.status, healed.stale_read) == (OK, False)


def test_store_keeps_last_good_when_the_file_disappears(tmp_path: Path) -> None:
    published.publish(tmp_path, "full", NOW)
    store = PublishedStore(tmp_path)
    store.positions()
    os.unlink(tmp_path / "positions_v7.json")
    gone = store.positions()
    assert (gone.status, gone.stale_read) == (MISSING, True)
    assert gone.doc is not None and len(gone.doc["positions"]) == 3


def test_store_refuses_a_document_of_another_schema(tmp_path: Path) -> None:
    """positions_v7.json content in kpis_v7.json is invalid, not silently shown."""
    published.write_doc(tmp_path, "kpis_v7.json", published.load("full", "positions_v7.json"))
    read = PublishedStore(tmp_path).kpis()
    assert (read.status, read.doc) == (INVALID, None)
    assert read.error is not None and "hedge.positions_v7" in read.error


def test_store_refuses_an_oversized_file_without_reading_it(tmp_path: Path) -> None:
    published.publish(tmp_path, "full", NOW)
    read = PublishedStore(tmp_path, max_bytes=100).kpis()
    assert read.status == INVALID
    assert read.error is not None and "cap" in read.error


def kpis_read(book: str, generated_at: float = NOW) -> Published:
    return Published(
        "kpis_v7.json", OK, published.restamp(published.load(book, "kpis_v7.json"), generated_at)
    )


def positions_read(book: str = "full") -> Published:
    return Published("positions_v7.json", OK, published.load(book, "positions_v7.json"))


@pytest.mark.parametrize(
    ("age_s", "down"),
    [
        (0.0, False),
        (15.0, False),
        (15.01, True),
        (-30.0, False),
        (-60.0, False),
        (-61.0, True),
        (-3600.0, True),
        (3600.0, True),
    ],
)
def test_publisher_down_is_strictly_over_three_heartbeats(age_s: float, down: bool) -> None:
    """15 s is three 5 s heartbeats: still up; a stamp up to 60 s ahead counts as age 0, one
    further ahead is no valid build time (docs/CONTRACT_RULES.md, rule 2): down."""
    found = freshness.badges(
        Snapshot(kpis_read("full", NOW - age_s), positions_read(), True), NOW, 15.0
    )
    assert (freshness.PUBLISHER_DOWN in [b.label for b in found]) is down


def test_publisher_down_detail_names_the_age() -> None:
    shown = Snapshot(kpis_read("full", NOW - 125), positions_read(), True)
    (badge,) = freshness.badges(shown, NOW, 15.0)
    assert (badge.label, badge.detail) == ("publisher down", "last publish 2m 05s ago (limit 15s)")


def test_source_badges_carry_age_and_error() -> None:
    found = freshness.source_badges(published.load("stale", "kpis_v7.json"))
    assert [(b.label, b.level, b.detail) for b in found] == [
        ("nav_state stale", "warning", "age 4m 05s"),
        (
            "router invalid",
            "error",
            "age 30s; router_health.json: not valid JSON: unexpected end of data",
        ),
        ("holdings missing", "error", ""),
    ]


def test_a_source_read_with_something_left_out_shows_a_warning_saying_what() -> None:
    """An ok source with an error text (position rows that could not be read, a book over the
    row limit, a VaR confidence out of range) is a warning badge with that text, not silence
    and not an alarm."""
    kpis = published.load("full", "kpis_v7.json")
    assert freshness.source_badges(kpis) == []
    note = "2 rows dropped: qty unreadable (ETHUSDT, SOLUSDT)"
    kpis["sources"]["positions"] = {"status": "ok", "age_s": 3.0, "error": note}
    found = freshness.source_badges(kpis)
    assert [(b.label, b.level, b.detail) for b in found] == [("positions note", "warning", note)]


def test_build_aum_slices_returns_the_published_slices() -> None:
    doc = published.load("full", "kpis_v7.json")
    assert aum_slices.build_aum_slices(doc) == [
        {"label": "Futures", "usd": 10234.5, "zar": 189338.25, "qty": None, "pnl_usd": None},
        {"label": "BTC", "usd": 4321.0, "zar": 79938.5, "qty": 0.05, "pnl_usd": 321.0},
        {"label": "XAUT", "usd": 1310.3, "zar": 1310.3 * 18.5, "qty": 0.5, "pnl_usd": -12.0},
        {"label": "USDC", "usd": 500.0, "zar": 9250.0, "qty": 500.0, "pnl_usd": 0.0},
    ]


def test_aum_slices_are_never_valued_a_second_way() -> None:
    """A document without published slices (a raw NAV snapshot) gives no slices, not a guess."""
    assert aum_slices.build_aum_slices({"nav": 10.0, "aum": {"futures": 10.0}}) == []
    block = published.load("full", "kpis_v7.json")["aum"]
    assert aum_slices.build_aum_slices(block) == aum_slices.published_slices(block)


def test_donut_has_one_slice_per_valued_asset_with_zar_in_the_tooltip() -> None:
    figure = charts.aum_donut(aum_slices.build_aum_slices(published.load("full", "kpis_v7.json")))
    (pie,) = figure.data
    assert list(pie.labels) == ["Futures", "BTC", "XAUT", "USDC"]
    assert list(pie.values) == [10234.5, 4321.0, 1310.3, 500.0]
    assert pie.hovertext[1] == "USD 4,321.00<br>ZAR 79,938.50<br>qty 0.050000"


def test_donut_tooltip_says_missing_zar_without_a_rate() -> None:
    slices = [{"label": "Futures", "usd": 10.0, "zar": None, "qty": None, "pnl_usd": None}]
    assert charts.aum_donut(slices).data[0].hovertext[0] == "USD 10.00<br>ZAR –<br>qty –"


def test_positions_frame_of_nothing_keeps_its_columns() -> None:
    frame = positions_table.positions_frame(None)
    assert list(frame.columns) == list(positions_table.COLUMN_NAMES)
    assert len(frame) == 0
    assert all(frame[c].dtype == "object" for c in frame.columns)


def test_positions_frame_coerces_numeric_strings_and_junk() -> None:
    """A number as a string is read as the number; junk in a numeric field is missing."""
    doc = {"positions": [{"symbol": "X", "qty": "1,234.5", "entry_price": "n/a", "leverage": True}]}
    frame = positions_table.positions_frame(doc)
    assert frame["qty"].tolist() == ["1,234.50"]
    assert frame["entry"].tolist() == ["–"] and frame["leverage"].tolist() == ["–"]


def test_totals_line_uses_the_published_strings() -> None:
    line = positions_table.totals_line(published.load("full", "positions_v7.json"))
    assert line == "3 positions · gross 13,480.34 USD · net 2,944.34 USD · PnL -5.66 USD"


def test_symbol_risk_view_plots_atr_and_drawdown_per_symbol() -> None:
    rows = charts.symbol_rows(published.load("full", "kpis_v7.json")["symbols"])
    figure = charts.symbol_risk_figure(rows)
    assert figure is not None
    atr, dd = figure.data
    assert list(atr.x) == ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
    assert list(atr.y) == [1.31, 0.94, 1.62]
    assert list(dd.y) == [0.55, 0.0, 2.1]


def test_symbol_risk_view_shows_a_real_zero_and_marks_a_missing_value() -> None:
    """0.0 is a bar of no height with its text outside (Plotly drops text inside a bar of no
    height); a missing value is no bar but the missing marker on the zero line."""
    rows = charts.symbol_rows(
        {
            "BTCUSDT": {"atr_ratio": 0.0, "dd_today_pct": 0.0, "dd_state": "normal"},
            "ETHUSDT": {"atr_ratio": 1.1, "dd_today_pct": None, "dd_state": "normal"},
        }
    )
    figure = charts.symbol_risk_figure(rows)
    assert figure is not None
    atr, dd, dd_missing = figure.data
    assert (list(atr.y), list(atr.text)) == ([0.0, 1.1], ["0.00<br>–", "1.10<br>–"])
    assert (list(dd.x), list(dd.y), list(dd.text)) == (["BTCUSDT"], [0.0], ["0.00%<br>normal"])
    assert {atr.textposition, dd.textposition} == {"outside"}
    assert atr.cliponaxis is False and dd.cliponaxis is False
    assert (dd_missing.mode, list(dd_missing.x), list(dd_missing.text)) == (
        "text",
        ["ETHUSDT"],
        ["–<br>normal"],
    )


def test_symbol_risk_view_absent_without_data() -> None:
    assert (
        charts.symbol_risk_figure(charts.symbol_rows({"BTCUSDT": {"dd_state": "normal"}})) is None
    )


def test_router_chart_uses_the_aggregate_with_its_quartiles() -> None:
    """A document without per-symbol router numbers: one "all symbols" row."""
    kpis = published.load("full", "kpis_v7.json")
    kpis["router"]["symbols"] = {}
    rows = charts.router_rows(kpis)
    assert rows == [
        {
            "label": "all symbols",
            "maker_fill_rate": 0.625,
            "fallback_ratio": 0.125,
            "slip_q25_bps": 0.8,
            "slip_q50_bps": 1.5,
            "slip_q75_bps": 2.75,
        }
    ]
    figure = charts.router_figure(rows)
    assert figure is not None
    slip, fill, fallback = figure.data
    assert (list(slip.x), list(slip.error_x.arrayminus), list(slip.error_x.array)) == (
        [1.5],
        [pytest.approx(0.7)],
        [1.25],
    )
    assert (list(fill.y), list(fallback.y)) == ([62.5], [12.5])


def test_router_chart_goes_per_symbol_when_symbols_carry_router_figures() -> None:
    kpis = {
        "router": {"slip_q50_bps": 2.0},
        "symbols": {
            "BTCUSDT": {"atr_ratio": 1.0, "slip_q50_bps": 1.0, "maker_fill_rate": 0.5},
            "ETHUSDT": {"atr_ratio": 1.1},
        },
    }
    assert [r["label"] for r in charts.router_rows(kpis)] == ["BTCUSDT"]


def test_router_chart_absent_without_router_data() -> None:
    assert charts.router_figure(charts.router_rows({"router": {"source": None}})) is None


def test_router_chart_has_one_row_per_published_router_symbol() -> None:
    """router.symbols gives a row per symbol; a symbol with slippage only has no fill bar."""
    rows = charts.router_rows(published.load("full", "kpis_v7.json"))
    assert [(r["label"], r["maker_fill_rate"], r["slip_q50_bps"]) for r in rows] == [
        ("BTCUSDT", 0.7, 1.2),
        ("ETHUSDT", 0.5, 2.4),
        ("SOLUSDT", None, 3.1),
    ]
    figure = charts.router_figure(rows)
    assert figure is not None
    slip, fill, fill_missing, *_ = figure.data
    assert list(slip.y) == ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
    assert list(fill.x) == ["BTCUSDT", "ETHUSDT"]
    assert (list(fill_missing.x), list(fill_missing.text)) == (["SOLUSDT"], ["–"])


def test_a_missing_later_era_source_is_no_badge_but_an_invalid_one_is() -> None:
    """risk_advanced (v7.6+) missing is an older desk's normal state; invalid is a fault."""
    kpis = published.load("full", "kpis_v7.json")
    kpis["sources"]["risk_advanced"] = {"status": "missing", "age_s": None, "error": None}
    assert freshness.source_badges(kpis) == []
    kpis["sources"]["risk_advanced"] = {"status": "invalid", "age_s": 3.0, "error": "torn"}
    assert [b.label for b in freshness.source_badges(kpis)] == ["risk_advanced invalid"]


def test_two_publishes_badge_says_which_file_is_older_and_by_how_much() -> None:
    kpis = kpis_read("full", NOW)
    positions = Published(
        "positions_v7.json",
        OK,
        published.restamp(published.load("full", "positions_v7.json"), NOW - 30),
    )
    found = freshness.badges(Snapshot(kpis, positions, False), NOW, 15.0)
    assert [(b.label, b.level, b.detail) for b in found] == [
        (
            freshness.TWO_PUBLISHES,
            "error",
            "positions_v7.json is 30s older: the positions table and the cards may disagree",
        )
    ]
    assert freshness.pair_badge(Snapshot(kpis, positions, True)) is None
    no_stamp = Published("positions_v7.json", OK, {"generated_at": "x"})
    badge = freshness.pair_badge(Snapshot(kpis, no_stamp, False))
    assert badge is not None and badge.detail.startswith(f"generated_at {NOW!r} (kpis_v7.json)")


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (3381.57946787, "3,381.5795"),
        (102672.45630196, "102,672.46"),
        (0.42573278, "0.42573278"),
        (88.04, "88.04"),
        (14.97290000000001, "14.9729"),
        (67000.0, "67,000.00"),
        (-0.002, "-0.002"),
        (-281.7, "-281.70"),
        (1e-07, "0.0000001"),
        (1.5e-09, "0.00"),
        (123456789.5, "123,456,789.50"),
        (0.0, "0.00"),
        (-0.0, "0.00"),
        (-0.0000000001, "0.00"),
    ],
)
def test_quantities_keep_their_published_digits_up_to_eight(value: float, text: str) -> None:
    """qty / entry / mark: the digits published, at most 8 significant, at least the contract's
    0.00, by the shared formatter."""
    doc = {"positions": [{"qty": value}]}
    assert positions_table.positions_frame(doc)["qty"].tolist() == [text]


def test_drawdown_today_of_minus_zero_point_zero_zero_is_zero() -> None:
    """-0.001127 % rounds to -0.00: the contract's 0.00 (the grid's own format said "-0.00%")."""
    doc = {"positions": [{"dd_today_pct": -0.001127}, {"dd_today_pct": None}]}
    assert positions_table.positions_frame(doc)["dd_today"].tolist() == ["0.00%", "–"]


def test_every_column_is_wide_enough_for_its_widest_text() -> None:
    """A later, longer value must not be cut: each width covers the widest text and the header,
    and grows with them (the grid would keep the width of its first draw)."""
    small = {"positions": [{"symbol": "WIFUSDT", "entry_price": 0.4283}]}
    large = {
        "positions": [*small["positions"], {"symbol": "1000SHIBUSDT", "entry_price": 102672.46}]
    }
    before = positions_table.column_widths(positions_table.positions_frame(small))
    after = positions_table.column_widths(positions_table.positions_frame(large))
    assert after["entry"] > before["entry"] and after["symbol"] > before["symbol"]
    assert after["entry"] >= grid_width.text_px("102,672.46") + 2 * grid_width.PADDING_PX
    assert after["notional_fmt"] >= grid_width.text_px("notional (USD)") + 2 * grid_width.PADDING_PX
    assert min(after.values()) >= grid_width.MIN_PX
