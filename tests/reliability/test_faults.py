"""Faults are survived: disk full, unwritable or vanished out dir, lost inotify events,
inotify limits, SIGKILL at random points, and a crash loop under a real supervisord.

Process-level tests run the real `hedge-kpi run` and read its structlog JSON lines. Root
ignores permission bits (CI runs as root), so the permission cases run the daemon with
CAP_DAC_OVERRIDE and friends dropped (setpriv); disk full uses a private 64 KiB tmpfs inside
`unshare -U -r -m`; the inotify limits are set inside a private user namespace
(`/proc/sys/user/max_inotify_*`), so no host setting is touched.
"""

from __future__ import annotations

import errno
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from kpi_publisher import fs, publish
from kpi_publisher.daemon import default_crash_file
from kpi_publisher.pipeline import Outputs
from kpi_publisher.render import render
from kpi_publisher.sources import SourceReader

from .helpers import (
    BIN,
    HEDGE_KPI,
    HERE,
    Layout,
    build_bytes,
    daemon,
    good_docs,
    history_caught_up,
    kpis_nav,
    read_outputs,
    run_argv,
    spawn,
    wait_for,
)


def _works(argv: list[str]) -> bool:
    try:
        return subprocess.run(argv, capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _need_unshare(*flags: str) -> None:
    if shutil.which("unshare") is None or not _works(["unshare", *flags, "true"]):
        pytest.skip(f"`unshare {' '.join(flags)}` is not permitted here (no user namespaces)")


def _fresh(layout: Layout, nav_usd: float) -> None:
    """Replace nav_state.json with a new NAV stamped now."""
    layout.write("nav_state", good_docs(now=time.time(), nav_usd=nav_usd)["nav_state"])


@pytest.fixture
def live_layout(tmp_path: Path) -> Layout:
    """A layout whose documents are stamped now (a running daemon builds with the real clock)."""
    layout = Layout(tmp_path).make()
    layout.write_all(good_docs(now=time.time()))
    return layout


# -- disk full, at the edge: every failing syscall of the atomic write -----------------------


def _outputs(layout: Layout, nav_usd: float) -> Outputs:
    _fresh(layout, nav_usd)
    settings = layout.settings()
    kpis_raw, positions_raw = build_bytes(SourceReader(settings), settings, now=time.time())
    return Outputs(kpis=orjson.loads(kpis_raw), positions=orjson.loads(positions_raw))


# The one-shot writer (`once`, the executor side) and the daemon's, which reuses spare temp
# files made after each publish and holds the files it published until the next are in place.
WRITERS: dict[str, Callable[[], Callable[..., None]]] = {
    "one_shot": lambda: publish.publish,
    "reused": publish.Publisher,
}


@pytest.fixture(params=sorted(WRITERS))
def writer(request: pytest.FixtureRequest) -> Iterator[Callable[..., None]]:
    made = WRITERS[request.param]()
    yield made
    close = getattr(made, "close", None)
    if close is not None:
        close()


def _published(layout: Layout) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in layout.out.iterdir() if not fs.is_temp_name(p.name)}


@pytest.mark.parametrize("durability", fs.DURABILITIES)
@pytest.mark.parametrize("call", ["write", "fchmod", "fsync", "replace"])
@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EIO, errno.EXDEV, errno.EDQUOT])
def test_failed_publish_leaves_old_outputs_and_no_temp(
    layout: Layout,
    monkeypatch: pytest.MonkeyPatch,
    call: str,
    err: int,
    durability: str,
    writer: Callable[..., None],
) -> None:
    """Whichever step fails, OSError reaches the caller and no temp file is left in the out
    dir; both old files are intact byte for byte, except after a failed fsync in the fast
    order, which comes after the renames: then both files are the whole new documents (only
    their durability is unknown) and the caller's retry writes them again. The daemon's
    writer made its temp files ahead (fchmod included); when something swept them, it makes
    new ones, and those can fail the same way."""
    writer(_outputs(layout, 10_234.56), layout.out, fsync=True, durability=durability)
    before = _published(layout)
    newer = _outputs(layout, 20_000.0)
    if call == "fchmod":
        for spare in layout.temps():
            (layout.out / spare).unlink()

    def fail(*_: object, **__: object) -> None:
        raise OSError(err, os.strerror(err))

    monkeypatch.setattr(os, call, fail)
    with pytest.raises(OSError) as caught:
        writer(newer, layout.out, fsync=True, durability=durability)
    monkeypatch.undo()
    assert caught.value.errno == err
    assert layout.temps() == []
    after = _published(layout)
    if call == "fsync" and durability == fs.FAST:
        publish.publish(newer, layout.out, fsync=False)
        assert after == _published(layout)
    else:
        assert after == before
    writer(newer, layout.out, fsync=True, durability=durability)  # the retry publishes it all
    assert _published(layout) == {
        "kpis_v7.json": render(newer.kpis),
        "positions_v7.json": render(newer.positions),
    }


