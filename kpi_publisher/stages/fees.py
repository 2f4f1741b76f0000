"""Fee/PnL: all four fields from one source, the first that exists.

docs/CONTRACT_RULES.md, rule 9.
"""

from __future__ import annotations

from typing import Any

from kpi_publisher.parse import first_number, has_valid, mapping

FIELDS = ("fee_pnl_ratio", "fees", "pnl", "window_days")
# The top-level keys of the risk snapshot this stage reads (the pipeline hands it no others).
RISK_KEYS = ("fee_pnl", "kpis_v7", *FIELDS)


def build_fees(risk: Any) -> dict[str, Any]:
    """The `fees` block: risk.fee_pnl, risk.kpis_v7.fee_pnl, then top-level keys of each."""
    risk = mapping(risk)
    kpis = mapping(risk.get("kpis_v7"))
    for candidate in (risk.get("fee_pnl"), kpis.get("fee_pnl"), risk, kpis):
        if has_valid(candidate, numbers=FIELDS[:3]):
            return {
                "fee_pnl_ratio": first_number(candidate, "fee_pnl_ratio"),
                "fees_usd": first_number(candidate, "fees"),
                "pnl_usd": first_number(candidate, "pnl"),
                "window_days": first_number(candidate, "window_days"),
            }
    return {"fee_pnl_ratio": None, "fees_usd": None, "pnl_usd": None, "window_days": None}
