"""Risk stage: drawdown units decided by the key, dd_state labels, ATR."""

import pytest

from kpi_publisher.stages.risk import build_risk, build_var, cvar_by_symbol


def test_e1_engine_block_is_percent():
    """dd_state.drawdown.dd_pct from the risk engine is percent (1.14 = 1.14 %)."""
    risk = {
        "dd_state": {
            "dd_state": "defensive",
            "drawdown": {"dd_pct": 1.14, "dd_abs": 27.0, "daily_loss": {"pct": 0.4}},
        }
    }
    out = build_risk(risk, None)
    assert out["drawdown_pct"] == 1.14
    assert out["drawdown_abs_usd"] == 27.0
    assert out["daily_loss_pct"] == 0.4
    assert out["dd_state"] == "defensive"


def test_writer_synthesised_dd_state_is_a_fraction():
    """{state: DRAWDOWN, drawdown: {dd_pct: 0.0114}} was synthesised by the writer: a fraction."""
    out = build_risk({"dd_state": {"state": "DRAWDOWN", "drawdown": {"dd_pct": 0.0114}}}, None)
    assert out["drawdown_pct"] == pytest.approx(1.14)
    assert out["dd_state"] == "drawdown"


def test_dd_frac_and_daily_loss_frac_are_fractions():
    out = build_risk({"dd_frac": 0.05, "daily_loss_frac": 0.02}, None)
    assert out["drawdown_pct"] == pytest.approx(5.0)
    assert out["daily_loss_pct"] == pytest.approx(2.0)


def test_top_level_drawdown_block_wins_and_zero_is_kept():
    """risk.drawdown.dd_pct 0.0 is a real zero drawdown, not missing."""
    risk = {"drawdown": {"dd_pct": 0.0}, "dd_frac": 0.5, "dd_state": {"drawdown": {"dd_pct": 9}}}
    assert build_risk(risk, None)["drawdown_pct"] == 0.0


def test_nav_state_percent_is_the_last_resort():
    """nav_state.drawdown_pct (percent) is used when the risk snapshot has nothing."""
    assert build_risk({}, {"drawdown_pct": 0.99, "drawdown": 5})["drawdown_pct"] == 0.99
    assert build_risk(None, {"drawdown": 0.5})["drawdown_pct"] == 0.5


def test_flat_kpis_embedded_fallbacks():
    """risk.kpis_v7 (the executor's flat payload) fills drawdown, dd_state and ATR."""
    risk = {
        "kpis_v7": {
            "dd_state": "CAUTIOUS",
            "drawdown": {"dd_pct": 0.7, "daily_loss": {"pct": 0.1}},
            "atr": {"median_ratio": 1.3, "atr_regime": "normal"},
        }
    }
    out = build_risk(risk, None)
    assert out["drawdown_pct"] == 0.7
    assert out["daily_loss_pct"] == 0.1
    assert out["dd_state"] == "cautious"
    assert out["atr_ratio"] == 1.3
    assert out["atr_regime"] == "normal"


def test_bare_string_dd_state_and_zero_atr_ratio():
    out = build_risk(
        {"dd_state": "NORMAL", "atr": {"median_ratio": 0.0}, "atr_regime": "quiet"}, None
    )
    assert out["dd_state"] == "normal"
    assert out["atr_ratio"] == 0.0
    assert out["atr_regime"] == "quiet"


def test_wrong_types_read_as_missing():
    """Lists and strings where objects belong never raise; the values are missing."""
    out = build_risk({"drawdown": [1, 2], "dd_state": 5, "atr": "high"}, [])
    assert out == {
        "drawdown_pct": None,
        "drawdown_abs_usd": None,
        "daily_loss_pct": None,
        "dd_state": None,
        "atr_ratio": None,
        "atr_regime": None,
    }


# ------------------------------------------------------------------------ VaR / CVaR
# risk_advanced.json as the v7.6+ executor writes it: *_nav_pct are fractions of NAV
RISK_ADVANCED = {
    "updated_ts": 1_765_281_600.0,
    "var": {
        "portfolio_var_usd": 182.4,
        "portfolio_var_nav_pct": 0.0456,
        "portfolio_volatility": 0.021,
        "max_portfolio_var_nav_pct": 0.12,
        "confidence": 0.99,
        "within_limit": True,
        "n_assets": 2,
        "lookback_used": 500,
        "weights": {"BTCUSDT": 0.3, "ETHUSDT": 0.2},
    },
    "cvar": {
        "per_symbol": {
            "BTCUSDT": {
                "cvar_nav_pct": 0.031,
                "cvar_usd": 124.0,
                "var_nav_pct": 0.022,
                "var_usd": 88.0,
                "limit": 0.04,
                "within_limit": True,
                "position_notional_usd": 1200.0,
                "lookback_used": 500,
            },
            "ETHUSDT": {
                "cvar_nav_pct": 0.0,
                "cvar_usd": 0.0,
                "var_nav_pct": 0.0,
                "var_usd": 0.0,
                "limit": 0.04,
                "within_limit": True,
                "position_notional_usd": 800.0,
                "lookback_used": 0,
            },
        },
        "max_position_cvar_nav_pct": 0.04,
        "confidence": 0.95,
    },
}


def test_var_fractions_become_percent():
    """portfolio_var_nav_pct 0.0456 is 4.56 %; the limit 0.12 is 12 %; USD passes through."""
    out = build_var(RISK_ADVANCED)
    assert out["var_pct"] == pytest.approx(4.56)
    assert out["var_usd"] == 182.4
    assert out["var_limit_pct"] == pytest.approx(12.0)
    assert out["var_confidence"] == 0.99
    assert out["cvar_pct"] == pytest.approx(3.1)  # the worst symbol with an estimate


def test_lookback_zero_is_no_estimate_whatever_the_numbers_say():
    """The executor's no-data result (lookback_used 0, zeros): null, not a 0 % VaR."""
    cold = {
        "var": {
            "portfolio_var_usd": 0.0,
            "portfolio_var_nav_pct": 0.0,
            "max_portfolio_var_nav_pct": 0.12,
            "confidence": 0.99,
            "lookback_used": 0,
        },
        "cvar": {"per_symbol": {"BTCUSDT": {"cvar_nav_pct": 0.0, "lookback_used": 0}}},
    }
    out = build_var(cold)
    assert out == {
        "var_pct": None,
        "var_usd": None,
        "var_limit_pct": pytest.approx(12.0),
        "var_confidence": 0.99,
        "cvar_pct": None,
    }
    assert cvar_by_symbol(cold) == {"BTCUSDT": None}


def test_per_symbol_cvar_in_percent_with_no_estimate_as_null():
    assert cvar_by_symbol(RISK_ADVANCED) == {"BTCUSDT": pytest.approx(3.1), "ETHUSDT": None}


def test_a_real_zero_var_with_data_is_a_value():
    """Rule 1: lookback_used > 0 and a VaR of 0.0 is a measured 0.0 %."""
    out = build_var({"var": {"portfolio_var_nav_pct": 0.0, "lookback_used": 30}})
    assert out["var_pct"] == 0.0


@pytest.mark.parametrize("doc", [None, {}, {"var": [], "cvar": "x"}, {"updated_ts": 1.0}])
def test_missing_or_malformed_risk_advanced_gives_nulls(doc):
    assert build_var(doc) == dict.fromkeys(
        ("var_pct", "var_usd", "var_limit_pct", "var_confidence", "cvar_pct")
    )
