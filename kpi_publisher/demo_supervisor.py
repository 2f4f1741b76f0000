"""`hedge-kpi demo`: the demo executor, the publisher and the dashboard, together, in one dir.

Each child runs in its own process group, so Ctrl-C reaches only this supervisor, which then
stops all three in order (SIGTERM, a grace period, SIGKILL) and exits 0. The dashboard URL is
printed on its own line on stdout once the server answers; children's output goes to
ROOT/logs/demo/<name>.log, the publisher's crash log and NAV history in ROOT/runtime. A temp
root (the default) is removed afterwards, with all of them.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from kpi_publisher.contract import KPIS_FILE, ExitCode
from kpi_publisher.daemon.survival import RUNTIME_DIR_ENV
from kpi_publisher.executor_root import ExecutorRoot

STOP_GRACE_S = 10.0  # SIGTERM -> SIGKILL
START_TIMEOUT_S = 90.0  # the dashboard must answer its health check within this
FIRST_PUBLISH_TIMEOUT_S = 30.0
CHILD_ORDER: tuple[str, ...] = ("executor", "publisher", "dashboard")
# The executor's file shapes: the newest it writes (execution.shapes.ERAS), VaR included.
DEMO_ERA = "v7.6"


class DemoRoot(ExecutorRoot):
    """The executor's tree the demo runs in, and where it keeps its children's logs."""

    @property
    def log_dir(self) -> Path:
        return self.logs / "demo"


def commands(
    layout: DemoRoot,
    *,
    port: int,
    interval_s: float | None,
    era: str = DEMO_ERA,
    python: str = sys.executable,
) -> dict[str, list[str]]:
    """The three children's argv, in start order. The publisher publishes into the state dir;
    the executor writes the shapes of `era` (the newest it knows by default, VaR included)."""
    from dashboard.serve import streamlit_command

    executor = [
        python,
        "-m",
        "execution.demo_executor",
        "--root",
        str(layout.root),
        "--log-format",
        "json",
        "--era",
        era,
    ]
    if interval_s is not None:
        executor += ["--interval", str(interval_s)]
    publisher = [
        python, "-m", "kpi_publisher", "run",
        "--state-dir", str(layout.state),
        "--out-dir", str(layout.state),
        "--log-format", "json",
    ]  # fmt: skip
    return {
        "executor": executor,
        "publisher": publisher,
        "dashboard": streamlit_command(layout.state, port=port, python=python),
    }


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM if the demo itself dies (even by SIGKILL).

    A child in its own session is out of reach of the terminal's Ctrl-C, so without this a
    killed supervisor would leave the three running. Linux only; elsewhere a no-op.
    """
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def child_env(layout: DemoRoot) -> dict[str, str]:
    """The children's environment: this one, with the publisher's private runtime dir (its
    crash log and NAV history) inside the demo's root, so a temp root takes them along when it
    is removed and a kept root finds its history again."""
    return {**os.environ, RUNTIME_DIR_ENV: str(layout.root / "runtime")}


