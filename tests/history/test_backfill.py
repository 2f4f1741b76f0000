"""Backfill: the executor's nav_log.json and nav.jsonl imported once, deduplicated, fast."""

import json
from pathlib import Path

from kpi_publisher.history.backfill import backfill
from kpi_publisher.history.store import HistoryStore
from tests.history import real


def test_both_files_imported_once_and_deduplicated(tmp_path: Path):
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "nav_log.json").write_text(
        json.dumps([{"t": 100.0, "nav": 10.0, "unrealized_pnl": -1.5}, {"t": 160.0, "nav": 11.0}])
    )
    (logs / "nav.jsonl").write_text(
        '{"t": 160.0, "nav": 11.0}\nnot json\n{"t": 220.0, "nav": 12.0}\n{"t": 280.0}\n'
    )
    store = HistoryStore(tmp_path / "h.sqlite")
    assert backfill(store, logs) == 3
    assert backfill(store, logs) == 0  # unchanged files are not read again
    assert store.navs() == [(100.0, 10.0), (160.0, 11.0), (220.0, 12.0)]
    assert store.points()[0].unrealized_pnl_usd == -1.5
    with (logs / "nav.jsonl").open("a") as f:
        f.write('{"t": 340.0, "nav": 13.0}\n')
    assert backfill(store, logs) == 1


def test_missing_files_import_nothing(tmp_path: Path):
    assert backfill(HistoryStore(tmp_path / "h.sqlite"), tmp_path / "nowhere") == 0


def test_real_month_long_series_and_recent_log_imported_whole_once(tmp_path: Path):
    """Every real point arrives, the two files' overlap is not doubled, a second start adds
    nothing. (Its speed, under 1 s for the month, is measured by `python -m bench.history`.)"""
    logs = tmp_path / "logs"
    logs.mkdir()
    month = [
        json.loads(line) for line in real.write_month(logs / "nav.jsonl").read_text().splitlines()
    ]
    real.write_recent_nav_log(logs / "nav_log.json")
    store = HistoryStore(tmp_path / "h.sqlite")
    added = backfill(store, logs)
    assert added == 22_514 + 720
    navs = store.navs()
    assert len(navs) == added
    assert (month[0]["t"], month[0]["nav"]) in navs
    assert backfill(HistoryStore(tmp_path / "h.sqlite"), logs) == 0
