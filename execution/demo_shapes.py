"""The documents a real executor writes, built from a demo `World`, in the shape of one era.

Pure functions: a world (and the era) in, JSON-ready dicts out. Shapes follow the real
system's files (docs/CONTRACT_RULES.md, executor file shapes):

- era "v7.1" (v7.1.0, Nov 2025): epoch timestamps; risk snapshot with the engine's
  `dd_state{dd_state, drawdown{...}}`; router health as per-symbol *lists* with maker/fallback
  ratios; positions.json rows in the exchange's camelCase.
- era "v7.6" (v7.6, Dec 2025 on): ISO `updated_ts` in nav.json and router_health.json; the
  risk writer's enrichment (`dd_frac`, `daily_loss_frac`, `portfolio_dd_pct`, a synthesised
  `dd_state{state, drawdown{dd_pct as a fraction}}`, `risk_mode`); router health in the
  "stats" shape (dict `router_health.per_symbol`, no maker/fallback ratios), so the router
  numbers travel in the risk snapshot's `router_stats`.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from execution.demo_market import (
    DD_CAUTIOUS_PCT,
    Position,
    RouterStats,
    World,
    atr_regime,
    policy_quality,
    router_quality,
)

ERAS = ("v7.1", "v7.6")
NAV_FRESHNESS_S = 90.0


def iso(ts: float) -> str:
    """Epoch seconds -> ISO-8601 UTC with an offset, as Python's isoformat() wrote it upstream."""
    return datetime.fromtimestamp(ts, UTC).isoformat()


def _check_era(era: str) -> None:
    if era not in ERAS:
        raise ValueError(f"era must be one of {', '.join(ERAS)}, got {era!r}")


def _r(x: float, digits: int = 8) -> float:
    return round(x, digits)


# --- NAV -------------------------------------------------------------------------------------


def offexchange_executor_view(
    w: World, holdings: Mapping[str, Mapping[str, Any]]
) -> dict[str, dict[str, Any]]:
    """The executor's own off-exchange block: priced at the futures mark, else avg_cost."""
    out: dict[str, dict[str, Any]] = {}
    for sym, h in holdings.items():
        if not isinstance(h, Mapping):
            continue
        qty = float(h.get("qty") or 0.0)
        avg_cost = h.get("avg_cost")
        mark = w.marks.get(f"{sym}USDT")
        price = mark if mark is not None else avg_cost
        out[sym] = {
            "qty": qty,
            "avg_cost": avg_cost,
            "mark": None if price is None else _r(float(price)),
            "usd_value": None if price is None else _r(qty * float(price)),
        }
    return out


