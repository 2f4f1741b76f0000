"""The NAV history follows a reload as a restart would: another history_path opens that store,
another out dir gets nav_history_v7.json, and the old out dir is written no more; a history
file the new config puts in the state dir is refused and the running one kept."""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from structlog.testing import capture_logs

from kpi_publisher.config import Settings
from kpi_publisher.contract import NAV_HISTORY_FILE
from kpi_publisher.history.recorder import HistoryRecorder, recorder_for
from tests import test_daemon_signals
from tests.history.daemons import curve
from tests.test_daemon_signals import Proc, is_publish, write_json

pytestmark = pytest.mark.timeout(60)

spawn = test_daemon_signals.spawn  # real `hedge-kpi run` processes, killed at the end
WAIT_S = 10.0


def published(t: float, nav: float) -> SimpleNamespace:
    """What the daemon hands its post-publish observers (only `kpis` is read)."""
    return SimpleNamespace(
        kpis={"nav": {"updated_at": t, "nav_usd": nav}, "risk": {}}, positions={}
    )


def stored(path: Path) -> list[float]:
    with sqlite3.connect(path) as db:
        return [nav for (nav,) in db.execute("SELECT nav_usd FROM points ORDER BY t")]


@pytest.fixture
def first(tmp_path: Path) -> Settings:
    state = tmp_path / "logs" / "state"
    state.mkdir(parents=True)
    return Settings(
        state_dir=state, out_dir=tmp_path / "A", history_path=tmp_path / "h1.sqlite", fsync=False
    )


def publish(recorder: HistoryRecorder, settings: Settings, *points: tuple[float, float]) -> None:
    """Publishes under `settings`, as `run`'s history observer sees them; waits until stored."""
    for t, nav in points:
        recorder.follow(settings)
        recorder.observe(published(t, nav))
    time.sleep(0.06)  # past the rebuild gap, so the last point is in the curve
    assert recorder.wait_idle(WAIT_S)


def test_a_reload_of_out_dir_and_history_path_moves_the_history(
    first: Settings, tmp_path: Path
) -> None:
    """out_dir A -> B and h1 -> h2: h2 is created and gets the NAV published at the reload and
    every later one, B gets nav_history_v7.json, and A's is left as it was at the reload."""
    now = time.time()
    first.publish_dir.mkdir()
    (tmp_path / "B").mkdir()
    recorder = recorder_for(first)
    assert recorder is not None
    recorder.start()
    try:
        publish(recorder, first, (now - 300, 1000.0), (now - 240, 1001.0), (now - 180, 1002.0))
        assert curve(first.publish_dir) == [1000.0, 1001.0, 1002.0]
        before = (first.publish_dir / NAV_HISTORY_FILE).read_bytes()
        second = replace(first, out_dir=tmp_path / "B", history_path=tmp_path / "h2.sqlite")
        with capture_logs() as events:
            # The reload pass publishes the same NAV again; then two new ones.
            publish(recorder, second, (now - 180, 1002.0), (now - 120, 1003.0), (now - 60, 1004.0))
        assert curve(tmp_path / "B") == [1002.0, 1003.0, 1004.0]
        assert recorder.performance is not None
        assert recorder.performance["history"]["points"] == 3
    finally:
        recorder.stop()
    assert (first.publish_dir / NAV_HISTORY_FILE).read_bytes() == before
    assert stored(tmp_path / "h1.sqlite") == [1000.0, 1001.0, 1002.0]
    assert stored(tmp_path / "h2.sqlite") == [1002.0, 1003.0, 1004.0]
    moved = [e for e in events if e["event"] == "history_moved"]
    assert [(e["file"], e["out_dir"]) for e in moved] == [
        (str(tmp_path / "h2.sqlite"), str(tmp_path / "B"))
    ]


def test_a_reload_of_out_dir_alone_publishes_the_same_history_there_at_once(
    first: Settings, tmp_path: Path
) -> None:
    """Only the out dir moves: the same store, its whole curve published in the new dir at once,
    with no new NAV needed."""
    now = time.time()
    first.publish_dir.mkdir()
    (tmp_path / "B").mkdir()
    recorder = recorder_for(first)
    assert recorder is not None
    recorder.start()
    try:
        publish(recorder, first, (now - 120, 1000.0), (now - 60, 1001.0))
        publish(recorder, replace(first, out_dir=tmp_path / "B"), (now - 60, 1001.0))
        assert curve(tmp_path / "B") == [1000.0, 1001.0]
    finally:
        recorder.stop()
    assert stored(tmp_path / "h1.sqlite") == [1000.0, 1001.0]


