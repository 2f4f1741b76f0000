"""The history writes into the out dir only while the daemon's lock is on it. The daemon checks
its out-dir lock before each publish (an out dir replaced by a symlink to another desk's out dir
is never published into), but the history's thread wrote nav_history_v7.json and removed it
through the path with no such check: a late back-fill, an idle retry or a history file replaced
under it wrote this desk's curve into the other desk's out dir, or removed the other desk's
curve. Now the recorder asks `may_write(publish_dir)` (the daemon's `DaemonLock.holds`) first,
holds the write back with one `history_publish_held` line, and makes it once the lock is on the
directory at the path again, with the whole curve."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from structlog.testing import capture_logs

from kpi_publisher.contract import NAV_HISTORY_FILE
from kpi_publisher.daemon import Daemon as LoopDaemon
from kpi_publisher.history import recorder as recorder_module
from kpi_publisher.history import store as store_module
from kpi_publisher.history.recorder import HistoryRecorder
from kpi_publisher.history.store import HistoryStore
from kpi_publisher.lock import DaemonLock
from kpi_publisher.run import history_guard
from tests.history.daemons import Daemon, Desk, curve, published, wait_for

pytestmark = pytest.mark.timeout(60)

THEIRS = b'{"another desk": "its curve"}'


def _arrive(recorder: HistoryRecorder, t: float, nav: float) -> None:
    recorder.observe(published(t, nav))
    time.sleep(0.06)
    assert recorder.wait_idle(10)


def test_a_recorder_that_may_not_write_leaves_the_file_and_writes_the_curve_once_it_may(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Refused, no rebuild or idle retry touches the file there (one `history_publish_held`
    line per run of refusals) while the block is still computed; allowed, the next idle retry
    writes the whole curve, with no new NAV needed."""
    monkeypatch.setattr(recorder_module, "REFRESH_S", 0.05)
    (tmp_path / NAV_HISTORY_FILE).write_bytes(THEIRS)
    allowed = {"now": False}
    asked: set[Path] = set()

    def may_write(publish_dir: Path) -> bool:
        asked.add(publish_dir)
        return allowed["now"]

    store = HistoryStore(tmp_path / "h.sqlite")
    recorder = HistoryRecorder(store, tmp_path, None, fsync=False, may_write=may_write)
    now = time.time()
    with capture_logs() as logs:
        recorder.start()
        try:
            for i in range(3):
                _arrive(recorder, now - 180 + 60 * i, 1000.0 + i)
            time.sleep(0.3)  # a few idle retries, refused too
            assert (tmp_path / NAV_HISTORY_FILE).read_bytes() == THEIRS
            assert recorder.performance is not None
            assert recorder.performance["history"]["points"] == 3
            allowed["now"] = True
            wait_for(lambda: curve(tmp_path) == [1000.0, 1001.0, 1002.0], 10)
            allowed["now"] = False  # a second run of refusals: logged again, once
            (tmp_path / NAV_HISTORY_FILE).write_bytes(THEIRS)
            _arrive(recorder, now, 1003.0)
            time.sleep(0.3)
            assert (tmp_path / NAV_HISTORY_FILE).read_bytes() == THEIRS
        finally:
            recorder.stop()
    assert [e["event"] for e in logs].count("history_publish_held") == 2
    assert "history_failed" not in [e["event"] for e in logs]
    assert asked == {tmp_path}


