"""Golden files: whole state dirs in the shapes the real system wrote -> the two published files.

Each case under tests/fixtures/golden/<case>/ is a state dir in the real layout
(`logs/state/*.json`, `logs/cache/coingecko_cache.json`, `config/offexchange_holdings.json`),
the build time in now.txt, and the complete expected outputs, worked out by hand from the
contract (derivations in derive_expected.py, which never imports the publisher).

- v7_1_flat: E1 (v7.1): sync-shape nav_state (epoch updated_at, age_s 0.0), nav.json with
  nav_detail + aum.offexchange, E1 risk snapshot with execution-health symbols and the flat
  kpis_v7 (shape A), E1 router_health lists, only positions.json (camelCase hedge-mode rows).
- v7_6_iso: E2 (v7.6): ISO timestamps, nav_state = executor mirror of nav.json (stale),
  writer-synthesised dd_state {state: DRAWDOWN} holding a fraction, nested kpis_v7 (shape B),
  E2 router_health stats shape, positions_state.json {positions: [snake_case]}.
- tidy_plan: the tidy schema of the original patch plan (aum.assets, fx.usd_zar,
  risk.drawdown/router_stats/symbols dict, positions_state items), no nav.json/router file.
- contract_c: the v7.6 contract shape C as risk.kpis_v7 (contributes nothing), dd_frac,
  bare dd_state, router_health aggregation, asset_breakdown AUM, no FX cache, no holdings.

The E1 and E2 dirs also hold the files that are not inputs (the executor's own kpis_v7.json,
execution_health.json, synced_state.json, positions_state_sync.json, positions_ledger.json)
and writers' temp files (`*.<pid>.tmp`, `.tmp_*`): none of them may change the outputs.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from kpi_publisher import cli, schemas
from tests.conftest import FIXTURES, REPO_ROOT, kpi_free_env

GOLDEN = FIXTURES / "golden"
CASES = sorted(p.name for p in GOLDEN.iterdir() if (p / "now.txt").is_file())
OUTPUTS = {
    "kpis_v7.json": "expected_kpis_v7.json",
    "positions_v7.json": "expected_positions_v7.json",
}


def test_there_are_golden_cases_for_each_era() -> None:
    """The four shapes of the real system each have a golden case."""
    assert set(CASES) >= {"v7_1_flat", "v7_6_iso", "tidy_plan", "contract_c"}


def _run(case_dir: Path, out_dir: Path) -> int:
    now = (case_dir / "now.txt").read_text().strip()
    return cli.main(
        [
            "once",
            "--state-dir",
            str(case_dir / "logs" / "state"),
            "--out-dir",
            str(out_dir),
            "--now",
            now,
        ]
    )


def _load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("case", CASES)
def test_once_publishes_the_hand_computed_documents(
    case: str,
    tmp_path: Path,
    copy_fixture: Callable[[Path], Path],
    assert_json_matches: Callable[[Any, Any], None],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`hedge-kpi once` on a real-shaped state dir publishes exactly the expected documents."""
    case_dir = copy_fixture(GOLDEN / case)
    out = tmp_path / "out"
    assert _run(case_dir, out) == cli.ExitCode.OK, capsys.readouterr().err
    for published, expected in OUTPUTS.items():
        assert_json_matches(_load(GOLDEN / case / expected), _load(out / published))


@pytest.mark.parametrize("case", CASES)
def test_golden_outputs_are_schema_valid(
    case: str, tmp_path: Path, copy_fixture: Callable[[Path], Path]
) -> None:
    """What each case publishes validates against the shipped JSON Schemas."""
    case_dir = copy_fixture(GOLDEN / case)
    assert _run(case_dir, tmp_path / "out") == 0
    jsonschema.validate(_load(tmp_path / "out" / "kpis_v7.json"), schemas.load("kpis_v7"))
    jsonschema.validate(_load(tmp_path / "out" / "positions_v7.json"), schemas.load("positions_v7"))


@pytest.mark.parametrize("case", CASES)
def test_expected_files_are_schema_valid(case: str) -> None:
    """The hand-written expectations themselves respect the published schemas."""
    jsonschema.validate(_load(GOLDEN / case / "expected_kpis_v7.json"), schemas.load("kpis_v7"))
    jsonschema.validate(
        _load(GOLDEN / case / "expected_positions_v7.json"), schemas.load("positions_v7")
    )


