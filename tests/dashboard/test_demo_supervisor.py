"""`hedge-kpi demo` supervision with stand-in children: start, URL, stop, failure, signals."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from execution import shapes
from kpi_publisher import cli, demo_supervisor

URL = "http://127.0.0.1:8501"


def sleeper(marker: Path, *, ignore_term: bool = False) -> list[str]:
    """A child that records whether it leads its own process group, then sleeps."""
    code = (
        "import os, signal, time\n"
        + ("signal.signal(signal.SIGTERM, signal.SIG_IGN)\n" if ignore_term else "")
        + f"open({str(marker)!r}, 'w').write(str(os.getpgid(0) == os.getpid()))\n"
        + "time.sleep(120)\n"
    )
    return [sys.executable, "-c", code]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def layout(tmp_path: Path) -> demo_supervisor.DemoRoot:
    out = demo_supervisor.DemoRoot(tmp_path / "root")
    out.state.mkdir(parents=True)
    (out.state / "kpis_v7.json").write_text("{}")
    return out


def run_supervise(
    layout: demo_supervisor.DemoRoot, argvs: dict[str, list[str]], stop: threading.Event
):
    out, err = io.StringIO(), io.StringIO()
    code = demo_supervisor.supervise(
        layout, argvs, base_url=URL, stop=stop, out=out, err=err, healthy=lambda _: True
    )
    return code, out.getvalue(), err.getvalue()


def test_commands_bind_loopback_and_publish_into_the_state_dir(tmp_path: Path) -> None:
    layout = demo_supervisor.DemoRoot(tmp_path)
    argvs = demo_supervisor.commands(layout, port=8765, interval_s=1.5, python="py")
    state = str(tmp_path / "logs" / "state")
    assert argvs["executor"] == [
        "py", "-m", "execution.demo_executor", "--root", str(tmp_path), "--log-format", "json",
        "--era", "v7.6", "--interval", "1.5",
    ]  # fmt: skip
    # The demo runs the newest shapes the executor writes (VaR included).
    assert shapes.ERAS[-1] == demo_supervisor.DEMO_ERA
    assert argvs["publisher"][:4] == ["py", "-m", "kpi_publisher", "run"]
    assert argvs["publisher"][4:8] == ["--state-dir", state, "--out-dir", state]
    dashboard = argvs["dashboard"]
    assert dashboard[dashboard.index("--server.address") + 1] == "127.0.0.1"
    assert dashboard[dashboard.index("--server.port") + 1] == "8765"
    assert dashboard[dashboard.index("--server.fileWatcherType") + 1] == "none"
    assert dashboard[dashboard.index("--") + 1 :] == ["--out-dir", state]


def test_the_publishers_runtime_dir_lies_in_the_demo_root(
    layout: demo_supervisor.DemoRoot, tmp_path: Path
) -> None:
    """The crash log and the NAV history (the private runtime dir) live in the demo's root, so
    the temp root takes them along when it is removed; before, every run left a history file
    in the user's home that nothing would read again."""
    marker = tmp_path / "runtime"
    code = f"import os; open({str(marker)!r}, 'w').write(os.environ.get('KPI_RUNTIME_DIR', ''))"
    argvs = {name: sleeper(tmp_path / name) for name in demo_supervisor.CHILD_ORDER}
    argvs["publisher"] = [sys.executable, "-c", code + "; import time; time.sleep(120)"]
    stop = threading.Event()
    runner = threading.Thread(target=run_supervise, args=(layout, argvs, stop))
    runner.start()
    try:
        deadline = time.monotonic() + 20
        while not (marker.exists() and marker.read_text()) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        runner.join(20)
    assert Path(marker.read_text()) == layout.root / "runtime"


def test_url_is_printed_alone_then_every_child_stops(
    layout: demo_supervisor.DemoRoot, tmp_path: Path
) -> None:
    """Each child leads its own process group; a stop request ends all three with SIGTERM."""
    markers = {name: tmp_path / f"{name}.pgid" for name in demo_supervisor.CHILD_ORDER}
    argvs = {name: sleeper(markers[name]) for name in demo_supervisor.CHILD_ORDER}
    stop = threading.Event()

    def stop_when_started() -> None:
        while not all(m.exists() and m.read_text() for m in markers.values()):
            stop.wait(0.05)
        stop.set()

    threading.Thread(target=stop_when_started, daemon=True).start()
    code, out, err = run_supervise(layout, argvs, stop)
    assert (code, out) == (0, URL + "\n")
    assert {name: m.read_text() for name, m in markers.items()} == dict.fromkeys(
        demo_supervisor.CHILD_ORDER, "True"
    )
    pids = [
        int(line.rsplit("pid ", 1)[1].rstrip(")")) for line in err.splitlines() if "pid" in line
    ]
    assert len(pids) == 3 and not [p for p in pids if alive(p)]
    assert "stopped dashboard (exit -15), publisher (exit -15), executor (exit -15)" in err


def test_a_dying_child_fails_the_demo_and_stops_the_others(
    layout: demo_supervisor.DemoRoot, tmp_path: Path
) -> None:
    argvs = {name: sleeper(tmp_path / name) for name in demo_supervisor.CHILD_ORDER}
    argvs["publisher"] = [sys.executable, "-c", "import sys; print('no state dir'); sys.exit(3)"]
    code, _out, err = run_supervise(layout, argvs, threading.Event())
    assert code == cli.ExitCode.FAILURE
    assert "publisher exited with code 3" in err
    assert "no state dir" in err
    assert "executor (exit -15)" in err


def test_a_child_ignoring_sigterm_is_killed_after_the_grace(tmp_path: Path) -> None:
    marker = tmp_path / "stubborn"
    proc = demo_supervisor.start("dashboard", sleeper(marker, ignore_term=True), tmp_path)
    while not (marker.exists() and marker.read_text()):
        threading.Event().wait(0.05)
    assert demo_supervisor.stop_all({"dashboard": proc}, grace_s=0.5) == {
        "dashboard": -signal.SIGKILL
    }


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_sigint_and_sigterm_request_a_stop(sig: int) -> None:
    with demo_supervisor._stop_requests() as stop:
        os.kill(os.getpid(), sig)
        assert stop.wait(5.0)


def test_a_busy_port_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert cli.main(["demo", "--port", str(port)]) == cli.ExitCode.USAGE
    assert f"port {port} on 127.0.0.1 is in use" in capsys.readouterr().err


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_children_die_when_the_demo_is_killed(tmp_path: Path) -> None:
    """SIGKILL to the supervisor (no chance to clean up) still ends its children."""
    marker = tmp_path / "child"
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from kpi_publisher import demo_supervisor\n"
        f"proc = demo_supervisor.start('executor', {sleeper(marker)!r}, Path({str(tmp_path)!r}))\n"
        "print(proc.pid, flush=True)\n"
        "time.sleep(120)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        while not (marker.exists() and marker.read_text()):
            threading.Event().wait(0.05)
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 10
        while alive(child) and time.monotonic() < deadline:
            threading.Event().wait(0.05)
        assert not alive(child)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
