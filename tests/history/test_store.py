"""History store: one row per NAV timestamp, restarts, kill -9, corruption, full disk, retention."""

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from kpi_publisher.history.store import DAY_S, SQLITE_HEADER, HistoryStore, Point

T0 = 1_760_000_000.0


def test_same_point_twice_is_one_row_and_survives_restart(hist: Path):
    """Also in a directory whose name is not UTF-8 (`hist`): the write open takes it."""
    store = HistoryStore(hist / "h.sqlite")
    assert store.append(Point(T0, 1000.0, -2.0, 0.5, 3000.0), now=T0)
    assert not store.append(Point(T0, 1000.0, -2.0, 0.5, 3000.0), now=T0)
    assert store.append(Point(T0 + 60, 1001.0), now=T0)
    assert not store.read_only
    store.close()
    again = HistoryStore(hist / "h.sqlite")
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


@pytest.mark.parametrize(
    "damaged",
    [SQLITE_HEADER + b"this is not a database" * 500, b"\x00" * 4096],
    ids=["header then garbage", "zeroed"],
)
def test_corrupt_file_is_moved_aside_and_a_new_one_started(tmp_path: Path, damaged: bytes):
    """A history of ours SQLite cannot read (its header, or a block zeroed by a crash)."""
    path = tmp_path / "h.sqlite"
    path.write_bytes(damaged)
    with capture_logs() as logs:
        store = HistoryStore(path)
        assert store.append(Point(T0, 1000.0), now=T0)
    aside = [p for p in tmp_path.iterdir() if ".corrupt-" in p.name]
    assert len(aside) == 1
    assert aside[0].read_bytes() == damaged
    assert [e["event"] for e in logs] == ["history_corrupt"]
    assert store.count() == 1


HOLDINGS = b'{"BTC": {"qty": 0.1, "avg_cost": 60000.0}, "ETH": {"qty": 2.0}}\n'


@pytest.mark.parametrize(
    "document",
    [HOLDINGS, b"[1, 2, 3]", b"nav,t\n1000,1760000000\n", b"# hedge-kpi\nprom_dir = '/x'\n"],
    ids=["json object", "json array", "csv", "toml"],
)
def test_a_file_that_is_not_a_database_is_left_alone_and_the_history_pauses(
    tmp_path: Path, document: bytes, monkeypatch: pytest.MonkeyPatch
):
    """A history_path on an input by mistake: the file is never renamed, written or joined by
    SQLite side files; one `history_refused` error; retried after the pause, resumed once the
    file is gone."""
    path = tmp_path / "offexchange_holdings.json"
    path.write_bytes(document)
    with capture_logs() as logs:
        store = HistoryStore(path)
        assert not store.append(Point(T0, 1000.0), now=T0)
        assert store.count() == 0 and store.navs() == []
        monkeypatch.setattr(store, "_paused_until", 1.0)  # the pause is over: tried again
        assert not store.append(Point(T0 + 1, 1000.0), now=T0)
    assert path.read_bytes() == document
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]
    assert [(e["event"], e["log_level"]) for e in logs] == [("history_refused", "error")]
    assert "not a SQLite database" in logs[0]["reason"]
    path.unlink()
    monkeypatch.setattr(store, "_paused_until", 1.0)
    with capture_logs() as logs:
        assert store.append(Point(T0 + 2, 1000.0), now=T0)
    assert [e["event"] for e in logs] == ["history_resumed"]


def test_another_programs_sqlite_database_is_left_alone(tmp_path: Path):
    """A SQLite file without our tables is someone else's: not converted to WAL, no table added."""
    path = tmp_path / "orders.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, qty REAL)")
        db.execute("INSERT INTO orders VALUES (1, 2.5)")
    db.close()
    before = path.read_bytes()
    with capture_logs() as logs:
        assert not HistoryStore(path).append(Point(T0, 1000.0), now=T0)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["orders.db"]
    assert [e["event"] for e in logs] == ["history_refused"]
    assert "another program (tables: orders)" in logs[0]["reason"]


@pytest.mark.timeout(10)
@pytest.mark.parametrize("kind", ["fifo", "directory"])
def test_a_fifo_or_a_directory_at_the_history_path_is_refused_without_blocking(
    tmp_path: Path, kind: str
):
    path = tmp_path / "h.sqlite"
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path.mkdir()
    with capture_logs() as logs:
        assert not HistoryStore(path).append(Point(T0, 1000.0), now=T0)
    assert [e["event"] for e in logs] == ["history_refused"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h.sqlite"]


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
    """Minute points over 40 days up to now: the last 30 days stay whole, older hours keep 3
    points each (first, low, high), nothing older than the retention is kept."""
    store = HistoryStore(tmp_path / "h.sqlite", retention_days=35)
    now = T0 - T0 % 3600 + 40 * DAY_S
    minutes = [
        Point(now - 40 * DAY_S + i * 60, 1000.0 + (i % 60 == 17) * 50 - (i % 60 == 41) * 70)
        for i in range(40 * 1440 + 1)
    ]
    store.extend(minutes)
    store.thin(now)
    held = store.navs()
    recent = [p for p in held if p[0] >= now - 30 * DAY_S]
    older = [p for p in held if p[0] < now - 30 * DAY_S]
    assert len(recent) == 30 * 1440 + 1  # from now - 30 d to now, both ends included
    assert all(p[0] >= now - 35 * DAY_S for p in held)
    assert len(older) == 5 * 24 * 3
    assert {v for _, v in older} == {1000.0, 1050.0, 930.0}  # peaks and troughs kept
