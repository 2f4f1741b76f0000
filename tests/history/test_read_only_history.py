"""A history file that takes no writes. Before, a file that could be read but not opened for
writing (a read-only mount) paused the store, and the recorder published the new points alone
as the history: 576 stored points (2,000.0 -> 2,057.5) and five new NAVs gave an `all` PnL of
45.50 from 2,057.5 over 5 points, and nav_history_v7.json was overwritten with 6 points (right:
104.00 from 2,000.0 over 581). Now the file is read as it is, the whole curve is published with
the new points kept in memory, and they are saved once it takes writes again. A file that
cannot even be read publishes nothing short in its place.

The read-only open names the file in a URI: it quoted the path's text, which a name that is not
UTF-8 (surrogate escapes, as the config reads it) does not have. The UnicodeEncodeError escaped
`HistoryStore.open()`: no pause, a `history_failed` traceback per NAV batch, and no stored curve
published. Every read-only case here runs in such a directory too."""

from __future__ import annotations

import errno
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from structlog.testing import capture_logs

from kpi_publisher.contract import NAV_HISTORY_FILE
from kpi_publisher.history.recorder import HistoryRecorder
from kpi_publisher.history.store import HistoryStore, Point
from tests.history.daemons import Daemon, Desk, published, require_mount_namespace, stored, wait_for

pytestmark = pytest.mark.timeout(60)

STORED = 576  # two days of 5-minute points, 2,000.0 -> 2,057.5
NEW_NAVS = (2100.0, 2101.0, 2102.0, 2103.0, 2104.0)


def two_days(path: Path, end: float) -> None:
    """The history the probe found on its read-only mount, closed cleanly (no -wal, no -shm)."""
    store = HistoryStore(path)
    store.extend(Point(end - 300.0 * (STORED - i), 2000.0 + i * 0.1) for i in range(STORED))
    store.close()


def curve_points(out: Path) -> int:
    points: int = orjson.loads((out / NAV_HISTORY_FILE).read_bytes())["points"]
    return points


@pytest.fixture
def refused(monkeypatch: pytest.MonkeyPatch) -> Iterator[set[str]]:
    """The opens that fail as on a read-only mount: "write" (the file takes no writes), and
    "read" too (it cannot be read either). Emptied, the file works again."""
    modes: set[str] = set()
    attach = HistoryStore._attach

    def failing(self: HistoryStore, *, read_only: bool = False) -> None:
        if ("read" if read_only else "write") in modes:
            raise OSError(errno.EROFS, "Read-only file system", str(self.path))
        attach(self, read_only=read_only)

    monkeypatch.setattr(HistoryStore, "_attach", failing)
    yield modes


def _arrive(recorder: HistoryRecorder, now: float, navs: tuple[float, ...]) -> None:
    for i, nav in enumerate(navs):
        recorder.observe(published(now + i, nav))
        time.sleep(0.06)
        assert recorder.wait_idle(10)


def _pause_over(recorder: HistoryRecorder) -> None:
    recorder.store._paused_until = time.monotonic()  # PAUSE_RETRY_S has passed


def test_a_history_that_takes_no_writes_is_published_whole_and_saved_once_it_does(
    tmp_path: Path, hist: Path, refused: set[str]
):
    """The whole stored curve plus the new points, one `history_read_only` line, the file as it
    was; once it takes writes, the kept points are saved and a restart shows the same curve."""
    now = time.time()
    path = hist / "h.sqlite"
    two_days(path, now - 60.0)
    refused.add("write")
    recorder = HistoryRecorder(HistoryStore(path), tmp_path, None, fsync=False)
    with capture_logs() as logs:
        recorder.start()
        try:
            assert recorder.wait_idle(10)
            _arrive(recorder, now, NEW_NAVS)
            block = recorder.performance
            assert block is not None
            assert (block["history"]["points"], curve_points(tmp_path)) == (STORED + 5, STORED + 5)
            everything = block["windows"]["all"]
            assert (everything["pnl_usd"], everything["start_nav_usd"]) == (104.0, 2000.0)
            assert len(stored(path)) == STORED  # nothing was written
            refused.clear()
            _pause_over(recorder)
            _arrive(recorder, now + 10, (2105.0,))
            assert recorder.performance is not None
            assert recorder.performance["history"]["points"] == STORED + 6
        finally:
            recorder.stop()
    events = [e["event"] for e in logs]
    assert events.count("history_read_only") == 1
    assert "history_paused" not in events and "history_unsaved_lost" not in events
    assert "history_failed" not in events
    assert events.index("history_read_only") < events.index("history_resumed")
    assert stored(path) == [2000.0 + i * 0.1 for i in range(STORED)] + [*NEW_NAVS, 2105.0]


