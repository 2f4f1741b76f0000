"""AUM: one slice per asset in USD and ZAR, Futures first, no dollar counted twice.

The AUM block is the first that exists of nav_state.aum, nav.aum, nav.nav_detail.aum. The
non-futures assets come from the first source that exists of: aum.assets, aum.offexchange,
the holdings config, nav_detail.asset_breakdown. Prices for a holding: its own mark, then
nav_detail.conversions[SYM].price, then the price cache, then its avg_cost.

The slices stay few whatever the inputs: beyond MAX_ASSET_SLICES other assets, the smallest
are summed into one last slice, so total_usd is unchanged and kpis_v7.json stays small.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kpi_publisher.parse import (
    MAX_LABEL_CHARS,
    finite,
    first_number,
    first_text,
    get,
    mapping,
    number,
    text,
    total,
)
from kpi_publisher.stages.fx import to_zar
from kpi_publisher.stages.nav import nav_unavailable

FUTURES = "Futures"
VALUE_KEYS = ("usd", "usd_value", "value_usd", "val_usdt", "market_value")
CENT = 0.01
# Slices besides Futures; the smallest beyond the first MAX_ASSET_SLICES - 1 are summed into
# one slice labelled "<n> smaller assets" (lower case: never an asset's upper-case label).
MAX_ASSET_SLICES = 100


def _block_exists(block: Any) -> bool:
    if not isinstance(block, Mapping) or not block:
        return False
    return (
        first_number(block, "futures", "total") is not None
        or bool(_assets_list(block))
        or bool(holding_map(block.get("offexchange")))
    )


def _assets_list(block: Any) -> list[Mapping[str, Any]]:
    assets = get(block, "assets")
    if not isinstance(assets, list):
        return []
    return [a for a in assets if isinstance(a, Mapping) and first_text(a, "asset", "label")]


def holding_map(value: Any) -> dict[str, Mapping[str, Any]]:
    """{SYM: entry} from a holdings-style map; non-object entries are skipped."""
    if not isinstance(value, Mapping):
        return {}
    return {
        str(k).strip().upper(): v
        for k, v in value.items()
        if isinstance(v, Mapping) and isinstance(k, str) and k.strip()
    }


# The AUM figures a writer builds from its NAV: 0 in a file whose NAV is unavailable is none.
NAV_BUILT_KEYS = ("futures", "total")


def _without_unavailable_nav(block: Any, doc: Any) -> Any:
    """`block` without the 0 futures wallet and total that a file whose NAV could not be
    computed states (`nav.nav_unavailable`): read as missing, as that NAV is (contract rule 1),
    so the Futures slice falls back to the NAV in use."""
    if not isinstance(block, Mapping) or not nav_unavailable(doc):
        return block
    return {k: v for k, v in block.items() if not (k in NAV_BUILT_KEYS and number(v) == 0.0)}


def aum_block(nav_state: Any, nav: Any) -> tuple[Mapping[str, Any], str | None]:
    """The AUM block in use and the NAV source it came from ("nav_state" | "nav" | None)."""
    for block, source, doc in (
        (get(nav_state, "aum"), "nav_state", nav_state),
        (get(nav, "aum"), "nav", nav),
        (get(nav, "nav_detail.aum"), "nav", nav),
    ):
        block = _without_unavailable_nav(block, doc)
        if _block_exists(block):
            return block, source
    return {}, None


def _lookup(table: Any, symbol: str) -> Any:
    table = mapping(table)
    return table.get(symbol, table.get(symbol.lower()))


def _positive(value: Any) -> float | None:
    x = number(value)
    return x if x is not None and x > 0 else None


class _Pricer:
    """Price lookups in contract order, each a positive USD price or None."""

    def __init__(self, nav_state: Any, nav: Any, fx: Any) -> None:
        self._conversions = [
            get(nav, "nav_detail.conversions"),
            get(nav_state, "nav_detail.conversions"),
        ]
        self._prices = get(fx, "prices")

    def price(self, symbol: str, entry: Mapping[str, Any]) -> float | None:
        candidates = [entry.get("mark")]
        candidates += [get(_lookup(c, symbol), "price") for c in self._conversions]
        candidates += [_lookup(self._prices, symbol), entry.get("avg_cost")]
        for candidate in candidates:
            price = _positive(candidate)
            if price is not None:
                return price
        return None


def _value(symbol: str, entry: Mapping[str, Any], pricer: _Pricer) -> dict[str, Any] | None:
    """A slice for one holding, or None when it cannot be valued."""
    qty = first_number(entry, "qty", "quantity", "amount", "balance")
    usd = first_number(entry, *VALUE_KEYS)
    if usd is None:
        if qty == 0.0:
            usd = 0.0
        elif qty is not None:
            price = pricer.price(symbol, entry)
            usd = None if price is None else finite(qty * price)
    if usd is None:
        return None
    pnl = first_number(entry, "pnl", "pnl_usd")
    avg_cost = first_number(entry, "avg_cost")
    if pnl is None and avg_cost is not None and qty is not None:
        pnl = finite(usd - avg_cost * qty)
    return {"label": symbol, "usd": usd, "qty": qty, "pnl_usd": pnl}


def _cut(name: str) -> str:
    """An asset name too long to be a label, cut to MAX_LABEL_CHARS for `unpriced`."""
    return name[: MAX_LABEL_CHARS - 1] + "…"


def _holdings_slices(
    holdings: Mapping[str, Mapping[str, Any]], pricer: _Pricer
) -> tuple[list[dict[str, Any]], list[str]]:
    slices, unpriced = [], []
    for symbol, entry in holdings.items():
        # A name longer than any asset's is not valued: one string must not grow the output.
        item = _value(symbol, entry, pricer) if len(symbol) <= MAX_LABEL_CHARS else None
        if item is None:
            unpriced.append(symbol if len(symbol) <= MAX_LABEL_CHARS else _cut(symbol))
        else:
            slices.append(item)
    return slices, unpriced


def _fold_smallest(others: list[dict[str, Any]], unpriced: list[str]) -> list[dict[str, Any]]:
    """`others` (sorted, largest first) with the smallest beyond MAX_ASSET_SLICES - 1 summed
    into one slice; when that sum overflows, those assets are named in `unpriced` instead."""
    if len(others) <= MAX_ASSET_SLICES:
        return others
    kept, rest = others[: MAX_ASSET_SLICES - 1], others[MAX_ASSET_SLICES - 1 :]
    usd = total(s["usd"] for s in rest)
    if usd is None:
        unpriced.extend(s["label"] for s in rest)
        return kept
    pnls = [s["pnl_usd"] for s in rest]
    pnl = None if None in pnls else total(pnls)
    label = f"{len(rest):,} smaller assets"
    return [*kept, {"label": label, "usd": usd, "qty": None, "pnl_usd": pnl}]


def build_aum(
    nav_state: Any,
    nav: Any,
    fx: Any,
    holdings: Any,
    *,
    nav_usd: float | None,
    usd_zar: float | None,
) -> dict[str, Any]:
    """The `aum` block: slices, totals in USD and ZAR, the rate used, unpriced assets and the
    block's own stated total."""
    block, _ = aum_block(nav_state, nav)
    pricer = _Pricer(nav_state, nav, fx)
    listed = _assets_list(block)
    futures_entry = next(
        (a for a in listed if (first_text(a, "asset", "label") or "").lower() == FUTURES.lower()),
        None,
    )
    futures = first_number(block, "futures")
    if futures is None:
        futures = nav_usd

    others: list[dict[str, Any]] = []
    unpriced: list[str] = []
    breakdown = mapping(get(nav, "nav_detail.asset_breakdown")) or mapping(
        get(nav_state, "nav_detail.asset_breakdown")
    )
    assets: dict[str, Mapping[str, Any]] = {}
    for entry in listed:
        if entry is not futures_entry:
            assets.setdefault((first_text(entry, "asset", "label") or "").upper(), entry)
    offexchange = holding_map(block.get("offexchange"))
    config = holding_map(holdings)
    if assets:
        others, unpriced = _holdings_slices(assets, pricer)
    elif offexchange:
        others, unpriced = _holdings_slices(offexchange, pricer)
    elif config:
        others, unpriced = _holdings_slices(config, pricer)
    elif breakdown:
        values = {str(k).strip().upper(): number(v) for k, v in breakdown.items() if text(k)}
        unpriced = [_cut(k) for k in values if len(k) > MAX_LABEL_CHARS]
        others = [
            {"label": k, "usd": v, "qty": None, "pnl_usd": None}
            for k, v in values.items()
            if v is not None and len(k) <= MAX_LABEL_CHARS
        ]
        inside = total(s["usd"] for s in others)
        if futures is not None and inside is not None and inside <= futures + CENT / 2:
            reduced = finite(futures - inside)
            if reduced is not None:  # negative entries can make it overflow: none inside then
                futures = reduced

    slices: list[dict[str, Any]] = []
    if futures is not None:
        pnl = first_number(futures_entry, "pnl", "pnl_usd") if futures_entry is not None else None
        slices.append({"label": FUTURES, "usd": futures, "qty": None, "pnl_usd": pnl})
    else:
        unpriced.insert(0, FUTURES)
    others = [s for s in others if s["usd"] != 0.0]
    others.sort(key=lambda s: (-s["usd"], s["label"]))
    slices.extend(_fold_smallest(others, unpriced))
    for item in slices:
        item["zar"] = to_zar(item["usd"], usd_zar)
    total_usd = total(s["usd"] for s in slices) if slices else None
    return {
        "slices": slices,
        "total_usd": total_usd,
        "total_zar": to_zar(total_usd, usd_zar),
        "usd_zar": usd_zar,
        "unpriced": sorted(set(unpriced)),
        # As stated by the writer: the real live writer states the futures wallet alone here,
        # so it may differ from total_usd without anything being wrong.
        "stated_total_usd": first_number(block, "total"),
    }
