"""History store: one row per NAV timestamp, restarts, kill -9, corruption, full disk, retention."""

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from structlog.testing import capture_logs

from kpi_publisher.history.store import DAY_S, HistoryStore, Point

T0 = 1_760_000_000.0


def test_same_point_twice_is_one_row_and_survives_restart(tmp_path: Path):
    store = HistoryStore(tmp_path / "h.sqlite")
    assert store.append(Point(T0, 1000.0, -2.0, 0.5, 3000.0), now=T0)
    assert not store.append(Point(T0, 1000.0, -2.0, 0.5, 3000.0), now=T0)
    assert store.append(Point(T0 + 60, 1001.0), now=T0)
    store.close()
    again = HistoryStore(tmp_path / "h.sqlite")
    assert again.points() == [Point(T0, 1000.0, -2.0, 0.5, 3000.0), Point(T0 + 60, 1001.0)]
    assert not again.append(Point(T0 + 60, 1001.0), now=T0)
    assert again.count() == 2


def test_file_is_in_wal_mode(tmp_path: Path):
    HistoryStore(tmp_path / "h.sqlite").append(Point(T0, 1.0), now=T0)
    with sqlite3.connect(tmp_path / "h.sqlite") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


WRITER = """
import sys, time
from pathlib import Path
from kpi_publisher.history.store import HistoryStore, Point
store = HistoryStore(Path(sys.argv[1]))
i = 0
while True:
    store.append(Point(1_760_000_000.0 + i, 1000.0 + i), now=1_760_000_000.0)
    print(i, flush=True)
    i += 1
"""


def test_kill_9_mid_append_loses_at_most_the_point_in_flight(tmp_path: Path):
    path = tmp_path / "h.sqlite"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    last = -1
    deadline = time.monotonic() + 30
    while last < 300 and time.monotonic() < deadline:
        last = int(proc.stdout.readline())
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    confirmed = last + int(sum(1 for _ in proc.stdout))  # lines printed before the kill
    store = HistoryStore(path)
    held = store.count()
    assert confirmed + 1 <= held <= confirmed + 2  # every confirmed point, at most one more
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert store.append(Point(T0 + 10**6, 1.0), now=T0)


def test_corrupt_file_is_moved_aside_and_a_new_one_started(tmp_path: Path):
    path = tmp_path / "h.sqlite"
    path.write_bytes(b"this is not a database" * 500)
    with capture_logs() as logs:
        store = HistoryStore(path)
        assert store.append(Point(T0, 1000.0), now=T0)
    aside = [p for p in tmp_path.iterdir() if ".corrupt-" in p.name]
    assert len(aside) == 1
    assert aside[0].read_bytes().startswith(b"this is not a database")
    assert [e["event"] for e in logs] == ["history_corrupt"]
    assert store.count() == 1


def test_damaged_pages_are_detected(tmp_path: Path):
    path = tmp_path / "h.sqlite"
    store = HistoryStore(path)
    store.extend(Point(T0 + i, 1000.0 + i) for i in range(5000))
    store.close()
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(path.read_bytes())
    data[8192:16384] = b"\xff" * 8192  # overwrite two pages of the b-tree
    path.write_bytes(bytes(data))
    with capture_logs() as logs:
        fresh = HistoryStore(path)
        assert fresh.count() == 0
    assert "history_corrupt" in [e["event"] for e in logs]


def test_full_disk_pauses_with_one_log_line(tmp_path: Path):
    """SQLITE_FULL on append: one `history_paused` line, no exception, later appends dropped."""
    store = HistoryStore(tmp_path / "h.sqlite")
    store.append(Point(T0, 1000.0), now=T0)
    assert store._db is not None
    pages = store._db.execute("PRAGMA page_count").fetchone()[0]
    store._db.execute(f"PRAGMA max_page_count = {pages}")  # the disk is full from here
    with capture_logs() as logs:
        results = [store.append(Point(T0 + i, 1000.0 + i), now=T0) for i in range(1, 2000)]
    assert not any(results[-10:])
    assert [e["event"] for e in logs] == ["history_paused"]
    assert "full" in logs[0]["reason"]
    assert store.paused


def test_retention_thins_old_points_keeping_first_lowest_and_highest(tmp_path: Path):
    """Minute points over 40 days: the last 30 days stay whole, older hours keep 3 points each
    (first, low, high), nothing older than the retention is kept."""
    store = HistoryStore(tmp_path / "h.sqlite", retention_days=35)
    now = T0 - T0 % 3600 + 40 * DAY_S
    minutes = [
        Point(now - 40 * DAY_S + i * 60, 1000.0 + (i % 60 == 17) * 50 - (i % 60 == 41) * 70)
        for i in range(40 * 1440)
    ]
    store.extend(minutes)
    store.thin(now)
    held = store.navs()
    recent = [p for p in held if p[0] >= now - 30 * DAY_S]
    older = [p for p in held if p[0] < now - 30 * DAY_S]
    assert len(recent) == 30 * 1440
    assert all(p[0] >= now - 35 * DAY_S for p in held)
    assert len(older) == 5 * 24 * 3
    assert {v for _, v in older} == {1000.0, 1050.0, 930.0}  # peaks and troughs kept
