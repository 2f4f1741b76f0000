"""Per-symbol risk map: ATR ratio/regime, dd_state and today's drawdown by symbol.

Sources in order: risk.symbols, risk.atr.symbols, risk.kpis_v7.atr.symbols,
risk.kpis_v7.symbols (list or dict each). Per field the first valid value wins, read flat
first and then nested as in execution-health entries (vol.atr_ratio, risk.dd_today_pct ...).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from kpi_publisher.parse import get, key_number, label, mapping, number, per_symbol
from kpi_publisher.stages.risk import dd_label

SOURCE_PATHS = ("symbols", "atr.symbols", "kpis_v7.atr.symbols", "kpis_v7.symbols")
FIELDS = ("atr_ratio", "atr_regime", "dd_state", "dd_today_pct")
ATR_RATIO_KEYS = ("atr_ratio", "ratio")  # flat, in order; then the health entry's vol.atr_ratio
# The top-level keys of the risk snapshot this stage reads (the pipeline hands it no others).
RISK_KEYS = tuple(dict.fromkeys(path.split(".")[0] for path in SOURCE_PATHS))
_NOTHING: tuple[None, ...] = (None,) * len(FIELDS)


def _read_entry(entry: Mapping[str, Any]) -> tuple[Any, ...]:
    """The four fields of one entry (FIELDS order), flat keys first, then the health entry's
    nested `vol` and `risk` blocks, read only when the flat keys gave nothing (per symbol).
    Runs for every symbol of every write, hence spelled out."""
    flat = entry.get
    atr_ratio = key_number(entry, ATR_RATIO_KEYS)
    atr_regime = label(flat("atr_regime"))
    if atr_ratio is None or atr_regime is None:
        vol = mapping(flat("vol"))
        if atr_ratio is None:
            atr_ratio = number(vol.get("atr_ratio"))
        if atr_regime is None:
            atr_regime = label(vol.get("atr_regime"))
    dd_state = dd_label(flat("dd_state"))
    dd_today = number(flat("dd_today_pct"))
    if dd_state is None or dd_today is None:
        risk = mapping(flat("risk"))
        if dd_state is None:
            dd_state = dd_label(risk.get("dd_state"))
        if dd_today is None:
            dd_today = number(risk.get("dd_today_pct"))
    return (atr_ratio, atr_regime, dd_state, dd_today)


def _in_order(held: list[str], rest: set[str], cap: int) -> Iterator[str]:
    """Held symbols, then the rest by name; only the first `cap` names are sorted up front
    (a 10,000-symbol universe rarely needs more), the remainder only if some had no value."""
    yield from held
    first = heapq.nsmallest(cap, rest)
    yield from first
    if len(first) < len(rest):
        taken = set(first)
        yield from sorted(s for s in rest if s not in taken)


def build_symbols(
    risk: Any,
    open_symbols: Iterable[str],
    cap: int,
    cvar_pct: Mapping[str, float | None] | None = None,
) -> dict[str, dict[str, Any]]:
    """{SYMBOL: {atr_ratio, atr_regime, dd_state, dd_today_pct, cvar_pct}}: open positions
    first, capped. `cvar_pct` is each symbol's CVaR in percent of NAV (risk_advanced).

    Only the symbols that make the cut are read field by field, so a 10,000-symbol universe
    costs one pass to index it and a sort of its names.
    """
    risk = mapping(risk)
    sources = [found for path in SOURCE_PATHS if (found := per_symbol(get(risk, path)))]
    out: dict[str, dict[str, Any]] = {}
    held = list(dict.fromkeys(open_symbols))
    cvars = cvar_pct or {}
    rest = set().union(*sources, cvars) - set(held)
    for symbol in _in_order(held, rest, cap):
        if len(out) >= cap:
            break
        merged: tuple[Any, ...] = _NOTHING
        for source in sources:
            entry = source.get(symbol)
            if entry is None:
                continue
            values = _read_entry(entry)
            if merged is _NOTHING:
                merged = values
            else:  # later sources only fill the gaps the earlier ones left
                pairs = zip(merged, values, strict=True)
                merged = tuple([m if m is not None else v for m, v in pairs])
            if None not in merged:
                break
        cvar = cvars.get(symbol)
        if merged != _NOTHING or cvar is not None:
            atr_ratio, atr_regime, dd_state, dd_today = merged
            out[symbol] = {
                "atr_ratio": atr_ratio,
                "atr_regime": atr_regime,
                "dd_state": dd_state,
                "dd_today_pct": dd_today,
                "cvar_pct": cvar,
            }
    return out
