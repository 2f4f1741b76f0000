"""Backfill: the executor's nav_log.json and nav.jsonl imported once, deduplicated, fast."""

import json
import os
import threading
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from kpi_publisher.history import backfill as backfill_module
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


# --- timestamps: one parser, nothing from the future (probe t1) ------------------------------

NOW = 1_760_000_000.0


def _logs(tmp_path: Path, **files: bytes) -> Path:
    logs = tmp_path / "logs"
    logs.mkdir(exist_ok=True)
    for name, data in files.items():
        (logs / name.replace("_json", ".json").replace("_jsonl", ".jsonl")).write_bytes(data)
    return logs


def _lines(*rows: object) -> bytes:
    return b"".join(json.dumps(row).encode() + b"\n" for row in rows)


def test_timestamps_in_ms_us_ns_and_iso_read_as_seconds(tmp_path: Path):
    """`t` is read by parse.parse_ts: a millisecond timestamp is not the year 58883."""
    logs = _logs(
        tmp_path,
        nav_jsonl=_lines(
            {"t": NOW - 400, "nav": 1.0},
            {"t": (NOW - 300) * 1e3, "nav": 2.0},
            {"t": (NOW - 200) * 1e6, "nav": 3.0},
            {"t": int((NOW - 100) * 1e9), "nav": 4.0},
            {"t": "2025-10-09T07:53:20Z", "nav": 5.0},  # NOW - 3600
        ),
    )
    store = HistoryStore(tmp_path / "h.sqlite")
    assert backfill(store, logs, now=NOW) == 5
    assert store.navs() == [
        (NOW - 3600, 5.0),
        (NOW - 400, 1.0),
        (NOW - 300, 2.0),
        (NOW - 200, 3.0),
        (NOW - 100, 4.0),
    ]


def test_a_point_beyond_the_clock_skew_is_never_stored(tmp_path: Path):
    """More than CLOCK_SKEW_S (60 s) ahead of the clock is not a point; up to it is skew."""
    logs = _logs(
        tmp_path,
        nav_jsonl=_lines(
            {"t": NOW - 60, "nav": 1.0},
            {"t": NOW + 60, "nav": 2.0},
            {"t": NOW + 61, "nav": 3.0},
            {"t": 253402300799.0, "nav": 4.0},  # 9999-12-31 read as ms: still 1978
            {"t": NOW * 1e3 + 3_600_000, "nav": 5.0},  # an hour ahead, in ms
        ),
    )
    store = HistoryStore(tmp_path / "h.sqlite")
    with capture_logs() as logs_seen:
        backfill(store, logs, now=NOW)
    assert [t for t, _ in store.navs()] == [253402300.799, NOW - 60, NOW + 60]
    (done,) = [e for e in logs_seen if e["event"] == "history_backfilled"]
    assert done["future_points"] == 2


def test_non_finite_zero_negative_or_boolean_navs_are_not_points(tmp_path: Path):
    """Only a finite NAV > 0 is a point; a numeric string is a number (parse.number)."""
    logs = _logs(
        tmp_path,
        nav_jsonl=b"\n".join(
            [
                b'{"t": 1000, "nav": 0}',
                b'{"t": 1001, "nav": -5}',
                b'{"t": 1002, "nav": true}',
                b'{"t": 1003, "nav": 1e400}',
                b'{"t": 1004, "nav": NaN}',
                b'{"t": 1005, "nav": "12.5"}',
                b'{"t": 0, "nav": 3}',
                b'{"t": true, "nav": 3}',
            ]
        ),
    )
    store = HistoryStore(tmp_path / "h.sqlite")
    assert backfill(store, logs, now=NOW) == 1
    assert store.navs() == [(1005.0, 12.5)]


# --- files that are not files (probe t2) ------------------------------------------------------


def _backfill_within(store: HistoryStore, logs: Path, timeout_s: float = 3.0) -> int | None:
    """The back-fill's result, or None when it did not return within `timeout_s`."""
    result: list[int] = []
    worker = threading.Thread(target=lambda: result.append(backfill(store, logs)), daemon=True)
    worker.start()
    worker.join(timeout_s)
    return result[0] if result else None


def test_a_fifo_is_refused_without_blocking_and_the_other_file_still_imported(tmp_path: Path):
    """A FIFO as nav.jsonl never blocks the history thread: one log line, nav_log.json kept."""
    logs = _logs(tmp_path, nav_log_json=json.dumps([{"t": 100.0, "nav": 10.0}]).encode())
    os.mkfifo(logs / "nav.jsonl")
    store = HistoryStore(tmp_path / "h.sqlite")
    with capture_logs() as seen:
        assert _backfill_within(store, logs) == 1
    skipped = [e for e in seen if e["event"] == "history_backfill_skipped"]
    assert [(e["file"], e["reason"]) for e in skipped] == [
        (str(logs / "nav.jsonl"), "not a regular file")
    ]
    with capture_logs() as again:  # while running: not read again, not logged again
        assert backfill(store, logs, new_files_only=True) == 0
    assert again == []