def test_a_history_that_cannot_be_read_publishes_nothing_short_in_its_place(
    tmp_path: Path, refused: set[str]
):
    """Unreadable, the file holds points the recorder does not know: no performance block and
    nav_history_v7.json left as it was (never the new points alone), one `history_withheld`
    line; readable again, the whole curve is published and the kept points saved."""
    now = time.time()
    path = tmp_path / "h.sqlite"
    two_days(path, now - 60.0)
    first = HistoryRecorder(HistoryStore(path), tmp_path, None, fsync=False)
    first.start()
    assert first.wait_idle(10)
    first.stop()
    before = (tmp_path / NAV_HISTORY_FILE).read_bytes()
    refused.update({"write", "read"})
    recorder = HistoryRecorder(HistoryStore(path), tmp_path, None, fsync=False)
    with capture_logs() as logs:
        recorder.start()
        try:
            assert recorder.wait_idle(10)
            _arrive(recorder, now, NEW_NAVS)
            assert recorder.performance is None
            assert (tmp_path / NAV_HISTORY_FILE).read_bytes() == before
            refused.clear()
            _pause_over(recorder)
            _arrive(recorder, now + 10, (2105.0,))
            assert recorder.performance is not None
            assert recorder.performance["history"]["points"] == STORED + 6
            assert recorder.performance["windows"]["all"]["start_nav_usd"] == 2000.0
            assert curve_points(tmp_path) == STORED + 6
        finally:
            recorder.stop()
    assert [e["event"] for e in logs].count("history_withheld") == 1
    assert len(stored(path)) == STORED + 6


@pytest.mark.parametrize(
    "error",
    [
        UnicodeEncodeError("utf-8", "\udcff", 0, 1, "surrogates not allowed"),
        ValueError("embedded null byte"),
        LookupError("a failure no one planned for"),
    ],
    ids=["not-utf8", "nul", "unplanned"],
)
def test_no_failure_to_open_the_file_escapes_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: Exception
):
    """Whatever opening the file raises, in the write open and then the read-only one,
    `open()` says False with one `history_paused` line naming it, stays quiet through the
    pause, and opens the file at the first try after it."""
    path = tmp_path / "h.sqlite"
    two_days(path, time.time())
    connect = sqlite3.connect
    failing = [error]

    def flaky(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        if failing:
            raise failing[0]
        return connect(*args, **kwargs)

    monkeypatch.setattr(sqlite3, "connect", flaky)
    store = HistoryStore(path)
    with capture_logs() as logs:
        assert not store.open()
        assert not store.open()
        failing.clear()
        store._paused_until = time.monotonic()  # PAUSE_RETRY_S has passed
        assert store.open() and not store.read_only
    assert [e["event"] for e in logs] == ["history_paused", "history_resumed"]
    assert str(error) in logs[0]["reason"]
    assert store.count() == STORED
    store.close()


# The history dir mounted read-only for the daemon (its own user and mount namespaces) until the
# test makes `$2` exist; then it is made writable again under the running daemon.
READ_ONLY_MOUNT = """
hist="$1"; writable="$2"; shift 2
mount --bind "$hist" "$hist" && mount -o remount,bind,ro "$hist" || exit 97
"$@" &
child=$!
trap 'kill -TERM "$child"' TERM INT
while [ ! -e "$writable" ] && kill -0 "$child" 2>/dev/null; do sleep 0.05; done
mount -o remount,bind,rw "$hist"
status=0
wait "$child" || status=$?
while kill -0 "$child" 2>/dev/null; do wait "$child"; status=$?; done
exit "$status"
"""


def _performance(desk: Desk) -> dict[str, Any]:
    block: dict[str, Any] = desk.kpis()["performance"]
    return block


def test_a_daemon_on_a_read_only_mount_publishes_the_whole_history(tmp_path: Path, hist: Path):
    """The probe's case with a real read-only mount (EROFS): `hedge-kpi run` publishes the 576
    stored points plus the five new NAVs, PnL 104.00 from 2,000.0; nav_history_v7.json has 581
    points. Made writable under it, the kept points are saved within a retry."""
    require_mount_namespace()
    writable = tmp_path / "writable"
    path = hist / "h.sqlite"
    two_days(path, time.time() - 60.0)
    desk = Desk.make(tmp_path / "desk", NEW_NAVS[0])
    wrap = [
        "unshare",
        "-U",
        "-r",
        "-m",
        "sh",
        "-c",
        READ_ONLY_MOUNT,
        "sh",
        str(hist),
        str(writable),
    ]
    daemon = Daemon(desk, path, retry_s=0.5, wrap=wrap)
    try:
        wait_for(lambda: desk.kpis()["nav"]["nav_usd"] == NEW_NAVS[0])
        for nav in NEW_NAVS[1:]:
            desk.move_nav(nav)
        wait_for(
            lambda: _performance(desk)["history"]["last_t"] == desk.kpis()["nav"]["updated_at"]
        )
        assert _performance(desk)["history"]["points"] == STORED + 5
        everything = _performance(desk)["windows"]["all"]
        assert (everything["pnl_usd"], everything["start_nav_usd"]) == (104.0, 2000.0)
        assert desk.curve()[0] == 2000.0 and desk.curve()[-1] == NEW_NAVS[-1]
        wait_for(lambda: curve_points(desk.out) == STORED + 5)
        assert len(daemon.named("history_read_only")) == 1
        writable.touch()
        daemon.wait_event("history_resumed")
        wait_for(lambda: len(stored(path)) == STORED + 5)
        desk.move_nav(2105.0)
        wait_for(lambda: len(stored(path)) == STORED + 6)
    finally:
        assert daemon.stop() == 0
        daemon.kill()
    assert not [e for e in daemon.events if e.get("level") in ("error", "critical")]
    assert stored(path)[STORED:] == [*NEW_NAVS, 2105.0]
