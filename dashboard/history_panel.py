"""The history: an equity curve and an underwater (drawdown) chart with a window selector, and
PnL / max-drawdown / Sharpe tiles, from nav_history_v7.json and kpis_v7.json's `performance`.

`history_tiles` and `history_figures` are pure; the figures are built once per version of
nav_history_v7.json (`stamp_cache.by_stamp`). A value the history does not cover is shown as
`fmt.MISSING` with the publisher's reason ("needs 7.0 d, have 2.3 d"). Without a history the
panel says so.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go
import streamlit as st

from dashboard.data import Published, PublishedStore
from dashboard.kpi_panel import Card
from dashboard.stamp_cache import by_stamp
from dashboard.text import md_escape
from kpi_publisher import fmt, parse
from kpi_publisher.contract import OK

NAV_HISTORY_FILE = "nav_history_v7.json"
NAV_HISTORY_SCHEMA = "hedge.nav_history_v7"
WINDOWS: tuple[str, ...] = ("24h", "7d", "30d", "all")
WINDOW_LABELS: Mapping[str, str] = {"24h": "24 h", "7d": "7 d", "30d": "30 d", "all": "all"}
RATIO_WINDOW: Mapping[str, str] = {"24h": "30d", "7d": "30d", "30d": "30d", "all": "90d"}
NO_HISTORY = "no NAV history published yet"


def _reason(entry: Mapping[str, Any]) -> str:
    return parse.text(entry.get("reason")) or ""


def history_tiles(kpis: Mapping[str, Any] | None, window: str) -> list[Card]:
    """PnL, max drawdown and Sharpe for `window`, and the drawdown from the all-time peak."""
    performance = parse.mapping((kpis or {}).get("performance"))
    row = parse.mapping(parse.mapping(performance.get("windows")).get(window))
    ratio_name = RATIO_WINDOW[window]
    ratio = parse.mapping(parse.mapping(performance.get("ratios")).get(ratio_name))
    label = WINDOW_LABELS[window]
    if not performance:
        return [
            Card(f"PnL {label}", fmt.MISSING, NO_HISTORY),
            Card(f"Max drawdown {label}", fmt.MISSING, NO_HISTORY),
            Card(f"Sharpe {ratio_name}", fmt.MISSING, NO_HISTORY),
            Card("Drawdown from peak", fmt.MISSING, NO_HISTORY),
        ]
    pnl = fmt.fmt_money(row.get("pnl_usd"))
    pnl_caption = _reason(row) or f"{fmt.fmt_pct(row.get('pnl_pct'))} · USD"
    sharpe_caption = _reason(ratio) or (
        f"vol {fmt.fmt_pct(ratio.get('volatility_pct'), 1)} · Sortino "
        f"{fmt.fmt_number(ratio.get('sortino'))} · {ratio.get('daily_returns')} days"
    )
    peak = fmt.fmt_money(performance.get("peak_nav_usd"))
    return [
        Card(f"PnL {label}", pnl, pnl_caption),
        Card(f"Max drawdown {label}", fmt.fmt_pct(row.get("max_drawdown_pct")), _reason(row)),
        Card(f"Sharpe {ratio_name}", fmt.fmt_number(ratio.get("sharpe")), sharpe_caption),
        Card(
            "Drawdown from peak",
            fmt.fmt_pct(performance.get("drawdown_pct")),
            f"history peak {peak} USD (the executor's own is the Drawdown card)",
        ),
    ]


def _times(ts: Sequence[Any]) -> list[dt.datetime]:
    return [dt.datetime.fromtimestamp(float(t), dt.UTC) for t in ts]


def _figures_of(series: Mapping[str, Any]) -> tuple[go.Figure, go.Figure]:
    x = _times(series.get("t") or [])
    equity = go.Figure(go.Scatter(x=x, y=series.get("nav_usd") or [], mode="lines", name="NAV"))
    equity.update_layout(
        title="Equity curve (NAV, USD)", height=300, margin={"t": 40, "b": 20, "l": 10, "r": 10}
    )
    under = go.Figure(
        go.Scatter(
            x=x,
            y=[-float(v) for v in series.get("drawdown_pct") or []],
            mode="lines",
            fill="tozeroy",
            name="drawdown",
            line={"color": "#d62728"},
        )
    )
    under.update_layout(
        title="Underwater (% below the all-time peak)",
        height=240,
        margin={"t": 40, "b": 20, "l": 10, "r": 10},
        yaxis={"ticksuffix": "%"},
    )
    return equity, under


def history_figures(doc: Mapping[str, Any] | None) -> dict[str, tuple[go.Figure, go.Figure]]:
    """Per window, the equity curve and the underwater chart; {} without a curve."""
    if not doc or doc.get("schema") != NAV_HISTORY_SCHEMA:
        return {}
    windows = parse.mapping(doc.get("windows"))
    return {
        name: _figures_of(parse.mapping(windows.get(name)))
        for name in WINDOWS
        if len(parse.mapping(windows.get(name)).get("t") or []) >= 2
    }


cached_figures = by_stamp(history_figures)


def render_tiles(tiles: Sequence[Card]) -> None:
    """The tiles in one row, each a bordered box: label, value, and the reason or detail."""
    for column, tile in zip(st.columns(len(tiles)), tiles, strict=True):
        with column, st.container(border=True, key=f"history_tile_{tiles.index(tile)}"):
            st.caption(md_escape(tile.label))
            st.markdown(f"#### {md_escape(tile.value)}")
            st.caption(md_escape(tile.caption) or " ")


def render_history(store: PublishedStore, kpis: Published) -> None:
    """The history section: selector, tiles, the two charts (or why there are none)."""
    st.subheader("History")
    window = (
        st.segmented_control(
            "Window",
            WINDOWS,
            default="7d",
            format_func=lambda name: WINDOW_LABELS[name],
            key="history_window",
        )
        or "7d"
    )
    render_tiles(history_tiles(kpis.doc, window))
    published = store.read(NAV_HISTORY_FILE)
    figures = cached_figures(published) if published.status == OK or published.doc else {}
    if window not in figures:
        st.info(md_escape(published.error or f"no {WINDOW_LABELS[window]} curve yet"))
        return
    equity, under = figures[window]
    st.plotly_chart(equity, use_container_width=True, key="history_equity")
    st.plotly_chart(under, use_container_width=True, key="history_underwater")
