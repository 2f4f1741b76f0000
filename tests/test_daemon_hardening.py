"""The daemon against a hostile environment: a second writer of its outputs, a wall clock
stepped back, a state dir that does not exist, a publish that keeps failing, signals in the
first moments, a frozen process, and a stdout nobody reads. Rules with the fake clock; the
process-level behaviour with real `hedge-kpi run` processes."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest
from structlog.testing import capture_logs

from kpi_publisher.config import Settings
from kpi_publisher.daemon import FOREIGN_LOG_EVERY_S, Daemon
from tests import test_daemon, test_daemon_signals
from tests.test_daemon import (
    T0,
    WAIT_S,
    FakeClock,
    MemoryPublisher,
    Running,
    ScriptedBatches,
    idle,
    nav_doc,
    play,
    publishes,
    write_now,
)
from tests.test_daemon_signals import Proc, base_args, is_publish, kpis, write_json

pytestmark = pytest.mark.timeout(90)

# The fixtures of the daemon suite (settings, running) and of its process suite (dirs, spawn).
settings = test_daemon.settings
running = test_daemon.running
dirs = test_daemon_signals.dirs
spawn = test_daemon_signals.spawn


def events_named(events: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in events if e["event"] == name]


# -- a second writer of the outputs (real inotify, real publisher) --------------------------


def foreign_kpis() -> dict[str, Any]:
    """The executor's own flat kpis_v7.json (docs/CONTRACT_RULES.md, shapes: kpis_v7.json)."""
    return {"ts": time.time(), "atr_regime": "normal", "dd_state": "normal", "fees": 1.0}


@pytest.mark.parametrize("name", ["kpis_v7.json", "positions_v7.json"])
def test_a_foreign_write_to_an_output_is_replaced_at_once_and_logged_once(
    running: Running, name: str
) -> None:
    out = running.settings.publish_dir / name
    schema = "hedge.kpis_v7" if name == "kpis_v7.json" else "hedge.positions_v7"
    for attempt in range(3):
        before = running.publisher.count
        started = time.monotonic()
        write_now(out, foreign_kpis())  # the executor's temp + rename over our file
        assert running.wait_until(
            lambda: orjson.loads(out.read_bytes()).get("schema") == schema, timeout_s=WAIT_S
        ), f"foreign {name} not replaced (attempt {attempt})"
        took_s = time.monotonic() - started
        assert took_s < 1.0, f"replaced after {took_s:.2f} s"
        assert running.wait_until(lambda: running.publisher.count == before + 1)  # noqa: B023
    logged = events_named(running.events, "foreign_writer")
    assert len(logged) == 1, "logged more than once within 10 minutes"
    assert logged[0]["file"] == str(out)
    assert logged[0]["log_level"] == "warning"
    assert FOREIGN_LOG_EVERY_S == 600.0
    # Our own renames into the same names never count as foreign: no republish loop.
    time.sleep(0.5)
    settled = running.publisher.count
    time.sleep(0.5)
    assert running.publisher.count == settled
    reasons = [p["reason"] for p in publishes(running.events)]
    assert reasons.count("foreign_writer") == 3


def test_a_foreign_in_place_write_is_replaced_too(running: Running) -> None:
    out = running.settings.publish_dir / "kpis_v7.json"
    with out.open("wb") as fh:  # truncate and write, like json.dump(open(p, "w"))
        fh.write(orjson.dumps(foreign_kpis()))
    assert running.wait_until(lambda: "schema" in orjson.loads(out.read_bytes()), timeout_s=1.0)
    assert events_named(running.events, "foreign_writer")


# -- the wall clock stepped back -----------------------------------------------------------


