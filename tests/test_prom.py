"""kpis.prom: Prometheus text exposition of the published KPIs (issue 8).

The output must parse with prometheus_client's own text parser, carry the expected families
and labels, omit missing values (never export them as 0), be replaced atomically (a reader
only ever sees a whole file; temp names are invisible to the textfile collector's `*.prom`),
and the loopback /metrics endpoint must serve the same series.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from kpi_publisher import cli, pipeline, prom
from kpi_publisher.config import resolve
from kpi_publisher.metrics_server import MetricsServer, MetricsUnavailable
from kpi_publisher.pipeline import Outputs
from kpi_publisher.prom import PublisherHealth, render_prom
from kpi_publisher.sources import SourceReader

REPO = Path(__file__).resolve().parents[1]
T = 1_762_435_680.0  # the real FX cache's time (2025-11-06), state files stamped here
NOW = T + 20.0
UPSTREAM_FX = Path("/work/shared/upstream_data/54b8fb93/logs/cache/coingecko_cache.json")
FX_CACHE = {  # the real coingecko_cache.json of 2025-11-06 (upstream_data/54b8fb93)
    "prices": {"BTC": 103488.0, "ETH": 3392.68, "USDT": 0.999672, "XAUT": 4021.84},
    "prices_ts": 1762435674.7461176,
    "usd_zar": 17.34,
    "usd_zar_ts": 1762435674.7939074,
}

FULL_STATE: dict[str, Any] = {
    "nav_state.json": {
        "nav_usd": 2418.67,
        "updated_at": T,
        "peak_equity": 2500.0,
        "unrealized_pnl": 0.0,
        "aum": {
            "futures": 2418.67,
            "assets": [{"asset": "BTC", "qty": 0.01, "usd": 1034.88, "pnl": 12.0}],
        },
    },
    "risk_snapshot.json": {
        "updated_at": T,
        "drawdown": {"dd_pct": 3.25, "dd_abs": 81.33, "daily_loss": {"pct": 0.0}},
        "dd_state": "Cautious",
        "atr": {"median_ratio": 1.1, "atr_regime": "normal"},
        "router_stats": {
            "maker_fill_rate": 0.5,
            "fallback_ratio": 0.0,
            "slip_q25_bps": 1.0,
            "slip_q50_bps": 2.0,
            "slip_q75_bps": 3.5,
            "quality": "ok",
        },
        "fee_pnl": {"fee_pnl_ratio": 0.2, "fees": 4.0, "pnl": 20.0, "window_days": 7},
        "symbols": [
            {"symbol": "BTCUSDT", "atr_ratio": 1.2, "dd_today_pct": 0.5},
            {"symbol": "ETHUSDT", "atr_ratio": 0.9, "dd_today_pct": 0.0},
        ],
    },
    "positions_state.json": {
        "updated_at": T,
        "rows": [
            {
                "symbol": "BTCUSDT",
                "positionSide": "LONG",
                "positionAmt": "0.01",
                "entryPrice": "100000",
                "markPrice": "103488",
            },
            # no mark price and no stated PnL: the PnL is missing, the notional uses entry
            {
                "symbol": "ETHUSDT",
                "positionSide": "SHORT",
                "positionAmt": "0.5",
                "entryPrice": 3400,
            },
        ],
    },
}


def write_state(root: Path, files: dict[str, Any], fx: dict[str, Any] | None = None) -> Path:
    """A logs/state dir (and logs/cache/coingecko_cache.json when `fx`) under `root`."""
    state = root / "logs" / "state"
    state.mkdir(parents=True)
    for name, doc in files.items():
        (state / name).write_text(json.dumps(doc))
    if fx is not None:
        cache = root / "logs" / "cache"
        cache.mkdir(parents=True)
        (cache / "coingecko_cache.json").write_text(json.dumps(fx))
    return state


def build(state: Path, now: float = NOW) -> Outputs:
    settings = resolve({"state_dir": state}, environ={})
    return pipeline.build(SourceReader(settings).read_all(), now, settings)


def series(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of an exposition, keyed by (name, labels); fails on a repeated series."""
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in out, f"duplicate series {key}"
            out[key] = sample.value
    return out


def value(parsed: dict[Any, float], name: str, **labels: str) -> float | None:
    """The value of the one series `name` whose labels include `labels`; None when absent."""
    hits = [v for (n, ls), v in parsed.items() if n == name and set(labels.items()) <= ls]
    assert len(hits) <= 1, f"{name}{labels} matches {len(hits)} series"
    return hits[0] if hits else None


def names(text: str) -> set[str]:
    return {f.name for f in text_string_to_metric_families(text)}


@pytest.fixture
def full(tmp_path: Path) -> Outputs:
    return build(write_state(tmp_path, FULL_STATE, FX_CACHE))


HEALTH = PublisherHealth(
    publishes_total=41,
    last_duration_s=0.0125,
    last_publish_ts=NOW + 0.5,
    errors_by_kind={"publish": 2},
)


# -- content -----------------------------------------------------------------------------------


def test_real_fx_cache_matches_the_upstream_file():
    """The FX cache above is the real one (skip where the shared data is not mounted)."""
    if not UPSTREAM_FX.exists():
        pytest.skip(f"{UPSTREAM_FX} not present on this machine")
    assert json.loads(UPSTREAM_FX.read_text()) == FX_CACHE


