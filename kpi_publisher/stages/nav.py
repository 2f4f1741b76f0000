"""NAV: value, timestamp, age and freshness, from nav_state then nav (contract 4, `nav`)."""

from __future__ import annotations

from typing import Any

from kpi_publisher.parse import age_s, doc_ts, first_number, first_text
from kpi_publisher.stages.fx import to_zar

NAV_KEYS = ("nav_usd", "nav", "nav_total", "total_equity", "equity")


def nav_value(doc: Any) -> float | None:
    """The NAV a file states; 0 from a file whose nav_detail.source is "unavailable" is missing."""
    value = first_number(doc, *NAV_KEYS)
    if value == 0.0 and (first_text(doc, "nav_detail.source") or "").lower() == "unavailable":
        return None
    return value


def _chain(docs: tuple[Any, ...], *keys: str) -> float | None:
    for doc in docs:
        value = first_number(doc, *keys)
        if value is not None:
            return value
    return None


def build_nav(
    nav_state: Any, nav: Any, *, usd_zar: float | None, now: float, nav_fresh_s: float
) -> dict[str, Any]:
    """The `nav` block. Age comes from the timestamp of the file that supplied the value."""
    nav_usd: float | None = None
    source: str | None = None
    updated_at: float | None = None
    for name, doc in (("nav_state", nav_state), ("nav", nav)):
        value = nav_value(doc)
        if value is not None:
            nav_usd, source, updated_at = value, name, doc_ts(doc)
            break
    age = age_s(updated_at, now)
    docs = (nav_state, nav)
    return {
        "nav_usd": nav_usd,
        "nav_zar": to_zar(nav_usd, usd_zar),
        "updated_at": updated_at,
        "age_s": age,
        "fresh": age is not None and age <= nav_fresh_s,
        "peak_usd": _chain(docs, "peak_equity", "peak"),
        "unrealized_pnl_usd": _chain(docs, "unrealized_pnl"),
        "realized_pnl_today_usd": _chain(docs, "realized_pnl_today"),
        "source": source,
    }
