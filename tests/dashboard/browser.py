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