def test_full_state_parses_with_the_expected_families_and_labels(full: Outputs):
    """Every documented family parses with prometheus_client; every series has host/account."""
    text = render_prom(full, host="desk-a", account="main", health=HEALTH).decode()
    got = names(text)
    # prometheus_client reports counters by their name without `_total`
    expected = {
        "hedge_kpi_generated_timestamp_seconds",
        "hedge_kpi_nav_usd",
        "hedge_kpi_nav_zar",
        "hedge_kpi_nav_age_seconds",
        "hedge_kpi_nav_fresh",
        "hedge_kpi_drawdown_pct",
        "hedge_kpi_atr_ratio",
        "hedge_kpi_router_maker_fill_ratio",
        "hedge_kpi_router_fallback_ratio",
        "hedge_kpi_router_slippage_bps",
        "hedge_kpi_fee_pnl_ratio",
        "hedge_kpi_aum_slice_usd",
        "hedge_kpi_symbol_atr_ratio",
        "hedge_kpi_symbol_dd_today_pct",
        "hedge_kpi_position_notional_usd",
        "hedge_kpi_position_pnl_usd",
        "hedge_kpi_source_up",
        "hedge_kpi_source_status",
        "hedge_kpi_source_age_seconds",
        "hedge_kpi_publishes",
        "hedge_kpi_last_publish_timestamp_seconds",
        "hedge_kpi_last_publish_duration_seconds",
        "hedge_kpi_publish_errors",
    }
    assert expected <= got
    types = {f.name: f.type for f in text_string_to_metric_families(text)}
    assert types["hedge_kpi_publishes"] == "counter"
    assert types["hedge_kpi_publish_errors"] == "counter"
    assert types["hedge_kpi_nav_usd"] == "gauge"
    extra = {  # family name prefix -> its labels beyond host and account
        "hedge_kpi_aum_slice_": {"asset"},
        "hedge_kpi_symbol_": {"symbol"},
        "hedge_kpi_position_": {"symbol", "side"},
        "hedge_kpi_source_status": {"source", "status"},
        "hedge_kpi_source_": {"source"},
        "hedge_kpi_publish_errors": {"kind"},
        "hedge_kpi_router_slippage_bps": {"quartile"},
        "hedge_kpi_router_quality": {"quality"},
        "hedge_kpi_dd_state": {"state"},
        "hedge_kpi_atr_regime": {"regime"},
    }
    for family in text_string_to_metric_families(text):
        assert family.documentation, f"{family.name} has no HELP"
        own = next((v for k, v in extra.items() if family.name.startswith(k)), set())
        for sample in family.samples:
            assert sample.labels["host"] == "desk-a"
            assert sample.labels["account"] == "main"
            assert set(sample.labels) == {"host", "account"} | own, family.name
    assert all(line.startswith(("# HELP ", "# TYPE ", "hedge_kpi_")) for line in text.splitlines())
    assert text.endswith("\n")


def test_values_are_the_published_values(full: Outputs):
    """Each series carries the value the JSON output publishes, unit for unit."""
    parsed = series(render_prom(full, host="a", account="x", health=HEALTH).decode())
    kpis, pos = full.kpis, full.positions
    assert value(parsed, "hedge_kpi_nav_usd") == 2418.67
    assert value(parsed, "hedge_kpi_nav_zar") == kpis["nav"]["nav_zar"] == 2418.67 * 17.34
    assert value(parsed, "hedge_kpi_nav_age_seconds") == 20.0
    assert value(parsed, "hedge_kpi_nav_fresh") == 1.0
    assert value(parsed, "hedge_kpi_usd_zar_rate") == 17.34
    assert value(parsed, "hedge_kpi_drawdown_pct") == 3.25
    assert value(parsed, "hedge_kpi_daily_loss_pct") == 0.0
    assert value(parsed, "hedge_kpi_dd_state", state="cautious") == 1.0
    assert value(parsed, "hedge_kpi_atr_regime", regime="normal") == 1.0
    assert value(parsed, "hedge_kpi_atr_ratio") == 1.1
    assert value(parsed, "hedge_kpi_router_maker_fill_ratio") == 0.5
    assert value(parsed, "hedge_kpi_router_fallback_ratio") == 0.0
    assert value(parsed, "hedge_kpi_router_slippage_bps", quartile="q25") == 1.0
    assert value(parsed, "hedge_kpi_router_slippage_bps", quartile="q50") == 2.0
    assert value(parsed, "hedge_kpi_router_slippage_bps", quartile="q75") == 3.5
    assert value(parsed, "hedge_kpi_fee_pnl_ratio") == 0.2
    assert value(parsed, "hedge_kpi_fees_usd") == 4.0
    assert value(parsed, "hedge_kpi_fees_window_seconds") == 7 * 86400.0  # base unit seconds
    assert value(parsed, "hedge_kpi_aum_total_usd") == kpis["aum"]["total_usd"]
    for slice_ in kpis["aum"]["slices"]:
        assert value(parsed, "hedge_kpi_aum_slice_usd", asset=slice_["label"]) == slice_["usd"]
        assert value(parsed, "hedge_kpi_aum_slice_zar", asset=slice_["label"]) == slice_["zar"]
    assert value(parsed, "hedge_kpi_symbol_atr_ratio", symbol="BTCUSDT") == 1.2
    assert value(parsed, "hedge_kpi_symbol_dd_today_pct", symbol="ETHUSDT") == 0.0
    for row in pos["positions"]:
        labels = {"symbol": row["symbol"], "side": row["side"]}
        assert value(parsed, "hedge_kpi_position_notional_usd", **labels) == row["notional"]
        assert value(parsed, "hedge_kpi_position_qty", **labels) == row["qty"]
    assert value(parsed, "hedge_kpi_position_notional_usd", symbol="ETHUSDT") == 1700.0
    assert value(parsed, "hedge_kpi_positions_open") == 2.0
    assert (
        value(parsed, "hedge_kpi_positions_net_notional_usd") == pos["totals"]["net_notional_usd"]
    )
    assert value(parsed, "hedge_kpi_generated_timestamp_seconds") == NOW
    assert value(parsed, "hedge_kpi_publishes_total") == 41.0
    assert value(parsed, "hedge_kpi_last_publish_timestamp_seconds") == NOW + 0.5
    assert value(parsed, "hedge_kpi_last_publish_duration_seconds") == 0.0125
    assert value(parsed, "hedge_kpi_publish_errors_total", kind="publish") == 2.0
    # kinds that never happened are exported as a real count of 0, so increase() sees the first
    assert value(parsed, "hedge_kpi_publish_errors_total", kind="build") == 0.0


