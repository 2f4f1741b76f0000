"""Every key variant the contract adopts is read (docs/CONTRACT_RULES.md, rules 1-11).

One row per variant: the source documents in, the output field it feeds, the value expected
from the contract's chains. Rows run through the whole pipeline (pipeline.build), so a
variant that a stage reads but the pipeline never passes on would fail here too.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from kpi_publisher import pipeline
from kpi_publisher.config import Settings
from kpi_publisher.contract import from_values

NOW = 1_700_000_100.0  # 2023-11-14T22:15:00Z
TS = 1_700_000_000.0  # 100 s before NOW
SETTINGS = Settings()


def build(**docs: Any) -> pipeline.Outputs:
    return pipeline.build(from_values(docs), NOW, SETTINGS)


def pick(doc: Any, path: str) -> Any:
    """Follow "a.b[0].c" through a published document."""
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        doc = doc[int(part[1:-1])] if part.startswith("[") else doc[part]
    return doc


def kpi(path: str, **docs: Any) -> Any:
    return pick(build(**docs).kpis, path)


def row(**kw: Any) -> dict[str, Any]:
    return kw


# ------------------------------------------------------------------------------------ rows
# (id, source documents, output path in kpis_v7, expected value)
KPI_ROWS: list[tuple[str, dict[str, Any], str, Any]] = [
    # --- NAV value: nav_usd | nav | nav_total | total_equity | equity, nav_state then nav
    ("nav.nav_usd", {"nav_state": {"nav_usd": 1000.5}}, "nav.nav_usd", 1000.5),
    ("nav.nav", {"nav_state": {"nav": 1000.5}}, "nav.nav_usd", 1000.5),
    ("nav.nav_total", {"nav_state": {"nav_total": 1000.5}}, "nav.nav_usd", 1000.5),
    ("nav.total_equity", {"nav_state": {"total_equity": 1000.5}}, "nav.nav_usd", 1000.5),
    ("nav.equity", {"nav_state": {"equity": 1000.5}}, "nav.nav_usd", 1000.5),
    (
        "nav.order-nav_usd-first",
        {"nav_state": {"total_equity": 2.0, "nav_usd": 1.0}},
        "nav.nav_usd",
        1.0,
    ),
    (
        "nav.order-nav-before-total_equity",
        {"nav_state": {"total_equity": 2.0, "nav": 1.0}},
        "nav.nav_usd",
        1.0,
    ),
    ("nav.from-nav.json", {"nav": {"nav_usd": 7.25}}, "nav.nav_usd", 7.25),
    ("nav.source-nav.json", {"nav": {"nav_usd": 7.25}}, "nav.source", "nav"),
    (
        "nav.nav_state-before-nav.json",
        {"nav_state": {"nav": 1.0}, "nav": {"nav": 2.0}},
        "nav.nav_usd",
        1.0,
    ),
    ("nav.numeric-string", {"nav_state": {"nav_usd": "1,234.5"}}, "nav.nav_usd", 1234.5),
    (
        "nav.zero-is-a-value",
        {"nav_state": {"nav_usd": 0.0}, "nav": {"nav_usd": 9.0}},
        "nav.nav_usd",
        0.0,
    ),
    (
        "nav.zero-unavailable-is-missing",
        {"nav_state": {"nav": 0.0, "nav_detail": {"source": "unavailable"}}, "nav": {"nav": 9.0}},
        "nav.nav_usd",
        9.0,
    ),
    ("nav.null-skipped", {"nav_state": {"nav_usd": None, "nav": 3.0}}, "nav.nav_usd", 3.0),
    ("nav.bool-is-missing", {"nav_state": {"nav_usd": True, "nav": 3.0}}, "nav.nav_usd", 3.0),
    ("nav.peak_equity", {"nav_state": {"peak_equity": 1010.0}}, "nav.peak_usd", 1010.0),
    ("nav.peak", {"nav_state": {"peak": 1010.0}}, "nav.peak_usd", 1010.0),
    (
        "nav.peak-from-nav.json",
        {"nav_state": {"nav": 1.0}, "nav": {"peak": 1010.0}},
        "nav.peak_usd",
        1010.0,
    ),
    ("nav.unrealized_pnl", {"nav_state": {"unrealized_pnl": -2.5}}, "nav.unrealized_pnl_usd", -2.5),
    (
        "nav.realized_pnl_today",
        {"nav_state": {"realized_pnl_today": 0.0}},
        "nav.realized_pnl_today_usd",
        0.0,
    ),
    # --- a file's own timestamp: updated_at, updated_ts, ts, timestamp, updated, generated_at
    *[
        (f"ts.{key}", {"nav_state": {"nav": 1.0, key: TS}}, "nav.updated_at", TS)
        for key in ("updated_at", "updated_ts", "ts", "timestamp", "updated", "generated_at")
    ],
    (
        "ts.order-updated_at-first",
        {"nav_state": {"nav": 1.0, "ts": 5.0, "updated_at": TS}},
        "nav.updated_at",
        TS,
    ),
    (
        "ts.invalid-first-key-skipped",
        {"nav_state": {"nav": 1.0, "updated_at": "soon", "updated_ts": TS}},
        "nav.updated_at",
        TS,
    ),
    ("ts.epoch-ms", {"nav_state": {"nav": 1.0, "updated_at": TS * 1000}}, "nav.updated_at", TS),
    (
        "ts.digit-string",
        {"nav_state": {"nav": 1.0, "updated_at": "1700000000"}},
        "nav.updated_at",
        TS,
    ),
    (
        "ts.iso-z",
        {"nav_state": {"nav": 1.0, "updated_at": "2023-11-14T22:13:20Z"}},
        "nav.updated_at",
        TS,
    ),
    (
        "ts.iso-offset",
        {"nav_state": {"nav": 1.0, "updated_ts": "2023-11-15T00:13:20+02:00"}},
        "nav.updated_at",
        TS,
    ),
    (
        "ts.iso-naive-is-utc",
        {"nav_state": {"nav": 1.0, "updated_ts": "2023-11-14T22:13:20"}},
        "nav.updated_at",
        TS,
    ),
    ("ts.age-from-timestamp", {"nav_state": {"nav": 1.0, "updated_at": TS}}, "nav.age_s", 100.0),
    (
        "ts.stored-age_s-ignored",
        {"nav_state": {"nav": 1.0, "updated_at": TS, "age_s": 0.0, "nav_age_s": 0.0, "age": 0.0}},
        "nav.age_s",
        100.0,
    ),
    ("ts.stale-nav-not-fresh", {"nav_state": {"nav": 1.0, "updated_at": TS}}, "nav.fresh", False),
    ("ts.fresh-at-90s", {"nav_state": {"nav": 1.0, "updated_at": NOW - 90.0}}, "nav.fresh", True),
    ("ts.future-age-zero", {"nav_state": {"nav": 1.0, "updated_at": NOW + 60.0}}, "nav.age_s", 0.0),
    ("ts.none-age-null", {"nav_state": {"nav": 1.0}}, "nav.age_s", None),
    ("ts.none-not-fresh", {"nav_state": {"nav": 1.0}}, "nav.fresh", False),
    ("ts.none-status-ok", {"nav_state": {"nav": 1.0}}, "sources.nav_state.status", "ok"),
    (
        "ts.age-from-the-file-that-supplied-nav",
        {"nav_state": {"updated_at": NOW}, "nav": {"nav": 2.0, "updated_ts": TS}},
        "nav.age_s",
        100.0,
    ),
    (
        "ts.fx-usd_zar_ts",
        {"fx": {"usd_zar": 17.0, "usd_zar_ts": TS, "prices_ts": NOW}},
        "sources.fx.age_s",
        100.0,
    ),
    ("ts.fx-prices_ts", {"fx": {"usd_zar": 17.0, "prices_ts": TS}}, "sources.fx.age_s", 100.0),
    # --- drawdown (percent unless the key says fraction)
    (
        "dd.risk.drawdown.dd_pct",
        {"risk": {"drawdown": {"dd_pct": 1.14}}},
        "risk.drawdown_pct",
        1.14,
    ),
    (
        "dd.dd_state.drawdown.dd_pct",
        {"risk": {"dd_state": {"dd_state": "defensive", "drawdown": {"dd_pct": 1.14}}}},
        "risk.drawdown_pct",
        1.14,
    ),
    (
        "dd.synthesised-state-fraction",
        {"risk": {"dd_state": {"state": "DRAWDOWN", "drawdown": {"dd_pct": 0.0114}}}},
        "risk.drawdown_pct",
        1.14,
    ),
    (
        "dd.lowercase-state-is-percent",
        {"risk": {"dd_state": {"state": "normal", "drawdown": {"dd_pct": 1.14}}}},
        "risk.drawdown_pct",
        1.14,
    ),
    (
        "dd.dd_state-key-beats-state",
        {
            "risk": {
                "dd_state": {"dd_state": "normal", "state": "NORMAL", "drawdown": {"dd_pct": 1.14}}
            }
        },
        "risk.drawdown_pct",
        1.14,
    ),
    ("dd.dd_frac", {"risk": {"dd_frac": 0.0114}}, "risk.drawdown_pct", 1.14),
    (
        "dd.kpis_v7.drawdown.dd_pct",
        {"risk": {"kpis_v7": {"drawdown": {"dd_pct": 1.14}}}},
        "risk.drawdown_pct",
        1.14,
    ),
    ("dd.nav_state.drawdown_pct", {"nav_state": {"drawdown_pct": 1.14}}, "risk.drawdown_pct", 1.14),
    ("dd.nav_state.drawdown", {"nav_state": {"drawdown": 1.14}}, "risk.drawdown_pct", 1.14),
    (
        "dd.order-drawdown-before-dd_frac",
        {"risk": {"drawdown": {"dd_pct": 0.5}, "dd_frac": 0.02}},
        "risk.drawdown_pct",
        0.5,
    ),
    (
        "dd.order-dd_frac-before-kpis",
        {"risk": {"dd_frac": 0.02, "kpis_v7": {"drawdown": {"dd_pct": 0.5}}}},
        "risk.drawdown_pct",
        2.0,
    ),
    (
        "dd.order-risk-before-nav_state",
        {"risk": {"kpis_v7": {"drawdown": {"dd_pct": 0.5}}}, "nav_state": {"drawdown_pct": 3.0}},
        "risk.drawdown_pct",
        0.5,
    ),
    (
        "dd.zero-is-a-value",
        {"risk": {"drawdown": {"dd_pct": 0.0}}, "nav_state": {"drawdown_pct": 3.0}},
        "risk.drawdown_pct",
        0.0,
    ),
    (
        "dd.big-percent-not-rescaled",
        {"risk": {"drawdown": {"dd_pct": 31.5}}},
        "risk.drawdown_pct",
        31.5,
    ),
    (
        "dd.small-percent-not-rescaled",
        {"risk": {"drawdown": {"dd_pct": 0.13}}},
        "risk.drawdown_pct",
        0.13,
    ),
    (
        "dd_abs.risk.drawdown.dd_abs",
        {"risk": {"drawdown": {"dd_abs": 5.1}}},
        "risk.drawdown_abs_usd",
        5.1,
    ),
    (
        "dd_abs.dd_state.drawdown.drawdown_abs",
        {"risk": {"dd_state": {"dd_state": "normal", "drawdown": {"drawdown_abs": 5.1}}}},
        "risk.drawdown_abs_usd",
        5.1,
    ),
    (
        "dd_abs.kpis_v7",
        {"risk": {"kpis_v7": {"drawdown": {"dd_abs": 5.1}}}},
        "risk.drawdown_abs_usd",
        5.1,
    ),
    (
        "dd_abs.nav_state.drawdown_abs",
        {"nav_state": {"drawdown_abs": 5.1}},
        "risk.drawdown_abs_usd",
        5.1,
    ),
    # --- daily loss
    (
        "daily.risk.drawdown.daily_loss.pct",
        {"risk": {"drawdown": {"daily_loss": {"pct": 0.2}}}},
        "risk.daily_loss_pct",
        0.2,
    ),
    (
        "daily.dd_state.drawdown.daily_loss.pct",
        {"risk": {"dd_state": {"dd_state": "normal", "drawdown": {"daily_loss": {"pct": 0.2}}}}},
        "risk.daily_loss_pct",
        0.2,
    ),
    ("daily.daily_loss_frac", {"risk": {"daily_loss_frac": 0.002}}, "risk.daily_loss_pct", 0.2),
    (
        "daily.kpis_v7",
        {"risk": {"kpis_v7": {"drawdown": {"daily_loss": {"pct": 0.2}}}}},
        "risk.daily_loss_pct",
        0.2,
    ),
    (
        "daily.zero-is-a-value",
        {"risk": {"drawdown": {"daily_loss": {"pct": 0.0}}, "daily_loss_frac": 0.01}},
        "risk.daily_loss_pct",
        0.0,
    ),
    # --- dd_state label
    ("dd_state.bare-string", {"risk": {"dd_state": "Cautious"}}, "risk.dd_state", "cautious"),
    (
        "dd_state.dict-dd_state",
        {"risk": {"dd_state": {"dd_state": "DEFENSIVE"}}},
        "risk.dd_state",
        "defensive",
    ),
    (
        "dd_state.dict-state",
        {"risk": {"dd_state": {"state": "RECOVERY"}}},
        "risk.dd_state",
        "recovery",
    ),
    ("dd_state.kpis_v7", {"risk": {"kpis_v7": {"dd_state": "normal"}}}, "risk.dd_state", "normal"),
    ("dd_state.unmapped-label", {"risk": {"dd_state": "unknown"}}, "risk.dd_state", "unknown"),
    ("dd_state.legacy-copy", {"risk": {"dd_state": "NORMAL"}}, "dd_state", "normal"),
    # --- ATR
    (
        "atr.atr.median_ratio",
        {"risk": {"atr": {"median_ratio": 1.1}, "atr_ratio": 9.0}},
        "risk.atr_ratio",
        1.1,
    ),
    ("atr.atr_ratio", {"risk": {"atr_ratio": 1.1}}, "risk.atr_ratio", 1.1),
    (
        "atr.kpis_v7.atr.median_ratio",
        {"risk": {"kpis_v7": {"atr": {"median_ratio": 1.1}}}},
        "risk.atr_ratio",
        1.1,
    ),
    (
        "atr.zero-is-a-value",
        {"risk": {"atr": {"median_ratio": 0.0}, "atr_ratio": 1.0}},
        "risk.atr_ratio",
        0.0,
    ),
    (
        "regime.atr.atr_regime",
        {"risk": {"atr": {"atr_regime": "hot"}, "atr_regime": "quiet"}},
        "risk.atr_regime",
        "hot",
    ),
    ("regime.atr_regime", {"risk": {"atr_regime": "quiet"}}, "risk.atr_regime", "quiet"),
    (
        "regime.kpis_v7.atr.atr_regime",
        {"risk": {"kpis_v7": {"atr": {"atr_regime": "panic"}, "atr_regime": "quiet"}}},
        "risk.atr_regime",
        "panic",
    ),
    (
        "regime.kpis_v7.atr_regime",
        {"risk": {"kpis_v7": {"atr_regime": "quiet"}}},
        "risk.atr_regime",
        "quiet",
    ),
    ("regime.legacy-copy", {"risk": {"atr_regime": "quiet"}}, "atr_regime", "quiet"),
    # --- router_stats block: maker | fallback | slippage variants
    *[
        (
            f"router.maker.{key}",
            {"risk": {"router_stats": {key: 0.4}}},
            "router.maker_fill_rate",
            0.4,
        )
        for key in (
            "maker_fill_rate",
            "maker_fill_ratio",
            "maker_fill_share",
            "maker_fill",
            "maker_ratio",
            "maker_rate",
            "maker_reliability",
        )
    ],
    (
        "router.maker.order",
        {"risk": {"router_stats": {"maker_rate": 0.9, "maker_fill_ratio": 0.4}}},
        "router.maker_fill_rate",
        0.4,
    ),
    (
        "router.maker.zero-is-a-value",
        {"risk": {"router_stats": {"maker_fill_rate": 0.0, "maker_fill_ratio": 0.4}}},
        "router.maker_fill_rate",
        0.0,
    ),
    *[
        (
            f"router.fallback.{key}",
            {"risk": {"router_stats": {key: 0.3}}},
            "router.fallback_ratio",
            0.3,
        )
        for key in ("fallback_ratio", "fallback_rate", "fallback")
    ],
    *[
        (f"router.q25.{key}", {"risk": {"router_stats": {key: 0.5}}}, "router.slip_q25_bps", 0.5)
        for key in ("slip_q25_bps", "slip_q25", "slippage_p25")
    ],
    *[
        (f"router.q50.{key}", {"risk": {"router_stats": {key: 1.5}}}, "router.slip_q50_bps", 1.5)
        for key in ("slip_q50_bps", "slip_q50", "slippage_p50", "slippage_bps", "avg_slippage_bps")
    ],
    *[
        (f"router.q75.{key}", {"risk": {"router_stats": {key: 3.0}}}, "router.slip_q75_bps", 3.0)
        for key in ("slip_q75_bps", "slip_q75", "slippage_p75")
    ],
    (
        "router.source.router_stats",
        {"risk": {"router_stats": {"fallback_ratio": 0.3}}},
        "router.source",
        "risk_snapshot.router_stats",
    ),
    (
        "router.source.kpis_v7",
        {"risk": {"kpis_v7": {"router_stats": {"fallback_ratio": 0.3}}}},
        "router.source",
        "risk_snapshot.kpis_v7.router_stats",
    ),
    (
        "router.all-null-block-does-not-hide",
        {
            "risk": {
                "router_stats": {"maker_fill_ratio": None, "fallback_ratio": None},
                "kpis_v7": {"router_stats": {"fallback_ratio": 0.3}},
            }
        },
        "router.fallback_ratio",
        0.3,
    ),
    (
        "router.empty-block-does-not-hide",
        {"risk": {"router_stats": {}}, "router": {"symbols": [{"symbol": "X", "fallback": 0.3}]}},
        "router.source",
        "router_health",
    ),
    (
        "router.quality-that-is-no-label-does-not-hide",
        {
            "risk": {"router_stats": {"quality": "x" * 65}},
            "router": {"symbols": [{"symbol": "X", "fallback": 0.3}]},
        },
        "router.fallback_ratio",
        0.3,
    ),
    (
        "router.health.value-less-shape-does-not-hide",
        {
            "router": {
                "symbols": [{"symbol": "X"}],
                "per_symbol": [{"symbol": "X", "maker_fill_rate": 0.5}],
            }
        },
        "router.maker_fill_rate",
        0.5,
    ),
    (
        "router.block-symbols_used-null",
        {"risk": {"router_stats": {"fallback_ratio": 0.3}}},
        "router.symbols_used",
        None,
    ),
    (
        "router.block-wins-over-router_health",
        {
            "risk": {"router_stats": {"fallback_ratio": 0.3}},
            "router": {"symbols": [{"symbol": "X", "fallback_rate": 0.9}]},
        },
        "router.fallback_ratio",
        0.3,
    ),
    (
        "router.block-missing-field-not-filled-from-health",
        {
            "risk": {"router_stats": {"fallback_ratio": 0.3}},
            "router": {"symbols": [{"symbol": "X", "maker_fill_rate": 0.9}]},
        },
        "router.maker_fill_rate",
        None,
    ),
    # --- router_health per-symbol containers (first non-empty), means, symbols_used
    (
        "router.health.symbols-list",
        {
            "router": {
                "symbols": [
                    {"symbol": "A", "maker_fill_rate": 0.6},
                    {"symbol": "B", "maker_fill_rate": 0.4},
                ]
            }
        },
        "router.maker_fill_rate",
        0.5,
    ),
    (
        "router.health.per_symbol-list",
        {
            "router": {
                "per_symbol": [
                    {"symbol": "A", "fallback_rate": 0.2},
                    {"symbol": "B", "fallback_rate": 0.4},
                ]
            }
        },
        "router.fallback_ratio",
        0.30000000000000004,
    ),
    (
        "router.health.router_health.per_symbol-dict",
        {
            "router": {
                "router_health": {
                    "per_symbol": {"A": {"avg_slippage_bps": 1.0}, "B": {"avg_slippage_bps": 2.0}}
                }
            }
        },
        "router.slip_q50_bps",
        1.5,
    ),
    (
        "router.health.symbol_stats-dict",
        {
            "router": {
                "symbol_stats": {"A": {"maker_reliability": 0.8}, "B": {"maker_reliability": 0.6}}
            }
        },
        "router.maker_fill_rate",
        0.7,
    ),
    (
        "router.health.first-non-empty-container",
        {
            "router": {
                "symbols": [],
                "per_symbol": [{"symbol": "A", "slippage_p50": 2.0}],
                "symbol_stats": {"A": {"avg_slippage_bps": 9.0}},
            }
        },
        "router.slip_q50_bps",
        2.0,
    ),
    (
        "router.health.mean-skips-missing",
        {
            "router": {
                "symbols": [
                    {"symbol": "A", "slippage_p50": 1.0},
                    {"symbol": "B", "slippage_p50": None},
                    {"symbol": "C", "slippage_p50": 3.0},
                ]
            }
        },
        "router.slip_q50_bps",
        2.0,
    ),
    (
        "router.health.mean-counts-zero",
        {
            "router": {
                "symbols": [
                    {"symbol": "A", "maker_fill_rate": 0.0},
                    {"symbol": "B", "maker_fill_rate": 0.5},
                ]
            }
        },
        "router.maker_fill_rate",
        0.25,
    ),
    (
        "router.health.symbols_used",
        {
            "router": {
                "symbols": [
                    {"symbol": "A", "slippage_p50": 1.0},
                    {"symbol": "B", "slippage_p50": None, "quality": "ok"},
                    {"symbol": "C", "fallback_rate": 0.1},
                ]
            }
        },
        "router.symbols_used",
        2,
    ),
    (
        "router.health.source",
        {"router": {"symbols": [{"symbol": "A", "slippage_p50": 1.0}]}},
        "router.source",
        "router_health",
    ),
    ("router.no-data-source-null", {"router": {"symbols": []}}, "router.source", None),
    # --- router quality: a label, never a number, never "good" for no data
    (
        "quality.block.quality",
        {"risk": {"router_stats": {"quality": "ok", "slip_q50": 1.0}}},
        "router.quality",
        "ok",
    ),
    (
        "quality.block.policy_quality",
        {"risk": {"router_stats": {"policy_quality": "degraded", "slip_q50": 1.0}}},
        "router.quality",
        "degraded",
    ),
    (
        "quality.kpis_v7.router_quality",
        {
            "risk": {"kpis_v7": {"router_quality": "poor"}},
            "router": {"quality": "good", "summary": {"quality_counts": {"broken": 1}}},
        },
        "router.quality",
        "poor",
    ),
    (
        "quality.router_health.quality",
        {"router": {"quality": "ok", "summary": {"quality_counts": {"broken": 1}}}},
        "router.quality",
        "ok",
    ),
    (
        "quality.worst-count",
        {
            "router": {
                "summary": {"quality_counts": {"good": 5, "ok": 2, "degraded": 1, "broken": 0}}
            }
        },
        "router.quality",
        "degraded",
    ),
    (
        "quality.worst-count-broken",
        {"router": {"summary": {"quality_counts": {"good": 5, "broken": 1, "poor": 3}}}},
        "router.quality",
        "broken",
    ),
    (
        "quality.worst-count-poor-over-ok",
        {"router": {"summary": {"quality_counts": {"ok": 3, "poor": 1}}}},
        "router.quality",
        "poor",
    ),
    (
        "quality.all-zero-counts-null",
        {
            "router": {
                "summary": {"quality_counts": {"good": 0, "ok": 0, "degraded": 0, "broken": 0}}
            }
        },
        "router.quality",
        None,
    ),
    (
        "quality.numeric-score-is-not-a-label",
        {"router": {"quality": 0.82, "router_health_score": 0.7, "quality_score": 0.8}},
        "router.quality",
        None,
    ),
    ("quality.legacy-copy", {"router": {"quality": "ok"}}, "router_quality", "ok"),
    # --- fees: all four from the first source that exists
    (
        "fees.risk.fee_pnl",
        {
            "risk": {
                "fee_pnl": {"fee_pnl_ratio": 0.2, "fees": 1.0, "pnl": 5.0, "window_days": 7},
                "fee_pnl_ratio": 0.9,
            }
        },
        "fees",
        {"fee_pnl_ratio": 0.2, "fees_usd": 1.0, "pnl_usd": 5.0, "window_days": 7.0},
    ),
    (
        "fees.kpis_v7.fee_pnl",
        {
            "risk": {
                "kpis_v7": {
                    "fee_pnl": {"fee_pnl_ratio": 0.25, "fees": 1.0, "pnl": 4.0, "window_days": 3}
                }
            }
        },
        "fees",
        {"fee_pnl_ratio": 0.25, "fees_usd": 1.0, "pnl_usd": 4.0, "window_days": 3.0},
    ),
    (
        "fees.risk-top-level",
        {
            "risk": {
                "fee_pnl_ratio": 0.3,
                "fees": 1.5,
                "pnl": 5.0,
                "kpis_v7": {"fee_pnl_ratio": 0.9, "fees": 9.0, "pnl": 10.0},
            }
        },
        "fees",
        {"fee_pnl_ratio": 0.3, "fees_usd": 1.5, "pnl_usd": 5.0, "window_days": None},
    ),
    (
        "fees.kpis_v7-top-level",
        {"risk": {"kpis_v7": {"fee_pnl_ratio": 0.25, "fees": 1.0, "pnl": 4.0}}},
        "fees",
        {"fee_pnl_ratio": 0.25, "fees_usd": 1.0, "pnl_usd": 4.0, "window_days": None},
    ),
    (
        "fees.one-source-no-mixing",
        {
            "risk": {
                "fee_pnl": {"fee_pnl_ratio": None, "fees": 0.0, "pnl": 0.0},
                "fee_pnl_ratio": 0.5,
            }
        },
        "fees",
        {"fee_pnl_ratio": None, "fees_usd": 0.0, "pnl_usd": 0.0, "window_days": None},
    ),
    ("fees.legacy-copy", {"risk": {"fee_pnl": {"fee_pnl_ratio": 0.2}}}, "fee_pnl_ratio", 0.2),
    # --- usd_zar: fx.usd_zar | usd_zar | fx_usd_zar | usd_to_zar (nav_state, nav), FX cache
    *[
        (f"fx.nav_state.{key}", {"nav_state": {"nav": 100.0, **body}}, "aum.usd_zar", 18.5)
        for key, body in (
            ("fx.usd_zar", {"fx": {"usd_zar": 18.5}}),
            ("usd_zar", {"usd_zar": 18.5}),
            ("fx_usd_zar", {"fx_usd_zar": 18.5}),
            ("usd_to_zar", {"usd_to_zar": 18.5}),
        )
    ],
    (
        "fx.nav_state-source",
        {"nav_state": {"nav": 1.0, "usd_zar": 18.5}, "fx": {"usd_zar": 17}},
        "aum.usd_zar_source",
        "nav_state",
    ),
    (
        "fx.nav-source",
        {"nav": {"nav": 1.0, "fx": {"usd_zar": 18.5}}, "fx": {"usd_zar": 17.0}},
        "aum",
        {"usd_zar": 18.5, "usd_zar_source": "nav"},
    ),
    (
        "fx.cache-source",
        {"fx": {"usd_zar": 17.34}},
        "aum",
        {"usd_zar": 17.34, "usd_zar_source": "fx_cache"},
    ),
    (
        "fx.no-default",
        {"nav_state": {"nav": 100.0}},
        "aum",
        {"usd_zar": None, "usd_zar_source": None},
    ),
    ("fx.nav_zar", {"nav_state": {"nav": 100.0}, "fx": {"usd_zar": 17.34}}, "nav.nav_zar", 1734.0),
]


@pytest.mark.parametrize(
    ("docs", "path", "expected"), [r[1:] for r in KPI_ROWS], ids=[r[0] for r in KPI_ROWS]
)
def test_kpi_variant(docs: dict[str, Any], path: str, expected: Any) -> None:
    """The variant feeds the output field with the value the contract chain gives."""
    out = kpi(path, **docs)
    if isinstance(expected, dict) and path == "aum":
        out = {k: out[k] for k in expected}
    if isinstance(expected, float):
        assert type(out) is float
        assert out == pytest.approx(expected, rel=1e-12, abs=1e-12)
    else:
        assert out == expected


def test_row_ids_are_unique() -> None:
    ids = [r[0] for r in KPI_ROWS] + [r[0] for r in AUM_ROWS] + [r[0] for r in POSITION_ROWS]
    assert len(ids) == len(set(ids))


# ------------------------------------------------------------------------------------ AUM
HOLDING = {"qty": 2.0, "avg_cost": 100.0}

# (id, docs, expected (label -> usd) of the non-futures slices, expected unpriced)
AUM_ROWS: list[tuple[str, dict[str, Any], dict[str, float], list[str]]] = [
    (
        "aum.offexchange.usd_value",
        {
            "nav": {
                "nav": 1000.0,
                "aum": {
                    "futures": 1000.0,
                    "offexchange": {"BTC": {**HOLDING, "usd_value": 250.0, "mark": 120.0}},
                },
            }
        },
        {"BTC": 250.0},
        [],
    ),
    (
        "aum.price.mark",
        {
            "nav": {
                "nav": 1000.0,
                "aum": {"offexchange": {"BTC": {**HOLDING, "mark": 120.0}}},
                "nav_detail": {"conversions": {"BTC": {"price": 130.0}}},
            },
            "fx": {"prices": {"BTC": 140.0}},
        },
        {"BTC": 240.0},
        [],
    ),
    (
        "aum.price.conversions",
        {
            "nav": {
                "nav": 1000.0,
                "aum": {"offexchange": {"BTC": {**HOLDING, "mark": None}}},
                "nav_detail": {"conversions": {"BTC": {"price": 130.0}}},
            },
            "fx": {"prices": {"BTC": 140.0}},
        },
        {"BTC": 260.0},
        [],
    ),
    (
        "aum.price.cache",
        {
            "nav": {"nav": 1000.0, "aum": {"offexchange": {"BTC": dict(HOLDING)}}},
            "fx": {"prices": {"BTC": 140.0}},
        },
        {"BTC": 280.0},
        [],
    ),
    (
        "aum.price.avg_cost",
        {"nav": {"nav": 1000.0, "aum": {"offexchange": {"BTC": dict(HOLDING)}}}},
        {"BTC": 200.0},
        [],
    ),
    (
        "aum.price.none-unpriced",
        {"nav": {"nav": 1000.0, "aum": {"offexchange": {"BTC": {"qty": 2.0, "avg_cost": None}}}}},
        {},
        ["BTC"],
    ),
    (
        "aum.empty-offexchange-falls-to-holdings",
        {
            "nav": {"nav": 1000.0, "aum": {"futures": 1000.0, "offexchange": {}}},
            "holdings": {"XAUT": {"qty": 0.5, "avg_cost": 3000.0}},
            "fx": {"prices": {"XAUT": 4000.0}},
        },
        {"XAUT": 2000.0},
        [],
    ),
    (
        "aum.value-less-offexchange-falls-to-holdings",
        {
            "nav": {"nav": 1000.0, "aum": {"futures": 1000.0, "offexchange": {"BTC": {}}}},
            "holdings": {"XAUT": {"qty": 0.5, "avg_cost": 3000.0}},
        },
        {"XAUT": 1500.0},
        [],
    ),
    (
        "aum.value-less-assets-fall-to-holdings",
        {
            "nav": {"nav": 1000.0, "aum": {"futures": 1000.0, "assets": [{"asset": "BTC"}]}},
            "holdings": {"XAUT": {"qty": 0.5, "avg_cost": 3000.0}},
        },
        {"XAUT": 1500.0},
        [],
    ),
    (
        "aum.value-less-block-falls-to-the-next",
        {
            "nav_state": {"nav": 1.0, "aum": {"assets": [{"asset": "BTC"}]}},
            "nav": {"nav": 1.0, "aum": {"assets": [{"asset": "ETH", "usd": 7.0}]}},
        },
        {"ETH": 7.0},
        [],
    ),
    (
        "aum.holdings-without-a-holding-fall-to-breakdown",
        {
            "nav": {"nav": 100.0, "nav_detail": {"asset_breakdown": {"BTC": 40.0}}},
            "holdings": {"_meta": {"note": "x"}},
        },
        {"BTC": 40.0},
        [],
    ),
    (
        "aum.unpriceable-holdings-fall-to-breakdown-and-are-named",
        {
            "nav": {"nav": 100.0, "nav_detail": {"asset_breakdown": {"BTC": 40.0}}},
            "holdings": {"DOGE": {"qty": 10.0}},
        },
        {"BTC": 40.0},
        ["DOGE"],
    ),
    (
        "aum.holdings-without-aum-block",
        {"nav_state": {"nav": 1000.0}, "holdings": {"USDC": {"qty": 10.0, "avg_cost": 1}}},
        {"USDC": 10.0},
        [],
    ),
    (
        "aum.nav_state-block-first",
        {
            "nav_state": {"nav": 1.0, "aum": {"assets": [{"asset": "BTC", "usd": 5.0}]}},
            "nav": {"nav": 1.0, "aum": {"assets": [{"asset": "ETH", "usd": 7.0}]}},
        },
        {"BTC": 5.0},
        [],
    ),
    (
        "aum.nav_detail.aum",
        {"nav": {"nav": 1.0, "nav_detail": {"aum": {"assets": [{"label": "ETH", "usd": 7.0}]}}}},
        {"ETH": 7.0},
        [],
    ),
    (
        "aum.assets.label-and-usd_value",
        {"nav_state": {"nav": 1.0, "aum": {"assets": [{"label": "XAUT", "usd_value": 2.5}]}}},
        {"XAUT": 2.5},
        [],
    ),
    (
        "aum.zero-usd-dropped",
        {
            "nav_state": {
                "nav": 1.0,
                "aum": {"assets": [{"asset": "ETH", "usd": 0.0}, {"asset": "BTC", "usd": 3.0}]},
            }
        },
        {"BTC": 3.0},
        [],
    ),
    (
        "aum.holding-mark-zero-is-no-price",
        {
            "nav_state": {"nav": 1.0},
            "holdings": {"BTC": {"qty": 1.0, "mark": 0.0, "avg_cost": 5.0}},
            "fx": {"prices": {"BTC": 7.0}},
        },
        {"BTC": 7.0},
        [],
    ),
    (
        "aum.holding-symbol-and-qty-string",
        {
            "nav_state": {"nav": 1.0},
            "holdings": {"btc": {"qty": "0.5", "avg_cost": 100}},
            "fx": {"prices": {"BTC": 200.0}},
        },
        {"BTC": 100.0},
        [],
    ),
    (
        "aum.breakdown-outside-wallet",
        {"nav": {"nav": 100.0, "nav_detail": {"asset_breakdown": {"BTC": 150.0}}}},
        {"BTC": 150.0},
        [],
    ),
]


@pytest.mark.parametrize(
    ("docs", "others", "unpriced"), [r[1:] for r in AUM_ROWS], ids=[r[0] for r in AUM_ROWS]
)
def test_aum_variant(docs: dict[str, Any], others: dict[str, float], unpriced: list[str]) -> None:
    """Off-exchange assets are valued through the contract's source and price chains."""
    aum = build(**docs).kpis["aum"]
    assert aum["slices"][0]["label"] == "Futures"
    got = {s["label"]: s["usd"] for s in aum["slices"][1:]}
    assert got == pytest.approx(others)
    assert aum["unpriced"] == unpriced
    assert aum["total_usd"] == pytest.approx(sum(s["usd"] for s in aum["slices"]))


