"""The demo executor's documents: a demo `World`'s figures fed to `execution.shapes`.

Pure functions: a world (and the era) in, JSON-ready dicts out. This module derives the
numbers from the simulated market (router statistics, policies, ATR, drawdown); how each
file is shaped per era is `execution.shapes`.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from typing import Any

from execution import shapes
from execution.demo_market import (
    DD_CAUTIOUS_PCT,
    RouterStats,
    World,
    atr_regime,
    policy_quality,
    router_quality,
)
from execution.shapes import iso, r
from kpi_publisher.parse import number

# --- NAV -------------------------------------------------------------------------------------


def offexchange_executor_view(
    w: World, holdings: Mapping[str, Mapping[str, Any]]
) -> dict[str, dict[str, Any]]:
    """The executor's own off-exchange block: priced at the futures mark, else avg_cost. The
    config's numbers are read as the publisher reads them (`parse.number`: "2,098.96" is a
    number, "n/a" none), so a config the publisher accepts never stops the demo."""
    out: dict[str, dict[str, Any]] = {}
    for sym, h in holdings.items():
        if not isinstance(h, Mapping):
            continue
        avg_cost = h.get("avg_cost")
        mark = w.marks.get(f"{sym}USDT")
        price = mark if mark is not None else number(avg_cost)
        out[sym] = shapes.offexchange_entry(number(h.get("qty")) or 0.0, avg_cost, price)
    return out


def nav_doc(w: World, era: str, holdings: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """`logs/state/nav.json`: NAV, its detail and the executor's AUM."""
    shapes.check_era(era)
    nav = r(w.nav_usd)
    aum = shapes.aum_block(nav, offexchange_executor_view(w, holdings))
    detail = shapes.nav_detail(nav=nav, aum=aum)
    return shapes.nav_doc(era, nav=nav, updated_ts=w.now, detail=detail, aum=aum)


def nav_log_doc(w: World) -> list[dict[str, float]]:
    """`logs/nav_log.json`: the executor's NAV series, capped at 720 points."""
    return shapes.nav_log_doc(w.nav_log)


def peak_state_doc(w: World) -> dict[str, Any]:
    """`logs/cache/peak_state.json`: the drawdown tracker (dd_pct in percent)."""
    return shapes.peak_state_doc(
        day=w.day,
        dd_abs=w.dd_abs_usd,
        dd_pct=w.dd_pct,
        nav=w.nav_usd,
        peak=w.peak_usd,
        realized_today=w.realized_today_usd,
        now=w.now,
    )


def fx_cache_doc(w: World, era: str) -> dict[str, Any]:
    """`logs/cache/coingecko_cache.json`: prices in USD and USD->ZAR."""
    return shapes.fx_cache_doc(era, prices=w.prices, usd_zar=w.usd_zar, ts=w.now)


# --- risk ------------------------------------------------------------------------------------


def drawdown_snapshot(w: World) -> dict[str, Any]:
    """The risk engine's drawdown snapshot: every `pct` is percent, money USD."""
    return shapes.drawdown_snapshot(
        dd_pct=w.dd_pct,
        dd_abs=w.dd_abs_usd,
        daily_loss_pct=w.daily_loss_pct,
        peak=w.peak_usd,
        nav=w.nav_usd,
        daily_peak=w.daily_peak_usd,
        realized_today=w.realized_today_usd,
        nav_cache_ts=w.nav_t,
        now=w.now,
    )


def _slip_quartiles(s: RouterStats) -> tuple[float, float, float]:
    p50 = s.slippage_p50_bps
    return p50 * 0.45, p50, p50 + (s.slippage_p95_bps - p50) * 0.4


def portfolio_router_stats(w: World) -> dict[str, float]:
    """Portfolio-wide router effectiveness: plain means over symbols (fractions, bps)."""
    stats = list(w.router.values())
    q = [_slip_quartiles(s) for s in stats]
    return shapes.router_stats(
        maker=statistics.fmean(s.maker_fill_rate for s in stats),
        fallback=statistics.fmean(s.fallback_rate for s in stats),
        q25=statistics.fmean(x[0] for x in q),
        q50=statistics.fmean(x[1] for x in q),
        q75=statistics.fmean(x[2] for x in q),
        q95=statistics.fmean(s.slippage_p95_bps for s in stats),
    )


