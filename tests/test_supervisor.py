"""supervisor.conf under a real supervisord: RUNNING, restart after SIGKILL, clean stop."""

from __future__ import annotations

import configparser
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

pytestmark = [pytest.mark.supervisor, pytest.mark.timeout(90)]

REPO = Path(__file__).resolve().parent.parent
CONF = REPO / "supervisor.conf"
DROP_IN = REPO / "deploy" / "supervisor" / "kpi.conf"
WAIT_S = 30.0  # startsecs is 5 s; leave room for a loaded machine


def read_conf(path: Path) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser()
    parser.read(path)
    return parser


def test_supervisor_conf_declares_hedge_kpi_the_way_operations_need() -> None:
    """Group hedge with kpi; restart always; startsecs >= 5; TERM; a rotated stdout log; paths."""
    conf = read_conf(CONF)
    assert "kpi" in conf.get("group:hedge", "programs").split(",")
    program = dict(conf.items("program:kpi"))
    assert program["command"].split()[-1] == "run"
    assert program["command"].startswith("%(here)s/.venv/bin/hedge-kpi")
    assert program["directory"] == "%(here)s"
    assert program["autorestart"] == "true"
    assert int(program["startsecs"]) >= 5
    assert program["stopsignal"] == "TERM"
    assert int(program["stopwaitsecs"]) >= 2
    assert program["stdout_logfile"].endswith(".log")
    assert int(program["stdout_logfile_backups"]) >= 1
    assert program["stdout_logfile_maxbytes"].endswith("MB")
    assert "KPI_STATE_DIR=" in program["environment"]


def test_deploy_drop_in_runs_the_same_program() -> None:
    """deploy/supervisor/kpi.conf (for conf.d) differs from supervisor.conf only in its paths."""
    ours = dict(read_conf(CONF).items("program:kpi"))
    drop_in = read_conf(DROP_IN)
    assert not drop_in.has_section("group:hedge")  # the existing hedge group gets kpi added
    theirs = dict(drop_in.items("program:kpi"))
    path_keys = {"command", "directory"}
    assert {k: v for k, v in theirs.items() if k not in path_keys} == {
        k: v for k, v in ours.items() if k not in path_keys
    }
    assert theirs["command"].endswith("/.venv/bin/hedge-kpi run")


# -- a real supervisord -------------------------------------------------------------------------


class Supervisor:
    """supervisord in the foreground with the repo's program section, all paths in `root`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.state = root / "logs" / "state"
        self.out = root / "out"
        self.state.mkdir(parents=True)
        self.main_conf = root / "supervisord.conf"
        self._write_confs()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "supervisor.supervisord", "-n", "-c", str(self.main_conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={k: v for k, v in os.environ.items() if not k.startswith("KPI_")},
        )

    def _write_confs(self) -> None:
        conf = read_conf(CONF)
        program = "program:kpi"
        hedge_kpi = Path(sys.executable).parent / "hedge-kpi"
        conf.set(
            program,
            "command",
            conf.get(program, "command").replace("%(here)s/.venv/bin/hedge-kpi", str(hedge_kpi)),
        )
        conf.set(program, "directory", str(REPO))
        conf.set(program, "stdout_logfile", str(self.root / "kpi.log"))
        env = conf.get(program, "environment")
        env = env.replace("/root/hedge-fund/logs/state", str(self.state))
        conf.set(program, "environment", f'{env},KPI_OUT_DIR="{self.out}",KPI_HEARTBEAT_S="0.5"')
        with (self.root / "kpi.conf").open("w") as fh:
            conf.write(fh)
        self.main_conf.write_text(
            f"""[unix_http_server]
file={self.root}/supervisor.sock

[supervisord]
logfile={self.root}/supervisord.log
pidfile={self.root}/supervisord.pid
childlogdir={self.root}
nodaemon=true

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://{self.root}/supervisor.sock

[include]
files = {self.root}/kpi.conf
"""
        )

    def ctl(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "supervisor.supervisorctl", "-c", str(self.main_conf), *args],
            capture_output=True,
            text=True,
            timeout=WAIT_S,
            check=False,
        )
        return done.stdout + done.stderr

    def status(self) -> tuple[str, int | None]:
        """(state, pid) of hedge:kpi, e.g. ("RUNNING", 1234)."""
        text = self.ctl("status", "hedge:kpi")
        match = re.search(r"hedge:kpi\s+([A-Z]+)(?:\s+pid (\d+))?", text)
        if not match:
            return ("UNKNOWN", None)
        return (match.group(1), int(match.group(2)) if match.group(2) else None)

    def wait_running(self, other_than: int | None = None) -> int:
        deadline = time.monotonic() + WAIT_S
        seen: tuple[str, int | None] = ("UNKNOWN", None)
        while time.monotonic() < deadline:
            seen = self.status()
            if seen[0] == "RUNNING" and seen[1] is not None and seen[1] != other_than:
                return seen[1]
            time.sleep(0.25)
        raise AssertionError(f"hedge:kpi not RUNNING in {WAIT_S} s (last: {seen})")

    def wait_publish_after(self, epoch: float) -> dict[str, Any]:
        """The kpis_v7.json document once its generated_at is later than `epoch`."""
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            try:
                doc: dict[str, Any] = orjson.loads((self.out / "kpis_v7.json").read_bytes())
            except (OSError, orjson.JSONDecodeError):
                doc = {}
            generated = doc.get("generated_at")
            if isinstance(generated, float) and generated > epoch:
                return doc
            time.sleep(0.1)
        raise AssertionError(f"no publish after {epoch}")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(WAIT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(WAIT_S)


@pytest.fixture
def supervisor() -> Iterator[Supervisor]:
    # A short path: the control socket's path must fit in sun_path (108 bytes).
    root = Path(tempfile.mkdtemp(prefix="hkpi-sv-", dir="/tmp"))
    sv = Supervisor(root)
    try:
        yield sv
    finally:
        sv.close()
        shutil.rmtree(root, ignore_errors=True)


def test_supervisord_runs_restarts_and_stops_hedge_kpi(supervisor: Supervisor) -> None:
    (supervisor.state / "nav_state.json").write_bytes(
        orjson.dumps({"nav_usd": 1500.0, "updated_at": time.time()})
    )
    first_pid = supervisor.wait_running()
    doc = supervisor.wait_publish_after(time.time())
    assert doc["schema"] == "hedge.kpis_v7"

    killed_at = time.time()
    os.kill(first_pid, signal.SIGKILL)
    second_pid = supervisor.wait_running(other_than=first_pid)
    assert second_pid != first_pid
    doc = supervisor.wait_publish_after(killed_at)
    assert doc["nav"]["nav_usd"] == 1500.0

    out = supervisor.ctl("stop", "hedge:kpi")
    assert "stopped" in out
    assert supervisor.status()[0] == "STOPPED"
    log = (supervisor.root / "supervisord.log").read_text()
    assert "stopped: kpi (exit status 0)" in log
    assert not list(supervisor.out.glob(".*.tmp"))
    # The daemon's own log, rotated by supervisord, is JSON with a publish per heartbeat.
    lines = [orjson.loads(line) for line in (supervisor.root / "kpi.log").read_bytes().splitlines()]
    assert any(e["event"] == "publish" for e in lines)
    assert lines[-1]["event"] == "stopped"