def test_other_slices_sort_by_usd_descending_then_label() -> None:
    """Futures first; then by USD, largest first; equal USD by label."""
    assets = [
        {"asset": "ZZZ", "usd": 5.0},
        {"asset": "AAA", "usd": 5.0},
        {"asset": "MMM", "usd": 7.0},
    ]
    slices = build(nav_state={"nav": 10.0, "aum": {"assets": assets}}).kpis["aum"]["slices"]
    assert [s["label"] for s in slices] == ["Futures", "MMM", "AAA", "ZZZ"]


@pytest.mark.parametrize(("age", "status", "fresh"), [(90.0, "ok", True), (90.5, "stale", False)])
def test_nav_stale_and_fresh_at_the_90_second_limit(age: float, status: str, fresh: bool) -> None:
    """Stale is an age above the limit; fresh is an age at or below it."""
    kpis = build(nav_state={"nav": 1.0, "updated_at": NOW - age}).kpis
    assert kpis["sources"]["nav_state"]["status"] == status
    assert kpis["nav"]["fresh"] is fresh


def test_breakdown_inside_the_wallet_reduces_futures() -> None:
    """asset_breakdown summing to at most the futures value is carved out of Futures."""
    aum = build(
        nav={"nav": 100.0, "nav_detail": {"asset_breakdown": {"USDT": 60.0, "BTC": 30.0}}}
    ).kpis["aum"]
    assert [(s["label"], s["usd"]) for s in aum["slices"]] == [
        ("Futures", 10.0),
        ("USDT", 60.0),
        ("BTC", 30.0),
    ]
    assert aum["total_usd"] == 100.0


