"""hedge-kpi overview (layout only). Run: `hedge-kpi dashboard --out-dir DIR` (or
`streamlit run dashboard/app.py -- --out-dir DIR`).

Idle costs almost nothing: only the status line (publish age and badges) sits in a fragment
that re-runs every REFRESH_S seconds; it stats the two published files and, when either
changed, re-runs the page. Both files are read as one publish (`PublishedStore.snapshot`; a
pair still apart when read again is badged). The cards, figures and table are drawn on that run
only, from builders cached by the file's stamp (`stamp_cache`), so an unchanged page re-sends
nothing but the status line: Streamlit re-sends every element a run draws, changed or not, so
not drawing is the only way not to re-send. Any panel drawn from a published file belongs in
`body` with a `by_stamp` builder.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import streamlit as st

from dashboard import freshness, history_panel, kpi_panel, panels, settings, views
from dashboard.data import PublishedStore, Snapshot
from dashboard.stamp_cache import by_stamp
from dashboard.text import md_escape
from kpi_publisher.config import ConfigError

SHOWN = "shown_publish"  # session state: Snapshot.key the page body was drawn from

kpi_views = by_stamp(views.kpi_views)
positions_view = by_stamp(views.positions_view)


@st.cache_resource
def _store(out_dir: str, max_bytes: int) -> PublishedStore:
    """One reader (and one last-good cache) per directory, shared by every browser session."""
    return PublishedStore(Path(out_dir), max_bytes=max_bytes)


@st.fragment(run_every=settings.REFRESH_S)
def status(store: PublishedStore, config: settings.DashboardSettings) -> None:
    """Publish age and freshness badges (they follow the clock); a re-run on a new publish."""
    snapshot = store.snapshot()
    now = time.time()
    badges = freshness.badges(snapshot, now, config.down_after_s)
    panels.render_status(snapshot.kpis, badges, now)
    if snapshot.key != st.session_state.get(SHOWN):
        st.rerun()


def body(snapshot: Snapshot) -> None:
    """Cards, AUM, positions, symbols, router: drawn only when a published file changed."""
    overview = kpi_views(snapshot.kpis)
    kpi_panel.render_cards(overview.cards)
    left, right = st.columns([1, 2])  # the table needs ~850 px for a typical book
    with left:
        panels.render_aum(overview)
    with right:
        panels.render_positions(positions_view(snapshot.positions))
    left, right = st.columns(2)
    with left:
        panels.render_symbols(overview)
    with right:
        panels.render_router(overview)


def main() -> None:
    st.set_page_config(page_title="hedge-kpi overview", layout="wide")
    st.title("hedge-kpi overview")
    try:
        config = settings.resolve(sys.argv[1:], os.environ)
    except ConfigError as exc:
        st.error(md_escape(f"dashboard settings: {exc}"))
        st.stop()
    st.caption(md_escape(f"reading {config.out_dir}"))
    store = _store(str(config.out_dir), config.max_bytes)
    snapshot = store.snapshot()
    st.session_state[SHOWN] = snapshot.key
    status(store, config)
    body(snapshot)
    history_panel.render_history(store, snapshot.kpis, config.down_after_s)


main()
