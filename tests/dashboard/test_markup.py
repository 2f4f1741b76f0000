"""Published documents the dashboard must not trust or render as markup, under AppTest.

Badges: a document of an unknown schema_version, or whose `sources` block is absent, empty,
short of a source, or carries a non-object entry or an unknown status, never shows the green
"all sources ok". Markup: asset and symbol labels, dd_state, regimes, router quality and source
errors from the published file reach Plotly figures and Streamlit Markdown escaped, so they
show as written and never become tags, links or scripts.
"""

from __future__ import annotations

import html
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from dashboard import charts, freshness
from dashboard.data import Published, Snapshot
from dashboard.text import WORD_JOINER, md_escape, plotly_escape
from kpi_publisher.contract import OK
from tests.dashboard import published, test_app
from tests.dashboard.test_app import badges, chart_specs, run_app, texts, unescape

GREEN = "green: publisher up · all sources ok"
PAYLOADS = ("<img src=x onerror=alert(1)>", "<b>BTC</b>", "[x](javascript:1)")
# Plain text GFM would make a link of by itself.
AUTOLINKS = ("https://evil.example/login", "www.evil.example", "mail@evil.example.com")


# The app's environment of the AppTest suite: KPI_OUT_DIR is the test's tmp dir.
out_dir = test_app.out_dir


def publish_full(out_dir: Path, **changes: Any) -> dict[str, Any]:
    """The "full" book published now, with top-level kpis_v7 keys replaced (None: removed)."""
    docs = published.publish(out_dir, "full", time.time())
    kpis = docs["kpis_v7.json"]
    for key, value in changes.items():
        if value is None:
            kpis.pop(key, None)
        else:
            kpis[key] = value
    published.write_doc(out_dir, "kpis_v7.json", kpis)
    return kpis


def full_sources(**changes: Any) -> dict[str, Any]:
    sources = dict(published.load("full", "kpis_v7.json")["sources"])
    for name, entry in changes.items():
        if entry is None:
            sources.pop(name)
        else:
            sources[name] = entry
    return sources


# --- badges ------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [99, 0, "1", 1.5, None, True])
def test_unknown_kpis_schema_version_gets_a_badge(out_dir: Path, version: Any) -> None:
    publish_full(out_dir, schema_version=version)
    shown = badges(run_app())
    assert shown == ["red: kpis_v7.json schema_version unknown"]
    assert GREEN not in shown


def test_unknown_positions_schema_version_gets_a_badge(out_dir: Path) -> None:
    docs = published.publish(out_dir, "full", time.time())
    docs["positions_v7.json"]["schema_version"] = 7
    published.write_doc(out_dir, "positions_v7.json", docs["positions_v7.json"])
    app = run_app()
    assert badges(app) == ["red: positions_v7.json schema_version unknown"]
    assert "schema_version 7, this dashboard reads 1" in texts(app)


@pytest.mark.parametrize(
    ("sources", "expected"),
    [
        (None, "red: sources missing"),
        ([], "red: sources missing"),
        ("ok", "red: sources missing"),
        ({}, "red: sources empty"),
    ],
)
def test_sources_absent_or_empty_gets_a_badge(out_dir: Path, sources: Any, expected: str) -> None:
    """No source list is no evidence that the inputs are healthy."""
    publish_full(out_dir, sources=sources)
    assert badges(run_app()) == [expected]


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({"status": "degraded", "age_s": 1.0, "error": None}, "red: nav status unknown"),
        ({"status": None, "age_s": 1.0, "error": None}, "red: nav status unknown"),
        ({"age_s": 1.0, "error": None}, "red: nav status unknown"),
        ({"status": 1}, "red: nav status unknown"),
        ("ok", "red: nav unreadable"),
        (["ok"], "red: nav unreadable"),
        (None, "red: nav not reported"),
    ],
)
def test_unknown_source_status_or_entry_gets_a_badge(
    out_dir: Path, entry: Any, expected: str
) -> None:
    publish_full(out_dir, sources=full_sources(nav=entry))
    app = run_app()
    assert badges(app) == [expected]


def test_unknown_status_badge_quotes_the_status_as_plain_text(out_dir: Path) -> None:
    publish_full(out_dir, sources=full_sources(fx={"status": "<b>fine</b>", "age_s": 1.0}))
    app = run_app()
    assert badges(app) == ["red: fx status unknown"]
    assert "status '<b>fine</b>' is not ok, stale, invalid or missing" in texts(app)


