"""Router: maker fill, fallback, slippage quartiles and quality (docs/CONTRACT_RULES.md, rule 9).

router_stats blocks come first; otherwise the per-symbol router_health entries are averaged.
`symbols` carries each symbol's own numbers from every per-symbol shape. Ratios are fractions
0..1, slippage is basis points; |slippage| >= 10,000 bps is the "no price" sentinel and reads
as missing. Quality is a label and never "good" for no data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from functools import cached_property
from typing import Any

from kpi_publisher.parse import (
    finite,
    first_label,
    get,
    is_object,
    key_number,
    lower_label,
    mapping,
    number,
    per_symbol,
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
# Worst first: the label reported from summary.quality_counts.
QUALITY_SEVERITY = ("broken", "degraded", "poor", "ok", "good")
PER_SYMBOL_PATHS = ("symbols", "per_symbol", "router_health.per_symbol", "symbol_stats")
# Per-symbol router stats inside the execution-health entries of risk.symbols.
STATS_ROW_PATHS = ("router", "components.router")
# The top-level keys of the risk snapshot this stage reads (the pipeline hands it no others):
# the router_stats blocks and the execution-health entries.
RISK_KEYS = ("router_stats", "kpis_v7", "symbols")
SLIP_FIELDS = frozenset(("slip_q25_bps", "slip_q50_bps", "slip_q75_bps"))
# The real router wrote +-10,000 bps (100 %) for "no price": a sentinel, never a measurement.
SLIP_SENTINEL_BPS = 10_000.0
# Events counted for one symbol: router stats, the stats-shaped router_health and the legacy
# symbol_stats (order_count) each name it differently.
SAMPLE_KEYS = ("samples", "sample_count", "event_count", "order_count")
# A count is published as an integer; past 2**53 a float no longer holds every whole number,
# and no router counts that many events: such a value is garbage, read as missing.
MAX_SAMPLES = 2**53
_SAMPLE_KEY_SET = frozenset(SAMPLE_KEYS)
# maker_reliability is a quality score (0.0 for a symbol that never routed an order): the
# contract's chain keeps it for the block-level mean, but a symbol's row never shows it as a
# fill rate.
SYMBOL_FIELD_KEYS: Mapping[str, tuple[str, ...]] = {
    "maker_fill_rate": tuple(k for k in FIELD_KEYS["maker_fill_rate"] if k != "maker_reliability"),
    "fallback_ratio": FIELD_KEYS["fallback_ratio"],
    "slip_q50_bps": FIELD_KEYS["slip_q50_bps"],
}

# The three per-symbol fields, in SYMBOL_FIELD_KEYS order, and their key chains.
_FILL, _FALLBACK, _SLIP = SYMBOL_FIELD_KEYS
_FILL_KEYS, _FALLBACK_KEYS, _SLIP_KEYS = SYMBOL_FIELD_KEYS.values()
_NOTHING: tuple[None, ...] = (None, None, None)


def _slippage(block: Mapping[str, Any], keys: tuple[str, ...]) -> float | None:
    """The first slippage (bps) under `keys` that is a measurement; sentinels read as missing."""
    for key in keys:
        value = number(block.get(key))
        if value is not None and abs(value) < SLIP_SENTINEL_BPS:
            return value
    return None


# Each field of FIELD_KEYS with its key chain and its reader (a slippage sentinel is none).
_FIELD_READERS = tuple(
    (name, keys, _slippage if name in SLIP_FIELDS else key_number)
    for name, keys in FIELD_KEYS.items()
)


def _fields(block: Any) -> dict[str, float | None]:
    """Each field of FIELD_KEYS read from `block` (a router_stats block or a per-symbol entry)."""
    block = mapping(block)
    return {name: read(block, keys) for name, keys, read in _FIELD_READERS}


def _mean(values: list[float]) -> float | None:
    summed = total(values) if values else None
    return None if summed is None else finite(summed / len(values))


def _aggregate(shapes: list[dict[str, Mapping[str, Any]]]) -> tuple[dict[str, float | None], int]:
    """Plain means over the per-symbol entries of the first shape in which at least one entry
    has a valid value (docs/CONTRACT_RULES.md, rule 5: a shape of value-less entries does not
    hide the next, as a value-less row does not give a symbol's row in `build_symbol_rows`),
    each field over the entries that have a valid value for it; and how many entries had one.
    Each entry is read by `_entry` (an entry that counts zero events has no value)."""
    for entries in shapes:
        collected: dict[str, list[float]] = {name: [] for name in FIELD_KEYS}
        used = 0
        for entry in entries.values():
            values, _ = _entry(entry, _fields)
            if values is None:
                continue
            if any(v is not None for v in values.values()):
                used += 1
            for name, value in values.items():
                if value is not None:
                    collected[name].append(value)
        if used:
            return {name: _mean(vals) for name, vals in collected.items()}, used
    return {name: None for name in FIELD_KEYS}, 0


def _worst_count(router: Any) -> str | None:
    counts = mapping(get(router, "summary.quality_counts"))
    nonzero = {str(k).lower() for k, v in counts.items() if (number(v) or 0.0) > 0}
    return next((label for label in QUALITY_SEVERITY if label in nonzero), None)


def _samples(row: Mapping[str, Any]) -> int | None:
    """The row's event count: a whole number from 0 to MAX_SAMPLES, else missing."""
    if _SAMPLE_KEY_SET.isdisjoint(row):  # most rows count nothing: one look in C
        return None
    value = key_number(row, SAMPLE_KEYS)
    if value is None or not 0 <= value <= MAX_SAMPLES or not value.is_integer():
        return None
    return int(value)


def _entry(
    row: Mapping[str, Any], read: Callable[[Mapping[str, Any]], Any] | None
) -> tuple[Any, int | None]:
    """The one reader of a per-symbol entry, for the means and the symbol rows alike: (its
    figures by `read`, its event count). An entry that counts zero events has no figures
    (None): the real router writes 0.0 fill and slippage beside `order_count: 0` for a symbol
    that never routed (a cold start), a placeholder that nothing measured
    (docs/CONTRACT_RULES.md, rule 5). With no `read`, only the count is read (the figures are
    `_NOTHING`, the three numbers of a symbol row: none)."""
    if _SAMPLE_KEY_SET.isdisjoint(row):  # most rows count nothing: one look in C
        samples = None
    else:
        samples = _samples(row)
        if samples == 0:
            return None, 0
    return (_NOTHING if read is None else read(row)), samples


def _symbol_numbers(row: Mapping[str, Any]) -> tuple[float | None, ...]:
    """A row's SYMBOL_FIELD_KEYS fields, in their order (runs for every symbol of every
    write, hence spelled out: fill and fallback by their chains, the slippage sentinel-aware)."""
    return (
        key_number(row, _FILL_KEYS),
        key_number(row, _FALLBACK_KEYS),
        _slippage(row, _SLIP_KEYS),
    )


def _nested_rows(
    indexed: Mapping[str, Mapping[str, Any]], paths: tuple[str, ...]
) -> list[dict[str, Mapping[str, Any]]]:
    """Per path, {SYMBOL: entry[path]} for the per-symbol entries (`per_symbol`, indexed once
    for every path) that carry an object there (`get`'s walk, inlined)."""
    out: list[dict[str, Mapping[str, Any]]] = []
    for path in paths:
        keys = path.split(".")
        rows: dict[str, Mapping[str, Any]] = {}
        for symbol, entry in indexed.items():
            row: Any = entry
            for key in keys:
                row = row.get(key) if type(row) is dict or is_object(row) else None
                if row is None:
                    break
            if row is not None and (type(row) is dict or is_object(row)):
                rows[symbol] = row
        out.append(rows)
    return out


class Health:
    """What the router stage reads from router_health.json alone, so that a new risk snapshot
    (every write of the executor) does not read it again: its per-symbol shapes, its own
    quality label and, when no router_stats block is used, the plain means over its
    per-symbol entries (`aggregate`, computed once when first asked for)."""

    def __init__(self, router: Any) -> None:
        self.shapes = [
            found for path in PER_SYMBOL_PATHS if (found := per_symbol(get(router, path)))
        ]
        self.quality = lower_label(get(router, "quality")) or _worst_count(router)

    @cached_property
    def aggregate(self) -> tuple[dict[str, float | None], int]:
        """(the means, how many entries had a value): `_aggregate` of `shapes`."""
        return _aggregate(self.shapes)


def health(router: Any) -> Health:
    """The router_health.json parts of the router block (`Health`)."""
    return Health(router)


def symbol_shapes(
    block: Any,
    risk: Any,
    router: Any,
    parts: Health | None = None,
    risk_symbols: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[dict[str, Mapping[str, Any]]]:
    """Every per-symbol router shape, router stats before router_health (the block order):
    the used router_stats block's own rows, the execution-health entries' `router` (and
    `components.router`) in risk.symbols, then router_health's lists and dicts in order.
    `risk_symbols` is `per_symbol` of risk.symbols when the caller has it already."""
    shapes = [per_symbol(get(block, path)) for path in PER_SYMBOL_PATHS if block is not None]
    if risk_symbols is None:
        risk_symbols = per_symbol(get(risk, "symbols"))
    shapes += _nested_rows(risk_symbols, STATS_ROW_PATHS)
    shapes += (parts if parts is not None else health(router)).shapes
    return [shape for shape in shapes if shape]


def build_symbol_rows(
    shapes: list[dict[str, Mapping[str, Any]]], open_symbols: Iterable[str], cap: int
) -> dict[str, dict[str, Any]]:
    """{SYMBOL: {maker_fill_rate, fallback_ratio, slip_q50_bps, samples}}.

    Each row is read by `_entry`, as for the means: a row that counts zero events has no
    value. A symbol's three numbers come from one row, the first (in `shapes` order) holding
    any of them, so they describe the same measurement; `samples` comes from the first row
    with a value that counts the symbol's events. A symbol whose rows all counted zero events
    is listed with null numbers and samples 0 (it never routed), never with their 0.0
    placeholders. Open positions first, then by name, at most `cap`; a symbol with nothing
    valid is left out. (Every row is an object: `per_symbol` and `_nested_rows` keep no
    other.)
    """
    known: set[str] = set().union(*shapes) if shapes else set()
    held = [s for s in dict.fromkeys(open_symbols) if s in known]
    out: dict[str, dict[str, Any]] = {}
    for symbol in held + sorted(known - set(held)):
        if len(out) >= cap:
            break
        numbers: tuple[float | None, ...] = _NOTHING
        samples: int | None = None
        counted_none = False
        # Once a row gave the numbers, later rows are read for their count alone.
        read: Callable[[Mapping[str, Any]], tuple[float | None, ...]] | None = _symbol_numbers
        for shape in shapes:
            row = shape.get(symbol)
            if row is None:
                continue
            values, count = _entry(row, read)
            if values is None:
                counted_none = True
                continue
            if read is not None and values != _NOTHING:
                numbers, read = values, None
            if samples is None:
                samples = count
            if samples is not None and read is None:
                break
        if samples is None and numbers is _NOTHING and counted_none:
            samples = 0
        if samples is not None or numbers is not _NOTHING:
            fill, fallback, slip = numbers
            out[symbol] = {
                _FILL: fill,
                _FALLBACK: fallback,
                _SLIP: slip,
                "samples": samples,
            }
    return out


def _block_values(block: Any) -> tuple[dict[str, float | None], str | None]:
    """A router_stats block's numeric fields and its quality, each by its own reader: what the
    block gives when it is used, and so what decides whether it exists."""
    return _fields(block), first_label(block, *QUALITY_KEYS, lower=True)


def build_router(
    risk: Any,
    router: Any,
    open_symbols: Iterable[str] = (),
    cap: int = 64,
    parts: Health | None = None,
    risk_symbols: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The `router` block. `parts` is `health(router)` and `risk_symbols` `per_symbol` of
    risk.symbols when the caller has them already (the symbols stage indexes the same list)."""
    risk = mapping(risk)
    if parts is None:
        parts = health(router)
    block: Any = None
    source: str | None = None
    values: dict[str, float | None] = {}
    quality: str | None = None
    for path, name in (
        ("router_stats", "risk_snapshot.router_stats"),
        ("kpis_v7.router_stats", "risk_snapshot.kpis_v7.router_stats"),
    ):
        candidate = get(risk, path)
        # A block exists only when the readers of its fields find a value: one of sentinels,
        # nulls and text that is no label does not, and the next one is used
        # (docs/CONTRACT_RULES.md, rules 4 and 5).
        values, quality = _block_values(candidate)
        if quality is not None or any(v is not None for v in values.values()):
            block, source = candidate, name
            break
    symbols_used: int | None = None
    if block is None:
        values, used = parts.aggregate
        if used:
            source, symbols_used = "router_health", used
    quality = quality or lower_label(get(risk, "kpis_v7.router_quality")) or parts.quality
    return {
        **values,
        "quality": quality,
        "source": source,
        "symbols_used": symbols_used,
        "symbols": build_symbol_rows(
            symbol_shapes(block, risk, router, parts, risk_symbols), open_symbols, cap
        ),
    }
