"""Tolerant readers for the published values `kpi_publisher.parse` has no helper for: a list of
names and a time series (two columns of one curve).

Same rules as `parse`: any JSON value in, never raises; a value that is not what the contract
says reads as missing (an empty list, a dropped point), never as an error on the page.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from kpi_publisher import parse


def texts(value: Any) -> list[str]:
    """The non-empty strings of a published list, stripped, in order; anything else in the
    list is skipped, and a value that is not a list (a number, a string, an object) gives []."""
    if not isinstance(value, list):
        return []
    return [s for s in (parse.text(item) for item in value) if s is not None]


def epoch_time(value: Any) -> dt.datetime | None:
    """Epoch seconds as a UTC datetime; None unless a finite number within datetime's years
    1..9999 (a millisecond stamp read as seconds lands in the year 55,000: not a time)."""
    seconds = parse.number(value)
    if seconds is None:
        return None
    try:
        return dt.datetime.fromtimestamp(seconds, dt.UTC)
    except (OverflowError, OSError, ValueError):
        return None


def curve(times: Any, values: Any) -> tuple[list[dt.datetime], list[float]]:
    """The points of a published curve (`times` in epoch seconds, `values` beside them) whose
    time is an `epoch_time` and whose value is a finite number, in the published order.

    Other points are dropped; a column that is not a list gives no points; a longer column's
    tail (no partner) is dropped.
    """
    if not isinstance(times, list) or not isinstance(values, list):
        return [], []
    xs: list[dt.datetime] = []
    ys: list[float] = []
    for raw_t, raw_v in zip(times, values, strict=False):
        y = parse.number(raw_v)
        if y is None:
            continue
        x = epoch_time(raw_t)
        if x is not None:
            xs.append(x)
            ys.append(y)
    return xs, ys