def start(
    name: str, argv: Sequence[str], log_dir: Path, env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start one child in its own session (process group), output to log_dir/<name>.log."""
    with (log_dir / f"{name}.log").open("ab") as log:
        return subprocess.Popen(
            list(argv),
            env=None if env is None else dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )


def stop_all(children: Mapping[str, subprocess.Popen[bytes]], grace_s: float) -> dict[str, int]:
    """SIGTERM every child's process group, wait up to `grace_s`, SIGKILL what is left.

    Returns each child's exit code. The dashboard goes first, the executor last.
    """
    order = [n for n in reversed(CHILD_ORDER) if n in children]
    for name in order:
        _signal_group(children[name], signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    codes: dict[str, int] = {}
    for name in order:
        proc = children[name]
        try:
            codes[name] = proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)
            codes[name] = proc.wait()
        # Anything the child left in its group (a grandchild) goes with it.
        _signal_group(proc, signal.SIGKILL)
    return codes


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def _say(stream: TextIO, text: str) -> None:
    print(text, file=stream, flush=True)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@contextlib.contextmanager
def _stop_requests() -> Iterator[threading.Event]:
    """An Event set by SIGINT/SIGTERM while inside the block; handlers restored after."""
    stop = threading.Event()

    def handler(signum: int, frame: Any) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def supervise(
    layout: DemoRoot,
    argvs: Mapping[str, Sequence[str]],
    *,
    base_url: str,
    stop: threading.Event,
    out: TextIO,
    err: TextIO,
    healthy: Callable[[str], bool],
) -> int:
    """Start the children, print the URL when the dashboard answers, run until `stop` is set or
    a child dies; always stops every child. Returns the exit code."""
    layout.log_dir.mkdir(parents=True, exist_ok=True)
    children: dict[str, subprocess.Popen[bytes]] = {}
    code = ExitCode.OK
    try:
        for name in CHILD_ORDER:
            children[name] = start(name, argvs[name], layout.log_dir, child_env(layout))
            _say(err, f"demo: started {name} (pid {children[name].pid})")
        code = _wait_until_up(layout, children, base_url, stop, out, err, healthy)
        while code == ExitCode.OK and not stop.wait(0.2):
            dead = _first_dead(children)
            if dead is not None:
                code = _report_dead(layout, children, dead, err)
    finally:
        codes = stop_all(children, STOP_GRACE_S)
        _say(err, "demo: stopped " + ", ".join(f"{n} (exit {c})" for n, c in codes.items()))
    return int(code)


def _first_dead(children: Mapping[str, subprocess.Popen[bytes]]) -> str | None:
    return next((n for n, p in children.items() if p.poll() is not None), None)


def _report_dead(
    layout: DemoRoot, children: Mapping[str, subprocess.Popen[bytes]], name: str, err: TextIO
) -> ExitCode:
    log = layout.log_dir / f"{name}.log"
    _say(err, f"demo: {name} exited with code {children[name].returncode}; its log {log}:")
    _say(err, _tail(log))
    return ExitCode.FAILURE


def _wait_until_up(
    layout: DemoRoot,
    children: Mapping[str, subprocess.Popen[bytes]],
    base_url: str,
    stop: threading.Event,
    out: TextIO,
    err: TextIO,
    healthy: Callable[[str], bool],
) -> ExitCode:
    """Wait for the first publish and the dashboard's health check, then print the URL."""
    kpis = layout.state / KPIS_FILE
    started = time.monotonic()
    while not stop.is_set():
        dead = _first_dead(children)
        if dead is not None:
            return _report_dead(layout, children, dead, err)
        waited = time.monotonic() - started
        published = kpis.exists() or waited > FIRST_PUBLISH_TIMEOUT_S
        if published and healthy(base_url):
            if not kpis.exists():
                _say(err, f"demo: no kpis_v7.json after {FIRST_PUBLISH_TIMEOUT_S:.0f}s")
            _say(out, base_url)
            return ExitCode.OK
        if waited > START_TIMEOUT_S:
            _say(err, f"demo: dashboard did not answer at {base_url} in {START_TIMEOUT_S:.0f}s")
            _say(err, _tail(layout.log_dir / "dashboard.log"))
            return ExitCode.FAILURE
        stop.wait(0.1)
    return ExitCode.OK


def run_demo(args: argparse.Namespace) -> int:
    from dashboard import serve

    port = int(args.port)
    if port == 0:
        port = serve.free_port()
    elif serve.port_in_use(port):
        _say(sys.stderr, f"demo: port {port} on 127.0.0.1 is in use; pass --port N (0 = any)")
        return ExitCode.USAGE
    temp_root = args.root is None
    root = Path(tempfile.mkdtemp(prefix="hedge-kpi-demo-")) if temp_root else Path(args.root)
    layout = DemoRoot(root.expanduser().absolute())
    try:
        layout.state.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        _say(sys.stderr, f"demo: cannot create {layout.state}: {exc.strerror or exc}")
        return ExitCode.OUT_DIR_UNWRITABLE
    _say(sys.stderr, f"demo: root {layout.root}; Ctrl-C stops everything")
    argvs = commands(layout, port=port, interval_s=args.interval, era=args.era)
    try:
        with _stop_requests() as stop:
            return supervise(
                layout,
                argvs,
                base_url=serve.url(port),
                stop=stop,
                out=sys.stdout,
                err=sys.stderr,
                healthy=serve.is_healthy,
            )
    finally:
        if temp_root and not args.keep:
            shutil.rmtree(layout.root, ignore_errors=True)


def register(subparsers: Any) -> None:
    """Add `hedge-kpi demo`."""
    from dashboard.settings import DEFAULT_PORT

    parser = subparsers.add_parser(
        "demo",
        help="run the demo executor, the publisher and the dashboard together (Ctrl-C stops)",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument("--root", help="dir to run in (default: a new temp dir, removed after)")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"dashboard port ({DEFAULT_PORT}; 0 = any)"
    )
    parser.add_argument("--interval", type=float, help="seconds between executor cycles (2)")
    parser.add_argument(
        "--era",
        choices=("v7.1", "v7.6"),
        default=DEMO_ERA,
        help=f"the executor's file shapes ({DEMO_ERA}: the newest, with risk_advanced.json)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp root after exit")
    parser.set_defaults(func=run_demo)
