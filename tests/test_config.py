"""Settings resolve once: CLI > KPI_* environment > TOML file > defaults, into a frozen object."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from kpi_publisher import cli
from kpi_publisher.config import ConfigError, Settings, resolve
from kpi_publisher.run import cli_values

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "kpi.toml"
    path.write_text("[kpi]\ndebounce_ms = 80\nheartbeat_s = 7.5\nfsync = false\n")
    return path


def test_defaults_with_nothing_given() -> None:
    s = resolve({}, {})
    assert (s.debounce_ms, s.heartbeat_s, s.rescan_s, s.retry_ms) == (50.0, 5.0, 2.0, 100.0)
    assert s.fsync is True
    assert s.log_format == "auto"
    assert s.state_dir == Path("logs/state").absolute()
    assert s.publish_dir == s.state_dir  # out dir defaults to the state dir


@pytest.mark.parametrize(
    ("cli_value", "env_value", "expected_ms"),
    [("40", "60", 40.0), (None, "60", 60.0), (None, None, 80.0)],
    ids=["cli-wins", "env-over-file", "file-over-default"],
)
def test_precedence_cli_env_file_default(
    config_file: Path, cli_value: str | None, env_value: str | None, expected_ms: float
) -> None:
    env = {"KPI_DEBOUNCE_MS": env_value} if env_value else {}
    s = resolve({"config_file": str(config_file), "debounce_ms": cli_value}, env)
    assert s.debounce_ms == expected_ms
    assert s.heartbeat_s == 7.5  # only the file sets it
    assert s.fsync is False


def test_config_file_named_in_the_environment(config_file: Path) -> None:
    s = resolve({}, {"KPI_CONFIG_FILE": str(config_file)})
    assert s.debounce_ms == 80.0
    assert s.config_file == config_file


def test_top_level_keys_work_without_a_kpi_table(tmp_path: Path) -> None:
    path = tmp_path / "flat.toml"
    path.write_text('rescan_s = 1.5\nlog_format = "json"\n[stale_s]\nfx = "never"\nrisk = 60\n')
    s = resolve({"config_file": str(path)}, {})
    assert s.rescan_s == 1.5
    assert s.log_format == "json"
    assert s.stale_limit_s("fx") is None
    assert s.stale_limit_s("risk") == 60.0
    assert s.stale_limit_s("nav_state") == 90.0  # untouched entries keep their default


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"KPI_HEARTBEAT_S": "0"}, "heartbeat_s must be > 0"),
        ({"KPI_DEBOUNCE_MS": "-5"}, "debounce_ms must be > 0"),
        ({"KPI_RETRY_MS": "soon"}, "retry_ms: cannot use 'soon'"),
        ({"KPI_FSYNC": "maybe"}, "fsync must be a boolean"),
        ({"KPI_LOG_FORMAT": "xml"}, "log_format must be auto, json or console"),
    ],
)
def test_unusable_values_name_the_setting(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        resolve({}, env)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("debounce_ms = \n", "kpi.toml"),
        ("debounce = 5\n", "unknown settings debounce"),
    ],
    ids=["broken-toml", "unknown-key"],
)
def test_bad_config_file_names_the_file_and_the_problem(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "kpi.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(message)):
        resolve({"config_file": str(path)}, {})


def test_missing_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=re.escape("nope.toml")):
        resolve({"config_file": str(tmp_path / "nope.toml")}, {})


@pytest.mark.parametrize(("text", "expected"), [("off", False), ("1", True), ("Yes", True)])
def test_boolean_spellings_in_the_environment(text: str, expected: bool) -> None:
    assert resolve({}, {"KPI_FSYNC": text}).fsync is expected


def test_empty_environment_value_counts_as_unset() -> None:
    assert resolve({}, {"KPI_DEBOUNCE_MS": ""}).debounce_ms == 50.0


def test_settings_are_frozen() -> None:
    s = resolve({}, {})
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.debounce_ms = 1.0  # type: ignore[misc]


def test_relative_and_home_paths_become_absolute(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/ops")
    s = resolve({"state_dir": "~/hedge-fund/logs/state", "out_dir": "published"}, {})
    assert s.state_dir == Path("/home/ops/hedge-fund/logs/state")
    assert s.out_dir == Path("published").absolute()
    assert s.resolved_fx_path == Path("/home/ops/hedge-fund/logs/cache/coingecko_cache.json")
    assert s.resolved_holdings_path == Path(
        "/home/ops/hedge-fund/config/offexchange_holdings.json"
    )


def test_run_flags_become_settings() -> None:
    """`hedge-kpi run` tuning flags land in the same Settings fields as KPI_* and the file."""
    args = cli.build_parser().parse_args(
        [
            "run", "--state-dir", "/srv/state", "--out-dir", "/srv/out", "--debounce-ms", "5",
            "--heartbeat-s", "2", "--rescan-s", "0.5", "--retry-ms", "20", "--no-fsync",
            "--log-format", "console",
        ]
    )
    s = resolve(cli_values(args), {"KPI_DEBOUNCE_MS": "99", "KPI_FSYNC": "1"})
    assert s == Settings(
        state_dir=Path("/srv/state"),
        out_dir=Path("/srv/out"),
        debounce_ms=5.0,
        heartbeat_s=2.0,
        rescan_s=0.5,
        retry_ms=20.0,
        fsync=False,
        log_format="console",
    )


def test_run_flags_not_given_leave_env_and_defaults_alone() -> None:
    args = cli.build_parser().parse_args(["run"])
    s = resolve(cli_values(args), {"KPI_FSYNC": "0"})
    assert s.fsync is False
    assert s.debounce_ms == 50.0
