"""Composes the stages: sources + now -> the two published documents.

The only place that knows the order of the stages.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from kpi_publisher.contract import KPIS_SCHEMA, POSITIONS_SCHEMA, SCHEMA_VERSION, SourceRead
from kpi_publisher.parse import get, iso_utc, per_symbol
from kpi_publisher.stages import (
    aum,
    fees,
    fx,
    legacy,
    nav,
    positions,
    risk,
    router,
    status,
    symbols,
)

_T = TypeVar("_T")


class BuildSettings(Protocol):
    """The settings a build reads (config.Settings has them all)."""

    @property
    def nav_fresh_s(self) -> float: ...

    @property
    def symbols_cap(self) -> int: ...

    def stale_limit_s(self, source: str) -> float | None: ...


class StageRunner(Protocol):
    """Runs one stage: `fn(*args)`, or the result it gave before for the same `args`."""

    def __call__(self, stage: str, fn: Callable[..., _T], /, *args: Any) -> _T: ...


class View(dict[str, Any]):
    """The top-level entries of a source document that one stage reads, and no others.

    A stage handed a view depends on those entries alone: `Incremental` re-runs it only when
    one of them is a new object (the reader keeps unchanged entries as the same objects,
    `sources.share_unchanged`), and `build` hands it the same view, so both give the same
    result. Each stage module names its keys (`RISK_KEYS`).
    """


def view(doc: Any, keys: tuple[str, ...]) -> Any:
    """`doc`'s entries under `keys` as a View; a missing document (None) stays None."""
    if type(doc) is not dict:
        return doc
    return View({key: doc[key] for key in keys if key in doc})


def _compute(stage: str, fn: Callable[..., _T], /, *args: Any) -> _T:
    return fn(*args)


