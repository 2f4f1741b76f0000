"""Column widths (px) for `st.dataframe`, from the texts a column shows.

The grid (glide-data-grid) sizes a column once, on its first draw, from a sample of rows (the
first ten or so, outliers left out) and keeps that width for the element's life: a value that
comes later and is wider is cut at the cell's edge with no sign of it (a right-aligned
"3,381.58" shows as "81.58"). A column given its width is never measured, so each table column
gets one wide enough for its widest text, worked out here.

Widths are upper bounds of Streamlit's grid font (Source Sans, 14 px): each character counts
at most as much as the widest glyph of its group, measured in Chromium. A browser test
(tests/dashboard/test_positions_browser.py) checks the result against the real font.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

# Upper bound (px) of each glyph of a group, Source Sans at 14 px (Chromium's measureText).
_GROUPS: tuple[tuple[str, float], ...] = (
    (" ", 2.8),
    ("|ij'.,:;", 3.5),
    ("lI", 3.7),
    ("!f()[]{}-", 4.4),
    ("tr/\\", 4.9),
    ('*s?z"', 6.0),
    ("xcvyYJ\u2013", 6.75),
    ("LFke0123456789#$+<=>^~_", 7.0),
    ("agXVESTZ`oA", 7.6),
    ("hunbdpqPRC", 8.0),
    ("KB&DG", 8.7),
    ("UNHOQ", 9.3),
    ("wM", 10.2),
    ("W", 11.1),
)
CHAR_PX: Mapping[str, float] = {c: px for chars, px in _GROUPS for c in chars}
ASCII_PX = 12.0  # any other ASCII glyph ("%", "m", "@": the widest, up to 11.9)
OTHER_PX = 15.0  # beyond ASCII: CJK ~1 em, emoji ~1.05 em
PADDING_PX = 8  # the grid's cell padding, each side
SLACK_PX = 1  # sub-pixel text positioning
MIN_PX = 50  # the grid's own minimum column width


def text_px(text: str) -> float:
    """An upper bound of `text`'s drawn width (px) in the grid's font."""
    return sum(CHAR_PX.get(c, ASCII_PX if c.isascii() else OTHER_PX) for c in text)


def column_px(label: str, texts: Iterable[str]) -> int:
    """A width (px) that shows the header `label` and every text of the column uncut."""
    widest = max((text_px(t) for t in texts), default=0.0)
    return max(MIN_PX, math.ceil(max(widest, text_px(label)) + 2 * PADDING_PX + SLACK_PX))