def test_a_clock_stepped_back_cannot_keep_a_dead_executors_nav_fresh(settings: Settings) -> None:
    """The NAV was written at T0; the wall clock is then stepped back 50 s (within the skew
    allowance, so the file's timestamp still reads as "now") and the executor dies. The
    published age still grows with monotonic time, and the NAV turns stale on time."""
    write_now(settings.state_dir / "nav_state.json", nav_doc(1000.0, ts=T0))

    def step_back(fake: ScriptedBatches, timeout_s: float) -> frozenset[Path]:
        fake.clock.wall -= 50.0
        fake.clock.advance(timeout_s)  # to the next heartbeat
        return frozenset()

    _, _, publisher, _, _ = play(settings, [step_back, idle(40.0), idle(60.0)])
    navs = [o.kpis["nav"] for o in publisher.outputs]
    # Wall-clock ages would read 0, 0, 0, 55: the monotonic floor gives 0, 5, 45, 105.
    assert [n["age_s"] for n in navs] == pytest.approx([0.0, 5.0, 45.0, 105.0])
    assert [n["fresh"] for n in navs] == [True, True, True, False]
    source = publisher.outputs[-1].kpis["sources"]["nav_state"]
    assert source["status"] == "stale"
    assert source["age_s"] == pytest.approx(105.0)


def test_a_clock_stepped_back_past_the_skew_allowance_still_turns_a_dead_executor_stale(
    settings: Settings,
) -> None:
    """Stepped back an hour, the files' timestamps read as too far ahead: no valid timestamp,
    so no age and no fresh NAV (contract rule 2). The status still follows what is known,
    the monotonic time since each file's content last changed: the NAV's source turns stale
    after 90 s and the risk snapshot after its 300 s, not an hour later (both stayed "ok")."""
    write_now(settings.state_dir / "nav_state.json", nav_doc(1000.0, ts=T0))
    write_now(settings.state_dir / "risk_snapshot.json", {"updated_at": T0, "dd_state": "normal"})

    def step_back(fake: ScriptedBatches, timeout_s: float) -> frozenset[Path]:
        fake.clock.wall -= 3600.0
        fake.clock.advance(timeout_s)  # to the next heartbeat
        return frozenset()

    _, _, publisher, _, _ = play(settings, [step_back, idle(40.0), idle(60.0), idle(300.0)])
    sources = [o.kpis["sources"] for o in publisher.outputs]
    assert [s["nav_state"]["status"] for s in sources] == ["ok", "ok", "ok", "stale", "stale"]
    assert [s["risk"]["status"] for s in sources] == ["ok", "ok", "ok", "ok", "stale"]
    assert all(s["nav_state"]["age_s"] is None for s in sources[1:])
    assert "ahead of the clock" in sources[-1]["nav_state"]["error"]
    assert [o.kpis["nav"]["fresh"] for o in publisher.outputs] == [True, False, False, False, False]


def test_the_age_floor_restarts_when_the_content_changes(settings: Settings) -> None:
    nav_state = settings.state_dir / "nav_state.json"
    write_now(nav_state, nav_doc(1000.0, ts=T0))

    def executor_writes(fake: ScriptedBatches, _: float) -> frozenset[Path]:
        fake.clock.mono += 500.0
        fake.clock.wall -= 3600.0  # the clock went back; the new file carries the new time
        write_now(nav_state, nav_doc(1001.0, ts=fake.clock.wall))
        return frozenset({nav_state})

    _, _, publisher, _, _ = play(settings, [idle(200.0), executor_writes])
    last = publisher.outputs[-1].kpis["nav"]
    assert last["nav_usd"] == 1001.0
    assert last["age_s"] == 0.0
    assert last["fresh"] is True


# -- a state dir that does not exist -------------------------------------------------------


def test_a_missing_state_dir_is_never_created_and_is_reported_every_minute(
    settings: Settings,
) -> None:
    state = settings.state_dir
    shutil.rmtree(state)
    s = replace(settings, out_dir=None)  # out dir = state dir, as in production

    def appears(fake: ScriptedBatches, _: float) -> frozenset[Path]:
        assert not state.exists(), "the daemon created the state dir"
        state.mkdir()
        write_now(state / "nav_state.json", nav_doc(1234.0))
        fake.clock.advance(1.0)
        return frozenset({state / "nav_state.json"})

    steps = [idle(30.0), idle(31.0), idle(30.0), appears]
    _, _, publisher, events, code = play(s, steps)
    assert code == 0
    missing = events_named(events, "state_dir_missing")
    assert [e["file"] for e in missing] == [str(state)] * 2  # at start, then after 60 s
    assert missing[1]["missing_s"] >= 60.0
    assert len(publisher.outputs) == 1, "published while the state dir was missing"
    assert publisher.last["nav"]["nav_usd"] == 1234.0
    assert events_named(events, "state_dir_found")