@pytest.mark.parametrize("case", CASES)
def test_subprocess_once_gives_the_same_bytes_as_in_process(
    case: str, tmp_path: Path, copy_fixture: Callable[[Path], Path]
) -> None:
    """`python -m kpi_publisher once` and cli.main write byte-identical files for the same --now."""
    case_dir = copy_fixture(GOLDEN / case)
    assert _run(case_dir, tmp_path / "in_process") == 0
    now = (case_dir / "now.txt").read_text().strip()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "kpi_publisher",
            "once",
            "--state-dir",
            str(case_dir / "logs" / "state"),
            "--out-dir",
            str(tmp_path / "subprocess"),
            "--now",
            now,
        ],
        cwd=REPO_ROOT,
        env=kpi_free_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("published kpis_v7.json and positions_v7.json")
    for name in OUTPUTS:
        assert (tmp_path / "subprocess" / name).read_bytes() == (
            tmp_path / "in_process" / name
        ).read_bytes()


@pytest.mark.parametrize("case", CASES)
def test_inputs_are_left_untouched(
    case: str, tmp_path: Path, copy_fixture: Callable[[Path], Path]
) -> None:
    """The publisher writes nothing into the state dir when --out-dir points elsewhere."""
    case_dir = copy_fixture(GOLDEN / case)
    before = {p: p.read_bytes() for p in case_dir.rglob("*") if p.is_file()}
    assert _run(case_dir, tmp_path / "out") == 0
    after = {p: p.read_bytes() for p in case_dir.rglob("*") if p.is_file()}
    assert after == before


def test_expected_files_are_what_the_derivation_says() -> None:
    """The checked-in expectations equal derive_expected.py's hand derivations (no drift)."""
    spec = importlib.util.spec_from_file_location("derive_expected", GOLDEN / "derive_expected.py")
    assert spec is not None and spec.loader is not None
    derive = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(derive)
    assert "kpi_publisher" not in (GOLDEN / "derive_expected.py").read_text().split('"""', 2)[2]
    assert sorted(derive.CASES) == CASES
    for name, (build, now) in derive.CASES.items():
        kpis, positions = build()
        assert _load(GOLDEN / name / "expected_kpis_v7.json") == kpis
        assert _load(GOLDEN / name / "expected_positions_v7.json") == positions
        assert float((GOLDEN / name / "now.txt").read_text()) == now


# ------------------------------------------------------------------------------ one bad file
TORN = b'{"updated_ts": 1762435655.0, "summary": {"count": 3, "quality_co'