def test_stated_aum_total_is_published_not_reported_as_an_error() -> None:
    """aum.total off the slices (the live writer states the wallet alone): published, no error."""
    out = build(nav={"nav": 100.0, "aum": {"futures": 100.0, "total": 150.0}}).kpis
    assert out["aum"]["stated_total_usd"] == 150.0
    assert out["aum"]["total_usd"] == 100.0
    assert out["sources"]["nav"] == {"status": "ok", "age_s": None, "error": None}


# ------------------------------------------------------------------------------------ symbols
SYMBOL_ROWS: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    (
        "symbols.flat-list",
        {
            "symbols": [
                {
                    "symbol": "btcusdt",
                    "atr_ratio": 1.1,
                    "atr_regime": "normal",
                    "dd_state": "Normal",
                    "dd_today_pct": -0.5,
                }
            ]
        },
        {"atr_ratio": 1.1, "atr_regime": "normal", "dd_state": "normal", "dd_today_pct": -0.5},
    ),
    (
        "symbols.nested-health-entry",
        {
            "symbols": [
                {
                    "symbol": "BTCUSDT",
                    "risk": {"dd_today_pct": 0.0, "dd_state": "cautious"},
                    "vol": {"atr_ratio": 1.2, "atr_regime": "hot"},
                }
            ]
        },
        {"atr_ratio": 1.2, "atr_regime": "hot", "dd_state": "cautious", "dd_today_pct": 0.0},
    ),
    (
        "symbols.flat-before-nested",
        {"symbols": {"BTCUSDT": {"atr_ratio": 1.0, "vol": {"atr_ratio": 2.0}}}},
        {"atr_ratio": 1.0, "atr_regime": None, "dd_state": None, "dd_today_pct": None},
    ),
    (
        "symbols.atr.symbols-ratio",
        {"atr": {"symbols": [{"symbol": "BTCUSDT", "ratio": 0.8, "atr_regime": "normal"}]}},
        {"atr_ratio": 0.8, "atr_regime": "normal", "dd_state": None, "dd_today_pct": None},
    ),
    (
        "symbols.kpis_v7.atr.symbols",
        {"kpis_v7": {"atr": {"symbols": [{"symbol": "BTCUSDT", "atr_ratio": 0.9}]}}},
        {"atr_ratio": 0.9, "atr_regime": None, "dd_state": None, "dd_today_pct": None},
    ),
    (
        "symbols.kpis_v7.symbols-dict",
        {"kpis_v7": {"symbols": {"BTCUSDT": {"dd_state": "defensive", "dd_today_pct": -2.0}}}},
        {"atr_ratio": None, "atr_regime": None, "dd_state": "defensive", "dd_today_pct": -2.0},
    ),
    (
        "symbols.first-valid-across-sources",
        {
            "symbols": [
                {"symbol": "BTCUSDT", "vol": {"atr_ratio": None}, "risk": {"dd_state": "normal"}}
            ],
            "atr": {"symbols": [{"symbol": "BTCUSDT", "atr_ratio": 1.3}]},
            "kpis_v7": {"symbols": {"BTCUSDT": {"atr_ratio": 9.0, "atr_regime": "panic"}}},
        },
        {"atr_ratio": 1.3, "atr_regime": "panic", "dd_state": "normal", "dd_today_pct": None},
    ),
]


