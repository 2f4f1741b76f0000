"""Real `hedge-kpi run` processes for the history's tests: a desk (state dir + out dir) whose NAV
the test moves, a daemon publishing it with a given history file, its stdout read as JSON log
events. `retry_s` shortens the history's retry and refresh periods (60 s each) in that process
by setting the two module constants before `main()` runs; the process is otherwise the real one.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from kpi_publisher.contract import NAV_HISTORY_FILE

WAIT_S = 15.0
SHORT_PERIODS = (
    "import sys\n"
    "from kpi_publisher.history import recorder, store\n"
    "store.PAUSE_RETRY_S = recorder.REFRESH_S = float(sys.argv.pop(1))\n"
    "from kpi_publisher.cli import main\n"
    "sys.exit(main())\n"
)


def require_mount_namespace() -> None:
    """Skip unless a process may make its own user and mount namespaces (`unshare -U -r -m`):
    the full-disk tests mount a tiny tmpfs there."""
    if (
        shutil.which("unshare") is None
        or subprocess.run(
            ["unshare", "-U", "-r", "-m", "true"], capture_output=True, check=False
        ).returncode
    ):
        pytest.skip("unshare (user + mount namespaces) is not available here")


def published(t: float, nav: float) -> SimpleNamespace:
    """What the daemon hands its post-publish observers, for a NAV `nav` stamped `t` (the
    history reads only `kpis`)."""
    return SimpleNamespace(
        kpis={"nav": {"updated_at": t, "nav_usd": nav}, "risk": {}}, positions={}
    )


def curve(out: Path) -> list[float]:
    """The NAVs of the whole curve in `out`'s nav_history_v7.json."""
    doc = orjson.loads((out / NAV_HISTORY_FILE).read_bytes())
    navs: list[float] = doc["windows"]["all"]["nav_usd"]
    return navs


def wait_for(predicate: Callable[[], Any], timeout_s: float = WAIT_S) -> Any:
    """The first truthy value of `predicate` (a file mid-replace reads as not yet)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(FileNotFoundError, orjson.JSONDecodeError, KeyError):
            if value := predicate():
                return value
        time.sleep(0.05)
    raise AssertionError("timed out")


def stored(path: Path) -> list[float]:
    """The NAVs a history file holds, in time order (read as another process would)."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        return [nav for (nav,) in db.execute("SELECT nav_usd FROM points ORDER BY t")]


def stored_so_far(path: Path) -> list[float]:
    """`stored`, or nothing while the file is missing or still being made (no table yet): for
    waiting on a store another thread is writing."""
    if not path.exists():
        return []
    try:
        return stored(path)
    except sqlite3.DatabaseError:
        return []


def _event(line: bytes) -> dict[str, Any]:
    """One JSON log line. orjson refuses a lone surrogate escape, which is how a path that is
    not UTF-8 is logged: such a line is read by the stdlib parser instead of being dropped."""
    try:
        event: dict[str, Any] = orjson.loads(line)
    except orjson.JSONDecodeError:
        event = json.loads(line)
    return event


@dataclass
class Desk:
    """An executor's state dir (only nav_state.json) and the out dir its publisher writes."""

    state: Path
    out: Path

    @classmethod
    def make(cls, root: Path, nav: float) -> Desk:
        desk = cls(root / "logs" / "state", root / "out")
        desk.state.mkdir(parents=True)
        desk.out.mkdir()
        desk.write_nav(nav)
        return desk

    def write_nav(self, nav: float) -> None:
        temp = self.state / ".nav_state.json.tmp"
        temp.write_bytes(orjson.dumps({"nav_usd": nav, "updated_at": time.time()}))
        os.replace(temp, self.state / "nav_state.json")

    def kpis(self) -> dict[str, Any]:
        doc: dict[str, Any] = orjson.loads((self.out / "kpis_v7.json").read_bytes())
        return doc

    def curve(self) -> list[float]:
        doc = orjson.loads((self.out / NAV_HISTORY_FILE).read_bytes())
        navs: list[float] = doc["windows"]["all"]["nav_usd"]
        return navs

    def move_nav(self, nav: float, *, curve: bool = True) -> None:
        """Publish a new NAV and wait until it is published (and ends the curve)."""
        time.sleep(0.02)  # a timestamp of its own
        self.write_nav(nav)
        wait_for(lambda: self.kpis()["nav"]["nav_usd"] == nav)
        if curve:
            wait_for(lambda: self.curve()[-1] == nav)


class Daemon:
    """`hedge-kpi run` on `desk` with its history at `history`."""

    def __init__(
        self,
        desk: Desk,
        history: Path,
        *,
        retry_s: float | None = None,
        wrap: Sequence[str] = (),
    ) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("KPI_")}
        env["KPI_HISTORY_PATH"] = str(history)
        if retry_s is None:
            head = [sys.executable, "-m", "kpi_publisher"]
        else:
            head = [sys.executable, "-c", SHORT_PERIODS, str(retry_s)]
        args = [
            *("run", "--state-dir", str(desk.state), "--out-dir", str(desk.out)),
            *("--heartbeat-s", "0.5", "--log-format", "json", "--no-fsync"),
        ]
        self.popen = subprocess.Popen(
            [*wrap, *head, *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.pid = self.popen.pid
        self.events: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            with self._cond, contextlib.suppress(ValueError):
                self.events.append(_event(line))
                self._cond.notify_all()

    def named(self, event: str) -> list[dict[str, Any]]:
        with self._cond:
            return [e for e in self.events if e.get("event") == event]

    def wait_event(self, event: str, timeout_s: float = WAIT_S, **fields: Any) -> dict[str, Any]:
        """The first `event` with `fields`; fails the test on timeout or when the process ends."""

        def found() -> dict[str, Any] | None:
            for e in self.events:
                if e.get("event") == event and all(e.get(k) == v for k, v in fields.items()):
                    return e
            return None

        deadline = time.monotonic() + timeout_s
        with self._cond:
            while (hit := found()) is None:
                remaining = deadline - time.monotonic()
                ended = self.popen.poll() is not None and not self._reader.is_alive()
                if remaining <= 0 or ended:
                    raise AssertionError(f"no {event} {fields}; events: {self.events[-20:]}")
                self._cond.wait(min(remaining, 0.2))
        return hit

    def stop(self) -> int:
        self.popen.send_signal(signal.SIGTERM)
        code = self.popen.wait(WAIT_S)
        self._reader.join(WAIT_S)
        return code

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(WAIT_S)
        if self.popen.stdout is not None:
            self.popen.stdout.close()
