"""The demo executor: a real NAV replay in, every state file the publisher reads out."""

from __future__ import annotations

import itertools
import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import pytest
from structlog.testing import capture_logs

from execution import demo_executor, demo_market, demo_shapes
from kpi_publisher import cli, fs, schemas

NAVS = [p["nav"] for p in demo_market.load_data("nav_log.json")]  # the real series, 720 points
START = 1795600000.0
REPO = Path(__file__).resolve().parents[2]


def ticking(start: float = START, step: float = 2.0):
    """A clock that advances `step` seconds per call (one call per cycle)."""
    times = iter(start + i * step for i in range(10_000))
    return lambda: next(times)


def run_demo(root: Path, era: str, cycles: int, **kw) -> int:
    options = demo_executor.DemoOptions(root=root, interval_s=0.001, era=era, cycles=cycles, **kw)
    return demo_executor.run(options, clock=ticking())


def once(root: Path, cycles: int) -> tuple[dict, dict]:
    """`hedge-kpi once` half a second after the demo's last cycle (clock of `ticking()`)."""
    state = root / "logs" / "state"
    now = START + 2.0 * (cycles - 1) + 0.5
    argv = ["once", "--state-dir", str(state), "--no-fsync", "--now", repr(now)]
    assert cli.main(argv) == cli.ExitCode.OK
    return (
        json.loads((state / "kpis_v7.json").read_bytes()),
        json.loads((state / "positions_v7.json").read_bytes()),
    )


def expected_drawdown_pct(cycles: int) -> float:
    navs = NAVS[:cycles]
    return (max(navs) - navs[-1]) / max(navs) * 100.0


# --- the market model (pure) ----------------------------------------------------------------


def simulate(cycles: int, seed: int = 7, kind: str = "replay") -> list[demo_market.World]:
    rng = random.Random(seed)  # noqa: S311 - a seeded simulation
    source = demo_market.NavSource(kind)
    market = demo_market.MarketSeed.load()
    worlds = [demo_market.initial_world(START, rng, source, market)]
    for i in range(1, cycles):
        worlds.append(demo_market.step(worlds[-1], START + 2.0 * i, rng, source, market))
    return worlds


def test_the_real_book_opens_the_demo():
    """Cycle 0 holds the executor's four real shorts of 2025-11-06 at their real entries."""
    w = simulate(1)[0]
    assert [(p.symbol, p.qty, p.entry_price) for p in w.positions] == [
        ("LINKUSDT", -8.04, 15.067),
        ("LTCUSDT", -1.373, 88.04),
        ("SUIUSDT", -60.4, 1.9951),
        ("WIFUSDT", -281.7, 0.4283),
    ]
    assert w.nav_usd == NAVS[0] == 3893.35405171


def test_positions_open_move_and_close():
    worlds = simulate(40)
    events = [e for w in worlds for e in w.events]
    assert any(e.startswith("open ") for e in events)
    assert any(e.startswith("close ") for e in events)
    assert all(w.positions for w in worlds)  # the book is never empty
    assert all(len(w.positions) <= demo_market.MAX_OPEN for w in worlds)
    # A position held across cycles is re-marked: its PnL changes.
    a, b = worlds[5], worlds[6]
    held = {p.symbol for p in a.positions} & {p.symbol for p in b.positions}
    assert held
    assert all(a.marks[s] != b.marks[s] for s in held)
    # No position outlives the holding limit.
    for w in worlds:
        assert all(w.cycle - p.opened_cycle < demo_market.MAX_HOLD_CYCLES for p in w.positions)


def test_closing_realises_the_pnl_and_charges_fees():
    worlds = simulate(40)
    for before, after in itertools.pairwise(worlds):  # noqa: B007 - `before` is used below
        closed = [e.split()[1] for e in after.events if e.startswith("close ")]
        if closed:
            break
    pnl = sum(p.pnl_usd(after.marks[p.symbol]) for p in before.positions if p.symbol in closed)
    assert after.gross_pnl_usd - before.gross_pnl_usd == pytest.approx(pnl, abs=1e-9)
    assert after.fees_usd > before.fees_usd


