"""hedge-kpi overview (layout only). Run: `streamlit run dashboard/app.py -- --out-dir DIR`.

Everything below the title sits in one fragment that re-runs every REFRESH_S seconds, so a
new publish shows in place, without a page reload.
"""

from __future__ import annotations

import os
import sys
import time

import streamlit as st

from dashboard import freshness, kpi_panel, panels, settings
from dashboard.data import PublishedStore
from dashboard.text import md_escape
from kpi_publisher.config import ConfigError


@st.cache_resource
def _store(out_dir: str, max_bytes: int) -> PublishedStore:
    """One reader (and one last-good cache) per directory, shared by every browser session."""
    from pathlib import Path

    return PublishedStore(Path(out_dir), max_bytes=max_bytes)


@st.fragment(run_every=settings.REFRESH_S)
def overview(store: PublishedStore, config: settings.DashboardSettings) -> None:
    now = time.time()
    kpis = store.kpis()
    positions = store.positions()
    panels.render_status(kpis, freshness.badges(kpis, positions, now, config.down_after_s), now)
    kpi_panel.render_cards(kpi_panel.overview_cards(kpis.doc))
    left, right = st.columns([2, 3])
    with left:
        panels.render_aum(kpis.doc)
    with right:
        panels.render_positions(positions.doc)
    left, right = st.columns(2)
    with left:
        panels.render_symbols(kpis.doc)
    with right:
        panels.render_router(kpis.doc)


def main() -> None:
    st.set_page_config(page_title="hedge-kpi overview", layout="wide")
    st.title("hedge-kpi overview")
    try:
        config = settings.resolve(sys.argv[1:], os.environ)
    except ConfigError as exc:
        st.error(f"dashboard settings: {exc}")
        st.stop()
    st.caption(md_escape(f"reading {config.out_dir}"))
    overview(_store(str(config.out_dir), config.max_bytes), config)


main()