@pytest.mark.parametrize(
    ("durability", "order"),
    [
        (fs.STRICT, ["fsync", "fsync", "replace", "replace", "fsync"]),
        (fs.FAST, ["replace", "replace", "fsync", "fsync", "fsync"]),
    ],
)
def test_durability_orders_the_syncs_and_renames(
    layout: Layout,
    monkeypatch: pytest.MonkeyPatch,
    durability: str,
    order: list[str],
    writer: Callable[..., None],
) -> None:
    """strict: both temp files are fsynced before either rename; fast: positions then KPIs are
    renamed, then both files are fsynced. Either way the out dir is fsynced last, before
    publish returns."""
    calls: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        calls.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src: str, dst: str) -> None:
        calls.append(("replace", os.path.basename(dst)))
        real_replace(src, dst)

    writer(_outputs(layout, 5_000.0), layout.out, fsync=False)  # a first publish: spares
    outputs = _outputs(layout, 10_234.56)
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    writer(outputs, layout.out, fsync=True, durability=durability)
    monkeypatch.undo()
    assert [call for call, _ in calls] == order
    renames = [name for call, name in calls if call == "replace"]
    assert renames == ["positions_v7.json", "kpis_v7.json"]
    assert calls[-1] == ("fsync", str(layout.out))
    if durability == fs.FAST:  # the synced inodes are the renamed files
        assert [os.path.basename(n) for _, n in calls[2:4]] == renames


def test_failure_on_the_second_file_leaves_each_file_whole(
    layout: Layout, monkeypatch: pytest.MonkeyPatch, writer: Callable[..., None]
) -> None:
    """positions_v7.json is replaced first; when kpis_v7.json then fails, each file is still a
    whole valid document (new positions, old KPIs) and the caller gets the error to retry."""
    writer(_outputs(layout, 10_234.56), layout.out, fsync=False)
    old_kpis = (layout.out / "kpis_v7.json").read_bytes()
    newer = _outputs(layout, 20_000.0)
    real_replace = os.replace

    def replace_positions_only(src: str, dst: str) -> None:
        if str(dst).endswith("kpis_v7.json"):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace_positions_only)
    with pytest.raises(OSError):
        writer(newer, layout.out, fsync=False)
    monkeypatch.undo()
    assert (layout.out / "kpis_v7.json").read_bytes() == old_kpis
    read_outputs(layout.out)
    assert layout.temps() == []


# -- disk full, for real: a 64 KiB tmpfs in a private mount namespace -------------------------


def _fill(directory: Path) -> None:
    """Write a filler file until the filesystem says ENOSPC."""
    fd = os.open(directory / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)