# -- a publish that keeps failing ------------------------------------------------------------


def test_a_persistent_publish_failure_backs_off_and_logs_once_per_streak(
    settings: Settings,
) -> None:
    write_now(settings.state_dir / "nav_state.json", nav_doc(1000.0))
    publisher = MemoryPublisher()
    target = str(settings.publish_dir)
    publisher.fail_with = [OSError(errno.ENOTDIR, "Not a directory", target) for _ in range(40)]
    steps = [idle() for _ in range(40)]
    _, batches, _, events, code = play(settings, steps, publisher)
    assert code == 0
    # Waits between attempts double from retry_ms up to the heartbeat, never a 100 ms spin.
    assert batches.timeouts[:8] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0])
    failed = events_named(events, "publish_failed")
    assert len(failed) == 1
    assert failed[0]["reason"] == "Not a directory"
    reminders = events_named(events, "publish_still_failing")
    # 40 attempts over about 3 minutes of fake time: a reminder each minute, with the count.
    assert 2 <= len(reminders) <= 3
    assert reminders[0]["failures"] >= 12
    recovered = events_named(events, "publish_recovered")
    assert len(recovered) == 1 and recovered[0]["failures"] == 40
    assert publisher.outputs, "never published after the failure cleared"


# -- real processes -------------------------------------------------------------------------


def test_run_with_a_mistyped_state_dir_waits_for_it_without_creating_it(
    tmp_path: Path, spawn: Callable[..., Proc]
) -> None:
    state = tmp_path / "logs" / "stat"
    proc = spawn(["--state-dir", str(state), "--heartbeat-s", "0.5"])
    missing = proc.wait_event(lambda e: e["event"] == "state_dir_missing")
    assert missing["file"] == str(state)
    time.sleep(1.0)
    assert not state.exists() and not (tmp_path / "logs").exists()
    assert not any(is_publish(e) for e in proc.events)
    state.mkdir(parents=True)
    write_json(state / "nav_state.json", {"nav_usd": 42.0, "updated_at": time.time()})
    proc.wait_event(is_publish)
    assert orjson.loads((state / "kpis_v7.json").read_bytes())["nav"]["nav_usd"] == 42.0
    assert proc.stop()[0] == 0


def replace_dir_with_file(directory: Path, scratch: Path) -> None:
    """Put a regular file where `directory` is, as an operator's mistake would. Each step is a
    rename, so a publish running meanwhile never meets a half-deleted directory; should the
    daemon recreate the directory between the two renames, it is moved aside again."""
    for attempt in range(50):
        with contextlib.suppress(FileNotFoundError):
            directory.rename(scratch / f"moved-out-{attempt}")
        note = scratch / "not-a-directory"
        note.write_text("not a directory\n")
        try:
            note.rename(directory)
            return
        except OSError:  # the directory is back (the daemon made it): once more
            continue
    raise AssertionError(f"could not replace {directory} with a file")


def test_run_with_its_out_dir_replaced_by_a_file_logs_once_and_recovers(
    dirs: dict[str, Path], spawn: Callable[..., Proc]
) -> None:
    proc = spawn(base_args(dirs, "--heartbeat-s", "1", "--retry-ms", "50"))
    proc.wait_event(is_publish)
    replace_dir_with_file(dirs["out"], dirs["root"])
    mark = proc.mark()
    proc.wait_event(lambda e: e["event"] == "publish_failed", start=mark)
    time.sleep(3.0)
    window = proc.events[mark:]
    assert len([e for e in window if e["event"] == "publish_failed"]) == 1
    assert len([e for e in window if e["level"] == "error"]) <= 2
    dirs["out"].unlink()
    recovered = proc.wait_event(lambda e: e["event"] == "publish_recovered", start=mark)
    assert recovered["failures"] >= 3
    assert kpis(dirs)["nav"]["nav_usd"] == 1000.0
    assert proc.stop()[0] == 0


