"""The nav_state / positions_state write path, on real executor data (execution/data)."""

from __future__ import annotations

import json
import math

import pytest

from execution import sync_state
from execution.demo_market import load_data
from kpi_publisher import sources
from kpi_publisher.config import resolve

NAV_LOG = load_data("nav_log.json")  # 720 real NAV points, 2025-11-05 .. 11-06
HOLDINGS = load_data("offexchange_holdings.json")  # BTC 0.035, XAUT 0.59, USDC 2098.96
FX = load_data("coingecko_cache.json")  # BTC 103488.0, XAUT 4021.84, no USDC price
LAST = NAV_LOG[-1]  # nav 3917.73924849 at t 1762435680.6336446


def nav_state(now: float = LAST["t"] + 42.5, **kw):
    return sync_state.build_nav_state(NAV_LOG, now=now, fx=FX, holdings=HOLDINGS, **kw)


def test_aum_assets_are_futures_then_holdings_priced_from_cache_else_avg_cost():
    """BTC and XAUT at the cache price, USDC (not in the cache) at its avg cost of 1."""
    assets = nav_state()["aum"]["assets"]
    assert [(a["asset"], a["qty"]) for a in assets] == [
        ("Futures", None),
        ("BTC", 0.035),
        ("XAUT", 0.59),
        ("USDC", 2098.96),
    ]
    usd = {a["asset"]: a["usd"] for a in assets}
    assert usd["Futures"] == LAST["nav"]
    assert usd["BTC"] == pytest.approx(0.035 * 103488.0, abs=1e-9)  # 3622.08
    assert usd["XAUT"] == pytest.approx(0.59 * 4021.84, abs=1e-9)  # 2372.8856
    assert usd["USDC"] == pytest.approx(2098.96, abs=1e-9)
    pnl = {a["asset"]: a["pnl"] for a in assets}
    assert pnl["BTC"] == pytest.approx(0.035 * (103488.0 - 119073.0), abs=1e-9)  # -545.475
    assert pnl["XAUT"] == pytest.approx(0.59 * (4021.84 - 3692.70), abs=1e-9)  # 194.1926
    assert pnl["USDC"] == pytest.approx(0.0, abs=1e-9)


def test_aum_assets_sum_to_the_total():
    """The slices add up to aum.total (to the cent and beyond): no dollar lost or counted twice."""
    aum = nav_state()["aum"]
    assert math.fsum(a["usd"] for a in aum["assets"]) == pytest.approx(aum["total"], abs=1e-9)
    assert aum["total"] == pytest.approx(3917.73924849 + 3622.08 + 2372.8856 + 2098.96, abs=1e-6)


def test_aum_keeps_the_old_futures_and_offexchange_keys():
    """Readers of the real nav.json AUM block still find futures and offexchange{SYM:{...}}."""
    aum = nav_state()["aum"]
    assert aum["futures"] == LAST["nav"]
    assert aum["offexchange"]["BTC"] == {
        "qty": 0.035,
        "avg_cost": 119073.0,
        "mark": 103488.0,
        "usd_value": pytest.approx(3622.08, abs=1e-9),
    }
    assert aum["offexchange"]["USDC"]["mark"] == 1.0
    assert aum["unpriced"] == []


def test_a_holding_without_any_price_is_named_not_valued():
    """No cache price and no avg cost: left out of assets, listed as unpriced, usd_value null."""
    holdings = {**HOLDINGS, "PAXG": {"qty": 1.5, "avg_cost": None}}
    aum = sync_state.build_nav_state(NAV_LOG, now=LAST["t"], fx=FX, holdings=holdings)["aum"]
    assert "PAXG" not in [a["asset"] for a in aum["assets"]]
    assert aum["unpriced"] == ["PAXG"]
    assert aum["offexchange"]["PAXG"] == {
        "qty": 1.5,
        "avg_cost": None,
        "mark": None,
        "usd_value": None,
    }
    assert math.fsum(a["usd"] for a in aum["assets"]) == pytest.approx(aum["total"], abs=1e-9)


def test_futures_pnl_is_realised_today_plus_unrealised():
    doc = sync_state.build_nav_state(
        [{"t": 100.0, "nav": 1000.0, "unrealized_pnl": -2.5}], now=101.0, realized_pnl_today=3.0
    )
    assert doc["aum"]["assets"] == [{"asset": "Futures", "usd": 1000.0, "qty": None, "pnl": 0.5}]


