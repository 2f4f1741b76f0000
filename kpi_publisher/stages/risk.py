"""Risk: drawdown %, daily loss %, dd_state, ATR ratio and regime (docs/CONTRACT_RULES.md, rule 9).

Units are decided by the key, never by magnitude: `dd_pct`/`pct` are percent, `*_frac` are
fractions (x100). One exception is pinned by the contract: a writer-synthesised `dd_state`
object ({state: "DRAWDOWN", drawdown: {dd_pct: 0.02}}) holds a fraction under `dd_pct`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kpi_publisher.parse import (
    finite,
    first_label,
    first_number,
    get,
    is_object,
    lower_label,
    mapping,
    number,
    per_symbol,
    text,
)

PERCENT = 1.0
FRACTION = 100.0
# The top-level keys of the risk snapshot `build_risk` reads (the pipeline hands it no others).
RISK_KEYS = (
    "kpis_v7",
    "dd_state",
    "drawdown",
    "dd_frac",
    "dd_abs",
    "drawdown_abs",
    "daily_loss_frac",
    "atr",
    "atr_ratio",
    "atr_regime",
)


def _is_synthesised(dd_state: Any) -> bool:
    """The E2 writer's own dd_state: an upper-case `state` and no `dd_state` key."""
    if not isinstance(dd_state, Mapping) or "dd_state" in dd_state:
        return False
    state = text(dd_state.get("state"))
    return state is not None and state.isupper()


def _scaled(value: float | None, scale: float) -> float | None:
    return None if value is None else value * scale


def _first_scaled(candidates: list[tuple[Any, tuple[str, ...], float]]) -> float | None:
    for obj, keys, scale in candidates:
        value = finite(_scaled(first_number(obj, *keys), scale))
        if value is not None:
            return value
    return None


def dd_label(value: Any) -> str | None:
    """dd_state as a lower-case label from a bare string or {dd_state: s} / {state: S}."""
    if value is None:  # the common case per symbol: no flat dd_state
        return None
    if type(value) is str:  # the next commonest: a bare state
        return lower_label(value)
    if is_object(value):
        return first_label(value, "dd_state", "state", lower=True)
    return lower_label(value)


def build_risk(risk: Any, nav_state: Any) -> dict[str, Any]:
    """The `risk` block."""
    risk = mapping(risk)
    kpis = mapping(risk.get("kpis_v7"))
    dd_state_obj = risk.get("dd_state")
    state_dd = get(dd_state_obj, "drawdown")
    state_scale = FRACTION if _is_synthesised(dd_state_obj) else PERCENT
    drawdown_pct = _first_scaled(
        [
            (risk.get("drawdown"), ("dd_pct",), PERCENT),
            (state_dd, ("dd_pct",), state_scale),
            (risk, ("dd_frac",), FRACTION),
            (kpis.get("drawdown"), ("dd_pct",), PERCENT),
            (nav_state, ("drawdown_pct", "drawdown"), PERCENT),
        ]
    )
    abs_keys = ("dd_abs", "drawdown_abs")
    drawdown_abs = _first_scaled(
        [
            (risk.get("drawdown"), abs_keys, 1.0),
            (state_dd, abs_keys, 1.0),
            (risk, abs_keys, 1.0),
            (kpis.get("drawdown"), abs_keys, 1.0),
            (nav_state, abs_keys, 1.0),
        ]
    )
    daily_loss_pct = _first_scaled(
        [
            (risk.get("drawdown"), ("daily_loss.pct",), PERCENT),
            (state_dd, ("daily_loss.pct",), PERCENT),
            (risk, ("daily_loss_frac",), FRACTION),
            (kpis.get("drawdown"), ("daily_loss.pct",), PERCENT),
        ]
    )
    state = dd_label(dd_state_obj)
    if state is None:
        state = dd_label(kpis.get("dd_state"))
    return {
        "drawdown_pct": drawdown_pct,
        "drawdown_abs_usd": drawdown_abs,
        "daily_loss_pct": daily_loss_pct,
        "dd_state": state,
        "atr_ratio": first_number(
            risk, "atr.median_ratio", "atr_ratio", "kpis_v7.atr.median_ratio"
        ),
        "atr_regime": first_label(
            risk, "atr.atr_regime", "atr_regime", "kpis_v7.atr.atr_regime", "kpis_v7.atr_regime"
        ),
    }


def _estimate(block: Any, key: str, scale: float) -> float | None:
    """A VaR/CVaR number; `lookback_used: 0` means the executor had no data to estimate from."""
    if number(get(block, "lookback_used")) == 0.0:
        return None
    return finite(_scaled(first_number(block, key), scale))


def cvar_by_symbol(risk_advanced: Any) -> dict[str, float | None]:
    """{SYMBOL: CVaR in percent of NAV} from risk_advanced.cvar.per_symbol (fractions x100)."""
    rows = per_symbol(get(risk_advanced, "cvar.per_symbol"))
    return {symbol: _estimate(row, "cvar_nav_pct", FRACTION) for symbol, row in rows.items()}


def confidence_frac(var: Any) -> float | None:
    """The VaR confidence level, a fraction 0..1 (the executor writes 0.99).

    Units are decided by the key, never guessed from the magnitude (docs/CONTRACT_RULES.md,
    rule 4): 95 is not read as 0.95 but as missing, as is any value outside 0..1.
    """
    value = first_number(var, "confidence")
    return value if value is not None and 0.0 <= value <= 1.0 else None


def var_note(risk_advanced: Any) -> str | None:
    """The source error text for a VaR confidence that was stated but read as missing."""
    var = get(risk_advanced, "var")
    stated = first_number(var, "confidence")
    if stated is None or confidence_frac(var) is not None:
        return None
    return f"var.confidence {stated:g} is not a fraction 0..1: read as missing"


def build_var(risk_advanced: Any) -> dict[str, Any]:
    """VaR/CVaR fields of the `risk` block from risk_advanced.json.

    Its `*_nav_pct` keys are fractions (the executor shows them x100); the limit and the
    confidence are configuration and stand even when there is no estimate.
    """
    var = get(risk_advanced, "var")
    cvars = [v for v in cvar_by_symbol(risk_advanced).values() if v is not None]
    return {
        "var_pct": _estimate(var, "portfolio_var_nav_pct", FRACTION),
        "var_usd": _estimate(var, "portfolio_var_usd", 1.0),
        "var_limit_pct": finite(_scaled(first_number(var, "max_portfolio_var_nav_pct"), FRACTION)),
        "var_confidence": confidence_frac(var),
        "cvar_pct": max(cvars) if cvars else None,
    }
