"""Two publishers, two hosts, one Prometheus: their kpis.prom files read together give one
series per host, no collisions, and each host's values are its own (issue 8)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[1]
T = 1_762_435_680.0
NOW = T + 30.0

HOSTS: dict[str, dict[str, Any]] = {
    "desk-a": {
        "nav_state.json": {"nav_usd": 2418.67, "updated_at": T, "usd_zar": 17.34},
        "risk_snapshot.json": {
            "updated_at": T,
            "drawdown": {"dd_pct": 1.5},
            "router_stats": {"maker_fill_rate": 0.75, "slip_q50_bps": 1.25},
            "symbols": [{"symbol": "BTCUSDT", "atr_ratio": 1.2}],
        },
        "positions_state.json": {
            "updated_at": T,
            "rows": [{"symbol": "BTCUSDT", "side": "LONG", "qty": 0.01, "mark_price": 103488}],
        },
    },
    "desk-b": {
        "nav_state.json": {"nav_usd": 10500.25, "updated_at": T - 200, "usd_zar": 18.0},
        "risk_snapshot.json": {
            "updated_at": T,
            "drawdown": {"dd_pct": 6.75},
            "router_stats": {"maker_fill_rate": 0.4, "slip_q50_bps": 3.0},
            "symbols": [
                {"symbol": "BTCUSDT", "atr_ratio": 0.8},
                {"symbol": "ETHUSDT", "atr_ratio": 1.6},
            ],
        },
        "positions_state.json": {
            "updated_at": T,
            "rows": [
                {"symbol": "BTCUSDT", "side": "SHORT", "qty": 0.05, "mark_price": 103000},
                {"symbol": "ETHUSDT", "side": "SHORT", "qty": 2, "mark_price": 3392.68},
            ],
        },
        "router_health.json": "{not json",  # invalid on this host only
    },
}

Key = tuple[str, frozenset[tuple[str, str]]]


def publish(root: Path, host: str, files: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Run `hedge-kpi once` for one host; returns its kpis.prom text and its kpis_v7.json."""
    state = root / host / "logs" / "state"
    state.mkdir(parents=True)
    for name, doc in files.items():
        text = doc if isinstance(doc, str) else json.dumps(doc)
        (state / name).write_text(text)
    out, prom_dir = root / host / "out", root / host / "textfile"
    cmd = [
        sys.executable, "-m", "kpi_publisher", "once", "--state-dir", str(state),
        "--out-dir", str(out), "--prom-dir", str(prom_dir), "--host-label", host,
        "--account-label", "main", "--now", str(NOW), "--no-fsync",
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return (prom_dir / "kpis.prom").read_text(), json.loads((out / "kpis_v7.json").read_text())


def series(text: str) -> dict[Key, float]:
    out: dict[Key, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in out, f"duplicate series {key}"
            out[key] = sample.value
    return out


def pick(merged: dict[Key, float], name: str, **labels: str) -> float | None:
    hits = [v for (n, ls), v in merged.items() if n == name and set(labels.items()) <= ls]
    assert len(hits) <= 1, (name, labels, hits)
    return hits[0] if hits else None


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, dict[str, Any]]]:
    root = tmp_path_factory.mktemp("hosts")
    return {host: publish(root, host, files) for host, files in HOSTS.items()}


@pytest.mark.timeout(120)
def test_two_hosts_give_disjoint_per_host_series(published):
    """Read together (what one Prometheus stores), every series is distinct by host label."""
    per_host = {host: series(text) for host, (text, _) in published.items()}
    for host, parsed in per_host.items():
        assert {dict(labels)["host"] for _, labels in parsed} == {host}
    a, b = per_host["desk-a"], per_host["desk-b"]
    assert not set(a) & set(b)
    merged = {**a, **b}
    assert len(merged) == len(a) + len(b)
    # the same families exist on both hosts, told apart by host alone
    for name in ("hedge_kpi_nav_usd", "hedge_kpi_drawdown_pct", "hedge_kpi_publishes_total"):
        assert pick(merged, name, host="desk-a") is not None
        assert pick(merged, name, host="desk-b") is not None

    def without_host(keys: set[Key]) -> set[Key]:
        return {(n, frozenset((k, v) for k, v in ls if k != "host")) for n, ls in keys}

    # and the host label is what separates them: without it the two files would collide
    assert without_host(set(a)) & without_host(set(b))


