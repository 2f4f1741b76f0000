"""How each file the executor writes is shaped, per era: pure builders from plain values.

Every producer of executor files (the demo executor, the benchmark books, the test documents)
builds them here, from plain values (symbols, prices, NAV, timestamps, era) to JSON-ready
dicts. Shapes follow the real system's files (docs/CONTRACT_RULES.md, executor file shapes):

- era "v7.1" (v7.1.0, Nov 2025): epoch timestamps; risk snapshot with the engine's
  `dd_state{dd_state, drawdown{...}}`; router health as per-symbol *lists* with maker/fallback
  ratios; positions.json rows in the exchange's camelCase.
- era "v7.6" (v7.6, Dec 2025 on): ISO `updated_ts` in nav.json and router_health.json; the
  risk writer's enrichment (`dd_frac`, `daily_loss_frac`, `portfolio_dd_pct`, a synthesised
  `dd_state{state, drawdown{dd_pct as a fraction}}`, `risk_mode`); router health in the
  "stats" shape (dict `router_health.per_symbol`, no maker/fallback ratios), so the router
  numbers travel in the risk snapshot's `router_stats`.

Where a writer left a field out (older or leaner executors), the builder's optional argument
left at None leaves it out too; a field whose value may itself be null is always written.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

ERAS = ("v7.1", "v7.6")
NAV_FRESHNESS_S = 90.0
QUALITY_KEYS = ("good", "ok", "degraded", "broken")


def iso(ts: float) -> str:
    """Epoch seconds -> ISO-8601 UTC with an offset, as Python's isoformat() wrote it upstream."""
    return datetime.fromtimestamp(ts, UTC).isoformat()


def check_era(era: str) -> None:
    if era not in ERAS:
        raise ValueError(f"era must be one of {', '.join(ERAS)}, got {era!r}")


def stamp(ts: float, era: str) -> float | str:
    """An `updated_ts` as the era wrote it: epoch seconds (v7.1) or ISO (v7.6)."""
    check_era(era)
    return ts if era == "v7.1" else iso(ts)


def r(x: float, digits: int = 8) -> float:
    return round(x, digits)


def _present(**fields: Any) -> dict[str, Any]:
    """The fields whose value is not None, in order."""
    return {k: v for k, v in fields.items() if v is not None}


# --- NAV -------------------------------------------------------------------------------------


def wallet(nav: float) -> dict[str, float]:
    return {"USDT": nav}


def offexchange_entry(qty: float, avg_cost: Any, price: float | None) -> dict[str, Any]:
    """One off-exchange holding, priced at `price` (None when unpriced)."""
    return {
        "qty": qty,
        "avg_cost": avg_cost,
        "mark": None if price is None else r(float(price)),
        "usd_value": None if price is None else r(qty * float(price)),
    }


