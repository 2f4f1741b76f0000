"""AUM: one slice per asset in USD and ZAR, Futures first, no dollar counted twice.

The AUM block is the first that exists of nav_state.aum, nav.aum, nav.nav_detail.aum. The
non-futures assets come from the first source that exists of: aum.assets, aum.offexchange,
the holdings config, nav_detail.asset_breakdown (nav.json's, then nav_state.json's). Prices for
a holding: its own mark, then nav_detail.conversions[SYM].price, then the price cache, then its
avg_cost.

A source exists only if it gives a value (docs/CONTRACT_RULES.md, rule 5), judged by the reader
that values it (`_valued`), the same for every source: a holding gives one when it states a
USD value, or a qty with a price from that chain (a qty of 0 is worth 0.0: zero is a value); a
breakdown entry when it states a USD value. A block exists when it states `futures` or `total`,
a pnl for its Futures entry, or one of its assets or off-exchange holdings gives a value. An
entry that states neither a qty nor a USD value is no holding and is ignored. A source with no
value does not hide the next; its holdings that could not be valued are still named in
`unpriced`, unless a slice published by that name carries them (a slice of 0 USD is dropped,
one folded into "<n> smaller assets" is not published by its name: neither does).

Every source reads asset names one way (`_asset_name`: `parse.symbol`, stripped and
upper-cased), the first entry for a name winning, as `parse.per_symbol` does for symbols.

The block stays small whatever the inputs: beyond MAX_ASSET_SLICES other assets, the smallest
are summed into one last slice, so total_usd is unchanged; beyond MAX_UNPRICED names,
`unpriced` names the first by sort order and one last entry "<n> more". So kpis_v7.json stays
far under the readers' 16 MiB cap (docs/RELIABILITY.md).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from kpi_publisher.contract import MAX_UNPRICED, unpriced_more
from kpi_publisher.parse import (
    MAX_LABEL_CHARS,
    finite,
    first_number,
    first_text,
    get,
    has_control,
    is_object,
    mapping,
    number,
    symbol,
    text,
    total,
)
from kpi_publisher.stages.fx import to_zar
from kpi_publisher.stages.nav import nav_unavailable

FUTURES = "Futures"
VALUE_KEYS = ("usd", "usd_value", "value_usd", "val_usdt", "market_value")
QTY_KEYS = ("qty", "quantity", "amount", "balance")
NAME_KEYS = ("asset", "label")
CENT = 0.01
# Slices besides Futures; the smallest beyond the first MAX_ASSET_SLICES - 1 are summed into
# one slice labelled "<n> smaller assets" (lower case: never an asset's upper-case label).
MAX_ASSET_SLICES = 100
# `unpriced` names at most MAX_UNPRICED assets (the contract's), then one entry "<n> more"
# (`unpriced_more`; lower case: never an asset's upper-case name). 420,000 names in two
# 16 MiB inputs made a 28 MB kpis_v7.json that `check` and the dashboard refused.
_FUTURES_NAME = FUTURES.upper()


def _asset_name(value: Any) -> str | None:
    """An asset's name as every AUM source reads it: `parse.symbol` (stripped, upper-cased);
    None for no name or one holding a control character. A name longer than MAX_LABEL_CHARS
    upper-cased is kept whole: it is never valued, only named (cut) in `unpriced`."""
    name = symbol(value)
    if name is not None:
        return name
    found = text(value)  # no symbol: empty, a control character, or too long
    if found is None:
        return None
    name = found.upper()
    return name if len(name) > MAX_LABEL_CHARS and not has_control(name) else None


def holding_map(value: Any) -> dict[str, Mapping[str, Any]]:
    """{SYM: entry} from a holdings-style map (names by `_asset_name`, the first entry for a
    name winning); non-object entries are skipped."""
    if not is_object(value):
        return {}
    out: dict[str, Mapping[str, Any]] = {}
    for key, entry in value.items():
        name = _asset_name(key) if is_object(entry) else None
        if name is not None and name not in out:
            out[name] = entry
    return out


def _assets(block: Any) -> tuple[Mapping[str, Any] | None, dict[str, Mapping[str, Any]]]:
    """(the Futures entry of `aum.assets`, its other entries by name, the first for a name)."""
    assets = get(block, "assets")
    futures: Mapping[str, Any] | None = None
    others: dict[str, Mapping[str, Any]] = {}
    if type(assets) is not list:
        return None, others
    for entry in assets:
        name = _asset_name(first_text(entry, *NAME_KEYS)) if is_object(entry) else None
        if name is None:
            continue
        if name == _FUTURES_NAME:
            if futures is None:
                futures = entry
        else:
            others.setdefault(name, entry)
    return futures, others


# The AUM figures a writer builds from its NAV: 0 in a file whose NAV is unavailable is none.
NAV_BUILT_KEYS = ("futures", "total")


def _without_unavailable_nav(block: Any, doc: Any) -> Any:
    """`block` without the 0 futures wallet and total that a file whose NAV could not be
    computed states (`nav.nav_unavailable`): read as missing, as that NAV is (contract rule 1),
    so the Futures slice falls back to the NAV in use."""
    if not isinstance(block, Mapping) or not nav_unavailable(doc):
        return block
    return {k: v for k, v in block.items() if not (k in NAV_BUILT_KEYS and number(v) == 0.0)}


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


def _value(
    name: str, entry: Mapping[str, Any], pricer: _Pricer
) -> tuple[bool, dict[str, Any] | None]:
    """(whether the entry is a holding at all: it states a qty or a USD value; its slice, or
    None when it cannot be valued)."""
    qty = first_number(entry, *QTY_KEYS)
    usd = first_number(entry, *VALUE_KEYS)
    if usd is None and qty is None:
        return False, None
    if usd is None:
        if qty == 0.0:
            usd = 0.0
        elif qty is not None:
            price = pricer.price(name, entry)
            usd = None if price is None else finite(qty * price)
    if usd is None:
        return True, None
    pnl = first_number(entry, "pnl", "pnl_usd")
    avg_cost = first_number(entry, "avg_cost")
    if pnl is None and avg_cost is not None and qty is not None:
        pnl = finite(usd - avg_cost * qty)
    return True, {"label": name, "usd": usd, "qty": qty, "pnl_usd": pnl}


def _cut(name: str) -> str:
    """An asset name too long to be a label, cut to MAX_LABEL_CHARS for `unpriced`."""
    return name[: MAX_LABEL_CHARS - 1] + "…"


@dataclass
class _Valued:
    """What one source of assets gives: a slice per holding valued (0 USD too: zero is a value;
    the source exists when there is one) and the names of the holdings that could not be."""

    slices: list[dict[str, Any]] = field(default_factory=list)
    unpriced: list[str] = field(default_factory=list)


def _valued(holdings: Mapping[str, Mapping[str, Any]], pricer: _Pricer) -> _Valued:
    """The slices of a holdings-style source (aum.assets, aum.offexchange, the config)."""
    out = _Valued()
    for name, entry in holdings.items():
        if len(name) > MAX_LABEL_CHARS:
            # Never valued, so one string cannot grow the output; named if it is a holding.
            if _value(name, entry, pricer)[0]:
                out.unpriced.append(_cut(name))
            continue
        held, item = _value(name, entry, pricer)
        if item is not None:
            out.slices.append(item)
        elif held:
            out.unpriced.append(name)
    return out


def _breakdown(value: Any) -> _Valued:
    """The slices of a nav_detail.asset_breakdown ({asset: USD}), the first entry for a name
    winning; an entry with no USD value is none."""
    out = _Valued()
    if not is_object(value):
        return out
    seen: set[str] = set()
    for key, raw in value.items():
        name = _asset_name(key)
        if name is None or name in seen:
            continue
        seen.add(name)
        usd = number(raw)
        if usd is None:
            continue
        if len(name) > MAX_LABEL_CHARS:
            out.unpriced.append(_cut(name))
        else:
            out.slices.append({"label": name, "usd": usd, "qty": None, "pnl_usd": None})
    return out


@dataclass
class _Block:
    """An AUM block as read: the block, its Futures entry and its two sources of assets
    (aum.assets by name, aum.offexchange as written), each valued only when first asked for
    (`sources`)."""

    block: Mapping[str, Any]
    futures_entry: Mapping[str, Any] | None
    assets: Mapping[str, Mapping[str, Any]]
    pricer: _Pricer
    _valued: list[_Valued] = field(default_factory=list, init=False, repr=False)

    def sources(self) -> Iterator[_Valued]:
        """aum.assets, then aum.offexchange, valued: each when the caller first goes past the
        one before it (a source that gives a value ends the search, so the next is never
        valued), and once."""
        valued = self._valued
        if not valued:
            valued.append(_valued(self.assets, self.pricer))
        yield valued[0]
        if len(valued) == 1:
            valued.append(_valued(holding_map(self.block.get("offexchange")), self.pricer))
        yield valued[1]

    @property
    def exists(self) -> bool:
        """Whether the block gives a value (docs/CONTRACT_RULES.md, rule 5): its stated
        figures first, its sources of assets only when those give none."""
        return (
            first_number(self.block, *NAV_BUILT_KEYS) is not None
            or first_number(self.futures_entry, "pnl", "pnl_usd") is not None
            or any(source.slices for source in self.sources())
        )


def _read_block(block: Any, pricer: _Pricer) -> _Block:
    block = mapping(block)
    futures_entry, assets = _assets(block)
    return _Block(block, futures_entry, assets, pricer)


def _choose_block(nav_state: Any, nav: Any, pricer: _Pricer) -> tuple[_Block, list[str]]:
    """The first AUM block that exists (an empty one when none does), and the names of the
    holdings the blocks before it could not value."""
    skipped: list[str] = []
    for block, doc in (
        (get(nav_state, "aum"), nav_state),
        (get(nav, "aum"), nav),
        (get(nav, "nav_detail.aum"), nav),
    ):
        read = _read_block(_without_unavailable_nav(block, doc), pricer)
        if read.exists:
            return read, skipped
        skipped += [name for valued in read.sources() for name in valued.unpriced]
    return _read_block(None, pricer), skipped


def _asset_sources(
    block: _Block, holdings: Any, nav_state: Any, nav: Any, pricer: _Pricer
) -> Iterator[tuple[_Valued, bool]]:
    """The sources of non-futures assets in contract order, each valued only when the ones
    before it gave no value (the caller stops at the first that gives one); with whether it
    is a breakdown (inside the futures wallet)."""
    for valued in block.sources():
        yield valued, False
    yield _valued(holding_map(holdings), pricer), False
    for doc in (nav, nav_state):
        yield _breakdown(get(doc, "nav_detail.asset_breakdown")), True


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


def _named(names: list[str]) -> list[str]:
    """`unpriced`: the names sorted, at most MAX_UNPRICED of them ("Futures", the wallet
    itself, always among them), then "<n> more" for the rest."""
    distinct = set(names)
    if len(distinct) <= MAX_UNPRICED:
        return sorted(distinct)
    wallet = [FUTURES] if FUTURES in distinct else []
    distinct.difference_update(wallet)
    kept = sorted(wallet + heapq.nsmallest(MAX_UNPRICED - len(wallet), distinct))
    return [*kept, unpriced_more(len(distinct) + len(wallet) - len(kept))]


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
    pricer = _Pricer(nav_state, nav, fx)
    block, unpriced = _choose_block(nav_state, nav, pricer)
    futures = first_number(block.block, "futures")
    if futures is None:
        futures = nav_usd

    others: list[dict[str, Any]] = []
    for valued, inside_wallet in _asset_sources(block, holdings, nav_state, nav, pricer):
        unpriced += valued.unpriced
        if not valued.slices:
            continue  # no value: the next source is used
        others = valued.slices
        inside = total(s["usd"] for s in others) if inside_wallet else None
        if futures is not None and inside is not None and inside <= futures + CENT / 2:
            reduced = finite(futures - inside)
            if reduced is not None:  # negative entries can make it overflow: none inside then
                futures = reduced
        break

    slices: list[dict[str, Any]] = []
    if futures is not None:
        pnl = first_number(block.futures_entry, "pnl", "pnl_usd")
        slices.append({"label": FUTURES, "usd": futures, "qty": None, "pnl_usd": pnl})
    else:
        unpriced.append(FUTURES)
    others = [s for s in others if s["usd"] != 0.0]
    others.sort(key=lambda s: (-s["usd"], s["label"]))
    slices.extend(_fold_smallest(others, unpriced))
    for item in slices:
        item["zar"] = to_zar(item["usd"], usd_zar)
    total_usd = total(s["usd"] for s in slices) if slices else None
    # Only a slice published by a name values it: one of 0 USD (dropped) or folded into
    # "<n> smaller assets" does not.
    published = {s["label"] for s in slices}
    return {
        "slices": slices,
        "total_usd": total_usd,
        "total_zar": to_zar(total_usd, usd_zar),
        "usd_zar": usd_zar,
        "unpriced": _named([name for name in unpriced if name not in published]),
        # As stated by the writer: the real live writer states the futures wallet alone here,
        # so it may differ from total_usd without anything being wrong.
        "stated_total_usd": first_number(block.block, "total"),
    }