def test_a_symlink_to_a_device_is_refused(tmp_path: Path):
    """A symlink to a device (/dev/zero would be read forever) is refused, not read: /dev/null
    stands in for it so that a regression cannot eat the memory of the test run."""
    logs = _logs(tmp_path, nav_jsonl=_lines({"t": 100.0, "nav": 10.0}))
    os.symlink("/dev/null", logs / "nav_log.json")
    store = HistoryStore(tmp_path / "h.sqlite")
    with capture_logs() as seen:
        assert backfill(store, logs) == 1
    events = [(e["event"], Path(e["file"]).name) for e in seen]
    assert ("history_backfill_skipped", "nav_log.json") in events
    assert ("history_backfilled", "nav_log.json") not in events


def test_a_file_over_the_cap_is_refused_unread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The cap holds years of NAV (a 250 MB nav.jsonl is accepted); a file over it is refused."""
    assert backfill_module.MAX_BYTES >= 250 * 10**6
    logs = _logs(tmp_path, nav_jsonl=_lines(*({"t": 100.0 + i, "nav": 10.0} for i in range(50))))
    monkeypatch.setattr(backfill_module, "MAX_BYTES", 1000)
    store = HistoryStore(tmp_path / "h.sqlite")
    with capture_logs() as seen:
        assert backfill(store, logs) == 0
    (skipped,) = [e for e in seen if e["event"] == "history_backfill_skipped"]
    assert "1000-byte cap" in skipped["reason"]


# --- tolerant decoding (probe t6) ---------------------------------------------------------------


def _nav_log_rows(n: int) -> list[dict]:
    return [{"t": NOW - 3600 * (n - i), "nav": 3000.0 + i, "unrealized_pnl": 0.0} for i in range(n)]


def test_a_nan_in_nav_log_json_costs_one_value_not_the_file(tmp_path: Path):
    """Python's json.dump writes NaN: that value is missing, every point is kept."""
    rows = _nav_log_rows(48)
    rows[10]["unrealized_pnl"] = float("nan")
    rows[11]["nav"] = float("inf")
    logs = _logs(tmp_path, nav_log_json=json.dumps(rows).encode())
    store = HistoryStore(tmp_path / "h.sqlite")
    with capture_logs() as seen:
        assert backfill(store, logs, now=NOW) == 47
    points = store.points()
    assert points[10].unrealized_pnl_usd is None and points[10].nav_usd == 3010.0
    (done,) = [e for e in seen if e["event"] == "history_backfilled"]
    assert (done["points"], done["unusable_rows"]) == (47, 1)


def test_bad_lines_of_nav_jsonl_are_skipped_counted_and_logged_once(tmp_path: Path):
    """Each bad line is skipped; the good ones (a NaN token in one is a null) are kept."""
    data = b"".join(
        [
            b'{"t": 100.0, "nav": 10.0}\n',
            b'{"t": 160.0, "nav": 11.0, "upnl": NaN}\n',
            b'{"t": 170.0, "nav": 11\xff.0}\n',
            b'{"t": 220.0, "nav"\n',
            b"\n",
            b'{"t": 280.0, "nav": 12.0, "note": "\\udcff"}\n',
        ]
    )
    logs = _logs(tmp_path, nav_jsonl=data)
    store = HistoryStore(tmp_path / "h.sqlite")
    with capture_logs() as seen:
        assert backfill(store, logs, now=NOW) == 3
    assert [t for t, _ in store.navs()] == [100.0, 160.0, 280.0]
    (done,) = [e for e in seen if e["event"].startswith("history_backfill")]
    assert (done["event"], done["skipped_lines"]) == ("history_backfilled", 2)


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("nav_log.json", b'[{"t": 100.0, "nav": "\xff"}]'),  # not UTF-8
        ("nav_log.json", b'[{"t": 100.0, "nav": 10.0}'),  # cut short
        ("nav_log.json", b'{"t": 100.0, "nav": 10.0}'),  # not a list
        ("nav.jsonl", b"\x00\x01\x02\n\xff\xfe\n"),  # not one line of JSON
    ],
)
def test_a_file_that_cannot_be_decoded_is_a_failure_retried_once_it_changes(
    tmp_path: Path, name: str, data: bytes
):
    """Logged as a failure (not `points=0`), never marked imported: once it changes, even
    while running, it is imported; unchanged it is not read again while running."""
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / name).write_bytes(data)
    store = HistoryStore(tmp_path / "h.sqlite")
    with capture_logs() as seen:
        assert backfill(store, logs, now=NOW) == 0
    assert [(e["event"], e["file"]) for e in seen] == [
        ("history_backfill_failed", str(logs / name))
    ]
    with capture_logs() as again:
        assert backfill(store, logs, now=NOW, new_files_only=True) == 0
    assert again == []
    good = _lines({"t": 100.0, "nav": 10.0}) if name == "nav.jsonl" else b'[{"t": 100, "nav": 10}]'
    (logs / name).write_bytes(good)
    assert backfill(store, logs, now=NOW, new_files_only=True) == 1
    assert store.navs() == [(100.0, 10.0)]