def test_source_status_is_one_hot_and_missing_ages_are_omitted(full: Outputs):
    """One status per source is 1; a source without an age has no age series at all."""
    parsed = series(render_prom(full, host="a", account="x", health=None).decode())
    for source, entry in full.kpis["sources"].items():
        statuses = {
            s: value(parsed, "hedge_kpi_source_status", source=source, status=s)
            for s in prom.SOURCE_STATUSES
        }
        assert statuses == {s: float(s == entry["status"]) for s in prom.SOURCE_STATUSES}
        up = value(parsed, "hedge_kpi_source_up", source=source)
        assert up == float(entry["status"] == "ok")
        assert value(parsed, "hedge_kpi_source_age_seconds", source=source) == entry["age_s"]
    assert full.kpis["sources"]["fx"]["status"] == "ok"
    assert full.kpis["sources"]["nav"]["status"] == "missing"
    assert value(parsed, "hedge_kpi_source_age_seconds", source="nav") is None


def test_missing_values_are_omitted_never_zero(tmp_path: Path):
    """No FX rate, no router data, no PnL, no NAV: those series are absent, not 0."""
    state = write_state(
        tmp_path,
        {
            "risk_snapshot.json": {"updated_at": T, "drawdown": {"dd_pct": 0.0}},
            "positions_state.json": {
                "rows": [{"symbol": "SOLUSDT", "side": "LONG", "qty": 10, "entry_price": 150}]
            },
        },
    )
    outputs = build(state)
    assert outputs.kpis["nav"]["nav_usd"] is None
    text = render_prom(outputs, host="a", account="x", health=None).decode()
    parsed = series(text)
    absent = {
        "hedge_kpi_nav_usd",
        "hedge_kpi_nav_zar",
        "hedge_kpi_nav_age_seconds",
        "hedge_kpi_usd_zar_rate",
        "hedge_kpi_atr_ratio",
        "hedge_kpi_dd_state",
        "hedge_kpi_router_maker_fill_ratio",
        "hedge_kpi_router_slippage_bps",
        "hedge_kpi_fee_pnl_ratio",
        "hedge_kpi_position_pnl_usd",
        "hedge_kpi_positions_pnl_usd",
        "hedge_kpi_publishes",
        "hedge_kpi_publish_errors",
    }
    assert not absent & names(text)
    # and no HELP/TYPE lines either for a family without samples
    assert "hedge_kpi_nav_usd " not in text
    # zero is a value: a 0.0 drawdown is exported as 0
    assert value(parsed, "hedge_kpi_drawdown_pct") == 0.0
    # NAV without a value is not fresh: a real boolean, exported
    assert value(parsed, "hedge_kpi_nav_fresh") == 0.0
    assert value(parsed, "hedge_kpi_position_notional_usd", symbol="SOLUSDT") == 1500.0
    assert value(parsed, "hedge_kpi_source_age_seconds", source="positions") is None


def test_nulls_and_non_numbers_in_the_documents_export_nothing():
    """Pure rule on a literal document: null, bool, NaN, text are missing; 0 stays."""
    kpis = {
        "generated_at": NOW,
        "nav": {"nav_usd": None, "nav_zar": float("nan"), "age_s": True, "fresh": None},
        "risk": {"drawdown_pct": 0.0, "atr_ratio": "n/a", "dd_state": None},
        "router": {"maker_fill_rate": float("inf")},
        "sources": {"nav": {"status": "missing", "age_s": None, "error": None}},
    }
    parsed = series(render_prom(Outputs(kpis, {}), host="a", account="b", health=None).decode())
    assert {n for n, _ in parsed} == {
        "hedge_kpi_generated_timestamp_seconds",
        "hedge_kpi_drawdown_pct",
        "hedge_kpi_source_up",
        "hedge_kpi_source_status",
    }
    assert value(parsed, "hedge_kpi_drawdown_pct") == 0.0


def test_duplicate_rows_sum_into_one_series():
    """Two input rows for one (symbol, side) or one asset never make a duplicate series
    (Prometheus would reject the whole scrape); their money adds up like the totals do."""
    positions = {
        "positions": [
            {"symbol": "BTCUSDT", "side": "LONG", "qty": 0.01, "notional": 1000.0, "pnl": 5.0},
            {"symbol": "BTCUSDT", "side": "LONG", "qty": 0.02, "notional": 2000.0, "pnl": None},
            {"symbol": "BTCUSDT", "side": "SHORT", "qty": -0.01, "notional": 900.0, "pnl": -1.0},
        ]
    }
    kpis = {"aum": {"slices": [{"label": "BTC", "usd": 10.0}, {"label": "BTC", "usd": 2.5}]}}
    parsed = series(
        render_prom(Outputs(kpis, positions), host="a", account="b", health=None).decode()
    )
    assert value(parsed, "hedge_kpi_position_notional_usd", symbol="BTCUSDT", side="LONG") == 3000.0
    assert value(parsed, "hedge_kpi_position_pnl_usd", symbol="BTCUSDT", side="LONG") == 5.0
    assert value(parsed, "hedge_kpi_position_qty", symbol="BTCUSDT", side="LONG") == 0.03
    assert value(parsed, "hedge_kpi_position_notional_usd", symbol="BTCUSDT", side="SHORT") == 900.0
    assert value(parsed, "hedge_kpi_aum_slice_usd", asset="BTC") == 12.5