def aum_block(futures: float, offexchange: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The executor's AUM: futures NAV plus priced off-exchange holdings."""
    total = futures + sum(v.get("usd_value") or 0.0 for v in offexchange.values())
    return {"futures": futures, "offexchange": dict(offexchange), "total": r(total)}


def nav_detail(
    *,
    source: str = "live",
    conversions: Mapping[str, Any] | None = None,
    nav: float | None = None,
    aum: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """`nav.json`'s `nav_detail`: the wallet's breakdown and AUM; only source and conversions
    when no NAV is given (the lean writer)."""
    conv = dict(conversions or {})
    if nav is None:
        return {"source": source, "conversions": conv}
    w = wallet(nav)
    return {
        "source": source,
        "fresh": True,
        "nav_mode": "live_wallet",
        "total_nav": nav,
        "nav": nav,
        "nav_usd": nav,
        "breakdown": w,
        "asset_breakdown": w,
        "assets": w,
        "quote_breakdown": w,
        "futures_balances": w,
        "conversions": conv,
        "aum": None if aum is None else dict(aum),
    }


def nav_doc(
    era: str,
    *,
    nav: float,
    updated_ts: float,
    detail: Mapping[str, Any],
    aum: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """`logs/state/nav.json`: NAV, its detail and (when given) the executor's AUM."""
    doc: dict[str, Any] = {"nav": nav}
    if aum is not None:
        doc["nav_usd"] = nav
    doc["updated_ts"] = stamp(updated_ts, era)
    if aum is not None:
        doc.update(nav_mode="live_wallet", assets=wallet(nav))
    doc["nav_detail"] = dict(detail)
    if aum is not None:
        doc["aum"] = dict(aum)
    return doc


def nav_log_doc(points: Iterable[tuple[float, float, float]]) -> list[dict[str, float]]:
    """`logs/nav_log.json`: the executor's NAV series of (t, nav, unrealized) points."""
    return [{"nav": r(n), "t": t, "unrealized_pnl": r(u)} for t, n, u in points]


def nav_state_doc(
    *,
    nav: float,
    peak: float,
    dd_pct: float,
    updated_at: float,
    aum: Mapping[str, Any] | None = None,
    series: Sequence[Mapping[str, Any]] | None = None,
    dd_abs: float | None = None,
    realized_pnl: float | None = None,
    realized_today: float | None = None,
    unrealized: float | None = None,
    exposures: tuple[float, float, float] | None = None,
    snapshot_at: float | None = None,
) -> dict[str, Any]:
    """`logs/state/nav_state.json`, the sync's NAV state: NAV, peak and drawdown (percent);
    with a `series`, the full sync shape (PnL, drawdown, (gross, net, largest) exposures)."""
    if series is None:
        return _present(
            nav_usd=nav, peak_equity=peak, drawdown_pct=dd_pct, updated_at=updated_at, aum=aum
        )
    gross, net, largest = exposures or (0.0, 0.0, 0.0)
    return _present(
        series=[dict(p) for p in series],
        peak_equity=peak,
        total_equity=nav,
        realized_pnl=realized_pnl,
        realized_pnl_today=realized_today,
        unrealized_pnl=unrealized,
        drawdown=dd_pct,
        drawdown_pct=dd_pct,
        drawdown_abs=dd_abs,
        drawdown_snapshot_at=None if snapshot_at is None else iso(snapshot_at),
        gross_exposure=gross,
        net_exposure=net,
        largest_position_value=largest,
        aum=aum,
        updated_at=updated_at,
        age_s=0.0,
    )


def series_point(t: float, nav: float, unrealized: float) -> dict[str, Any]:
    """One point of nav_state's `series` (ISO time, equity = NAV)."""
    return {
        "nav": nav,
        "t": iso(t),
        "unrealized_pnl": unrealized,
        "equity": nav,
        "total_equity": nav,
    }


def peak_state_doc(
    *,
    day: str,
    dd_abs: float,
    dd_pct: float,
    nav: float,
    peak: float,
    realized_today: float,
    now: float,
) -> dict[str, Any]:
    """`logs/cache/peak_state.json`: the drawdown tracker (dd_pct in percent)."""
    return {
        "day": day,
        "dd_abs": r(dd_abs),
        "dd_pct": dd_pct,
        "nav": r(nav),
        "nav_usd": r(nav),
        "peak": r(peak),
        "peak_equity": r(peak),
        "realized_pnl_today": r(realized_today),
        "reset_timezone": "UTC",
        "ts": now,
        "updated_at": iso(now),
    }


def fx_cache_doc(
    era: str, *, prices: Mapping[str, float], usd_zar: float, ts: float
) -> dict[str, Any]:
    """`logs/cache/coingecko_cache.json`: prices in USD and USD->ZAR."""
    check_era(era)
    doc: dict[str, Any] = {
        "prices": {k: r(v) for k, v in sorted(prices.items())},
        "prices_ts": ts,
        "usd_zar": r(usd_zar, 6),
        "usd_zar_ts": ts,
    }
    if era == "v7.6":  # older files carry no source
        doc["usd_zar_source"] = "api"
    return doc


def holdings_doc(holdings: Mapping[str, tuple[float, float]]) -> dict[str, dict[str, float]]:
    """`config/offexchange_holdings.json`: asset -> (qty, avg_cost)."""
    return {sym: {"qty": qty, "avg_cost": cost} for sym, (qty, cost) in holdings.items()}


# --- risk ------------------------------------------------------------------------------------


def drawdown_snapshot(
    *,
    dd_pct: float,
    dd_abs: float,
    daily_loss_pct: float,
    peak: float | None = None,
    nav: float = 0.0,
    daily_peak: float = 0.0,
    realized_today: float = 0.0,
    nav_cache_ts: float = 0.0,
    now: float = 0.0,
) -> dict[str, Any]:
    """The risk engine's drawdown snapshot: every `pct` is percent, money USD; only the
    three headline figures when no peak is given (the lean writer)."""
    if peak is None:
        return {"dd_pct": dd_pct, "dd_abs": dd_abs, "daily_loss": {"pct": daily_loss_pct}}
    return {
        "dd_pct": dd_pct,
        "dd_abs": r(dd_abs),
        "peak": r(peak),
        "nav": r(nav),
        "realized_today": r(realized_today),
        "nav_cache_ts": nav_cache_ts,
        "nav_cache_age": round(now - nav_cache_ts, 3),
        "peak_state_age": 0.0,
        "stale_flags": {
            "peak_state_stale": False,
            "nav_missing": False,
            "nav_sources_unhealthy": False,
            "nav_cache_stale": False,
        },
        "usable": True,
        "drawdown": {"pct": dd_pct, "abs": r(dd_abs), "peak_nav": r(peak), "nav": r(nav)},
        "daily_loss": {"pct": daily_loss_pct, "daily_peak": r(daily_peak), "nav": r(nav)},
    }


def router_stats(
    *, maker: float, fallback: float, q25: float, q50: float, q75: float, q95: float
) -> dict[str, float]:
    """Portfolio-wide router effectiveness of the flat KPI payload (fractions, bps)."""
    return {
        "maker_fill_ratio": r(maker, 6),
        "fallback_ratio": r(fallback, 6),
        "slip_q25": r(q25, 4),
        "slip_q50": r(q50, 4),
        "slip_q75": r(q75, 4),
        "slip_q95": r(q95, 4),
    }


def risk_router_stats(
    *,
    maker: float,
    fallback: float,
    q50: float,
    quality: str,
    q25: float | None = None,
    q75: float | None = None,
) -> dict[str, Any]:
    """The risk snapshot's `router_stats` (the v7.6 writer's keys; bps suffixed)."""
    return _present(
        maker_fill_rate=maker,
        fallback_ratio=fallback,
        slip_q25_bps=q25,
        slip_q50_bps=q50,
        slip_q75_bps=q75,
        quality=quality,
    )


def vol_block(
    *, atr_now: float, atr_med: float, atr_ratio: float, regime: str, symbol: str | None = None
) -> dict[str, Any]:
    """A symbol's ATR figures: the health entry's `vol`, or (with `symbol`) an `atr` row."""
    return _present(
        symbol=symbol,
        atr_now=r(atr_now, 6),
        atr_med=atr_med,
        atr_ratio=r(atr_ratio, 6),
        atr_regime=regime,
    )


def atr_block(
    regime: str, median_ratio: float, symbols: Sequence[Mapping[str, Any]] | None = None
) -> dict[str, Any]:
    """The `atr` block: the portfolio regime, the median ratio and the per-symbol rows."""
    doc: dict[str, Any] = {"atr_regime": regime, "median_ratio": r(median_ratio, 6)}
    if symbols is not None:
        doc["symbols"] = [dict(s) for s in symbols]
    return doc


def fee_pnl_block(
    *, fee_pnl_ratio: float | None, fees: float, pnl: float, window_days: int | None = None
) -> dict[str, Any]:
    """The `fee_pnl` block both the flat KPI payload and the risk snapshot carry."""
    doc: dict[str, Any] = {
        "fee_pnl_ratio": None if fee_pnl_ratio is None else r(fee_pnl_ratio, 6),
        "fees": r(fees, 6),
        "pnl": r(pnl, 6),
    }
    if window_days is not None:
        doc["window_days"] = window_days
    return doc


def flat_kpis(
    era: str,
    *,
    now: float,
    atr: Mapping[str, Any],
    dd_state: str,
    drawdown: Mapping[str, Any],
    fee_pnl: Mapping[str, Any],
    router_quality: str,
    router_stats: Mapping[str, Any],
) -> dict[str, Any]:
    """The executor's flat KPI payload (shape A of 4.7), embedded in the risk snapshot."""
    check_era(era)
    doc: dict[str, Any] = {
        "ts": now,
        "atr_regime": atr["atr_regime"],
        "atr": dict(atr),
        "dd_state": dd_state,
        "drawdown": dict(drawdown),
        "fee_pnl_ratio": fee_pnl["fee_pnl_ratio"],
        "fees": fee_pnl["fees"],
        "pnl": fee_pnl["pnl"],
        "fee_pnl": dict(fee_pnl),
        "router_quality": router_quality,
        "router_stats": dict(router_stats),
    }
    if era == "v7.6":
        doc["updated_at"] = iso(now)
    return doc


def policy_block(
    *, maker_first: bool, taker_bias: str, quality: str, offset_bps: float
) -> dict[str, Any]:
    """The router's per-symbol routing policy."""
    return {
        "maker_first": maker_first,
        "taker_bias": taker_bias,
        "quality": quality,
        "reason": "ok" if quality in ("good", "ok") else "router_degraded",
        "offset_bps": r(offset_bps, 4),
    }


def health_entry(
    symbol: str,
    updated_ts: float,
    *,
    maker: float,
    fallback: float,
    slip: tuple[float, float, float],
    policy: Mapping[str, Any],
    dd_today_pct: float,
    vol: Mapping[str, Any],
    slim: bool = False,
) -> dict[str, Any]:
    """One per-symbol execution-health entry: router, risk and vol blocks; `slim` keeps
    only the fields a reader of the snapshot uses (ratios, slippage, policy, drawdown, ATR)."""
    q25, q50, q75 = slip
    warnings = []
    if fallback > 0.5:
        warnings.append("high_fallback_ratio")
    if q50 > 4.0:
        warnings.append("elevated_median_slippage")
    flags = []
    if dd_today_pct <= -1.5:
        flags.append("dd_warning")
    if dd_today_pct <= -3.0:
        flags.append("dd_kill_threshold")
    if dd_today_pct <= -1.5:
        dd_state = "defensive"
    else:
        dd_state = "cautious" if dd_today_pct <= -0.5 else "normal"
    maker_first = bool(policy["maker_first"])
    if slim:
        return {
            "schema": "execution_health_v1",
            "symbol": symbol,
            "updated_ts": updated_ts,
            "router": {
                "maker_fill_ratio": r(maker, 6),
                "fallback_ratio": r(fallback, 6),
                "slip_q25": r(q25, 4),
                "slip_q50": r(q50, 4),
                "slip_q75": r(q75, 4),
                "policy_quality": policy["quality"],
                "policy": dict(policy),
            },
            "risk": {
                "dd_today_pct": r(dd_today_pct, 6),
                "dd_state": dd_state,
                "risk_flags": flags,
                "sharpe_state": "neutral",
            },
            "vol": dict(vol),
        }
    return {
        "schema": "execution_health_v1",
        "symbol": symbol,
        "updated_ts": updated_ts,
        "router": {
            "router_warnings": warnings,
            "maker_fill_ratio": r(maker, 6),
            "fallback_ratio": r(fallback, 6),
            "slip_q25": r(q25, 4),
            "slip_q50": r(q50, 4),
            "slip_q75": r(q75, 4),
            "last_route_decision": "maker_first" if maker_first else "taker",
            "policy_quality": policy["quality"],
            "policy_maker_first": maker_first,
            "policy_taker_bias": policy["taker_bias"],
            "policy_reason": policy["reason"],
            "maker_offset_bps": policy["offset_bps"],
            "policy": dict(policy),
        },
        "risk": {
            "dd_today_pct": r(dd_today_pct, 6),
            "dd_state": dd_state,
            "risk_flags": flags,
            "sharpe_state": "neutral",
            "toggle_active": False,
            "toggle_meta": {},
        },
        "vol": dict(vol),
        "sizing": {"final_size_factor": 1.0, "size_mult_regime": 1.0},
        "errors": {},
        "components": {"router": "ok", "risk": "ok", "vol": "ok", "sizing": "ok"},
    }


def nav_health(*, now: float, nav_ts: float, nav: float) -> dict[str, Any]:
    """The risk snapshot's NAV freshness block."""
    return {
        "age_s": round(now - nav_ts, 3),
        "sources_ok": True,
        "stale_flags": {"balances_ok": False, "positions_ok": False},
        "fresh": True,
        "threshold_s": NAV_FRESHNESS_S,
        "cache_ts": nav_ts,
        "cache_path": "logs/cache/nav_confirmed.json",
        "nav_total": r(nav),
    }


def risk_doc(
    era: str,
    *,
    updated_ts: float,
    symbols: Sequence[Mapping[str, Any]],
    atr: Mapping[str, Any],
    fee_pnl: Mapping[str, Any],
    dd_state: str,
    drawdown: Mapping[str, Any],
    router_stats: Mapping[str, Any] | None = None,
    nav_health: Mapping[str, Any] | None = None,
    n_positions: int = 0,
    kpis: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """`logs/state/risk_snapshot.json`; `kpis` is the last flat payload, if any yet.

    `drawdown` is the engine's snapshot (`drawdown_snapshot`, pct in percent), `dd_state` its
    label. With `nav_health`, the full writer (ATR/fee-PnL headlines, NAV health, config meta,
    nested `dd_state` in v7.1, the enrichment in v7.6); without it, the lean writer's flat
    `drawdown`, `dd_state` label and `router_stats`.
    """
    check_era(era)
    if nav_health is None:
        return _present(
            updated_ts=updated_ts,
            drawdown=dict(drawdown),
            dd_state=dd_state,
            atr=dict(atr),
            router_stats=router_stats,
            fee_pnl=dict(fee_pnl),
            symbols=[dict(s) for s in symbols],
            kpis_v7=kpis,
        )
    doc: dict[str, Any] = {
        "updated_ts": updated_ts,
        "symbols": [dict(s) for s in symbols],
        "atr_regime": atr["atr_regime"],
        "atr": dict(atr),
        "fee_pnl_ratio": fee_pnl["fee_pnl_ratio"],
        "fee_pnl": dict(fee_pnl),
        "nav_health": dict(nav_health),
        "risk_config_meta": {
            "testnet_overrides_active": False,
            "max_nav_drawdown_pct": 0.3,
            "daily_loss_limit_pct": 0.05,
        },
    }
    if era == "v7.1":
        doc["dd_state"] = {"dd_state": dd_state, "drawdown": dict(drawdown)}
    else:
        dd_frac = drawdown["dd_pct"] / 100.0
        doc.update(
            dd_state={"state": dd_state, "drawdown": {"dd_pct": dd_frac}},
            dd_frac=dd_frac,
            daily_loss_frac=drawdown["daily_loss"]["pct"] / 100.0,
            portfolio_dd_pct=dd_frac,
            circuit_breaker={"max_portfolio_dd_nav_pct": 0.01, "active": dd_frac >= 0.01},
            correlation_groups={},
            risk_mode="OK",
            risk_mode_reason="",
            risk_mode_score=0.0,
            tp_sl_registry={
                "num_positions": n_positions,
                "num_registry_entries": n_positions,
                "registry_mismatch": False,
            },
            anomalies={},
        )
        if router_stats is not None:
            doc["router_stats"] = dict(router_stats)
    if kpis is not None:
        doc["kpis_v7"] = dict(kpis)
    return doc


# --- router health ---------------------------------------------------------------------------


def router_entry(
    symbol: str,
    *,
    maker: float,
    fallback: float,
    p50: float | None = None,
    p95: float = 0.0,
    ack_ms: float = 0.0,
    policy: Mapping[str, Any] | None = None,
    updated_ts: float = 0.0,
) -> dict[str, Any]:
    """One v7.1 router-health row: maker/fallback ratios, slippage, latency and the policy;
    only the two ratios when no slippage is given (the lean writer)."""
    if p50 is None:
        return {"symbol": symbol, "maker_fill_rate": maker, "fallback_rate": fallback}
    doc: dict[str, Any] = {
        "symbol": symbol,
        "maker_fill_rate": r(maker, 6),
        "fallback_rate": r(fallback, 6),
        "slippage_p50": r(p50, 4),
        "slippage_p95": r(p95, 4),
        "ack_latency_ms": r(ack_ms, 3),
    }
    if policy is not None:
        doc.update(
            policy=dict(policy),
            maker_first=policy["maker_first"],
            taker_bias=policy["taker_bias"],
            bias=policy["taker_bias"],
            quality=policy["quality"],
            offset_bps=policy["offset_bps"],
        )
    doc["updated_ts"] = updated_ts
    return doc


def _score_bucket(score: float) -> str:
    if score >= 0.75:
        return "good"
    if score >= 0.6:
        return "ok"
    return "degraded" if score >= 0.4 else "broken"


def router_stats_entry(
    symbol: str,
    *,
    score: float,
    slip_p50: float,
    latency_ms: float,
    event_count: int,
    last_ts: str,
) -> dict[str, Any]:
    """One v7.6 `router_health.per_symbol` entry (the "stats" shape)."""
    drift = r(slip_p50 - 1.5, 4)
    return {
        "symbol": symbol,
        "quality_score": score,
        "avg_slippage_bps": r(slip_p50, 4),
        "slippage_drift_bps": drift,
        "slippage_drift_bucket": "GREEN" if drift < 1 else ("YELLOW" if drift < 3 else "RED"),
        "avg_latency_ms": r(latency_ms, 3),
        "latency_bucket": "FAST"
        if latency_ms < 150
        else ("NORMAL" if latency_ms < 500 else "SLOW"),
        "last_order_ts": last_ts,
        "last_fill_ts": last_ts,
        "twap_usage_ratio": 0.0,
        "twap_notional": 0.0,
        "child_orders": {"count": 0, "fill_ratio": None},
        "router_bucket": "A_HIGH" if score >= 0.75 else ("B_MEDIUM" if score >= 0.5 else "C_LOW"),
        "total_notional": r(event_count * 180.34, 2),
        "event_count": event_count,
    }


def router_doc(
    era: str, *, updated_ts: float, entries: Sequence[Mapping[str, Any]], summary: bool = True
) -> dict[str, Any]:
    """`logs/state/router_health.json`: v7.1 lists of `router_entry` rows (with a
    summary unless `summary` is False), v7.6 the stats shape over `router_stats_entry` rows."""
    check_era(era)
    if era == "v7.1":
        rows = [dict(e) for e in entries]
        if not summary:
            return {"updated_ts": updated_ts, "symbols": rows}
        counts = {k: sum(1 for e in rows if e.get("quality") == k) for k in QUALITY_KEYS}
        return {
            "updated_ts": updated_ts,
            "summary": {
                "updated_ts": updated_ts,
                "count": len(rows),
                "quality_counts": counts,
                "maker_first_enabled": sum(1 for e in rows if e.get("maker_first")),
            },
            "symbols": rows,
            "per_symbol": rows,
        }
    ts = iso(updated_ts)
    per_symbol = {str(e["symbol"]): dict(e) for e in entries}
    values = list(per_symbol.values())
    scores = [v["quality_score"] for v in values]
    glob = {
        "quality_score": r(statistics.fmean(scores), 6),
        "avg_slippage_bps": r(statistics.fmean(v["avg_slippage_bps"] for v in values), 4),
        "slippage_drift_bps": r(statistics.fmean(v["slippage_drift_bps"] for v in values), 4),
        "slippage_drift_bucket": "GREEN",
        "avg_latency_ms": r(statistics.fmean(v["avg_latency_ms"] for v in values), 3),
        "latency_bucket": "NORMAL",
        "twap_usage_ratio": 0.0,
        "router_bucket": "B_MEDIUM",
        "updated_ts": ts,
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
            "updated_ts": ts,
        }
        for v in values
    ]
    counts = {k: sum(1 for x in scores if _score_bucket(x) == k) for k in QUALITY_KEYS}
    return {
        "updated_ts": ts,
        "router_health_score": glob["quality_score"],
        "router_health": {
            "global": glob,
            "per_symbol": per_symbol,
            "meta": {"window_seconds": 604800, "min_events": 5, "updated_ts": ts},
        },
        "global": glob,
        "summary": {"updated_ts": ts, "count": len(listed), "quality_counts": counts},
        "symbols": listed,
        "per_symbol": listed,
        "symbol_stats": {
            sym: {
                "maker_reliability": v["quality_score"],
                "avg_slippage_bps": v["avg_slippage_bps"],
                "last_ts": ts,
            }
            for sym, v in per_symbol.items()
        },
    }


# --- positions -------------------------------------------------------------------------------


def camel_row(
    symbol: str, side: str, qty: float, entry: float, mark: float, pnl: float, leverage: float
) -> dict[str, Any]:
    """A positions.json row in the exchange's camelCase, priced at `mark`."""
    return {
        "symbol": symbol,
        "positionSide": side,
        "qty": qty,
        "entryPrice": r(entry),
        "markPrice": r(mark),
        "unrealized": r(pnl),
        "leverage": leverage,
    }


def exchange_row(
    symbol: str, side: str, amount: str, entry: str, mark: str, leverage: float
) -> dict[str, Any]:
    """A raw exchange row: `positionAmt` and prices as the exchange's decimal strings."""
    return {
        "symbol": symbol,
        "positionAmt": amount,
        "entryPrice": entry,
        "markPrice": mark,
        "positionSide": side,
        "leverage": leverage,
    }


def snake_row(
    symbol: str,
    qty: float,
    entry: float,
    mark: float,
    *,
    side: str | None = None,
    pnl: float | None = None,
    leverage: float | None = None,
    ts: float | None = None,
    pnl_key: str = "pnl",
) -> dict[str, Any]:
    """A snake_case position row; only symbol, qty and prices when no side is given (the
    lean writer). `pnl_key` is "pnl" (positions.json items) or "unrealized_pnl" (the sync's)."""
    if side is None:
        return {"symbol": symbol, "qty": qty, "entry_price": entry, "mark_price": mark}
    doc: dict[str, Any] = {
        "symbol": symbol,
        "side": side,
        "qty": qty,
        "entry_price": r(entry),
        "mark_price": r(mark),
        pnl_key: r(pnl or 0.0),
    }
    if pnl_key != "pnl":
        doc["realized_pnl"] = None
    doc.update(leverage=leverage, notional=r(abs(qty * mark)), ts=None if ts is None else iso(ts))
    return doc


def positions_doc(
    era: str,
    *,
    updated: float,
    rows: Sequence[Mapping[str, Any]],
    items: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """`logs/state/positions.json` (4.6.1): camelCase `rows`; v7.6 adds snake_case `items`."""
    check_era(era)
    doc: dict[str, Any] = {"rows": [dict(x) for x in rows], "updated": updated}
    if era == "v7.6":
        doc["items"] = [dict(x) for x in items]
    return doc


def positions_state_doc(
    *, updated_at: float, positions: Sequence[Mapping[str, Any]], iso_stamps: bool = True
) -> dict[str, Any]:
    """`logs/state/positions_state.json`: the sync's rows, stamped in ISO (`updated_at` and
    `updated_ts`) or, for the older sync, an epoch `updated_at` only."""
    rows = [dict(p) for p in positions]
    if not iso_stamps:
        return {"updated_at": updated_at, "positions": rows}
    return {"updated_at": iso(updated_at), "updated_ts": iso(updated_at), "positions": rows}


# --- advanced risk ---------------------------------------------------------------------------


def risk_advanced_doc(
    *,
    updated_ts: float,
    var_nav_pct: float,
    var_usd: float,
    max_var_nav_pct: float,
    confidence: float,
    lookback: int,
    cvar: Mapping[str, tuple[float, float, float]],
) -> dict[str, Any]:
    """`logs/state/risk_advanced.json`: portfolio VaR (NAV fractions) and per-symbol CVaR,
    `cvar` mapping symbol -> (cvar_nav_pct, cvar_usd, limit)."""
    return {
        "updated_ts": updated_ts,
        "var": {
            "portfolio_var_nav_pct": var_nav_pct,
            "portfolio_var_usd": var_usd,
            "max_portfolio_var_nav_pct": max_var_nav_pct,
            "confidence": confidence,
            "lookback_used": lookback,
        },
        "cvar": {
            "per_symbol": {
                sym: {"cvar_nav_pct": pct, "cvar_usd": usd, "limit": limit}
                for sym, (pct, usd, limit) in cvar.items()
            },
        },
    }