def test_age_s_is_the_true_age_of_the_nav_point():
    """updated_at is the NAV point's time; age_s its age when written (never a constant 0.0)."""
    doc = nav_state(now=LAST["t"] + 42.5)
    assert doc["updated_at"] == LAST["t"]
    assert doc["age_s"] == 42.5
    assert doc["written_at"] == LAST["t"] + 42.5
    assert nav_state(now=LAST["t"] + 130.0)["age_s"] == 130.0


def test_age_s_of_a_future_point_is_zero_and_of_an_undated_point_null():
    assert sync_state.build_nav_state([{"t": 200.0, "nav": 1.0}], now=100.0)["age_s"] == 0.0
    undated = sync_state.build_nav_state([{"nav": 1.0}], now=100.0)
    assert undated["age_s"] is None
    assert undated["updated_at"] is None


def test_iso_nav_points_are_read_too():
    doc = sync_state.build_nav_state([{"t": "1970-01-01T00:01:40Z", "nav": 5.0}], now=160.0)
    assert doc["updated_at"] == 100.0
    assert doc["age_s"] == 60.0


def test_drawdown_is_percent_from_the_running_peak_of_the_real_series():
    """Peak 3920.78814722 (the series' maximum), last 3917.73924849: 0.0778 % down, 3.05 USD."""
    doc = nav_state()
    peak = max(p["nav"] for p in NAV_LOG)
    assert doc["peak_equity"] == peak == 3920.78814722
    assert doc["drawdown_abs"] == pytest.approx(peak - LAST["nav"], abs=1e-9)
    assert doc["drawdown_pct"] == pytest.approx((peak - LAST["nav"]) / peak * 100.0, rel=1e-12)
    assert doc["drawdown"] == doc["drawdown_pct"]
    assert doc["drawdown_pct"] == pytest.approx(0.07776, abs=1e-5)


def test_a_tracker_peak_above_the_series_wins():
    doc = nav_state(peak_usd=4000.0)
    assert doc["peak_equity"] == 4000.0
    assert doc["drawdown_pct"] == pytest.approx((4000.0 - LAST["nav"]) / 40.0, rel=1e-12)


def test_series_keeps_the_last_500_points_with_iso_times():
    series = nav_state()["series"]
    assert len(series) == 500
    assert series[-1]["nav"] == LAST["nav"]
    assert series[-1]["t"] == "2025-11-06T13:28:00.633645+00:00"


def test_the_nav_value_is_where_every_reader_looks():
    doc = nav_state()
    assert doc["nav_usd"] == doc["total_equity"] == LAST["nav"]


def test_no_usable_nav_point_writes_nothing(tmp_path):
    """Like the real sync pass: a NAV of 0 (or none) leaves the old nav_state.json alone."""
    assert (
        sync_state.build_nav_state([{"t": 1.0, "nav": 0.0}, {"t": 2.0, "nav": None}], now=3.0)
        is None
    )
    (tmp_path / "nav_state.json").write_text('{"nav_usd": 1.0}')
    assert sync_state.write_nav_state(tmp_path, None) is False
    assert json.loads((tmp_path / "nav_state.json").read_text()) == {"nav_usd": 1.0}


def test_written_nav_state_reads_back_as_a_valid_source(tmp_path):
    assert sync_state.write_nav_state(tmp_path, nav_state()) is True
    raw = (tmp_path / "nav_state.json").read_bytes()
    assert json.loads(raw)["aum"]["assets"][1]["asset"] == "BTC"
    assert sources.decode(raw)["age_s"] == 42.5
    assert [p.name for p in tmp_path.iterdir()] == ["nav_state.json"]  # no temp file left


# --- positions -------------------------------------------------------------------------------