@pytest.mark.timeout(60)
def test_disk_full_keeps_old_outputs_retries_and_recovers(live_layout: Layout) -> None:
    """The real daemon publishing onto a full 64 KiB tmpfs: the failure streak is logged once
    as publish_failed (ENOSPC) while the retries back off, the old files stay whole, no temp is
    left, and once space is freed the retry publishes the new NAV without any new input event
    and logs publish_recovered."""
    _need_unshare("-U", "-r", "-m")
    layout = live_layout
    mount = f'mount -t tmpfs -o size=64k tmpfs "{layout.out}" && exec "$@"'
    argv = run_argv(layout, "--heartbeat-s", "0.3", "--retry-ms", "50")
    proc = spawn(["unshare", "-U", "-r", "-m", "sh", "-c", mount, "sh", *argv])
    try:
        proc.wait_event("publish", 15)
        # The tmpfs exists only in the daemon's mount namespace; reach it through its root.
        out = Path(f"/proc/{proc.proc.pid}/root") / str(layout.out).lstrip("/")
        names = sorted(p.name for p in out.iterdir() if not fs.is_temp_name(p.name))
        assert names == ["kpis_v7.json", "positions_v7.json"]
        assert list(layout.out.iterdir()) == []  # not our view: the tmpfs really is private
        old = {p.name: p.read_bytes() for p in out.iterdir() if not fs.is_temp_name(p.name)}
        _fill(out)
        _fresh(layout, 20_000.0)
        failed = proc.wait_event("publish_failed", 10)
        assert failed["reason"] == "No space left on device"
        assert failed["level"] == "error"
        mark = proc.events.index(failed) + 1
        time.sleep(1.0)  # retried every 50 ms doubling to the 0.3 s heartbeat: one line only
        assert [e for e in proc.events[mark:] if e.get("event") == "publish_failed"] == []
        assert {p.name: p.read_bytes() for p in out.iterdir() if p.name != "filler"} == old
        assert [p.name for p in out.iterdir() if fs.is_temp_name(p.name)] == []
        (out / "filler").unlink()
        wait_for(lambda: kpis_nav(out) == 20_000.0, 10)
        assert proc.wait_event("publish_recovered", 10, after=mark)["failures"] >= 3
        read_outputs(out)
        assert proc.stop() == 0
    finally:
        proc.stop()


# -- permissions: root ignores permission bits, so drop the capabilities that let it -----------

# CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH let root write anywhere, CAP_FOWNER lets it chmod;
# without them a root process meets the same permission checks as any user, while still
# being able to run the checkout wherever CI put it (a 0700 /root would lock nobody out).
NO_BYPASS = "-dac_override,-dac_read_search,-fowner"


