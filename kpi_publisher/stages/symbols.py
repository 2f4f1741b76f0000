"""Per-symbol risk map: ATR ratio/regime, dd_state and today's drawdown by symbol.

Sources in order: risk.symbols, risk.atr.symbols, risk.kpis_v7.atr.symbols,
risk.kpis_v7.symbols (list or dict each). Per field the first valid value wins, read flat
first and then nested as in execution-health entries (vol.atr_ratio, risk.dd_today_pct ...).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from kpi_publisher.parse import (
    get,
    is_object,
    label,
    lower_label,
    mapping,
    number,
    per_symbol,
)
from kpi_publisher.stages.risk import dd_label

SOURCE_PATHS = ("symbols", "atr.symbols", "kpis_v7.atr.symbols", "kpis_v7.symbols")
FIELDS = ("atr_ratio", "atr_regime", "dd_state", "dd_today_pct")
# The top-level keys of the risk snapshot this stage reads (the pipeline hands it no others).
RISK_KEYS = tuple(dict.fromkeys(path.split(".")[0] for path in SOURCE_PATHS))
_NOTHING: tuple[None, ...] = (None,) * len(FIELDS)


def _read_entry(entry: Mapping[str, Any]) -> tuple[Any, ...]:
    """The four fields of one entry (FIELDS order), flat keys first (atr_ratio | ratio,
    atr_regime, dd_state, dd_today_pct), then the health entry's nested `vol` and `risk`
    blocks, read only when the flat keys gave nothing (per symbol).
    Runs for every open symbol and every listed one of every write, hence spelled out: a key
    that is absent (the common case) costs a lookup, no call."""
    get = entry.get
    value = get("atr_ratio")
    atr_ratio = None if value is None else number(value)
    if atr_ratio is None and (value := get("ratio")) is not None:
        atr_ratio = number(value)
    value = get("atr_regime")
    atr_regime = None if value is None else label(value)
    if atr_ratio is None or atr_regime is None:
        vol = get("vol")
        if type(vol) is dict or (vol is not None and is_object(vol)):
            if atr_ratio is None and (value := vol.get("atr_ratio")) is not None:
                atr_ratio = number(value)
            if atr_regime is None and (value := vol.get("atr_regime")) is not None:
                atr_regime = label(value)
    value = get("dd_state")
    dd_state = None if value is None else dd_label(value)
    value = get("dd_today_pct")
    dd_today = None if value is None else number(value)
    if dd_state is None or dd_today is None:
        risk = get("risk")
        if type(risk) is dict or (risk is not None and is_object(risk)):
            if dd_state is None and (value := risk.get("dd_state")) is not None:
                dd_state = lower_label(value) if type(value) is str else dd_label(value)
            if dd_today is None and (value := risk.get("dd_today_pct")) is not None:
                dd_today = number(value)
    return (atr_ratio, atr_regime, dd_state, dd_today)


def _in_order(rest: set[str], wanted: int) -> Iterator[str]:
    """`rest` by name; only the first `wanted` names are sorted up front (a 10,000-symbol
    universe rarely needs more), the remainder only if some had no value."""
    first = heapq.nsmallest(wanted, rest)
    yield from first
    if len(first) < len(rest):
        taken = set(first)
        yield from sorted(s for s in rest if s not in taken)


class _Sources:
    """The per-symbol sources of SOURCE_PATHS, in order, each indexed (`per_symbol`, a pass
    over a whole universe) only when a symbol first needs it: the real executor's first source
    gives every field, so the others are rarely read."""

    def __init__(
        self, risk: Mapping[str, Any], first: Mapping[str, Mapping[str, Any]] | None
    ) -> None:
        self._raw = [get(risk, path) for path in SOURCE_PATHS]
        self.indexed: list[Mapping[str, Mapping[str, Any]] | None] = [None] * len(self._raw)
        self.indexed[0] = first  # risk.symbols, when the caller has indexed it already

    def index(self, i: int) -> Mapping[str, Mapping[str, Any]]:
        found = self.indexed[i]
        if found is None:
            found = self.indexed[i] = per_symbol(self._raw[i])
        return found

    def names(self) -> set[str]:
        """Every symbol of every source."""
        return set().union(*(self.index(i) for i in range(len(self._raw))))


def _fields(symbol: str, sources: _Sources) -> tuple[Any, ...]:
    """One symbol's four fields (FIELDS order), each from the first source with a valid value
    for it; _NOTHING when no source has any."""
    merged: tuple[Any, ...] = _NOTHING
    indexed = sources.indexed
    for i in range(len(indexed)):
        entry = (indexed[i] or sources.index(i)).get(symbol)
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
    return merged


def _entry(fields: tuple[Any, ...], cvar: float | None) -> dict[str, Any] | None:
    """A symbol's entry in the `symbols` map; None when it has no value at all."""
    if fields == _NOTHING and cvar is None:
        return None
    atr_ratio, atr_regime, dd_state, dd_today = fields
    return {
        "atr_ratio": atr_ratio,
        "atr_regime": atr_regime,
        "dd_state": dd_state,
        "dd_today_pct": dd_today,
        "cvar_pct": cvar,
    }


def symbol_book(
    risk: Any,
    open_symbols: Iterable[str],
    cap: int,
    cvar_pct: Mapping[str, float | None] | None = None,
    risk_symbols: Mapping[str, Mapping[str, Any]] | None = None,
) -> tuple[dict[str, dict[str, Any]], dict[str, tuple[Any, ...]]]:
    """(the `symbols` map {SYMBOL: {atr_ratio, atr_regime, dd_state, dd_today_pct, cvar_pct}};
    every open symbol's four FIELDS, past the cap too).

    Open positions first in the map, then the rest by name, at most `cap`: only the symbols
    that make the cut are read field by field (and every open symbol), so a 10,000-symbol
    universe costs one pass to index it and a sort of its names. `cvar_pct` is each symbol's
    CVaR in percent of NAV (risk_advanced). The cap keeps the published map small; it never
    takes a listed position's risk fields away (`positions.held_risk` reads the second map,
    which holds a tuple in FIELDS order for every open symbol with a value: the join needs no
    more, and a book of thousands of positions builds no entry it does not publish).
    `risk_symbols` is `per_symbol` of risk.symbols when the caller has it already (the router
    stage indexes the same list).
    """
    sources = _Sources(mapping(risk), risk_symbols)
    cvars = cvar_pct or {}
    out: dict[str, dict[str, Any]] = {}
    held: dict[str, tuple[Any, ...]] = {}
    open_names = list(dict.fromkeys(open_symbols))
    for symbol in open_names:
        fields = _fields(symbol, sources)
        if fields is not _NOTHING:
            held[symbol] = fields
        if len(out) < cap and (entry := _entry(fields, cvars.get(symbol))) is not None:
            out[symbol] = entry
    if len(out) < cap:  # room left: the rest of the universe by name
        rest = sources.names().union(cvars).difference(open_names)
        for symbol in _in_order(rest, cap - len(out)):
            if len(out) >= cap:
                break
            entry = _entry(_fields(symbol, sources), cvars.get(symbol))
            if entry is not None:
                out[symbol] = entry
    return out, held
