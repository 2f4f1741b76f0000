"""Settings resolve once: CLI > KPI_* environment > TOML file > defaults, into a frozen object."""

from __future__ import annotations

import dataclasses
import math
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kpi_publisher import cli
from kpi_publisher.config import (
    DEFAULT_STALE_S,
    FIELD_NAMES,
    RANGES,
    ConfigError,
    Settings,
    plain,
    resolve,
)
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
        ({"KPI_HEARTBEAT_S": "0"}, "KPI_HEARTBEAT_S: heartbeat_s must be >= 0.001"),
        ({"KPI_DEBOUNCE_MS": "-5"}, "KPI_DEBOUNCE_MS: debounce_ms must be >= 0"),
        ({"KPI_RETRY_MS": "soon"}, "KPI_RETRY_MS: retry_ms must be a number, got 'soon'"),
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
    assert s.resolved_holdings_path == Path("/home/ops/hedge-fund/config/offexchange_holdings.json")


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("state_dir", "/tmp/" + "a" * 256, "has a name longer than 255 bytes"),
        ("out_dir", "/tmp/" + "é" * 128, "has a name longer than 255 bytes"),
        ("history_path", "/" + "/".join(["d" * 200] * 21), "is longer than 4095 bytes"),
    ],
    ids=["long-name", "long-name-in-utf8-bytes", "long-path"],
)
def test_a_path_no_file_could_have_is_a_config_error_naming_the_setting(
    tmp_path: Path, field: str, value: str, problem: str
) -> None:
    """A path whose every stat would fail (ENAMETOOLONG) is refused when the config resolves,
    naming the setting, from the file and the command line alike, instead of a traceback
    (`once`) or a misleading exit (`run`: out_dir_unwritable naming the state dir)."""
    config = tmp_path / "kpi.toml"
    config.write_text(f'{field} = "{value}"\n')
    with pytest.raises(ConfigError, match=re.escape(f"{field} {problem}")):
        resolve({"config_file": str(config)}, {})
    with pytest.raises(ConfigError, match=re.escape(problem)):
        resolve({field: value}, {})


def test_once_with_a_too_long_state_dir_exits_2_with_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "kpi_publisher", "once", "--state-dir", "/tmp/" + "a" * 300],
        capture_output=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("KPI_")},
        check=False,
    )
    assert result.returncode == 2
    assert b"Traceback" not in result.stderr
    assert b"state_dir has a name longer than 255 bytes" in result.stderr + result.stdout


