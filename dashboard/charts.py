"""Plotly figures: the AUM donut, the per-symbol risk view and the router chart. Pure builders.

Every figure is built from published values only; a missing value is left out of the drawing
and named in the hover text by the missing marker, never drawn as zero. Every published string
that reaches a figure (asset and symbol labels, regimes, dd states) goes through `_label`, so
Plotly draws it as written and never reads it as markup.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from dashboard.text import plotly_escape
from kpi_publisher import fmt, parse

UNIFORM_TEXT_PX = 10  # bar texts: never shrunk below this (px), so 0.00 stays legible
ROUTER_SYMBOL_KEYS: tuple[str, ...] = (
    "maker_fill_rate",
    "fallback_ratio",
    "slip_q25_bps",
    "slip_q50_bps",
    "slip_q75_bps",
)


def _label(value: Any) -> str:
    """A published string as Plotly text: shown as written, never as a tag, link or entity."""
    return plotly_escape(str(value))


def aum_donut(slices: Sequence[Mapping[str, Any]]) -> go.Figure:
    """One donut slice per asset with a positive USD value; USD in the label, ZAR in the tooltip."""
    drawn = [s for s in slices if (parse.number(s.get("usd")) or 0.0) > 0.0]
    figure = go.Figure(
        go.Pie(
            labels=[_label(s["label"]) for s in drawn],
            values=[parse.number(s.get("usd")) for s in drawn],
            hovertext=[slice_hover(s) for s in drawn],
            hole=0.55,
            sort=False,
            direction="clockwise",
            texttemplate="%{label}<br>%{value:,.2f}",
            hovertemplate="<b>%{label}</b><br>%{hovertext}<extra></extra>",
        )
    )
    figure.update_layout(
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        height=320,
        title={"text": "AUM by asset (USD)", "font": {"size": 14}},
        legend={"orientation": "v"},
    )
    return figure


def slice_hover(entry: Mapping[str, Any]) -> str:
    """Tooltip of one AUM slice: USD, ZAR (the missing marker with no rate), quantity."""
    return (
        f"USD {fmt.fmt_money(entry.get('usd'))}<br>ZAR {fmt.fmt_money(entry.get('zar'))}"
        f"<br>qty {fmt.fmt_number(entry.get('qty'), 6)}"
    )


def symbol_rows(symbols: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The published per-symbol block as rows, in the publisher's order."""
    rows = []
    for symbol, raw in symbols.items():
        entry = parse.mapping(raw)
        rows.append(
            {
                "symbol": str(symbol),
                "atr_ratio": parse.number(entry.get("atr_ratio")),
                "atr_regime": parse.text(entry.get("atr_regime")),
                "dd_today_pct": parse.number(entry.get("dd_today_pct")),
                "dd_state": parse.text(entry.get("dd_state")),
            }
        )
    return rows


def _bars(
    labels: Sequence[str], values: Sequence[float | None], texts: Sequence[str], name: str
) -> list[go.Bar | go.Scatter]:
    """One bar per label with a value, its text outside the bar and never clipped, so a real
    0.0 (a bar of no height, whose text Plotly drops when it sits inside) still reads as 0.00;
    a label without a value gets its text (the missing marker) on the zero line and no bar,
    never a zero bar. `labels` and `texts` are published strings already escaped."""
    rows = list(zip(labels, values, texts, strict=True))
    have = [(x, y, t) for x, y, t in rows if y is not None]
    missing = [(x, t) for x, y, t in rows if y is None]
    traces: list[go.Bar | go.Scatter] = [
        go.Bar(
            x=[x for x, _, _ in have],
            y=[y for _, y, _ in have],
            text=[t for _, _, t in have],
            textposition="outside",
            cliponaxis=False,
            name=name,
        )
    ]
    if missing:
        traces.append(
            go.Scatter(
                x=[x for x, _ in missing],
                y=[0.0] * len(missing),
                text=[t for _, t in missing],
                mode="text",
                textposition="top center",
                cliponaxis=False,
                hoverinfo="skip",
                showlegend=False,
                name=f"{name} (missing)",
            )
        )
    return traces


