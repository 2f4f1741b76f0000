"""Publish to visible in the dashboard: Streamlit on loopback, headless Chromium via Playwright.

The daemon publishes a realistic book; the overview (`dashboard/app.py`, served with the
production settings of `dashboard.serve`) is open in Debian's chromium. One sample: at a
random phase of the dashboard's refresh timer, replace the risk snapshot with a new fee
figure, note when `kpis_v7.json` carries it (raw inotify), then poll the DOM every 10 ms
until the formatted figure appears. Reported: input -> visible and publish -> visible; the
first two changes after the page loads are warm-up (first renders of every panel), shown
apart and not counted.

Idle cost: with the published files unchanged (the daemon's heartbeat set beyond the window),
the CPU of the Streamlit server and of every Chromium process, from /proc/<pid>/stat over
IDLE_WINDOW_S, with no tab open, then 1 and 3 tabs open (after IDLE_SETTLE_S), and the
websocket bytes the first tab received in the window.
Skipped (with the reason) when the dashboard, Streamlit, Playwright or chromium is missing.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import random
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench import procs
from bench.book import REALISTIC, Book, marker_value, write_book
from bench.e2e import OUT_NAME, kpis_marker
from bench.inotify import IN_MOVED_TO, Inotify
from bench.procs import cpu_s
from bench.stats import summary
from kpi_publisher.fmt import fmt_money

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PAGE_HAS_TEXT_JS = "(text) => document.body.innerText.includes(text)"
FIRST_INDEX = 50_000  # fee figures 51,000.00 and up: no other number on the page looks alike
WARMUP_SAMPLES = 2  # the first changes after page load also pay for first renders: not counted
START_TIMEOUT_S = 60.0
SAMPLE_TIMEOUT_S = 10.0  # a change not visible by then is a miss (reported)
IDLE_WINDOW_S = 20.0
IDLE_SETTLE_S = 5.0  # after a tab opens: first render and Plotly's bundle are not counted
IDLE_TABS = (1, 3)
IDLE_HEARTBEAT_S = 3600.0  # no heartbeat republish inside a window: the files do not change
CHROMIUM_EXE_PREFIX = "/usr/lib/chromium/"


def unavailable() -> str | None:
    """Why the dashboard benchmark cannot run here, or None when it can."""
    repo = Path(__file__).resolve().parents[1]
    if not (repo / "dashboard" / "app.py").exists():
        return "dashboard/app.py is not in this tree"
    for module in ("streamlit", "playwright", "dashboard.serve"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not importable"
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is not installed"
    return None


def _wait_published(ino: Inotify, out_dir: Path, index: int, timeout_s: float) -> float | None:
    deadline = time.perf_counter() + timeout_s
    while (remaining := deadline - time.perf_counter()) > 0:
        events = ino.read(remaining)
        t = time.perf_counter()
        if any(name == OUT_NAME for _m, name in events):
            try:
                found = kpis_marker((out_dir / OUT_NAME).read_bytes())
            except (OSError, ValueError):
                continue
            if found is not None and found >= index:
                return t
    return None


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                ppid = int(fh.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def chromium_pids(root: int) -> list[int]:
    """Every Chromium process (browser, zygotes, renderers, GPU, utility) under `root`."""
    tree = _children()
    found: list[int] = []
    todo = list(tree.get(root, []))
    while todo:
        pid = todo.pop()
        todo.extend(tree.get(pid, []))
        try:
            exe = os.readlink(f"/proc/{pid}/exe")
        except OSError:
            continue
        if exe.startswith(CHROMIUM_EXE_PREFIX) or exe == str(CHROMIUM):
            found.append(pid)
    return found


def _cpu_sum(pids: list[int]) -> dict[int, float]:
    out: dict[int, float] = {}
    for pid in pids:
        try:
            out[pid] = cpu_s(pid)
        except OSError:
            continue
    return out


def idle_window(server_pid: int, window_s: float, wait: Any = time.sleep) -> dict[str, float]:
    """% of one core used by the server and by all Chromium processes over `window_s`."""
    browser0 = _cpu_sum(chromium_pids(os.getpid()))
    server0 = cpu_s(server_pid)
    t0 = time.perf_counter()
    wait(window_s)
    elapsed = time.perf_counter() - t0
    server1 = cpu_s(server_pid)
    browser1 = _cpu_sum(chromium_pids(os.getpid()))
    # A process that started in the window counts from 0; one that ended is left out.
    browser = sum(v - browser0.get(pid, 0.0) for pid, v in browser1.items())
    return {
        "server_pct": round(100.0 * (server1 - server0) / elapsed, 2),
        "browser_pct": round(100.0 * browser / elapsed, 2),
    }


def _idle(pw: Any, server_pid: int, base_url: str, ready_text: str) -> dict[str, Any]:
    """No tab, then 1 and 3 tabs open on an unchanged publish (see the module doc)."""
    result: dict[str, Any] = {
        "window_s": IDLE_WINDOW_S,
        "no_tab": idle_window(server_pid, IDLE_WINDOW_S),
    }
    browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
    try:
        pages: list[Any] = []
        received = [0]
        for tabs in IDLE_TABS:
            while len(pages) < tabs:
                page = browser.new_page(viewport={"width": 1500, "height": 1400})
                if not pages:
                    page.on(
                        "websocket",
                        lambda ws: ws.on(
                            "framereceived", lambda payload: received.__setitem__(
                                0, received[0] + len(payload)
                            )
                        ),
                    )  # fmt: skip
                page.goto(base_url)
                page.wait_for_function(
                    PAGE_HAS_TEXT_JS, arg=ready_text, polling=100, timeout=START_TIMEOUT_S * 1000
                )
                pages.append(page)
            pages[0].wait_for_timeout(IDLE_SETTLE_S * 1000)
            received[0] = 0
            figures = idle_window(
                server_pid, IDLE_WINDOW_S, lambda s: pages[0].wait_for_timeout(s * 1000)
            )
            figures["ws_bytes_per_s_tab1"] = round(received[0] / IDLE_WINDOW_S, 1)
            result[f"tabs_{tabs}"] = figures
    finally:
        browser.close()
    return result


@contextlib.contextmanager
def _served(
    work: Path, name: str, heartbeat_s: float | None = None
) -> Iterator[tuple[Book, subprocess.Popen[bytes] | None, str]]:
    """The realistic book published by the daemon and served by Streamlit with the production
    settings (`heartbeat_s` for both, when given): yields (book, server, url), the server None
    when Streamlit did not become healthy; both processes are stopped on the way out."""
    from dashboard import serve

    book = write_book(work / name, REALISTIC)
    daemon = procs.daemon(
        book.state_dir, book.out_dir, work / f"{name}-daemon.log", fsync=True,
        heartbeat_s=heartbeat_s,
    )  # fmt: skip
    port = serve.free_port()
    command = serve.streamlit_command(book.out_dir, port=port, heartbeat_s=heartbeat_s)
    base_url = serve.url(port)
    log = open(work / f"{name}-streamlit.log", "ab")  # noqa: SIM115 - closed below
    server = None
    try:
        daemon.start()
        server = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=procs.clean_env(),
            cwd=Path(__file__).resolve().parents[1],
        )  # fmt: skip
        healthy = serve.wait_healthy(base_url, START_TIMEOUT_S, alive=lambda: server.poll() is None)
        yield book, server if healthy else None, base_url
    finally:
        if server is not None and server.poll() is None:
            server.terminate()
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        log.close()
        daemon.stop()


def idle(work: Path) -> dict[str, Any]:
    """The idle cost alone (`python -m bench.dashboard idle`): see the module doc."""
    reason = unavailable()
    if reason is not None:
        return {"skipped": reason}
    from playwright.sync_api import sync_playwright

    with _served(work, "dashboard-idle", IDLE_HEARTBEAT_S) as (book, server, base_url):
        if server is None:
            return {
                "skipped": "streamlit did not become healthy (see dashboard-idle-streamlit.log)"
            }
        before = (book.out_dir / OUT_NAME).stat().st_mtime_ns
        with sync_playwright() as pw:
            result = _idle(pw, server.pid, base_url, fmt_money(marker_value(0)))
        result["files_changed"] = (book.out_dir / OUT_NAME).stat().st_mtime_ns != before
        result["load"] = (
            f"realistic book published once, files unchanged; {os.cpu_count()} cores; "
            f"loadavg {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
        )
        return result


def run(n: int, work: Path, rng: random.Random) -> dict[str, Any]:
    reason = unavailable()
    if reason is not None:
        return {"skipped": reason}
    from playwright.sync_api import sync_playwright

    from dashboard import settings

    input_ms: list[float] = []
    publish_ms: list[float] = []
    warmup_ms: list[float] = []
    misses = 0
    with _served(work, "dashboard") as (book, server, base_url):
        if server is None:
            return {"skipped": "streamlit did not become healthy (see dashboard-streamlit.log)"}
        with sync_playwright() as pw, Inotify(book.out_dir, IN_MOVED_TO) as ino:
            browser = pw.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
            )
            try:
                page = browser.new_page(viewport={"width": 1500, "height": 1400})
                page.goto(base_url)
                page.wait_for_function(
                    PAGE_HAS_TEXT_JS, arg=fmt_money(marker_value(0)), polling=50,
                    timeout=START_TIMEOUT_S * 1000,
                )  # fmt: skip
                for k in range(1, n + WARMUP_SAMPLES + 1):
                    index = FIRST_INDEX + k
                    text = fmt_money(marker_value(index))
                    time.sleep(rng.uniform(0.0, settings.REFRESH_S))
                    tmp = book.stage(index)
                    ino.drain()
                    t0 = time.perf_counter()
                    os.replace(tmp, book.marker_path)
                    published = _wait_published(ino, book.out_dir, index, SAMPLE_TIMEOUT_S)
                    warmup = k <= WARMUP_SAMPLES
                    timeout_s = START_TIMEOUT_S if warmup else SAMPLE_TIMEOUT_S
                    try:
                        page.wait_for_function(
                            PAGE_HAS_TEXT_JS, arg=text, polling=10, timeout=timeout_s * 1000
                        )
                    except Exception:  # Playwright's TimeoutError: this sample is a miss
                        misses += 0 if warmup else 1
                        continue
                    t1 = time.perf_counter()
                    if warmup:
                        warmup_ms.append((t1 - t0) * 1000.0)
                        continue
                    input_ms.append((t1 - t0) * 1000.0)
                    if published is not None:
                        publish_ms.append((t1 - published) * 1000.0)
            finally:
                browser.close()
    return {
        "refresh_s": settings.REFRESH_S,
        "input_to_visible_ms": summary(input_ms),
        "publish_to_visible_ms": summary(publish_ms),
        "misses": misses,
        "warmup_ms": [round(x, 2) for x in warmup_ms],
        "samples_ms": [round(x, 2) for x in input_ms],
        "idle": idle(work),
    }


if __name__ == "__main__":
    import json
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(idle(Path(tmp)), indent=2))
    sys.exit(0)
