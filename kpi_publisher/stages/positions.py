"""Positions: normalised rows with notional, pnl and formatted strings.

docs/CONTRACT_RULES.md, rule 11.

Rows come camelCase from the exchange or snake_case from the sync/executor writers, inside
`rows | items | positions` or a bare list. Hedge-mode empty rows are dropped; qty is signed by
side; notional is |qty| x mark (else entry); pnl is the stated unrealised PnL, else
(mark - entry) x qty.

A book is listed whole up to MAX_ROWS rows (a real account holds at most two rows per
symbol, a few hundred); beyond that only the largest by notional are, with a note, while the
totals (and the exposures) still cover the whole book.
With symbols and labels bounded too (MAX_LABEL_CHARS), positions_v7.json stays well under the
readers' default 16 MiB cap whatever the input (docs/RELIABILITY.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kpi_publisher.fmt import fmt_money
from kpi_publisher.parse import (
    MAX_LABEL_CHARS,
    finite,
    key_number,
    key_text,
    label,
    mapping,
    symbol,
    total,
)

CONTAINERS = ("rows", "items", "positions")
SYMBOL_KEYS = ("symbol", "pair", "asset", "underlying")
SIDE_KEYS = ("side", "positionSide", "direction", "mode")
QTY_KEYS = ("qty", "positionAmt", "size", "pos_qty")
ENTRY_KEYS = ("entry_price", "entryPrice", "entry", "entry_px")
MARK_KEYS = ("mark_price", "markPrice", "mark", "latest_price", "price")
PNL_KEYS = (
    "unrealized_pnl",
    "unrealized",
    "unRealizedProfit",
    "unrealizedProfit",
    "uPnl",
    "pnl",
    "pnl_usd",
)
NOTIONAL_KEYS = ("notional", "positionValue", "notional_usd", "gross_usd")
MIN_QTY = 1e-12
SIDES = {"LONG": "LONG", "BUY": "LONG", "SHORT": "SHORT", "SELL": "SHORT"}
# A row's risk fields, in `symbols.FIELDS` order (the tuples `symbols.symbol_book` gives).
RISK_FIELDS = ("atr_ratio", "atr_regime", "dd_state", "dd_today_pct")
_NO_RISK: tuple[None, ...] = (None,) * len(RISK_FIELDS)
# Rows listed at most: the largest by notional. The totals cover every row.
MAX_ROWS = 5_000


def _items(doc: Any) -> list[Any]:
    """The entries of a positions document: the first non-empty container, or a bare list."""
    if isinstance(doc, list):
        return doc
    doc = mapping(doc)
    return next((doc[k] for k in CONTAINERS if isinstance(doc.get(k), list) and doc[k]), [])


def _price(row: Mapping[str, Any], keys: tuple[str, ...], qty: float) -> float | None:
    """A price; 0 on a row with non-zero qty is the real system's "unknown" and reads as missing."""
    value = key_number(row, keys)
    if value is not None and value <= 0 and qty != 0:
        return None
    return value


def normalize_row(row: Mapping[str, Any]) -> dict[str, Any] | None:
    """One normalised row, or None for rows to drop (no symbol, or |qty| below 1e-12). The
    symbol is the first non-empty string of SYMBOL_KEYS, read by `parse.symbol`
    (upper-cased, at most MAX_LABEL_CHARS characters as published, no control character)."""
    name = symbol(key_text(row, SYMBOL_KEYS))
    qty = key_number(row, QTY_KEYS)
    if name is None or qty is None or abs(qty) < MIN_QTY:
        return None
    stated_side = (key_text(row, SIDE_KEYS) or "").upper()
    side = SIDES.get(stated_side) or ("LONG" if qty > 0 else "SHORT")
    qty = abs(qty) if side == "LONG" else -abs(qty)
    entry = _price(row, ENTRY_KEYS, qty)
    mark = _price(row, MARK_KEYS, qty)
    if mark is not None:
        notional: float | None = finite(abs(qty) * mark)
    elif entry is not None:
        notional = finite(abs(qty) * entry)
    else:
        stated = key_number(row, NOTIONAL_KEYS)
        notional = abs(stated) if stated is not None else None
    pnl = key_number(row, PNL_KEYS)
    if pnl is None and mark is not None and entry is not None:
        pnl = finite((mark - entry) * qty)
    return {
        "symbol": name,
        "side": side,
        "qty": qty,
        "entry_price": entry,
        "mark_price": mark,
        "notional": notional,
        "pnl": pnl,
        "leverage": key_number(row, ("leverage",)),
    }