def nav_doc(w: World, era: str, holdings: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """`logs/state/nav.json`: NAV, its detail and the executor's AUM (4.1)."""
    _check_era(era)
    nav = _r(w.nav_usd)
    off = offexchange_executor_view(w, holdings)
    aum = {
        "futures": nav,
        "offexchange": off,
        "total": _r(nav + sum(v["usd_value"] or 0.0 for v in off.values())),
    }
    wallet = {"USDT": nav}
    detail = {
        "source": "live",
        "fresh": True,
        "nav_mode": "live_wallet",
        "total_nav": nav,
        "nav": nav,
        "nav_usd": nav,
        "breakdown": wallet,
        "asset_breakdown": wallet,
        "assets": wallet,
        "quote_breakdown": wallet,
        "futures_balances": wallet,
        "conversions": {},
        "aum": aum,
    }
    return {
        "nav": nav,
        "nav_usd": nav,
        "updated_ts": w.now if era == "v7.1" else iso(w.now),
        "nav_mode": "live_wallet",
        "assets": wallet,
        "nav_detail": detail,
        "aum": aum,
    }


def nav_log_doc(w: World) -> list[dict[str, float]]:
    """`logs/nav_log.json`: the executor's NAV series, capped at 720 points."""
    return [{"nav": _r(n), "t": t, "unrealized_pnl": _r(u)} for t, n, u in w.nav_log]


def peak_state_doc(w: World) -> dict[str, Any]:
    """`logs/cache/peak_state.json`: the drawdown tracker (dd_pct in percent)."""
    return {
        "day": w.day,
        "dd_abs": _r(w.dd_abs_usd),
        "dd_pct": w.dd_pct,
        "nav": _r(w.nav_usd),
        "nav_usd": _r(w.nav_usd),
        "peak": _r(w.peak_usd),
        "peak_equity": _r(w.peak_usd),
        "realized_pnl_today": _r(w.realized_today_usd),
        "reset_timezone": "UTC",
        "ts": w.now,
        "updated_at": iso(w.now),
    }


def fx_cache_doc(w: World, era: str) -> dict[str, Any]:
    """`logs/cache/coingecko_cache.json`: prices in USD and USD->ZAR (4.11)."""
    _check_era(era)
    doc: dict[str, Any] = {
        "prices": {k: _r(v) for k, v in sorted(w.prices.items())},
        "prices_ts": w.now,
        "usd_zar": _r(w.usd_zar, 6),
        "usd_zar_ts": w.now,
    }
    if era == "v7.6":  # older files carry no source
        doc["usd_zar_source"] = "api"
    return doc


# --- risk ------------------------------------------------------------------------------------


def drawdown_snapshot(w: World) -> dict[str, Any]:
    """The risk engine's drawdown snapshot: every `pct` is percent, money USD (4.4)."""
    return {
        "dd_pct": w.dd_pct,
        "dd_abs": _r(w.dd_abs_usd),
        "peak": _r(w.peak_usd),
        "nav": _r(w.nav_usd),
        "realized_today": _r(w.realized_today_usd),
        "nav_cache_ts": w.nav_t,
        "nav_cache_age": round(w.now - w.nav_t, 3),
        "peak_state_age": 0.0,
        "stale_flags": {
            "peak_state_stale": False,
            "nav_missing": False,
            "nav_sources_unhealthy": False,
            "nav_cache_stale": False,
        },
        "usable": True,
        "drawdown": {
            "pct": w.dd_pct,
            "abs": _r(w.dd_abs_usd),
            "peak_nav": _r(w.peak_usd),
            "nav": _r(w.nav_usd),
        },
        "daily_loss": {
            "pct": w.daily_loss_pct,
            "daily_peak": _r(w.daily_peak_usd),
            "nav": _r(w.nav_usd),
        },
    }


def _slip_quartiles(s: RouterStats) -> tuple[float, float, float]:
    p50 = s.slippage_p50_bps
    return p50 * 0.45, p50, p50 + (s.slippage_p95_bps - p50) * 0.4


def portfolio_router_stats(w: World) -> dict[str, float]:
    """Portfolio-wide router effectiveness: plain means over symbols (fractions, bps)."""
    stats = list(w.router.values())
    q = [_slip_quartiles(s) for s in stats]
    return {
        "maker_fill_ratio": _r(statistics.fmean(s.maker_fill_rate for s in stats), 6),
        "fallback_ratio": _r(statistics.fmean(s.fallback_rate for s in stats), 6),
        "slip_q25": _r(statistics.fmean(x[0] for x in q), 4),
        "slip_q50": _r(statistics.fmean(x[1] for x in q), 4),
        "slip_q75": _r(statistics.fmean(x[2] for x in q), 4),
        "slip_q95": _r(statistics.fmean(s.slippage_p95_bps for s in stats), 4),
    }


def atr_block(w: World) -> dict[str, Any]:
    median = w.median_atr_ratio
    return {
        "atr_regime": atr_regime(median),
        "median_ratio": _r(median, 6),
        "symbols": [
            {
                "symbol": s,
                "atr_now": _r(w.atr_med_pct[s] * w.atr_ratio[s], 6),
                "atr_med": w.atr_med_pct[s],
                "atr_ratio": _r(w.atr_ratio[s], 6),
                "atr_regime": atr_regime(w.atr_ratio[s]),
            }
            for s in w.symbols
        ],
    }


def fee_pnl_block(w: World) -> dict[str, Any]:
    """The `fee_pnl` block both the flat KPI payload and the risk snapshot carry."""
    return {
        "fee_pnl_ratio": None if w.fee_pnl_ratio is None else _r(w.fee_pnl_ratio, 6),
        "fees": _r(w.fees_usd, 6),
        "pnl": _r(w.gross_pnl_usd, 6),
        "window_days": w.window_days,
    }


def flat_kpis(w: World, era: str) -> dict[str, Any]:
    """The executor's flat KPI payload (shape A of 4.7), embedded in the risk snapshot."""
    _check_era(era)
    rs = portfolio_router_stats(w)
    fee_pnl = fee_pnl_block(w)
    atr = atr_block(w)
    doc: dict[str, Any] = {
        "ts": w.now,
        "atr_regime": atr["atr_regime"],
        "atr": atr,
        "dd_state": w.dd_state,
        "drawdown": drawdown_snapshot(w),
        "fee_pnl_ratio": fee_pnl["fee_pnl_ratio"],
        "fees": fee_pnl["fees"],
        "pnl": fee_pnl["pnl"],
        "fee_pnl": fee_pnl,
        "router_quality": router_quality(
            rs["maker_fill_ratio"], rs["fallback_ratio"], rs["slip_q50"]
        ),
        "router_stats": rs,
    }
    if era == "v7.6":
        doc["updated_at"] = iso(w.now)
    return doc


def _symbol_dd_state(dd_today_pct: float) -> str:
    if dd_today_pct <= -1.5:
        return "defensive"
    return "cautious" if dd_today_pct <= -0.5 else "normal"


def health_entry(w: World, symbol: str) -> dict[str, Any]:
    """One per-symbol execution-health entry (4.8): router, risk and vol blocks."""
    s = w.router[symbol]
    q25, q50, q75 = _slip_quartiles(s)
    quality = policy_quality(s)
    maker_first = s.maker_fill_rate >= 0.4
    warnings = []
    if s.fallback_rate > 0.5:
        warnings.append("high_fallback_ratio")
    if q50 > 4.0:
        warnings.append("elevated_median_slippage")
    dd_today = w.dd_today_pct(symbol)
    flags = []
    if dd_today <= -1.5:
        flags.append("dd_warning")
    if dd_today <= -3.0:
        flags.append("dd_kill_threshold")
    ratio = w.atr_ratio[symbol]
    policy = {
        "maker_first": maker_first,
        "taker_bias": "balanced" if s.fallback_rate < 0.35 else "prefer_taker",
        "quality": quality,
        "reason": "ok" if quality in ("good", "ok") else "router_degraded",
        "offset_bps": _r(min(2.0, q50 * 0.5), 4),
    }
    return {
        "schema": "execution_health_v1",
        "symbol": symbol,
        "updated_ts": w.now,
        "router": {
            "router_warnings": warnings,
            "maker_fill_ratio": _r(s.maker_fill_rate, 6),
            "fallback_ratio": _r(s.fallback_rate, 6),
            "slip_q25": _r(q25, 4),
            "slip_q50": _r(q50, 4),
            "slip_q75": _r(q75, 4),
            "last_route_decision": "maker_first" if maker_first else "taker",
            "policy_quality": quality,
            "policy_maker_first": maker_first,
            "policy_taker_bias": policy["taker_bias"],
            "policy_reason": policy["reason"],
            "maker_offset_bps": policy["offset_bps"],
            "policy": policy,
        },
        "risk": {
            "dd_today_pct": _r(dd_today, 6),
            "dd_state": _symbol_dd_state(dd_today),
            "risk_flags": flags,
            "sharpe_state": "neutral",
            "toggle_active": False,
            "toggle_meta": {},
        },
        "vol": {
            "atr_now": _r(w.atr_med_pct[symbol] * ratio, 6),
            "atr_med": w.atr_med_pct[symbol],
            "atr_ratio": _r(ratio, 6),
            "atr_regime": atr_regime(ratio),
        },
        "sizing": {"final_size_factor": 1.0, "size_mult_regime": 1.0},
        "errors": {},
        "components": {"router": "ok", "risk": "ok", "vol": "ok", "sizing": "ok"},
    }


def _synth_state(dd_pct: float) -> str:
    """The v7.6 writer's upper-case label (demo thresholds, consistent with `World.dd_state`)."""
    if dd_pct >= DD_CAUTIOUS_PCT:
        return "DRAWDOWN"
    return "RECOVERY" if dd_pct >= DD_CAUTIOUS_PCT / 2 else "NORMAL"


def risk_doc(w: World, era: str, kpis: Mapping[str, Any] | None) -> dict[str, Any]:
    """`logs/state/risk_snapshot.json` (4.4); `kpis` is the last flat payload, if any yet."""
    _check_era(era)
    fee_pnl = fee_pnl_block(w)
    atr = atr_block(w)
    doc: dict[str, Any] = {
        "updated_ts": w.now,
        "symbols": [health_entry(w, s) for s in w.symbols],
        "atr_regime": atr["atr_regime"],
        "atr": atr,
        "fee_pnl_ratio": fee_pnl["fee_pnl_ratio"],
        "fee_pnl": fee_pnl,
        "nav_health": {
            "age_s": round(w.now - w.nav_t, 3),
            "sources_ok": True,
            "stale_flags": {"balances_ok": False, "positions_ok": False},
            "fresh": True,
            "threshold_s": NAV_FRESHNESS_S,
            "cache_ts": w.nav_t,
            "cache_path": "logs/cache/nav_confirmed.json",
            "nav_total": _r(w.nav_usd),
        },
        "risk_config_meta": {
            "testnet_overrides_active": False,
            "max_nav_drawdown_pct": 0.3,
            "daily_loss_limit_pct": 0.05,
        },
    }
    if era == "v7.1":
        doc["dd_state"] = {"dd_state": w.dd_state, "drawdown": drawdown_snapshot(w)}
    else:
        dd_frac = w.dd_pct / 100.0
        doc.update(
            dd_state={"state": _synth_state(w.dd_pct), "drawdown": {"dd_pct": dd_frac}},
            dd_frac=dd_frac,
            daily_loss_frac=w.daily_loss_pct / 100.0,
            portfolio_dd_pct=dd_frac,
            circuit_breaker={"max_portfolio_dd_nav_pct": 0.01, "active": dd_frac >= 0.01},
            correlation_groups={},
            risk_mode="OK",
            risk_mode_reason="",
            risk_mode_score=0.0,
            tp_sl_registry={
                "num_positions": len(w.positions),
                "num_registry_entries": len(w.positions),
                "registry_mismatch": False,
            },
            anomalies={},
        )
        rs = portfolio_router_stats(w)
        doc["router_stats"] = {
            "maker_fill_rate": rs["maker_fill_ratio"],
            "fallback_ratio": rs["fallback_ratio"],
            "slip_q25_bps": rs["slip_q25"],
            "slip_q50_bps": rs["slip_q50"],
            "slip_q75_bps": rs["slip_q75"],
            "quality": router_quality(rs["maker_fill_ratio"], rs["fallback_ratio"], rs["slip_q50"]),
        }
    if kpis is not None:
        doc["kpis_v7"] = dict(kpis)
    return doc


# --- router health ---------------------------------------------------------------------------


def quality_score(s: RouterStats) -> float:
    """A 0..1 router quality score (maker share, fallback and slippage)."""
    slip = min(1.0, s.slippage_p50_bps / 10.0)
    return _r(0.5 * s.maker_fill_rate + 0.3 * (1.0 - s.fallback_rate) + 0.2 * (1.0 - slip), 6)


def _score_bucket(score: float) -> str:
    if score >= 0.75:
        return "good"
    if score >= 0.6:
        return "ok"
    return "degraded" if score >= 0.4 else "broken"


def router_doc(w: World, era: str) -> dict[str, Any]:
    """`logs/state/router_health.json` (4.5): v7.1 lists with ratios, v7.6 the stats shape."""
    _check_era(era)
    if era == "v7.1":
        entries = []
        for sym in w.symbols:
            s = w.router[sym]
            q = policy_quality(s)
            maker_first = s.maker_fill_rate >= 0.4
            bias = "balanced" if s.fallback_rate < 0.35 else "prefer_taker"
            offset = _r(min(2.0, s.slippage_p50_bps * 0.5), 4)
            entries.append(
                {
                    "symbol": sym,
                    "maker_fill_rate": _r(s.maker_fill_rate, 6),
                    "fallback_rate": _r(s.fallback_rate, 6),
                    "slippage_p50": _r(s.slippage_p50_bps, 4),
                    "slippage_p95": _r(s.slippage_p95_bps, 4),
                    "ack_latency_ms": _r(s.ack_latency_ms, 3),
                    "policy": {
                        "maker_first": maker_first,
                        "taker_bias": bias,
                        "quality": q,
                        "reason": "ok" if q in ("good", "ok") else "router_degraded",
                        "offset_bps": offset,
                    },
                    "maker_first": maker_first,
                    "taker_bias": bias,
                    "bias": bias,
                    "quality": q,
                    "offset_bps": offset,
                    "updated_ts": w.now,
                }
            )
        counts = {
            k: sum(1 for e in entries if e["quality"] == k)
            for k in ("good", "ok", "degraded", "broken")
        }
        return {
            "updated_ts": w.now,
            "summary": {
                "updated_ts": w.now,
                "count": len(entries),
                "quality_counts": counts,
                "maker_first_enabled": sum(1 for e in entries if e["maker_first"]),
            },
            "symbols": entries,
            "per_symbol": entries,
        }
    stamp = iso(w.now)
    per_symbol: dict[str, dict[str, Any]] = {}
    for sym in w.symbols:
        s = w.router[sym]
        score = quality_score(s)
        drift = _r(s.slippage_p50_bps - 1.5, 4)
        per_symbol[sym] = {
            "symbol": sym,
            "quality_score": score,
            "avg_slippage_bps": _r(s.slippage_p50_bps, 4),
            "slippage_drift_bps": drift,
            "slippage_drift_bucket": "GREEN" if drift < 1 else ("YELLOW" if drift < 3 else "RED"),
            "avg_latency_ms": _r(s.ack_latency_ms, 3),
            "latency_bucket": "FAST"
            if s.ack_latency_ms < 150
            else ("NORMAL" if s.ack_latency_ms < 500 else "SLOW"),
            "last_order_ts": stamp,
            "last_fill_ts": stamp,
            "twap_usage_ratio": 0.0,
            "twap_notional": 0.0,
            "child_orders": {"count": 0, "fill_ratio": None},
            "router_bucket": "A_HIGH"
            if score >= 0.75
            else ("B_MEDIUM" if score >= 0.5 else "C_LOW"),
            "total_notional": _r(s.event_count * 180.34, 2),
            "event_count": s.event_count,
        }
    scores = [v["quality_score"] for v in per_symbol.values()]
    glob = {
        "quality_score": _r(statistics.fmean(scores), 6),
        "avg_slippage_bps": _r(
            statistics.fmean(v["avg_slippage_bps"] for v in per_symbol.values()), 4
        ),
        "slippage_drift_bps": _r(
            statistics.fmean(v["slippage_drift_bps"] for v in per_symbol.values()), 4
        ),
        "slippage_drift_bucket": "GREEN",
        "avg_latency_ms": _r(statistics.fmean(v["avg_latency_ms"] for v in per_symbol.values()), 3),
        "latency_bucket": "NORMAL",
        "twap_usage_ratio": 0.0,
        "router_bucket": "B_MEDIUM",
        "updated_ts": stamp,
    }
    listed = [
        {
            "symbol": v["symbol"],
            "avg_slippage_bps": v["avg_slippage_bps"],
            "slippage_drift_bps": v["slippage_drift_bps"],
            "latency_ms": v["avg_latency_ms"],
            "router_bucket": v["router_bucket"],
            "quality_score": v["quality_score"],
            "twap_usage_ratio": v["twap_usage_ratio"],
            "updated_ts": stamp,
        }
        for v in per_symbol.values()
    ]
    counts = {
        k: sum(1 for x in scores if _score_bucket(x) == k)
        for k in ("good", "ok", "degraded", "broken")
    }
    return {
        "updated_ts": stamp,
        "router_health_score": glob["quality_score"],
        "router_health": {
            "global": glob,
            "per_symbol": per_symbol,
            "meta": {"window_seconds": 604800, "min_events": 5, "updated_ts": stamp},
        },
        "global": glob,
        "summary": {"updated_ts": stamp, "count": len(listed), "quality_counts": counts},
        "symbols": listed,
        "per_symbol": listed,
        "symbol_stats": {
            sym: {
                "maker_reliability": v["quality_score"],
                "avg_slippage_bps": v["avg_slippage_bps"],
                "last_ts": stamp,
            }
            for sym, v in per_symbol.items()
        },
    }


# --- positions -------------------------------------------------------------------------------


def _camel_row(p: Position, mark: float) -> dict[str, Any]:
    return {
        "symbol": p.symbol,
        "positionSide": p.side,
        "qty": p.qty,
        "entryPrice": _r(p.entry_price),
        "markPrice": _r(mark),
        "unrealized": _r(p.pnl_usd(mark)),
        "leverage": p.leverage,
    }


def _snake_row(p: Position, mark: float, now: float) -> dict[str, Any]:
    return {
        "symbol": p.symbol,
        "side": p.side,
        "qty": p.qty,
        "entry_price": _r(p.entry_price),
        "mark_price": _r(mark),
        "pnl": _r(p.pnl_usd(mark)),
        "leverage": p.leverage,
        "notional": _r(abs(p.qty * mark)),
        "ts": iso(now),
    }


def positions_doc(w: World, era: str) -> dict[str, Any]:
    """`logs/state/positions.json` (4.6.1): camelCase `rows`; v7.6 adds snake_case `items`."""
    _check_era(era)
    doc: dict[str, Any] = {
        "rows": [_camel_row(p, w.marks[p.symbol]) for p in w.positions],
        "updated": w.now,
    }
    if era == "v7.6":
        doc["items"] = [_snake_row(p, w.marks[p.symbol], w.now) for p in w.positions]
    return doc
