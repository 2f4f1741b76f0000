"""Positions stage: camelCase and snake_case rows, hedge-mode zero rows, signs, totals."""

import pytest

from kpi_publisher.pipeline import position_book
from kpi_publisher.stages.positions import normalize, normalize_rows

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


def book(rows, risk=None, nav_usd=None):
    """The {positions, totals} block the pipeline publishes for normalised `rows`."""
    return position_book(rows, risk, 64, nav_usd=nav_usd)[1]


def test_build_joins_risk_formats_and_totals():
    rows = normalize(HEDGE_MODE)
    risk = {
        "symbols": [
            {
                "symbol": "BTCUSDT",
                "atr_ratio": 1.1,
                "atr_regime": "normal",
                "dd_state": "normal",
                "dd_today_pct": 0.0,
            }
        ]
    }
    out = book(rows, risk)
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
        "gross_exposure_pct": None,  # no NAV given
        "net_exposure_pct": None,
        "gross_notional_fmt": "2,660.00",
        "pnl_fmt": "60.00",
    }


def test_empty_book_totals():
    assert book([])["totals"] == {
        "count": 0,
        "gross_notional_usd": 0.0,
        "net_notional_usd": 0.0,
        "pnl_usd": None,
        "gross_exposure_pct": None,
        "net_exposure_pct": None,
        "gross_notional_fmt": "0.00",
        "pnl_fmt": "–",
    }


def test_a_book_without_a_known_notional_has_unknown_totals_not_zero():
    """A row with no price (or prices of 0, which read as unknown), or whose |qty| x price
    overflows: its notional is unknown, so a book of only such rows has unknown gross and net
    notionals and exposures (a dash), never 0.00; one priced row beside them is summed alone."""
    unpriced = [
        {"symbol": "BTCUSDT", "side": "LONG", "qty": 0.5},
        {"symbol": "ETHUSDT", "side": "SHORT", "qty": 2, "entry_price": 0, "mark_price": 0},
        {"symbol": "SOLUSDT", "side": "LONG", "qty": 1e308, "mark_price": 1e10},
    ]
    totals = book(normalize(unpriced), nav_usd=2000.0)["totals"]
    assert totals["count"] == 3
    assert totals["gross_notional_usd"] is None and totals["net_notional_usd"] is None
    assert totals["gross_exposure_pct"] is None and totals["net_exposure_pct"] is None
    assert totals["gross_notional_fmt"] == "–"
    priced = [*unpriced, {"symbol": "XRPUSDT", "side": "SHORT", "qty": 10, "mark_price": 2.0}]
    totals = book(normalize(priced), nav_usd=2000.0)["totals"]
    assert (totals["gross_notional_usd"], totals["net_notional_usd"]) == (20.0, -20.0)
    assert totals["gross_exposure_pct"] == 1.0


def test_exposure_is_notional_over_nav_in_percent():
    """gross / net notional / NAV x 100; the short book makes net negative."""
    totals = book(normalize(HEDGE_MODE), nav_usd=2000.0)["totals"]
    assert totals["gross_exposure_pct"] == pytest.approx(2660.0 / 2000.0 * 100)
    assert totals["net_exposure_pct"] == pytest.approx(-640.0 / 2000.0 * 100)


def test_empty_book_with_a_nav_has_zero_exposure():
    """Zero is a value: no positions and a known NAV is 0.0 %, not unknown."""
    totals = book([], nav_usd=1000.0)["totals"]
    assert totals["gross_exposure_pct"] == 0.0
    assert totals["net_exposure_pct"] == 0.0


@pytest.mark.parametrize("nav_usd", [None, 0.0, -5.0])
def test_exposure_is_null_without_a_usable_nav(nav_usd):
    totals = book(normalize(HEDGE_MODE), nav_usd=nav_usd)["totals"]
    assert totals["gross_exposure_pct"] is None
    assert totals["net_exposure_pct"] is None


def test_rows_dropped_for_an_unreadable_value_are_counted():
    """A decimal-comma qty, a symbol that is not text, a row with no qty and a non-object row
    are counted in the note; hedge-mode zero rows and rows without a symbol key are not."""
    from kpi_publisher.stages.positions import normalize_rows

    doc = {
        "rows": [
            {"symbol": "BTCUSDT", "qty": "0,8", "markPrice": 91000},
            {"symbol": "ETHUSDT", "positionAmt": "18,05"},
            {"symbol": "SOLUSDT"},
            {"symbol": 42, "qty": 1},
            "junk",
            {"symbol": "XRPUSDT", "qty": "1,234.5", "markPrice": 1.0},
            *HEDGE_MODE["rows"],
            {"qty": 5.0},
        ]
    }
    rows, note = normalize_rows(doc)
    assert [r["symbol"] for r in rows] == ["ETHUSDT", "XRPUSDT", "BTCUSDT"]
    assert rows[1]["qty"] == 1234.5
    assert note == (
        "5 rows dropped: qty unreadable (BTCUSDT, ETHUSDT); no qty (SOLUSDT); "
        "symbol unreadable (row 3); not an object (row 4)"
    )
    assert normalize_rows(HEDGE_MODE) == (normalize(HEDGE_MODE), None)


def test_dropped_rows_reach_the_positions_source_error():
    """Through the pipeline: the positions source stays ok and its error counts the rows."""
    from kpi_publisher import pipeline
    from kpi_publisher.config import Settings
    from kpi_publisher.contract import from_values

    doc = {"ts": 1_762_444_800.0, "rows": [{"symbol": "BTCUSDT", "qty": "0,8"}]}
    out = pipeline.build(from_values({"positions": doc}), 1_762_444_800.0, Settings())
    expected = "1 row dropped: qty unreadable (BTCUSDT)"
    assert out.kpis["sources"]["positions"] == {"status": "ok", "age_s": 0.0, "error": expected}
    assert out.positions["source"]["error"] == expected
    assert out.positions["totals"]["count"] == 0


def test_every_listed_row_is_joined_past_the_symbols_cap():
    """The `symbols` map is capped (64 by default); the rows are not: 65 open symbols, each
    row carries its symbol's risk fields (the 65th lost them)."""
    rows = normalize([{"symbol": f"S{i:03d}", "qty": 1, "mark": 1000 - i} for i in range(65)])
    risk = {"symbols": [{"symbol": f"S{i:03d}", "atr_ratio": 1.5, "risk": {"dd_state": "X"}}
                        for i in range(65)]}  # fmt: skip
    symbol_map, book = position_book(rows, risk, 64)
    assert len(symbol_map) == 64 and "S064" not in symbol_map
    assert [(r["symbol"], r["atr_ratio"], r["dd_state"]) for r in book["positions"]] == [
        (f"S{i:03d}", 1.5, "x") for i in range(65)
    ]


@pytest.mark.parametrize(
    ("symbol", "reason"),
    [
        ("ß" * 40, "symbol too long"),
        ("x" * 65, "symbol too long"),
        ("BTC\x00", "symbol unreadable"),
    ],
)
def test_a_symbol_that_cannot_be_published_drops_the_row_and_says_why(symbol, reason):
    """The limit is on the upper-cased symbol (as published); a control character is refused;
    the note never copies the symbol's control characters."""
    rows, note = normalize_rows([{"symbol": symbol, "qty": 1.0, "mark": 2.0}])
    assert rows == []
    assert note is not None and note.startswith(f"1 row dropped: {reason} (")
    assert "\x00" not in note
