"""Per-symbol risk map: flat then nested fields, four sources in order, open positions first."""

from kpi_publisher.pipeline import position_book
from kpi_publisher.stages.positions import RISK_FIELDS, normalize
from kpi_publisher.stages.symbols import FIELDS, symbol_book


def published_map(risk, open_symbols, cap, cvar_pct=None):
    """The published `symbols` map (`symbol_book`'s first part)."""
    return symbol_book(risk, open_symbols, cap, cvar_pct)[0]


def test_health_entries_nested_then_atr_symbols_fill_gaps():
    risk = {
        "symbols": [
            {"symbol": "BTCUSDT", "risk": {"dd_today_pct": 0.0, "dd_state": "NORMAL"}, "vol": {}},
        ],
        "atr": {"symbols": [{"symbol": "BTCUSDT", "atr_ratio": 1.09, "atr_regime": "normal"}]},
    }
    assert published_map(risk, [], 64) == {
        "BTCUSDT": {
            "atr_ratio": 1.09,
            "atr_regime": "normal",
            "dd_state": "normal",
            "dd_today_pct": 0.0,
            "cvar_pct": None,  # no risk_advanced given
        }
    }


def test_dict_sources_and_ratio_alias():
    risk = {"kpis_v7": {"atr": {"symbols": {"ethusdt": {"ratio": 0.5}}}}}
    assert published_map(risk, [], 64)["ETHUSDT"]["atr_ratio"] == 0.5


def test_open_positions_first_then_by_name_and_capped():
    risk = {"symbols": [{"symbol": s, "atr_ratio": 1.0} for s in ["AAA", "BBB", "CCC", "ZZZ"]]}
    out = published_map(risk, ["ZZZ", "QQQ"], 3)
    assert list(out) == ["ZZZ", "AAA", "BBB"]


def test_cvar_joins_the_symbol_and_adds_symbols_with_only_a_cvar():
    """Per-symbol CVaR (percent of NAV) sits beside the risk fields; a CVaR alone lists it."""
    risk = {"symbols": [{"symbol": "BTCUSDT", "atr_ratio": 1.0}]}
    out = published_map(risk, [], 64, {"BTCUSDT": 2.5, "ETHUSDT": 1.25, "SOLUSDT": None})
    assert out["BTCUSDT"]["cvar_pct"] == 2.5
    assert out["ETHUSDT"] == {
        "atr_ratio": None,
        "atr_regime": None,
        "dd_state": None,
        "dd_today_pct": None,
        "cvar_pct": 1.25,
    }
    assert "SOLUSDT" not in out  # no estimate and nothing else: not listed


def test_every_open_symbol_has_its_fields_past_the_cap():
    """The cap bounds the published map only: `symbol_book` gives every open symbol's four
    fields (in the order the positions join reads them), past the cap too."""
    names = [f"S{i:03d}" for i in range(5)]
    risk = {"symbols": [{"symbol": s, "atr_ratio": 1.5, "dd_state": "Normal"} for s in names[1:]]}
    published, held = symbol_book(risk, names[::-1], 2)
    assert list(published) == ["S004", "S003"]
    assert held == {s: (1.5, None, "normal", None) for s in names[:0:-1]}  # S000: no value
    assert FIELDS == RISK_FIELDS
    # The pipeline publishes that map for a book holding them (largest notional first).
    rows = normalize([{"symbol": s, "qty": 1.0, "mark": 10.0 + i} for i, s in enumerate(names)])
    assert position_book(rows, risk, 2)[0] == published


def test_a_symbol_too_long_upper_cased_or_with_a_control_character_is_not_listed():
    risk = {
        "symbols": [{"symbol": "ß" * 40, "atr_ratio": 1.0}, {"symbol": "\x00", "atr_ratio": 1.0}]
    }
    assert published_map(risk, [], 64) == {}
