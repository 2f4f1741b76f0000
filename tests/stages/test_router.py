"""Router stage: router_stats first, router_health means as fallback, never "good" for no data."""

import pytest

from kpi_publisher.stages.router import build_router

E1_ENTRIES = [
    {"symbol": "BTCUSDT", "maker_fill_rate": 0.6, "fallback_rate": 0.2, "slippage_p50": 1.0},
    {"symbol": "ETHUSDT", "maker_fill_rate": 0.4, "fallback_rate": None, "slippage_p50": 3.0},
    {"symbol": "SOLUSDT", "maker_fill_rate": None, "fallback_rate": None, "slippage_p50": None},
]


def test_router_stats_block_wins_and_names_its_source():
    """risk.router_stats supplies every number; symbols_used is null then."""
    risk = {
        "router_stats": {
            "maker_fill_ratio": 0.0,
            "fallback_ratio": 0.3,
            "slip_q25": 0.5,
            "slip_q50": 1.5,
            "slip_q75": 3.0,
        }
    }
    out = build_router(risk, {"symbols": E1_ENTRIES})
    assert out == {
        "maker_fill_rate": 0.0,
        "fallback_ratio": 0.3,
        "slip_q25_bps": 0.5,
        "slip_q50_bps": 1.5,
        "slip_q75_bps": 3.0,
        "quality": None,
        "source": "risk_snapshot.router_stats",
        "symbols_used": None,
    }


def test_all_null_router_stats_does_not_hide_the_embedded_kpis():
    risk = {
        "router_stats": {"maker_fill_ratio": None, "fallback_ratio": None},
        "kpis_v7": {"router_stats": {"maker_fill_ratio": 0.4}, "router_quality": "ok"},
    }
    out = build_router(risk, None)
    assert out["source"] == "risk_snapshot.kpis_v7.router_stats"
    assert out["maker_fill_rate"] == 0.4
    assert out["quality"] == "ok"


@pytest.mark.parametrize(
    "router",
    [
        {"symbols": E1_ENTRIES},
        {"per_symbol": {e["symbol"]: e for e in E1_ENTRIES}},
        {"router_health": {"per_symbol": {e["symbol"]: e for e in E1_ENTRIES}}},
    ],
    ids=["list", "dict", "nested-dict"],
)
def test_router_health_means_over_list_or_dict(router):
    """Plain means over entries with a valid value; an all-null entry is not counted."""
    out = build_router({}, router)
    assert out["maker_fill_rate"] == pytest.approx(0.5)
    assert out["fallback_ratio"] == pytest.approx(0.2)
    assert out["slip_q50_bps"] == pytest.approx(2.0)
    assert out["slip_q25_bps"] is None
    assert out["source"] == "router_health"
    assert out["symbols_used"] == 2


def test_quality_is_null_without_data_never_good():
    """All-zero quality counts and no entries: quality null, source null."""
    router = {"summary": {"count": 0, "quality_counts": {"good": 0, "ok": 0, "degraded": 0}}}
    out = build_router({}, router)
    assert out["quality"] is None
    assert out["source"] is None
    assert out["maker_fill_rate"] is None


def test_quality_is_the_worst_nonzero_count():
    router = {"summary": {"quality_counts": {"good": 5, "ok": 2, "degraded": 1, "broken": 0}}}
    assert build_router({}, router)["quality"] == "degraded"


def test_quality_chain_order():
    """router_stats quality, then kpis_v7.router_quality, then router_health's own quality."""
    assert (
        build_router({"router_stats": {"quality": "poor"}}, {"quality": "ok"})["quality"] == "poor"
    )
    assert (
        build_router({"kpis_v7": {"router_quality": "OK"}}, {"quality": "broken"})["quality"]
        == "ok"
    )
    assert build_router({}, {"quality": "degraded"})["quality"] == "degraded"


def test_e2_stats_shape_avg_slippage_only():
    """E2 router_health has no maker/fallback ratios: those stay null."""
    router = {
        "router_health": {
            "per_symbol": {
                "BTCUSDT": {"quality_score": 0.9, "avg_slippage_bps": 2.0},
                "ETHUSDT": {"quality_score": 0.7, "avg_slippage_bps": 4.0},
            }
        },
        "symbols": [],
    }
    out = build_router({}, router)
    assert out["slip_q50_bps"] == pytest.approx(3.0)
    assert out["maker_fill_rate"] is None
    assert out["symbols_used"] == 2
