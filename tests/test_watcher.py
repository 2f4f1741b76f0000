"""The watcher with real inotify: which writes produce a batch, coalescing, and the safety nets."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers.polling import PollingObserver

from kpi_publisher.watcher import IN, InotifyReader, Watcher, _inotify_observer

pytestmark = pytest.mark.timeout(30)

WAIT_S = 3.0  # generous bound for an event to arrive on a loaded 2-core machine


def replace_into(path: Path, text: str) -> None:
    """The executor's atomic writer: temp file beside the target, then rename."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def drain(w: Watcher, quiet_s: float = 0.3) -> set[Path]:
    """Everything the watcher reports until it has been quiet for `quiet_s`."""
    seen: set[Path] = set()
    while batch := w.next_batch(quiet_s):
        seen |= batch
    return seen


def wait_for(w: Watcher, path: Path, timeout_s: float = WAIT_S) -> set[Path]:
    """Batches until one contains `path` (or the timeout); returns what was seen."""
    seen: set[Path] = set()
    deadline = time.monotonic() + timeout_s
    while path not in seen and time.monotonic() < deadline:
        seen |= w.next_batch(deadline - time.monotonic())
    return seen


@pytest.fixture
def layout(tmp_path: Path) -> dict[str, Path]:
    state = tmp_path / "logs" / "state"
    cache = tmp_path / "logs" / "cache"
    state.mkdir(parents=True)
    cache.mkdir(parents=True)
    return {
        "state": state,
        "nav_state": state / "nav_state.json",
        "risk": state / "risk_snapshot.json",
        "fx": cache / "coingecko_cache.json",
    }


@pytest.fixture
def watcher(layout: dict[str, Path]) -> Iterator[Watcher]:
    w = Watcher([layout["nav_state"], layout["risk"], layout["fx"]], debounce_s=0.05, rescan_s=60.0)
    w.start()
    yield w
    w.stop()


def test_rename_into_place_is_reported(watcher: Watcher, layout: dict[str, Path]) -> None:
    """The executor's temp-file + os.replace produces a batch naming the target."""
    replace_into(layout["nav_state"], '{"nav_usd": 1}')
    assert layout["nav_state"] in wait_for(watcher, layout["nav_state"])


def test_rename_from_another_directory_is_reported(
    watcher: Watcher, layout: dict[str, Path], tmp_path: Path
) -> None:
    """A temp file written elsewhere and renamed in arrives as "created" only; still a change."""
    elsewhere = tmp_path / "staging"
    elsewhere.mkdir()
    (elsewhere / "nav_state.json").write_text('{"nav_usd": 3}')
    os.replace(elsewhere / "nav_state.json", layout["nav_state"])
    assert layout["nav_state"] in wait_for(watcher, layout["nav_state"])


def test_deleting_an_input_is_reported(watcher: Watcher, layout: dict[str, Path]) -> None:
    """A removed input is a change too: its source becomes missing."""
    replace_into(layout["risk"], "{}")
    wait_for(watcher, layout["risk"])
    drain(watcher)
    layout["risk"].unlink()
    assert layout["risk"] in wait_for(watcher, layout["risk"])


def test_in_place_write_is_reported_on_close_not_on_modify(
    watcher: Watcher, layout: dict[str, Path]
) -> None:
    """An in-place writer is reported when it closes the file, never while it is still writing."""
    replace_into(layout["risk"], "{}")
    wait_for(watcher, layout["risk"])
    drain(watcher)
    with layout["risk"].open("w") as fh:  # O_TRUNC on an existing file: no "created"
        fh.write('{"dd_frac": ')
        fh.flush()
        os.fsync(fh.fileno())
        assert watcher.next_batch(0.3) == frozenset()
        fh.write("0.1}")
    assert layout["risk"] in wait_for(watcher, layout["risk"])


def test_input_outside_the_state_dir_is_watched(watcher: Watcher, layout: dict[str, Path]) -> None:
    """The FX cache lives in ../cache; its directory is watched too (non-recursively)."""
    replace_into(layout["fx"], '{"usd_zar": 17.3}')
    assert layout["fx"] in wait_for(watcher, layout["fx"])