@pytest.mark.parametrize(
    ("risk", "expected"), [r[1:] for r in SYMBOL_ROWS], ids=[r[0] for r in SYMBOL_ROWS]
)
def test_symbol_variant(risk: dict[str, Any], expected: dict[str, Any]) -> None:
    """Per-symbol fields come flat first, then nested, from the four sources in order."""
    assert build(risk=risk).kpis["symbols"] == {"BTCUSDT": {**expected, "cvar_pct": None}}


def test_symbols_are_capped_with_open_positions_first() -> None:
    """Symbols with an open position are kept first, the rest by name, up to the cap."""
    risk = {"symbols": {f"S{i:03d}USDT": {"atr_ratio": 1.0} for i in range(100)}}
    positions = {"rows": [{"symbol": "S099USDT", "qty": 1.0, "markPrice": 1.0}]}
    out = build(risk=risk, positions=positions).kpis["symbols"]
    assert len(out) == 64
    assert "S099USDT" in out
    assert sorted(out) == sorted(["S099USDT"] + [f"S{i:03d}USDT" for i in range(63)])


# ------------------------------------------------------------------------------------ positions
BASE = {"symbol": "BTCUSDT"}

# (id, positions document, field of the first published row, expected)
POSITION_ROWS: list[tuple[str, Any, str, Any]] = [
    # containers
    ("pos.container.rows", {"rows": [{**BASE, "qty": 1.0}]}, "symbol", "BTCUSDT"),
    ("pos.container.items", {"items": [{**BASE, "qty": 1.0}]}, "symbol", "BTCUSDT"),
    ("pos.container.positions", {"positions": [{**BASE, "qty": 1.0}]}, "symbol", "BTCUSDT"),
    ("pos.container.bare-list", [{**BASE, "qty": 1.0}], "symbol", "BTCUSDT"),
    # qty
    *[
        (f"pos.qty.{key}", {"rows": [{**BASE, key: -2.5}]}, "qty", -2.5)
        for key in ("qty", "positionAmt", "size", "pos_qty")
    ],
    ("pos.qty.numeric-string", {"rows": [{**BASE, "positionAmt": "-0.010"}]}, "qty", -0.01),
    # side
    *[
        (f"pos.side.{key}", {"rows": [{**BASE, "qty": 3.0, key: "SHORT"}]}, "side", "SHORT")
        for key in ("side", "positionSide", "direction")
    ],
    (
        "pos.side.short-signs-positive-qty",
        {"rows": [{**BASE, "qty": 3.0, "side": "SHORT"}]},
        "qty",
        -3.0,
    ),
    ("pos.side.long-lower-case", {"rows": [{**BASE, "qty": 3.0, "side": "long"}]}, "side", "LONG"),
    ("pos.side.short-lower-case", {"rows": [{**BASE, "qty": 3.0, "side": "short"}]}, "qty", -3.0),
    (
        "pos.side.both-uses-sign",
        {"rows": [{**BASE, "qty": -3.0, "positionSide": "BOTH"}]},
        "side",
        "SHORT",
    ),
    ("pos.side.absent-uses-sign", {"rows": [{**BASE, "qty": 3.0}]}, "side", "LONG"),
    # entry / mark
    *[
        (f"pos.entry.{key}", {"rows": [{**BASE, "qty": 1.0, key: 50.5}]}, "entry_price", 50.5)
        for key in ("entry_price", "entryPrice", "entry", "entry_px")
    ],
    *[
        (f"pos.mark.{key}", {"rows": [{**BASE, "qty": 1.0, key: 60.5}]}, "mark_price", 60.5)
        for key in ("mark_price", "markPrice", "mark", "latest_price", "price")
    ],
    (
        "pos.mark.zero-on-open-row-is-missing",
        {"rows": [{**BASE, "qty": 2.0, "markPrice": 0.0, "entryPrice": 50.0}]},
        "mark_price",
        None,
    ),
    # notional
    (
        "pos.notional.qty-times-mark",
        {"rows": [{**BASE, "qty": -2.0, "entryPrice": 50.0, "markPrice": 60.0, "notional": 1.0}]},
        "notional",
        120.0,
    ),
    (
        "pos.notional.entry-when-no-mark",
        {"rows": [{**BASE, "qty": -2.0, "entryPrice": 50.0}]},
        "notional",
        100.0,
    ),
    *[
        (
            f"pos.notional.stored.{key}",
            {"rows": [{**BASE, "qty": 2.0, key: 77.0}]},
            "notional",
            77.0,
        )
        for key in ("notional", "positionValue", "notional_usd", "gross_usd")
    ],
    (
        "pos.notional.stored-negative-made-absolute",
        {"rows": [{**BASE, "qty": -2.0, "notional": -77.0}]},
        "notional",
        77.0,
    ),
    # pnl
    *[
        (
            f"pos.pnl.{key}",
            {"rows": [{**BASE, "qty": 1.0, "mark": 60.0, "entry": 50.0, key: 4.5}]},
            "pnl",
            4.5,
        )
        for key in (
            "unrealized_pnl",
            "unrealized",
            "unRealizedProfit",
            "unrealizedProfit",
            "uPnl",
            "pnl",
            "pnl_usd",
        )
    ],
    (
        "pos.pnl.zero-is-a-value",
        {"rows": [{**BASE, "qty": 1.0, "mark": 60.0, "entry": 50.0, "unrealized": 0.0}]},
        "pnl",
        0.0,
    ),
    (
        "pos.pnl.computed-long",
        {"rows": [{**BASE, "qty": 2.0, "mark": 60.0, "entry": 50.0}]},
        "pnl",
        20.0,
    ),
    (
        "pos.pnl.computed-short",
        {"rows": [{**BASE, "qty": 2.0, "side": "SHORT", "mark": 60.0, "entry": 50.0}]},
        "pnl",
        -20.0,
    ),
    ("pos.pnl.unknown", {"rows": [{**BASE, "qty": 2.0, "entry": 50.0}]}, "pnl", None),
    ("pos.leverage", {"rows": [{**BASE, "qty": 2.0, "leverage": 20}]}, "leverage", 20.0),
    ("pos.symbol.upper-cased", {"rows": [{"symbol": "ethusdt", "qty": 2.0}]}, "symbol", "ETHUSDT"),
    # formatting
    (
        "pos.fmt.notional",
        {"rows": [{**BASE, "qty": 1.0, "mark": 1234.5}]},
        "notional_fmt",
        "1,234.50",
    ),
    (
        "pos.fmt.pnl-negative",
        {"rows": [{**BASE, "qty": 1.0, "unrealized": -12.0}]},
        "pnl_fmt",
        "-12.00",
    ),
    ("pos.fmt.pnl-missing", {"rows": [{**BASE, "qty": 1.0}]}, "pnl_fmt", "–"),
    (
        "pos.fmt.negative-zero",
        {"rows": [{**BASE, "qty": 1.0, "unrealized": -0.001}]},
        "pnl_fmt",
        "0.00",
    ),
]