def test_drawdown_follows_the_running_peak_of_the_replayed_series():
    for w in simulate(60):
        navs = NAVS[: w.cycle + 1]
        assert w.nav_usd == navs[-1]
        assert w.peak_usd == max(navs)
        assert w.dd_pct == pytest.approx((max(navs) - navs[-1]) / max(navs) * 100.0, rel=1e-12)
    assert simulate(32)[-1].dd_pct == pytest.approx(0.3279, abs=1e-4)


def test_router_stats_and_atr_drift_within_bounds():
    """Every symbol's router numbers and ATR ratio move over time and stay plausible."""
    worlds = simulate(30)
    first, last = worlds[0], worlds[-1]
    for symbol in first.symbols:
        assert first.router[symbol].maker_fill_rate != last.router[symbol].maker_fill_rate
        assert first.router[symbol].slippage_p50_bps != last.router[symbol].slippage_p50_bps
        assert first.atr_ratio[symbol] != last.atr_ratio[symbol]
    for w in worlds:
        for stats in w.router.values():
            assert 0.15 <= stats.maker_fill_rate <= 0.97
            assert 0.01 <= stats.fallback_rate <= 0.75
            assert 0.1 <= stats.slippage_p50_bps <= stats.slippage_p95_bps <= 30.0
        assert all(0.3 <= r <= 3.2 for r in w.atr_ratio.values())


def test_the_random_walk_is_seeded():
    a = [w.nav_usd for w in simulate(20, seed=3, kind="random")]
    b = [w.nav_usd for w in simulate(20, seed=3, kind="random")]
    c = [w.nav_usd for w in simulate(20, seed=4, kind="random")]
    assert a == b
    assert a != c
    assert a[1:] != NAVS[1:20]
    assert all(abs(math.log(x / y)) < 0.01 for x, y in itertools.pairwise(a))


# --- the files, read back by the publisher -------------------------------------------------


