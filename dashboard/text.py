"""Safe text for Streamlit's Markdown-rendering elements (captions, badges, metric labels)."""

from __future__ import annotations

import re

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~<>$:=])")


def md_escape(text: str) -> str:
    """Backslash-escape Markdown syntax so a value such as "-12.00" is not read as a list item."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)
