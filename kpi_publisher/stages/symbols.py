"""Per-symbol risk map: ATR ratio/regime, dd_state and today's drawdown by symbol.

Sources in order: risk.symbols, risk.atr.symbols, risk.kpis_v7.atr.symbols,
risk.kpis_v7.symbols (list or dict each). Per field the first valid value wins, read flat
first and then nested as in execution-health entries (vol.atr_ratio, risk.dd_today_pct ...).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from kpi_publisher.parse import get, key_number, mapping, number, per_symbol, text
from kpi_publisher.stages.risk import dd_label

SOURCE_PATHS = ("symbols", "atr.symbols", "kpis_v7.atr.symbols", "kpis_v7.symbols")
FIELDS = ("atr_ratio", "atr_regime", "dd_state", "dd_today_pct")
ATR_RATIO_KEYS = ("atr_ratio", "ratio")  # flat, in order; then the health entry's vol.atr_ratio
# The top-level keys of the risk snapshot this stage reads (the pipeline hands it no others).
RISK_KEYS = tuple(dict.fromkeys(path.split(".")[0] for path in SOURCE_PATHS))


def _or_nested(
    value: Any, entry: Mapping[str, Any], block: str, key: str, read: Callable[[Any], Any]
) -> Any:
    """`value`; when it is None, `read(entry[block][key])` (a health entry's nested block)."""
    return value if value is not None else read(mapping(entry.get(block)).get(key))


def _read_entry(entry: Mapping[str, Any]) -> tuple[Any, ...]:
    """The four fields of one entry (FIELDS order), flat keys first, then the health entry's
    nested `vol` and `risk` blocks, read only when the flat keys gave nothing (per symbol)."""
    return (
        _or_nested(key_number(entry, ATR_RATIO_KEYS), entry, "vol", "atr_ratio", number),
        _or_nested(text(entry.get("atr_regime")), entry, "vol", "atr_regime", text),
        _or_nested(dd_label(entry.get("dd_state")), entry, "risk", "dd_state", dd_label),
        _or_nested(number(entry.get("dd_today_pct")), entry, "risk", "dd_today_pct", number),
    )


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
    sources = [per_symbol(get(risk, path)) for path in SOURCE_PATHS]
    out: dict[str, dict[str, Any]] = {}
    held = list(dict.fromkeys(open_symbols))
    cvars = cvar_pct or {}
    rest = set().union(*sources, cvars) - set(held)
    for symbol in _in_order(held, rest, cap):
        if len(out) >= cap:
            break
        merged: list[Any] = [None] * len(FIELDS)
        missing = len(FIELDS)
        for source in sources:
            entry = source.get(symbol)
            if entry is None:
                continue
            for index, value in enumerate(_read_entry(entry)):
                if merged[index] is None and value is not None:
                    merged[index] = value
                    missing -= 1
            if not missing:
                break  # later sources only fill gaps; there are none
        cvar = cvars.get(symbol)
        if missing < len(FIELDS) or cvar is not None:
            out[symbol] = {**dict(zip(FIELDS, merged, strict=True)), "cvar_pct": cvar}
    return out