def test_temp_files_dot_files_outputs_and_strangers_trigger_nothing(
    watcher: Watcher, layout: dict[str, Path]
) -> None:
    """Only the configured inputs count: our own outputs never cause a rebuild (no feedback)."""
    state = layout["state"]
    for name in (
        "kpis_v7.json",
        "positions_v7.json",
        "kpis.prom",
        ".kpis_v7.json.123.abcd.tmp",
        "nav_state.json.tmp",
        ".hidden.json",
        "orders.jsonl",
    ):
        (state / name).write_text("{}")
    replace_into(state / "kpis_v7.json", "{}")
    assert drain(watcher) == set()


def test_burst_of_1000_writes_coalesces_into_few_batches(
    watcher: Watcher, layout: dict[str, Path]
) -> None:
    """A burst becomes a handful of batches, and the last write is inside the last one."""
    path = layout["nav_state"]

    def burst() -> None:
        for i in range(1000):
            replace_into(path, f'{{"seq": {i}}}')

    writer = threading.Thread(target=burst)
    batches: list[frozenset[Path]] = []
    started = time.monotonic()
    writer.start()
    while writer.is_alive():
        if batch := watcher.next_batch(0.2):
            batches.append(batch)
    writer.join()
    while batch := watcher.next_batch(0.3):
        batches.append(batch)
    elapsed_s = time.monotonic() - started  # watchdog may still be catching up after the writer
    assert batches, "the burst was not reported at all"
    assert all(b == frozenset({path}) for b in batches)
    # At most one batch per debounce window (plus the leading edge and the tail).
    assert len(batches) <= elapsed_s / watcher.debounce_s + 3
    assert len(batches) < 200


def test_state_dir_deleted_and_recreated_is_watched_again(
    layout: dict[str, Path],
) -> None:
    """After rm -rf + mkdir of the state dir, inotify events flow again (not just the rescan)."""
    w = Watcher([layout["nav_state"]], debounce_s=0.01, rescan_s=60.0)
    w.start()
    try:
        replace_into(layout["nav_state"], "{}")
        wait_for(w, layout["nav_state"])
        shutil.rmtree(layout["state"])
        layout["state"].mkdir()
        replace_into(layout["nav_state"], '{"after": 1}')
        assert layout["nav_state"] in wait_for(w, layout["nav_state"])
        assert w.restarts >= 1
        drain(w)
        # Events come from inotify now: the 60 s rescan cannot have produced this one.
        replace_into(layout["nav_state"], '{"after": 2}')
        assert layout["nav_state"] in wait_for(w, layout["nav_state"], timeout_s=2.0)
    finally:
        w.stop()