def normalize(doc: Any) -> list[dict[str, Any]]:
    """Normalised rows sorted by notional, largest first (unknown notional last), then symbol."""
    return normalize_rows(doc)[0]


def _stated(row: Mapping[str, Any], keys: tuple[str, ...]) -> bool:
    return any(row.get(k) is not None for k in keys)


def _drop_reason(row: Any) -> str | None:
    """Why normalize_row dropped a row, or None when the contract drops it: |qty| below
    MIN_QTY (hedge-mode exchanges report empty LONG/SHORT rows) or no symbol key at all."""
    if not isinstance(row, Mapping):
        return "not an object"
    qty = key_number(row, QTY_KEYS)
    if qty is not None and abs(qty) < MIN_QTY:
        return None
    stated = key_text(row, SYMBOL_KEYS)
    if stated is None:
        return "symbol unreadable" if _stated(row, SYMBOL_KEYS) else None
    if symbol(stated) is None:
        too_long = len(stated) > MAX_LABEL_CHARS or len(stated.upper()) > MAX_LABEL_CHARS
        return "symbol too long" if too_long else "symbol unreadable"
    if qty is None:
        return "qty unreadable" if _stated(row, QTY_KEYS) else "no qty"
    return None


def drop_note(dropped: list[tuple[str, str]], shown: int = 3) -> str | None:
    """'2 rows dropped: qty unreadable (BTCUSDT, ETHUSDT)' from (reason, row label) pairs."""
    if not dropped:
        return None
    by_reason: dict[str, list[str]] = {}
    for reason, row_label in dropped:
        by_reason.setdefault(reason, []).append(row_label)
    parts = []
    for reason, labels in by_reason.items():
        listed = ", ".join(labels[:shown]) + (
            f", +{len(labels) - shown}" if len(labels) > shown else ""
        )
        parts.append(f"{reason} ({listed})")
    noun = "row" if len(dropped) == 1 else "rows"
    return f"{len(dropped)} {noun} dropped: " + "; ".join(parts)


def limit_note(rows: list[dict[str, Any]]) -> str | None:
    """The error text for a book over MAX_ROWS rows (sorted as `normalize` sorts them): how
    many are not listed, and what they add up to (the totals include them)."""
    if len(rows) <= MAX_ROWS:
        return None
    rest = rows[MAX_ROWS:]
    gross, _ = book_notionals(rest)
    return (
        f"{len(rows):,} rows, over the {MAX_ROWS:,}-row limit: the {MAX_ROWS:,} largest by "
        f"notional are listed; the other {len(rest):,} (gross notional {_usd(gross)}, "
        f"PnL {_usd(pnl_total(rest))}) are in the totals only"
    )


