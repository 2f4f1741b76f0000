"""execution.state_publish: the in-process KPI build is byte-for-byte what the publisher writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from execution import demo_executor
from execution.state_publish import (
    build_kpis_v7,
    build_positions_v7,
    render_state,
    write_state_json,
)
from kpi_publisher import cli
from kpi_publisher.config import Settings
from kpi_publisher.daemon import Daemon
from kpi_publisher.render import render

BUILD_TS = 1795600000.25  # a fixed build time, a few seconds after the demo's files


class NoBatches:
    """The daemon's watcher seam; these tests drive `run_pass` themselves."""

    debounce_s = 0.05
    rescan_s = 2.0

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def next_batch(self, timeout_s: float) -> frozenset[Path]:
        return frozenset()

    def interrupt(self) -> None: ...

    def set_paths(self, paths) -> None: ...


def demo_tree(root: Path, era: str) -> Path:
    """A state tree written by the demo executor (the real NAV series replayed)."""
    clock = iter(BUILD_TS - 10.0 + i for i in range(100))
    demo_executor.run(
        demo_executor.DemoOptions(root=root, interval_s=0.001, era=era, cycles=3),
        clock=lambda: next(clock),
    )
    return root


def read_inputs(root: Path) -> dict:
    state, cache, config = root / "logs/state", root / "logs/cache", root / "config"

    def load(path: Path):
        return json.loads(path.read_bytes())

    return {
        "nav_snapshot": load(state / "nav_state.json"),
        "risk_snapshot": load(state / "risk_snapshot.json"),
        "router_state": load(state / "router_health.json"),
        "positions": load(state / "positions_state.json"),
        "nav": load(state / "nav.json"),
        "fx": load(cache / "coingecko_cache.json"),
        "holdings": load(config / "offexchange_holdings.json"),
        "risk_advanced": load(state / "risk_advanced.json")
        if (state / "risk_advanced.json").exists()
        else None,
    }


def in_process(inputs: dict) -> dict:
    return build_kpis_v7(
        BUILD_TS,
        inputs["nav_snapshot"],
        inputs["risk_snapshot"],
        inputs["router_state"],
        inputs["positions"],
        nav=inputs["nav"],
        fx=inputs["fx"],
        holdings=inputs["holdings"],
        risk_advanced=inputs["risk_advanced"],
    )


@pytest.mark.parametrize("era", ["v7.1", "v7.6"])
def test_daemon_publishes_exactly_the_in_process_payload(tmp_path, era):
    """Same inputs, same build time: the daemon's kpis_v7.json bytes == render(build_kpis_v7)."""
    root = demo_tree(tmp_path, era)
    settings = Settings(state_dir=root / "logs/state", out_dir=tmp_path / "out", fsync=False)
    daemon = Daemon(settings, batches=NoBatches(), clock=lambda: BUILD_TS)
    settings.publish_dir.mkdir()
    assert daemon.run_pass("start").published
    published = (tmp_path / "out" / "kpis_v7.json").read_bytes()

    kpis = in_process(read_inputs(root))
    assert render(kpis) == published
    assert kpis["generated_at"] == BUILD_TS
    assert kpis["nav"]["nav_usd"] == 3892.71168962  # the third point of the real NAV series
    # every source the demo writes is ok; risk_advanced.json is written from v7.6 on
    assert {n: s["status"] for n, s in kpis["sources"].items()} == {
        **dict.fromkeys(
            ["fx", "holdings", "nav", "nav_state", "positions", "risk", "router"], "ok"
        ),
        "risk_advanced": "missing" if era == "v7.1" else "ok",
    }


def test_once_with_now_publishes_the_same_bytes(tmp_path):
    """`hedge-kpi once --now T` and build_kpis_v7(T, ...) agree too."""
    root = demo_tree(tmp_path, "v7.1")
    state = root / "logs/state"
    argv = ["once", "--state-dir", str(state), "--now", repr(BUILD_TS), "--no-fsync"]
    assert cli.main(argv) == cli.ExitCode.OK
    assert (state / "kpis_v7.json").read_bytes() == render(in_process(read_inputs(root)))


def test_positions_v7_in_process_matches_the_published_rows(tmp_path):
    root = demo_tree(tmp_path, "v7.6")
    state = root / "logs/state"
    assert cli.main(["once", "--state-dir", str(state), "--now", repr(BUILD_TS)]) == 0
    published = json.loads((state / "positions_v7.json").read_bytes())
    inputs = read_inputs(root)
    ours = build_positions_v7(
        BUILD_TS,
        inputs["positions"],
        inputs["risk_snapshot"],
        nav_snapshot=inputs["nav_snapshot"],
        nav=inputs["nav"],
    )
    assert ours["positions"] == published["positions"]
    assert ours["totals"] == published["totals"]
    assert ours["totals"]["count"] == 4
    nav_usd = build_kpis_v7(BUILD_TS, inputs["nav_snapshot"], None, None, nav=inputs["nav"])
    assert ours["totals"]["gross_exposure_pct"] == pytest.approx(
        ours["totals"]["gross_notional_usd"] / nav_usd["nav"]["nav_usd"] * 100
    )


def test_no_inputs_means_every_source_missing_and_no_made_up_numbers():
    kpis = build_kpis_v7(BUILD_TS, None, None, None)
    assert {name: s["status"] for name, s in kpis["sources"].items()} == dict.fromkeys(
        ["fx", "holdings", "nav", "nav_state", "positions", "risk", "router", "risk_advanced"],
        "missing",
    )
    assert kpis["nav"]["nav_usd"] is None
    assert kpis["router"]["quality"] is None  # never "good" for no data
    assert kpis["aum"]["usd_zar"] is None  # never a hard-coded rate


def test_write_state_json_replaces_the_file_whole(tmp_path):
    target = tmp_path / "risk_snapshot.json"
    write_state_json(target, {"b": 1, "a": float("nan")})
    assert target.read_bytes() == b'{"a":null,"b":1}'
    assert render_state({"b": 1, "a": None}) == target.read_bytes()
    write_state_json(target, {"updated_ts": 2.0})
    assert json.loads(target.read_bytes()) == {"updated_ts": 2.0}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["risk_snapshot.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path):
    target = tmp_path / "nav_state.json"
    write_state_json(target, {"nav_usd": 1000.0})
    with pytest.raises(TypeError):
        write_state_json(target, {"nav_usd": object()})
    assert json.loads(target.read_bytes()) == {"nav_usd": 1000.0}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nav_state.json"]