def test_a_reload_to_a_history_path_in_the_state_dir_keeps_the_running_history(
    first: Settings, tmp_path: Path
) -> None:
    """The publisher never writes into the state dir: that history_path is refused (one
    `history_path_refused` line naming what is kept), nothing is created there, and the running
    store goes on recording (into the new out dir, which the reload did move)."""
    now = time.time()
    first.publish_dir.mkdir()
    (tmp_path / "B").mkdir()
    inside = first.state_dir / "h.sqlite"
    recorder = recorder_for(first)
    assert recorder is not None
    recorder.start()
    try:
        publish(recorder, first, (now - 120, 1000.0))
        second = replace(first, out_dir=tmp_path / "B", history_path=inside)
        with capture_logs() as events:
            publish(recorder, second, (now - 60, 1001.0))
            publish(recorder, second, (now - 30, 1002.0))
        assert curve(tmp_path / "B") == [1000.0, 1001.0, 1002.0]
    finally:
        recorder.stop()
    refused = [e for e in events if e["event"] == "history_path_refused"]
    assert refused == [
        {
            "event": "history_path_refused",
            "file": str(inside),
            "reason": "inside the state dir",
            "kept": str(tmp_path / "h1.sqlite"),
            "log_level": "error",
        }
    ]
    assert not inside.exists()
    assert stored(tmp_path / "h1.sqlite") == [1000.0, 1001.0, 1002.0]


def _bump(state: Path, nav: float) -> None:
    write_json(state / "nav_state.json", {"nav_usd": nav, "updated_at": time.time()})


def _wait_for(predicate: Any, timeout_s: float = WAIT_S) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if value := predicate():
                return value
        except (FileNotFoundError, orjson.JSONDecodeError, KeyError):
            pass
        time.sleep(0.05)
    raise AssertionError("timed out")


def test_sighup_moves_the_history_of_a_running_daemon(tmp_path: Path, spawn: Any) -> None:
    """The real `hedge-kpi run`: out_dir A and history h1, then SIGHUP to B and h2. B gets
    nav_history_v7.json with the NAVs published from the reload on, h2.sqlite is created and
    holds them, and A's history is written no more."""
    state = tmp_path / "logs" / "state"
    state.mkdir(parents=True)
    a, b, h1, h2 = (tmp_path / n for n in ("A", "B", "h1.sqlite", "h2.sqlite"))
    config = tmp_path / "kpi.toml"
    config.write_text(f'[kpi]\nout_dir = "{a}"\nhistory_path = "{h1}"\nheartbeat_s = 0.5\n')
    _bump(state, 1000.0)
    proc: Proc = spawn(["--state-dir", str(state), "--config", str(config), "--no-fsync"])
    proc.wait_event(is_publish)
    for nav in (1001.0, 1002.0):
        time.sleep(0.02)
        _bump(state, nav)
        _wait_for(lambda nav=nav: curve(a)[-1] == nav)

    config.write_text(f'[kpi]\nout_dir = "{b}"\nhistory_path = "{h2}"\nheartbeat_s = 0.5\n')
    mark = proc.mark()
    proc.popen.send_signal(signal.SIGHUP)
    reloaded = proc.wait_event(lambda e: e["event"] == "config_reloaded", start=mark)
    assert reloaded["changed"] == ["history_path", "out_dir"]
    proc.wait_event(lambda e: e["event"] == "history_moved", start=mark)
    before = (a / NAV_HISTORY_FILE).read_bytes()
    for nav in (1003.0, 1004.0):
        time.sleep(0.02)
        _bump(state, nav)
        _wait_for(lambda nav=nav: curve(b)[-1] == nav)
    assert curve(b) == [1002.0, 1003.0, 1004.0]
    assert (a / NAV_HISTORY_FILE).read_bytes() == before
    assert curve(a) == [1000.0, 1001.0, 1002.0]
    assert orjson.loads((b / "kpis_v7.json").read_bytes())["performance"]["history"]["points"] == 3
    assert proc.stop()[0] == 0
    assert stored(h1) == [1000.0, 1001.0, 1002.0]
    assert stored(h2) == [1002.0, 1003.0, 1004.0]
    assert not [e for e in proc.events if e.get("level") == "error"]
    assert os.path.exists(h2)