# The four positions the real executor held on 2025-11-06 13:25 UTC (position_state.jsonl),
# marked at the last order_metrics mark of each symbol.
SEED = load_data("market_seed.json")
MARKS = SEED["marks_usd"]
CAMEL = {
    "rows": [
        {
            "symbol": p["symbol"],
            "positionSide": "SHORT",
            "qty": p["qty"],
            "entryPrice": p["entry_price"],
            "markPrice": MARKS[p["symbol"]],
            "leverage": p["leverage"],
        }
        for p in SEED["open_positions"]
    ],
    "updated": 1762435501.0,
}
SNAKE = {
    "positions": [
        {
            "symbol": p["symbol"].lower(),
            "side": "short",
            "qty": abs(p["qty"]),
            "entry_price": str(p["entry_price"]),
            "mark_price": MARKS[p["symbol"]],
            "leverage": p["leverage"],
        }
        for p in SEED["open_positions"]
    ]
}


def test_camelcase_rows_keep_their_prices():
    """The real sync writer zeroed entry and mark of camelCase rows; this one keeps them."""
    doc = sync_state.build_positions_state(CAMEL, now=1762435501.0)
    link = next(r for r in doc["positions"] if r["symbol"] == "LINKUSDT")
    assert link["entry_price"] == 15.067
    assert link["mark_price"] == 15.037
    assert link["qty"] == -8.04
    assert link["side"] == "SHORT"
    assert link["notional"] == pytest.approx(8.04 * 15.037, abs=1e-9)  # 120.89748
    assert link["pnl"] == pytest.approx((15.037 - 15.067) * -8.04, abs=1e-9)  # +0.2412
    assert link["notional_fmt"] == "120.90"
    assert link["pnl_fmt"] == "0.24"


def test_camel_and_snake_rows_give_the_same_payload():
    camel = sync_state.build_positions_state(CAMEL, now=1.0)
    snake = sync_state.build_positions_state(SNAKE, now=1.0)
    assert camel == snake


def test_positions_sorted_by_notional_with_exposures():
    doc = sync_state.build_positions_state(CAMEL, now=1762435501.0)
    notionals = {r["symbol"]: r["notional"] for r in doc["positions"]}
    # The real book was sized evenly: every notional is within 0.11 USD of 120.8.
    assert list(notionals) == ["LINKUSDT", "WIFUSDT", "LTCUSDT", "SUIUSDT"]
    gross = 281.7 * 0.4291 + 60.4 * 1.9999 + 1.373 * 88.03 + 8.04 * 15.037
    assert doc["gross_exposure"] == pytest.approx(gross, abs=1e-9)
    assert doc["net_exposure"] == pytest.approx(-gross, abs=1e-9)  # all short
    assert doc["largest_position_value"] == pytest.approx(8.04 * 15.037, abs=1e-9)
    assert doc["totals"]["count"] == 4
    assert doc["totals"]["pnl_usd"] == pytest.approx(
        sum((MARKS[p["symbol"]] - p["entry_price"]) * p["qty"] for p in SEED["open_positions"]),
        abs=1e-9,
    )


def test_positions_carry_the_risk_snapshot_per_symbol_fields():
    risk = {
        "symbols": [
            {
                "symbol": "WIFUSDT",
                "risk": {"dd_today_pct": -0.4, "dd_state": "NORMAL"},
                "vol": {"atr_ratio": 1.7, "atr_regime": "hot"},
            }
        ]
    }
    doc = sync_state.build_positions_state(CAMEL, risk, now=1.0)
    wif = next(r for r in doc["positions"] if r["symbol"] == "WIFUSDT")
    assert (
        wif["symbol"],
        wif["atr_ratio"],
        wif["atr_regime"],
        wif["dd_state"],
        wif["dd_today_pct"],
    ) == (
        "WIFUSDT",
        1.7,
        "hot",
        "normal",
        -0.4,
    )
    assert all(r["atr_ratio"] is None for r in doc["positions"] if r["symbol"] != "WIFUSDT")


def test_v71_container_and_timestamps():
    doc = sync_state.build_positions_state(CAMEL, now=1762435501.0, container="items")
    assert "positions" not in doc
    assert len(doc["items"]) == 4
    assert doc["updated_at"] == doc["updated_ts"] == "2025-11-06T13:25:01+00:00"
    with pytest.raises(ValueError, match="container"):
        sync_state.build_positions_state(CAMEL, now=1.0, container="data")