@pytest.mark.parametrize("era", ["v7.1", "v7.6"])
def test_a_few_demo_cycles_fill_every_kpi_group(tmp_path, era):
    """4 demo cycles, then `hedge-kpi once`: nav, risk, router, fees, AUM, symbols, positions."""
    assert run_demo(tmp_path, era, cycles=4) == 4
    kpis, positions = once(tmp_path, 4)
    jsonschema.validate(kpis, schemas.load("kpis_v7"))
    jsonschema.validate(positions, schemas.load("positions_v7"))

    assert {n: s["status"] for n, s in kpis["sources"].items()} == {
        **dict.fromkeys(
            ["fx", "holdings", "nav", "nav_state", "positions", "risk", "router"], "ok"
        ),
        # risk_advanced.json is written from v7.6 on, as by the real executor
        "risk_advanced": "missing" if era == "v7.1" else "ok",
    }
    nav = kpis["nav"]
    assert nav["nav_usd"] == NAVS[3] == 3892.36082562
    assert nav["source"] == "nav_state"
    assert nav["peak_usd"] == max(NAVS[:4])
    assert nav["nav_zar"] == pytest.approx(NAVS[3] * kpis["aum"]["usd_zar"], rel=1e-12)
    assert nav["unrealized_pnl_usd"] is not None
    assert nav["realized_pnl_today_usd"] is not None

    risk = kpis["risk"]
    assert risk["drawdown_pct"] == pytest.approx(expected_drawdown_pct(4), rel=1e-9)
    assert risk["daily_loss_pct"] == pytest.approx(expected_drawdown_pct(4), rel=1e-9)
    assert risk["dd_state"] == "normal"
    assert 0.3 <= risk["atr_ratio"] <= 3.2
    assert risk["atr_regime"] in {"quiet", "normal", "hot", "panic"}

    if era == "v7.6":  # a one-day 95 % parametric VaR of the open book, positions independent
        held = {row["symbol"] for row in positions["positions"]}
        cvars = [kpis["symbols"][s]["cvar_pct"] for s in held]
        assert all(c is not None and c > 0 for c in cvars)
        assert risk["cvar_pct"] == max(cvars)
        # (the file holds NAV fractions to 6 decimals: percent to 4)
        assert risk["var_usd"] / nav["nav_usd"] * 100.0 == pytest.approx(risk["var_pct"], rel=1e-3)
        tail = demo_shapes.VAR_Z / demo_shapes.CVAR_FACTOR  # a symbol's VaR per unit of CVaR
        root_sum_sq = math.sqrt(sum(c * c for c in cvars)) * tail
        assert risk["var_pct"] == pytest.approx(root_sum_sq, rel=1e-3)
        assert (risk["var_limit_pct"], risk["var_confidence"]) == (12.0, 0.95)
    else:
        assert (risk["var_pct"], risk["cvar_pct"]) == (None, None)

    router = kpis["router"]
    for key in ("maker_fill_rate", "fallback_ratio"):
        assert 0.0 < router[key] < 1.0
    for key in ("slip_q25_bps", "slip_q50_bps", "slip_q75_bps"):
        assert router[key] > 0.0
    assert router["slip_q25_bps"] < router["slip_q50_bps"] < router["slip_q75_bps"]
    assert router["quality"] in {"good", "ok", "degraded", "poor"}
    assert (
        router["source"]
        == {
            "v7.1": "risk_snapshot.kpis_v7.router_stats",
            "v7.6": "risk_snapshot.router_stats",
        }[era]
    )

    fees = kpis["fees"]
    assert fees["window_days"] == 7.0
    assert fees["fees_usd"] >= 8.4309  # the real 7-day window, plus this run's trades
    assert fees["pnl_usd"] is not None
    assert fees["fee_pnl_ratio"] == pytest.approx(fees["fees_usd"] / abs(fees["pnl_usd"]), rel=1e-4)

    aum = kpis["aum"]
    labels = [s["label"] for s in aum["slices"]]
    assert labels[0] == "Futures"
    assert set(labels) == {"Futures", "BTC", "XAUT", "USDC"}
    assert aum["slices"][0]["usd"] == NAVS[3]
    assert math.fsum(s["usd"] for s in aum["slices"]) == pytest.approx(aum["total_usd"], abs=1e-6)
    btc = next(s for s in aum["slices"] if s["label"] == "BTC")
    assert btc["qty"] == 0.035
    assert aum["usd_zar_source"] == "fx_cache"
    assert aum["total_zar"] == pytest.approx(aum["total_usd"] * aum["usd_zar"], rel=1e-12)
    assert aum["unpriced"] == []

    symbols = kpis["symbols"]
    assert set(symbols) == set(demo_market.MarketSeed.load().marks_usd)
    for entry in symbols.values():
        assert entry["atr_ratio"] is not None
        assert entry["atr_regime"] is not None
        assert entry["dd_state"] is not None
        assert entry["dd_today_pct"] <= 0.0

    rows = positions["positions"]
    assert positions["source"]["file"] == "positions_state.json"
    assert len(rows) == positions["totals"]["count"] >= 1
    for row in rows:
        assert row["notional"] > 0
        assert row["notional"] == pytest.approx(abs(row["qty"]) * row["mark_price"], rel=1e-9)
        assert row["pnl"] == pytest.approx(
            (row["mark_price"] - row["entry_price"]) * row["qty"], abs=1e-6
        )
        assert row["notional_fmt"] not in ("–", "0.00")
        assert row["pnl_fmt"] != "–"
        assert row["atr_ratio"] == symbols[row["symbol"]]["atr_ratio"]