def test_run_flags_become_settings() -> None:
    """`hedge-kpi run` tuning flags land in the same Settings fields as KPI_* and the file."""
    args = cli.build_parser().parse_args(
        [
            "run",
            "--state-dir",
            "/srv/state",
            "--out-dir",
            "/srv/out",
            "--debounce-ms",
            "5",
            "--heartbeat-s",
            "2",
            "--rescan-s",
            "0.5",
            "--retry-ms",
            "20",
            "--no-fsync",
            "--log-format",
            "console",
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


# -------------------------------------------------------- every bad value, from every origin

NUMERIC_FIELDS = (
    "debounce_ms",
    "heartbeat_s",
    "rescan_s",
    "retry_ms",
    "nav_fresh_s",
    "symbols_cap",
    "max_input_bytes",
    "metrics_port",
)
# (setting, value written the same way in TOML, KPI_* and on the command line, what the error
# says). Each is refused from all three origins; nothing becomes a default, 0 or "never".
BAD_NUMBERS: list[tuple[str, str, str]] = [
    row
    for name in NUMERIC_FIELDS
    for row in (
        (name, "nan", "must be a finite number"),
        (name, "inf", "must be a finite number"),
        (name, "-inf", "must be a finite number"),
        (name, "1e400", "must be a finite number"),  # OverflowError once, now a reason
        (name, f"{RANGES[name].low - 1:g}", f"must be {RANGES[name]}"),
        (name, f"{RANGES[name].high * 2:g}", f"must be {RANGES[name]}"),
    )
] + [
    ("heartbeat_s", "0", "must be >= 0.001 and <= 3600 s"),
    ("nav_fresh_s", "0", "must be > 0 and <= 31536000 s"),
    ("symbols_cap", "1.5", "must be a whole number"),
    ("metrics_port", "80.5", "must be a whole number"),
    ("metrics_port", "99999999999999999999999999", "must be >= 0 and <= 65535"),
]
# Text only the environment or a flag can carry.
BAD_TEXT: list[tuple[str, str, str]] = [
    ("retry_ms", "soon", "must be a number"),
    ("heartbeat_s", "5 s", "must be a number"),
    ("debounce_ms", "1_0", "must be a number"),
    ("metrics_port", "0x50", "must be a number"),
    ("retry_ms", "\u0661\u0662", "must be a number"),  # Arabic-Indic digits: not ASCII
    ("fsync", "maybe", "must be a boolean"),
    ("log_format", "xml", "must be auto, json or console"),
    ("state_dir", "logs/\x00state", "must not contain a NUL character"),
    ("host_label", "desk\udcff", "must be printable text"),
]
# TOML values of the wrong type: a file says what it means, "5" is not 5 and true is not 1.
BAD_TOML: list[tuple[str, str, str]] = [
    ("heartbeat_s", '"5"', "must be a number, not a string"),
    ("heartbeat_s", "true", "must be a number, not a boolean"),
    ("metrics_port", "false", "must be a number, not a boolean"),
    ("symbols_cap", "[64]", "must be a number, not an array"),
    ("debounce_ms", "1979-05-27", "must be a number, not a date"),
    ("fsync", '"yes"', "must be a boolean"),
    ("state_dir", "5", "must be a string, not an integer"),
    ("host_label", "1.5", "must be a string, not a float"),
    ("out_dir", '""', "must not be empty"),
    ("state_dir", '"a\\u0000b"', "must not contain a NUL character"),
    ("log_format", '"xml"', "must be auto, json or console"),
    ("stale_s", "5", "must be a table"),
]
# [stale_s] limits: a positive finite number of seconds or "never"; nothing else means never.
BAD_STALE: list[tuple[str, str]] = [
    ("fx = 0", "stale_s.fx must be > 0"),
    ("fx = false", "stale_s.fx must be a number, not a boolean"),
    ("fx = nan", "stale_s.fx must be a finite number"),
    ("fx = inf", "stale_s.fx must be a finite number"),
    ("fx = -5", "stale_s.fx must be > 0"),
    ("fx = 1e400", "stale_s.fx must be a finite number"),
    ('fx = "Never"', "stale_s.fx must be a number, not a string"),
    ('fx = "60"', "stale_s.fx must be a number, not a string"),
    ("risk = 60\nfxx = 60", "unknown sources under stale_s: fxx"),
]


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _file_with(tmp_path: Path, text: str) -> dict[str, str]:
    path = tmp_path / "kpi.toml"
    path.write_text(text, errors="surrogateescape")
    return {"config_file": str(path)}


def _refused(cli_values: dict[str, Any], env: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as caught:
        resolve(cli_values, env)
    return str(caught.value)


@pytest.mark.parametrize("origin", ["file", "environment", "option"])
@pytest.mark.parametrize(("name", "literal", "reason"), BAD_NUMBERS)
def test_bad_numbers_are_refused_from_every_origin_naming_it(
    tmp_path: Path, origin: str, name: str, literal: str, reason: str
) -> None:
    """nan, inf, overflow and out-of-range values are a ConfigError naming where they came from."""
    if origin == "file":
        message = _refused(_file_with(tmp_path, f"[kpi]\n{name} = {literal}\n"), {})
        assert f"config file {tmp_path / 'kpi.toml'}: {name} {reason}" in message
    elif origin == "environment":
        message = _refused({}, {f"KPI_{name.upper()}": literal})
        assert f"environment KPI_{name.upper()}: {name} {reason}" in message
    else:
        message = _refused({name: literal}, {})
        assert f"option {flag(name)}: {name} {reason}" in message
    assert "got " in message  # and the value


@pytest.mark.parametrize("origin", ["environment", "option"])
@pytest.mark.parametrize(("name", "text", "reason"), BAD_TEXT)
def test_bad_text_from_the_environment_or_a_flag_names_its_origin(
    origin: str, name: str, text: str, reason: str
) -> None:
    if origin == "environment":
        message = _refused({}, {f"KPI_{name.upper()}": text})
        assert f"environment KPI_{name.upper()}: {name} {reason}" in message
    else:
        message = _refused({name: text}, {})
        assert f"option {flag(name)}: {name} {reason}" in message


@pytest.mark.parametrize(("name", "literal", "reason"), BAD_TOML)
def test_values_of_the_wrong_toml_type_are_refused(
    tmp_path: Path, name: str, literal: str, reason: str
) -> None:
    message = _refused(_file_with(tmp_path, f"{name} = {literal}\n"), {})
    assert f"config file {tmp_path / 'kpi.toml'}: {name} {reason}" in message


@pytest.mark.parametrize(("table", "reason"), BAD_STALE)
def test_stale_limits_are_positive_seconds_or_never(
    tmp_path: Path, table: str, reason: str
) -> None:
    """0, false and nan once meant "never stale"; now each is an error, as is a typo'd source."""
    for text in (f"[stale_s]\n{table}\n", f"[kpi.stale_s]\n{table}\n"):
        message = _refused(_file_with(tmp_path, text), {})
        assert f"config file {tmp_path / 'kpi.toml'}: {reason}" in message


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("heartbeat_s = 5\n[kpi]\ndebounce_ms = 10\n", "keys beside the [kpi] table: heartbeat_s"),
        ("[kpi]\ndebounce_ms = 10\n[stale_s]\nfx = 60\n", "keys beside the [kpi] table: stale_s"),
        ("kpi = 5\n", "kpi must be a table"),
        ('config_file = "/etc/other.toml"\n', "unknown settings config_file"),
        ("[kpi]\nheartbeat = 5\n", "unknown settings heartbeat"),
        ("a = " + "[" * 3000 + "]" * 3000 + "\n", "not valid TOML: nested too deeply"),
        ("heartbeat_s = 5\nheartbeat_s = 6\n", "not valid TOML"),
        ("heartbeat_s = 5\x00\n", "not valid TOML"),
    ],
    ids=[
        "top-level-beside-kpi",
        "stale-beside-kpi",
        "kpi-not-a-table",
        "config-file-key",
        "unknown-key",
        "deep-nesting",
        "duplicate-key",
        "nul-byte",
    ],
)
def test_bad_file_structure_names_the_file_and_the_problem(
    tmp_path: Path, text: str, reason: str
) -> None:
    message = _refused(_file_with(tmp_path, text), {})
    assert f"config file {tmp_path / 'kpi.toml'}: {reason}" in message


def _non_utf8(path: Path) -> None:
    path.write_bytes(b'[kpi]\nheartbeat_s = 5\nhost_label = "desk\xff"\n')


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _directory(path: Path) -> None:
    path.mkdir()


def _huge(path: Path) -> None:
    path.write_bytes(b"# padding\n" * 200_000)


def _dangling_symlink(path: Path) -> None:
    path.symlink_to(path.with_name("gone.toml"))


UNREADABLE: dict[str, tuple[Callable[[Path], None], str]] = {
    "non-utf8": (_non_utf8, "not UTF-8 (byte 0xff on line 3)"),
    "fifo": (_fifo, "not a regular file"),
    "directory": (_directory, "not a regular file"),
    "over-the-cap": (_huge, "over the 1048576-byte cap"),
    "missing": (lambda path: None, "not found"),
    "dangling-symlink": (_dangling_symlink, "not found"),
}


@pytest.mark.timeout(10)
@pytest.mark.parametrize("kind", sorted(UNREADABLE))
def test_a_config_file_that_cannot_be_read_is_a_config_error(tmp_path: Path, kind: str) -> None:
    """Read like any input: a FIFO never blocks, bytes that are not UTF-8 are a reason."""
    make, reason = UNREADABLE[kind]
    path = tmp_path / "kpi.toml"
    make(path)
    message = _refused({"config_file": str(path)}, {})
    assert message.startswith(f"config file {path}: ") and message.endswith(reason)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a mode-000 file anyway")
def test_a_config_file_without_read_permission_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "kpi.toml"
    path.write_text("heartbeat_s = 5\n")
    path.chmod(0)
    assert "Permission denied" in _refused({"config_file": str(path)}, {})


def test_every_value_the_tests_and_deploy_files_use_stays_valid(tmp_path: Path) -> None:
    """The range edges chosen: a 1 ms heartbeat (stress tests), port 0 (any free port)..."""
    text = (
        "heartbeat_s = 0.001\ndebounce_ms = 0\nrescan_s = 0.1\nretry_ms = 1\n"
        "nav_fresh_s = 100000\nmetrics_port = 0\nsymbols_cap = 64\n"
        'max_input_bytes = 16777216\n[stale_s]\nfx = 7200\nholdings = "never"\nrisk = 0.5\n'
    )
    s = resolve(_file_with(tmp_path, text), {"KPI_METRICS_PORT": "9464", "KPI_RETRY_MS": "60000"})
    assert (s.heartbeat_s, s.debounce_ms, s.rescan_s, s.retry_ms) == (0.001, 0.0, 0.1, 60000.0)
    assert (s.metrics_port, s.symbols_cap, s.nav_fresh_s) == (9464, 64, 100000.0)
    assert (s.stale_limit_s("fx"), s.stale_limit_s("holdings"), s.stale_limit_s("risk")) == (
        7200.0,
        None,
        0.5,
    )
    assert resolve({"heartbeat_s": 3600.0, "metrics_port": 65535}, {}).heartbeat_s == 3600.0


def test_a_stale_limit_exists_for_every_source() -> None:
    """[stale_s] accepts exactly the source names the reader knows."""
    from kpi_publisher.contract import SOURCE_NAMES

    assert set(DEFAULT_STALE_S) == set(SOURCE_NAMES)


def test_the_readme_documents_every_range() -> None:
    """The settings table in the README states the range the loader enforces."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for name, limits in RANGES.items():
        row = next(line for line in readme.splitlines() if f"| `{name}` |" in line)
        assert f"{plain(limits.low)}–{plain(limits.high)}" in row or (
            f"> {plain(limits.low)} and at most {plain(limits.high)}" in row
        ), (name, row)


# ------------------------------------------------- at start: exit 2, one line, as processes

START_CASES: dict[str, tuple[Callable[[Path], object] | None, dict[str, str], str]] = {
    # name: (how the config file at <tmp>/kpi.toml is made, extra env, what the line says)
    "non-utf8": (_non_utf8, {}, "not UTF-8"),
    "metrics-port-inf": (
        lambda p: p.write_text("metrics_port = inf\n"),
        {},
        "metrics_port must be a finite",
    ),
    "symbols-cap-overflow": (
        lambda p: p.write_text("[kpi]\nsymbols_cap = 1e400\n"),
        {},
        "symbols_cap must be a finite",
    ),
    "fifo": (_fifo, {}, "not a regular file"),
    "directory": (_directory, {}, "not a regular file"),
    "missing": (lambda p: None, {}, "not found"),
    "deep-nesting": (
        lambda p: p.write_text("a = " + "[" * 3000 + "]" * 3000),
        {},
        "nested too deeply",
    ),
    "stale-zero": (lambda p: p.write_text("[stale_s]\nfx = 0\n"), {}, "stale_s.fx must be > 0"),
    "beside-kpi": (
        lambda p: p.write_text("heartbeat_s = 5\n[kpi]\nretry_ms = 5\n"),
        {},
        "beside the [kpi]",
    ),
    "env-nan": (None, {"KPI_HEARTBEAT_S": "nan"}, "KPI_HEARTBEAT_S: heartbeat_s must be a finite"),
}


def _start(command: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("KPI_")}
    return subprocess.Popen(
        [sys.executable, "-m", "kpi_publisher", command, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**clean, **env},
    )


def _one_line_exit_2(proc: subprocess.Popen[bytes]) -> str:
    """The process exits 2 and says why in exactly one line (stdout log or stderr)."""
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 2, (out, err)
    assert b"Traceback" not in out + err
    lines = [line for line in (out + err).decode(errors="replace").splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.timeout(90)
@pytest.mark.parametrize("case", sorted(START_CASES))
def test_an_unusable_config_at_start_is_exit_2_for_run_once_and_check(
    tmp_path: Path, case: str
) -> None:
    """`run`, `once` and `check` each refuse to start: exit 2, one line naming the file and
    the reason, never a traceback or exit 1 (supervisord shows the line; no FATAL loop)."""
    make, env, reason = START_CASES[case]
    state, out, config = tmp_path / "state", tmp_path / "out", tmp_path / "kpi.toml"
    state.mkdir()
    args = ["--state-dir", str(state), "--out-dir", str(out)]
    if make is not None:
        make(config)
        args += ["--config", str(config)]
    procs = {cmd: _start(cmd, args, env) for cmd in ("run", "once", "check")}
    for cmd, proc in procs.items():
        line = _one_line_exit_2(proc)
        assert reason in line, (cmd, line)
        if make is not None:
            assert str(config) in line, (cmd, line)
    assert not out.exists()  # nothing published, no out dir created


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("command", "args", "reason"),
    [
        ("run", ["--heartbeat-s", "inf"], "option --heartbeat-s: heartbeat_s must be a finite"),
        ("run", ["--debounce-ms", "nan"], "option --debounce-ms: debounce_ms must be a finite"),
        ("run", ["--metrics-port", "70000"], "metrics_port must be >= 0 and <= 65535"),
        ("once", ["--now", "nan"], "argument --now"),
        ("once", ["--now", "inf"], "argument --now"),
        ("once", ["--now", "-1"], "argument --now"),
        ("once", ["--now", "abc"], "argument --now"),
    ],
)
def test_bad_flags_at_start_are_exit_2(
    tmp_path: Path, command: str, args: list[str], reason: str
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    proc = _start(command, ["--state-dir", str(state), "--out-dir", str(tmp_path / "o"), *args], {})
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 2, (out, err)
    assert b"Traceback" not in out + err
    assert reason in (out + err).decode()
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------- properties: ConfigError or Settings

_FIELDS_FOR_TEXT = sorted(FIELD_NAMES - {"stale_s", "config_file"})
_toml_scalars = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(max_size=8),
)


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return {"nan": "nan", "inf": "inf", "-inf": "-inf"}.get(repr(value), repr(value))
    if isinstance(value, str):
        return '"' + value.encode("unicode_escape").decode().replace('"', '\\"') + '"'
    return str(value)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    raw=st.binary(max_size=200)
    | st.text(max_size=200).map(lambda t: t.encode(errors="surrogatepass"))
)
def test_any_bytes_as_a_config_file_give_settings_or_a_config_error(
    tmp_path: Path, raw: bytes
) -> None:
    path = tmp_path / "any.toml"
    path.write_bytes(raw)
    try:
        resolve({"config_file": str(path)}, {})
    except ConfigError as exc:
        assert str(exc).startswith(f"config file {path}: ")


@settings(
    max_examples=500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    table=st.dictionaries(
        st.sampled_from([*_FIELDS_FOR_TEXT, "stale_s"]),
        _toml_scalars | st.dictionaries(st.sampled_from(sorted(DEFAULT_STALE_S)), _toml_scalars),
        max_size=4,
    )
)
def test_any_typed_values_in_a_file_give_settings_or_a_config_error(
    tmp_path: Path, table: dict[str, Any]
) -> None:
    """Overflow, nan, bools, huge ints and odd text: never an exception other than ConfigError,
    and what is accepted is finite and in range."""
    lines = ["[kpi]"]
    stale = table.pop("stale_s", None)
    lines += [f"{name} = {_toml(value)}" for name, value in table.items()]
    if isinstance(stale, dict):
        lines += ["[kpi.stale_s]", *(f"{k} = {_toml(v)}" for k, v in stale.items())]
    path = tmp_path / "typed.toml"
    path.write_text("\n".join(lines) + "\n", errors="surrogatepass")
    try:
        s = resolve({"config_file": str(path)}, {})
    except ConfigError:
        return
    for name, limits in RANGES.items():
        value = getattr(s, name)
        assert value is None or (math.isfinite(value) and value in limits), (name, value)
    for limit in s.stale_s.values():
        assert limit is None or (math.isfinite(limit) and limit > 0)


@settings(max_examples=500, deadline=None)
@given(name=st.sampled_from(_FIELDS_FOR_TEXT), text=st.text(max_size=30))
def test_any_environment_text_gives_settings_or_a_config_error(name: str, text: str) -> None:
    try:
        resolve({}, {f"KPI_{name.upper()}": text})
    except ConfigError as exc:
        assert f"KPI_{name.upper()}" in str(exc)


@pytest.mark.parametrize(
    ("name", "meant"),
    [
        ("KPI_HEARTBEAT", "KPI_HEARTBEAT_S"),
        ("KPI_HEARTBEATS_S", "KPI_HEARTBEAT_S"),
        ("KPI_HEARTBEAT_SECONDS", "KPI_HEARTBEAT_S"),
        ("KPI_STAT_DIR", "KPI_STATE_DIR"),
        ("KPI_NAV_FRESH", "KPI_NAV_FRESH_S"),
    ],
)
def test_a_misspelt_kpi_variable_is_an_error_naming_the_setting_it_resembles(
    name: str, meant: str
) -> None:
    """Ignored, KPI_HEARTBEAT=60 left the 5 s heartbeat in force while the operator believed
    it was 60 s (and `check` judged freshness by 15 s)."""
    with pytest.raises(ConfigError, match=f"environment {name}: not a setting .*{meant}"):
        resolve({}, environ={name: "60"})


def test_stale_limits_from_the_environment_are_an_error_pointing_at_the_table() -> None:
    with pytest.raises(ConfigError, match=r"KPI_STALE_S_NAV: stale_s is a table"):
        resolve({}, environ={"KPI_STALE_S_NAV": "60"})


def test_other_kpi_variables_are_left_alone() -> None:
    """Another program's KPI_ name, or the runtime dir (read by name elsewhere), is no error."""
    environ = {"KPI_API_TOKEN": "x", "KPI_RUNTIME_DIR": "/tmp", "KPI_HEARTBEAT_S": "7"}
    s = resolve({}, environ=environ)
    assert s.heartbeat_s == 7.0
