"""Per-symbol risk map: ATR ratio/regime, dd_state and today's drawdown by symbol.

Sources in order: risk.symbols, risk.atr.symbols, risk.kpis_v7.atr.symbols,
risk.kpis_v7.symbols (list or dict each). Per field the first valid value wins, read flat
first and then nested as in execution-health entries (vol.atr_ratio, risk.dd_today_pct ...).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from kpi_publisher.parse import first_number, first_text, get, mapping, per_symbol
from kpi_publisher.stages.risk import dd_label

SOURCE_PATHS = ("symbols", "atr.symbols", "kpis_v7.atr.symbols", "kpis_v7.symbols")
FIELDS = ("atr_ratio", "atr_regime", "dd_state", "dd_today_pct")


def _read_entry(entry: Mapping[str, Any]) -> dict[str, Any]:
    dd_state = dd_label(entry.get("dd_state"))
    if dd_state is None:
        dd_state = dd_label(get(entry, "risk.dd_state"))
    return {
        "atr_ratio": first_number(entry, "atr_ratio", "ratio", "vol.atr_ratio"),
        "atr_regime": first_text(entry, "atr_regime", "vol.atr_regime"),
        "dd_state": dd_state,
        "dd_today_pct": first_number(entry, "dd_today_pct", "risk.dd_today_pct"),
    }


def build_symbols(risk: Any, open_symbols: Iterable[str], cap: int) -> dict[str, dict[str, Any]]:
    """{SYMBOL: {atr_ratio, atr_regime, dd_state, dd_today_pct}}: open positions first, capped."""
    risk = mapping(risk)
    merged: dict[str, dict[str, Any]] = {}
    for path in SOURCE_PATHS:
        for symbol, entry in per_symbol(get(risk, path)).items():
            values = _read_entry(entry)
            current = merged.setdefault(symbol, dict.fromkeys(FIELDS))
            for field, value in values.items():
                if current[field] is None and value is not None:
                    current[field] = value
    known = {s: v for s, v in merged.items() if any(x is not None for x in v.values())}
    held = [s for s in dict.fromkeys(open_symbols) if s in known]
    rest = sorted(s for s in known if s not in set(held))
    return {s: known[s] for s in (held + rest)[: max(0, cap)]}