@pytest.mark.parametrize(
    ("doc", "field", "expected"), [r[1:] for r in POSITION_ROWS], ids=[r[0] for r in POSITION_ROWS]
)
def test_position_variant(doc: Any, field: str, expected: Any) -> None:
    """Position containers and field names of every era normalise to the published row."""
    rows = build(positions=doc).positions["positions"]
    assert len(rows) == 1
    value = rows[0][field]
    if isinstance(expected, float):
        assert type(value) is float
        assert value == pytest.approx(expected, rel=1e-12)
    else:
        assert value == expected


@pytest.mark.parametrize(
    "dropped",
    [
        {"symbol": "BTCUSDT", "qty": 0.0, "positionSide": "LONG"},
        {"symbol": "BTCUSDT", "qty": 1e-13, "positionSide": "SHORT"},
        {"symbol": "BTCUSDT", "qty": None},
        {"qty": 5.0},
        {"symbol": "", "qty": 5.0},
    ],
    ids=["zero-qty", "dust-qty", "null-qty", "no-symbol", "empty-symbol"],
)
def test_position_rows_dropped(dropped: dict[str, Any]) -> None:
    """Hedge-mode empty rows and rows without a symbol never reach positions_v7."""
    out = build(positions={"rows": [dropped, {"symbol": "ETHUSDT", "qty": 1.0}]}).positions
    assert [r["symbol"] for r in out["positions"]] == ["ETHUSDT"]
    assert out["totals"]["count"] == 1