def test_dead_observer_is_restarted_and_events_resume(
    layout: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A handler exception kills a watchdog observer's dispatcher silently (an observer given
    by the caller); the liveness check rebuilds it."""
    died = threading.Event()
    monkeypatch.setattr(threading, "excepthook", lambda args: died.set())

    class Raising(FileSystemEventHandler):
        def dispatch(self, event: FileSystemEvent) -> None:
            raise RuntimeError("boom")

    w = Watcher(
        [layout["nav_state"]], debounce_s=0.01, rescan_s=0.2, observer_factory=_inotify_observer
    )
    w.start()
    try:
        observer = w.observer
        assert observer is not None and not isinstance(observer, InotifyReader)
        observer.schedule(Raising(), str(layout["state"]))
        replace_into(layout["nav_state"], '{"a": 1}')
        assert died.wait(WAIT_S), "the foreign handler did not kill the observer"
        observer.join(WAIT_S)
        assert not observer.is_alive()
        drain(w)  # the first write's path; the liveness check runs meanwhile
        replace_into(layout["nav_state"], '{"a": 2}')
        assert layout["nav_state"] in wait_for(w, layout["nav_state"])
        assert w.restarts >= 1
        assert w.observer is not observer and w.observer is not None
        assert w.observer.is_alive()
    finally:
        w.stop()


def test_our_handler_never_raises_and_keeps_the_observer_alive(
    watcher: Watcher, layout: dict[str, Path]
) -> None:
    """Even if recording a path fails, the handler swallows it and the observer survives."""
    # Every lookup now raises TypeError (watchdog's events and raw inotify events alike).
    watcher._by_key = watcher._by_name = None  # type: ignore[assignment]
    replace_into(layout["nav_state"], "{}")
    deadline = time.monotonic() + WAIT_S
    while watcher._handler_errors == 0 and time.monotonic() < deadline:
        watcher.next_batch(0.01)  # the events are read on this thread
    assert watcher._handler_errors > 0
    observer = watcher.observer
    assert observer is not None and observer.is_alive()


def test_events_the_handler_failed_to_record_are_logged_and_covered_by_the_rescan(
    layout: dict[str, Path],
) -> None:
    """A failure inside our handler (which must swallow it) is not silent: the next maintenance
    logs how many events were lost and why, and the rescan still reports the change."""
    w = Watcher([layout["nav_state"]], debounce_s=0.01, rescan_s=0.1)
    w.start()
    try:
        with capture_logs() as events:
            w._by_key = w._by_name = None  # type: ignore[assignment]  # every lookup raises
            replace_into(layout["nav_state"], '{"a": 1}')
            assert layout["nav_state"] in wait_for(w, layout["nav_state"])
        failed = [e for e in events if e["event"] == "watch_handler_failed"]
        assert failed, "the handler's failures were never logged"
        assert failed[0]["total"] >= 1
        assert "AttributeError" in failed[0]["reason"]
        assert failed[0]["log_level"] == "error"
    finally:
        w.stop()


def test_queue_overflow_warning_triggers_an_immediate_rescan(layout: dict[str, Path]) -> None:
    """watchdog's overflow WARNING is the only overflow signal; it makes the watcher rescan."""
    deaf = Watcher(
        [layout["nav_state"]],
        debounce_s=0.01,
        rescan_s=60.0,
        observer_factory=lambda: PollingObserver(timeout=3600),  # alive but never reports
    )
    deaf.start()
    try:
        replace_into(layout["nav_state"], '{"lost": true}')
        assert deaf.next_batch(0.3) == frozenset()
        logging.getLogger("watchdog.observers.inotify_c").warning(
            "Inotify queue overflowed; filesystem events were lost"
        )
        assert deaf.next_batch(WAIT_S) == frozenset({layout["nav_state"]})
    finally:
        deaf.stop()


def test_periodic_rescan_finds_a_change_inotify_missed(layout: dict[str, Path]) -> None:
    """The (inode, mtime, size) rescan is the net under lost events."""
    deaf = Watcher(
        [layout["nav_state"]],
        debounce_s=0.01,
        rescan_s=0.2,
        observer_factory=lambda: PollingObserver(timeout=3600),
    )
    deaf.start()
    try:
        replace_into(layout["nav_state"], '{"lost": true}')
        assert layout["nav_state"] in wait_for(deaf, layout["nav_state"])
    finally:
        deaf.stop()


def test_falls_back_to_polling_when_inotify_is_exhausted(layout: dict[str, Path]) -> None:
    """EMFILE from Observer() (no inotify instances left) switches to PollingObserver."""

    def exhausted() -> PollingObserver:
        raise OSError(errno.EMFILE, "Too many open files")

    w = Watcher([layout["nav_state"]], debounce_s=0.01, rescan_s=60.0, observer_factory=exhausted)
    w.start()
    try:
        assert w.polling
        replace_into(layout["nav_state"], '{"polled": 1}')
        assert layout["nav_state"] in wait_for(w, layout["nav_state"])
        with layout["nav_state"].open("w") as fh:  # in place: polling sees it as modified
            fh.write('{"polled": 22}')
        assert layout["nav_state"] in wait_for(w, layout["nav_state"])
    finally:
        w.stop()


def test_interrupt_ends_a_wait_at_once(watcher: Watcher) -> None:
    """A signal's interrupt() returns next_batch promptly (shutdown stays under a second)."""
    threading.Timer(0.1, watcher.interrupt).start()
    started = time.monotonic()
    assert watcher.next_batch(10.0) == frozenset()
    assert time.monotonic() - started < 5.0


def test_events_are_read_on_the_callers_thread(layout: dict[str, Path]) -> None:
    """By default no thread stands between inotify and the pass: starting the watcher starts
    no thread, and a rename is reported by next_batch on this thread."""
    before = threading.active_count()
    w = Watcher([layout["nav_state"]], debounce_s=0.01, rescan_s=60.0)
    w.start()
    try:
        assert isinstance(w.observer, InotifyReader)
        assert threading.active_count() == before
        replace_into(layout["nav_state"], '{"a": 1}')
        assert layout["nav_state"] in wait_for(w, layout["nav_state"])
    finally:
        w.stop()


