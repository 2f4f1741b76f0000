"""Hostile published labels in real headless Chromium: shown as written, never run or styled."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.dashboard import browser
from tests.dashboard.test_markup import AUTOLINKS, PAYLOADS, hostile_kpis

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]

# JS: what markup the hostile labels could have become, anywhere on the page.
INJECTED_JS = """() => ({
  images: document.querySelectorAll('img[src="x"], img[onerror]').length,
  scripts: [...document.querySelectorAll('script')].filter(s => s.text.includes('alert')).length,
  js_links: [...document.querySelectorAll('a')]
    .filter(a => (a.getAttribute('href') || a.getAttribute('xlink:href') || '')
      .startsWith('javascript')).length,
  svg_links: document.querySelectorAll('.js-plotly-plot a').length,
  evil_links: [...document.querySelectorAll('a')].map(a => a.getAttribute('href') || '')
    .filter(h => h.includes('evil.example')),
  text: document.body.innerText.replaceAll('\u2060', ''),
  bold_tspans: [...document.querySelectorAll('.js-plotly-plot tspan')]
    .filter(t => (t.getAttribute('style') || '').includes('bold')).map(t => t.textContent),
  legend: [...document.querySelectorAll('.js-plotly-plot .legendtext')].map(t => t.textContent),
  ticks: [...document.querySelectorAll('.js-plotly-plot .xtick text, .js-plotly-plot .ytick text')]
    .map(t => t.textContent),
})"""


def test_hostile_labels_render_as_text_in_chromium(tmp_path: Path) -> None:
    browser.require_chromium()
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    hostile_kpis(out_dir)
    dialogs: list[str] = []
    with (
        browser.dashboard_server(out_dir, tmp_path / "dashboard.log", heartbeat_s=60.0) as url,
        browser.chromium_page() as page,
    ):
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        page.goto(url)
        browser.wait_card(page, "DD state", PAYLOADS[0])
        browser.wait_donut(page, 4)
        browser.wait_text(page, "regime [x](javascript:1)")
        page.wait_for_timeout(1000)  # let any injected handler fire
        found: dict[str, Any] = page.evaluate(INJECTED_JS)
    assert dialogs == []
    assert (found["images"], found["scripts"], found["js_links"]) == (0, 0, 0)
    assert found["svg_links"] == 0
    assert found["evil_links"] == []  # a URL, "www." or an e-mail address is no link
    for text in AUTOLINKS:
        assert text in found["text"]
    assert not [t for t in found["bold_tspans"] if "BTC" in t], found["bold_tspans"]
    for label in PAYLOADS:
        assert label in found["legend"], found["legend"]
        assert label in found["ticks"], found["ticks"]
