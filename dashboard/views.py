"""Everything drawn from one published document, built once per document (pure).

The page refreshes every second but a document changes only on a publish (about every
heartbeat), so the app builds these once per file stamp and re-renders them cheaply.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from dashboard import aum_slices, charts, kpi_panel, positions_table
from kpi_publisher import parse


@dataclass(frozen=True)
class KpiViews:
    """The cards and figures of one kpis_v7 document (a figure is None when there is no data)."""

    cards: tuple[kpi_panel.Card, ...]
    donut: go.Figure | None
    symbol_risk: go.Figure | None
    router: go.Figure | None
    router_source: str | None
    router_symbols_used: float | None


@dataclass(frozen=True)
class PositionsView:
    """The table's cell texts, each column's width (px) and the totals line."""

    frame: pd.DataFrame
    widths: Mapping[str, int]
    totals: str


def kpi_views(doc: Mapping[str, Any] | None) -> KpiViews:
    kpis = parse.mapping(doc)
    slices = aum_slices.build_aum_slices(kpis)
    router = parse.mapping(kpis.get("router"))
    return KpiViews(
        cards=tuple(kpi_panel.overview_cards(doc)),
        donut=charts.aum_donut(slices) if aum_slices.slice_labels(slices) else None,
        symbol_risk=charts.symbol_risk_figure(
            charts.symbol_rows(parse.mapping(kpis.get("symbols")))
        ),
        router=charts.router_figure(charts.router_rows(kpis)),
        router_source=parse.text(router.get("source")),
        router_symbols_used=parse.number(router.get("symbols_used")),
    )


def positions_view(doc: Mapping[str, Any] | None) -> PositionsView:
    frame = positions_table.positions_frame(doc)
    return PositionsView(
        frame, positions_table.column_widths(frame), positions_table.totals_line(doc)
    )
