"""The NAV history's costs: `python -m bench.history [--points N]` prints one JSON object.

- append_p50_ms: one `HistoryStore.append` with a year of minute points already stored;
- observe_unchanged_us / observe_new_us: the publisher's side (a post-publish observer call);
- rebuild_ms: nav_history_v7.json built and rendered from the year (525,600 points);
- performance_ms: the `performance` block over the year (off the publish path);
- store_mb / store_thinned_mb: the SQLite file for the year, before and after retention;
- backfill_month_s: the real month-long nav.jsonl (22,514 points) into an empty store.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

from kpi_publisher.history.backfill import backfill
from kpi_publisher.history.curves import Series, build_nav_history
from kpi_publisher.history.recorder import HistoryRecorder
from kpi_publisher.history.store import HistoryStore, Point
from kpi_publisher.render import render
from kpi_publisher.stages.performance import performance_of_columns

YEAR_MINUTES = 525_600
# The real month-long nav.jsonl (22,514 points), as shipped with the demo.
MONTH_GZ = Path(__file__).resolve().parents[1] / "execution" / "data" / "nav_month.jsonl.gz"


def _ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1000.0, 3)


def measure(points: int, work: Path) -> dict[str, float]:
    rng = random.Random(1)  # noqa: S311 - benchmark data
    start = time.time() - points * 60.0
    nav, rows = 10_000.0, []
    for i in range(points):
        nav *= 1.0 + rng.gauss(0.0, 0.0005)
        rows.append(Point(start + i * 60.0, nav, 0.0, 0.5, 5_000.0))
    store = HistoryStore(work / "year.sqlite", retention_days=36_500)
    store.extend(rows)
    appends = []
    for i in range(1, 1001):
        began = time.perf_counter()
        store.append(Point(start + points * 60.0 + i, nav), now=start)
        appends.append(time.perf_counter() - began)
    store.close()
    with sqlite3.connect(work / "year.sqlite") as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store_mb = (work / "year.sqlite").stat().st_size / 1e6
    series = Series.of((p.t, p.nav_usd) for p in rows)
    rebuilds, perfs = [], []
    now = start + points * 60.0
    for _ in range(5):
        began = time.perf_counter()
        render(build_nav_history(series, now))
        rebuilds.append(time.perf_counter() - began)
        began = time.perf_counter()
        performance_of_columns(series.times, series.navs, now)
        perfs.append(time.perf_counter() - began)
    thinned = HistoryStore(work / "year.sqlite", retention_days=400)
    thinned.thin(now)
    thinned.close()
    with sqlite3.connect(work / "year.sqlite") as db:
        db.execute("VACUUM")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    recorder = HistoryRecorder(HistoryStore(work / "r.sqlite"), work, None, fsync=False)
    same = SimpleNamespace(kpis={"nav": {"updated_at": now, "nav_usd": nav}, "risk": {}})
    recorder.observe(same)
    unchanged = []
    for _ in range(10_000):
        began = time.perf_counter()
        recorder.observe(same)
        unchanged.append(time.perf_counter() - began)
    new = []
    for i in range(10_000):
        doc = SimpleNamespace(kpis={"nav": {"updated_at": now + i + 1, "nav_usd": nav}, "risk": {}})
        began = time.perf_counter()
        recorder.observe(doc)
        new.append(time.perf_counter() - began)
    month = work / "logs"
    month.mkdir()
    (month / "nav.jsonl").write_bytes(gzip.decompress(MONTH_GZ.read_bytes()))
    began = time.perf_counter()
    backfill(HistoryStore(work / "month.sqlite"), month)
    backfill_s = time.perf_counter() - began
    return {
        "points": points,
        "append_p50_ms": _ms(appends),
        "observe_unchanged_us": round(statistics.median(unchanged) * 1e6, 2),
        "observe_new_us": round(statistics.median(new) * 1e6, 2),
        "rebuild_ms": _ms(rebuilds),
        "performance_ms": _ms(perfs),
        "store_mb": round(store_mb, 1),
        "store_thinned_mb": round((work / "year.sqlite").stat().st_size / 1e6, 1),
        "backfill_month_s": round(backfill_s, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--points", type=int, default=YEAR_MINUTES)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(measure(args.points, Path(tmp))))


if __name__ == "__main__":
    main()