# Around 0.1 s after spawn: before the daemon and its signal thread exist (they come after the
# heavy imports, at about 0.1-0.3 s), after `run` has started (about 0.03 s on an idle host).
EARLY_S = (0.06, 0.08, 0.1, 0.1, 0.12)


def early_delays() -> list[float]:
    """EARLY_S, each at least twice the longest of three times this machine took to start the
    interpreter and import the command line: no Python program can act before then (a loaded
    host starts slower, and one slow start in a busy full run sent the signal too early), and
    the daemon itself is still far from up."""
    started = []
    for _ in range(3):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import kpi_publisher.cli"], check=True)
        started.append(time.perf_counter() - t0)
    floor_s = 2.0 * max(started)
    return [max(delay, floor_s) for delay in EARLY_S]


def test_sigterm_right_after_spawn_exits_0(dirs: dict[str, Path]) -> None:
    for delay in early_delays():
        popen = subprocess.Popen(
            [sys.executable, "-m", "kpi_publisher", "run", *base_args(dirs)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        time.sleep(delay)
        popen.send_signal(signal.SIGTERM)
        _, err = popen.communicate(timeout=WAIT_S)
        assert popen.returncode == 0, f"{popen.returncode} after {delay} s: {err.decode()}"


def test_sighup_right_after_spawn_does_not_kill_it(
    dirs: dict[str, Path], spawn: Callable[..., Proc]
) -> None:
    for delay in early_delays():
        proc = spawn(base_args(dirs))
        time.sleep(delay)
        proc.popen.send_signal(signal.SIGHUP)
        proc.wait_event(is_publish)
        time.sleep(0.3)
        assert proc.popen.poll() is None, f"killed by a SIGHUP {delay} s after spawn"
        assert proc.stop()[0] == 0


FROZEN_DRIVER = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    from kpi_publisher import logs
    from kpi_publisher.config import Settings
    from kpi_publisher.daemon import install_signal_thread
    from kpi_publisher.run import build_daemon

    logs.configure("json")
    state, out = Path(sys.argv[1]), Path(sys.argv[2])
    settings = Settings(state_dir=state, out_dir=out, fsync=False, heartbeat_s=0.2)
    daemon = build_daemon(settings, stuck_after_s=float(sys.argv[3]))
    install_signal_thread(daemon)
    code = daemon.run()
    sys.stdout.flush()
    os._exit(int(code))
    """
)


def test_a_process_paused_longer_than_the_stuck_limit_carries_on_after_sigcont(
    dirs: dict[str, Path],
) -> None:
    """SIGSTOP for 2.5 s with a 1 s stuck limit (a docker pause, a host freeze): after SIGCONT
    the liveness thread sees that it was frozen too, and the daemon keeps publishing."""
    popen = subprocess.Popen(
        [sys.executable, "-c", FROZEN_DRIVER, str(dirs["state"]), str(dirs["out"]), "1.0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        kpis_path = dirs["out"] / "kpis_v7.json"
        deadline = time.monotonic() + WAIT_S
        while not kpis_path.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert kpis_path.exists()
        for pause in range(3):  # which thread runs first after SIGCONT varies: try thrice
            popen.send_signal(signal.SIGSTOP)
            time.sleep(2.5)
            popen.send_signal(signal.SIGCONT)
            time.sleep(1.0)
            assert popen.poll() is None, f"exited after SIGCONT #{pause + 1} (worker_stuck)"
            generated = orjson.loads(kpis_path.read_bytes())["generated_at"]
            assert time.time() - generated < 1.0, "not publishing after SIGCONT"
        popen.send_signal(signal.SIGTERM)
        out, _ = popen.communicate(timeout=WAIT_S)
        assert popen.returncode == 0
        events = [orjson.loads(line) for line in out.splitlines() if line.startswith(b"{")]
        assert not [e for e in events if e["event"] == "worker_stuck"]
        resumed = [e for e in events if e["event"] == "process_resumed"]
        assert resumed and resumed[0]["frozen_s"] >= 2.0
    finally:
        if popen.poll() is None:
            popen.kill()
            popen.wait()


def _generated_at(path: Path) -> float | None:
    try:
        return float(orjson.loads(path.read_bytes())["generated_at"])
    except (OSError, ValueError, KeyError):
        return None


def _keeps_publishing(path: Path, seconds: float = 2.0) -> bool:
    """True when the published file's generated_at advances several times within `seconds`."""
    seen: set[float] = set()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = _generated_at(path)
        if value is not None:
            seen.add(value)
        time.sleep(0.05)
    return len(seen) >= 3


@pytest.mark.parametrize("stdout", ["closed", "broken pipe"])
def test_run_keeps_publishing_with_a_stdout_nobody_can_read(
    dirs: dict[str, Path], stdout: str
) -> None:
    args = [sys.executable, "-m", "kpi_publisher", "run", *base_args(dirs, "--heartbeat-s", "0.2")]
    env = {k: v for k, v in os.environ.items() if not k.startswith("KPI_")}
    if stdout == "closed":
        cmd = ["bash", "-c", 'exec "$@" >&-', "run", *args]
        popen = subprocess.Popen(cmd, stderr=subprocess.PIPE, env=env)
    else:
        popen = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        assert popen.stdout is not None
        popen.stdout.readline()  # like `| head -1`: one line, then the reader is gone
        popen.stdout.close()
    try:
        assert _keeps_publishing(dirs["out"] / "kpis_v7.json", 3.0)
        assert popen.poll() is None
        popen.send_signal(signal.SIGTERM)
        _, err = popen.communicate(timeout=WAIT_S)
        assert popen.returncode == 0, err.decode(errors="replace")
        assert b"Traceback" not in err
    finally:
        if popen.poll() is None:
            popen.kill()
            popen.wait()


@pytest.mark.parametrize("redirect", [">&-", "| head -c 0"])
@pytest.mark.parametrize(("command", "expected"), [("check", 6), ("once", 0)])
def test_commands_keep_their_exit_code_with_a_stdout_nobody_can_read(
    dirs: dict[str, Path], redirect: str, command: str, expected: int
) -> None:
    """`check` exits 6 (nothing published yet) and `once` exits 0 (published) whether their
    stdout is readable, closed, or a pipe whose reader is gone; never 1 or 120 from EPIPE."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KPI_")}
    argv = [sys.executable, "-m", "kpi_publisher", command, *base_args(dirs)]
    script = f'"$@" {redirect}; echo "code=${{PIPESTATUS[0]}}" >&2'
    done = subprocess.run(
        ["bash", "-c", script, command, *argv],
        capture_output=True,
        env=env,
        timeout=WAIT_S,
        check=False,
    )
    assert f"code={expected}".encode() in done.stderr, done.stderr.decode()
    assert b"Traceback" not in done.stderr
    assert b"Exception ignored" not in done.stderr
    if command == "once":
        assert kpis(dirs)["nav"]["nav_usd"] == 1000.0
        again = subprocess.run(argv, capture_output=True, env=env, timeout=WAIT_S, check=False)
        assert again.returncode == expected  # the same code with a readable stdout


def test_a_stuck_loop_still_ends_with_70_while_the_liveness_thread_runs_on_time(
    settings: Settings,
) -> None:
    """The freeze allowance does not excuse a loop that hangs while the process runs."""
    release = threading.Event()
    exits: list[int] = []
    exited = threading.Event()

    def hanging_publisher(outputs: Any, out_dir: Path, *, fsync: bool, durability: str) -> None:
        release.wait(WAIT_S)

    def record_exit(code: int) -> None:
        exits.append(code)
        exited.set()

    class Quiet(ScriptedBatches):
        def next_batch(self, timeout_s: float) -> frozenset[Path]:
            time.sleep(min(timeout_s, 0.05))
            return frozenset()

    daemon = Daemon(
        settings,
        batches=Quiet(FakeClock(), []),
        publisher=hanging_publisher,
        stuck_after_s=0.4,
        exit_fn=record_exit,
    )
    with capture_logs():
        runner = threading.Thread(target=daemon.run, daemon=True)
        runner.start()
        assert exited.wait(WAIT_S)
        release.set()
        daemon.request_stop()
        runner.join(WAIT_S)
    assert exits == [70]
