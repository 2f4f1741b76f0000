"""The executor's old KPI objects, as copies of the published blocks, for the desk's older readers.

Before this publisher, `kpis_v7.json` was the executor's own flat payload (its shapes A and B:
docs/CONTRACT_RULES.md, rule 9), and the desk's dashboard panels still read it that way: the
overview cards read `atr.atr_regime`, `atr.median_ratio` and `drawdown.dd_pct`, the execution
tiles read `router_stats.maker_fill_ratio` / `slip_q50` and `atr.symbols[]`, others
`fee_pnl.fee_pnl_ratio`. Without these objects those cards show "unknown" or a blank beside
numbers this file does carry. Every value here is one published elsewhere in the same document,
in the old payload's units (drawdown in percent, ratios as fractions, slippage in bps); nothing
is read from the inputs. Keys the old payload used for other meanings (`fees` and `pnl` as
numbers) are not copied: the contract's `fees` block keeps its name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

KEYS = ("atr", "drawdown", "router_stats", "fee_pnl")


def build_legacy(
    risk: Mapping[str, Any],
    router: Mapping[str, Any],
    fees: Mapping[str, Any],
    symbols: Mapping[str, Mapping[str, Any]],
) -> dict[str, Any]:
    """`atr`, `drawdown`, `router_stats` and `fee_pnl`, from the `risk` stage's block, the
    `router` and `fees` blocks and the `symbols` map of the same build."""
    maker, q25, q50, q75 = (
        router["maker_fill_rate"], router["slip_q25_bps"], router["slip_q50_bps"],
        router["slip_q75_bps"],
    )  # fmt: skip
    return {
        "atr": {
            "atr_regime": risk["atr_regime"],
            "median_ratio": risk["atr_ratio"],  # shape A's name
            "atr_ratio": risk["atr_ratio"],  # shape B's
            "symbols": [
                {"symbol": symbol, "atr_ratio": row["atr_ratio"], "atr_regime": row["atr_regime"]}
                for symbol, row in sorted(symbols.items())
            ],
        },
        "drawdown": {
            "dd_pct": risk["drawdown_pct"],
            "dd_abs": risk["drawdown_abs_usd"],
            "daily_loss": {"pct": risk["daily_loss_pct"]},
        },
        "router_stats": {
            # shape A's keys, then shape B's
            "maker_fill_ratio": maker,
            "fallback_ratio": router["fallback_ratio"],
            "slip_q25": q25,
            "slip_q50": q50,
            "slip_q75": q75,
            "maker_fill_rate": maker,
            "slip_q25_bps": q25,
            "slip_q50_bps": q50,
            "slip_q75_bps": q75,
            "quality": router["quality"],
        },
        "fee_pnl": {
            "fee_pnl_ratio": fees["fee_pnl_ratio"],
            "fees": fees["fees_usd"],
            "pnl": fees["pnl_usd"],
            "window_days": fees["window_days"],
        },
    }