@pytest.mark.parametrize(("era", "dd_state"), [("v7.1", "cautious"), ("v7.6", "drawdown")])
def test_published_drawdown_is_the_replayed_drawdown(tmp_path, era, dd_state):
    """32 cycles reach the series' 0.33 % dip: percent in v7.1, fractions in v7.6, same result."""
    run_demo(tmp_path, era, cycles=32)
    risk_doc = json.loads((tmp_path / "logs/state/risk_snapshot.json").read_bytes())
    if era == "v7.1":
        assert risk_doc["dd_state"]["drawdown"]["dd_pct"] == pytest.approx(
            expected_drawdown_pct(32)
        )
    else:
        assert risk_doc["dd_frac"] == pytest.approx(expected_drawdown_pct(32) / 100.0)
        assert risk_doc["dd_state"] == {
            "state": "DRAWDOWN",
            "drawdown": {"dd_pct": risk_doc["dd_frac"]},
        }
    kpis, _ = once(tmp_path, 32)
    assert kpis["risk"]["drawdown_pct"] == pytest.approx(0.3279, abs=1e-4)
    assert kpis["risk"]["drawdown_pct"] == pytest.approx(expected_drawdown_pct(32), rel=1e-9)
    assert kpis["risk"]["drawdown_abs_usd"] == pytest.approx(max(NAVS[:32]) - NAVS[31], abs=1e-6)
    assert kpis["risk"]["dd_state"] == dd_state


