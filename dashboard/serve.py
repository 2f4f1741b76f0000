"""Launch the dashboard: `hedge-kpi dashboard --out-dir DIR [--port N]` or `python -m dashboard`.

Binds to 127.0.0.1 unless told otherwise, with the production settings: headless, no file
watcher (no reruns, no inotify watches), no usage statistics, and no forced full garbage
collection after each script run (Streamlit's default: 40-70 ms of CPU per run with pandas and
Plotly loaded, most of an idle tab's cost when the status line ticks every second).
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dashboard.settings import DEFAULT_ADDRESS, DEFAULT_PORT

APP_PATH = Path(__file__).with_name("app.py")
HEALTH_PATH = "/_stcore/health"


def streamlit_command(
    out_dir: Path,
    *,
    port: int,
    address: str = DEFAULT_ADDRESS,
    heartbeat_s: float | None = None,
    python: str = sys.executable,
) -> list[str]:
    """The argv that serves the overview of `out_dir` on address:port."""
    app_args = ["--out-dir", str(out_dir)]
    if heartbeat_s is not None:
        app_args += ["--heartbeat-s", str(heartbeat_s)]
    return [
        python, "-m", "streamlit", "run", str(APP_PATH),
        "--server.headless", "true",
        "--server.address", address,
        "--server.port", str(port),
        "--server.fileWatcherType", "none",
        "--server.runOnSave", "false",
        "--browser.gatherUsageStats", "false",
        "--runner.postScriptGC", "false",
        "--client.toolbarMode", "viewer",
        "--", *app_args,
    ]  # fmt: skip


def url(port: int, address: str = DEFAULT_ADDRESS) -> str:
    return f"http://{address}:{port}"


def free_port(address: str = DEFAULT_ADDRESS) -> int:
    """A port the kernel says is free right now on `address`."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int, address: str = DEFAULT_ADDRESS) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((address, port))
        except OSError:
            return True
    return False


def is_healthy(base_url: str, timeout_s: float = 1.0) -> bool:
    """True when Streamlit's health endpoint answers "ok" (no proxy: loopback only)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(base_url + HEALTH_PATH, timeout=timeout_s) as response:
            return bool(response.status == 200 and response.read().strip() == b"ok")
    except (OSError, urllib.error.URLError):
        return False


def wait_healthy(base_url: str, timeout_s: float, *, alive: object = None) -> bool:
    """Poll the health endpoint until it answers or `timeout_s` passes (or `alive()` is False)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if is_healthy(base_url):
            return True
        if callable(alive) and not alive():
            return False
        time.sleep(0.1)
    return False


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out-dir", dest="out_dir", help="dir holding the published files")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})"
    )
    parser.add_argument(
        "--address", default=DEFAULT_ADDRESS, help=f"bind address (default {DEFAULT_ADDRESS})"
    )
    parser.add_argument(
        "--heartbeat-s", type=float, help="publisher heartbeat (s); 'publisher down' after 3"
    )


def serve(args: argparse.Namespace) -> int:
    """Replace this process with the Streamlit server (signals go straight to it)."""
    from dashboard import settings
    from kpi_publisher.config import ConfigError

    try:
        config = settings.resolve(
            [*(["--out-dir", args.out_dir] if args.out_dir else [])], os.environ
        )
    except ConfigError as exc:
        print(f"dashboard: {exc}", file=sys.stderr)
        return 2
    command = streamlit_command(
        config.out_dir, port=args.port, address=args.address, heartbeat_s=args.heartbeat_s
    )
    print(url(args.port, args.address), flush=True)
    os.execv(command[0], command)  # noqa: S606 - fixed argv, no shell
    return 1  # not reached


def register(subparsers: Any) -> None:
    """Add `hedge-kpi dashboard`."""
    parser = subparsers.add_parser(
        "dashboard",
        help="serve the Streamlit overview of a publish dir (127.0.0.1 by default)",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    add_options(parser)
    parser.set_defaults(func=serve)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dashboard", description=__doc__)
    add_options(parser)
    return serve(parser.parse_args(argv))