def test_a_stamp_an_hour_ahead_is_publisher_down_not_fresh(out_dir: Path) -> None:
    """Beyond the 60 s clock-skew allowance a build time is no timestamp (contract rule 2)."""
    published.publish(out_dir, "full", time.time() + 3630)
    app = run_app()
    assert badges(app) == ["red: publisher down"]
    assert "generated_at is 1h 00m ahead of this clock (over 1m 00s)" in texts(app)


def test_a_stamp_within_the_skew_allowance_is_up(out_dir: Path) -> None:
    published.publish(out_dir, "full", time.time() + 30)
    assert badges(run_app()) == [GREEN]


# --- markup ------------------------------------------------------------------------------


def hostile_kpis(out_dir: Path) -> dict[str, Any]:
    """The full book with every published string the page shows replaced by markup."""
    docs = published.publish(out_dir, "full", time.time())
    kpis = docs["kpis_v7.json"]
    img, bold, link = PAYLOADS
    for entry, label in zip(kpis["aum"]["slices"], PAYLOADS, strict=False):
        entry["label"] = label
    kpis["aum"]["unpriced"] = [link, *AUTOLINKS]
    symbols = list(kpis["symbols"].values())
    kpis["symbols"] = dict(zip(PAYLOADS, symbols, strict=True))
    kpis["symbols"][img].update(atr_regime=bold, dd_state=link)
    kpis["risk"].update(dd_state=img, atr_regime=link)
    kpis["router"].update(quality="<script>alert(1)</script>", source=bold)
    kpis["router"]["symbols"] = {
        label: {"maker_fill_rate": 0.5, "fallback_ratio": 0.1, "slip_q50_bps": 1.0}
        for label in PAYLOADS
    }
    kpis["sources"]["router"] = {"status": "invalid", "age_s": 3.0, "error": f"bad {img}"}
    published.write_doc(out_dir, "kpis_v7.json", kpis)
    positions = docs["positions_v7.json"]
    positions["positions"][0]["symbol"] = bold
    published.write_doc(out_dir, "positions_v7.json", positions)
    return kpis


TEMPLATES = frozenset({"hovertemplate", "texttemplate"})  # the dashboard's own markup