def test_duplicate_rows_whose_sum_overflows_give_no_sample():
    """Two rows of 1e308 for one (symbol, side): their sum is past the float range, missing as
    every overflow is (the totals are null), so no sample, never `inf`."""
    row = {"symbol": "BIGUSDT", "side": "LONG", "qty": 1e154, "notional": 1e308, "pnl": 1.0}
    text = render_prom(
        Outputs({}, {"positions": [row, row]}), host="a", account="b", health=None
    ).decode()
    assert "inf" not in text.lower()
    parsed = series(text)
    assert not [s for s in parsed if s[0] == "hedge_kpi_position_notional_usd"]
    assert value(parsed, "hedge_kpi_position_pnl_usd", symbol="BIGUSDT", side="LONG") == 2.0


@pytest.mark.parametrize(
    "label",
    ['desk "a"', "back\\slash", "new\nline", "ünïcode-host", 'all \\ " \n three'],
)
def test_label_values_are_escaped_and_round_trip(full: Outputs, label: str):
    """Quotes, backslashes, newlines and UTF-8 in host/account labels survive the parser."""
    text = render_prom(full, host=label, account=label, health=HEALTH).decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            assert sample.labels["host"] == label
            assert sample.labels["account"] == label


def test_same_inputs_give_the_same_bytes(tmp_path: Path):
    """Deterministic: two builds of the same state at the same time render identically."""
    state = write_state(tmp_path, FULL_STATE, FX_CACHE)
    first = render_prom(build(state), host="a", account="b", health=HEALTH)
    second = render_prom(build(state), host="a", account="b", health=HEALTH)
    assert first == second


def test_health_transitions_count_publishes_and_errors():
    """published() counts and stamps; failed(kind) counts by kind; the old value is unchanged."""
    start = PublisherHealth()
    after = start.published(duration_s=0.5, ts=100.0).failed("prom").failed("prom")
    after = after.published(duration_s=0.25, ts=105.0).failed("build")
    assert after == PublisherHealth(2, 0.25, 105.0, {"prom": 2, "build": 1})
    assert start == PublisherHealth(0, None, None, {})


# -- the file: once, atomic replacement, config ------------------------------------------------


def test_once_writes_kpis_prom_with_mode_0644_and_no_temp_left(tmp_path: Path):
    """`once --prom-dir` writes kpis.prom and nothing else, readable by node_exporter."""
    state = write_state(tmp_path, FULL_STATE, FX_CACHE)
    prom_dir = tmp_path / "textfile"
    rc = cli.main(
        ["once", "--state-dir", str(state), "--out-dir", str(tmp_path / "out"),
         "--prom-dir", str(prom_dir), "--now", str(NOW), "--host-label", "h1", "--no-fsync"]
    )  # fmt: skip
    assert rc == 0
    target = prom_dir / prom.PROM_FILE
    assert sorted(os.listdir(prom_dir)) == ["kpis.prom"]
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    parsed = series(target.read_text())
    assert value(parsed, "hedge_kpi_nav_usd", host="h1", account="default") == 2418.67
    assert value(parsed, "hedge_kpi_generated_timestamp_seconds") == NOW
    assert value(parsed, "hedge_kpi_publishes_total") == 1.0
    # the JSON outputs were published first, into the out dir, as always
    assert (tmp_path / "out" / "kpis_v7.json").exists()


def test_host_label_defaults_to_the_hostname(tmp_path: Path):
    """Without --host-label the host label is the machine's hostname."""
    state = write_state(tmp_path, FULL_STATE)
    rc = cli.main(["once", "--state-dir", str(state), "--prom-dir", str(tmp_path), "--no-fsync"])
    assert rc == 0
    parsed = series((tmp_path / "kpis.prom").read_text())
    assert value(parsed, "hedge_kpi_nav_usd", host=socket.gethostname()) == 2418.67


def test_prom_dir_and_labels_come_from_the_config_file(tmp_path: Path):
    """prom_dir, host_label and account_label work from the TOML config file too."""
    state = write_state(tmp_path, FULL_STATE)
    config = tmp_path / "hedge-kpi.toml"
    config.write_text(
        f'prom_dir = "{tmp_path / "prom"}"\nhost_label = "cfg-host"\naccount_label = "acct-7"\n'
    )
    rc = cli.main(["once", "--state-dir", str(state), "--config", str(config), "--no-fsync"])
    assert rc == 0
    parsed = series((tmp_path / "prom" / "kpis.prom").read_text())
    assert value(parsed, "hedge_kpi_nav_usd", host="cfg-host", account="acct-7") == 2418.67


def test_without_prom_dir_no_prom_file_is_written(tmp_path: Path):
    state = write_state(tmp_path, FULL_STATE)
    assert cli.main(["once", "--state-dir", str(state), "--no-fsync"]) == 0
    assert not list(tmp_path.rglob("*.prom"))


