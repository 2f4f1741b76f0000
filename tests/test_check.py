"""`hedge-kpi check`: schema validation and freshness of the published files, as exit codes."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from structlog.testing import capture_logs

from kpi_publisher import cli, logs

pytestmark = pytest.mark.timeout(60)

NOW = 1_764_000_000.0


@pytest.fixture(autouse=True)
def captured_logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """The command's structlog events (its own logs.configure would replace the capture)."""
    monkeypatch.setattr(logs, "configure", lambda *args, **kwargs: None)
    with capture_logs() as events:
        yield events


@pytest.fixture
def published(tmp_path: Path) -> dict[str, Path]:
    """A state dir with a NAV file, published once at NOW into out/."""
    state = tmp_path / "logs" / "state"
    out = tmp_path / "out"
    state.mkdir(parents=True)
    (state / "nav_state.json").write_bytes(orjson.dumps({"nav_usd": 2000.0, "updated_at": NOW}))
    code = cli.main(
        ["once", "--state-dir", str(state), "--out-dir", str(out), "--now", str(NOW), "--no-fsync"]
    )
    assert code == 0
    return {"state": state, "out": out}


def check(dirs: dict[str, Path], *extra: str) -> int:
    return cli.main(["check", "--state-dir", str(dirs["state"]), "--out-dir", str(dirs["out"]),
                     *extra])


def by_file(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {Path(e["file"]).name: e for e in events if e["event"] == "check_file"}


def summary(events: list[dict[str, Any]]) -> dict[str, Any]:
    return next(e for e in events if e["event"] == "check")


def test_fresh_valid_files_exit_0(
    published: dict[str, Path], captured_logs: list[dict[str, Any]]
) -> None:
    assert check(published, "--now", str(NOW + 2.5)) == 0
    files = by_file(captured_logs)
    assert files["kpis_v7.json"]["status"] == "ok"
    assert files["kpis_v7.json"]["age_s"] == 2.5
    assert files["positions_v7.json"]["status"] == "ok"
    assert summary(captured_logs)["status"] == "ok"


def test_sources_that_are_not_ok_are_reported_without_failing_the_check(
    published: dict[str, Path], captured_logs: list[dict[str, Any]]
) -> None:
    assert check(published, "--now", str(NOW + 1)) == 0
    not_ok = by_file(captured_logs)["kpis_v7.json"]["sources_not_ok"]
    assert not_ok["risk"] == "missing"
    assert "nav_state" not in not_ok


def test_older_than_three_heartbeats_is_stale_exit_5(
    published: dict[str, Path], captured_logs: list[dict[str, Any]]
) -> None:
    """The default limit is 3 x heartbeat_s (15 s): the dashboard's "publisher down" rule."""
    assert check(published, "--now", str(NOW + 16)) == 5
    kpis = by_file(captured_logs)["kpis_v7.json"]
    assert kpis["status"] == "stale"
    assert kpis["reason"] == "16.0 s old, limit 15.0 s"
    assert kpis["log_level"] == "error"
    assert summary(captured_logs)["status"] == "stale"
    assert summary(captured_logs)["exit_code"] == 5


def test_max_age_option_moves_the_limit(published: dict[str, Path]) -> None:
    assert check(published, "--now", str(NOW + 16), "--max-age-s", "60") == 0


def test_heartbeat_from_the_config_moves_the_default_limit(
    published: dict[str, Path], tmp_path: Path
) -> None:
    config = tmp_path / "kpi.toml"
    config.write_text("heartbeat_s = 10\n")
    assert check(published, "--now", str(NOW + 16), "--config", str(config)) == 0
    assert check(published, "--now", str(NOW + 31), "--config", str(config)) == 5


def test_missing_file_is_invalid_exit_6(
    published: dict[str, Path], captured_logs: list[dict[str, Any]]
) -> None:
    (published["out"] / "positions_v7.json").unlink()
    assert check(published, "--now", str(NOW)) == 6
    assert by_file(captured_logs)["positions_v7.json"]["reason"] == "missing"


def test_truncated_file_is_invalid_exit_6(
    published: dict[str, Path], captured_logs: list[dict[str, Any]]
) -> None:
    kpis = published["out"] / "kpis_v7.json"
    kpis.write_bytes(kpis.read_bytes()[:40])
    assert check(published, "--now", str(NOW)) == 6
    assert by_file(captured_logs)["kpis_v7.json"]["reason"].startswith("not valid JSON")


def test_schema_violation_names_the_field_exit_6(
    published: dict[str, Path], captured_logs: list[dict[str, Any]]
) -> None:
    """A money field published as a string breaks the contract: check says where."""
    kpis = published["out"] / "kpis_v7.json"
    doc = orjson.loads(kpis.read_bytes())
    doc["nav"]["nav_usd"] = "2,000.00"
    kpis.write_bytes(orjson.dumps(doc))
    assert check(published, "--now", str(NOW)) == 6
    reason = by_file(captured_logs)["kpis_v7.json"]["reason"]
    assert reason.startswith("schema: nav/nav_usd:")


def test_invalid_wins_over_stale(published: dict[str, Path]) -> None:
    (published["out"] / "positions_v7.json").write_text("{}")
    assert check(published, "--now", str(NOW + 100)) == 6


def test_exit_code_reaches_the_shell(published: dict[str, Path]) -> None:
    """Monitoring and supervisor event listeners see the code from the real command."""
    args = ["--state-dir", str(published["state"]), "--out-dir", str(published["out"])]
    stale = subprocess.run(
        [sys.executable, "-m", "kpi_publisher", "check", *args, "--now", str(NOW + 100)],
        capture_output=True, timeout=30, check=False,
    )
    assert stale.returncode == 5
    lines = [orjson.loads(line) for line in stale.stdout.splitlines()]
    assert lines[-1]["event"] == "check" and lines[-1]["exit_code"] == 5