def test_inotify_queue_overflow_triggers_an_immediate_rescan(layout: dict[str, Path]) -> None:
    """IN_Q_OVERFLOW read from the descriptor (the events it stands for are lost) rescans."""
    w = Watcher([layout["nav_state"]], debounce_s=0.01, rescan_s=60.0)
    w.start()
    try:
        reader = w.observer
        assert isinstance(reader, InotifyReader)
        real_read = reader.read
        reader.read = lambda: [(None, IN.IN_Q_OVERFLOW, b"") for _ in real_read()]  # type: ignore[method-assign]
        replace_into(layout["nav_state"], '{"lost": true}')
        assert layout["nav_state"] in wait_for(w, layout["nav_state"])
    finally:
        w.stop()


def test_renames_are_not_held_back_for_move_pairing(layout: dict[str, Path]) -> None:
    """watchdog's 0.5 s MOVED_FROM pairing delay is off in a threaded observer too: under load
    it delayed renames. (The default reader never pairs moves.)"""
    watcher = Watcher([layout["nav_state"]], observer_factory=_inotify_observer, rescan_s=60.0)
    watcher.start()
    observer = watcher.observer
    assert observer is not None and not isinstance(observer, InotifyReader)
    delays = [
        emitter._inotify._move_event_grouper._queue.delay  # type: ignore[attr-defined]
        for emitter in observer.emitters
    ]
    assert delays and all(d == 0.0 for d in delays)
    watcher.stop()


def test_state_dir_symlink_re_pointed_is_followed(tmp_path: Path) -> None:
    """A state dir that is a symlink (e.g. a release switch) is watched where it points now."""
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    link = tmp_path / "state"
    link.symlink_to(tmp_path / "a")
    nav = link / "nav_state.json"
    w = Watcher([nav], debounce_s=0.01, rescan_s=0.2)
    w.start()
    try:
        replace_into(nav, "{}")
        assert nav in wait_for(w, nav)
        (tmp_path / "next").symlink_to(tmp_path / "b")
        os.replace(tmp_path / "next", link)
        replace_into(tmp_path / "b" / "nav_state.json", '{"b": 1}')
        assert nav in wait_for(w, nav)
        drain(w)
        assert w.restarts >= 1
        assert w._watched.keys() == {os.path.realpath(tmp_path / "b")}
        replace_into(tmp_path / "b" / "nav_state.json", '{"b": 2}')
        assert nav in wait_for(w, nav)
    finally:
        w.stop()


def test_an_observer_that_cannot_start_is_retried_at_the_rescan_pace(
    layout: dict[str, Path],
) -> None:
    """No busy loop when watching keeps failing; the rescan still reports changes."""
    attempts = 0

    def refused() -> PollingObserver:
        nonlocal attempts
        attempts += 1
        raise OSError(errno.EACCES, "Permission denied")

    w = Watcher([layout["nav_state"]], debounce_s=0.01, rescan_s=0.1, observer_factory=refused)
    w.start()
    try:
        replace_into(layout["nav_state"], '{"seen": "by rescan"}')
        assert layout["nav_state"] in wait_for(w, layout["nav_state"])
        started = time.monotonic()
        drain(w, quiet_s=0.5)
        elapsed_s = time.monotonic() - started
        assert w.observer is None
        assert attempts <= (elapsed_s + 1.0) / 0.1 + 2  # one try per rescan, not a spin
    finally:
        w.stop()


def test_rescan_does_not_re_report_what_events_already_delivered(tmp_path: Path) -> None:
    """A change taken from the events is not found again by the next periodic rescan (a
    spurious batch would open a debounce window that delays the next real change)."""
    target = tmp_path / "nav_state.json"
    target.write_bytes(b"{}")
    watcher = Watcher([target], debounce_s=0.01, rescan_s=60.0)
    watcher.start()
    try:
        tmp = tmp_path / ".nav_state.json.tmp"
        tmp.write_bytes(b'{"nav": 1}')
        os.replace(tmp, target)
        batch: frozenset[Path] = frozenset()
        deadline = time.monotonic() + 10.0
        while target not in batch and time.monotonic() < deadline:
            batch = watcher.next_batch(0.5)
        assert target in batch
        assert watcher.rescan() == set()
        target.write_bytes(b'{"nav": 22}')  # a change no event has delivered yet
        assert watcher.rescan() == {target}
    finally:
        watcher.stop()