def strings(value: Any) -> Iterator[str]:
    """Every string inside a figure's traces (labels, x/y categories, text), templates aside."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            if key not in TEMPLATES:
                yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def test_labels_reach_every_chart_escaped(out_dir: Path) -> None:
    hostile_kpis(out_dir)
    specs = chart_specs(run_app())
    assert sorted(specs) == ["aum", "router", "symbols"]
    escaped = [plotly_escape(p) for p in PAYLOADS]
    pie = specs["aum"]["data"][0]
    assert pie["labels"][:3] == escaped
    atr, dd = specs["symbols"]["data"]
    assert sorted(atr["x"]) == sorted(dd["x"]) == sorted(escaped)
    img = atr["x"].index(escaped[0])
    assert atr["text"][img] == "1.31<br>&lt;b&gt;BTC&lt;/b&gt;"
    assert dd["text"][dd["x"].index(escaped[0])] == "0.55%<br>[x](javascript:1)"
    slip, fill, fallback = specs["router"]["data"]
    assert sorted(slip["y"]) == sorted(fill["x"]) == sorted(fallback["x"]) == sorted(escaped)
    # Drawn as written: decoding Plotly's entities gives back the published label.
    assert [html.unescape(label) for label in pie["labels"][:3]] == list(PAYLOADS)
    for name, spec in specs.items():
        for text in strings(spec["data"]):
            for tag in ("<img", "<b>", "<script", "</b>"):
                assert tag not in text, (name, text)


def markdown_values(app: AppTest) -> list[str]:
    """Every element Streamlit renders as Markdown: markdown/badges, captions, metric values."""
    values = [m.value for m in app.markdown] + [c.value for c in app.caption]
    values += [str(m.value) for m in app.metric] + [m.label for m in app.metric]
    return values


def test_published_strings_reach_markdown_escaped(out_dir: Path) -> None:
    hostile_kpis(out_dir)
    app = run_app()
    assert not app.exception
    raw = markdown_values(app)
    for payload in (*PAYLOADS, "<script>alert(1)</script>"):
        assert not any(payload in value for value in raw), payload
    metrics = {m.label: str(m.value) for m in app.metric}
    assert metrics["DD state"] == md_escape(PAYLOADS[0])
    captions = [c.value for c in app.caption]
    assert md_escape("regime [x](javascript:1)") in captions
    assert md_escape("quality <script>alert(1)</script>") in captions
    assert md_escape("unpriced: " + ", ".join(["[x](javascript:1)", *AUTOLINKS])) in captions
    assert any(md_escape("source <b>BTC</b>") in c for c in captions)
    # Shown as written once the escapes are read, and free text stays plain text.
    assert "regime [x](javascript:1)" in [unescape(c) for c in captions]
    assert "router invalid: age 3s; bad <img src=x onerror=alert(1)>" in texts(app)
    assert app.dataframe[0].value["symbol"].tolist()[0] == "<b>BTC</b>"


# --- the shared helpers ------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        *PAYLOADS,
        "<script>alert(1)</script>",
        "&lt;b&gt;",
        ":red[alarm] :material/home: $x^2$",
        "`code` **bold** ~~gone~~ # h",
        "https://evil.example/x www.evil.example",
    ],
)
def test_md_escape_leaves_no_markdown_syntax(text: str) -> None:
    escaped = md_escape(text)
    assert unescape(escaped).replace(WORD_JOINER, "") == text
    specials = set("\\`*_{}[]()#+-.!|~<>$:=&")
    for i, char in enumerate(escaped):
        if char in specials and (i == 0 or escaped[i - 1] != "\\"):
            assert escaped[i + 1 : i + 2] in specials, (text, escaped, i)


@pytest.mark.parametrize(
    "text",
    [
        "see https://evil.example/login now",
        "HTTP://EVIL.EXAMPLE",
        "www.evil.example",
        "WWW.evil.example",
        "mail@evil.example.com",
        "mailto:x@evil.example",
        "xmpp:desk@evil.example",
    ],
)
def test_md_escape_leaves_no_autolink(text: str) -> None:
    """GFM links a URL, "www." and an e-mail address in plain text whatever the backslashes
    (a published "see https://evil.example/login" was a clickable link in the router card): a
    word joiner breaks each pattern, and the text reads as written."""
    shown = unescape(md_escape(text))
    assert shown.replace(WORD_JOINER, "") == text
    lowered = shown.lower()
    assert "://" not in lowered and "www." not in lowered
    assert "mailto:" not in lowered and "xmpp:" not in lowered
    assert all(shown[i - 1] == WORD_JOINER for i, c in enumerate(shown) if c == "@")


def test_md_escape_keeps_a_value_on_one_line() -> None:
    """A newline would start a new Markdown block (a heading, a list, a code block)."""
    assert md_escape("ok\n# heading\r\n    code\tx") == r"ok \# heading      code x"


@pytest.mark.parametrize("text", [*PAYLOADS, "a & b", "&amp;", "<<>>", "plain"])
def test_plotly_escape_is_read_back_as_the_same_text(text: str) -> None:
    escaped = plotly_escape(text)
    assert "<" not in escaped and ">" not in escaped
    assert html.unescape(escaped) == text


def test_every_chart_label_goes_through_the_shared_helper() -> None:
    rows = charts.symbol_rows({"<i>X</i>": {"atr_ratio": 1.0, "atr_regime": "<u>hi</u>"}})
    figure = charts.symbol_risk_figure(rows)
    assert figure is not None
    bar = json.loads(figure.to_json())["data"][0]
    assert bar["x"] == ["&lt;i&gt;X&lt;/i&gt;"]
    assert bar["text"] == ["1.00<br>&lt;u&gt;hi&lt;/u&gt;"]


def test_source_badges_never_green_for_a_document_without_sources() -> None:
    doc = published.load("full", "kpis_v7.json")
    read = Published("kpis_v7.json", OK, {**doc, "sources": {}, "generated_at": 1.0})
    positions = Published("positions_v7.json", OK, published.load("full", "positions_v7.json"))
    found = freshness.badges(Snapshot(read, positions, True), 1.0, 15.0)
    assert [b.label for b in found] == [freshness.SOURCES_EMPTY]