def _unprivileged() -> list[str]:
    """A command prefix under which permission bits apply (empty when they already do)."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: permission bits cannot be made to apply")
    prefix = ["setpriv", f"--bounding-set={NO_BYPASS}", "--"]
    if not _works([*prefix, "true"]):
        pytest.skip("setpriv cannot drop capabilities here")
    return prefix


@pytest.mark.timeout(60)
def test_unwritable_out_dir_is_logged_retried_and_recovers(live_layout: Layout) -> None:
    """Out dir read-only for the daemon: it keeps running, logs publish_failed (Permission
    denied) once for the failure streak while retrying, leaves the old files alone, and
    publishes as soon as the directory is writable again (publish_recovered)."""
    layout = live_layout
    assert subprocess.run([HEDGE_KPI, "once", *layout.cli_args()], timeout=30).returncode == 0
    old = {p.name: p.read_bytes() for p in layout.out.iterdir()}
    layout.out.chmod(0o555)
    _fresh(layout, 20_000.0)
    argv = run_argv(layout, "--heartbeat-s", "0.3", "--retry-ms", "50")
    proc = spawn([*_unprivileged(), *argv])
    try:
        failed = proc.wait_event("publish_failed", 15)
        assert failed["reason"] == "Permission denied"
        mark = proc.events.index(failed) + 1
        time.sleep(1.0)  # retried with backoff; the streak is one line
        assert [e for e in proc.events[mark:] if e.get("event") == "publish_failed"] == []
        assert proc.proc.poll() is None  # still running
        assert {p.name: p.read_bytes() for p in layout.out.iterdir()} == old
        layout.out.chmod(0o777)
        wait_for(lambda: kpis_nav(layout.out) == 20_000.0, 10)
        assert proc.wait_event("publish_recovered", 10, after=mark)["failures"] >= 3
        assert proc.stop() == 0
    finally:
        proc.stop()
        layout.out.chmod(0o755)
    assert layout.temps() == []


@pytest.mark.timeout(60)
def test_once_into_an_unwritable_out_dir_exits_3_naming_it(live_layout: Layout) -> None:
    """`hedge-kpi once` that cannot write the out dir: exit 3, the reason on stderr, and the
    old files untouched."""
    layout = live_layout
    assert subprocess.run([HEDGE_KPI, "once", *layout.cli_args()], timeout=30).returncode == 0
    old = {p.name: p.read_bytes() for p in layout.out.iterdir()}
    layout.out.chmod(0o555)
    try:
        done = subprocess.run(
            [*_unprivileged(), HEDGE_KPI, "once", *layout.cli_args()],
            capture_output=True,
            text=True,
            timeout=30,
        )
    finally:
        layout.out.chmod(0o755)
    assert done.returncode == 3, done.stderr
    assert f"cannot publish to {layout.out}" in done.stderr
    assert "Permission denied" in done.stderr
    assert {p.name: p.read_bytes() for p in layout.out.iterdir()} == old


# -- the out dir deleted under a running daemon -----------------------------------------------


@pytest.mark.timeout(60)
def test_deleted_out_dir_is_recreated_and_published_again(live_layout: Layout) -> None:
    """`rm -rf out/` while running: the daemon says so (the next pass finds the locked
    directory gone, or a publish already under way fails), recreates and locks the directory,
    and publishes both files again."""
    layout = live_layout
    with daemon(layout, "--heartbeat-s", "0.3", "--retry-ms", "50") as proc:
        proc.wait_event("publish", 15)
        mark = len(proc.events)
        shutil.rmtree(layout.out)
        noticed = proc.wait_event(
            "out_dir_replaced", 10, where=lambda e: e["file"] == str(layout.out), after=mark
        )
        failures = [e for e in proc.events[mark:] if e.get("event") == "publish_failed"]
        assert all(e["reason"] == "No such file or directory" for e in failures), failures
        proc.wait_event("publish", 10, after=proc.events.index(noticed))
        read_outputs(layout.out)
        _fresh(layout, 20_000.0)
        wait_for(lambda: kpis_nav(layout.out) == 20_000.0, 10)


# -- inotify: lost events and exhausted limits ------------------------------------------------


def _churn(directory: Path, files: int) -> None:
    """Create and delete `files` temp names: at least 3 inotify events each."""
    for i in range(files):
        path = str(directory / f".churn{i}.tmp")
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        os.unlink(path)


@pytest.mark.timeout(90)
def test_inotify_queue_overflow_is_caught_up_by_a_rescan(live_layout: Layout) -> None:
    """The daemon frozen (SIGSTOP) while more events than the kernel queue holds (16,384 by
    default) pile up and the real input changes: the queue overflows and drops the change's
    event; on SIGCONT watchdog's overflow warning triggers a rescan that publishes the final
    input, long before the 60 s periodic rescan or heartbeat."""
    layout = live_layout
    queue = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    if queue > 500_000:
        pytest.skip(f"fs.inotify.max_queued_events is {queue}: too many events to overflow it")
    files = queue // 2 + 1_000
    with daemon(layout, "--heartbeat-s", "60", "--rescan-s", "60") as proc:
        proc.wait_event("publish", 15)
        # The history's own publishes (which look at every input) come first: only the rescan
        # may find the change below.
        wait_for(lambda: history_caught_up(layout.out), 15)
        time.sleep(0.2)
        os.kill(proc.proc.pid, signal.SIGSTOP)
        try:
            _churn(layout.state, files)  # >= 2 events per file: past the kernel queue
            _fresh(layout, 20_000.0)
        finally:
            os.kill(proc.proc.pid, signal.SIGCONT)
        rescan = proc.wait_event("rescan_found_changes", 20)
        assert rescan["reason"] == "queue_overflow"
        assert str(layout.path("nav_state")) in rescan["paths"]
        wait_for(lambda: kpis_nav(layout.out) == 20_000.0, 5)


@pytest.mark.parametrize(
    ("knob", "reason"),
    [
        ("max_inotify_watches", "inotify watch limit reached"),
        ("max_inotify_instances", "inotify instance limit reached"),
    ],
)
@pytest.mark.timeout(60)
def test_inotify_limits_fall_back_to_polling(live_layout: Layout, knob: str, reason: str) -> None:
    """No inotify watch (ENOSPC) or instance (EMFILE) left: the daemon says so once, polls,
    and still publishes a change well within a second or two (no 60 s rescan involved)."""
    _need_unshare("-U", "-r")
    layout = live_layout
    limit = f'echo 0 > /proc/sys/user/{knob} && exec "$@"'
    argv = run_argv(layout, "--heartbeat-s", "60", "--rescan-s", "60")
    proc = spawn(["unshare", "-U", "-r", "sh", "-c", limit, "sh", *argv])
    try:
        proc.wait_event("publish", 15)
        fallback = proc.named("watch_fallback_polling")
        assert len(fallback) == 1
        assert reason in fallback[0]["reason"]
        assert fallback[0]["level"] == "warning"
        _fresh(layout, 20_000.0)
        wait_for(lambda: kpis_nav(layout.out) == 20_000.0, 5)
        assert proc.named("rescan_found_changes") == []  # the polling observer saw it
        assert proc.stop() == 0
    finally:
        proc.stop()


# -- SIGKILL at random points, then restart ---------------------------------------------------


@pytest.mark.timeout(120)
def test_sigkill_mid_publish_then_restart(live_layout: Layout) -> None:
    """kill -9 at random moments of a 1 ms publish loop, five times: the published files
    always parse and validate; on restart the temp files of the killed process (and a planted
    one) are swept and the first publish comes at start-up, without waiting for any event."""
    layout = live_layout
    rng = random.Random(7)  # noqa: S311 - reproducible kill timing, not cryptography
    killed_mid_write = 0
    spawn_to_publish_s: list[float] = []
    for _ in range(5):
        planted = layout.out / f".kpis_v7.json.{rng.randrange(10**6)}.deadbeef.tmp"
        planted.write_bytes(b'{"half":')
        leftovers = {str(layout.out / name) for name in layout.temps()}
        proc = spawn(run_argv(layout, "--heartbeat-s", "0.001"))
        try:
            first = proc.wait_event("publish", 15)
            start = proc.named("start")[0]
            assert first["reason"] == "start"
            startup_s = _iso_s(first["timestamp"]) - _iso_s(start["timestamp"])
            assert startup_s < 1.0, f"first publish {startup_s:.3f} s after start"
            spawn_to_publish_s.append(first["_mono"] - proc.started_mono)
            swept = proc.named("stale_temps_removed")
            assert len(swept) == 1 and set(swept[0]["files"]) == leftovers
            time.sleep(rng.uniform(0.05, 0.4))
        finally:
            proc.stop(signal.SIGKILL)
        assert proc.proc.returncode == -signal.SIGKILL
        read_outputs(layout.out)
        killed_mid_write += bool(set(layout.temps()) - {planted.name})
    with daemon(layout, "--heartbeat-s", "60") as proc:
        proc.wait_event("publish", 15)
        assert proc.stop() == 0
    assert layout.temps() == []
    # Shown with -s: how often a kill landed mid-write, and the spawn-to-first-publish times
    # (interpreter start-up and imports included; the daemon's own part is asserted above).
    print(f"{killed_mid_write} of 5 kills left a temp file of their own")
    print("spawn to first publish (s):", [round(t, 3) for t in spawn_to_publish_s])


def _iso_s(stamp: str) -> float:
    """Epoch seconds of a structlog ISO timestamp."""
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


# -- a crash loop under a real supervisord --------------------------------------------------


SUPERVISORD_CONF = """\
[supervisord]
nodaemon=true
logfile={dir}/supervisord.log
pidfile={dir}/supervisord.pid
childlogdir={dir}
loglevel=info

