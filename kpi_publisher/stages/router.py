"""Router: maker fill, fallback, slippage quartiles and quality (contract 4, `router`).

router_stats blocks come first; otherwise the per-symbol router_health entries are averaged.
Ratios are fractions 0..1, slippage is basis points. Quality is a label and never "good"
for no data.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kpi_publisher.parse import (
    finite,
    first_number,
    first_text,
    get,
    has_valid,
    mapping,
    number,
    per_symbol,
    text,
    total,
)

FIELD_KEYS: Mapping[str, tuple[str, ...]] = {
    "maker_fill_rate": (
        "maker_fill_rate",
        "maker_fill_ratio",
        "maker_fill_share",
        "maker_fill",
        "maker_ratio",
        "maker_rate",
        "maker_reliability",
    ),
    "fallback_ratio": ("fallback_ratio", "fallback_rate", "fallback"),
    "slip_q25_bps": ("slip_q25_bps", "slip_q25", "slippage_p25"),
    "slip_q50_bps": (
        "slip_q50_bps",
        "slip_q50",
        "slippage_p50",
        "slippage_bps",
        "avg_slippage_bps",
    ),
    "slip_q75_bps": ("slip_q75_bps", "slip_q75", "slippage_p75"),
}
QUALITY_KEYS = ("quality", "policy_quality")
ALL_NUMBER_KEYS = tuple(k for keys in FIELD_KEYS.values() for k in keys)
# Worst first: the label reported from summary.quality_counts.
QUALITY_SEVERITY = ("broken", "degraded", "poor", "ok", "good")
PER_SYMBOL_PATHS = ("symbols", "per_symbol", "router_health.per_symbol", "symbol_stats")


def _fields(block: Any) -> dict[str, float | None]:
    return {name: first_number(block, *keys) for name, keys in FIELD_KEYS.items()}


def _mean(values: list[float]) -> float | None:
    summed = total(values) if values else None
    return None if summed is None else finite(summed / len(values))


def _aggregate(router: Any) -> tuple[dict[str, float | None], int]:
    """Plain means over per-symbol entries that have a valid value for each field."""
    entries: dict[str, Mapping[str, Any]] = {}
    for path in PER_SYMBOL_PATHS:
        entries = per_symbol(get(router, path))
        if entries:
            break
    collected: dict[str, list[float]] = {name: [] for name in FIELD_KEYS}
    used = 0
    for entry in entries.values():
        values = _fields(entry)
        if any(v is not None for v in values.values()):
            used += 1
        for name, value in values.items():
            if value is not None:
                collected[name].append(value)
    return {name: _mean(vals) for name, vals in collected.items()}, used


def _label(value: Any) -> str | None:
    label = text(value)
    return label.lower() if label is not None else None


def _worst_count(router: Any) -> str | None:
    counts = mapping(get(router, "summary.quality_counts"))
    nonzero = {str(k).lower() for k, v in counts.items() if (number(v) or 0.0) > 0}
    return next((label for label in QUALITY_SEVERITY if label in nonzero), None)


def build_router(risk: Any, router: Any) -> dict[str, Any]:
    """The `router` block."""
    risk = mapping(risk)
    block: Any = None
    source: str | None = None
    for path, name in (
        ("router_stats", "risk_snapshot.router_stats"),
        ("kpis_v7.router_stats", "risk_snapshot.kpis_v7.router_stats"),
    ):
        candidate = get(risk, path)
        if has_valid(candidate, numbers=ALL_NUMBER_KEYS, labels=QUALITY_KEYS):
            block, source = candidate, name
            break
    symbols_used: int | None = None
    if block is not None:
        values = _fields(block)
    else:
        values, used = _aggregate(router)
        if used:
            source, symbols_used = "router_health", used
        else:
            values = {name: None for name in FIELD_KEYS}
    quality = (
        (_label(first_text(block, *QUALITY_KEYS)) if block is not None else None)
        or _label(get(risk, "kpis_v7.router_quality"))
        or _label(get(router, "quality"))
        or _worst_count(router)
    )
    return {**values, "quality": quality, "source": source, "symbols_used": symbols_used}
