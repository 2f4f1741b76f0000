"""Real-browser helpers: a Streamlit server on loopback and Debian's headless Chromium.

Playwright drives /usr/bin/chromium (never a downloaded browser). Without chromium the tests
skip with a clear message, except under CI (CI=true), where a missing browser fails them.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from dashboard import serve
from kpi_publisher.demo_supervisor import stop_all

if TYPE_CHECKING:
    from playwright.sync_api import ViewportSize

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT: ViewportSize = {"width": 1500, "height": 1400}
START_TIMEOUT_S = 120.0
# The first render loads Plotly's bundle: seconds when idle, far more on a loaded CI box.
FIRST_LOAD_MS = 120_000
# A published change must show within this (a functional bound; latency is recorded, not timed).
CHANGE_MS = 15_000

# JS: {label: value} of every st.metric card on the page.
CARDS_JS = """() => Object.fromEntries([...document.querySelectorAll('[data-testid="stMetric"]')]
  .map(e => [e.querySelector('[data-testid="stMetricLabel"]')?.innerText.trim(),
             e.querySelector('[data-testid="stMetricValue"]')?.innerText.trim()]))"""
CARD_IS_JS = """([label, value]) => [...document.querySelectorAll('[data-testid="stMetric"]')]
  .some(e => e.querySelector('[data-testid="stMetricLabel"]')?.innerText.trim() === label
          && e.querySelector('[data-testid="stMetricValue"]')?.innerText.trim() === value)"""
DONUT_SLICES_JS = "() => document.querySelectorAll('.js-plotly-plot g.slice').length"
PAGE_HAS_TEXT_JS = "(text) => document.body.innerText.includes(text)"


def kpi_free_env() -> dict[str, str]:
    """This environment without KPI_* settings: a developer's shell must not steer a test."""
    return {k: v for k, v in os.environ.items() if not k.startswith("KPI_")}


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in {"", "0", "false", "no"}


def require_chromium() -> None:
    """Skip (or, under CI, fail) when Debian's chromium or Playwright is absent."""
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} not found: install Debian's chromium (.ci/run does)"
        if in_ci():
            pytest.fail(f"CI: {message}")
        pytest.skip(f"browser test skipped: {message}")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:
        if in_ci():
            pytest.fail(f"CI: playwright is not installed ({exc})")
        pytest.skip(f"browser test skipped: playwright is not installed ({exc})")


@contextlib.contextmanager
def dashboard_server(out_dir: Path, log_path: Path, *, heartbeat_s: float = 60.0) -> Iterator[str]:
    """Serve the overview of `out_dir` on a free loopback port; yields the base URL."""
    port = serve.free_port()
    command = serve.streamlit_command(out_dir, port=port, heartbeat_s=heartbeat_s)
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=kpi_free_env(),
        )
    try:
        base_url = serve.url(port)
        if not serve.wait_healthy(base_url, START_TIMEOUT_S, alive=lambda: proc.poll() is None):
            raise RuntimeError(f"dashboard did not start: {log_path.read_text(errors='replace')}")
        yield base_url
    finally:
        stop_all({"dashboard": proc}, 10.0)


