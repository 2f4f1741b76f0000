"""The one formatter: publisher `*_fmt` fields and every dashboard figure use these.

A missing value (None) formats as an en dash; a real zero formats as 0.00; -0.00 as 0.00.
"""

from __future__ import annotations

from typing import Any

from kpi_publisher.parse import number

MISSING = "–"


def fmt_money(value: Any) -> str:
    """USD/ZAR amounts: thousands separators and two decimals ("1,234.50", "-12.00")."""
    x = number(value)
    if x is None:
        return MISSING
    out = f"{x:,.2f}"
    return "0.00" if out == "-0.00" else out


def fmt_number(value: Any, decimals: int = 2) -> str:
    """A plain figure with thousands separators and a fixed number of decimals."""
    x = number(value)
    if x is None:
        return MISSING
    out = f"{x:,.{decimals}f}"
    return out.lstrip("-") if set(out) <= set("-0.,") else out


def fmt_pct(value: Any, decimals: int = 2) -> str:
    """A value already in percent: 1.14 -> "1.14%"."""
    x = number(value)
    return MISSING if x is None else fmt_number(x, decimals) + "%"


def fmt_ratio_pct(value: Any, decimals: int = 1) -> str:
    """A fraction 0..1 shown as a percent: 0.425 -> "42.5%"."""
    x = number(value)
    return fmt_pct(x * 100.0, decimals) if x is not None else MISSING


def fmt_bps(value: Any, decimals: int = 2) -> str:
    """Basis points: 1.5 -> "1.50 bps"."""
    x = number(value)
    return MISSING if x is None else fmt_number(x, decimals) + " bps"


def fmt_age(seconds: Any) -> str:
    """An age for people: "42s", "3m 05s", "2h 01m", "3d 04h"."""
    x = number(seconds)
    if x is None:
        return MISSING
    s = int(max(0.0, x))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {(s % 3600) // 60:02d}m"
    return f"{s // 86400}d {(s % 86400) // 3600:02d}h"
