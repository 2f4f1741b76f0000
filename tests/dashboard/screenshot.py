"""Refresh the README's screenshot: `python -m tests.dashboard.screenshot [PNG] [--fixtures]`.

By default it runs `hedge-kpi demo` (demo executor + publisher + dashboard) in a temp dir, lets
a few cycles pass, and photographs the page in headless Chromium; `--fixtures` photographs the
`full` fixture book instead (deterministic numbers). Writes docs/dashboard.png unless told.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from tests.dashboard import browser, published

REPO = Path(__file__).resolve().parents[2]
DEFAULT_PNG = REPO / "docs" / "dashboard.png"
CHARTS_JS = "() => document.querySelectorAll('.js-plotly-plot .main-svg').length"
URL_LINE = re.compile(r"^http://127\.0\.0\.1:\d+$")


def photograph(url: str, png: Path, settle_s: float) -> None:
    with browser.chromium_page() as page:
        page.goto(url)
        page.wait_for_function(
            "() => document.querySelectorAll('[data-testid=\"stMetricValue\"]').length >= 10"
        )
        page.wait_for_function(f"() => ({browser.DONUT_SLICES_JS})() > 0")
        page.wait_for_function(f"() => ({CHARTS_JS})() >= 3")
        time.sleep(settle_s)
        page.wait_for_function(f"() => ({CHARTS_JS})() >= 3")
        png.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(png), full_page=True)


def from_fixtures(png: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out_dir = Path(tmp)
        published.publish(out_dir, "full", time.time())
        with browser.dashboard_server(out_dir, out_dir / "dashboard.log") as url:
            photograph(url, png, settle_s=2.0)


def from_demo(png: Path, warmup_s: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "demo.out"
        with out.open("wb") as stdout:
            demo = subprocess.Popen(
                [sys.executable, "-m", "kpi_publisher", "demo", "--root", str(Path(tmp) / "root"),
                 "--port", "0", "--interval", "1"],
                stdout=stdout, stderr=subprocess.DEVNULL, start_new_session=True,
                env=browser.kpi_free_env(),
            )  # fmt: skip
        try:
            deadline = time.monotonic() + 120
            url = None
            while url is None and time.monotonic() < deadline and demo.poll() is None:
                url = next((x for x in out.read_text().splitlines() if URL_LINE.match(x)), None)
                time.sleep(0.2)
            if url is None:
                raise SystemExit("hedge-kpi demo did not print its URL")
            time.sleep(warmup_s)
            photograph(url, png, settle_s=2.0)
        finally:
            os.kill(demo.pid, signal.SIGTERM)
            demo.wait(timeout=60)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.dashboard.screenshot")
    parser.add_argument("png", nargs="?", default=str(DEFAULT_PNG))
    parser.add_argument("--fixtures", action="store_true", help="photograph the fixture book")
    parser.add_argument("--warmup-s", type=float, default=8.0, help="demo cycles to let pass")
    args = parser.parse_args(argv)
    if not browser.CHROMIUM.exists():
        print(f"{browser.CHROMIUM} not found", file=sys.stderr)
        return 1
    png = Path(args.png).absolute()
    if args.fixtures:
        from_fixtures(png)
    else:
        from_demo(png, args.warmup_s)
    print(png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
