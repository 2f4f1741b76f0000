"""Positions stage: camelCase and snake_case rows, hedge-mode zero rows, signs, totals."""

import pytest

from kpi_publisher.stages.positions import build_positions, normalize

HEDGE_MODE = {
    "rows": [
        {
            "symbol": "BTCUSDT",
            "positionSide": "LONG",
            "qty": 0.01,
            "entryPrice": 100000.0,
            "markPrice": 101000.0,
            "unrealized": 10.0,
            "leverage": 5,
        },
        {
            "symbol": "BTCUSDT",
            "positionSide": "SHORT",
            "qty": 0.0,
            "entryPrice": 0.0,
            "markPrice": 0.0,
            "unrealized": 0.0,
        },
        {
            "symbol": "ETHUSDT",
            "positionSide": "SHORT",
            "qty": 0.5,
            "entryPrice": 3400.0,
            "markPrice": 3300.0,
            "leverage": 3,
        },
        {"symbol": "ETHUSDT", "positionSide": "LONG", "qty": 1e-13, "entryPrice": 1.0},
    ]
}


def test_camel_case_rows_get_notional_and_pnl():
    """markPrice/entryPrice are read: non-zero notional; a SHORT qty is negative; pnl derived."""
    rows = normalize(HEDGE_MODE)
    assert [(r["symbol"], r["side"], r["qty"]) for r in rows] == [
        ("ETHUSDT", "SHORT", -0.5),
        ("BTCUSDT", "LONG", 0.01),
    ]
    eth, btc = rows
    assert eth["notional"] == pytest.approx(1650.0)
    assert eth["pnl"] == pytest.approx(50.0)  # (3300 - 3400) * -0.5
    assert btc["notional"] == pytest.approx(1010.0)
    assert btc["pnl"] == 10.0  # the stated unrealised PnL wins


def test_hedge_mode_zero_rows_are_dropped():
    assert len(normalize(HEDGE_MODE)) == 2


def test_snake_case_both_side_and_zero_price_fallbacks():
    """BOTH takes the sign of qty; a zero mark with qty is unknown, so notional uses entry."""
    doc = {
        "items": [
            {
                "symbol": "solusdt",
                "side": "BOTH",
                "qty": -2,
                "entry_price": 150.0,
                "mark_price": 0.0,
            }
        ]
    }
    (row,) = normalize(doc)
    assert row["symbol"] == "SOLUSDT"
    assert row["side"] == "SHORT"
    assert row["mark_price"] is None
    assert row["notional"] == 300.0
    assert row["pnl"] is None


def test_stored_notional_only_without_prices():
    (row,) = normalize([{"symbol": "X", "size": 3, "notional": -42.0}])
    assert row["notional"] == 42.0
    assert row["side"] == "LONG"


def test_containers_and_junk_rows():
    assert normalize({"positions": [{"symbol": "A", "qty": 1, "mark": 2}]})[0]["notional"] == 2.0
    assert normalize({"rows": [], "items": [{"symbol": "A", "qty": 1}]})[0]["symbol"] == "A"
    assert normalize({"rows": ["junk", 3, None, {"qty": 1}]}) == []
    assert normalize("not a doc") == []


def test_build_joins_risk_formats_and_totals():
    rows = normalize(HEDGE_MODE)
    symbols = {
        "BTCUSDT": {
            "atr_ratio": 1.1,
            "atr_regime": "normal",
            "dd_state": "normal",
            "dd_today_pct": 0.0,
        }
    }
    out = build_positions(rows, symbols)
    eth, btc = out["positions"]
    assert btc["atr_ratio"] == 1.1 and btc["dd_today_pct"] == 0.0
    assert eth["atr_ratio"] is None
    assert eth["notional_fmt"] == "1,650.00"
    assert btc["pnl_fmt"] == "10.00"
    assert out["totals"] == {
        "count": 2,
        "gross_notional_usd": pytest.approx(2660.0),
        "net_notional_usd": pytest.approx(-640.0),
        "pnl_usd": pytest.approx(60.0),
        "gross_notional_fmt": "2,660.00",
        "pnl_fmt": "60.00",
    }


def test_empty_book_totals():
    assert build_positions([], {})["totals"] == {
        "count": 0,
        "gross_notional_usd": 0.0,
        "net_notional_usd": 0.0,
        "pnl_usd": None,
        "gross_notional_fmt": "0.00",
        "pnl_fmt": "–",
    }