def test_a_failed_write_keeps_the_old_file_and_exits_3(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    """When the rename fails the previous kpis.prom stays whole and no temp file is left."""
    state = write_state(tmp_path, FULL_STATE)
    prom_dir = tmp_path / "prom"
    args = ["once", "--state-dir", str(state), "--prom-dir", str(prom_dir), "--no-fsync"]
    assert cli.main([*args, "--now", str(NOW)]) == 0
    before = (prom_dir / "kpis.prom").read_bytes()

    def refuse(src: Any, dst: Any) -> None:
        if str(dst).endswith(".prom"):
            raise OSError(28, "No space left on device")
        os.rename(src, dst)

    monkeypatch.setattr(os, "replace", refuse)
    assert cli.main([*args, "--now", str(NOW + 60)]) == 3
    assert "cannot write kpis.prom" in capsys.readouterr().err
    assert (prom_dir / "kpis.prom").read_bytes() == before
    assert os.listdir(prom_dir) == ["kpis.prom"]


@pytest.mark.timeout(60)
def test_replacement_is_atomic_for_a_concurrent_reader(tmp_path: Path, full: Outputs):
    """A reader polling like the textfile collector (glob *.prom, read, parse) during 300
    rewrites alternating two different contents only ever sees one whole version."""
    settings = resolve(
        {"state_dir": tmp_path / "state", "prom_dir": tmp_path / "tf", "fsync": False,
         "host_label": "h", "account_label": "a"},
        {},
    )  # fmt: skip
    small = Outputs({"generated_at": NOW, "nav": {"nav_usd": 1.0}}, {})
    versions = {
        render_prom(full, host="h", account="a", health=PublisherHealth()),
        render_prom(small, host="h", account="a", health=PublisherHealth()),
    }
    assert len(versions) == 2
    prom.publish_prom(small, settings, PublisherHealth())
    stop = threading.Event()
    seen: list[bytes] = []
    problems: list[str] = []

    def reader() -> None:
        while not stop.is_set():
            listed = sorted(p.name for p in (tmp_path / "tf").glob("*.prom"))
            if listed != ["kpis.prom"]:
                problems.append(f"glob saw {listed}")
            data = (tmp_path / "tf" / "kpis.prom").read_bytes()
            if data not in versions:
                problems.append(f"partial file of {len(data)} bytes")
            list(text_string_to_metric_families(data.decode()))
            seen.append(data)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(300):
            prom.publish_prom(full if i % 2 else small, settings, PublisherHealth())
    finally:
        stop.set()
        thread.join(timeout=10)
    assert problems == []
    assert len(seen) > 10
    assert sorted(os.listdir(tmp_path / "tf")) == ["kpis.prom"]
    assert stat.S_IMODE((tmp_path / "tf" / "kpis.prom").stat().st_mode) == 0o644


# -- the loopback /metrics endpoint --------------------------------------------------------------


def test_a_large_book_exports_its_largest_positions_and_whole_totals(full: Outputs):
    """6,000 listed rows made 18,000 position series (1.4 MB a scrape): the largest
    MAX_POSITION_SERIES rows (the file lists them largest first) get series, and the totals
    still cover the whole book."""
    rows = [
        {"symbol": f"S{i:04d}", "side": "LONG", "qty": 1.0, "notional": 6000.0 - i, "pnl": 1.0}
        for i in range(6000)
    ]
    totals = {**full.positions["totals"], "count": 6000.0, "gross_notional_usd": 1.8e7}
    outputs = Outputs(full.kpis, {**full.positions, "positions": rows, "totals": totals})
    parsed = series(render_prom(outputs, host="h", account="a", health=None).decode())
    exported = {dict(ls)["symbol"] for n, ls in parsed if n == "hedge_kpi_position_notional_usd"}
    assert exported == {f"S{i:04d}" for i in range(prom.MAX_POSITION_SERIES)}
    assert sum(n.startswith("hedge_kpi_position_") for n, _ in parsed) == 3 * len(exported)
    assert value(parsed, "hedge_kpi_positions_open") == 6000.0
    assert value(parsed, "hedge_kpi_positions_gross_notional_usd") == 1.8e7


@pytest.mark.parametrize(
    ("published", "exported"),
    [
        ("cautious", "cautious"),
        ("DRAWDOWN", "DRAWDOWN"),
        ("<img src=x onerror=alert(1)> see https://evil.example/login", "other"),
        ("two words", "other"),
        ("x" * 33, "other"),
    ],
)
def test_a_state_label_is_exported_as_given_only_when_it_is_a_word(
    full: Outputs, published: str, exported: str
):
    """Whatever text a state file holds (the publisher passes labels of up to 64 characters)
    never becomes an arbitrary label value: a word is exported as it is, anything else as
    "other"."""
    risk = {**full.kpis["risk"], "dd_state": published, "atr_regime": published}
    kpis = {**full.kpis, "risk": risk, "router": {**full.kpis["router"], "quality": published}}
    parsed = series(
        render_prom(Outputs(kpis, full.positions), host="h", account="a", health=None).decode()
    )
    for family, label in (
        ("dd_state", "state"),
        ("atr_regime", "regime"),
        ("router_quality", "quality"),
    ):
        assert value(parsed, f"hedge_kpi_{family}", **{label: exported}) == 1.0


def test_the_unpriced_gauge_counts_the_assets_a_shortened_list_stands_for(full: Outputs):
    """kpis_v7 lists at most 100 unpriced names and then "<n> more": the gauge is the count
    of assets, not the list's length."""
    kpis = {**full.kpis, "aum": {**full.kpis["aum"], "unpriced": ["A", "B", "1,234 more"]}}
    text = render_prom(Outputs(kpis, full.positions), host="h", account="a", health=None)
    assert value(series(text.decode()), "hedge_kpi_aum_unpriced_assets") == 1236.0


@pytest.mark.timeout(30)
def test_metrics_endpoint_serves_the_same_series_on_loopback(full: Outputs):
    """/metrics on 127.0.0.1 returns exactly the series of kpis.prom; before the first publish
    the publisher's health alone (no publish yet, and every failure so far, so the alerts on
    them have a series to fire on); a failed pass (outputs=None) keeps the last outputs and
    shows the new error."""
    settings = resolve({"state_dir": "/nonexistent", "metrics_port": 0, "host_label": "h9"}, {})
    server = MetricsServer.from_settings(settings)
    assert server is not None
    port = server.start()
    try:
        assert server.address == ("127.0.0.1", port)
        url = f"http://127.0.0.1:{port}/metrics"

        def scrape() -> str:
            with urllib.request.urlopen(url, timeout=5) as resp:
                return str(resp.read().decode())

        before = series(scrape())
        assert value(before, "hedge_kpi_publishes_total") == 0.0
        assert value(before, "hedge_kpi_publish_errors_total", kind="publish") == 0.0
        assert value(before, "hedge_kpi_nav_usd") is None
        assert value(before, "hedge_kpi_last_publish_timestamp_seconds") is None
        server.update(None, prom.PublisherHealth().failed("publish").failed("publish"))
        assert value(series(scrape()), "hedge_kpi_publish_errors_total", kind="publish") == 2.0
        server.update(full, HEALTH)
        file_text = render_prom(full, host="h9", account="default", health=HEALTH).decode()
        assert series(scrape()) == series(file_text)
        server.update(None, HEALTH.failed("build"))
        after = series(scrape())
        assert value(after, "hedge_kpi_publish_errors_total", kind="build") == 1.0
        assert value(after, "hedge_kpi_nav_usd") == 2418.67
    finally:
        server.stop()
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass


def test_idle_clients_are_capped_and_dropped_and_scrapes_resume(
    full: Outputs, monkeypatch: pytest.MonkeyPatch
):
    """Clients that open a connection and never finish a request hold at most MAX_CLIENTS
    threads, each dropped after REQUEST_TIMEOUT_S; those beyond the cap are closed at once;
    afterwards a scrape is served again."""
    from kpi_publisher import metrics_server

    monkeypatch.setattr(metrics_server, "REQUEST_TIMEOUT_S", 0.5)
    server = MetricsServer(0, host="h", account="a")
    port = server.start()
    server.update(full, HEALTH)
    threads_before = threading.active_count()
    idle: list[socket.socket] = []
    try:
        for _ in range(metrics_server.MAX_CLIENTS + 40):
            client = socket.create_connection(("127.0.0.1", port), timeout=5)
            client.sendall(b"GET /metr")  # a request line never finished
            idle.append(client)
        time.sleep(0.2)
        assert threading.active_count() <= threads_before + metrics_server.MAX_CLIENTS
        closed_at_once = 0
        for client in idle:
            client.settimeout(0.05)
            with contextlib.suppress(TimeoutError):
                closed_at_once += client.recv(1) == b""
        assert closed_at_once >= 40
        time.sleep(1.0)  # past the request timeout: the held slots are free again
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            assert "hedge_kpi_nav_usd" in resp.read().decode()
    finally:
        for client in idle:
            client.close()
        server.stop()


def test_a_flood_of_idle_metrics_clients_never_stops_publishing(tmp_path: Path):
    """The real daemon with 256 descriptors and 400 idle clients on --metrics-port: before the
    cap each held a descriptor and a thread until the publisher could no longer open its own
    files; now it publishes a new NAV at once and its descriptors stay few."""
    import resource

    state, out = tmp_path / "logs" / "state", tmp_path / "out"
    state.mkdir(parents=True)
    nav = {"nav_usd": 1000.0, "updated_at": time.time()}
    (state / "nav_state.json").write_text(json.dumps(nav))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("KPI_")}
    env["KPI_HISTORY_PATH"] = str(tmp_path / "h.sqlite")
    argv = [sys.executable, "-m", "kpi_publisher", "run", "--state-dir", str(state)]
    argv += [
        "--out-dir",
        str(out),
        "--metrics-port",
        str(port),
        "--no-fsync",
        "--log-format",
        "json",
    ]

    def low_fd_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))

    proc = subprocess.Popen(
        argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        preexec_fn=low_fd_limit,
    )  # fmt: skip
    idle: list[socket.socket] = []
    try:
        deadline = time.monotonic() + 15
        while not (out / "kpis_v7.json").exists():
            assert time.monotonic() < deadline, "no first publish"
            time.sleep(0.05)
        for _ in range(400):
            try:
                client = socket.create_connection(("127.0.0.1", port), timeout=2)
                client.sendall(b"GET /metr")
                idle.append(client)
            except OSError:
                break
        tmp = state / ".nav_state.json.tmp"
        tmp.write_text(json.dumps({"nav_usd": 2000.0, "updated_at": time.time()}))
        os.replace(tmp, state / "nav_state.json")
        deadline = time.monotonic() + 5
        while json.loads((out / "kpis_v7.json").read_bytes())["nav"]["nav_usd"] != 2000.0:
            assert time.monotonic() < deadline, "the new NAV was not published"
            time.sleep(0.05)
        assert len(os.listdir(f"/proc/{proc.pid}/fd")) < 100
    finally:
        for client in idle:
            client.close()
        proc.terminate()
        assert proc.wait(10) == 0