def _vol(w: World, symbol: str, *, row: bool) -> dict[str, Any]:
    ratio = w.atr_ratio[symbol]
    return shapes.vol_block(
        symbol=symbol if row else None,
        atr_now=w.atr_med_pct[symbol] * ratio,
        atr_med=w.atr_med_pct[symbol],
        atr_ratio=ratio,
        regime=atr_regime(ratio),
    )


def atr_block(w: World) -> dict[str, Any]:
    median = w.median_atr_ratio
    rows = [_vol(w, s, row=True) for s in w.symbols]
    return shapes.atr_block(atr_regime(median), median, rows)


def fee_pnl_block(w: World) -> dict[str, Any]:
    """The `fee_pnl` block both the flat KPI payload and the risk snapshot carry."""
    return shapes.fee_pnl_block(
        fee_pnl_ratio=w.fee_pnl_ratio,
        fees=w.fees_usd,
        pnl=w.gross_pnl_usd,
        window_days=w.window_days,
    )


def flat_kpis(w: World, era: str) -> dict[str, Any]:
    """The executor's flat KPI payload (shape A of 4.7), embedded in the risk snapshot."""
    rs = portfolio_router_stats(w)
    return shapes.flat_kpis(
        era,
        now=w.now,
        atr=atr_block(w),
        dd_state=w.dd_state,
        drawdown=drawdown_snapshot(w),
        fee_pnl=fee_pnl_block(w),
        router_quality=router_quality(rs["maker_fill_ratio"], rs["fallback_ratio"], rs["slip_q50"]),
        router_stats=rs,
    )


def _policy(s: RouterStats) -> dict[str, Any]:
    return shapes.policy_block(
        maker_first=s.maker_fill_rate >= 0.4,
        taker_bias="balanced" if s.fallback_rate < 0.35 else "prefer_taker",
        quality=policy_quality(s),
        offset_bps=min(2.0, s.slippage_p50_bps * 0.5),
    )


def health_entry(w: World, symbol: str) -> dict[str, Any]:
    """One per-symbol execution-health entry: router, risk and vol blocks."""
    s = w.router[symbol]
    return shapes.health_entry(
        symbol,
        w.now,
        maker=s.maker_fill_rate,
        fallback=s.fallback_rate,
        slip=_slip_quartiles(s),
        policy=_policy(s),
        dd_today_pct=w.dd_today_pct(symbol),
        vol=_vol(w, symbol, row=False),
    )


def _synth_state(dd_pct: float) -> str:
    """The v7.6 writer's upper-case label (demo thresholds, consistent with `World.dd_state`)."""
    if dd_pct >= DD_CAUTIOUS_PCT:
        return "DRAWDOWN"
    return "RECOVERY" if dd_pct >= DD_CAUTIOUS_PCT / 2 else "NORMAL"


def risk_doc(w: World, era: str, kpis: Mapping[str, Any] | None) -> dict[str, Any]:
    """`logs/state/risk_snapshot.json`; `kpis` is the last flat payload, if any yet."""
    shapes.check_era(era)
    rs = portfolio_router_stats(w)
    quality = router_quality(rs["maker_fill_ratio"], rs["fallback_ratio"], rs["slip_q50"])
    return shapes.risk_doc(
        era,
        updated_ts=w.now,
        symbols=[health_entry(w, s) for s in w.symbols],
        atr=atr_block(w),
        fee_pnl=fee_pnl_block(w),
        dd_state=w.dd_state if era == "v7.1" else _synth_state(w.dd_pct),
        drawdown=drawdown_snapshot(w),
        router_stats=shapes.risk_router_stats(
            maker=rs["maker_fill_ratio"],
            fallback=rs["fallback_ratio"],
            q25=rs["slip_q25"],
            q50=rs["slip_q50"],
            q75=rs["slip_q75"],
            quality=quality,
        ),
        nav_health=shapes.nav_health(now=w.now, nav_ts=w.nav_t, nav=w.nav_usd),
        n_positions=len(w.positions),
        kpis=kpis,
    )


# --- advanced risk (v7.6 on) -------------------------------------------------------------------

