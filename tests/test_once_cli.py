"""`hedge-kpi once`: exit codes, the one-line summary, default and overridden paths, determinism.

Runs cli.main in-process on copies of the golden state dirs (tests/fixtures/golden), which
are in the real layout: <root>/logs/state, <root>/logs/cache, <root>/config.
"""

from __future__ import annotations

import errno
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kpi_publisher import cli
from tests.conftest import FIXTURES

GOLDEN = FIXTURES / "golden"
OUTPUTS = ("kpis_v7.json", "positions_v7.json")
NOW = "1762435700"  # the v7_1_flat build time
SUMMARY = re.compile(
    r"^published kpis_v7\.json and positions_v7\.json to (?P<out>.+): "
    r"nav (?P<nav>\S+) USD, aum (?P<aum>\S+) USD in (?P<slices>\d+) slices, "
    r"(?P<positions>\d+) positions; sources not ok: (?P<not_ok>.+) \(\d+\.\d ms\)$"
)


@pytest.fixture
def case(copy_fixture: Callable[[Path], Path]) -> Callable[[str], Path]:
    """A golden case copied to tmp; returns its root (state dir is root/logs/state)."""
    return lambda name: copy_fixture(GOLDEN / name)


def once(*args: str | Path) -> int:
    return cli.main(["once", *map(str, args)])


def state_of(root: Path) -> Path:
    return root / "logs" / "state"


def kpis_at(out: Path) -> dict[str, Any]:
    return json.loads((out / "kpis_v7.json").read_text())


def files_in(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir()) if path.is_dir() else []