@pytest.mark.parametrize("port", ["taken", 70000])
def test_an_unusable_port_is_a_clear_error(port: Any):
    """A port in use or out of range raises MetricsUnavailable naming the address."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        number = busy.getsockname()[1] if port == "taken" else port
        server = MetricsServer(number, host="h", account="a")
        with pytest.raises(MetricsUnavailable, match=f"127.0.0.1:{number}"):
            server.start()
        server.stop()


def test_no_metrics_port_means_no_server():
    assert MetricsServer.from_settings(resolve({"state_dir": "/x"}, {})) is None


# -- deploy/: the dashboard and the alerts use only metrics we export ------------------------------

EXTERNAL = {"up", "time", "node_textfile_mtime_seconds", "node_textfile_scrape_error"}
PROMQL_WORDS = {
    "sum", "by", "max", "min", "avg", "count", "rate", "increase", "without", "on", "and", "or",
    "unless", "ignoring", "group_left", "group_right", "bool", "absent", "absent_over_time",
    "max_over_time", "min_over_time", "changes", "label_replace", "topk", "sort_desc", "offset",
    "clamp_min", "vector", "scalar", "last_over_time", "irate", "delta", "deriv",
}  # fmt: skip


def metric_names_in(expr: str) -> set[str]:
    """Identifiers of a PromQL expression that name metrics (not functions, labels, strings)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)  # strings
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    expr = re.sub(r"\$\w+", "", expr)  # Grafana variables
    words = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", expr))
    return {w for w in words if w not in PROMQL_WORDS and not re.fullmatch(r"\d+[smhdw]", w)}


