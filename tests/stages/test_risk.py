"""Risk stage: drawdown units decided by the key, dd_state labels, ATR."""

import pytest

from kpi_publisher.stages.risk import build_risk


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
