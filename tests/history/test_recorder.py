"""The recorder: published NAV points into the store, nav_history_v7.json and the performance
block rebuilt off the publish path; and the real `hedge-kpi run` keeping a history across a
kill -9."""

import itertools
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import orjson
import pytest

from kpi_publisher.check import check_document
from kpi_publisher.contract import NAV_HISTORY_FILE
from kpi_publisher.history.recorder import HistoryRecorder, point_of
from kpi_publisher.history.store import HistoryStore
from tests.history import real
from tests.history.daemons import require_mount_namespace

T0 = 1_760_000_000.0
GOLDEN = Path(__file__).parents[1] / "fixtures" / "golden" / "v7_1_flat"
HEDGE_KPI = (sys.executable, "-m", "kpi_publisher")


def kpis(t: float, nav: float) -> dict:
    return {
        "nav": {"updated_at": t, "nav_usd": nav, "unrealized_pnl_usd": -3.0},
        "risk": {"drawdown_pct": 0.5, "gross_exposure_pct": 50.0},
    }


def published(t: float, nav: float) -> SimpleNamespace:
    return SimpleNamespace(kpis=kpis(t, nav), positions={})


def test_point_of_a_kpis_document():
    point = point_of(kpis(T0, 2000.0))
    assert point is not None
    assert (point.t, point.nav_usd, point.unrealized_pnl_usd) == (T0, 2000.0, -3.0)
    assert point.drawdown_pct == 0.5
    assert point.gross_exposure_usd == 1000.0
    assert point_of({"nav": {"updated_at": T0, "nav_usd": None}}) is None


def test_points_recorded_curve_rebuilt_block_added(tmp_path: Path):
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "nav_log.json").write_text(
        json.dumps([{"t": T0 - 120 + i * 60, "nav": 1000.0 + i} for i in range(2)])
    )
    recorder = HistoryRecorder(
        HistoryStore(tmp_path / "h.sqlite"), tmp_path, logs, fsync=False, clock=lambda: T0 + 5
    )
    recorder.start()
    try:
        assert recorder.wait_idle(10)
        assert recorder.rebuilds == 1  # the back-filled curve
        for t, nav in ((T0, 1010.0), (T0, 1010.0), (T0 + 60, 990.0)):
            recorder.observe(published(t, nav))
        time.sleep(0.05)
        assert recorder.wait_idle(10)
        doc = orjson.loads((tmp_path / NAV_HISTORY_FILE).read_bytes())
        assert check_document(orjson.dumps(doc), "nav_history_v7")[1] is None
        assert doc["points"] == 4
        assert doc["windows"]["all"]["nav_usd"] == [1000.0, 1001.0, 1010.0, 990.0]
        assert doc["windows"]["all"]["drawdown_pct"][-1] == (1010.0 - 990.0) / 1010.0 * 100
        built = recorder.with_performance(lambda: published(T0 + 60, 990.0))()
        assert built.kpis["performance"]["windows"]["all"]["pnl_usd"] == -10.0
        assert built.kpis["performance"]["history"]["points"] == 4
    finally:
        recorder.stop()
    assert HistoryStore(tmp_path / "h.sqlite").count() == 4


def test_one_point_publishes_no_curve(tmp_path: Path):
    recorder = HistoryRecorder(HistoryStore(tmp_path / "h.sqlite"), tmp_path, None, fsync=False)
    recorder.start()
    recorder.observe(published(T0, 1000.0))
    recorder.stop()
    assert not (tmp_path / NAV_HISTORY_FILE).exists()
    assert recorder.performance is not None
    assert recorder.performance["windows"]["all"]["reason"] == "needs 2 points, have 1"


