"""The history in the exports: Prometheus families by window, `check` on nav_history_v7.json,
the history path never in the state dir, and the in-memory curve under clock skew."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from structlog.testing import capture_logs

from kpi_publisher import prom
from kpi_publisher.config import Settings
from kpi_publisher.contract import NAV_HISTORY_FILE
from kpi_publisher.history.curves import Series, build_nav_history
from kpi_publisher.history.recorder import recorder_for
from kpi_publisher.pipeline import Outputs
from kpi_publisher.render import render
from kpi_publisher.stages.performance import build_performance

T0 = 1_760_000_000.0
HOURLY = [(T0 + i * 3600.0, 1000.0 + i) for i in range(49)]
GOLDEN = Path(__file__).parents[1] / "fixtures" / "golden" / "v7_1_flat"


def samples(kpis: dict) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for family in prom.families(Outputs(kpis, {}), host="h", account="a", health=None):
        for labels, value in family.samples:
            window = dict(labels).get("window", "")
            out.setdefault(family.name, {})[window] = value
    return out


def test_prometheus_exports_covered_windows_only():
    performance = build_performance(HOURLY, HOURLY[-1][0])
    got = samples({"performance": performance})
    assert got["hedge_kpi_nav_pnl_usd"] == {"24h": 24.0, "all": 48.0}  # 7d, 30d: null, no sample
    assert set(got["hedge_kpi_nav_max_drawdown_pct"]) == {"24h", "all"}
    assert got["hedge_kpi_nav_history_points"] == {"": 49.0}
    assert "hedge_kpi_nav_sharpe" not in got  # fewer than 14 daily returns
    assert not any(name.startswith("hedge_kpi_nav_pnl") for name in samples({}))


@pytest.fixture
def published(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    shutil.copytree(GOLDEN / "logs", tmp_path / "logs")
    out.mkdir()
    for name in ("kpis_v7.json", "positions_v7.json"):
        shutil.copy(GOLDEN / f"expected_{name}", out / name)
    return out


def run_check(out: Path) -> tuple[int, dict[str, dict]]:
    """`hedge-kpi check` as monitoring runs it: exit code and its line per file name."""
    state = out.parent / "logs" / "state"
    dirs = ("--state-dir", str(state), "--out-dir", str(out), "--max-age-s", "1e12")
    result = subprocess.run(
        [sys.executable, "-m", "kpi_publisher", "check", "--log-format", "json", *dirs],
        capture_output=True,
        timeout=30,
        check=False,
    )
    lines = [orjson.loads(line) for line in result.stdout.splitlines()]
    return result.returncode, {Path(e["file"]).name: e for e in lines if "file" in e}


def test_check_validates_nav_history_only_when_present(published: Path):
    code, files = run_check(published)
    assert code == 0 and NAV_HISTORY_FILE not in files
    doc = render(build_nav_history(Series.of(HOURLY), HOURLY[-1][0]))
    (published / NAV_HISTORY_FILE).write_bytes(doc)
    code, files = run_check(published)
    assert code == 0 and files[NAV_HISTORY_FILE]["status"] == "ok"
    (published / NAV_HISTORY_FILE).write_bytes(doc.replace(b'"points":49', b'"points":-1'))
    code, files = run_check(published)
    assert code == 6
    assert files[NAV_HISTORY_FILE]["reason"].startswith("schema: points")


def test_history_path_in_the_state_dir_is_refused(tmp_path: Path):
    state = tmp_path / "logs" / "state"
    with capture_logs() as logs:
        refused = recorder_for(Settings(state_dir=state, history_path=state / "h.sqlite"))
    assert refused is None
    assert [e["event"] for e in logs] == ["history_path_refused"]
    kept = recorder_for(Settings(state_dir=state, history_path=tmp_path / "h.sqlite"))
    assert kept is not None and kept.store.path == tmp_path / "h.sqlite"


def test_default_history_path_is_beside_the_crash_log(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("KPI_RUNTIME_DIR", str(tmp_path / "run"))
    recorder = recorder_for(Settings(state_dir=tmp_path / "logs" / "state"))
    assert recorder is not None
    assert recorder.store.path.parent == tmp_path / "run"
    assert recorder.store.path.name.startswith("history-")


def test_curve_takes_a_late_point_in_order():
    """A point older than the latest (clock skew) lands in order; drawdowns after it follow."""
    series = Series.of([(1.0, 100.0), (3.0, 90.0)])
    assert series.add(2.0, 120.0)
    assert not series.add(2.0, 120.0)
    assert list(series.times) == [1.0, 2.0, 3.0]
    assert list(series.drawdowns) == [0.0, 0.0, 25.0]