def listed(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows listed in positions_v7.json: the first MAX_ROWS (`normalize` sorts the largest
    notional first)."""
    return rows if len(rows) <= MAX_ROWS else rows[:MAX_ROWS]


def _usd(value: float | None) -> str:
    return "unknown" if value is None else f"{fmt_money(value)} USD"


def normalize_rows(doc: Any) -> tuple[list[dict[str, Any]], str | None]:
    """(rows as `normalize` gives them, all of them; the error text for rows dropped for a
    value that cannot be read and for rows beyond MAX_ROWS, which are not listed; or None).
    A row with a readable |qty| below MIN_QTY is dropped by the contract and is not an error;
    any other dropped row is counted, never silent."""
    rows: list[dict[str, Any]] = []
    dropped: list[tuple[str, str]] = []
    for index, raw in enumerate(_items(doc)):
        row = normalize_row(raw) if isinstance(raw, Mapping) else None
        if row is not None:
            rows.append(row)
            continue
        reason = _drop_reason(raw)
        if reason is not None:
            stated = key_text(raw, SYMBOL_KEYS) if isinstance(raw, Mapping) else None
            # A symbol with a control character is named by its index, never copied.
            row_label = (label(stated[:24]) if stated else None) or f"row {index}"
            dropped.append((reason, row_label))
    rows.sort(
        key=lambda r: (r["notional"] is None, -(r["notional"] or 0.0), r["symbol"], r["side"])
    )
    notes = [note for note in (drop_note(dropped), limit_note(rows)) if note]
    return rows, "; ".join(notes) or None


def pnl_total(rows: list[dict[str, Any]]) -> float | None:
    """Summed unrealised PnL (USD) of the rows that have one; None when none has."""
    pnls = [r["pnl"] for r in rows if r["pnl"] is not None]
    return total(pnls) if pnls else None


def exposure_pct(notional_usd: float | None, nav_usd: float | None) -> float | None:
    """Notional as a percent of NAV; None when either is unknown or NAV is not positive."""
    if notional_usd is None or nav_usd is None or nav_usd <= 0:
        return None
    return finite(notional_usd / nav_usd * 100.0)


def book_notionals(rows: list[dict[str, Any]]) -> tuple[float | None, float | None]:
    """(gross, net) notional in USD of the rows with a known notional; net is signed by side.
    A flat book is a real 0.0; a book none of whose rows has a known notional is unknown
    (None, shown as a dash), as the PnL total is."""
    known = [r for r in rows if r["notional"] is not None]
    if rows and not known:
        return None, None
    gross = total(r["notional"] for r in known)
    net = total(r["notional"] if r["side"] == "LONG" else -r["notional"] for r in known)
    return gross, net


def held_risk(
    rows: list[dict[str, Any]], symbols: Mapping[str, tuple[Any, ...]]
) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    """Each held symbol (in row order) with its RISK_FIELDS values: all that `join_risk` reads
    of it. `symbols` holds them for every open symbol (`symbols.symbol_book`: the published map
    is capped, a listed row's risk fields never are). Every write of the executor rebuilds them
    (it restamps every entry); this is equal while the rows' own risk values stand, so the
    joined rows are kept."""
    return tuple(
        [(name, symbols.get(name, _NO_RISK)) for name in dict.fromkeys(r["symbol"] for r in rows)]
    )


def join_risk(
    rows: list[dict[str, Any]], risk: tuple[tuple[str, tuple[Any, ...]], ...]
) -> list[dict[str, Any]]:
    """The rows joined with their symbol's risk fields (`held_risk` of the symbol map), money
    formatted."""
    by_symbol = dict(risk)
    positions = []
    for row in rows:
        fields = dict(zip(RISK_FIELDS, by_symbol[row["symbol"]], strict=True))
        positions.append(
            {
                **row,
                # Copied onto every row of the symbol: the symbol map holds labels only
                # (`parse.label`), never a long text.
                **fields,
                "notional_fmt": fmt_money(row["notional"]),
                "pnl_fmt": fmt_money(row["pnl"]),
            }
        )
    return positions


def book_sums(
    positions: list[dict[str, Any]],
) -> tuple[float | None, float | None, float | None]:
    """(gross notional, net notional, unrealised PnL) of the book in USD."""
    gross, net = book_notionals(positions)
    return gross, net, pnl_total(positions)


def book_totals(
    positions: list[dict[str, Any]],
    sums: tuple[float | None, float | None, float | None],
    nav_usd: float | None = None,
) -> dict[str, Any]:
    """The `totals` block: count, notionals, PnL (`book_sums`) and exposure in percent of NAV."""
    gross, net, pnl_usd = sums
    return {
        "count": len(positions),
        "gross_notional_usd": gross,
        "net_notional_usd": net,
        "pnl_usd": pnl_usd,
        "gross_exposure_pct": exposure_pct(gross, nav_usd),
        "net_exposure_pct": exposure_pct(net, nav_usd),
        "gross_notional_fmt": fmt_money(gross),
        "pnl_fmt": fmt_money(pnl_usd),
    }
