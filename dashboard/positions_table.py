"""The positions table: published rows -> a DataFrame of the texts each cell shows, and the
width of each column.

Every cell is text from the shared formatter (`kpi_publisher.fmt`), so the table follows the
contract's rules as the cards do: a missing value is the missing marker, 0.0 is 0.00, -0.00
is 0.00, a drawdown a percent. Quantities and prices keep the digits they were published with
(`shown_decimals`): at least two decimals, at most `SIGNIFICANT` significant digits and
`MAX_DECIMALS` decimals. All-text columns never mix
strings and floats (the real dashboard crashed on that), and each column's width is worked out
from its widest text (`grid_width`): the grid would otherwise keep the widths of its first draw
and cut longer values that a later publish brings.
"""

from __future__ import annotations

import decimal
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from dashboard import grid_width
from kpi_publisher import fmt, parse

MIN_DECIMALS = 2  # the contract's 0.00
SIGNIFICANT = 8
MAX_DECIMALS = 8


def _own_decimals(value: float) -> int:
    """The decimals of `value`'s shortest repr, trailing zeros left out (3381.5 -> 1)."""
    exponent = decimal.Decimal(repr(value)).normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def shown_decimals(value: float) -> int:
    """Decimals to show `value` with: those it was published with, once rounded to SIGNIFICANT
    significant digits (at most MAX_DECIMALS decimals), and never fewer than MIN_DECIMALS."""
    whole_digits = len(str(int(abs(value)))) if abs(value) >= 1.0 else 0
    most = min(MAX_DECIMALS, max(0, SIGNIFICANT - whole_digits))
    return max(MIN_DECIMALS, min(_own_decimals(round(value, most)), most))


def _quantity(value: Any) -> str:
    x = parse.number(value)
    return fmt.MISSING if x is None else fmt.fmt_number(x, shown_decimals(x))


def _text(value: Any) -> str:
    return parse.text(value) or fmt.MISSING


def _leverage(value: Any) -> str:
    x = parse.number(value)
    return fmt.MISSING if x is None else fmt.fmt_number(x) + "x"


@dataclass(frozen=True)
class Column:
    """One table column: its DataFrame name, header, the positions_v7 row key it shows, how
    that value becomes text, and whether it is a figure (right-aligned)."""

    name: str
    label: str
    key: str
    text: Callable[[Any], str]
    figure: bool = True


COLUMNS: tuple[Column, ...] = (
    Column("symbol", "symbol", "symbol", _text, figure=False),
    Column("side", "side", "side", _text, figure=False),
    Column("qty", "qty", "qty", _quantity),
    Column("entry", "entry", "entry_price", _quantity),
    Column("mark", "mark", "mark_price", _quantity),
    Column("notional_fmt", "notional (USD)", "notional_fmt", _text),
    Column("pnl_fmt", "PnL (USD)", "pnl_fmt", _text),
    Column("leverage", "leverage", "leverage", _leverage),
    Column("atr_ratio", "ATR ratio", "atr_ratio", fmt.fmt_number),
    Column("dd_today", "DD today", "dd_today_pct", fmt.fmt_pct),
    Column("dd_state", "dd_state", "dd_state", _text, figure=False),
)
COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in COLUMNS)


def _row(raw: Any) -> dict[str, str]:
    entry = parse.mapping(raw)
    return {c.name: c.text(entry.get(c.key)) for c in COLUMNS}


def positions_frame(doc: Mapping[str, Any] | None) -> pd.DataFrame:
    """One row of cell texts per published position, in the publisher's order (largest
    notional first)."""
    rows = parse.mapping(doc).get("positions")
    records = [_row(raw) for raw in rows] if isinstance(rows, list) else []
    return pd.DataFrame.from_records(records, columns=list(COLUMN_NAMES)).astype("object")


def column_widths(frame: pd.DataFrame) -> dict[str, int]:
    """Column name -> width (px) that shows its header and every cell of `frame` uncut."""
    return {c.name: grid_width.column_px(c.label, frame[c.name]) for c in COLUMNS}


def totals_line(doc: Mapping[str, Any] | None) -> str:
    """One line under the table: count, gross notional, net notional, PnL (USD)."""
    totals = parse.mapping(parse.mapping(doc).get("totals"))
    count = parse.number(totals.get("count"))
    count_text = fmt.MISSING if count is None else str(int(count))
    gross = parse.text(totals.get("gross_notional_fmt")) or fmt.fmt_money(
        parse.number(totals.get("gross_notional_usd"))
    )
    pnl = parse.text(totals.get("pnl_fmt")) or fmt.fmt_money(parse.number(totals.get("pnl_usd")))
    net = fmt.fmt_money(parse.number(totals.get("net_notional_usd")))
    return f"{count_text} positions · gross {gross} USD · net {net} USD · PnL {pnl} USD"
