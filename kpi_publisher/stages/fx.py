"""USD->ZAR rate: nav_state, then nav, then the FX cache. Never a hard-coded default."""

from __future__ import annotations

from typing import Any

from kpi_publisher.parse import finite, first_number

RATE_KEYS = ("fx.usd_zar", "usd_zar", "fx_usd_zar", "usd_to_zar")


def resolve_usd_zar(nav_state: Any, nav: Any, fx: Any) -> dict[str, Any]:
    """{usd_zar, usd_zar_source}; a rate of zero or below is not a rate and reads as missing."""
    for source, doc, keys in (
        ("nav_state", nav_state, RATE_KEYS),
        ("nav", nav, RATE_KEYS),
        ("fx_cache", fx, ("usd_zar",)),
    ):
        rate = first_number(doc, *keys)
        if rate is not None and rate > 0:
            return {"usd_zar": rate, "usd_zar_source": source}
    return {"usd_zar": None, "usd_zar_source": None}


def to_zar(usd: float | None, usd_zar: float | None) -> float | None:
    return None if usd is None or usd_zar is None else finite(usd * usd_zar)
