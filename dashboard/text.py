"""Safe text for every place the dashboard renders markup from a published value.

Two renderers interpret markup in strings the dashboard hands them:

- Streamlit's Markdown elements (captions, badges, metric labels and values, errors) read
  Markdown, Streamlit's directives (`:red[...]`, `:material/...:`, `$...$`) and autolinks:
  `md_escape`.
- Plotly's text (axis categories, pie labels and legend, bar text, hover templates) reads an
  HTML subset (`<b>`, `<a href>`, `<br>`, `<span style>`) and HTML entities: `plotly_escape`.

Every string that comes from a published file (asset and symbol labels, dd_state, atr_regime,
router quality and source, source names and errors) goes through one of the two before it is
drawn, so it shows as written and never as markup. `st.text` and `st.dataframe` cells are
plain text and need neither.
"""

from __future__ import annotations

import re

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~<>$:=&])")
# Where GFM turns plain text into a link by itself (autolink literals: "www.", "http://",
# "mailto:", "xmpp:", an e-mail address), whatever the backslashes: a word joiner there
# (U+2060, zero-width, invisible) breaks the pattern and leaves the text as written.
_AUTOLINK_AT = re.compile(r"(?i)(?<=www)(?=\.)|(?<=:)(?=//)|(?<=mailto)(?=:)|(?<=xmpp)(?=:)|(?=@)")
WORD_JOINER = "\u2060"
# Line breaks, tabs and other control characters would start new Markdown blocks (a heading,
# a code block, a list): one space each.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def md_escape(text: str) -> str:
    """Backslash-escape Markdown syntax so a value such as "-12.00" is not read as a list item.

    Also takes the sting out of links (`[x](javascript:1)`), autolinks (a URL, "www." or an
    e-mail address: a word joiner breaks them), HTML (`<img onerror=...>`), entities,
    Streamlit's colour and icon directives and LaTeX; control characters become spaces so the
    text stays on one line.
    """
    plain = _AUTOLINK_AT.sub(WORD_JOINER, _CONTROL.sub(" ", text))
    return _MARKDOWN_SPECIAL.sub(r"\\\1", plain)


def plotly_escape(text: str) -> str:
    """Entity-escape `&`, `<` and `>` so Plotly draws "<b>BTC</b>" as those characters.

    Plotly splits text on its tags first and decodes entities in the text between them only,
    so an escaped label can never become a tag or a link.
    """
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