def _run_case(case_dir: Path, out: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    assert _run(case_dir, out) == 0
    return _load(out / "kpis_v7.json"), _load(out / "positions_v7.json")


@pytest.mark.parametrize(
    ("rel", "source"),
    [
        # the router block comes from kpis_v7, per-symbol rows from risk.symbols[].router
        ("logs/state/router_health.json", "router"),
        ("config/offexchange_holdings.json", "holdings"),  # aum.offexchange is used instead
    ],
)
def test_a_torn_unused_input_changes_only_its_source_entry(
    rel: str,
    source: str,
    tmp_path: Path,
    copy_fixture: Callable[[Path], Path],
    assert_json_matches: Callable[[Any, Any], None],
) -> None:
    """v7_1_flat with one half-written file that feeds no figure: every figure is unchanged,
    and that source alone reads invalid with the file named in its error."""
    case_dir = copy_fixture(GOLDEN / "v7_1_flat")
    (case_dir / rel).write_bytes(TORN)
    kpis, positions = _run_case(case_dir, tmp_path / "out")
    status = kpis["sources"].pop(source)
    assert status["status"] == "invalid"
    assert Path(rel).name in status["error"]
    expected = _load(GOLDEN / "v7_1_flat" / "expected_kpis_v7.json")
    expected["sources"].pop(source)
    assert_json_matches(expected, kpis)
    assert_json_matches(_load(GOLDEN / "v7_1_flat" / "expected_positions_v7.json"), positions)


def test_a_torn_fx_cache_falls_back_through_the_price_chain(
    tmp_path: Path, copy_fixture: Callable[[Path], Path]
) -> None:
    """No FX cache: no rate (ZAR null, never a default) and XAUT is valued at its avg_cost."""
    case_dir = copy_fixture(GOLDEN / "v7_1_flat")
    (case_dir / "logs/cache/coingecko_cache.json").write_bytes(TORN)
    kpis, _ = _run_case(case_dir, tmp_path / "out")
    assert kpis["sources"]["fx"]["status"] == "invalid"
    aum = kpis["aum"]
    assert (aum["usd_zar"], aum["usd_zar_source"], aum["total_zar"]) == (None, None, None)
    assert kpis["nav"]["nav_zar"] is None
    assert {s["label"]: s["zar"] for s in aum["slices"]} == dict.fromkeys(
        ["Futures", "BTC", "XAUT", "USDC"]
    )
    usd = {s["label"]: s["usd"] for s in aum["slices"]}
    assert usd["BTC"] == pytest.approx(0.035 * 103512.5)  # nav_detail.conversions, unaffected
    assert usd["XAUT"] == pytest.approx(0.59 * 3692.7)  # no cache price: avg_cost
    xaut = next(s for s in aum["slices"] if s["label"] == "XAUT")
    assert xaut["pnl_usd"] == 0.0
    assert aum["total_usd"] == pytest.approx(
        3915.68325628 + 0.035 * 103512.5 + 0.59 * 3692.7 + 2098.96
    )


def test_a_torn_positions_state_falls_back_to_positions_json(
    tmp_path: Path,
    copy_fixture: Callable[[Path], Path],
    assert_json_matches: Callable[[Any, Any], None],
) -> None:
    """Rule 7: positions_state.json invalid with no last good content -> positions.json."""
    case_dir = copy_fixture(GOLDEN / "v7_1_flat")
    (case_dir / "logs/state/positions_state.json").write_bytes(b'{"updated_at": "2025-11-06T1')
    kpis, positions = _run_case(case_dir, tmp_path / "out")
    expected = _load(GOLDEN / "v7_1_flat" / "expected_positions_v7.json")
    assert positions["source"]["file"] == "positions.json"
    assert_json_matches(expected["positions"], positions["positions"])
    assert_json_matches(expected["totals"], positions["totals"])
    assert_json_matches(
        _load(GOLDEN / "v7_1_flat" / "expected_kpis_v7.json")["symbols"], kpis["symbols"]
    )


# Where the desk's older dashboard panels look for each figure in kpis_v7.json (the executor's
# old flat payload), and the published field it must equal.
OLD_READER_PATHS = {
    ("atr", "atr_regime"): ("risk", "atr_regime"),
    ("atr", "median_ratio"): ("risk", "atr_ratio"),
    ("drawdown", "dd_pct"): ("risk", "drawdown_pct"),
    ("drawdown", "daily_loss", "pct"): ("risk", "daily_loss_pct"),
    ("router_stats", "maker_fill_ratio"): ("router", "maker_fill_rate"),
    ("router_stats", "fallback_ratio"): ("router", "fallback_ratio"),
    ("router_stats", "slip_q50"): ("router", "slip_q50_bps"),
    ("fee_pnl", "fee_pnl_ratio"): ("fees", "fee_pnl_ratio"),
    ("fee_pnl", "fees"): ("fees", "fees_usd"),
}


def _path(doc: Any, keys: tuple[str, ...]) -> Any:
    for key in keys:
        doc = (doc or {}).get(key)
    return doc


@pytest.mark.parametrize("case", CASES)
def test_the_desks_older_readers_find_every_figure_where_they_look(
    case: str, tmp_path: Path, copy_fixture: Callable[[Path], Path]
) -> None:
    """The desk's older panels read `atr`, `drawdown`, `router_stats` and `fee_pnl` objects
    (the executor's old payload): each shows the figure the contract's block publishes, and
    the per-symbol ATR list names every symbol of the `symbols` map with its ratio and regime."""
    case_dir = copy_fixture(GOLDEN / case)
    assert _run(case_dir, tmp_path / "out") == 0
    kpis = _load(tmp_path / "out" / "kpis_v7.json")
    for old, new in OLD_READER_PATHS.items():
        assert _path(kpis, old) == _path(kpis, new), (old, new)
    assert {
        row["symbol"]: (row["atr_ratio"], row["atr_regime"]) for row in kpis["atr"]["symbols"]
    } == {symbol: (row["atr_ratio"], row["atr_regime"]) for symbol, row in kpis["symbols"].items()}
    if case == "v7_1_flat":  # a case where every one of these figures has a value
        assert all(_path(kpis, old) is not None for old in OLD_READER_PATHS)