def exported_names() -> set[str]:
    return set(prom.FAMILY_NAMES)


def test_alert_rules_cover_the_four_alerts_and_use_exported_metrics():
    """alerts.yml loads, has NAV stale, publisher down, never published, drawdown limit and
    source invalid, and every expression names only metrics the publisher (or Prometheus
    itself) provides."""
    doc = yaml.safe_load((REPO / "deploy" / "prometheus" / "alerts.yml").read_text())
    rules = [r for group in doc["groups"] for r in group["rules"]]
    alerts = {r["alert"]: r for r in rules if "alert" in r}
    for required in (
        "HedgeKpiNavStale",
        "HedgeKpiPublisherDown",
        "HedgeKpiNeverPublished",
        "HedgeKpiDrawdownAboveLimit",
        "HedgeKpiSourceInvalid",
    ):
        assert required in alerts
        assert alerts[required]["annotations"]["summary"]
        assert alerts[required]["labels"]["severity"]
    for rule in rules:
        unknown = metric_names_in(str(rule["expr"])) - exported_names() - EXTERNAL
        assert not unknown, f"{rule.get('alert') or rule.get('record')}: {unknown}"


def test_grafana_dashboard_queries_only_exported_metrics():
    """The dashboard JSON loads, has panels for NAV, drawdown, router, AUM, positions, sources
    and publisher health, and queries no metric we do not export."""
    dash = json.loads((REPO / "deploy" / "grafana" / "hedge-kpi.json").read_text())
    panels = [p for p in dash["panels"] if p.get("type") != "row"]
    exprs = [t["expr"] for p in panels for t in p.get("targets", [])]
    assert len(exprs) >= 10
    used: set[str] = set()
    for expr in exprs:
        found = metric_names_in(expr)
        assert found, f"no metric in {expr!r}"
        used |= found
    assert not used - exported_names() - EXTERNAL
    for must in (
        "hedge_kpi_nav_usd",
        "hedge_kpi_drawdown_pct",
        "hedge_kpi_router_maker_fill_ratio",
        "hedge_kpi_aum_slice_usd",
        "hedge_kpi_position_notional_usd",
        "hedge_kpi_source_status",
        "hedge_kpi_last_publish_timestamp_seconds",
    ):
        assert must in used
    variables = {v["name"] for v in dash["templating"]["list"]}
    assert {"host", "account"} <= variables
    for expr in exprs:  # every query honours the host/account selection
        assert 'host=~"$host"' in expr and 'account=~"$account"' in expr, expr