def symbol_risk_figure(rows: Sequence[Mapping[str, Any]]) -> go.Figure | None:
    """ATR ratio and drawdown today (%) by symbol, side by side; None when no symbol has either.

    Every symbol is on both charts: a bar with its value as text (0.00 included), or the
    missing marker where the value is missing.
    """
    if all(r["atr_ratio"] is None and r["dd_today_pct"] is None for r in rows):
        return None
    figure = make_subplots(rows=1, cols=2, subplot_titles=("ATR ratio", "Drawdown today (%)"))
    # Value over state, two short lines: a bar slot is ~50 px wide with six symbols.
    atr_texts = [
        f"{fmt.fmt_number(r['atr_ratio'])}<br>{_label(r['atr_regime'] or fmt.MISSING)}"
        for r in rows
    ]
    dd_texts = [
        f"{fmt.fmt_pct(r['dd_today_pct'])}<br>{_label(r['dd_state'] or fmt.MISSING)}" for r in rows
    ]
    symbols = [_label(r["symbol"]) for r in rows]
    for trace in _bars(symbols, [r["atr_ratio"] for r in rows], atr_texts, "ATR ratio"):
        figure.add_trace(trace, row=1, col=1)
    for trace in _bars(symbols, [r["dd_today_pct"] for r in rows], dd_texts, "DD today %"):
        figure.add_trace(trace, row=1, col=2)
    # Room above and below the bars for their outside text.
    figure.update_yaxes(rangemode="tozero", automargin=True)
    figure.update_layout(
        margin={"l": 10, "r": 10, "t": 60, "b": 10},
        height=300,
        showlegend=False,
        # Plotly shrinks an outside text to its bar's width; a bar of no height has none to give.
        uniformtext={"minsize": UNIFORM_TEXT_PX, "mode": "show"},
    )
    return figure


def router_rows(kpis: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Router figures per symbol where the published document carries them, else one "all" row.

    The publisher's per-symbol router numbers (`router.symbols`) give one row per symbol; older
    documents without them fall back to a `router.per_symbol` or router figures in `symbols`.
    """
    router = parse.mapping(kpis.get("router"))
    per_symbol = (
        parse.mapping(router.get("symbols"))
        or parse.mapping(router.get("per_symbol"))
        or {
            sym: entry
            for sym, entry in parse.mapping(kpis.get("symbols")).items()
            if any(
                parse.number(parse.mapping(entry).get(k)) is not None for k in ROUTER_SYMBOL_KEYS
            )
        }
    )
    sources = dict(per_symbol) if per_symbol else {"all symbols": router}
    rows = []
    for label, raw in sources.items():
        entry = parse.mapping(raw)
        row: dict[str, Any] = {"label": str(label)}
        for key in ROUTER_SYMBOL_KEYS:
            row[key] = parse.number(entry.get(key))
        if any(row[k] is not None for k in ROUTER_SYMBOL_KEYS):
            rows.append(row)
    return rows


def router_figure(rows: Sequence[Mapping[str, Any]]) -> go.Figure | None:
    """Slippage q50 with its q25..q75 range (bps), and maker fill / fallback (%), per row."""
    if not rows:
        return None
    figure = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=("Slippage q25 / q50 / q75 (bps)", "Maker fill / fallback (%)"),
    )
    slip = [r for r in rows if r["slip_q50_bps"] is not None]
    figure.add_trace(
        go.Scatter(
            x=[r["slip_q50_bps"] for r in slip],
            y=[_label(r["label"]) for r in slip],
            mode="markers",
            marker={"size": 12},
            name="q50",
            error_x={
                "type": "data",
                "symmetric": False,
                "array": [_span(r["slip_q75_bps"], r["slip_q50_bps"]) for r in slip],
                "arrayminus": [_span(r["slip_q50_bps"], r["slip_q25_bps"]) for r in slip],
            },
            customdata=[
                [fmt.fmt_bps(r["slip_q25_bps"]), fmt.fmt_bps(r["slip_q75_bps"])] for r in slip
            ],
            hovertemplate=(
                "q50 %{x:.2f} bps<br>q25 %{customdata[0]}<br>q75 %{customdata[1]}<extra></extra>"
            ),
        ),
        row=1,
        col=1,
    )
    labels = [_label(r["label"]) for r in rows]
    for key, name in (("maker_fill_rate", "maker fill"), ("fallback_ratio", "fallback")):
        values = [None if r[key] is None else r[key] * 100.0 for r in rows]
        texts = [fmt.fmt_ratio_pct(r[key]) for r in rows]
        for trace in _bars(labels, values, texts, name):
            figure.add_trace(trace, row=1, col=2)
    figure.update_yaxes(rangemode="tozero", automargin=True, row=1, col=2)
    figure.update_layout(
        margin={"l": 10, "r": 10, "t": 60, "b": 10},
        height=300,
        barmode="group",
        uniformtext={"minsize": UNIFORM_TEXT_PX, "mode": "show"},
    )
    return figure


def _span(high: float | None, low: float | None) -> float:
    """Length of one whisker; 0 when either end is unknown (no whisker is drawn)."""
    if high is None or low is None:
        return 0.0
    return max(0.0, high - low)