def test_a_change_whose_event_waits_in_the_debounce_window_is_not_reported_as_missed(
    layout: dict[str, Path],
) -> None:
    """The executor writes two files back to back: the first is a leading-edge batch, the
    second's event waits out the debounce window. A rescan that runs meanwhile finds the
    second unread, but its event is not lost: no `rescan_found_changes` (the line tells an
    operator that inotify dropped events; it was logged every rescan under steady writes)."""
    nav, risk = layout["nav_state"], layout["risk"]
    w = Watcher([nav, risk], debounce_s=0.5, rescan_s=60.0)
    w.start()
    try:
        replace_into(nav, "{}")
        assert nav in wait_for(w, nav)
        with capture_logs() as events:
            replace_into(risk, "{}")  # inside the debounce window of the batch just taken
            time.sleep(0.1)  # its event is queued (and maybe already pumped)
            w._next_maintain = 0.0  # the periodic rescan is due now
            assert risk in wait_for(w, risk)
        assert [e for e in events if e["event"] == "rescan_found_changes"] == []
        risk.write_text('{"x": 1}')  # an in-place change...
        w._pending.clear()  # ...whose event is lost
        w._pump = lambda: None  # type: ignore[method-assign]  # and stays lost
        with capture_logs() as events:
            w._next_maintain = 0.0
            assert risk in wait_for(w, risk)
        found = [e for e in events if e["event"] == "rescan_found_changes"]
        assert [f["paths"] for f in found] == [[str(risk)]]
    finally:
        w.stop()


def test_outputs_given_to_the_watcher_report_writes_and_follow_a_new_out_dir(
    layout: dict[str, Path], tmp_path: Path
) -> None:
    """The publisher's outputs are watched so another writer is seen: a rename onto one and an
    in-place write to one are reported; after set_outputs, the new out dir is watched."""
    kpis = layout["state"] / "kpis_v7.json"
    w = Watcher([layout["nav_state"]], debounce_s=0.05, rescan_s=60.0, outputs=[kpis])
    w.start()
    try:
        replace_into(kpis, "{}")
        assert kpis in wait_for(w, kpis)
        with kpis.open("w") as fh:
            fh.write('{"foreign": true}')
        assert kpis in wait_for(w, kpis)
        other = tmp_path / "out"
        other.mkdir()
        moved = other / "kpis_v7.json"
        w.set_outputs([moved])
        drain(w)
        replace_into(moved, "{}")
        assert moved in wait_for(w, moved)
        replace_into(kpis, "{}")  # the old output name is no longer ours to watch
        assert kpis not in drain(w)
        replace_into(layout["nav_state"], "{}")  # inputs are unaffected
        assert layout["nav_state"] in wait_for(w, layout["nav_state"])
    finally:
        w.stop()


def test_own_output_renames_never_open_a_debounce_window(
    layout: dict[str, Path],
) -> None:
    """Events of the publisher's own renames are dropped before they count as a batch: an input
    change right after a publish is a leading edge, handed out at once. (With a 5 s debounce, a
    window opened by the publisher's own rename would hold the input back past this wait.) A
    write the predicate does not call ours still comes through."""
    kpis = layout["state"] / "kpis_v7.json"
    ours = {"flag": True}
    w = Watcher([layout["nav_state"]], debounce_s=5.0, rescan_s=60.0, outputs=[kpis])
    w.set_own_outputs(lambda path: path == kpis and ours["flag"])
    w.start()
    try:
        replace_into(kpis, "{}")  # what a publish does
        assert w.next_batch(0.2) == frozenset()  # dropped: no batch, no window
        replace_into(layout["nav_state"], "{}")
        started = time.monotonic()
        assert w.next_batch(4.0) == frozenset({layout["nav_state"]})
        assert time.monotonic() - started < 2.0  # a leading edge, not the end of a window
        ours["flag"] = False  # now someone else's file
        time.sleep(5.1)  # past the window of that input batch
        replace_into(kpis, '{"foreign": true}')
        assert kpis in w.next_batch(1.0)
    finally:
        w.stop()