def test_grafana_panels_have_unique_ids_and_do_not_overlap():
    """Grafana places panels by gridPos on a 24-column grid: overlapping panels hide each other."""
    dash = json.loads((REPO / "deploy" / "grafana" / "hedge-kpi.json").read_text())
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    cells: dict[tuple[int, int], str] = {}
    for panel in dash["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


def test_scrape_example_loads(tmp_path: Path):
    """The Prometheus config example is valid YAML and loads the alert rules file."""
    doc = yaml.safe_load((REPO / "deploy" / "prometheus" / "prometheus.yml").read_text())
    assert "alerts.yml" in " ".join(doc["rule_files"])
    assert {job["job_name"] for job in doc["scrape_configs"]} >= {"node", "hedge-kpi"}


# -- promtool: Prometheus' own checker (Debian's package, unpacked by `make prom-tools`) ----------


def prom_tool(name: str) -> Path:
    """A Prometheus binary from `make prom-tools` (or PATH); skip without it, fail under CI."""
    tools = Path(os.environ.get("HEDGE_KPI_PROM_TOOLS", REPO / ".venv" / "prom-tools"))
    found = tools / name if (tools / name).exists() else shutil.which(name)
    if found is None:
        message = f"{name} not found in {tools} or on PATH: run `make prom-tools`"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return Path(found)


@pytest.mark.timeout(60)
def test_promtool_accepts_kpis_prom_without_lint_findings(full: Outputs):
    """Prometheus' Go parser and metric-name linter accept the file, escapes and all."""
    text = render_prom(full, host='desk "1"\\x', account="a\nb", health=HEALTH)
    done = subprocess.run(
        [str(prom_tool("promtool")), "check", "metrics"],
        input=text,
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")


@pytest.mark.timeout(60)
def test_promtool_accepts_the_rules_and_the_scrape_config(tmp_path: Path):
    """alerts.yml has valid PromQL and templates; prometheus.yml is a valid config."""
    promtool = str(prom_tool("promtool"))
    for name in ("alerts.yml", "prometheus.yml"):
        shutil.copy(REPO / "deploy" / "prometheus" / name, tmp_path / name)
    rules = subprocess.run(
        [promtool, "check", "rules", str(tmp_path / "alerts.yml")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert rules.returncode == 0, rules.stdout + rules.stderr
    config = subprocess.run(
        [promtool, "check", "config", "--syntax-only", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert config.returncode == 0, config.stdout + config.stderr


def test_scaling_doc_lists_every_metric_and_no_other():
    """docs/SCALING.md's metric table is the reference operators read: it names every family we
    export, and every hedge_kpi_ name it mentions exists."""
    doc = (REPO / "docs" / "SCALING.md").read_text()
    table = set(re.findall(r"^\| `(hedge_kpi_\w+)` \|", doc, flags=re.MULTILINE))
    assert table == exported_names()
    assert set(re.findall(r"\bhedge_kpi_\w+", doc)) <= exported_names()


# -- hedge-kpi run: the long-running publisher writes kpis.prom and serves /metrics -------------


@pytest.mark.timeout(90)
def test_run_keeps_kpis_prom_current_and_serves_it_on_loopback(tmp_path: Path):
    """A real `hedge-kpi run --prom-dir --metrics-port 0`: kpis.prom appears and its publish
    count grows with the heartbeat, /metrics on 127.0.0.1 serves the same families and
    series, and SIGTERM ends it with exit 0 and the port closed."""
    state = write_state(tmp_path, FULL_STATE, FX_CACHE)
    prom_file = tmp_path / "textfile" / "kpis.prom"
    env = {k: v for k, v in os.environ.items() if not k.startswith("KPI_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "kpi_publisher", "run", "--state-dir", str(state),
         "--out-dir", str(tmp_path / "out"), "--prom-dir", str(prom_file.parent),
         "--metrics-port", "0", "--host-label", "h-run", "--account-label", "acct",
         "--heartbeat-s", "0.2", "--no-fsync", "--log-format", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        url = None
        for line in proc.stdout:
            event = json.loads(line)
            if event["event"] == "metrics_listening":
                url = event["url"]
                break
        assert url is not None and url.startswith("http://127.0.0.1:")
        deadline = time.monotonic() + 20
        publishes = 0.0
        while publishes < 3 and time.monotonic() < deadline:
            if prom_file.exists():
                parsed = series(prom_file.read_text())
                publishes = value(parsed, "hedge_kpi_publishes_total") or 0.0
            time.sleep(0.05)
        assert publishes >= 3, "kpis.prom did not follow the heartbeat"
        assert value(parsed, "hedge_kpi_nav_usd", host="h-run", account="acct") == 2418.67
        with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 (loopback http URL)
            served = series(resp.read().decode())
        health = {
            "hedge_kpi_publishes_total",
            "hedge_kpi_last_publish_timestamp_seconds",
            "hedge_kpi_last_publish_duration_seconds",
            "hedge_kpi_generated_timestamp_seconds",
            "hedge_kpi_nav_age_seconds",
            "hedge_kpi_source_age_seconds",
        }  # these move with every heartbeat; the rest must be equal
        assert set(served) == set(parsed)
        assert {k: v for k, v in served.items() if k[0] not in health} == {
            k: v for k, v in parsed.items() if k[0] not in health
        }
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass
    assert sorted(os.listdir(prom_file.parent)) == ["kpis.prom"]


def test_exposure_var_and_router_symbols_are_exported(tmp_path: Path):
    """Exposure, VaR/CVaR (risk_advanced fractions as percent) and per-symbol router numbers
    reach kpis.prom; a CVaR without an estimate (lookback_used 0) has no sample."""
    files = {
        **FULL_STATE,
        "risk_advanced.json": {
            "updated_ts": T,
            "var": {
                "portfolio_var_nav_pct": 0.05,
                "portfolio_var_usd": 120.9,
                "max_portfolio_var_nav_pct": 0.12,
                "confidence": 0.99,
                "lookback_used": 500,
            },
            "cvar": {
                "per_symbol": {
                    "BTCUSDT": {"cvar_nav_pct": 0.02, "lookback_used": 500},
                    "ETHUSDT": {"cvar_nav_pct": 0.0, "lookback_used": 0},
                }
            },
        },
        "router_health.json": {
            "updated_ts": T,
            "symbols": [
                {
                    "symbol": "BTCUSDT",
                    "maker_fill_rate": 0.6,
                    "fallback_rate": 0.2,
                    "slippage_p50": 1.5,
                    "sample_count": 12,
                },
            ],
        },
    }
    outputs = build(write_state(tmp_path, files, FX_CACHE))
    parsed = series(render_prom(outputs, host="a", account="x", health=None).decode())
    btc_notional, eth_notional = 0.01 * 103488, 0.5 * 3400
    assert value(parsed, "hedge_kpi_gross_exposure_pct") == pytest.approx(
        (btc_notional + eth_notional) / 2418.67 * 100
    )
    assert value(parsed, "hedge_kpi_net_exposure_pct") == pytest.approx(
        (btc_notional - eth_notional) / 2418.67 * 100
    )
    assert value(parsed, "hedge_kpi_var_pct") == pytest.approx(5.0)
    assert value(parsed, "hedge_kpi_var_usd") == 120.9
    assert value(parsed, "hedge_kpi_var_limit_pct") == pytest.approx(12.0)
    assert value(parsed, "hedge_kpi_cvar_pct") == pytest.approx(2.0)
    assert value(parsed, "hedge_kpi_symbol_cvar_pct", symbol="BTCUSDT") == pytest.approx(2.0)
    assert value(parsed, "hedge_kpi_symbol_cvar_pct", symbol="ETHUSDT") is None
    assert value(parsed, "hedge_kpi_router_symbol_maker_fill_ratio", symbol="BTCUSDT") == 0.6
    assert value(parsed, "hedge_kpi_router_symbol_slippage_bps", symbol="BTCUSDT") == 1.5
    assert value(parsed, "hedge_kpi_router_symbol_samples", symbol="BTCUSDT") == 12
    assert value(parsed, "hedge_kpi_source_up", source="risk_advanced") == 1.0
