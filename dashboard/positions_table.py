"""The positions table: published rows -> a DataFrame whose numeric columns stay numeric.

The real dashboard crashed on columns mixing strings and floats; here every numeric column is
float64 with NaN for a missing value (the table's placeholder shows the missing marker), and
the two preformatted columns (`notional_fmt`, `pnl_fmt`) are the publisher's strings.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from kpi_publisher import fmt, parse

# (column, key in a positions_v7 row); column order is the table's order.
TEXT_COLUMNS: tuple[tuple[str, str], ...] = (("symbol", "symbol"), ("side", "side"))
NUMERIC_COLUMNS: tuple[tuple[str, str], ...] = (
    ("qty", "qty"),
    ("entry", "entry_price"),
    ("mark", "mark_price"),
)
FMT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("notional_fmt", "notional_fmt"),
    ("pnl_fmt", "pnl_fmt"),
)
RISK_COLUMNS: tuple[tuple[str, str], ...] = (
    ("leverage", "leverage"),
    ("atr_ratio", "atr_ratio"),
    ("dd_today", "dd_today_pct"),
)
COLUMNS: tuple[str, ...] = (
    *(c for c, _ in TEXT_COLUMNS + NUMERIC_COLUMNS + FMT_COLUMNS + RISK_COLUMNS),
    "dd_state",
)
FLOAT_COLUMNS: tuple[str, ...] = tuple(c for c, _ in NUMERIC_COLUMNS + RISK_COLUMNS)


def _row(raw: Any) -> dict[str, Any]:
    entry = parse.mapping(raw)
    row: dict[str, Any] = {}
    for column, key in TEXT_COLUMNS:
        row[column] = parse.text(entry.get(key)) or fmt.MISSING
    for column, key in NUMERIC_COLUMNS:
        row[column] = parse.number(entry.get(key))
    for column, key in FMT_COLUMNS:
        row[column] = parse.text(entry.get(key)) or fmt.MISSING
    for column, key in RISK_COLUMNS:
        row[column] = parse.number(entry.get(key))
    row["dd_state"] = parse.text(entry.get("dd_state")) or fmt.MISSING
    return row


def positions_frame(doc: Mapping[str, Any] | None) -> pd.DataFrame:
    """One row per published position, in the publisher's order (largest notional first)."""
    rows = parse.mapping(doc).get("positions")
    records = [_row(raw) for raw in rows] if isinstance(rows, list) else []
    frame = pd.DataFrame.from_records(records, columns=list(COLUMNS))
    for column in FLOAT_COLUMNS:
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    for column in COLUMNS:
        if column not in FLOAT_COLUMNS:
            frame[column] = frame[column].astype("object")
    return frame


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