@contextlib.contextmanager
def chromium_page() -> Iterator[Any]:
    """A fresh headless Chromium page (Playwright uses a new temp profile per launch)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.set_default_timeout(FIRST_LOAD_MS)
            yield page
        finally:
            browser.close()


def cards(page: Any) -> dict[str, str]:
    return dict(page.evaluate(CARDS_JS))


def wait_card(page: Any, label: str, value: str, timeout_ms: float = FIRST_LOAD_MS) -> None:
    """Wait until the card `label` shows `value` (DOM polled every 10 ms)."""
    page.wait_for_function(CARD_IS_JS, arg=[label, value], polling=10, timeout=timeout_ms)


def wait_text(page: Any, text: str, timeout_ms: float = FIRST_LOAD_MS) -> None:
    page.wait_for_function(PAGE_HAS_TEXT_JS, arg=text, polling=10, timeout=timeout_ms)


def wait_donut(page: Any, slices: int, timeout_ms: float = FIRST_LOAD_MS) -> None:
    page.wait_for_function(f"() => ({DONUT_SLICES_JS})() === {int(slices)}", timeout=timeout_ms)


def donut_slices(page: Any) -> int:
    return int(page.evaluate(DONUT_SLICES_JS))


# JS: the positions grid as drawn. glide-data-grid paints on a canvas; its accessibility mirror
# (a <table> inside the canvas) holds each visible cell's text, the canvas pixels hold where the
# column and row borders are (lines of the border colour across ~the whole grid). Per cell:
# its text, the text's width in the grid's own font (measureText), the cell's width (px), and
# whether ink touches either edge (a value cut by its cell runs into the border). The mirror
# holds a text column's text as drawn (a NumberColumn's holds the raw number: there only the
# ink test applies).
GRID_JS = """() => {
  const canvas = document.querySelector(
    '[data-testid="stDataFrame"] canvas[data-testid="data-grid-canvas"]');
  if (!canvas) return null;
  const css = getComputedStyle(canvas.closest('.stDataFrameGlideDataEditor'));
  const hex = css.getPropertyValue('--gdg-border-color').trim();
  const border = [1, 3, 5].map(i => parseInt(hex.slice(i, i + 2), 16));
  const family = css.getPropertyValue('--gdg-font-family');
  const fonts = [css.getPropertyValue('--gdg-header-font-style') + ' ' + family,
                 css.getPropertyValue('--gdg-base-font-style') + ' ' + family];
  const padding = parseFloat(css.getPropertyValue('--gdg-cell-horizontal-padding'));
  const {width, height} = canvas;
  const scale = width / canvas.clientWidth;
  const px = canvas.getContext('2d').getImageData(0, 0, width, height).data;
  const rgb = (x, y) => { const i = (y * width + x) * 4; return [px[i], px[i + 1], px[i + 2]]; };
  const isBorder = (x, y) => rgb(x, y).every((v, k) => Math.abs(v - border[k]) <= 2);
  const isInk = (x, y) => Math.min(...rgb(x, y)) < 160;
  const lines = (n, m, on) => {
    const found = [];
    for (let a = 0; a < n; a++) {
      let k = 0;
      for (let b = 0; b < m; b++) if (on(a, b)) k++;
      if (k >= 0.8 * m) found.push(a);
    }
    return found;
  };
  const spans = (cuts, end) =>
    [-1, ...cuts].map((a, i) => [a + 1, i < cuts.length ? cuts[i] : end]);
  const cols = spans(lines(width, height, (x, y) => isBorder(x, y)), width);
  const rows = spans(lines(height, width, (y, x) => isBorder(x, y)), height);
  const measure = document.createElement('canvas').getContext('2d');
  const mirror = [...canvas.querySelectorAll('tr[role=row]')]
    .map(tr => [...tr.querySelectorAll('th, td')].map(c => c.innerText));
  const edge = Math.max(1, Math.round(padding * scale / 2));
  const cells = [];
  mirror.forEach((texts, r) => texts.forEach((text, c) => {
    if (r >= rows.length || c >= cols.length) return;
    const [x0, x1] = cols[c], [y0, y1] = rows[r];
    measure.font = fonts[r === 0 ? 0 : 1];
    let ink = false;
    for (let y = y0; y < y1; y++)
      for (let x = x0; x < x1; x++)
        if ((x < x0 + edge || x >= x1 - edge) && isInk(x, y)) ink = true;
    cells.push({row: r, col: c, text, text_px: measure.measureText(text).width,
                cell_px: (x1 - x0) / scale, ink_at_edge: ink});
  }));
  return {columns: cols.length, rows: rows.length, colcount: Number(
    canvas.querySelector('table[role=grid]')?.getAttribute('aria-colcount')),
    padding_px: padding, mirror, cells};
}"""


def grid(page: Any) -> dict[str, Any]:
    """The positions grid as drawn (GRID_JS): `mirror` rows of cell texts, `cells` measured."""
    found = page.evaluate(GRID_JS)
    assert found is not None, "no positions grid on the page"
    return dict(found)


def cut_cells(drawn: dict[str, Any]) -> list[dict[str, Any]]:
    """The cells whose text is wider than the cell leaves room for, or whose ink runs into
    an edge of the cell: a value the operator sees cut."""
    room = 2 * float(drawn["padding_px"])
    return [c for c in drawn["cells"] if c["ink_at_edge"] or c["text_px"] + room > c["cell_px"]]


# JS: per Plotly chart, its titles (subplot titles included) and, per subplot ("xy", "x2y2"),
# [text, width px, inside the chart] of every bar text and text-mode point it drew: a text
# Plotly dropped is absent, one drawn off the chart is not inside.
PLOT_TEXTS_JS = """() => [...document.querySelectorAll('.js-plotly-plot')].map(plot => {
  const box = plot.getBoundingClientRect();
  const subplots = Object.fromEntries([...plot.querySelectorAll('.cartesianlayer > .subplot')]
    .map(sub => [[...sub.classList].find(c => c !== 'subplot'),
      [...sub.querySelectorAll('.bartext, .textpoint text')].map(t => {
        const r = t.getBoundingClientRect();
        const inside = r.width > 0 && r.left >= box.left && r.right <= box.right
          && r.top >= box.top && r.bottom <= box.bottom;
        const lines = [...t.querySelectorAll('tspan.line')].map(l => l.textContent);
        return [lines.length ? lines.join(' ') : t.textContent, r.width, inside];
      })]));
  const titles = [...plot.querySelectorAll('.annotation-text, .gtitle')].map(t => t.textContent);
  return {titles, subplots};
})"""


def plot_texts(page: Any, title: str) -> dict[str, list[list[Any]]]:
    """Per subplot of the chart titled `title`, the texts drawn (PLOT_TEXTS_JS)."""
    plots = [p for p in page.evaluate(PLOT_TEXTS_JS) if title in p["titles"]]
    assert len(plots) == 1, f"{len(plots)} charts titled {title!r}"
    return dict(plots[0]["subplots"])