# ------------------------------------------------------------------------------------ KPI shapes
SHAPE_A = {
    "ts": 1700000000.0,
    "atr_regime": "normal",
    "atr": {
        "atr_regime": "normal",
        "median_ratio": 1.1,
        "symbols": [
            {
                "symbol": "BTCUSDT",
                "atr_now": 0.6,
                "atr_med": 0.55,
                "atr_ratio": 1.09,
                "atr_regime": "normal",
            }
        ],
    },
    "dd_state": "cautious",
    "drawdown": {
        "dd_pct": 0.5,
        "dd_abs": 5.0,
        "peak": 1000.0,
        "nav": 995.0,
        "usable": True,
        "drawdown": {"pct": 0.5, "abs": 5.0, "peak_nav": 1000.0, "nav": 995.0},
        "daily_loss": {"pct": 0.2, "daily_peak": 997.0, "nav": 995.0},
    },
    "fee_pnl_ratio": 0.25,
    "fees": 1.0,
    "pnl": 4.0,
    "fee_pnl": {"fee_pnl_ratio": 0.25, "fees": 1.0, "pnl": 4.0, "window_days": 3},
    "router_quality": "ok",
    "router_stats": {
        "maker_fill_ratio": 0.4,
        "fallback_ratio": 0.3,
        "slip_q25": 0.5,
        "slip_q50": 1.5,
        "slip_q75": 3.0,
        "slip_q95": 7.0,
    },
}
SHAPE_B = {
    "ts": "2023-11-14T22:13:20+00:00",
    "nav": {
        "nav_total": 995.0,
        "nav_age_s": 12.0,
        "age_s": 12.0,
        "updated_at": 1699999988.0,
        "sources_ok": None,
        "aum_total": None,
    },
    "risk": {
        "dd_state": "normal",
        "atr_regime": "normal",
        "fee_pnl_ratio": 0.25,
        "drawdown_pct": None,
        "atr_ratio": 1.1,
    },
    "router": {
        "policy_quality": "ok",
        "maker_first": True,
        "maker_fill_share": 0.4,
        "avg_slippage_bps": 1.5,
        "reject_rate": None,
        "maker_fill_rate": 0.4,
        "fallback_ratio": 0.3,
        "slip_q25_bps": None,
        "slip_q50_bps": 1.5,
        "slip_q75_bps": None,
    },
    "performance": {"expectancy": None, "sharpe_state": "neutral"},
    "dd_state": "normal",
    "atr_regime": "normal",
    "fee_pnl_ratio": 0.25,
    "router_quality": "ok",
    "aum_total": None,
    "fx": {"usd_zar": 18.1, "ts": "2023-11-14T22:13:20+00:00"},
    "router_stats": {
        "maker_fill_rate": 0.4,
        "fallback_ratio": 0.3,
        "slip_q25_bps": None,
        "slip_q50_bps": 1.5,
        "slip_q75_bps": None,
        "quality": "ok",
    },
    "drawdown": {"dd_pct": None},
    "atr": {
        "atr_ratio": 1.1,
        "atr_regime": "normal",
        "symbols": [
            {
                "symbol": "BTCUSDT",
                "dd_state": "normal",
                "dd_today_pct": 0.0,
                "atr_ratio": 1.09,
                "atr_regime": "normal",
            }
        ],
    },
    "symbols": {
        "BTCUSDT": {
            "symbol": "BTCUSDT",
            "dd_state": "normal",
            "dd_today_pct": 0.0,
            "atr_ratio": 1.09,
            "atr_regime": "normal",
        }
    },
}
SHAPE_C = {
    "updated_at": "2025-12-09T12:00:00+00:00",
    "portfolio": {"nav": 995.0, "dd_pct": 0.012, "var_nav_pct": 0.02, "cvar_nav_pct": 0.03},
    "per_symbol": {"BTCUSDT": {"pnl": 4.0, "pnl_pct": 0.004, "exposure_nav_pct": 0.5}},
}
# risk fields no risk snapshot supplies: exposure needs positions, VaR needs risk_advanced
NO_EXPOSURE_NO_VAR = dict.fromkeys(
    (
        "gross_exposure_pct",
        "net_exposure_pct",
        "var_pct",
        "var_usd",
        "var_limit_pct",
        "var_confidence",
        "cvar_pct",
    )
)
NULL_ROUTER = {
    "maker_fill_rate": None,
    "fallback_ratio": None,
    "slip_q25_bps": None,
    "slip_q50_bps": None,
    "slip_q75_bps": None,
}

