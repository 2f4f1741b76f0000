"""NAV stage: value chain, age from the supplying file, freshness, ZAR."""

from kpi_publisher.stages.nav import build_nav

T = 1_762_444_800.0


def nav(nav_state=None, nav_doc=None, usd_zar=None, now=T + 30):
    return build_nav(nav_state, nav_doc, usd_zar=usd_zar, now=now, nav_fresh_s=90.0)


def test_sync_shape_total_equity_with_stored_age_ignored():
    """The stored age_s 0.0 is ignored; age comes from updated_at at build time."""
    out = nav({"total_equity": 2345.67, "updated_at": T, "age_s": 0.0, "peak_equity": 2400.0})
    assert out["nav_usd"] == 2345.67
    assert out["age_s"] == 30.0
    assert out["fresh"] is True
    assert out["source"] == "nav_state"
    assert out["peak_usd"] == 2400.0


def test_zero_age_is_kept_as_zero():
    """A NAV stamped exactly now has age 0.0 (not null) and is fresh."""
    out = nav({"nav_usd": 1000.0, "updated_at": T}, now=T)
    assert out["age_s"] == 0.0
    assert out["fresh"] is True


def test_falls_back_to_nav_json_and_its_timestamp():
    """nav_state without a NAV value: nav.json supplies value and age."""
    out = nav({"updated_at": T}, {"nav": 999.5, "updated_ts": "2025-11-06T15:58:00Z"})
    assert out["nav_usd"] == 999.5
    assert out["source"] == "nav"
    assert out["updated_at"] == T - 120
    assert out["age_s"] == 150.0
    assert out["fresh"] is False


def test_unavailable_zero_nav_is_missing():
    """A NAV of 0 from a file whose nav_detail.source is unavailable is missing."""
    out = nav(None, {"nav": 0.0, "nav_detail": {"source": "unavailable"}, "updated_ts": T})
    assert out["nav_usd"] is None
    assert out["source"] is None
    assert out["fresh"] is False


def test_real_zero_nav_is_a_value():
    """A NAV of 0 from a live source is a value."""
    assert nav({"nav": 0.0, "updated_at": T})["nav_usd"] == 0.0


def test_no_timestamp_means_not_fresh_and_null_age():
    out = nav({"nav_usd": 1000.0})
    assert out["age_s"] is None
    assert out["fresh"] is False


def test_zar_needs_a_rate():
    """nav_zar = nav_usd * usd_zar, null without a rate (no default)."""
    assert nav({"nav_usd": 100.0, "updated_at": T}, usd_zar=17.5)["nav_zar"] == 1750.0
    assert nav({"nav_usd": 100.0, "updated_at": T})["nav_zar"] is None


# The executor's nav.json mirror (what nav_state.json holds for ~20 s of every minute):
# a NAV and a timestamp, none of peak_equity / unrealized_pnl / realized_pnl_today.
MIRROR = {"nav": 4012.5, "nav_usd": 4012.5, "updated_at": T, "aum": {"futures": 4012.5}}
RISK = {"dd_state": {"dd_state": "normal", "drawdown": {"peak": 4100.0, "realized_today": 12.5}}}


def test_mirror_wrote_last_fallbacks_fill_peak_pnl():
    """Peak and realised-today from risk.dd_state.drawdown, unrealised from the positions."""
    out = build_nav(
        MIRROR, None, usd_zar=None, now=T + 5, nav_fresh_s=90.0, risk=RISK, positions_pnl_usd=-3.5
    )
    assert out["peak_usd"] == 4100.0
    assert out["realized_pnl_today_usd"] == 12.5
    assert out["unrealized_pnl_usd"] == -3.5


def test_sync_wrote_last_its_own_values_win_over_the_fallbacks():
    """The NAV files' own keys come first; 0.0 there is a value, not a reason to fall back."""
    sync = {**MIRROR, "peak_equity": 4200.0, "unrealized_pnl": 0.0, "realized_pnl_today": 0.0}
    out = build_nav(
        sync, None, usd_zar=None, now=T + 5, nav_fresh_s=90.0, risk=RISK, positions_pnl_usd=-3.5
    )
    assert (out["peak_usd"], out["unrealized_pnl_usd"], out["realized_pnl_today_usd"]) == (
        4200.0,
        0.0,
        0.0,
    )


def test_top_level_risk_drawdown_is_the_last_fallback():
    """risk.drawdown.peak / .realized_today when dd_state has no drawdown block."""
    risk = {"dd_state": {"state": "NORMAL"}, "drawdown": {"peak": 50.0, "realized_today": 0.0}}
    out = build_nav(MIRROR, None, usd_zar=None, now=T, nav_fresh_s=90.0, risk=risk)
    assert out["peak_usd"] == 50.0
    assert out["realized_pnl_today_usd"] == 0.0
    assert out["unrealized_pnl_usd"] is None  # no positions pnl given


def test_cold_start_placeholder_risk_gives_nulls_not_errors():
    """The loop's first risk file {updated_ts, symbols: []}: no fallback value, no exception."""
    out = build_nav(
        MIRROR, None, usd_zar=None, now=T, nav_fresh_s=90.0, risk={"updated_ts": T, "symbols": []}
    )
    assert (out["peak_usd"], out["realized_pnl_today_usd"]) == (None, None)
    assert out["nav_usd"] == 4012.5