# --------------------------------------------------------------------------------- exit 0
def test_publishes_both_files_and_prints_one_summary_line(
    case: Callable[[str], Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit 0, exactly the two outputs in the out dir, one line naming NAV, AUM and positions."""
    root = case("v7_1_flat")
    out = tmp_path / "out"
    assert once("--state-dir", state_of(root), "--out-dir", out, "--now", NOW) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    lines = captured.out.splitlines()
    assert len(lines) == 1
    match = SUMMARY.match(lines[0])
    assert match, lines[0]
    assert match.groupdict() | {"out": Path(match["out"])} == {
        "out": out,
        "nav": "3,915.68",
        "aum": "12,010.47",
        "slices": "4",
        "positions": "3",
        "not_ok": "none",
    }
    assert files_in(out) == sorted(OUTPUTS)  # no temp file left behind


def test_summary_names_the_sources_that_are_not_ok(
    case: Callable[[str], Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Missing inputs are not fatal without --strict; the summary lists them with their status."""
    root = case("contract_c")
    assert (
        once("--state-dir", state_of(root), "--out-dir", tmp_path / "o", "--now", "1766000000") == 0
    )
    match = SUMMARY.match(capsys.readouterr().out.strip())
    assert match
    assert match["not_ok"] == "nav_state=missing, fx=missing, holdings=missing"
    assert (match["nav"], match["aum"], match["positions"]) == ("4,210.25", "4,210.25", "2")


def test_summary_shows_missing_money_as_a_dash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An empty state dir still publishes (everything missing), NAV and AUM as en dashes."""
    state = tmp_path / "state"
    state.mkdir()
    assert once("--state-dir", state, "--now", NOW) == 0
    match = SUMMARY.match(capsys.readouterr().out.strip())
    assert match
    assert (match["nav"], match["aum"], match["positions"]) == ("–", "–", "0")
    assert files_in(state) == sorted(OUTPUTS)  # out dir defaults to the state dir
    kpis = kpis_at(state)
    assert {s["status"] for s in kpis["sources"].values()} == {"missing"}


# --------------------------------------------------------------------------------- exit 2
USAGE_CASES: dict[str, Callable[[Path, Path], list[str | Path]]] = {
    "now-not-a-number": lambda st, out: ["--state-dir", st, "--out-dir", out, "--now", "yesterday"],
    "now-without-value": lambda st, out: ["--state-dir", st, "--out-dir", out, "--now"],
    # A build time must be a finite epoch in seconds: nan/inf once published a NaN-aged NAV.
    "now-nan": lambda st, out: ["--state-dir", st, "--out-dir", out, "--now", "nan"],
    "now-inf": lambda st, out: ["--state-dir", st, "--out-dir", out, "--now", "inf"],
    "now-negative": lambda st, out: ["--state-dir", st, "--out-dir", out, "--now", "-1"],
    "now-in-ms": lambda st, out: ["--state-dir", st, "--out-dir", out, "--now", "1762435700000"],
    "state-dir-missing": lambda st, out: ["--state-dir", st / "nope", "--out-dir", out],
    "state-dir-is-a-file": lambda st, out: ["--state-dir", st / "nav.json", "--out-dir", out],
    "config-missing": lambda st, out: [
        "--state-dir",
        st,
        "--out-dir",
        out,
        "--config",
        st / "none.toml",
    ],
    "config-not-toml": lambda st, out: [
        "--state-dir",
        st,
        "--out-dir",
        out,
        "--config",
        st / "bad.toml",
    ],
    "config-unknown-setting": lambda st, out: [
        "--state-dir",
        st,
        "--out-dir",
        out,
        "--config",
        st / "unknown.toml",
    ],
    "config-bad-value": lambda st, out: [
        "--state-dir",
        st,
        "--out-dir",
        out,
        "--config",
        st / "badvalue.toml",
    ],
    "unknown-option": lambda st, out: ["--state-dir", st, "--out-dir", out, "--bogus"],
}


@pytest.mark.parametrize("name", sorted(USAGE_CASES))
def test_usage_errors_exit_2_and_publish_nothing(
    name: str, case: Callable[[str], Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bad arguments, a missing state dir or an unusable config file: exit 2, a reason, no files."""
    root = case("v7_1_flat")
    st = state_of(root)
    (st / "bad.toml").write_text("nav_fresh_s = [\n")
    (st / "unknown.toml").write_text("nav_fresh_seconds = 30\n")
    (st / "badvalue.toml").write_text('nav_fresh_s = "soon"\n')
    out = tmp_path / "out"
    before = {p.name: p.read_bytes() for p in st.iterdir()}
    assert once(*USAGE_CASES[name](st, out)) == cli.ExitCode.USAGE == 2
    assert capsys.readouterr().err.strip()  # says why
    assert not out.exists()
    assert {p.name: p.read_bytes() for p in st.iterdir()} == before


def test_no_subcommand_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 2
    assert "usage" in capsys.readouterr().err


# --------------------------------------------------------------------------------- exit 3
def test_out_dir_that_is_a_regular_file_exits_3(
    case: Callable[[str], Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The out dir path is a file (root ignores permission bits, a file stops everyone)."""
    root = case("v7_1_flat")
    blocker = tmp_path / "out"
    blocker.write_bytes(b"not a directory")
    code = once("--state-dir", state_of(root), "--out-dir", blocker, "--now", NOW)
    assert code == cli.ExitCode.OUT_DIR_UNWRITABLE == 3
    assert str(blocker) in capsys.readouterr().err
    assert blocker.read_bytes() == b"not a directory"


def test_out_dir_under_a_regular_file_exits_3(case: Callable[[str], Path], tmp_path: Path) -> None:
    root = case("v7_1_flat")
    (tmp_path / "file").write_bytes(b"x")
    assert once("--state-dir", state_of(root), "--out-dir", tmp_path / "file" / "out") == 3


@pytest.mark.parametrize("failing", OUTPUTS)
def test_failed_write_exits_3_and_keeps_the_old_file_whole(
    failing: str,
    case: Callable[[str], Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A full disk on one output: exit 3, that file keeps its previous bytes, no temp file left."""
    root = case("v7_1_flat")
    out = tmp_path / "out"
    assert once("--state-dir", state_of(root), "--out-dir", out, "--now", NOW) == 0
    before = {name: (out / name).read_bytes() for name in OUTPUTS}
    real_replace = os.replace

    def full_disk(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        if Path(dst).name == failing:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", full_disk)
    code = once("--state-dir", state_of(root), "--out-dir", out, "--now", "1762435800")
    monkeypatch.undo()
    assert code == 3
    assert "No space left on device" in capsys.readouterr().err
    assert (out / failing).read_bytes() == before[failing]
    json.loads((out / failing).read_bytes())  # still a whole document
    assert files_in(out) == sorted(OUTPUTS)
    if failing == "positions_v7.json":  # written first: kpis was never reached
        assert (out / "kpis_v7.json").read_bytes() == before["kpis_v7.json"]


# --------------------------------------------------------------------------------- exit 4
def test_strict_with_a_missing_source_exits_4_and_publishes_nothing(
    case: Callable[[str], Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """tidy_plan has no nav.json and no router_health.json: --strict refuses and names them."""
    root = case("tidy_plan")
    out = tmp_path / "out"
    code = once("--state-dir", state_of(root), "--out-dir", out, "--now", "1764000000", "--strict")
    assert code == cli.ExitCode.STRICT_INPUTS == 4
    err = capsys.readouterr().err
    assert "nav is missing" in err
    assert "router is missing" in err
    assert "risk" not in err
    assert files_in(out) == []


def test_strict_with_an_invalid_source_exits_4(
    case: Callable[[str], Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A half-written risk snapshot is invalid: --strict refuses and says which file and why."""
    root = case("v7_1_flat")
    (state_of(root) / "risk_snapshot.json").write_text('{"updated_ts": 1762435610.0, "symb')
    out = tmp_path / "out"
    code = once("--state-dir", state_of(root), "--out-dir", out, "--now", NOW, "--strict")
    assert code == 4
    err = capsys.readouterr().err
    assert "risk is invalid" in err
    assert "risk_snapshot.json" in err
    assert files_in(out) == []


def test_without_strict_an_invalid_source_is_reported_not_fatal(
    case: Callable[[str], Path], tmp_path: Path
) -> None:
    root = case("v7_1_flat")
    (state_of(root) / "risk_snapshot.json").write_text('{"updated_ts": 1762435610.0, "symb')
    out = tmp_path / "out"
    assert once("--state-dir", state_of(root), "--out-dir", out, "--now", NOW) == 0
    risk = kpis_at(out)["sources"]["risk"]
    assert risk["status"] == "invalid"
    assert "risk_snapshot.json" in risk["error"]


@pytest.mark.parametrize(
    ("name", "now"),
    [("v7_1_flat", NOW), ("v7_6_iso", "1765290000")],
    ids=["all-ok-positions-fallback", "stale-is-not-fatal"],
)
def test_strict_publishes_when_every_source_is_present(
    name: str, now: str, case: Callable[[str], Path], tmp_path: Path
) -> None:
    """positions.json standing in for positions_state.json, or a stale NAV, pass --strict."""
    root = case(name)
    out = tmp_path / "out"
    assert once("--state-dir", state_of(root), "--out-dir", out, "--now", now, "--strict") == 0
    assert files_in(out) == sorted(OUTPUTS)


def test_strict_does_not_require_a_later_era_source_but_refuses_it_invalid(
    case: Callable[[str], Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A v7.1 desk never writes risk_advanced.json: --strict passes without it (the file's
    status is still published as missing); a torn one is invalid and fatal like any other."""
    root = case("v7_1_flat")
    out = tmp_path / "out"
    assert once("--state-dir", state_of(root), "--out-dir", out, "--now", NOW, "--strict") == 0
    assert kpis_at(out)["sources"]["risk_advanced"]["status"] == "missing"
    assert "sources not ok: none" in capsys.readouterr().out
    (state_of(root) / "risk_advanced.json").write_text('{"var": {"portfolio_var')
    code = once(
        "--state-dir", state_of(root), "--out-dir", tmp_path / "o2", "--now", NOW, "--strict"
    )
    assert code == 4
    assert "risk_advanced is invalid" in capsys.readouterr().err


# --------------------------------------------------------------------------------- paths
def test_fx_and_holdings_default_relative_to_the_state_dir_not_the_cwd(
    case: Callable[[str], Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """<state>/../cache/coingecko_cache.json and <state>/../../config/offexchange_holdings.json."""
    root = case("v7_6_iso")
    monkeypatch.chdir(root / "logs")  # a relative --state-dir; cwd-relative ../cache is wrong
    assert once("--state-dir", "state", "--out-dir", tmp_path / "out", "--now", "1765290000") == 0
    kpis = kpis_at(tmp_path / "out")
    assert kpis["sources"]["fx"]["status"] == "ok"
    assert kpis["sources"]["holdings"]["status"] == "ok"
    assert (kpis["aum"]["usd_zar"], kpis["aum"]["usd_zar_source"]) == (17.12, "fx_cache")
    assert [s["label"] for s in kpis["aum"]["slices"]] == ["Futures", "BTC", "XAUT", "USDC"]


def test_fx_and_holdings_overrides_win_over_the_default_layout(
    case: Callable[[str], Path], tmp_path: Path
) -> None:
    """--fx-path / --holdings-path are read instead of the files in the default layout."""
    root = case("v7_6_iso")
    fx = tmp_path / "elsewhere" / "fx.json"
    holdings = tmp_path / "elsewhere" / "holdings.json"
    fx.parent.mkdir()
    fx.write_text(
        json.dumps({"prices": {"ETH": 3000.0}, "usd_zar": 20.0, "usd_zar_ts": 1765290000.0})
    )
    holdings.write_text(json.dumps({"ETH": {"qty": 1.5, "avg_cost": 2000.0}}))
    out = tmp_path / "out"
    assert (
        once(
            "--state-dir",
            state_of(root),
            "--out-dir",
            out,
            "--now",
            "1765290000",
            "--fx-path",
            fx,
            "--holdings-path",
            holdings,
        )
        == 0
    )
    aum = kpis_at(out)["aum"]
    assert (aum["usd_zar"], aum["usd_zar_source"]) == (20.0, "fx_cache")
    assert [(s["label"], s["usd"], s["zar"], s["pnl_usd"]) for s in aum["slices"]] == [
        ("Futures", 4102.55, 4102.55 * 20.0, None),
        ("ETH", 1.5 * 3000.0, 1.5 * 3000.0 * 20.0, (3000.0 - 2000.0) * 1.5),
    ]


def test_an_override_path_that_does_not_exist_is_missing_not_the_default(
    case: Callable[[str], Path], tmp_path: Path
) -> None:
    root = case("v7_6_iso")
    out = tmp_path / "out"
    assert (
        once(
            "--state-dir",
            state_of(root),
            "--out-dir",
            out,
            "--now",
            "1765290000",
            "--fx-path",
            tmp_path / "none.json",
        )
        == 0
    )
    kpis = kpis_at(out)
    assert kpis["sources"]["fx"]["status"] == "missing"
    assert kpis["aum"]["usd_zar"] is None  # never a hard-coded default


def test_state_dir_from_the_environment(
    case: Callable[[str], Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """KPI_STATE_DIR stands in for --state-dir."""
    root = case("v7_1_flat")
    monkeypatch.setenv("KPI_STATE_DIR", str(state_of(root)))
    assert once("--out-dir", tmp_path / "out", "--now", NOW) == 0
    assert kpis_at(tmp_path / "out")["nav"]["nav_usd"] == 3915.68325628


@pytest.mark.parametrize(("limit", "fresh"), [("30", True), ("20", False)])
def test_config_file_settings_apply(
    limit: str, fresh: bool, case: Callable[[str], Path], tmp_path: Path
) -> None:
    """nav_fresh_s from a TOML config file decides nav.fresh (the NAV is 27.75 s old)."""
    root = case("v7_1_flat")
    config = tmp_path / "kpi.toml"
    config.write_text(f"nav_fresh_s = {limit}\n")
    out = tmp_path / "out"
    assert (
        once("--state-dir", state_of(root), "--out-dir", out, "--now", NOW, "--config", config) == 0
    )
    assert kpis_at(out)["nav"]["fresh"] is fresh


# --------------------------------------------------------------------------------- bytes
def test_same_inputs_and_now_give_identical_bytes(
    case: Callable[[str], Path], tmp_path: Path
) -> None:
    """Two runs, two out dirs, and a re-run over the first: every byte the same."""
    root = case("v7_1_flat")
    for out in ("a", "b", "a"):
        assert once("--state-dir", state_of(root), "--out-dir", tmp_path / out, "--now", NOW) == 0
    for name in OUTPUTS:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_a_different_now_changes_only_the_time_fields(
    case: Callable[[str], Path], tmp_path: Path
) -> None:
    root = case("v7_1_flat")
    assert once("--state-dir", state_of(root), "--out-dir", tmp_path / "a", "--now", NOW) == 0
    assert (
        once("--state-dir", state_of(root), "--out-dir", tmp_path / "b", "--now", "1762435710") == 0
    )
    a, b = kpis_at(tmp_path / "a"), kpis_at(tmp_path / "b")
    assert b["generated_at"] - a["generated_at"] == 10.0
    assert b["nav"]["age_s"] - a["nav"]["age_s"] == pytest.approx(10.0)
    assert a["nav"]["nav_usd"] == b["nav"]["nav_usd"]


def test_out_dir_defaults_to_the_state_dir_and_outputs_are_not_inputs(
    case: Callable[[str], Path],
) -> None:
    """Publishing into the state dir twice gives the same bytes: the outputs are never read."""
    root = case("v7_1_flat")
    st = state_of(root)
    assert once("--state-dir", st, "--now", NOW) == 0
    first = {name: (st / name).read_bytes() for name in OUTPUTS}
    assert once("--state-dir", st, "--now", NOW) == 0
    assert {name: (st / name).read_bytes() for name in OUTPUTS} == first


def test_without_now_the_build_time_is_the_clock(
    case: Callable[[str], Path], tmp_path: Path
) -> None:
    root = case("v7_1_flat")
    before = time.time()
    assert once("--state-dir", state_of(root), "--out-dir", tmp_path / "out") == 0
    generated = kpis_at(tmp_path / "out")["generated_at"]
    assert before <= generated <= time.time()


# ------------------------------------------------------------------ hostile files, real process


def _once_process(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """`hedge-kpi once` as its own process (its exit code and streams, not cli.main's)."""
    exe = Path(sys.executable).parent / "hedge-kpi"
    return subprocess.run(
        [str(exe), "once", *map(str, args)], capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("depth", [100, 300, 1000, 5000, 100_000])
@pytest.mark.parametrize("nan", [False, True], ids=["plain", "nan-token"])
def test_a_deeply_nested_file_is_invalid_and_once_still_publishes(
    case: Callable[[str], Path], tmp_path: Path, depth: int, nan: bool
) -> None:
    """Any nesting depth: the source is invalid with the reason, the rest is published, exit 0
    (and 4 under --strict, as for any invalid source); never a traceback."""
    root = case("v7_1_flat")
    leaf = b"NaN" if nan else b"0"
    deep = b'{"updated_ts":1762435610.0,"x":' + b"[" * depth + leaf + b"]" * depth + b"}"
    (state_of(root) / "risk_snapshot.json").write_bytes(deep)
    out = tmp_path / "out"
    done = _once_process("--state-dir", state_of(root), "--out-dir", out, "--now", NOW)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert "risk=invalid" in done.stdout
    kpis = kpis_at(out)
    assert kpis["sources"]["risk"] == {
        "status": "invalid",
        "age_s": None,
        "error": "risk_snapshot.json: nested deeper than 64 levels",
    }
    assert kpis["nav"]["nav_usd"] is not None  # everything else is still published
    strict = _once_process(
        "--state-dir", state_of(root), "--out-dir", tmp_path / "strict", "--now", NOW, "--strict"
    )
    assert strict.returncode == 4, strict.stderr
    assert "nested deeper than 64 levels" in strict.stderr


def test_lone_surrogates_in_any_input_never_stop_once(
    case: Callable[[str], Path], tmp_path: Path
) -> None:
    """A lone surrogate escape in a value and in a key of every input file: exit 0, both files
    published as valid UTF-8, each source ok with the key paths in its error."""
    root = case("v7_1_flat")
    state = state_of(root)
    inputs = {
        "nav_state": state / "nav_state.json",
        "nav": state / "nav.json",
        "risk": state / "risk_snapshot.json",
        "router": state / "router_health.json",
        "positions": state / "positions_state.json",
        "fx": root / "logs" / "cache" / "coingecko_cache.json",
        "holdings": root / "config" / "offexchange_holdings.json",
    }
    touched = []
    for source, path in inputs.items():
        raw = path.read_bytes().rstrip() if path.exists() else b""
        if raw.endswith(b"}"):
            path.write_bytes(raw[:-1] + rb',"label\udcff":1,"note":"\ud800"}')
            touched.append(source)
    assert len(touched) >= 3
    out = tmp_path / "out"
    done = _once_process("--state-dir", state, "--out-dir", out, "--now", NOW)
    assert done.returncode == 0, done.stderr
    raw = (out / "kpis_v7.json").read_bytes()
    raw.decode("utf-8")  # strict: valid UTF-8 throughout
    sources = json.loads(raw)["sources"]
    for source in touched:
        assert sources[source]["status"] in ("ok", "stale"), (source, sources[source])
        assert sources[source]["error"].endswith(
            r"2 values not valid Unicode, read as missing: label\udcff, note"
        ), (source, sources[source])