VAR_CONFIDENCE = 0.95
VAR_Z = 1.6448536269514722  # the standard normal's 95 % quantile
CVAR_FACTOR = 2.0627128075074257  # E[Z | Z > z] for that quantile: phi(z) / (1 - 0.95)
MAX_VAR_NAV = 0.12  # the demo desk's portfolio VaR limit, a fraction of NAV
CVAR_LIMIT_NAV = 0.04  # per symbol
VAR_LOOKBACK = 30


def risk_advanced_doc(w: World) -> dict[str, Any]:
    """`logs/state/risk_advanced.json`: a one-day parametric VaR of the open book at 95 %.

    Each symbol's daily move is its ATR in percent of price (scaled by the current ATR
    ratio); positions are taken as independent, so the book's VaR is z times the root of the
    summed squared exposures, and a symbol's CVaR is its own expected tail loss. NAV fractions,
    as the executor writes them.
    """
    exposure: dict[str, float] = {}
    for p in w.positions:
        sigma = w.atr_med_pct.get(p.symbol, 0.6) / 100.0 * w.atr_ratio.get(p.symbol, 1.0)
        exposure[p.symbol] = exposure.get(p.symbol, 0.0) + abs(p.qty * w.marks[p.symbol]) * sigma
    nav = w.nav_usd if w.nav_usd > 0 else 1.0
    var_usd = VAR_Z * math.sqrt(sum(e * e for e in exposure.values()))
    return shapes.risk_advanced_doc(
        updated_ts=w.now,
        var_nav_pct=round(var_usd / nav, 6),
        var_usd=round(var_usd, 2),
        max_var_nav_pct=MAX_VAR_NAV,
        confidence=VAR_CONFIDENCE,
        lookback=VAR_LOOKBACK if exposure else 0,
        cvar={
            symbol: (round(CVAR_FACTOR * e / nav, 6), round(CVAR_FACTOR * e, 2), CVAR_LIMIT_NAV)
            for symbol, e in sorted(exposure.items())
        },
    )


# --- router health ---------------------------------------------------------------------------


def quality_score(s: RouterStats) -> float:
    """A 0..1 router quality score (maker share, fallback and slippage)."""
    slip = min(1.0, s.slippage_p50_bps / 10.0)
    return r(0.5 * s.maker_fill_rate + 0.3 * (1.0 - s.fallback_rate) + 0.2 * (1.0 - slip), 6)


def router_doc(w: World, era: str) -> dict[str, Any]:
    """`logs/state/router_health.json`: v7.1 lists with ratios, v7.6 the stats shape."""
    shapes.check_era(era)
    entries: list[dict[str, Any]]
    if era == "v7.1":
        entries = [
            shapes.router_entry(
                sym,
                maker=s.maker_fill_rate,
                fallback=s.fallback_rate,
                p50=s.slippage_p50_bps,
                p95=s.slippage_p95_bps,
                ack_ms=s.ack_latency_ms,
                policy=_policy(s),
                updated_ts=w.now,
            )
            for sym, s in ((sym, w.router[sym]) for sym in w.symbols)
        ]
    else:
        entries = [
            shapes.router_stats_entry(
                sym,
                score=quality_score(w.router[sym]),
                slip_p50=w.router[sym].slippage_p50_bps,
                latency_ms=w.router[sym].ack_latency_ms,
                event_count=w.router[sym].event_count,
                last_ts=iso(w.now),
            )
            for sym in w.symbols
        ]
    return shapes.router_doc(era, updated_ts=w.now, entries=entries)


# --- positions -------------------------------------------------------------------------------


def positions_doc(w: World, era: str) -> dict[str, Any]:
    """`logs/state/positions.json` (4.6.1): camelCase `rows`; v7.6 adds snake_case `items`."""
    rows = []
    items = []
    for p in w.positions:
        mark = w.marks[p.symbol]
        pnl = p.pnl_usd(mark)
        rows.append(shapes.camel_row(p.symbol, p.side, p.qty, p.entry_price, mark, pnl, p.leverage))
        items.append(
            shapes.snake_row(
                p.symbol,
                p.qty,
                p.entry_price,
                mark,
                side=p.side,
                pnl=pnl,
                leverage=p.leverage,
                ts=w.now,
            )
        )
    return shapes.positions_doc(era, updated=w.now, rows=rows, items=items)
