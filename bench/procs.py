"""The processes under test: start, wait for the first publish, read CPU and memory, stop.

Every publisher runs as its own process, as in production: the daemon (`hedge-kpi run`),
the floor watchers (`python -m bench.floor`) and the polling baseline
(`python -m bench.polling`). CPU time and peak RSS come from /proc/<pid>.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from kpi_publisher.daemon.survival import RUNTIME_DIR_ENV
from kpi_publisher.fs import STRICT

CLK_TCK = os.sysconf("SC_CLK_TCK")
# Children start here, so `python -m bench.floor` finds bench/, which is not installed.
REPO = Path(__file__).resolve().parents[1]
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 5.0


def clean_env() -> dict[str, str]:
    """The environment without KPI_* settings, so only the command line configures a run."""
    return {k: v for k, v in os.environ.items() if not k.startswith("KPI_")}


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of process `pid` so far (all its threads), from /proc."""
    with open(f"/proc/{pid}/stat", "rb") as fh:
        fields = fh.read().rsplit(b")", 1)[1].split()
    # fields[0] is the state (field 3 of stat(5)); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def status_kb(pid: int, key: str) -> int | None:
    """A `kB` value of /proc/<pid>/status (VmHWM = peak RSS, VmRSS = current RSS)."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


@dataclass
class Proc:
    """A started publisher process; `log_path` holds its stdout/stderr."""

    label: str
    argv: list[str]
    out_file: Path
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def launch(self) -> Proc:
        """Start the process; `wait_ready` then waits for its first publish."""
        with contextlib.suppress(FileNotFoundError):
            self.out_file.unlink()
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        # The daemon's crash log and NAV history stay in the run's work dir, never the user's.
        env = {**clean_env(), RUNTIME_DIR_ENV: str(self.log_path.parent / "runtime")}
        self.popen = subprocess.Popen(
            self.argv, stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=REPO
        )
        return self

    def start(self, ready_timeout_s: float = READY_TIMEOUT_S) -> Proc:
        """Start it and wait for its first publish (the out file appears)."""
        return self.launch().wait_ready(ready_timeout_s)

    def wait_ready(self, ready_timeout_s: float = READY_TIMEOUT_S) -> Proc:
        """Wait until the out file exists; raise when the process exits or times out."""
        assert self.popen is not None, "launch() first"
        deadline = time.monotonic() + ready_timeout_s
        while not self.out_file.exists():
            if self.popen.poll() is not None:
                raise RuntimeError(
                    f"{self.label} exited with {self.popen.returncode}: {self.tail()}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.label} did not publish within {ready_timeout_s} s")
            time.sleep(0.01)
        return self

    def cpu_s(self) -> float:
        return cpu_s(self.pid)

    def peak_rss_mb(self) -> float | None:
        kb = status_kb(self.pid, "VmHWM")
        return None if kb is None else kb / 1024.0

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after STOP_TIMEOUT_S; returns the exit code."""
        code = None
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                code = self.popen.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                code = self.popen.wait()
        elif self.popen is not None:
            code = self.popen.returncode
        if self._log is not None:
            self._log.close()
            self._log = None
        return code

    def tail(self, lines: int = 5) -> str:
        try:
            return " | ".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def log_events(self, event: str) -> list[dict[str, Any]]:
        """The JSON log lines of one event name (the daemon logs one `publish` per publish)."""
        out: list[dict[str, Any]] = []
        try:
            raw = self.log_path.read_bytes()
        except OSError:
            return out
        for line in raw.splitlines():
            if not line.startswith(b"{"):
                continue
            try:
                doc = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(doc, dict) and doc.get("event") == event:
                out.append(doc)
        return out

    def __enter__(self) -> Proc:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def _py(module: str, args: Sequence[str]) -> list[str]:
    return [sys.executable, "-m", module, *args]


def daemon(
    state_dir: Path,
    out_dir: Path,
    log_path: Path,
    *,
    fsync: bool,
    heartbeat_s: float | None = None,
    label: str = "daemon",
) -> Proc:
    """`hedge-kpi run` with production defaults except the given options."""
    args = ["run", "--state-dir", str(state_dir), "--out-dir", str(out_dir)]
    args += ["--fsync" if fsync else "--no-fsync", "--log-format", "json"]
    if heartbeat_s is not None:
        args += ["--heartbeat-s", str(heartbeat_s)]
    return Proc(label, _py("kpi_publisher", args), out_dir / "kpis_v7.json", log_path)


def floor(
    watch_file: Path, out_dir: Path, log_path: Path, *, fsync: bool, watcher: str,
    durability: str = STRICT,
) -> Proc:  # fmt: skip
    """The floor: watch one input, copy its bytes to out_dir/kpis_v7.json atomically, syncing
    in the order `durability` names (bench/floor.py)."""
    args = ["--watch-file", str(watch_file), "--out-dir", str(out_dir), "--watcher", watcher]
    args += ["--fsync" if fsync else "--no-fsync", "--durability", durability]
    label = f"floor-{watcher}-{durability}"
    return Proc(label, _py("bench.floor", args), out_dir / "kpis_v7.json", log_path)


def polling(
    state_dir: Path, out_dir: Path, log_path: Path, *, fsync: bool, interval_s: float
) -> Proc:
    """The polling baseline: re-read, build and publish every `interval_s` seconds."""
    args = ["--state-dir", str(state_dir), "--out-dir", str(out_dir)]
    args += ["--interval-s", str(interval_s), "--fsync" if fsync else "--no-fsync"]
    return Proc("polling", _py("bench.polling", args), out_dir / "kpis_v7.json", log_path)
