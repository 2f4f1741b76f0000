"""The Streamlit panels below the cards: freshness badges, AUM donut, positions, symbols, router."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import streamlit as st

from dashboard import freshness, positions_table
from dashboard.data import Published
from dashboard.text import md_escape
from dashboard.views import KpiViews, PositionsView
from kpi_publisher import fmt, parse
from kpi_publisher.contract import publish_age_s

BadgeColor = Literal["red", "orange"]
BADGE_COLORS: Mapping[str, BadgeColor] = {"error": "red", "warning": "orange"}
PLOTLY_CONFIG = {"displayModeBar": False}


def render_status(kpis: Published, badges: Sequence[freshness.Badge], now: float) -> None:
    """A line with the publish age, then one badge per problem (or one green "all ok")."""
    age_s = publish_age_s(kpis.doc, now)
    stamp = parse.text(kpis.doc.get("updated_at")) if kpis.doc is not None else None
    st.caption(md_escape(f"published {fmt.fmt_age(age_s)} ago ({stamp or fmt.MISSING})"))
    if not badges:
        st.badge("publisher up · all sources ok", color="green")
        return
    render_badges(badges)


def render_badges(badges: Sequence[freshness.Badge]) -> None:
    """One badge per problem, then their details as plain text."""
    for badge in badges:
        st.badge(md_escape(badge.label), color=BADGE_COLORS.get(badge.level, "red"))
    st.text("\n".join(f"{b.label}: {b.detail}" for b in badges if b.detail))


def render_aum(views: KpiViews) -> None:
    if views.donut is None:
        st.caption("AUM: no valued assets")
        return
    st.plotly_chart(views.donut, key="aum_donut", config=PLOTLY_CONFIG)


def render_positions(view: PositionsView) -> None:
    """The positions table: text cells, every column as wide as its widest text (`grid_width`:
    the grid keeps the widths of its first draw and would cut a longer value it gets later)."""
    st.subheader("Positions")
    st.dataframe(
        view.frame,
        hide_index=True,
        placeholder=fmt.MISSING,
        key="positions_table",
        column_config={
            column.name: st.column_config.TextColumn(
                column.label,
                width=view.widths[column.name],
                alignment="right" if column.figure else "left",
            )
            for column in positions_table.COLUMNS
        },
    )
    st.caption(md_escape(view.totals))


def render_symbols(views: KpiViews) -> None:
    st.subheader("Risk by symbol")
    if views.symbol_risk is None:
        st.caption("no per-symbol ATR or drawdown published")
        return
    st.plotly_chart(views.symbol_risk, key="symbol_risk", config=PLOTLY_CONFIG)


def render_router(views: KpiViews) -> None:
    st.subheader("Router")
    used = views.router_symbols_used
    st.caption(
        md_escape(
            f"source {views.router_source or fmt.MISSING} · symbols used "
            f"{fmt.MISSING if used is None else int(used)}"
        )
    )
    if views.router is None:
        st.caption("no router figures published")
        return
    st.plotly_chart(views.router, key="router_chart", config=PLOTLY_CONFIG)
