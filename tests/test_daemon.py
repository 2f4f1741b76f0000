"""The daemon loop: scripted batches and an in-memory publisher for the rules, plus a handful of
runs with the real watcher (inotify) and the real atomic publisher."""

from __future__ import annotations

import errno
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import orjson
import pytest
from structlog.testing import capture_logs
from watchdog.events import FileSystemEvent, FileSystemEventHandler

from kpi_publisher import publish
from kpi_publisher.config import ConfigError, Settings
from kpi_publisher.contract import SOURCE_NAMES
from kpi_publisher.daemon import CrashLog, Daemon, crash_backoff_s, retry_delay_s, survival
from kpi_publisher.daemon.survival import Liveness
from kpi_publisher.pipeline import Outputs
from kpi_publisher.run import build_daemon
from kpi_publisher.watcher import InotifyReader, Watcher, _inotify_observer

pytestmark = pytest.mark.timeout(60)

T0 = 1_764_000_000.0  # the fake wall clock's start, epoch seconds
WAIT_S = 5.0  # bound for real-inotify tests on a loaded machine


# -- fakes at the seams -------------------------------------------------------------------------


class FakeClock:
    """Wall and monotonic clocks that move only when a scripted step waits."""

    def __init__(self) -> None:
        self.wall = T0
        self.mono = 1000.0

    def time(self) -> float:
        return self.wall

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.wall += seconds
        self.mono += seconds


Step = Callable[["ScriptedBatches", float], frozenset[Path]]


class ScriptedBatches:
    """A watcher that plays a script: each step may write files and returns a batch."""

    def __init__(self, clock: FakeClock, steps: Iterable[Step]) -> None:
        self.clock = clock
        self.steps = list(steps)
        self.timeouts: list[float] = []
        self.daemon: Daemon | None = None
        self.debounce_s = 0.05
        self.rescan_s = 2.0
        self.paths: list[Path] | None = None
        self.started = self.stopped = False

    def start(self) -> None:
        self.started = True

    def stop(self) -> None:
        self.stopped = True

    def interrupt(self) -> None:
        pass

    def set_paths(self, paths: Iterable[Path]) -> None:
        self.paths = list(paths)

    def next_batch(self, timeout_s: float) -> frozenset[Path]:
        self.timeouts.append(timeout_s)
        if not self.steps:
            assert self.daemon is not None
            self.daemon.request_stop()
            return frozenset()
        return self.steps.pop(0)(self, timeout_s)


def write(path: Path, doc: Any) -> Step:
    """Step: the executor renames a new version of `path` into place; reported at once."""

    def step(_: ScriptedBatches, __: float) -> frozenset[Path]:
        write_now(path, doc)
        return frozenset({path})

    return step


def write_raw(path: Path, data: bytes) -> Step:
    def step(_: ScriptedBatches, __: float) -> frozenset[Path]:
        path.write_bytes(data)
        return frozenset({path})

    return step


def idle(seconds: float | None = None) -> Step:
    """Step: nothing happens until the wait times out (or for `seconds`)."""

    def step(fake: ScriptedBatches, timeout_s: float) -> frozenset[Path]:
        fake.clock.advance(timeout_s if seconds is None else seconds)
        return frozenset()

    return step


def report(path: Path) -> Step:
    """Step: an event for `path` with no change to the file."""
    return lambda _, __: frozenset({path})