SHAPES = {
    # flat shape A: every chain that ends in risk.kpis_v7.* reads it
    "A-flat": (
        SHAPE_A,
        {
            "risk": {
                "drawdown_pct": 0.5,
                "drawdown_abs_usd": 5.0,
                "daily_loss_pct": 0.2,
                "dd_state": "cautious",
                "atr_ratio": 1.1,
                "atr_regime": "normal",
                **NO_EXPOSURE_NO_VAR,
            },
            "router": {
                "maker_fill_rate": 0.4,
                "fallback_ratio": 0.3,
                "slip_q25_bps": 0.5,
                "slip_q50_bps": 1.5,
                "slip_q75_bps": 3.0,
                "quality": "ok",
                "source": "risk_snapshot.kpis_v7.router_stats",
                "symbols_used": None,
                "symbols": {},
            },
            "fees": {"fee_pnl_ratio": 0.25, "fees_usd": 1.0, "pnl_usd": 4.0, "window_days": 3.0},
            "symbols": {
                "BTCUSDT": {
                    "atr_ratio": 1.09,
                    "atr_regime": "normal",
                    "dd_state": None,
                    "dd_today_pct": None,
                    "cvar_pct": None,
                }
            },
        },
    ),
    # nested shape B: its atr ratio sits at atr.atr_ratio / risk.atr_ratio, on no chain;
    # its fee_pnl_ratio is top level (no fees/pnl); drawdown.dd_pct is null
    "B-nested": (
        SHAPE_B,
        {
            "risk": {
                "drawdown_pct": None,
                "drawdown_abs_usd": None,
                "daily_loss_pct": None,
                "dd_state": "normal",
                "atr_ratio": None,
                "atr_regime": "normal",
                **NO_EXPOSURE_NO_VAR,
            },
            "router": {
                "maker_fill_rate": 0.4,
                "fallback_ratio": 0.3,
                "slip_q25_bps": None,
                "slip_q50_bps": 1.5,
                "slip_q75_bps": None,
                "quality": "ok",
                "source": "risk_snapshot.kpis_v7.router_stats",
                "symbols_used": None,
                "symbols": {},
            },
            "fees": {"fee_pnl_ratio": 0.25, "fees_usd": None, "pnl_usd": None, "window_days": None},
            "symbols": {
                "BTCUSDT": {
                    "atr_ratio": 1.09,
                    "atr_regime": "normal",
                    "dd_state": "normal",
                    "dd_today_pct": 0.0,
                    "cvar_pct": None,
                }
            },
        },
    ),
    # contract shape C: nothing in it is on any chain (portfolio.dd_pct is not read)
    "C-contract": (
        SHAPE_C,
        {
            "risk": {
                "drawdown_pct": None,
                "drawdown_abs_usd": None,
                "daily_loss_pct": None,
                "dd_state": None,
                "atr_ratio": None,
                "atr_regime": None,
                **NO_EXPOSURE_NO_VAR,
            },
            "router": {
                **NULL_ROUTER,
                "quality": None,
                "source": None,
                "symbols_used": None,
                "symbols": {},
            },
            "fees": {"fee_pnl_ratio": None, "fees_usd": None, "pnl_usd": None, "window_days": None},
            "symbols": {},
        },
    ),
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_embedded_kpi_shape_is_read_through_the_chains(shape: str) -> None:
    """risk_snapshot.kpis_v7 in flat, nested or contract shape gives what the chains say."""
    payload, expected = SHAPES[shape]
    kpis = build(risk={"updated_ts": TS, "kpis_v7": payload}).kpis
    for block, want in expected.items():
        assert kpis[block] == want, block
    assert kpis["sources"]["risk"] == {"status": "ok", "age_s": 100.0, "error": None}


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_embedded_kpi_shape_never_overrides_the_snapshot(shape: str) -> None:
    """The snapshot's own values win over anything in its embedded kpis_v7."""
    payload, _ = SHAPES[shape]
    risk = {
        "drawdown": {"dd_pct": 2.5, "dd_abs": 1.5, "daily_loss": {"pct": 0.7}},
        "dd_state": {"dd_state": "defensive"},
        "atr": {"median_ratio": 0.8, "atr_regime": "quiet"},
        "router_stats": {"maker_fill_rate": 0.6, "quality": "good"},
        "fee_pnl": {"fee_pnl_ratio": 0.1, "fees": 1.0, "pnl": 10.0},
        "kpis_v7": payload,
    }
    kpis = build(risk=risk).kpis
    assert kpis["risk"] == {
        "drawdown_pct": 2.5,
        "drawdown_abs_usd": 1.5,
        "daily_loss_pct": 0.7,
        "dd_state": "defensive",
        "atr_ratio": 0.8,
        "atr_regime": "quiet",
        **NO_EXPOSURE_NO_VAR,
    }
    assert kpis["router"]["maker_fill_rate"] == 0.6
    assert kpis["router"]["quality"] == "good"
    assert kpis["router"]["source"] == "risk_snapshot.router_stats"
    assert kpis["fees"]["fee_pnl_ratio"] == 0.1


# ------------------------------------------------------------------------------------ rule 1 pins
# Cases where the code once disagreed with the contract text (D1-D3 in the team's discrepancy
# notes, fixed in 5b6b19e); each pins the contract's answer.


def test_offexchange_usd_value_zero_is_a_value() -> None:
    """Rule 1: an off-exchange usd_value of 0.0 is a value; a 0 USD slice is dropped."""
    nav = {
        "nav": 100.0,
        "aum": {
            "futures": 100.0,
            "offexchange": {"BTC": {"qty": 2.0, "usd_value": 0.0, "avg_cost": 50.0}},
        },
    }
    aum = build(nav=nav).kpis["aum"]
    assert [s["label"] for s in aum["slices"]] == ["Futures"]
    assert aum["total_usd"] == 100.0
    assert aum["unpriced"] == []


def test_stored_notional_zero_is_a_value() -> None:
    """Rules 1 and 11: with no price, a stored notional of 0.0 is published as 0.0."""
    row = build(positions={"items": [{"symbol": "X", "qty": 5.0, "notional": 0.0}]}).positions
    assert row["positions"][0]["notional"] == 0.0
    assert row["positions"][0]["notional_fmt"] == "0.00"


def test_futures_slice_is_aum_futures_else_nav() -> None:
    """Section 4 aum: the Futures slice is aum.futures, else nav_usd."""
    nav_state = {
        "nav": 100.0,
        "aum": {"assets": [{"asset": "Futures", "usd": 80.0}, {"asset": "BTC", "usd": 5.0}]},
    }
    slices = build(nav_state=nav_state).kpis["aum"]["slices"]
    assert [(s["label"], s["usd"]) for s in slices] == [("Futures", 100.0), ("BTC", 5.0)]
