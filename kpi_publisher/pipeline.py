"""Composes the stages: sources + now -> the two published documents.

The only place that knows the order of the stages.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from kpi_publisher.contract import KPIS_SCHEMA, POSITIONS_SCHEMA, SCHEMA_VERSION, SourceRead
from kpi_publisher.parse import iso_utc
from kpi_publisher.stages import aum, fees, fx, nav, positions, risk, router, status, symbols


class BuildSettings(Protocol):
    """The settings a build reads (config.Settings has them all)."""

    @property
    def nav_fresh_s(self) -> float: ...

    @property
    def symbols_cap(self) -> int: ...

    def stale_limit_s(self, source: str) -> float | None: ...


def position_book(
    rows: list[dict[str, Any]],
    risk_doc: Any,
    symbols_cap: int,
    cvar: Mapping[str, float | None] | None = None,
    nav_usd: float | None = None,
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """(the `symbols` map, the {positions, totals} block) for normalised position rows.

    The held symbols come first in the map (capped at `symbols_cap`), and each row is joined
    with its symbol's risk fields. The executor's positions_state.json is built by this too.
    """
    symbol_map = symbols.build_symbols(risk_doc, [r["symbol"] for r in rows], symbols_cap, cvar)
    return symbol_map, positions.build_positions(rows, symbol_map, nav_usd)


@dataclass(frozen=True)
class Outputs:
    kpis: dict[str, Any]
    positions: dict[str, Any]


def build(sources: Mapping[str, SourceRead], now: float, settings: BuildSettings) -> Outputs:
    """Build kpis_v7 and positions_v7 from the sources as read at `now` (epoch seconds)."""
    data = {name: read.data for name, read in sources.items()}
    nav_state, nav_doc, risk_doc = data.get("nav_state"), data.get("nav"), data.get("risk")
    rate = fx.resolve_usd_zar(nav_state, nav_doc, data.get("fx"))
    rows, dropped_rows = positions.normalize_rows(data.get("positions"))
    held = [r["symbol"] for r in rows]
    nav_block = nav.build_nav(
        nav_state,
        nav_doc,
        usd_zar=rate["usd_zar"],
        now=now,
        nav_fresh_s=settings.nav_fresh_s,
        risk=risk_doc,
        positions_pnl_usd=positions.pnl_total(rows),
    )
    gross, net = positions.book_notionals(rows)
    risk_block = {
        **risk.build_risk(risk_doc, nav_state),
        "gross_exposure_pct": positions.exposure_pct(gross, nav_block["nav_usd"]),
        "net_exposure_pct": positions.exposure_pct(net, nav_block["nav_usd"]),
        **risk.build_var(data.get("risk_advanced")),
    }
    router_block = router.build_router(risk_doc, data.get("router"), held, settings.symbols_cap)
    fees_block = fees.build_fees(risk_doc)
    cvar = risk.cvar_by_symbol(data.get("risk_advanced"))
    symbol_map, book = position_book(
        rows, risk_doc, settings.symbols_cap, cvar, nav_usd=nav_block["nav_usd"]
    )
    aum_block = aum.build_aum(
        nav_state,
        nav_doc,
        data.get("fx"),
        data.get("holdings"),
        nav_usd=nav_block["nav_usd"],
        usd_zar=rate["usd_zar"],
    )
    aum_block["usd_zar_source"] = rate["usd_zar_source"]
    notes = {"positions": dropped_rows} if dropped_rows else None
    source_status = status.build_sources(sources, now, settings.stale_limit_s, notes)
    stamp = {"generated_at": now, "updated_at": iso_utc(now)}
    kpis = {
        "schema": KPIS_SCHEMA,
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
        "schema": POSITIONS_SCHEMA,
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
        **book,
    }
    return Outputs(kpis=kpis, positions=positions_doc)


__all__ = ["SCHEMA_VERSION", "BuildSettings", "Outputs", "build", "position_book"]