def write_now(path: Path, doc: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(orjson.dumps(doc))
    os.replace(tmp, path)


class MemoryPublisher:
    """Keeps what would have been published; `fail_with` makes the next calls raise."""

    def __init__(self) -> None:
        self.outputs: list[Outputs] = []
        self.fail_with: list[BaseException] = []

    def __call__(self, outputs: Outputs, out_dir: Path, *, fsync: bool, durability: str) -> None:
        if self.fail_with:
            raise self.fail_with.pop(0)
        self.outputs.append(outputs)

    @property
    def last(self) -> dict[str, Any]:
        return self.outputs[-1].kpis


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    state = tmp_path / "logs" / "state"
    state.mkdir(parents=True)
    return Settings(
        state_dir=state,
        out_dir=tmp_path / "out",
        fsync=False,
        heartbeat_s=5.0,
        retry_ms=100.0,
        debounce_ms=20.0,
        rescan_s=60.0,
    )


def nav_doc(nav_usd: float, ts: float = T0) -> dict[str, Any]:
    return {"nav_usd": nav_usd, "updated_at": ts}


def play(
    settings: Settings,
    steps: Iterable[Step],
    publisher: MemoryPublisher | None = None,
    **kwargs: Any,
) -> tuple[Daemon, ScriptedBatches, MemoryPublisher, list[dict[str, Any]], int]:
    """Run a daemon against a script; returns it, the fakes, the captured log events, the code."""
    clock = FakeClock()
    batches = ScriptedBatches(clock, steps)
    publisher = publisher if publisher is not None else MemoryPublisher()
    kwargs.setdefault("crash_log", CrashLog(settings.publish_dir.parent / "crashes.json"))
    daemon = Daemon(
        settings,
        batches=batches,
        publisher=publisher,
        clock=clock.time,
        monotonic=clock.monotonic,
        **kwargs,
    )
    batches.daemon = daemon
    with capture_logs() as events:
        code = daemon.run()
    # structlog types the captured events as MutableMapping
    return daemon, batches, publisher, cast(list[dict[str, Any]], events), code


def publishes(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["event"] == "publish"]


# -- rules, with fakes ------------------------------------------------------------------------


def test_publishes_once_at_start_before_any_event(settings: Settings) -> None:
    """The first publish happens at start-up, with no event, and names every source as new."""
    write_now(settings.state_dir / "nav_state.json", nav_doc(1000.0))
    _, batches, publisher, events, code = play(settings, [])
    assert code == 0
    assert [p["reason"] for p in publishes(events)] == ["start"]
    assert publisher.last["nav"]["nav_usd"] == 1000.0
    assert publisher.last["generated_at"] == T0
    assert publishes(events)[0]["changed"] == list(SOURCE_NAMES)  # every source, in order
    assert batches.started and batches.stopped


def test_publish_log_line_has_duration_changes_not_ok_and_seq(settings: Settings) -> None:
    """One log line per publish: duration_ms, changed sources, sources not ok, seq."""
    nav_state = settings.state_dir / "nav_state.json"
    write_now(nav_state, nav_doc(1000.0))
    _, _, _, events, _ = play(settings, [write(nav_state, nav_doc(1001.0))])
    line = publishes(events)[-1]
    assert line["seq"] == 2
    assert line["changed"] == ["nav_state"]
    assert line["not_ok"]["risk"] == "missing"
    assert "nav_state" not in line["not_ok"]
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0.0
    assert line["log_level"] == "info"


def test_a_change_is_published_with_its_new_content(settings: Settings) -> None:
    nav_state = settings.state_dir / "nav_state.json"
    write_now(nav_state, nav_doc(1000.0))
    _, _, publisher, events, _ = play(settings, [write(nav_state, nav_doc(2500.25))])
    assert [p["reason"] for p in publishes(events)] == ["start", "change"]
    assert publisher.last["nav"]["nav_usd"] == 2500.25


def test_an_event_without_a_content_change_publishes_nothing(settings: Settings) -> None:
    """A reported path whose (inode, mtime, size) did not change is not worth a publish."""
    nav_state = settings.state_dir / "nav_state.json"
    write_now(nav_state, nav_doc(1000.0))
    _, _, publisher, _, _ = play(settings, [report(nav_state), report(nav_state)])
    assert len(publisher.outputs) == 1


def test_heartbeat_publishes_with_no_events_so_ages_stay_current(settings: Settings) -> None:
    """With nothing changing, a publish still happens every heartbeat_s, ages recomputed."""
    write_now(settings.state_dir / "nav_state.json", nav_doc(1000.0, ts=T0 - 10.0))
    _, batches, publisher, events, _ = play(settings, [idle(), idle()])
    assert [p["reason"] for p in publishes(events)] == ["start", "heartbeat", "heartbeat"]
    assert batches.timeouts[:2] == [5.0, 5.0]
    assert [o.kpis["nav"]["age_s"] for o in publisher.outputs] == [10.0, 15.0, 20.0]
    assert [o.kpis["generated_at"] for o in publisher.outputs] == [T0, T0 + 5.0, T0 + 10.0]


def test_a_change_pushes_the_next_heartbeat_back(settings: Settings) -> None:
    """The heartbeat counts from the last publish, whatever caused it."""
    nav_state = settings.state_dir / "nav_state.json"
    write_now(nav_state, nav_doc(1000.0))
    _, batches, _, _, _ = play(settings, [idle(3.0), write(nav_state, nav_doc(1.0)), idle(0)])
    assert batches.timeouts[0] == 5.0
    assert batches.timeouts[2] == 5.0  # 5 s after the change's publish, not 2 s


def test_truncated_in_place_write_keeps_last_good_values_and_retries_shortly(
    settings: Settings,
) -> None:
    """A torn file keeps the previous good NAV, marks nav_state invalid, and is re-read soon."""
    nav_state = settings.state_dir / "nav_state.json"
    write_now(nav_state, nav_doc(1000.0))
    good = orjson.dumps(nav_doc(1234.5))
    steps = [write_raw(nav_state, good[:9]), idle(), write_raw(nav_state, good), idle(0)]
    _, batches, publisher, events, _ = play(settings, steps)
    torn = publisher.outputs[1].kpis
    assert torn["nav"]["nav_usd"] == 1000.0
    assert torn["sources"]["nav_state"]["status"] == "invalid"
    assert "nav_state.json" in torn["sources"]["nav_state"]["error"]
    assert batches.timeouts[1] == pytest.approx(0.1)  # retry_ms, not the 5 s heartbeat
    invalid = [e for e in events if e["event"] == "source_invalid"]
    assert invalid[0]["source"] == "nav_state"
    assert invalid[0]["file"] == str(nav_state)
    assert invalid[0]["last_good"] is True
    assert publisher.last["nav"]["nav_usd"] == 1234.5
    assert publisher.last["sources"]["nav_state"]["status"] == "ok"


def test_a_source_that_stays_invalid_is_retried_with_backoff(settings: Settings) -> None:
    nav_state = settings.state_dir / "nav_state.json"
    steps = [write_raw(nav_state, b"{nope"), idle(), idle(), idle()]
    _, batches, _, _, _ = play(settings, steps)
    assert batches.timeouts[1:4] == pytest.approx([0.1, 0.2, 0.4])


@pytest.mark.parametrize(
    ("failures", "delay_s"), [(1, 0.1), (2, 0.2), (3, 0.4), (7, 5.0), (50, 5.0)]
)
def test_retry_delay_doubles_up_to_the_heartbeat(failures: int, delay_s: float) -> None:
    assert retry_delay_s(failures, 0.1, 5.0) == pytest.approx(delay_s)


def test_a_failed_publish_is_logged_with_the_file_and_retried(settings: Settings) -> None:
    """ENOSPC while publishing: the error names the file and reason; the retry publishes."""
    write_now(settings.state_dir / "nav_state.json", nav_doc(1000.0))
    publisher = MemoryPublisher()
    target = str(settings.publish_dir / "kpis_v7.json")
    publisher.fail_with.append(OSError(errno.ENOSPC, "No space left on device", target))
    _, batches, _, events, code = play(settings, [idle()], publisher)
    assert code == 0
    failed = [e for e in events if e["event"] == "publish_failed"]
    assert failed == [
        {
            "event": "publish_failed",
            "file": target,
            "reason": "No space left on device",
            "log_level": "error",
        }
    ]
    assert batches.timeouts[0] == pytest.approx(0.1)
    assert [p["reason"] for p in publishes(events)] == ["retry"]
    assert len(publisher.outputs) == 1


def test_reload_applies_a_good_config_and_keeps_the_old_one_on_error(settings: Settings) -> None:
    """SIGHUP's reload: a good config takes effect at once; a bad one is logged and ignored."""
    write_now(settings.state_dir / "nav_state.json", nav_doc(1000.0, ts=T0 - 120.0))
    configs: list[Settings | Exception] = [
        replace(settings, nav_fresh_s=600.0),
        ConfigError("config file kpi.toml: heartbeat_s must be > 0, got -1"),
    ]

    def reload() -> Settings:
        nxt = configs.pop(0)
        if isinstance(nxt, Exception):
            raise nxt
        return nxt

    daemon, _, publisher, events, _ = play(settings, [hup, hup], reload=reload)
    assert [o.kpis["nav"]["fresh"] for o in publisher.outputs] == [False, True, True]
    reloaded = [e for e in events if e["event"] == "config_reloaded"]
    assert reloaded[0]["changed"] == ["nav_fresh_s"]
    failed = [e for e in events if e["event"] == "config_reload_failed"]
    assert failed[0]["reason"] == "config file kpi.toml: heartbeat_s must be > 0, got -1"
    assert failed[0]["log_level"] == "error"
    assert daemon.settings.nav_fresh_s == 600.0


def hup(fake: ScriptedBatches, _: float) -> frozenset[Path]:
    """Step: SIGHUP arrives."""
    assert fake.daemon is not None
    fake.daemon.request_reload()
    return frozenset()


def test_reload_keeps_the_last_good_content_of_an_invalid_source(settings: Settings) -> None:
    """A reload must not blank data: a torn nav_state keeps its last good NAV across SIGHUP."""
    nav_state = settings.state_dir / "nav_state.json"
    write_now(nav_state, nav_doc(1000.0))
    steps = [write_raw(nav_state, b'{"nav_usd": 12'), hup]
    _, _, publisher, _, _ = play(settings, steps, reload=lambda: replace(settings, heartbeat_s=9.0))
    last = publisher.last
    assert last["nav"]["nav_usd"] == 1000.0
    assert last["sources"]["nav_state"]["status"] == "invalid"


def test_reload_to_an_out_dir_that_cannot_be_created_keeps_the_old_config(
    settings: Settings, tmp_path: Path
) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    daemon, _, publisher, events, _ = play(
        settings, [hup], reload=lambda: replace(settings, out_dir=blocker / "out")
    )
    failed = next(e for e in events if e["event"] == "config_reload_failed")
    assert failed["reason"].startswith(f"out dir {blocker / 'out'}:")
    assert daemon.settings.publish_dir == settings.publish_dir
    assert len(publisher.outputs) == 2  # start, and the reload pass with the old config


def test_reload_to_a_missing_state_dir_never_creates_it(settings: Settings, tmp_path: Path) -> None:
    """A reload pointing state and out dir at a mistyped path creates neither (the out dir lies
    inside the state dir): the reload is refused and the running config kept (more cases in
    tests/test_reload_keeps_data.py)."""
    missing = tmp_path / "logs" / "stat"
    daemon, _, _, events, _ = play(
        settings, [hup], reload=lambda: replace(settings, state_dir=missing, out_dir=None)
    )
    assert daemon.settings.state_dir == settings.state_dir
    assert not missing.exists()
    failed = [e for e in events if e["event"] == "config_reload_failed"]
    assert [e["reason"] for e in failed] == [f"state_dir {missing}: No such file or directory"]


def test_reload_that_moves_the_state_dir_rewatches_the_new_paths(
    settings: Settings, tmp_path: Path
) -> None:
    other = tmp_path / "other_state"
    other.mkdir()
    write_now(other / "nav_state.json", nav_doc(777.0))

    _, batches, publisher, _, _ = play(
        settings, [hup], reload=lambda: replace(settings, state_dir=other)
    )
    assert batches.paths is not None and other / "nav_state.json" in batches.paths
    assert publisher.last["nav"]["nav_usd"] == 777.0


def test_prom_file_follows_every_publish_with_the_publisher_health(
    settings: Settings, tmp_path: Path
) -> None:
    """With prom_dir set, kpis.prom is rewritten after each publish and counts the failures."""
    nav_state = settings.state_dir / "nav_state.json"
    write_now(nav_state, nav_doc(1000.0))
    with_prom = replace(settings, prom_dir=tmp_path / "textfile", host_label="h1")
    clock = FakeClock()
    batches = ScriptedBatches(clock, [write(nav_state, nav_doc(1250.5)), idle()])
    publisher = MemoryPublisher()
    publisher.fail_with.append(OSError(errno.EIO, "Input/output error", "kpis_v7.json"))
    daemon = Daemon(
        with_prom,
        batches=batches,
        publisher=publisher,
        clock=clock.time,
        monotonic=clock.monotonic,
    )
    batches.daemon = daemon
    with capture_logs():
        assert daemon.run() == 0
    text = (tmp_path / "textfile" / "kpis.prom").read_text()
    assert 'hedge_kpi_publishes_total{host="h1",account="default"} 2' in text
    assert 'hedge_kpi_publish_errors_total{host="h1",account="default",kind="publish"} 1' in text
    assert 'hedge_kpi_nav_usd{host="h1",account="default"} 1250.5' in text


def test_a_build_bug_is_logged_and_the_daemon_keeps_running(settings: Settings) -> None:
    """An exception in a stage is logged with its reason; the next pass publishes again."""
    calls: list[float] = []

    def flaky_build(sources: Any, now: float, s: Settings) -> Outputs:
        from kpi_publisher.pipeline import build

        calls.append(now)
        if len(calls) == 1:
            raise ZeroDivisionError("float division by zero")
        return build(sources, now, s)

    _, _, publisher, events, code = play(settings, [idle()], build=flaky_build)
    assert code == 0
    failed = [e for e in events if e["event"] == "build_failed"]
    assert failed[0]["reason"] == "ZeroDivisionError: float division by zero"
    assert failed[0]["log_level"] == "error"
    assert len(publisher.outputs) == 1
    assert [p["reason"] for p in publishes(events)] == ["retry"]


def test_stale_temps_of_a_killed_publisher_are_removed_at_start(settings: Settings) -> None:
    out = settings.publish_dir
    out.mkdir(parents=True)
    leftovers = [out / ".kpis_v7.json.4242.deadbeef.tmp", out / ".positions_v7.json.4242.00ff.tmp"]
    foreign = out / ".executor_state.json.tmp"
    for path in [*leftovers, foreign]:
        path.write_text("half")
    _, _, _, events, _ = play(settings, [])
    assert not any(p.exists() for p in leftovers)
    assert foreign.exists()  # not ours: never touched
    removed = [e for e in events if e["event"] == "stale_temps_removed"]
    assert sorted(removed[0]["files"]) == sorted(str(p) for p in leftovers)


def test_unwritable_out_dir_exits_3_naming_the_dir(settings: Settings, tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    bad = replace(settings, out_dir=blocker / "out")
    _, _, _, events, code = play(bad, [])
    assert code == 3
    assert events[0]["event"] == "out_dir_unwritable"
    assert events[0]["file"] == str(blocker / "out")


def test_a_crash_backs_off_before_exiting_and_a_stop_cuts_the_backoff_short(
    settings: Settings, tmp_path: Path
) -> None:
    """A crash loop under supervisord slows down: each recent crash doubles the wait."""
    crash_log = CrashLog(tmp_path / "crashes.json")

    def crash(fake: ScriptedBatches, _: float) -> frozenset[Path]:
        assert fake.daemon is not None
        fake.daemon.stop_event.set()  # a SIGTERM arrives: the backoff must not delay it
        raise RuntimeError("watcher exploded")

    results = []
    for _ in range(3):
        started = time.monotonic()
        _, _, _, events, code = play(settings, [crash], crash_log=crash_log)
        results.append((code, next(e for e in events if e["event"] == "crashed")))
        assert time.monotonic() - started < 5.0
    assert [code for code, _ in results] == [1, 1, 1]
    assert [e["backoff_s"] for _, e in results] == [1.0, 2.0, 4.0]
    assert results[0][1]["reason"] == "RuntimeError: watcher exploded"


def test_a_loop_stuck_in_a_pass_ends_the_process_with_70(settings: Settings) -> None:
    """A pass that hangs (a read or fsync on a dying disk) is noticed and the process exits
    70, so supervisord restarts it instead of showing a silent RUNNING forever."""
    release = threading.Event()
    exits: list[int] = []
    exited = threading.Event()

    def hanging_build(sources: Any, now: float, s: Settings) -> Outputs:
        release.wait(WAIT_S)
        from kpi_publisher.pipeline import build

        return build(sources, now, s)

    def record_exit(code: int) -> None:
        exits.append(code)
        exited.set()

    class Quiet(ScriptedBatches):
        def next_batch(self, timeout_s: float) -> frozenset[Path]:
            time.sleep(min(timeout_s, 0.05))
            return frozenset()

    quiet = Quiet(FakeClock(), [])
    daemon = Daemon(
        settings,
        batches=quiet,
        publisher=MemoryPublisher(),
        build=hanging_build,
        stuck_after_s=0.3,
        exit_fn=record_exit,
    )
    with capture_logs() as events:
        runner = threading.Thread(target=daemon.run, daemon=True)
        runner.start()
        assert exited.wait(WAIT_S), "the stuck loop was not noticed"
        release.set()
        daemon.request_stop()
        runner.join(WAIT_S)
    assert exits == [70]
    stuck = next(e for e in events if e["event"] == "worker_stuck")
    assert stuck["log_level"] == "critical"
    assert stuck["stalled_s"] >= 0.3


def test_a_healthy_loop_is_never_called_stuck(settings: Settings) -> None:
    """Waiting for events is progress: a quiet daemon is not killed by its own watchdog."""
    exits: list[int] = []

    class Quiet(ScriptedBatches):
        def next_batch(self, timeout_s: float) -> frozenset[Path]:
            time.sleep(0.05)
            return frozenset()

    daemon = Daemon(
        settings,
        batches=Quiet(FakeClock(), []),
        publisher=MemoryPublisher(),
        stuck_after_s=0.3,
        exit_fn=exits.append,
    )
    runner = threading.Thread(target=daemon.run, daemon=True)
    with capture_logs():
        runner.start()
        time.sleep(1.2)
        daemon.request_stop()
        runner.join(WAIT_S)
    assert exits == []


def test_the_stuck_limit_follows_a_reloaded_heartbeat(settings: Settings) -> None:
    """The liveness limit is that of the settings in force: a reload that raises the heartbeat
    past the limit at start does not get a quiet daemon killed, and one that lowers it again
    does not leave a hang unnoticed for as long as the old heartbeat allowed."""
    exits: list[int] = []
    frozen = time.monotonic()  # the loop makes no progress at all
    limit = [0.3]
    liveness = Liveness(lambda: frozen, lambda: limit[0], exits.append, time.monotonic)
    limit[0] = 3600.0  # the reload lands before the first look
    liveness.start()
    time.sleep(0.8)
    assert exits == []  # 0.8 s stalled: stuck under the start's limit, not under the new one
    limit[0] = 0.3
    deadline = time.monotonic() + WAIT_S
    while not exits and time.monotonic() < deadline:
        time.sleep(0.05)
    liveness.stop()
    assert exits == [70]


def test_a_daemon_reloaded_to_a_longer_heartbeat_is_not_called_stuck(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real loop: started with a 0.3 s heartbeat (a 0.3 s stuck limit here), reloaded to
    5 s, then a pass that takes 1 s (a slow disk): the limit in force is the reloaded one, so
    the daemon is not killed. A limit kept from start would end it with exit 70."""
    monkeypatch.setattr(survival, "STUCK_MIN_S", 0.0)
    monkeypatch.setattr(survival, "STUCK_HEARTBEATS", 1.0)
    exits: list[int] = []
    slow = threading.Event()
    reloaded_settings = replace(settings, heartbeat_s=5.0)

    def reload() -> Settings:
        slow.set()  # the pass that follows the reload is the slow one
        return reloaded_settings

    def slow_build(sources: Any, now: float, s: Settings) -> Outputs:
        from kpi_publisher.pipeline import build

        if slow.is_set():
            slow.clear()
            time.sleep(1.0)
        return build(sources, now, s)

    class Quiet(ScriptedBatches):
        def next_batch(self, timeout_s: float) -> frozenset[Path]:
            time.sleep(min(timeout_s, 0.05))
            return frozenset()

    daemon = Daemon(
        replace(settings, heartbeat_s=0.3),
        batches=Quiet(FakeClock(), []),
        publisher=MemoryPublisher(),
        build=slow_build,
        reload=reload,
        exit_fn=exits.append,
    )
    runner = threading.Thread(target=daemon.run, daemon=True)
    with capture_logs() as events:
        runner.start()
        time.sleep(0.3)
        daemon.request_reload()
        deadline = time.monotonic() + WAIT_S
        while daemon.settings is not reloaded_settings and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(1.5)  # the slow pass and a look of the liveness thread after it
        daemon.request_stop()
        runner.join(WAIT_S)
    assert daemon.settings is reloaded_settings
    assert exits == [], [e for e in events if e["event"] == "worker_stuck"]


@pytest.mark.parametrize(("crashes", "wait_s"), [(0, 0.0), (1, 1.0), (3, 4.0), (6, 30.0)])
def test_crash_backoff_doubles_and_is_capped(crashes: int, wait_s: float) -> None:
    assert crash_backoff_s(crashes) == wait_s


def test_crash_log_forgets_crashes_outside_its_window(tmp_path: Path) -> None:
    log = CrashLog(tmp_path / "c.json", window_s=600.0)
    assert log.record(1000.0) == 1
    assert log.record(1100.0) == 2
    assert log.record(1700.0) == 2  # the crash at 1000 is more than 600 s old
    log.clear()
    assert log.record(1800.0) == 1


# -- real edges: inotify and the atomic publisher -----------------------------------------


class Counting:
    """The real publisher, counting calls."""

    def __init__(self) -> None:
        self.count = 0
        self.lock = threading.Lock()

    def __call__(self, outputs: Outputs, out_dir: Path, *, fsync: bool, durability: str) -> None:
        publish.publish(outputs, out_dir, fsync=fsync, durability=durability)
        with self.lock:
            self.count += 1


class Running:
    """A daemon with the real watcher and publisher, running in a thread."""

    def __init__(self, settings: Settings, watcher: Watcher | None = None) -> None:
        self.settings = settings
        self.publisher = Counting()
        self.daemon = build_daemon(settings, watcher=watcher, publisher=self.publisher)
        self.code: int | None = None
        self.events: list[dict[str, Any]] = []  # captured log events
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self.code = self.daemon.run()

    @property
    def kpis_path(self) -> Path:
        return self.settings.publish_dir / "kpis_v7.json"

    def kpis(self) -> dict[str, Any]:
        doc: dict[str, Any] = orjson.loads(self.kpis_path.read_bytes())
        return doc

    def wait_until(self, predicate: Callable[[], bool], timeout_s: float = WAIT_S) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if predicate():
                    return True
            except (OSError, ValueError):
                pass  # the file is not there yet
            time.sleep(0.01)
        return False

    def wait_nav(self, nav_usd: float) -> bool:
        return self.wait_until(lambda: self.kpis()["nav"]["nav_usd"] == nav_usd)


@pytest.fixture
def running(settings: Settings, request: pytest.FixtureRequest) -> Iterator[Running]:
    # Out dir == state dir, as in production: our own writes must not feed back. The rescan is
    # slow (60 s) so that what these tests see comes from inotify, unless a test overrides it.
    tuning = {"out_dir": None, "heartbeat_s": 60.0, "rescan_s": 60.0}
    real = replace(settings, **{**tuning, **getattr(request, "param", {})})
    write_now(real.state_dir / "nav_state.json", nav_doc(1000.0))
    r = Running(real)
    with capture_logs() as events:
        r.events = cast(list[dict[str, Any]], events)  # structlog types them as MutableMapping
        r.thread.start()
        assert r.wait_until(lambda: r.publisher.count >= 1), "no start-up publish"
        yield r
        r.daemon.request_stop()
        r.thread.join(WAIT_S)
    assert not r.thread.is_alive()
    assert r.code == 0
    assert not list(real.publish_dir.glob(".*.tmp")), "temp files left behind"


def test_real_rename_into_place_is_published(running: Running) -> None:
    write_now(running.settings.state_dir / "nav_state.json", nav_doc(2222.5))
    assert running.wait_nav(2222.5)


def test_real_in_place_rewrite_is_published(running: Running) -> None:
    path = running.settings.state_dir / "nav_state.json"
    with path.open("wb") as fh:  # truncate and write, like json.dump(open(p, "w"))
        fh.write(orjson.dumps(nav_doc(3333.25)))
    assert running.wait_nav(3333.25)


@pytest.mark.parametrize("running", [{"debounce_ms": 50.0}], indirect=True)
def test_real_burst_of_1000_writes_ends_with_the_last_value_and_few_publishes(
    running: Running,
) -> None:
    """At most one publish per debounce window during a burst, and the last write wins."""
    path = running.settings.state_dir / "nav_state.json"
    before = running.publisher.count
    started = time.monotonic()
    for i in range(1, 1001):
        write_now(path, nav_doc(float(i)))
    assert running.wait_nav(1000.0)
    elapsed_s = time.monotonic() - started
    time.sleep(0.2)  # let a trailing batch land before counting
    burst_publishes = running.publisher.count - before
    assert 1 <= burst_publishes <= elapsed_s / 0.05 + 3
    assert burst_publishes < 250


def test_real_own_outputs_trigger_nothing(running: Running) -> None:
    """Publishing into the watched dir does not wake the daemon again (no feedback loop)."""
    write_now(running.settings.state_dir / "nav_state.json", nav_doc(4444.0))
    assert running.wait_nav(4444.0)
    time.sleep(0.3)
    settled = running.publisher.count
    time.sleep(0.5)
    assert running.publisher.count == settled


def test_real_truncated_in_place_write_keeps_previous_values_and_marks_invalid(
    running: Running,
) -> None:
    path = running.settings.state_dir / "nav_state.json"
    write_now(path, nav_doc(5555.5))
    assert running.wait_nav(5555.5)
    with path.open("wb") as fh:
        fh.write(orjson.dumps(nav_doc(6666.0))[:7])
    assert running.wait_until(lambda: running.kpis()["sources"]["nav_state"]["status"] == "invalid")
    kpis = running.kpis()
    assert kpis["nav"]["nav_usd"] == 5555.5
    assert "not valid JSON" in kpis["sources"]["nav_state"]["error"]


@pytest.mark.parametrize("running", [{"rescan_s": 0.2}], indirect=True)  # liveness period
def test_real_dead_observer_is_replaced_and_publishing_resumes(
    running: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    died = threading.Event()
    monkeypatch.setattr(threading, "excepthook", lambda args: died.set())

    class Raising(FileSystemEventHandler):
        def dispatch(self, event: FileSystemEvent) -> None:
            raise RuntimeError("boom")

    watcher = running.daemon.batches
    assert isinstance(watcher, Watcher)
    # A threaded watchdog observer (the fallback kind; the default reader has no thread).
    watcher._observer_factory = _inotify_observer
    watcher._restart("threaded observer for this test")
    restarts, seen = watcher.restarts, len(running.events)
    observer = watcher.observer
    assert observer is not None and not isinstance(observer, InotifyReader)
    observer.schedule(Raising(), str(running.settings.state_dir))
    write_now(running.settings.state_dir / "nav_state.json", nav_doc(7777.0))
    assert died.wait(WAIT_S)
    write_now(running.settings.state_dir / "nav_state.json", nav_doc(8888.0))
    assert running.wait_nav(8888.0)
    assert watcher.restarts >= restarts + 1
    rewatch = [e for e in running.events[seen:] if e["event"] == "rewatch"]
    assert rewatch and rewatch[0]["reason"] == "observer thread died"


def test_same_size_rewrite_within_one_mtime_tick_is_published(settings: Settings) -> None:
    """An in-place rewrite that keeps inode, size and mtime (a coarse timestamp tick) is still
    read when its path has an event, and its new content is published."""
    nav_state = settings.state_dir / "nav_state.json"
    no_fake = cast(ScriptedBatches, None)  # a write_raw step never touches its fake
    write_raw(nav_state, orjson.dumps(nav_doc(1000.0)))(no_fake, 0.0)
    before = os.stat(nav_state)

    def same_stamp_rewrite(_: ScriptedBatches, __: float) -> frozenset[Path]:
        with open(nav_state, "r+b") as fh:  # in place: same inode
            fh.write(orjson.dumps(nav_doc(2000.0)))
        os.utime(nav_state, ns=(before.st_atime_ns, before.st_mtime_ns))
        after = os.stat(nav_state)
        assert (after.st_ino, after.st_size, after.st_mtime_ns) == (
            before.st_ino,
            before.st_size,
            before.st_mtime_ns,
        )
        return frozenset({nav_state})

    _, _, publisher, _, _ = play(settings, [same_stamp_rewrite])
    assert [o.kpis["nav"]["nav_usd"] for o in publisher.outputs] == [1000.0, 2000.0]


# -- post-publish observers --------------------------------------------------------------------


def test_post_publish_observers_see_every_published_document_and_cannot_stop_it(
    settings: Settings,
) -> None:
    """Each observer gets exactly the outputs that were published, in order; one that raises
    is logged and neither the other observers nor the next publishes are affected."""
    nav_state = settings.state_dir / "nav_state.json"
    write_now(nav_state, nav_doc(1000.0))
    seen: list[float] = []

    def broken(_: Outputs) -> None:
        raise RuntimeError("observer bug")

    steps = [write(nav_state, nav_doc(1250.5)), write(nav_state, nav_doc(1300.0))]
    _, _, publisher, events, code = play(
        settings, steps, observers=[broken, lambda o: seen.append(o.kpis["nav"]["nav_usd"])]
    )
    assert code == 0
    assert seen == [o.kpis["nav"]["nav_usd"] for o in publisher.outputs] == [1000.0, 1250.5, 1300.0]
    failures = [e for e in events if e["event"] == "observer_failed"]
    assert len(failures) == 3 and "observer bug" in failures[0]["reason"]


# -- one change detector: the reader answers the watcher's rescan ------------------------------


class Deaf:
    """A real watcher whose observer never reports: only the rescan can find a change."""

    @staticmethod
    def watcher(settings: Settings, rescan_s: float) -> Watcher:
        from watchdog.observers.polling import PollingObserver

        from kpi_publisher.daemon import input_paths, output_paths
        from kpi_publisher.sources import SourceReader

        return Watcher(
            input_paths(SourceReader(settings)),
            debounce_s=0.01,
            rescan_s=rescan_s,
            observer_factory=lambda: PollingObserver(timeout=3600),
            outputs=output_paths(settings),
        )


def _run_deaf(
    settings: Settings, body: Callable[[Running], None], rescan_s: float = 0.2
) -> list[dict[str, Any]]:
    real = replace(settings, out_dir=None, heartbeat_s=60.0, rescan_s=rescan_s)
    write_now(real.state_dir / "nav_state.json", nav_doc(1000.0))
    r = Running(real, Deaf.watcher(real, rescan_s))
    with capture_logs() as events:
        r.events = cast(list[dict[str, Any]], events)  # structlog types them as MutableMapping
        r.thread.start()
        try:
            assert r.wait_until(lambda: r.publisher.count >= 1), "no start-up publish"
            body(r)
        finally:
            r.daemon.request_stop()
            r.thread.join(WAIT_S)
    assert r.code == 0
    return r.events


def test_a_change_no_event_reported_is_published_by_the_rescan_once(settings: Settings) -> None:
    """With every inotify event lost, the rescan (asking the reader what changed since it read
    it) publishes the new NAV, and never reports that same change again."""

    def body(r: Running) -> None:
        write_now(r.settings.state_dir / "nav_state.json", nav_doc(2500.0))
        assert r.wait_nav(2500.0)
        time.sleep(1.0)  # five more rescans

    events = _run_deaf(settings, body)
    found = [e for e in events if e["event"] == "rescan_found_changes"]
    assert len(found) == 1
    assert found[0]["paths"] == [str(settings.state_dir / "nav_state.json")]
    assert [e["changed"] for e in publishes(events)][1:] == [["nav_state"]]


def test_a_fallback_file_the_reader_does_not_need_causes_no_rescan_pass(
    settings: Settings,
) -> None:
    """positions.json is only read while positions_state.json gives nothing: rewriting it
    beside a good positions_state.json changes nothing published, so no pass is made."""
    state = settings.state_dir
    write_now(state / "positions_state.json", {"positions": []})

    def body(r: Running) -> None:
        for i in range(3):
            write_now(state / "positions.json", {"positions": [{"symbol": "X", "qty": i + 1}]})
            time.sleep(0.3)
        write_now(state / "nav_state.json", nav_doc(3000.0))
        assert r.wait_nav(3000.0)

    events = _run_deaf(settings, body)
    found = [e for e in events if e["event"] == "rescan_found_changes"]
    assert [f["paths"] for f in found] == [[str(state / "nav_state.json")]]
    assert len(publishes(events)) == 2