def test_hedge_mode_empty_rows_are_dropped_and_missing_prices_stay_null():
    raw = [
        {
            "symbol": "LINKUSDT",
            "positionSide": "LONG",
            "qty": 0.0,
            "entryPrice": 0.0,
            "markPrice": 0.0,
        },
        {
            "symbol": "SUIUSDT",
            "positionSide": "SHORT",
            "qty": -60.4,
            "entryPrice": 0.0,
            "markPrice": 0.0,
        },
    ]
    doc = sync_state.build_positions_state(raw, now=1.0)
    assert [r["symbol"] for r in doc["positions"]] == ["SUIUSDT"]
    row = doc["positions"][0]
    assert (row["entry_price"], row["mark_price"], row["notional"], row["pnl"]) == (
        None,
        None,
        None,
        None,
    )
    assert (row["notional_fmt"], row["pnl_fmt"]) == ("–", "–")
    assert doc["gross_exposure"] == 0.0


@pytest.mark.parametrize("realized", ["12.5", True, math.nan, math.inf, [1.0]])
def test_a_realised_pnl_that_is_not_a_number_reads_as_missing_never_raises(realized):
    """The executor's realised PnL is read as every input is: a numeric string is a number, a
    bool, NaN, infinity or a list is missing (a string raised TypeError, a bool was written as
    `true`, NaN was written as NaN)."""
    doc = nav_state(realized_pnl_today=realized)
    expected = 12.5 if realized == "12.5" else None
    assert doc["realized_pnl_today"] == expected and doc["realized_pnl"] == expected
    sources.decode(json.dumps(doc, allow_nan=False).encode())


@pytest.mark.parametrize(("series_max", "kept"), [(3, 3), (1, 1), (0, 0), (-1, 0), (True, 0)])
def test_series_max_keeps_at_most_that_many_points(series_max, kept):
    """0 kept every point and -1 dropped only the first; now a count below 1 keeps none."""
    assert len(nav_state(series_max=series_max)["series"]) == kept


@pytest.mark.parametrize("nav_log", [None, {}, "nav", b"nav"])
def test_a_nav_log_that_is_not_a_list_of_points_writes_nothing(nav_log):
    """None raised TypeError; an object, a string or bytes already gave nothing."""
    assert sync_state.build_nav_state(nav_log, now=LAST["t"]) is None


@pytest.mark.parametrize("t", [1e25, 2.6e20, 1e30, "9" * 40])
def test_a_nav_point_no_calendar_can_write_has_no_time_and_never_stops_the_write(t):
    """One corrupt point in the NAV log (a time past the year 9999, in whatever unit) raised
    in the ISO conversion and stopped every nav_state.json write until it left the last 500
    points; it is now a point without a time, and the others are written as before."""
    now = 1_796_050_000.0
    doc = sync_state.build_nav_state(
        [{"t": now - 10, "nav": 100.0}, {"t": t, "nav": 101.0}, {"t": now, "nav": 102.0}], now=now
    )
    assert doc is not None
    assert [p["t"] is None for p in doc["series"]] == [False, True, False]
    assert doc["nav_usd"] == 102.0


def test_positions_state_holds_the_whole_book_past_the_publishers_listing_limit(tmp_path):
    """6,000 rows: positions_state.json held only the 5,000 the publisher lists, so the
    publisher, reading it, totalled 5,000 rows (gross and exposure short, no note). The
    executor's file is an input: it holds every row, and the publisher lists and totals from
    it as from the raw rows."""
    from kpi_publisher import pipeline
    from kpi_publisher.contract import from_values
    from kpi_publisher.stages import positions as positions_stage

    rows = [
        {"symbol": f"S{i}USDT", "positionAmt": "1", "markPrice": str(1 + i % 7), "entryPrice": "1"}
        for i in range(6000)
    ]
    doc = sync_state.build_positions_state(rows, None, now=1_796_050_000.0)
    assert len(doc["positions"]) == 6000
    assert doc["totals"]["count"] == 6000
    settings = resolve({"state_dir": str(tmp_path)}, {})
    via_file = pipeline.build(from_values({"positions": doc}), 1_796_050_001.0, settings)
    direct = pipeline.build(from_values({"positions": rows}), 1_796_050_001.0, settings)
    assert via_file.positions["totals"] == direct.positions["totals"]
    assert via_file.positions["totals"]["count"] == 6000
    assert len(via_file.positions["positions"]) == positions_stage.MAX_ROWS
