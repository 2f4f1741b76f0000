"""The demo installs the real month-long NAV series as the executor's nav.jsonl, ending just
before the replay; the publisher's back-fill then holds the whole month."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

from execution import demo_executor, demo_history
from kpi_publisher.history.backfill import backfill
from kpi_publisher.history.store import HistoryStore
from tests.history import real as history_real

START = 1_790_000_000.0


def run_once(root: Path) -> None:
    options = demo_executor.DemoOptions(root=root, interval_s=0.001, cycles=1)
    demo_executor.run(options, clock=lambda: START)


def test_month_installed_once_before_the_replay(tmp_path: Path):
    run_once(tmp_path)
    logs = tmp_path / "logs"
    rows = [json.loads(line) for line in (logs / "nav.jsonl").read_text().splitlines()]
    replay = json.loads((logs / "nav_log.json").read_text())
    assert len(rows) == 22_514
    assert rows[-1]["t"] < replay[0]["t"] < START
    assert math.isclose(rows[-1]["nav"], replay[0]["nav"], rel_tol=1e-12)
    real = [json.loads(line) for line in history_real.month_text().splitlines()]
    for i in (1, 5_000, 22_513):  # the real returns and spacing, only moved and scaled
        assert math.isclose(
            rows[i]["nav"] / rows[i - 1]["nav"], real[i]["nav"] / real[i - 1]["nav"]
        )
        assert math.isclose(rows[i]["t"] - rows[i - 1]["t"], real[i]["t"] - real[i - 1]["t"])
    before = (logs / "nav.jsonl").stat().st_mtime_ns
    run_once(tmp_path)
    assert (logs / "nav.jsonl").stat().st_mtime_ns == before
    store = HistoryStore(tmp_path / "h.sqlite")
    assert backfill(store, logs) == 22_514 + len(replay)


def test_month_series_is_the_real_file_byte_for_byte():
    """Serialised again, the demo's month is the executor's nav.jsonl: its recorded SHA-256."""
    text = "".join(json.dumps(r) + "\n" for r in demo_history.month_series())
    ((rel, sha),) = history_real.ORIGINALS.values()
    assert hashlib.sha256(text.encode()).hexdigest() == sha, rel