def _position_book(
    run: StageRunner,
    rows: list[dict[str, Any]],
    listed: list[dict[str, Any]],
    held: list[str],
    risk_doc: Any,
    risk_symbols: Mapping[str, Mapping[str, Any]],
    symbols_cap: int,
    cvar: Mapping[str, float | None] | None,
    nav_usd: float | None,
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """`position_book`, each stage run through `run`; `listed` are the rows listed
    (`positions.listed`), `held` their symbols, `risk_symbols` risk.symbols indexed."""
    risk_view = view(risk_doc, symbols.RISK_KEYS)
    symbol_map, held_fields = run(
        "symbols", symbols.symbol_book, risk_view, held, symbols_cap, cvar, risk_symbols
    )
    # Every listed row is joined with its symbol's risk fields: the cap is the published
    # map's alone.
    held_risk = run("held_risk", positions.held_risk, listed, held_fields)
    joined = run("joined", positions.join_risk, listed, held_risk)
    sums = run("book_sums", positions.book_sums, rows)  # the whole book, listed or not
    return symbol_map, {
        "positions": joined,
        "totals": positions.book_totals(rows, sums, nav_usd),
    }


def _aum(
    nav_state: Any, nav_doc: Any, fx_doc: Any, holdings: Any, nav_usd: float | None,
    rate: Mapping[str, Any],
) -> dict[str, Any]:  # fmt: skip
    return {
        **aum.build_aum(
            nav_state, nav_doc, fx_doc, holdings, nav_usd=nav_usd, usd_zar=rate["usd_zar"]
        ),
        "usd_zar_source": rate["usd_zar_source"],
    }


def _symbols_of(rows: list[dict[str, Any]]) -> list[str]:
    return [r["symbol"] for r in rows]


def position_book(
    rows: list[dict[str, Any]],
    risk_doc: Any,
    symbols_cap: int,
    cvar: Mapping[str, float | None] | None = None,
    nav_usd: float | None = None,
    *,
    every_row: bool = False,
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """(the `symbols` map, the {positions, totals} block) for normalised position rows.

    The held symbols come first in the map (capped at `symbols_cap`), and each row is joined
    with its symbol's risk fields, past the cap too. The block lists the rows positions_v7.json
    lists (`positions.listed`), or all of them with `every_row`: the executor's
    positions_state.json is built by this too, and an input file must hold the whole book
    (the publisher lists from it and totals all of it).
    """
    listed = rows if every_row else positions.listed(rows)
    indexed = per_symbol(get(risk_doc, "symbols"))
    return _position_book(
        _compute, rows, listed, _symbols_of(listed), risk_doc, indexed, symbols_cap, cvar, nav_usd
    )


@dataclass(frozen=True)
class Outputs:
    kpis: dict[str, Any]
    positions: dict[str, Any]


def build(sources: Mapping[str, SourceRead], now: float, settings: BuildSettings) -> Outputs:
    """Build kpis_v7 and positions_v7 from the sources as read at `now` (epoch seconds)."""
    return _compose(sources, now, settings, _compute)


class Incremental:
    """`build` for a caller that builds again and again (the daemon): a stage runs again only
    when its inputs changed, so a NAV change does not rebuild a thousand symbols.

    A stage's inputs are source documents or views of them (the top-level keys it reads),
    results of other stages, the NAV and settings values. The reader hands back the very same
    object for a document, and for each top-level block of it, until its JSON changes, and a
    stage result is reused while every input is the same object (an equal int or float, a view
    of the same blocks), so the outputs are those of `build`, byte for byte. What reads `now`
    runs every time: the NAV's age and freshness (`nav.nav_block`, over the reused
    `nav.nav_values`) and the sources block. Reused blocks appear in successive outputs: only
    those rebuilt every time (nav, sources, the positions file's `source`) may be changed in
    place afterwards.
    """

    def __init__(self) -> None:
        # Per stage: the arguments of its last run (held, so no id is reused) and its result.
        self._last: dict[str, tuple[tuple[Any, ...], Any]] = {}

    def _run(self, stage: str, fn: Callable[..., _T], /, *args: Any) -> _T:
        last = self._last.get(stage)
        if last is not None and len(last[0]) == len(args):
            before = last[0]
            # The same objects (checked in C), else the same values in `_same`'s sense.
            if all(map(operator.is_, before, args)) or all(map(_same, before, args)):
                result: _T = last[1]
                return result
        result = fn(*args)
        self._last[stage] = (args, result)
        return result

    def __call__(
        self, sources: Mapping[str, SourceRead], now: float, settings: BuildSettings
    ) -> Outputs:
        """The outputs `build(sources, now, settings)` gives."""
        return _compose(sources, now, settings, self._run)


def _same(before: Any, now: Any) -> bool:
    """The same object, the same int (settings values such as the symbols cap), float (the
    NAV, computed anew each pass; 0.0 and -0.0 differ, NaN is never the same) or string,
    tuples of such values item by item (a projection such as `positions.held_risk`, equal
    while what it keeps stands), or views of the same entries."""
    if before is now:
        return True
    kind = type(before)
    if kind is not type(now):
        return False
    if kind is int:
        return bool(before == now)
    if kind is float:
        return bool(before == now) and math.copysign(1.0, before) == math.copysign(1.0, now)
    if kind is str:
        return bool(before == now)
    if kind is tuple:  # a stage's result of plain values (positions.held_risk)
        return len(before) == len(now) and all(map(_same, before, now))
    return (
        kind is View
        and before.keys() == now.keys()
        and all(map(operator.is_, before.values(), now.values()))
    )


def _compose(
    sources: Mapping[str, SourceRead], now: float, settings: BuildSettings, run: StageRunner
) -> Outputs:
    data = {name: read.data for name, read in sources.items()}
    nav_state, nav_doc, risk_doc = data.get("nav_state"), data.get("nav"), data.get("risk")
    cap = settings.symbols_cap
    rate = run("fx", fx.resolve_usd_zar, nav_state, nav_doc, data.get("fx"))
    rows, dropped_rows = run("rows", positions.normalize_rows, data.get("positions"))
    nav_values = run(
        "nav", nav.nav_values, nav_state, nav_doc, rate["usd_zar"],
        view(risk_doc, nav.RISK_KEYS), run("rows_pnl", positions.pnl_total, rows),
    )  # fmt: skip
    nav_block = nav.nav_block(
        nav_values,
        nav_state,
        nav_doc,
        now=now,
        nav_fresh_s=settings.nav_fresh_s,
        min_age_s={name: read.min_age_s for name, read in sources.items()},
    )
    gross, net = run("rows_notionals", positions.book_notionals, rows)
    risk_base = run("risk", risk.build_risk, view(risk_doc, risk.RISK_KEYS), nav_state)
    risk_block = {
        **risk_base,
        "gross_exposure_pct": positions.exposure_pct(gross, nav_block["nav_usd"]),
        "net_exposure_pct": positions.exposure_pct(net, nav_block["nav_usd"]),
        **run("var", risk.build_var, data.get("risk_advanced")),
    }
    listed = run("listed", positions.listed, rows)
    held = run("held", _symbols_of, listed)
    router_doc = data.get("router")
    # risk.symbols, indexed once for the router and the symbols stages (10,000 entries).
    risk_symbols = run("risk_symbols", per_symbol, get(risk_doc, "symbols"))
    router_block = run(
        "router", router.build_router, view(risk_doc, router.RISK_KEYS), router_doc, held, cap,
        run("router_health", router.health, router_doc), risk_symbols,
    )  # fmt: skip
    fees_block = run("fees", fees.build_fees, view(risk_doc, fees.RISK_KEYS))
    cvar = run("cvar", risk.cvar_by_symbol, data.get("risk_advanced"))
    symbol_map, book = _position_book(
        run, rows, listed, held, risk_doc, risk_symbols, cap, cvar, nav_block["nav_usd"]
    )
    aum_block = run(
        "aum", _aum, nav_state, nav_doc, data.get("fx"), data.get("holdings"),
        nav_block["nav_usd"], rate,
    )  # fmt: skip
    old_payload = run(
        "legacy", legacy.build_legacy, risk_base, router_block, fees_block, symbol_map
    )
    var_note = run("var_note", risk.var_note, data.get("risk_advanced"))
    notes = {
        name: note
        for name, note in (("positions", dropped_rows), ("risk_advanced", var_note))
        if note
    }
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
        **old_payload,
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


__all__ = [
    "SCHEMA_VERSION",
    "BuildSettings",
    "Incremental",
    "Outputs",
    "View",
    "build",
    "position_book",
    "view",
]