@pytest.mark.timeout(120)
def test_each_host_series_carry_that_hosts_values(published):
    """Values read back per host are that host's published values, not the other's."""
    merged = {k: v for text, _ in published.values() for k, v in series(text).items()}
    for host, (_, kpis) in published.items():
        assert pick(merged, "hedge_kpi_nav_usd", host=host) == kpis["nav"]["nav_usd"]
        assert pick(merged, "hedge_kpi_nav_zar", host=host) == kpis["nav"]["nav_zar"]
        assert pick(merged, "hedge_kpi_drawdown_pct", host=host) == kpis["risk"]["drawdown_pct"]
        assert pick(merged, "hedge_kpi_generated_timestamp_seconds", host=host) == NOW
        for symbol, entry in kpis["symbols"].items():
            got = pick(merged, "hedge_kpi_symbol_atr_ratio", host=host, symbol=symbol)
            assert got == entry["atr_ratio"]
        for source, entry in kpis["sources"].items():
            got = pick(merged, "hedge_kpi_source_status", host=host, source=source, status="ok")
            assert got == float(entry["status"] == "ok")

    assert pick(merged, "hedge_kpi_nav_usd", host="desk-a") == 2418.67
    assert pick(merged, "hedge_kpi_nav_usd", host="desk-b") == 10500.25
    assert pick(merged, "hedge_kpi_nav_fresh", host="desk-a") == 1.0
    assert pick(merged, "hedge_kpi_nav_fresh", host="desk-b") == 0.0  # 230 s old
    assert pick(merged, "hedge_kpi_router_maker_fill_ratio", host="desk-b") == 0.4
    assert pick(merged, "hedge_kpi_router_slippage_bps", host="desk-a", quartile="q50") == 1.25
    # positions: desk-a is long BTC, desk-b short BTC and ETH; nothing leaks across
    long_btc = {"symbol": "BTCUSDT", "side": "LONG"}
    short_btc = {"symbol": "BTCUSDT", "side": "SHORT"}
    assert pick(merged, "hedge_kpi_position_notional_usd", host="desk-a", **long_btc) == 1034.88
    assert pick(merged, "hedge_kpi_position_notional_usd", host="desk-a", **short_btc) is None
    assert pick(merged, "hedge_kpi_position_notional_usd", host="desk-b", **short_btc) == 5150.0
    assert pick(merged, "hedge_kpi_position_qty", host="desk-b", symbol="ETHUSDT") == -2.0
    assert pick(merged, "hedge_kpi_symbol_atr_ratio", host="desk-a", symbol="ETHUSDT") is None
    # the invalid input on desk-b is visible as desk-b's alone
    invalid = {"source": "router", "status": "invalid"}
    assert pick(merged, "hedge_kpi_source_status", host="desk-b", **invalid) == 1.0
    assert pick(merged, "hedge_kpi_source_status", host="desk-a", **invalid) == 0.0
    assert pick(merged, "hedge_kpi_drawdown_pct", host="desk-b") == 6.75


# -- the real consumer: node_exporter's textfile collector ---------------------------------------


def node_exporter_binary() -> Path:
    """Debian's node_exporter from `make prom-tools` (or PATH); skip without it, fail under CI."""
    tools = Path(os.environ.get("HEDGE_KPI_PROM_TOOLS", REPO / ".venv" / "prom-tools"))
    for candidate in (tools / "prometheus-node-exporter", tools / "node_exporter"):
        if candidate.exists():
            return candidate
    found = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")
    if found is None:
        message = f"node_exporter not found in {tools} or on PATH: run `make prom-tools`"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return Path(found)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def textfile_exporter(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A real node_exporter on loopback with only the textfile collector; (dir, metrics URL)."""
    textfile_dir = tmp_path / "textfile"
    textfile_dir.mkdir()
    port = free_port()
    proc = subprocess.Popen(
        [
            str(node_exporter_binary()),
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.disable-exporter-metrics",
            "--collector.disable-defaults",
            "--collector.textfile",
            f"--collector.textfile.directory={textfile_dir}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                with urllib.request.urlopen(url, timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    err = proc.stderr.read().decode() if proc.stderr else ""
                    pytest.fail(f"node_exporter did not come up: {err}")
                time.sleep(0.05)
        yield textfile_dir, url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        if proc.stderr:
            proc.stderr.close()


@pytest.mark.timeout(120)
def test_one_node_exporter_serves_both_publishers_files(published, textfile_exporter):
    """Two publishers' kpis.prom, linked into one textfile dir under distinct names (two
    accounts on one host, docs/SCALING.md), are both exported by a real node_exporter: its Go
    parser accepts them, nothing collides, every series and value survives."""
    textfile_dir, url = textfile_exporter
    for host, (text, _) in published.items():
        own = textfile_dir.parent / host
        own.mkdir()
        (own / "kpis.prom").write_text(text)
        (textfile_dir / f"hedge-kpi-{host}.prom").symlink_to(own / "kpis.prom")
    with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 (loopback http URL)
        scraped = series(resp.read().decode())
    errors = {k: v for k, v in scraped.items() if k[0] == "node_textfile_scrape_error"}
    assert list(errors.values()) == [0.0]
    exported = {k: v for k, v in scraped.items() if k[0].startswith("hedge_kpi_")}
    expected = {k: v for text, _ in published.values() for k, v in series(text).items()}
    assert exported == expected
    mtimes = {dict(ls)["file"] for n, ls in scraped if n == "node_textfile_mtime_seconds"}
    assert {Path(f).name for f in mtimes} == {"hedge-kpi-desk-a.prom", "hedge-kpi-desk-b.prom"}
