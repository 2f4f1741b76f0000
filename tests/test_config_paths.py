"""Paths that must not meet: the history database, kpis.prom and the published files never land
on an input, on another output, on the config file or in the state dir.

A history put on the holdings config used to move the holdings aside and leave a SQLite
database in their place; a prom dir set to the state dir wrote kpis.prom there. Both are now
config errors naming the setting: exit 2 at start-up, the previous config kept on a reload (a
reload resolves the config the same way, `resolve`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kpi_publisher.config import ConfigError, resolve
from kpi_publisher.contract import ExitCode
from tests.conftest import kpi_free_env
from tests.test_daemon_signals import Proc, is_publish, write_json

pytestmark = pytest.mark.timeout(60)

HOLDINGS = b'{"BTC": {"qty": 0.1, "usd_value": 7798.0}}'
FX = b'{"usd_zar": 18.5, "usd_zar_ts": 1764000000}'


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """An executor tree: logs/state with a NAV, the FX cache, the holdings config, an out dir."""
    state = tmp_path / "logs" / "state"
    state.mkdir(parents=True)
    write_json(state / "nav_state.json", {"nav_usd": 4300.0, "updated_at": 1764000000.0})
    (tmp_path / "logs" / "cache").mkdir()
    (tmp_path / "logs" / "cache" / "coingecko_cache.json").write_bytes(FX)
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "offexchange_holdings.json").write_bytes(HOLDINGS)
    (tmp_path / "out").mkdir()
    return tmp_path


def base(root: Path, **more: object) -> dict[str, object]:
    return {"state_dir": root / "logs" / "state", "out_dir": root / "out", **more}


def refused(cli: dict[str, object], env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        resolve(cli, env or {})
    return str(caught.value)


# -- the resolver (start-up and reload alike) ------------------------------------------------

# history_path -> what the error names: every input outside the state dir, every output.
HISTORY_ON: dict[str, tuple[str, str]] = {
    "holdings (default path)": ("config/offexchange_holdings.json", "holdings_path"),
    "fx cache (default path)": ("logs/cache/coingecko_cache.json", "fx_path"),
    "executor NAV log": ("logs/nav_log.json", "nav_log.json"),
    "executor NAV lines": ("logs/nav.jsonl", "nav.jsonl"),
    "kpis_v7.json": ("out/kpis_v7.json", "the published kpis_v7.json"),
    "positions_v7.json": ("out/positions_v7.json", "the published positions_v7.json"),
    "nav_history_v7.json": ("out/nav_history_v7.json", "the published nav_history_v7.json"),
    "kpis.prom": ("textfile/kpis.prom", "the published kpis.prom"),
    "the out dir": ("out", "or a directory above it"),
    "a dir above every input": (".", "or a directory above it"),
}


@pytest.mark.parametrize(("relative", "named"), HISTORY_ON.values(), ids=HISTORY_ON.keys())
def test_history_path_on_an_input_or_an_output_is_a_config_error(
    root: Path, relative: str, named: str
) -> None:
    """A history_path that is any input or output (or a directory above one) is refused,
    naming history_path and the file it would replace."""
    reason = refused(
        base(root, prom_dir=root / "textfile"), {"KPI_HISTORY_PATH": str(root / relative)}
    )
    assert reason.startswith("environment KPI_HISTORY_PATH: history_path ")
    assert named in reason
    assert (root / "config" / "offexchange_holdings.json").read_bytes() == HOLDINGS


@pytest.mark.parametrize("setting", ["fx_path", "holdings_path", "config_file"])
def test_history_path_on_a_configured_input_is_a_config_error(root: Path, setting: str) -> None:
    """The same for inputs at configured (not default) paths, the config file included."""
    target = root / "elsewhere" / "input.toml"
    target.parent.mkdir()
    target.write_text("")
    reason = refused(base(root, **{setting: target, "history_path": target}))
    assert reason.startswith("option --history-path: history_path must not be ")
    assert setting in reason


@pytest.mark.parametrize("suffix", ["-wal", "-shm", "-journal"])
def test_history_whose_sqlite_side_file_is_an_input_is_a_config_error(
    root: Path, suffix: str
) -> None:
    """SQLite writes `<history>-wal`, `-shm` and `-journal`: none of them may be an input."""
    fx = root / "cache" / f"fx.json{suffix}"
    reason = refused(base(root, fx_path=fx, history_path=root / "cache" / "fx.json"))
    assert f"SQLite's {suffix} file on fx_path" in reason


def test_history_path_reaching_an_input_through_a_symlink_or_a_hard_link_is_refused(
    root: Path,
) -> None:
    """Aliases count: a symlinked directory, and a hard link to the holdings file."""
    (root / "alias").symlink_to(root / "config")
    reason = refused(base(root, history_path=root / "alias" / "offexchange_holdings.json"))
    assert "holdings_path" in reason
    os.link(root / "config" / "offexchange_holdings.json", root / "linked.json")
    assert "holdings_path" in refused(base(root, history_path=root / "linked.json"))


def test_history_path_inside_the_state_dir_is_a_config_error(root: Path) -> None:
    """Refused when the settings are resolved, not only when the recorder is built."""
    reason = refused(base(root, history_path=root / "logs" / "state" / "h.sqlite"))
    assert "history_path must not be inside the state dir" in reason


@pytest.mark.parametrize(
    "prom_dir",
    ["logs/state", "logs/state/textfile"],
    ids=["the state dir", "inside the state dir"],
)
@pytest.mark.parametrize("origin", ["option", "environment", "file"])
def test_prom_dir_in_the_state_dir_is_a_config_error(
    root: Path, prom_dir: str, origin: str
) -> None:
    """kpis.prom is not one of the outputs the publisher may write into the state dir; the
    error names the setting where it was given."""
    value = str(root / prom_dir)
    cli, env = base(root), {}
    if origin == "option":
        cli["prom_dir"] = value
    elif origin == "environment":
        env["KPI_PROM_DIR"] = value
    else:
        config = root / "kpi.toml"
        config.write_text(f'prom_dir = "{value}"\n')
        cli["config_file"] = config
    reason = refused(cli, env)
    where = {
        "option": "option --prom-dir",
        "environment": "environment KPI_PROM_DIR",
        "file": f"config file {root / 'kpi.toml'}",
    }[origin]
    assert reason.startswith(f"{where}: prom_dir must not be inside the state dir")


def test_prom_dir_whose_kpis_prom_is_an_input_or_that_is_an_input_is_refused(root: Path) -> None:
    """kpis.prom over an input (here an FX cache named kpis.prom), or prom_dir on a file."""
    fx = root / "cache" / "kpis.prom"
    reason = refused(base(root, fx_path=fx, prom_dir=fx.parent))
    assert "prom_dir would put kpis.prom over fx_path" in reason
    holdings = root / "config" / "offexchange_holdings.json"
    assert "prom_dir must not be holdings_path" in refused(base(root, prom_dir=holdings))


@pytest.mark.parametrize("out_dir", [True, False], ids=["out_dir", "publishing in the state dir"])
def test_published_file_on_an_input_is_a_config_error(root: Path, out_dir: bool) -> None:
    """An input named like an output in the publish dir would be overwritten by the publish."""
    cli: dict[str, object] = base(root) if out_dir else {"state_dir": root / "logs" / "state"}
    publish_dir = root / "out" if out_dir else root / "logs" / "state"
    cli["holdings_path"] = publish_dir / "kpis_v7.json"
    reason = refused(cli)
    named = "out_dir" if out_dir else "state_dir"
    assert f"{named} would put kpis_v7.json over holdings_path" in reason


def test_a_sound_layout_resolves(root: Path) -> None:
    """History and kpis.prom apart from every input; kpis.prom beside the outputs; the history
    under another name in the out dir: all fine."""
    history = root / "var" / "history.sqlite"
    s = resolve(base(root, history_path=history, prom_dir=root / "out"), {})
    assert (s.history_path, s.prom_path) == (history, root / "out" / "kpis.prom")
    assert resolve(base(root, history_path=root / "out" / "history.sqlite"), {}).history_path
    assert resolve({"state_dir": root / "logs" / "state", "prom_dir": root}, {}).prom_dir == root


def test_a_reload_that_moves_prom_dir_into_the_state_dir_is_refused(root: Path) -> None:
    """What SIGHUP resolves: the edited config file is refused, naming prom_dir (the daemon
    then keeps the running config, see the SIGHUP test below)."""
    config = root / "kpi.toml"
    config.write_text(f'prom_dir = "{root / "textfile"}"\n')
    cli = base(root, config_file=config)
    assert resolve(cli, {}).prom_dir == root / "textfile"
    config.write_text(f'prom_dir = "{root / "logs" / "state"}"\n')
    assert "prom_dir must not be inside the state dir" in refused(cli)
    config.write_text(f'history_path = "{root / "config" / "offexchange_holdings.json"}"\n')
    assert "history_path must not be holdings_path" in refused(cli)


# -- the real commands ------------------------------------------------------------------------


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kpi_publisher", *args, "--log-format", "json"]
        if args[0] == "run"
        else [sys.executable, "-m", "kpi_publisher", *args],
        env={**kpi_free_env(), **(env or {})},
        capture_output=True,
        text=True,
        timeout=30,
    )


def untouched(root: Path) -> None:
    """The inputs are byte for byte as written, nothing was moved aside, no SQLite file left."""
    assert (root / "config" / "offexchange_holdings.json").read_bytes() == HOLDINGS
    assert (root / "logs" / "cache" / "coingecko_cache.json").read_bytes() == FX
    names = [p.name for p in root.rglob("*")]
    assert not [n for n in names if ".corrupt-" in n or n.endswith(("-wal", "-shm", "-journal"))]


HISTORY_TARGETS = {
    "holdings": "config/offexchange_holdings.json",
    "fx cache": "logs/cache/coingecko_cache.json",
    "published kpis": "out/kpis_v7.json",
}


@pytest.mark.parametrize("relative", HISTORY_TARGETS.values(), ids=HISTORY_TARGETS.keys())
def test_run_with_the_history_on_an_input_or_output_exits_2_and_touches_nothing(
    root: Path, relative: str
) -> None:
    """The reported repro: KPI_HISTORY_PATH on the holdings, the FX cache or kpis_v7.json."""
    (root / "out" / "kpis_v7.json").write_bytes(b'{"schema": "hedge.kpis_v7"}')
    before = (root / "out" / "kpis_v7.json").read_bytes()
    done = run_cli(
        "run", "--state-dir", str(root / "logs" / "state"), "--out-dir", str(root / "out"),
        env={"KPI_HISTORY_PATH": str(root / relative)},
    )  # fmt: skip
    assert done.returncode == ExitCode.USAGE
    assert '"event": "config_invalid"' in done.stdout
    assert "KPI_HISTORY_PATH: history_path must not be" in done.stdout
    untouched(root)
    assert (root / "out" / "kpis_v7.json").read_bytes() == before


@pytest.mark.parametrize("command", ["run", "once"])
def test_prom_dir_in_the_state_dir_exits_2_at_start(root: Path, command: str) -> None:
    """`run` logs config_invalid, `once` says it on stderr; no kpis.prom in the state dir."""
    state = root / "logs" / "state"
    done = run_cli(command, "--state-dir", str(state), "--prom-dir", str(state))
    assert done.returncode == ExitCode.USAGE
    said = done.stdout if command == "run" else done.stderr
    assert "option --prom-dir: prom_dir must not be inside the state dir" in said
    assert sorted(p.name for p in state.iterdir()) == ["nav_state.json"]


@pytest.fixture
def spawned() -> Iterator[Callable[..., Proc]]:
    procs: list[Proc] = []

    def start(args: list[str]) -> Proc:
        procs.append(Proc([*args, "--log-format", "json", "--heartbeat-s", "0.2"]))
        return procs[-1]

    yield start
    for proc in procs:
        proc.kill()


def test_sighup_to_a_prom_dir_in_the_state_dir_keeps_the_running_config(
    root: Path, spawned: Callable[..., Proc]
) -> None:
    """A real `run`: the config file edited to put prom_dir in the state dir, then SIGHUP:
    config_reload_failed names prom_dir, kpis.prom stays where it was and keeps being
    written, nothing appears in the state dir."""
    state, textfile = root / "logs" / "state", root / "textfile"
    config = root / "kpi.toml"
    config.write_text(f'prom_dir = "{textfile}"\n')
    proc = spawned(["--state-dir", str(state), "--out-dir", str(root / "out"),
                    "--config", str(config), "--no-fsync"])  # fmt: skip
    proc.wait_event(is_publish)
    config.write_text(f'prom_dir = "{state}"\n')
    mark = proc.mark()
    proc.popen.send_signal(signal.SIGHUP)
    failed = proc.wait_event(lambda e: e["event"] == "config_reload_failed", start=mark)
    assert "prom_dir must not be inside the state dir" in failed["reason"]
    assert failed["kept"] == "previous config"
    (textfile / "kpis.prom").unlink()
    proc.wait_event(is_publish, start=proc.mark())
    proc.wait_event(is_publish, start=proc.mark())
    assert (textfile / "kpis.prom").exists()
    assert sorted(p.name for p in state.iterdir()) == ["nav_state.json"]
    assert proc.stop()[0] == 0
