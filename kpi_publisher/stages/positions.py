"""Positions: normalised rows with notional, pnl and formatted strings (contract section 5).

Rows come camelCase from the exchange or snake_case from the sync/executor writers, inside
`rows | items | positions` or a bare list. Hedge-mode empty rows are dropped; qty is signed by
side; notional is |qty| x mark (else entry); pnl is the stated unrealised PnL, else
(mark - entry) x qty.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kpi_publisher.fmt import fmt_money
from kpi_publisher.parse import finite, key_number, key_text, mapping, total

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
RISK_FIELDS = ("atr_ratio", "atr_regime", "dd_state", "dd_today_pct")


def raw_rows(doc: Any) -> list[Mapping[str, Any]]:
    """The row objects of a positions document: the first non-empty container, or a bare list."""
    if isinstance(doc, list):
        items: Any = doc
    else:
        doc = mapping(doc)
        items = next(
            (doc[k] for k in CONTAINERS if isinstance(doc.get(k), list) and doc[k]),
            [],
        )
    return [row for row in items if isinstance(row, Mapping)]


def _price(row: Mapping[str, Any], keys: tuple[str, ...], qty: float) -> float | None:
    """A price; 0 on a row with non-zero qty is the real system's "unknown" and reads as missing."""
    value = key_number(row, keys)
    if value is not None and value <= 0 and qty != 0:
        return None
    return value


def normalize_row(row: Mapping[str, Any]) -> dict[str, Any] | None:
    """One normalised row, or None for rows to drop (no symbol, or |qty| below 1e-12)."""
    symbol = key_text(row, SYMBOL_KEYS)
    qty = key_number(row, QTY_KEYS)
    if symbol is None or qty is None or abs(qty) < MIN_QTY:
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
        "symbol": symbol.upper(),
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
    rows = [r for r in (normalize_row(raw) for raw in raw_rows(doc)) if r is not None]
    rows.sort(
        key=lambda r: (r["notional"] is None, -(r["notional"] or 0.0), r["symbol"], r["side"])
    )
    return rows


def build_positions(
    rows: list[dict[str, Any]], symbols: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    """{positions, totals}: rows joined with per-symbol risk and formatted, plus book totals."""
    positions = []
    for row in rows:
        risk = mapping(symbols.get(row["symbol"]))
        positions.append(
            {
                **row,
                **{field: risk.get(field) for field in RISK_FIELDS},
                "notional_fmt": fmt_money(row["notional"]),
                "pnl_fmt": fmt_money(row["pnl"]),
            }
        )
    notionals = [r for r in positions if r["notional"] is not None]
    gross = total(r["notional"] for r in notionals)
    net = total(r["notional"] if r["side"] == "LONG" else -r["notional"] for r in notionals)
    pnls = [r["pnl"] for r in positions if r["pnl"] is not None]
    pnl_total = total(pnls) if pnls else None
    return {
        "positions": positions,
        "totals": {
            "count": len(positions),
            "gross_notional_usd": gross,
            "net_notional_usd": net,
            "pnl_usd": pnl_total,
            "gross_notional_fmt": fmt_money(gross),
            "pnl_fmt": fmt_money(pnl_total),
        },
    }