def _run(state: Path, out: Path, history: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KPI_")}
    env["KPI_HISTORY_PATH"] = str(history)
    env["KPI_HISTORY_RETENTION_DAYS"] = "36500"  # the real series is from 2025
    return subprocess.Popen(
        [
            *HEDGE_KPI,
            *("run", "--state-dir", str(state), "--out-dir", str(out), "--heartbeat-s", "0.2"),
            *("--log-format", "json", "--no-fsync"),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _wait(predicate, timeout_s: float = 20.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


def _performance(out: Path):
    try:
        return orjson.loads((out / "kpis_v7.json").read_bytes()).get("performance")
    except (FileNotFoundError, orjson.JSONDecodeError):
        return None


def test_real_daemon_backfills_publishes_checks_and_survives_kill_9(tmp_path: Path):
    root = tmp_path / "executor"
    shutil.copytree(GOLDEN / "logs", root / "logs")
    rows = [json.loads(line) for line in real.month_text().splitlines()]
    shift = time.time() - rows[-1]["t"]  # the month ends now, so retention keeps all of it
    (root / "logs" / "nav.jsonl").write_text(
        "".join(json.dumps({"t": r["t"] + shift, "nav": r["nav"]}) + "\n" for r in rows)
    )
    state, out, history = root / "logs" / "state", tmp_path / "out", tmp_path / "h.sqlite"
    out.mkdir()
    proc = _run(state, out, history)
    try:
        # The back-filled series is published first, then (at once) with the published NAV.
        block = _wait(lambda: (b := _performance(out)) and b["history"]["points"] > 22_514 and b)
        assert block["history"]["points"] == 22_514 + 1  # the long series + the published NAV
        doc = orjson.loads((out / NAV_HISTORY_FILE).read_bytes())
        assert len(doc["windows"]["all"]["t"]) == 1000
        check = subprocess.run(
            [
                *HEDGE_KPI,
                "check",
                "--state-dir",
                str(state),
                "--out-dir",
                str(out),
                "--max-age-s",
                "60",
            ],
            capture_output=True,
            env={k: v for k, v in os.environ.items() if not k.startswith("KPI_")},
            check=False,
        )
        assert check.returncode == 0, check.stdout + check.stderr
        assert b"nav_history_v7.json" in check.stdout + check.stderr
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    with sqlite3.connect(history) as db:
        assert db.execute("SELECT COUNT(*) FROM points").fetchone()[0] == 22_515
    for name in ("kpis_v7.json", NAV_HISTORY_FILE):
        (out / name).unlink()
    proc = _run(state, out, history)
    try:
        block = _wait(lambda: _performance(out))
        assert block["history"]["points"] == 22_515  # nothing imported twice
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0


def _write_nav(state: Path, nav: float) -> None:
    temp = state / ".nav_state.json.tmp"
    temp.write_text(json.dumps({"nav_usd": nav, "updated_at": time.time()}))
    os.replace(temp, state / "nav_state.json")


def _kpis_nav(out: Path) -> float | None:
    try:
        return orjson.loads((out / "kpis_v7.json").read_bytes())["nav"]["nav_usd"]
    except (FileNotFoundError, orjson.JSONDecodeError):
        return None


def test_full_disk_pauses_the_history_once_and_publishing_goes_on(tmp_path: Path):
    """The history on a full 128 KiB tmpfs (its own mount namespace): the back-fill of the
    month does not fit, one `history_paused` line, and every new NAV is still published."""
    require_mount_namespace()
    root, hist, out = tmp_path / "executor", tmp_path / "hist", tmp_path / "out"
    state = root / "logs" / "state"
    for directory in (state, hist, out):
        directory.mkdir(parents=True)
    rows = [json.loads(line) for line in real.month_text().splitlines()]
    shift = time.time() - rows[-1]["t"]
    (root / "logs" / "nav.jsonl").write_text(
        "".join(json.dumps({"t": r["t"] + shift, "nav": r["nav"]}) + "\n" for r in rows)
    )
    _write_nav(state, 1000.0)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KPI_")}
    env["KPI_HISTORY_PATH"] = str(hist / "h.sqlite")
    mount = f'mount -t tmpfs -o size=128k tmpfs "{hist}" && exec "$@"'
    run = [*HEDGE_KPI, "run", "--state-dir", str(state), "--out-dir", str(out)]
    log = tmp_path / "run.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            ["unshare", "-U", "-r", "-m", "sh", "-c", mount, "sh", *run, "--log-format", "json"],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait(lambda: _kpis_nav(out) == 1000.0)
        for nav in (1001.0, 1002.0, 1003.0):
            time.sleep(0.1)
            _write_nav(state, nav)
            _wait(lambda nav=nav: _kpis_nav(out) == nav)
        events = [orjson.loads(line) for line in log.read_bytes().splitlines()]
        paused = [e for e in events if e["event"] == "history_paused"]
        assert len(paused) == 1
        assert "full" in paused[0]["reason"]
        assert not [e for e in events if e["level"] in ("error", "critical")]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0


def test_the_performance_block_follows_a_new_nav_at_once_not_a_heartbeat_later(tmp_path: Path):
    """A new NAV is published, the history records it, and the next kpis_v7.json (asked for by
    the recorder, with the heartbeat far off) carries a performance block that ends at that
    NAV's timestamp. Before, the block lagged one publish: a heartbeat behind the NAV."""
    state, out = tmp_path / "logs" / "state", tmp_path / "out"
    state.mkdir(parents=True)
    out.mkdir()
    _write_nav(state, 1000.0)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KPI_")}
    env["KPI_HISTORY_PATH"] = str(tmp_path / "h.sqlite")
    proc = subprocess.Popen(
        [
            *HEDGE_KPI,
            *("run", "--state-dir", str(state), "--out-dir", str(out), "--heartbeat-s", "600"),
            *("--log-format", "json", "--no-fsync"),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def current() -> tuple[float, float | None] | None:
        try:
            doc = orjson.loads((out / "kpis_v7.json").read_bytes())
        except (FileNotFoundError, orjson.JSONDecodeError):
            return None
        last = ((doc.get("performance") or {}).get("history") or {}).get("last_t")
        return doc["nav"]["nav_usd"], last

    try:
        for nav in (1000.0, 1001.0, 1002.0):
            if nav != 1000.0:
                time.sleep(0.05)
                _write_nav(state, nav)
            _wait(lambda nav=nav: (c := current()) is not None and c[0] == nav)
            published_at = orjson.loads((out / "kpis_v7.json").read_bytes())["nav"]["updated_at"]
            _wait(lambda t=published_at: (c := current()) is not None and c[1] == t, 10.0)
            block = orjson.loads((out / "kpis_v7.json").read_bytes())["performance"]
            assert block["history"]["points"] == 1 + (nav - 1000.0)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0


def test_a_burst_of_nav_points_is_coalesced_into_few_rebuilds_and_publishes(tmp_path: Path):
    """100 new NAVs within ~0.3 s: every point is stored and the last block covers the last one,
    but the curve is rebuilt (and a publish asked for) at most once per REBUILD_GAP_S, not once
    per point."""
    from kpi_publisher.history.recorder import REBUILD_GAP_S

    recorder = HistoryRecorder(
        HistoryStore(tmp_path / "h.sqlite"), tmp_path, None, fsync=False, clock=lambda: T0 + 1e4
    )
    asked: list[float] = []
    recorder.on_update = lambda: asked.append(time.monotonic())
    recorder.start()
    try:
        assert recorder.wait_idle(10)
        before = len(asked)
        started = time.monotonic()
        for i in range(100):
            recorder.observe(published(T0 + 60 * i, 1000.0 + i))
            time.sleep(0.003)
        elapsed = time.monotonic() - started
        time.sleep(0.01)
        assert recorder.wait_idle(10)
        assert recorder.performance is not None
        assert recorder.performance["history"]["points"] == 100
        assert recorder.performance["history"]["last_t"] == T0 + 60 * 99
        burst_asks = asked[before:]
        assert 1 <= len(burst_asks) <= elapsed / REBUILD_GAP_S + 3, (len(burst_asks), elapsed)
        gaps = [b - a for a, b in itertools.pairwise(burst_asks)]
        assert all(gap >= REBUILD_GAP_S * 0.9 for gap in gaps), gaps
    finally:
        recorder.stop()
    assert HistoryStore(tmp_path / "h.sqlite").count() == 100


def test_a_failing_idle_refresh_never_ends_the_history_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """The block is recomputed every REFRESH_S while no NAV comes; a failure there (before, an
    OverflowError from one glitched NAV) ended the thread and left the last block published
    as current for ever. Now it is logged, the stale block is dropped, and the next NAV is
    recorded and published."""
    from kpi_publisher.history import recorder as module

    monkeypatch.setattr(module, "REFRESH_S", 0.05)
    recorder = HistoryRecorder(HistoryStore(tmp_path / "h.sqlite"), tmp_path, None, fsync=False)
    recorder.start()
    try:
        recorder.observe(published(T0, 1000.0))
        assert recorder.wait_idle(10) and recorder.performance is not None
        real_block = vars(module)["performance_of_columns"]

        def broken(*_args: object) -> dict:
            raise OverflowError("(34, 'Numerical result out of range')")

        monkeypatch.setattr(module, "performance_of_columns", broken)
        _wait(lambda: recorder.performance is None)
        time.sleep(0.2)  # a few idle refreshes fail
        assert recorder._thread is not None and recorder._thread.is_alive()
        monkeypatch.setattr(module, "performance_of_columns", real_block)
        recorder.observe(published(T0 + 60, 1010.0))
        _wait(lambda: (recorder.performance or {}).get("history", {}).get("points") == 2)
    finally:
        recorder.stop()
    assert HistoryStore(tmp_path / "h.sqlite").count() == 2
