"""hedge-kpi overview (layout only). Run: `hedge-kpi dashboard --out-dir DIR` (or
`streamlit run dashboard/app.py -- --out-dir DIR`).

Everything below the title sits in one fragment that re-runs every REFRESH_S seconds, so a
new publish shows in place, without a page reload. Cards and figures are built once per
published file (keyed on its stamp), not once per refresh.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import streamlit as st

from dashboard import freshness, kpi_panel, panels, settings, views
from dashboard.data import PublishedStore
from dashboard.text import md_escape
from kpi_publisher.config import ConfigError


@st.cache_resource
def _store(out_dir: str, max_bytes: int) -> PublishedStore:
    """One reader (and one last-good cache) per directory, shared by every browser session."""
    return PublishedStore(Path(out_dir), max_bytes=max_bytes)


@st.cache_resource(max_entries=8)
def _kpi_views(out_dir: str, stamp: Any, _doc: Any) -> views.KpiViews:
    return views.kpi_views(_doc)


@st.cache_resource(max_entries=8)
def _positions_view(out_dir: str, stamp: Any, _doc: Any) -> views.PositionsView:
    return views.positions_view(_doc)


def _key(stamp: Any) -> tuple[int, int, int] | None:
    return None if stamp is None else (stamp.ino, stamp.mtime_ns, stamp.size)


@st.fragment(run_every=settings.REFRESH_S)
def overview(store: PublishedStore, config: settings.DashboardSettings) -> None:
    now = time.time()
    kpis = store.kpis()
    positions = store.positions()
    out_dir = str(store.out_dir)
    kpi_views = _kpi_views(out_dir, _key(kpis.stamp), kpis.doc)
    positions_view = _positions_view(out_dir, _key(positions.stamp), positions.doc)
    panels.render_status(kpis, freshness.badges(kpis, positions, now, config.down_after_s), now)
    kpi_panel.render_cards(kpi_views.cards)
    left, right = st.columns([2, 3])
    with left:
        panels.render_aum(kpi_views)
    with right:
        panels.render_positions(positions_view)
    left, right = st.columns(2)
    with left:
        panels.render_symbols(kpi_views)
    with right:
        panels.render_router(kpi_views)


def main() -> None:
    st.set_page_config(page_title="hedge-kpi overview", layout="wide")
    st.title("hedge-kpi overview")
    try:
        config = settings.resolve(sys.argv[1:], os.environ)
    except ConfigError as exc:
        st.error(md_escape(f"dashboard settings: {exc}"))
        st.stop()
    st.caption(md_escape(f"reading {config.out_dir}"))
    overview(_store(str(config.out_dir), config.max_bytes), config)


main()