[program:kpi]
command={python} {driver} {crash_after_s}
directory={dir}
startsecs=1
startretries=3
autorestart=true
stopsignal=TERM
stopwaitsecs=5
redirect_stderr=true
stdout_logfile={dir}/kpi.log
environment=PYTHONUNBUFFERED="1",KPI_STATE_DIR="{state}",KPI_OUT_DIR="{out}",KPI_FX_PATH="{fx}",KPI_HOLDINGS_PATH="{holdings}",KPI_FSYNC="0",KPI_HEARTBEAT_S="0.5"
"""


@pytest.fixture
def crash_file(live_layout: Layout) -> Iterator[Path]:
    path = default_crash_file(live_layout.out)
    path.unlink(missing_ok=True)
    yield path
    path.unlink(missing_ok=True)


def _supervisord_times(log: str, what: str) -> list[float]:
    """Epoch seconds of supervisord log lines containing `what` (its stamps are local time)."""
    return [
        datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
        for line in log.splitlines()
        if what in line
    ]


def _program_events(log_path: Path) -> list[dict[str, Any]]:
    try:
        lines = log_path.read_bytes().splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        try:
            out.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            continue  # a line being written right now
    return out


@pytest.mark.supervisor
@pytest.mark.timeout(90)
def test_crash_loop_under_supervisord_is_slowed_by_the_daemon_backoff(
    live_layout: Layout, crash_file: Path, tmp_path: Path
) -> None:
    """supervisord restarts a program that dies after `startsecs` at once and forever (no
    backoff of its own). The daemon's crash backoff holds each dying process back 1 s, 2 s,
    4 s ... before it exits, so supervisord cannot respawn it sooner: the spawn gaps grow
    instead of staying constant."""
    supervisord = BIN / "supervisord"
    if not supervisord.exists():
        pytest.fail(f"supervisord not installed beside {sys.executable}")
    layout = live_layout
    run_dir = tmp_path / "supervisor"
    run_dir.mkdir()
    conf = run_dir / "supervisord.conf"
    conf.write_text(
        SUPERVISORD_CONF.format(
            dir=run_dir,
            python=sys.executable,
            driver=HERE / "crashing_daemon.py",
            crash_after_s=1.5,
            state=layout.state,
            out=layout.out,
            fx=layout.fx,
            holdings=layout.holdings,
        )
    )
    program_log = run_dir / "kpi.log"
    sup = subprocess.Popen([supervisord, "-c", conf], cwd=run_dir, stdout=subprocess.DEVNULL)
    try:
        # Three crashes and the spawn after the third (its 4 s backoff served).
        wait_for(
            lambda: sum(e.get("event") == "start" for e in _program_events(program_log)) >= 4,
            timeout_s=60,
            interval_s=0.2,
        )
    finally:
        sup.send_signal(signal.SIGTERM)
        try:
            sup.wait(15)
        except subprocess.TimeoutExpired:
            sup.kill()
            sup.wait(5)
            raise
    assert sup.returncode == 0
    events = _program_events(program_log)
    crashes = [e for e in events if e["event"] == "crashed"]
    sup_log = (run_dir / "supervisord.log").read_text()
    spawns = _supervisord_times(sup_log, "spawned: 'kpi'")
    assert len(spawns) == sum(e["event"] == "start" for e in events)
    assert [e["backoff_s"] for e in crashes[:3]] == [1.0, 2.0, 4.0]
    assert [e["recent_crashes"] for e in crashes[:3]] == [1, 2, 3]
    assert all(e["reason"] == "RuntimeError: injected fault: loop died" for e in crashes)
    # supervisord respawned each time only after the dying process had served its backoff.
    for crash, respawn in zip(crashes[:3], spawns[1:4], strict=True):
        assert respawn >= _iso_s(crash["timestamp"]) + crash["backoff_s"], (crash, respawn)
    # The hold-back grows from crash to crash. Measured from each crash to the next spawn, so a
    # slower cold start of the first process cannot hide it. supervisord notices an exit and
    # spawns on its own 1 s ticks, which adds up to about 2 s to each figure: the first and the
    # third (1 s and 4 s of backoff) are compared, whose difference outgrows that.
    held = [
        respawn - _iso_s(crash["timestamp"])
        for crash, respawn in zip(crashes[:3], spawns[1:4], strict=True)
    ]
    assert held[2] >= held[0] + 1.0, held
    # Between crashes it did its job: every spawn published at start-up.
    assert sum(e["event"] == "publish" and e["reason"] == "start" for e in events) == len(spawns)