def test_a_recorder_gone_off_removes_the_curve_there_only_once_it_may(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its history file held by another publisher, the recorder is off and removes the curve
    its out dir has from before; refused, it leaves the file there (it may be another desk's)
    and removes it at an idle retry once allowed."""
    monkeypatch.setattr(store_module, "PAUSE_RETRY_S", 60.0)  # the holder keeps it meanwhile
    monkeypatch.setattr(recorder_module, "REFRESH_S", 0.05)
    path, out = tmp_path / "h.sqlite", tmp_path / "out"
    out.mkdir()
    (out / NAV_HISTORY_FILE).write_bytes(THEIRS)
    holder = HistoryStore(path)
    assert holder.open()
    allowed = {"now": False}
    store = HistoryStore(path)
    recorder = HistoryRecorder(store, out, None, fsync=False, may_write=lambda _dir: allowed["now"])
    with capture_logs() as logs:
        recorder.start()
        try:
            assert recorder.wait_idle(10)
            time.sleep(0.3)  # a few idle retries, refused too
            assert (out / NAV_HISTORY_FILE).read_bytes() == THEIRS
            allowed["now"] = True
            wait_for(lambda: not (out / NAV_HISTORY_FILE).exists(), 10)
        finally:
            recorder.stop()
            holder.close()
    events = [e["event"] for e in logs]
    assert events.count("history_locked") == 1
    assert events.count("history_publish_held") == 1
    assert events.count("history_curve_removed") == 1


def test_the_daemon_s_guard_is_its_out_dir_lock_on_the_directory_at_the_path(
    tmp_path: Path,
) -> None:
    """`run`'s `may_write`: yes with no lock; with one, only for the directory locked while it
    is the one at the path (not through a symlink put there, not a new directory until the
    daemon locks it)."""
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    ours.mkdir()
    theirs.mkdir()
    daemon = SimpleNamespace(out_lock=None)
    may_write = history_guard(cast(LoopDaemon, daemon))
    assert may_write(ours) and may_write(theirs)
    out_lock = DaemonLock()
    out_lock.hold(ours, tmp_path / "state", on_held=lambda _exc: None)
    daemon.out_lock = cast(Any, out_lock)
    try:
        assert may_write(ours) and not may_write(theirs)
        ours.rename(tmp_path / "ours.old")
        ours.symlink_to(theirs)
        assert not may_write(ours)
        ours.unlink()
        ours.mkdir()
        assert not may_write(ours)
        out_lock.move(ours)  # what the daemon's next pass does before it publishes
        assert may_write(ours)
    finally:
        held = out_lock._held  # a DaemonLock lives as long as its daemon: no release of its own
        if held is not None:
            held.release()


def _replace_with_a_copy(path: Path) -> None:
    """The history file replaced under the daemon by a copy of itself (a restore from a
    backup): its recorder loads the file now at the path and rebuilds the curve at once."""
    copy = path.with_name(path.name + ".copy")
    with (
        contextlib.closing(sqlite3.connect(path)) as source,
        contextlib.closing(sqlite3.connect(copy)) as target,
    ):
        source.backup(target)
    os.replace(copy, path)


def test_a_daemon_whose_out_dir_became_a_link_to_another_desk_never_writes_its_curve_there(
    tmp_path: Path,
) -> None:
    """The real repro: desk A's out dir made a symlink to desk B's, which B's daemon holds,
    then A's history file replaced (A's recorder rebuilds at its next idle retry). B's curve
    stays B's; A logs one `history_publish_held`. A directory of A's own at the path again, A's
    next NAV is published with its whole curve there."""
    a, b = Desk.make(tmp_path / "a", 1000.0), Desk.make(tmp_path / "b", 2000.0)
    history_a = tmp_path / "a.sqlite"
    daemon_a = Daemon(a, history_a, retry_s=0.3)
    daemon_b = Daemon(b, tmp_path / "b.sqlite")
    try:
        daemon_a.wait_event("publish")
        daemon_b.wait_event("publish")
        a.move_nav(1001.0)
        b.move_nav(2001.0)
        a.out.rename(tmp_path / "a" / "out.old")
        a.out.symlink_to(b.out)
        _replace_with_a_copy(history_a)
        daemon_a.wait_event("history_file_changed", change="replaced")
        daemon_a.wait_event("history_publish_held")
        time.sleep(1.0)  # a few more idle retries
        assert b.curve() == [2000.0, 2001.0]
        a.out.unlink()
        a.out.mkdir()
        a.move_nav(1002.0)
        assert a.curve() == [1000.0, 1001.0, 1002.0]
        assert b.curve() == [2000.0, 2001.0]
        assert daemon_a.stop() == 0
        assert daemon_b.stop() == 0
    finally:
        daemon_a.kill()
        daemon_b.kill()
    assert len(daemon_a.named("history_publish_held")) == 1
    assert not daemon_a.named("history_failed")
