"""The real month-long NAV series, back-filled through the store, gives the figures derived
independently by tests/fixtures/history/derive_performance.py."""

import gzip
import hashlib
import json
from pathlib import Path

import pytest

from kpi_publisher.history.backfill import backfill
from kpi_publisher.history.store import HistoryStore
from kpi_publisher.stages.performance import build_performance
from tests.history import real

EXPECTED = json.loads(
    (Path(__file__).parents[1] / "fixtures" / "history" / "expected_performance.json").read_text()
)


@pytest.fixture(scope="module")
def performance(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("real")
    (root / "logs").mkdir()
    real.write_month(root / "logs" / "nav.jsonl")
    store = HistoryStore(root / "h.sqlite")
    backfill(store, root / "logs")
    return build_performance(store.navs(), now=EXPECTED["now"])


@pytest.mark.parametrize("name", ["24h", "7d", "30d", "all"])
def test_windows(performance: dict, name: str):
    want, got = EXPECTED["windows"][name], performance["windows"][name]
    if want["pnl_usd"] is None:
        assert got["pnl_usd"] is None and got["max_drawdown_pct"] is None
        assert got["reason"] == want["reason"]
        return
    for key in ("pnl_usd", "pnl_pct", "max_drawdown_pct", "start_t"):
        assert got[key] == pytest.approx(want[key], rel=1e-12), key


def test_drawdown_history_and_ratios(performance: dict):
    assert performance["drawdown_pct"] == pytest.approx(EXPECTED["drawdown_pct"], rel=1e-12)
    assert performance["peak_nav_usd"] == EXPECTED["peak_nav_usd"]
    assert performance["history"] == pytest.approx(EXPECTED["history"])
    for name, want in EXPECTED["ratios"].items():
        got = performance["ratios"][name]
        assert got["daily_returns"] == want["daily_returns"]
        for key in ("volatility_pct", "sharpe", "sortino"):
            assert got[key] == pytest.approx(want[key], rel=1e-9), (name, key)


def test_the_copy_is_the_real_series() -> None:
    """The shipped copy holds the 22,514 real points; where ../shared sits beside the clone,
    it decompresses to the original byte for byte."""
    data = real.month_bytes()
    assert len(data.splitlines()) == 22_514
    for copy, (rel, sha) in real.ORIGINALS.items():
        assert hashlib.sha256(gzip.decompress(copy.read_bytes())).hexdigest() == sha
        original = real.SHARED / rel
        if original.is_file():
            assert original.read_bytes() == data