def test_era_shapes_follow_the_real_system(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    run_demo(old, "v7.1", cycles=2)
    run_demo(new, "v7.6", cycles=2)

    def load(root: Path, name: str):
        return json.loads((root / "logs/state" / name).read_bytes())

    assert isinstance(load(old, "nav.json")["updated_ts"], float)
    assert load(new, "nav.json")["updated_ts"].endswith("+00:00")
    old_router, new_router = load(old, "router_health.json"), load(new, "router_health.json")
    assert (
        old_router["symbols"] is old_router["symbols"]
        or old_router["symbols"] == old_router["per_symbol"]
    )
    assert {"maker_fill_rate", "fallback_rate", "slippage_p50", "slippage_p95"} <= set(
        old_router["symbols"][0]
    )
    assert isinstance(new_router["router_health"]["per_symbol"], dict)
    assert all(
        "maker_fill_rate" not in v for v in new_router["router_health"]["per_symbol"].values()
    )
    assert isinstance(new_router["updated_ts"], str)
    assert set(load(old, "positions.json")) == {"rows", "updated"}
    assert "positionSide" in load(old, "positions.json")["rows"][0]
    assert "items" in load(old, "positions_state.json")
    new_positions = load(new, "positions_state.json")
    assert new_positions["updated_at"] == new_positions["updated_ts"]
    assert "entry_price" in new_positions["positions"][0]
    nav_state = load(old, "nav_state.json")
    nav_log = json.loads((old / "logs/nav_log.json").read_bytes())
    assert nav_state["updated_at"] == nav_log[-1]["t"]  # the NAV's own time, not the write's
    assert nav_state["age_s"] == round(nav_state["written_at"] - nav_log[-1]["t"], 3)
    assert 0.2 <= nav_state["age_s"] <= 1.5  # observed early in the cycle, written at its end
    assert nav_state["aum"]["assets"][0]["asset"] == "Futures"
    fx = json.loads((old / "logs/cache/coingecko_cache.json").read_bytes())
    assert set(fx["prices"]) == {"BTC", "ETH", "USDT", "XAUT", "USDC"}
    assert "usd_zar_source" not in fx
    assert (
        json.loads((new / "logs/cache/coingecko_cache.json").read_bytes())["usd_zar_source"]
        == "api"
    )
    assert (old / "config/offexchange_holdings.json").read_bytes() == demo_market.data_bytes(
        "offexchange_holdings.json"
    )
    assert len(json.loads((old / "logs/nav_log.json").read_bytes())) == 2


@pytest.mark.parametrize(
    ("era", "renames"),
    [
        (
            "v7.1",
            {
                "nav.json": "nav.tmp",
                "risk_snapshot.json": "risk_snapshot.tmp",
                "router_health.json": f"router_health.json.{os.getpid()}.tmp",
            },
        ),
        (
            "v7.6",
            {"nav.json": ".tmp_", "risk_snapshot.json": ".tmp_", "router_health.json": ".tmp_"},
        ),
    ],
)
def test_state_files_are_renamed_into_place_under_the_real_temp_names(
    tmp_path, monkeypatch, era, renames
):
    seen: list[tuple[str, str]] = []
    real_replace = os.replace

    def recording_replace(src, dst):
        seen.append((Path(src).name, Path(dst).name))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", recording_replace)
    run_demo(tmp_path, era, cycles=2)
    by_target = {dst: src for src, dst in seen}
    for target, temp in renames.items():
        assert by_target[target].startswith(temp)
    assert by_target["nav_state.json"].startswith(".nav_state.json.")  # the package's writer
    assert by_target["positions_state.json"].startswith(".positions_state.json.")
    assert all(fs.is_temp_name(src) for src, _ in seen)  # every temp name is one the watcher skips
    in_place = {"positions.json", "coingecko_cache.json", "nav_log.json", "peak_state.json"}
    assert not in_place & set(by_target)
    leftovers = [p for p in tmp_path.rglob("*") if p.is_file() and fs.is_temp_name(p.name)]
    assert leftovers == []


def test_in_place_files_keep_their_inode_renamed_files_do_not(tmp_path):
    run_demo(tmp_path, "v7.1", cycles=1)
    state = tmp_path / "logs/state"
    before = {
        n: (state / n).stat().st_ino for n in ("positions.json", "nav.json", "nav_state.json")
    }
    run_demo(tmp_path, "v7.1", cycles=1)
    after = {n: (state / n).stat().st_ino for n in before}
    assert after["positions.json"] == before["positions.json"]
    assert after["nav.json"] != before["nav.json"]
    assert after["nav_state.json"] != before["nav_state.json"]


def test_an_existing_holdings_config_is_kept_and_used(tmp_path):
    config = tmp_path / "config"
    config.mkdir()
    (config / "offexchange_holdings.json").write_text('{"XAUT": {"qty": 2.0, "avg_cost": 3000}}')
    run_demo(tmp_path, "v7.1", cycles=1)
    assert json.loads((config / "offexchange_holdings.json").read_text()) == {
        "XAUT": {"qty": 2.0, "avg_cost": 3000}
    }
    kpis, _ = once(tmp_path, 1)
    assert [s["label"] for s in kpis["aum"]["slices"]] == ["Futures", "XAUT"]
    assert kpis["aum"]["slices"][1]["usd"] == pytest.approx(2.0 * 4021.84, rel=1e-12)


def test_each_cycle_logs_one_event_with_the_replayed_nav(tmp_path):
    with capture_logs() as logs:
        run_demo(tmp_path, "v7.6", cycles=3)
    cycles = [e for e in logs if e["event"] == "demo_cycle"]
    assert [e["cycle"] for e in cycles] == [0, 1, 2]
    assert [e["nav_usd"] for e in cycles] == [round(x, 2) for x in NAVS[:3]]
    assert all(e["failed"] == [] for e in cycles)
    assert [e["cycles"] for e in logs if e["event"] == "demo_stopped"] == [3]


def test_a_write_failure_is_logged_and_the_loop_goes_on(tmp_path, monkeypatch):
    real = demo_executor.apply_write

    def flaky(root, item, *, fsync=False):
        if item.path.endswith("router_health.json"):
            raise PermissionError(13, "Permission denied")
        real(root, item, fsync=fsync)

    monkeypatch.setattr(demo_executor, "apply_write", flaky)
    with capture_logs() as logs:
        assert run_demo(tmp_path, "v7.1", cycles=3) == 3
    failures = [e for e in logs if e["event"] == "write_failed"]
    assert [Path(e["file"]).name for e in failures] == ["router_health.json", "router_health.json"]
    assert failures[0]["reason"] == "Permission denied"
    assert (tmp_path / "logs/state/nav_state.json").exists()


# --- the command line and signals ---------------------------------------------------------


def test_cli_rejects_bad_options(tmp_path, capsys):
    assert cli.main(["demo-executor", "--root", str(tmp_path), "--era", "v9"]) == cli.ExitCode.USAGE
    assert demo_executor.main(["--root", str(tmp_path), "--interval", "0"]) == cli.ExitCode.USAGE
    assert demo_executor.main(["--root", str(tmp_path), "--cycles", "0"]) == cli.ExitCode.USAGE
    assert (
        demo_executor.main(["--root", str(tmp_path), "--nav-source", "csv"]) == cli.ExitCode.USAGE
    )
    assert "invalid choice: 'v9'" in capsys.readouterr().err
    assert not (tmp_path / "logs").exists()


def test_hedge_kpi_demo_executor_runs_as_a_subcommand(tmp_path):
    argv = [sys.executable, "-m", "kpi_publisher", "demo-executor", "--root", str(tmp_path)]
    argv += ["--cycles", "2", "--interval", "0.01", "--era", "v7.6", "--nav-source", "random"]
    done = subprocess.run(
        [*argv, "--log-format", "json"], capture_output=True, timeout=60, cwd=REPO
    )
    assert done.returncode == 0, done.stderr.decode()
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert [e["cycle"] for e in events if e["event"] == "demo_cycle"] == [0, 1]
    assert (tmp_path / "logs/state/nav_state.json").exists()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.timeout(60)
def test_a_stop_signal_ends_the_loop_at_once(tmp_path, signum):
    """Interval 30 s: the signal must cut the wait short, and the exit code is 0."""
    argv = [
        sys.executable,
        "-m",
        "execution.demo_executor",
        "--root",
        str(tmp_path),
        "--interval",
        "30",
    ]
    proc = subprocess.Popen(
        [*argv, "--log-format", "json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO
    )
    try:
        nav_state = tmp_path / "logs/state/nav_state.json"
        deadline = time.monotonic() + 30
        while not nav_state.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
        assert nav_state.exists(), proc.stderr.read().decode() if proc.poll() is not None else ""
        sent = time.monotonic()
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=10)
        assert time.monotonic() - sent < 5.0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err.decode()
    events = [json.loads(line) for line in out.splitlines()]
    assert events[-1]["event"] == "demo_stopped"
    assert events[-1]["cycles"] == 1
    assert [p for p in tmp_path.rglob("*") if fs.is_temp_name(p.name)] == []


@pytest.mark.parametrize(
    ("holding", "usd"),
    [({"qty": "2,098.96", "avg_cost": 1}, 2098.96), ({"qty": 2098.96, "avg_cost": "n/a"}, 2098.96)],
    ids=["grouped-qty", "cost-not-a-number"],
)
def test_a_holdings_config_the_publisher_reads_never_stops_the_demo(tmp_path, holding, usd):
    """A holdings config the publisher reads ("2,098.96" is a number to it, "n/a" none) made
    the demo executor raise ValueError and write no state at all. It runs; the holding is
    valued as the publisher values the same config (USDC from the demo's price cache when its
    cost is no number)."""
    config = tmp_path / "config" / "offexchange_holdings.json"
    config.parent.mkdir(parents=True)
    config.write_text(json.dumps({"USDC": holding}))
    assert run_demo(tmp_path, "v7.6", cycles=1) == 1
    kpis, _ = once(tmp_path, 1)
    slices = {s["label"]: s["usd"] for s in kpis["aum"]["slices"]}
    assert slices["USDC"] == pytest.approx(usd)
