"""The overview cards: NAV, AUM, drawdown, ATR, router, slippage, fee/PnL, dd_state, exposure, VaR.

`overview_cards` is pure (a published kpis_v7 document in, card texts out); `render_cards` is
the only Streamlit call. Card labels are fixed: tests and operators find a card by its label.
Values and captions carry published strings (dd_state, regimes, asset names) and Streamlit
renders both as Markdown, so both are escaped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import streamlit as st

from dashboard import fields
from dashboard.text import md_escape
from kpi_publisher import fmt, parse
from kpi_publisher.contract import unpriced_count

CARDS_PER_ROW = 5
UNPRICED_SHOWN = 5  # names in the AUM card's caption; the rest are counted ("and 395 more")


@dataclass(frozen=True)
class Card:
    """`value` is the big figure, `caption` the line under it (units, age, range); `alert`
    draws the caption in red (a limit breached)."""

    label: str
    value: str
    caption: str
    alert: bool = False


def _text(value: Any) -> str:
    return parse.text(value) or fmt.MISSING


def nav_cards(kpis: Mapping[str, Any]) -> list[Card]:
    nav = parse.mapping(kpis.get("nav"))
    aum = parse.mapping(kpis.get("aum"))
    age = f"age {fmt.fmt_age(nav.get('age_s'))}"
    if nav.get("fresh") is False and parse.number(nav.get("age_s")) is not None:
        age += " (not fresh)"
    usd_zar = parse.number(aum.get("usd_zar"))
    rate = "no USD/ZAR rate" if usd_zar is None else f"USD/ZAR {fmt.fmt_number(usd_zar, 4)}"
    return [
        Card("NAV (USD)", fmt.fmt_money(nav.get("nav_usd")), age),
        Card("NAV (ZAR)", fmt.fmt_money(nav.get("nav_zar")), rate),
        Card("AUM (USD)", fmt.fmt_money(aum.get("total_usd")), unpriced_caption(aum)),
        Card("AUM (ZAR)", fmt.fmt_money(aum.get("total_zar")), rate),
    ]


def unpriced_caption(aum: Mapping[str, Any]) -> str:
    """The AUM card's caption: the first UNPRICED_SHOWN unpriced names and how many more, "all
    assets priced" for an empty list, the missing marker without a list (no AUM block)."""
    raw = aum.get("unpriced")
    count = unpriced_count(raw)
    if count is None or not isinstance(raw, list):
        return fmt.MISSING
    if count == 0:
        return "all assets priced"
    entries = raw if count == len(raw) else raw[:-1]  # without a last "<n> more" entry
    names = fields.texts(entries)[:UNPRICED_SHOWN]
    if not names:
        return f"{count:,} unpriced"
    more = count - len(names)
    return "unpriced: " + ", ".join(names) + (f" and {more:,} more" if more else "")


def risk_cards(kpis: Mapping[str, Any]) -> list[Card]:
    risk = parse.mapping(kpis.get("risk"))
    router = parse.mapping(kpis.get("router"))
    fees = parse.mapping(kpis.get("fees"))
    fill = fmt.fmt_ratio_pct(router.get("maker_fill_rate"))
    fallback = fmt.fmt_ratio_pct(router.get("fallback_ratio"))
    q25 = fmt.fmt_number(router.get("slip_q25_bps"))
    q75 = fmt.fmt_number(router.get("slip_q75_bps"))
    window = parse.number(fees.get("window_days"))
    window_text = f" over {fmt.fmt_number(window, 0)}d" if window is not None else ""
    return [
        Card(
            "Drawdown",
            fmt.fmt_pct(risk.get("drawdown_pct")),
            f"{fmt.fmt_money(risk.get('drawdown_abs_usd'))} USD · daily loss "
            f"{fmt.fmt_pct(risk.get('daily_loss_pct'))}",
        ),
        Card(
            "ATR ratio",
            fmt.fmt_number(risk.get("atr_ratio")),
            f"regime {_text(risk.get('atr_regime'))}",
        ),
        Card(
            "Router fill / fallback",
            f"{fill} / {fallback}",
            f"quality {_text(router.get('quality'))}",
        ),
        Card(
            "Slippage q50",
            fmt.fmt_bps(router.get("slip_q50_bps")),
            f"q25–q75 {q25} – {q75} bps",
        ),
        Card(
            "Fee / PnL",
            fmt.fmt_ratio_pct(fees.get("fee_pnl_ratio")),
            f"fees {fmt.fmt_money(fees.get('fees_usd'))} / PnL "
            f"{fmt.fmt_money(fees.get('pnl_usd'))} USD{window_text}",
        ),
        Card("DD state", _text(risk.get("dd_state")), "drawdown state"),
        exposure_card(risk),
        var_card(risk),
    ]


def exposure_card(risk: Mapping[str, Any]) -> Card:
    """Gross / net position notional in percent of NAV."""
    gross = fmt.fmt_pct(risk.get("gross_exposure_pct"))
    net = fmt.fmt_pct(risk.get("net_exposure_pct"))
    return Card("Exposure", f"{gross} / {net}", "gross / net of NAV")


def var_card(risk: Mapping[str, Any]) -> Card:
    """Portfolio VaR in percent of NAV against the executor's limit; red when above it."""
    var_pct = parse.number(risk.get("var_pct"))
    limit = parse.number(risk.get("var_limit_pct"))
    confidence = parse.number(risk.get("var_confidence"))
    conf_text = fmt.MISSING if confidence is None else fmt.fmt_ratio_pct(confidence, 0)
    breached = var_pct is not None and limit is not None and var_pct > limit
    caption = (
        f"limit {fmt.fmt_pct(limit)} · {conf_text} conf · worst CVaR "
        f"{fmt.fmt_pct(risk.get('cvar_pct'))}"
    )
    return Card(
        "VaR", fmt.fmt_pct(var_pct), ("over limit · " if breached else "") + caption, breached
    )


def overview_cards(kpis: Mapping[str, Any] | None) -> list[Card]:
    """Every overview card for a kpis_v7 document; with none, every value is missing."""
    doc = parse.mapping(kpis)
    return nav_cards(doc) + risk_cards(doc)


def render_cards(cards: Sequence[Card]) -> None:
    """Cards in rows of CARDS_PER_ROW, each an st.metric plus a caption."""
    for start in range(0, len(cards), CARDS_PER_ROW):
        row = cards[start : start + CARDS_PER_ROW]
        for column, card in zip(st.columns(CARDS_PER_ROW), row, strict=False):
            with column:
                st.metric(card.label, md_escape(card.value), border=True)
                caption = md_escape(card.caption)
                st.caption(f":red[{caption}]" if card.alert else caption)
