"""The history: an equity curve and an underwater (drawdown) chart with a window selector, and
PnL / max-drawdown / Sharpe tiles, from nav_history_v7.json and kpis_v7.json's `performance`.

`history_tiles` and `history_figures` are pure; the figures are built once per version of
nav_history_v7.json (`stamp_cache.by_stamp`). A value the history does not cover is shown as
`fmt.MISSING` with the publisher's reason ("needs 7.0 d, have 2.3 d"). Without a history the
panel says so. The curve is drawn only beside the KPIs it belongs with (`curve_withheld`), else
the panel says why: a `hedge-kpi once` after a `run` leaves the run's nav_history_v7.json in the
out dir beside KPIs that carry no performance block, and a curve no longer rewritten stays there.
Both builders take any document and never raise: a curve keeps only its valid points
(`fields.curve`); a nav_history_v7.json that fails its JSON Schema is badged "invalid" by the
reader (`data.parse_document`) like the other published files.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go
import streamlit as st

from dashboard import fields, freshness, panels
from dashboard.data import Published, PublishedStore
from dashboard.kpi_panel import Card
from dashboard.stamp_cache import by_stamp
from dashboard.text import md_escape
from kpi_publisher import fmt, parse
from kpi_publisher.contract import INVALID, NAV_HISTORY_FILE, NAV_HISTORY_SCHEMA, OK

WINDOWS: tuple[str, ...] = ("24h", "7d", "30d", "all")
WINDOW_LABELS: Mapping[str, str] = {"24h": "24 h", "7d": "7 d", "30d": "30 d", "all": "all"}
RATIO_WINDOW: Mapping[str, str] = {"24h": "30d", "7d": "30d", "30d": "30d", "all": "90d"}
NO_HISTORY = "no NAV history published yet"


def _reason(entry: Mapping[str, Any]) -> str:
    return parse.text(entry.get("reason")) or ""


def history_tiles(kpis: Mapping[str, Any] | None, window: str) -> list[Card]:
    """PnL, max drawdown and Sharpe for `window`, and the drawdown from the all-time peak."""
    performance = parse.mapping(parse.mapping(kpis).get("performance"))
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
        f"{fmt.fmt_number(ratio.get('sortino'))} · "
        f"{fmt.fmt_number(ratio.get('daily_returns'), 0)} days"
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


def _utc(epoch_s: Any) -> str:
    when = fields.epoch_time(epoch_s)
    return fmt.MISSING if when is None else when.strftime("%Y-%m-%d %H:%M:%S UTC")


def curve_withheld(
    kpis: Mapping[str, Any] | None, history: Mapping[str, Any] | None, allowed_s: float
) -> str | None:
    """Why the published NAV curve is not drawn beside these KPIs; None when it belongs.

    It belongs when kpis_v7.json carries a `performance` block and the block's last NAV point
    (`performance.history.last_t`) and the curve's (`last_t`) are at most `allowed_s` apart
    (the publisher-down allowance, three heartbeats): the publisher writes both from one series
    a moment apart, so a curve further off is of another run or stopped being written.
    """
    curve = parse.mapping(history)
    written = parse.text(curve.get("updated_at")) or fmt.MISSING
    performance = parse.mapping(parse.mapping(kpis).get("performance"))
    if not performance:
        return (
            f"{NAV_HISTORY_FILE} (written {written}) is not drawn: these KPIs carry no "
            "performance block, so it is not of this publish"
        )
    kpis_end = parse.number(parse.mapping(performance.get("history")).get("last_t"))
    curve_end = parse.number(curve.get("last_t"))
    if kpis_end is None or curve_end is None:
        return f"{NAV_HISTORY_FILE} (written {written}) is not drawn: no last NAV point to match"
    gap_s = kpis_end - curve_end
    if abs(gap_s) <= allowed_s:
        return None
    side = "before" if gap_s > 0 else "after"
    return (
        f"{NAV_HISTORY_FILE} is not drawn: its curve ends {_utc(curve_end)}, "
        f"{fmt.fmt_age(abs(gap_s))} {side} the KPIs' history (allowed "
        f"{fmt.fmt_age(allowed_s)}); written {written}"
    )


def curve_caption(history: Mapping[str, Any] | None) -> str:
    """The age of the curve drawn: its last point and when the file was written."""
    curve = parse.mapping(history)
    written = parse.text(curve.get("updated_at")) or fmt.MISSING
    return f"NAV curve to {_utc(curve.get('last_t'))} · written {written}"


def _figures_of(series: Mapping[str, Any]) -> tuple[go.Figure, go.Figure] | None:
    """The two charts of one window; None when its equity curve has fewer than two points."""
    nav_t, nav_usd = fields.curve(series.get("t"), series.get("nav_usd"))
    if len(nav_t) < 2:
        return None
    drawdown_t, drawdown_pct = fields.curve(series.get("t"), series.get("drawdown_pct"))
    equity = go.Figure(go.Scatter(x=nav_t, y=nav_usd, mode="lines", name="NAV"))
    equity.update_layout(
        title="Equity curve (NAV, USD)", height=300, margin={"t": 40, "b": 20, "l": 10, "r": 10}
    )
    under = go.Figure(
        go.Scatter(
            x=drawdown_t,
            y=[-v for v in drawdown_pct],
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
    """Per window with at least two valid points, the equity curve and the underwater chart."""
    history = parse.mapping(doc)
    if history.get("schema") != NAV_HISTORY_SCHEMA:
        return {}
    windows = parse.mapping(history.get("windows"))
    figures = {}
    for name in WINDOWS:
        pair = _figures_of(parse.mapping(windows.get(name)))
        if pair is not None:
            figures[name] = pair
    return figures


cached_figures = by_stamp(history_figures)


def render_tiles(tiles: Sequence[Card]) -> None:
    """The tiles in one row, each a bordered box: label, value, and the reason or detail."""
    for column, tile in zip(st.columns(len(tiles)), tiles, strict=True):
        with column, st.container(border=True, key=f"history_tile_{tiles.index(tile)}"):
            st.caption(md_escape(tile.label))
            st.markdown(f"#### {md_escape(tile.value)}")
            st.caption(md_escape(tile.caption) or " ")


def render_history(store: PublishedStore, kpis: Published, allowed_s: float) -> None:
    """The history section: selector, tiles, the two charts (or why there are none).

    `allowed_s`: how far apart the curve's last point and the KPIs' may be (`curve_withheld`).
    """
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
    # Absent is the normal state without a history: badged only once there was one.
    badged = published.status == INVALID or published.stale_read
    badge = freshness.file_badge(published) if badged else None
    if badge is not None:
        panels.render_badges([badge])
    figures = cached_figures(published) if published.status == OK or published.doc else {}
    withheld = curve_withheld(kpis.doc, published.doc, allowed_s) if figures else None
    if withheld is not None:
        st.info(md_escape(withheld))
        return
    if window not in figures:
        reason = None if badge is not None else published.error  # the badge already says it
        st.info(md_escape(reason or f"no {WINDOW_LABELS[window]} curve yet"))
        return
    equity, under = figures[window]
    st.caption(md_escape(curve_caption(published.doc)))
    st.plotly_chart(equity, use_container_width=True, key="history_equity")
    st.plotly_chart(under, use_container_width=True, key="history_underwater")
