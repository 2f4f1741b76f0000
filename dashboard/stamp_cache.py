"""Build what a published file shows once per version of that file, for every session.

The page refreshes every second, a published file changes about once a heartbeat. A builder
(cards, a figure, a table) wrapped in `by_stamp` runs once per (builder, file, stamp): every
later call with the same file version, from any browser session, gets the same object back.
The stamp is the reader's (inode, mtime_ns, size) of the document shown, so a torn or missing
file, which shows the last good document, keeps its key and builds nothing.

Any panel drawn from a published file (the overview's views, history charts) wraps its builder
here and draws only on a run that follows a change (see `app.py`), so an idle page neither
builds nor re-sends it, however large the document.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import streamlit as st

from dashboard.data import Published, stamp_key

T = TypeVar("T")
MAX_ENTRIES = 8  # per builder: the versions still on some session's screen


@st.cache_resource(max_entries=MAX_ENTRIES * 8, show_spinner=False)
def _built(builder: str, name: str, key: Any, _build: Any, _doc: Any) -> Any:
    return _build(_doc)


def by_stamp(build: Callable[[Mapping[str, Any] | None], T]) -> Callable[[Published], T]:
    """`build(doc)` cached by the published file's stamp; results are shared, not to be mutated."""
    builder = f"{build.__module__}.{build.__qualname__}"

    def cached(published: Published) -> T:
        result: T = _built(builder, published.name, stamp_key(published), build, published.doc)
        return result

    cached.__doc__ = build.__doc__
    return cached
