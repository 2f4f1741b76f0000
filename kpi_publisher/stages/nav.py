"""NAV: value, timestamp, age and freshness, from nav_state then nav.

docs/CONTRACT_RULES.md, rules 2 and 9.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kpi_publisher.parse import aged_at_least, doc_age, first_number, first_text
from kpi_publisher.stages.fx import to_zar

NAV_KEYS = ("nav_usd", "nav", "nav_total", "total_equity", "equity")


def nav_unavailable(doc: Any) -> bool:
    """True for a file whose `nav_detail.source` says its NAV could not be computed: the 0 it
    then states (as NAV, and as the figures built from it) is no value (contract rule 1)."""
    return (first_text(doc, "nav_detail.source") or "").lower() == "unavailable"


def nav_value(doc: Any) -> float | None:
    """The NAV a file states; 0 from a file whose nav_detail.source is "unavailable" is missing."""
    value = first_number(doc, *NAV_KEYS)
    if value == 0.0 and nav_unavailable(doc):
        return None
    return value


def _chain(docs: tuple[Any, ...], *keys: str) -> float | None:
    for doc in docs:
        value = first_number(doc, *keys)
        if value is not None:
            return value
    return None


# Where the risk snapshot restates the NAV tracker's peak and realised PnL (drawdown snapshot).
RISK_DRAWDOWN_PATHS = ("dd_state.drawdown", "drawdown")
# The top-level keys of the risk snapshot this stage reads (the pipeline hands it no others).
RISK_KEYS = tuple(dict.fromkeys(path.split(".")[0] for path in RISK_DRAWDOWN_PATHS))


def _from_risk(risk: Any, key: str) -> float | None:
    return first_number(risk, *(f"{path}.{key}" for path in RISK_DRAWDOWN_PATHS))


def _first(value: float | None, fallback: float | None) -> float | None:
    return value if value is not None else fallback


def nav_values(
    nav_state: Any,
    nav: Any,
    usd_zar: float | None = None,
    risk: Any = None,
    positions_pnl_usd: float | None = None,
) -> dict[str, Any]:
    """The `nav` block's values that do not depend on the build time: the NAV (USD, ZAR), the
    file it came from (`source`) and that file's timestamp, peak, unrealised and realised PnL.
    `nav_block` adds the age and the freshness. `risk` is read at RISK_KEYS only.

    Peak, realised-today and unrealised PnL fall back to the risk snapshot's drawdown block
    and the positions' summed PnL: the executor's nav.json mirror overwrites nav_state.json
    without them for part of every minute, and they must not flap to null.
    """
    nav_usd: float | None = None
    source: str | None = None
    for name, doc in (("nav_state", nav_state), ("nav", nav)):
        value = nav_value(doc)
        if value is not None:
            nav_usd, source = value, name
            break
    docs = (nav_state, nav)
    return {
        "nav_usd": nav_usd,
        "nav_zar": to_zar(nav_usd, usd_zar),
        "peak_usd": _first(_chain(docs, "peak_equity", "peak"), _from_risk(risk, "peak")),
        "unrealized_pnl_usd": _first(_chain(docs, "unrealized_pnl"), positions_pnl_usd),
        "realized_pnl_today_usd": _first(
            _chain(docs, "realized_pnl_today"), _from_risk(risk, "realized_today")
        ),
        "source": source,
    }


def nav_block(
    values: Mapping[str, Any],
    nav_state: Any,
    nav: Any,
    *,
    now: float,
    nav_fresh_s: float,
    min_age_s: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """The `nav` block at build time `now`: `values` (`nav_values` of the same files) with the
    timestamp and age of the file that supplied the NAV, at least that source's `min_age_s`
    (see SourceRead), and whether that is fresh. A timestamp too far ahead is not valid: no
    age, not fresh (the sources block says why)."""
    source = values["source"]
    updated_at: float | None = None
    age: float | None = None
    if source is not None:
        updated_at, age, _ = doc_age(nav_state if source == "nav_state" else nav, now)
        if min_age_s:
            age = aged_at_least(age, min_age_s.get(source, 0.0))
    return {
        **values,
        "updated_at": updated_at,
        "age_s": age,
        "fresh": age is not None and age <= nav_fresh_s,
    }


def build_nav(
    nav_state: Any,
    nav: Any,
    *,
    usd_zar: float | None,
    now: float,
    nav_fresh_s: float,
    risk: Any = None,
    positions_pnl_usd: float | None = None,
    min_age_s: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """The `nav` block (`nav_values`, then `nav_block` at `now`)."""
    values = nav_values(nav_state, nav, usd_zar, risk, positions_pnl_usd)
    return nav_block(values, nav_state, nav, now=now, nav_fresh_s=nav_fresh_s, min_age_s=min_age_s)
