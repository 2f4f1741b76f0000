"""The Streamlit panels below the cards: freshness badges, AUM donut, positions, symbols, router."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import streamlit as st

from dashboard import charts, freshness, live_helpers, nav_helpers
from dashboard.data import Published
from dashboard.text import md_escape
from kpi_publisher import fmt, parse

BADGE_COLORS: Mapping[str, str] = {"error": "red", "warning": "orange"}


def render_status(kpis: Published, badges: Sequence[freshness.Badge], now: float) -> None:
    """A line with the publish age, then one badge per problem (or one green "all ok")."""
    age_s = freshness.publish_age_s(kpis.doc, now)
    stamp = parse.text(kpis.doc.get("updated_at")) if kpis.doc is not None else None
    st.caption(md_escape(f"published {fmt.fmt_age(age_s)} ago ({stamp or fmt.MISSING})"))
    if not badges:
        st.badge("publisher up · all sources ok", color="green")
        return
    for badge in badges:
        st.badge(md_escape(badge.label), color=BADGE_COLORS.get(badge.level, "red"))
    st.text("\n".join(f"{b.label}: {b.detail}" for b in badges if b.detail))


def render_aum(kpis: Mapping[str, Any] | None) -> None:
    slices = nav_helpers.build_aum_slices(kpis or {})
    if not nav_helpers.slice_labels(slices):
        st.caption("AUM: no valued assets")
        return
    st.plotly_chart(charts.aum_donut(slices), key="aum_donut", config={"displayModeBar": False})


def render_positions(positions: Mapping[str, Any] | None) -> None:
    frame = live_helpers.positions_frame(positions)
    st.subheader("Positions")
    st.dataframe(
        frame,
        hide_index=True,
        placeholder=fmt.MISSING,
        key="positions_table",
        column_config={
            "qty": st.column_config.NumberColumn("qty", format="%.8g"),
            "entry": st.column_config.NumberColumn("entry", format="%.8g"),
            "mark": st.column_config.NumberColumn("mark", format="%.8g"),
            "notional_fmt": st.column_config.TextColumn("notional (USD)"),
            "pnl_fmt": st.column_config.TextColumn("PnL (USD)"),
            "leverage": st.column_config.NumberColumn("leverage", format="%.2fx"),
            "atr_ratio": st.column_config.NumberColumn("ATR ratio", format="%.2f"),
            "dd_today": st.column_config.NumberColumn("DD today", format="%.2f%%"),
        },
    )
    st.caption(md_escape(live_helpers.totals_line(positions)))


def render_symbols(kpis: Mapping[str, Any] | None) -> None:
    st.subheader("Risk by symbol")
    rows = charts.symbol_rows(parse.mapping((kpis or {}).get("symbols")))
    figure = charts.symbol_risk_figure(rows)
    if figure is None:
        st.caption("no per-symbol ATR or drawdown published")
        return
    st.plotly_chart(figure, key="symbol_risk", config={"displayModeBar": False})


def render_router(kpis: Mapping[str, Any] | None) -> None:
    st.subheader("Router")
    rows = charts.router_rows(kpis or {})
    router = parse.mapping((kpis or {}).get("router"))
    used = parse.number(router.get("symbols_used"))
    st.caption(
        md_escape(
            f"source {parse.text(router.get('source')) or fmt.MISSING} · symbols used "
            f"{fmt.MISSING if used is None else int(used)}"
        )
    )
    figure = charts.router_figure(rows)
    if figure is None:
        st.caption("no router figures published")
        return
    st.plotly_chart(figure, key="router_chart", config={"displayModeBar": False})
