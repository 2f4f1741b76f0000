"""`hedge-kpi demo` in real headless Chromium: live numbers, then a clean stop."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from dashboard import serve
from tests.dashboard import browser

pytestmark = [pytest.mark.browser]

NAV_VALUE_JS = """() => [...document.querySelectorAll('[data-testid="stMetric"]')]
  .find(e => e.innerText.startsWith('NAV (USD)'))
  ?.querySelector('[data-testid="stMetricValue"]')?.innerText.trim() ?? ''"""


DEMO_URL = re.compile(r"^http://127\.0\.0\.1:(\d+)$")
DEMO_PID = re.compile(r"^demo: started (\w+) \(pid (\d+)\)$")


def wait_for_line(path: Path, pattern: re.Pattern[str], proc: Any, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for line in path.read_text(errors="replace").splitlines():
            if pattern.match(line):
                return line
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    raise AssertionError(f"no line matching {pattern.pattern} in {path}: {path.read_text()}")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.timeout(300)
def test_demo_serves_live_numbers_and_stops_cleanly(tmp_path: Path) -> None:
    """`hedge-kpi demo`: URL on its own line, live cards and donut, clean stop on SIGTERM."""
    browser.require_chromium()
    root = tmp_path / "root"
    out, err = tmp_path / "demo.out", tmp_path / "demo.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        demo = subprocess.Popen(
            [sys.executable, "-m", "kpi_publisher", "demo", "--root", str(root), "--port", "0",
             "--interval", "1"],
            stdout=stdout, stderr=stderr, start_new_session=True, env=browser.kpi_free_env(),
        )  # fmt: skip
    try:
        url = wait_for_line(out, DEMO_URL, demo, 150.0)
        pids = {
            m[1]: int(m[2])
            for m in (DEMO_PID.match(x) for x in err.read_text().splitlines())
            if m is not None
        }
        assert set(pids) == {"executor", "publisher", "dashboard"}
        with browser.chromium_page() as page:
            page.goto(url)
            page.wait_for_function(
                f"() => /^[0-9,]+\\.[0-9]{{2}}$/.test(({NAV_VALUE_JS})())", polling=10
            )
            kpis = json.loads((root / "logs" / "state" / "kpis_v7.json").read_text())
            assets = [s["label"] for s in kpis["aum"]["slices"] if s["usd"] > 0]
            assert len(assets) >= 2
            browser.wait_donut(page, len(assets))
            first = browser.cards(page)["NAV (USD)"]
            page.wait_for_function(
                f"(old) => ({NAV_VALUE_JS})() !== old",
                arg=first,
                polling=10,
                timeout=browser.FIRST_LOAD_MS,
            )
            page.screenshot(path=str(tmp_path / "demo.png"), full_page=True)
        os.kill(demo.pid, signal.SIGTERM)
        assert demo.wait(timeout=60) == 0
        assert not [name for name, pid in pids.items() if alive(pid)]
        assert not serve.is_healthy(url)
        assert (
            "stopped dashboard (exit 0), publisher (exit 0), executor (exit 0)" in err.read_text()
        )
    finally:
        if demo.poll() is None:  # a failed assertion: let the demo stop its children first
            os.kill(demo.pid, signal.SIGTERM)
            try:
                demo.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(demo.pid, signal.SIGKILL)
                demo.wait()
