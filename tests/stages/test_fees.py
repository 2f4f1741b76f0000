"""Fees stage: all four fields from the first source that exists."""

from kpi_publisher.stages.fees import build_fees


def test_fee_pnl_block_first_with_window():
    risk = {"fee_pnl": {"fee_pnl_ratio": 0.2, "fees": 10.0, "pnl": 50.0, "window_days": 7}}
    assert build_fees(risk) == {
        "fee_pnl_ratio": 0.2,
        "fees_usd": 10.0,
        "pnl_usd": 50.0,
        "window_days": 7.0,
    }


def test_all_null_block_does_not_hide_the_next_source():
    """An all-null fee_pnl block does not exist; the flat kpis_v7 fee_pnl is used."""
    risk = {
        "fee_pnl": {"fee_pnl_ratio": None, "fees": None},
        "kpis_v7": {"fee_pnl": {"fee_pnl_ratio": 0.0, "fees": 0.0, "pnl": 12.0, "window_days": 3}},
    }
    out = build_fees(risk)
    assert out["fee_pnl_ratio"] == 0.0
    assert out["window_days"] == 3.0


def test_top_level_fields_have_no_window():
    """Top-level fee_pnl_ratio/fees/pnl of the risk snapshot: window_days stays null."""
    out = build_fees({"fee_pnl_ratio": 0.25, "fees": 1.0, "pnl": 4.0})
    assert out == {"fee_pnl_ratio": 0.25, "fees_usd": 1.0, "pnl_usd": 4.0, "window_days": None}


def test_nothing_gives_nulls():
    assert set(build_fees(None).values()) == {None}
