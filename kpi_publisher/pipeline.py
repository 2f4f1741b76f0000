"""Composes the stages: sources + now -> the two published documents.

The only place that knows the order of the stages.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kpi_publisher.config import Settings
from kpi_publisher.parse import iso_utc
from kpi_publisher.sources import SourceRead
from kpi_publisher.stages import aum, fees, fx, nav, positions, risk, router, status, symbols

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Outputs:
    kpis: dict[str, Any]
    positions: dict[str, Any]


def build(sources: Mapping[str, SourceRead], now: float, settings: Settings) -> Outputs:
    """Build kpis_v7 and positions_v7 from the sources as read at `now` (epoch seconds)."""
    data = {name: read.data for name, read in sources.items()}
    nav_state, nav_doc, risk_doc = data.get("nav_state"), data.get("nav"), data.get("risk")
    rate = fx.resolve_usd_zar(nav_state, nav_doc, data.get("fx"))
    nav_block = nav.build_nav(
        nav_state, nav_doc, usd_zar=rate["usd_zar"], now=now, nav_fresh_s=settings.nav_fresh_s
    )
    risk_block = risk.build_risk(risk_doc, nav_state)
    router_block = router.build_router(risk_doc, data.get("router"))
    fees_block = fees.build_fees(risk_doc)
    rows = positions.normalize(data.get("positions"))
    symbol_map = symbols.build_symbols(risk_doc, (r["symbol"] for r in rows), settings.symbols_cap)
    aum_block = aum.build_aum(
        nav_state,
        nav_doc,
        data.get("fx"),
        data.get("holdings"),
        nav_usd=nav_block["nav_usd"],
        usd_zar=rate["usd_zar"],
    )
    aum_block["usd_zar_source"] = rate["usd_zar_source"]
    mismatch = aum.stated_total_mismatch(nav_state, nav_doc, aum_block["total_usd"])
    source_status = status.build_sources(
        sources, now, settings.stale_limit_s, dict([mismatch]) if mismatch else None
    )
    stamp = {"generated_at": now, "updated_at": iso_utc(now)}
    kpis = {
        "schema": "hedge.kpis_v7",
        "schema_version": SCHEMA_VERSION,
        **stamp,
        "ts": now,
        "nav": nav_block,
        "risk": risk_block,
        "router": router_block,
        "fees": fees_block,
        "aum": aum_block,
        "symbols": symbol_map,
        "sources": source_status,
        "dd_state": risk_block["dd_state"],
        "atr_regime": risk_block["atr_regime"],
        "fee_pnl_ratio": fees_block["fee_pnl_ratio"],
        "router_quality": router_block["quality"],
    }
    pos_read = sources.get("positions")
    pos_status = source_status["positions"]
    positions_doc = {
        "schema": "hedge.positions_v7",
        "schema_version": SCHEMA_VERSION,
        **stamp,
        "source": {
            "file": pos_read.path.name
            if pos_read and pos_read.path and pos_read.data is not None
            else None,
            "status": pos_status["status"],
            "age_s": pos_status["age_s"],
            "error": pos_status["error"],
        },
        **positions.build_positions(rows, symbol_map),
    }
    return Outputs(kpis=kpis, positions=positions_doc)


__all__ = ["SCHEMA_VERSION", "Outputs", "build"]
