"""Hostile neighbours, with real processes and real files: a symlink re-pointed between an
inside and an outside file while the reader reads, FIFOs planted where the crash log lives
(old and new place), a crash-log directory someone else owns, and a second publisher started
on the same out dir.
"""

from __future__ import annotations

import hashlib
import os
import signal
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from kpi_publisher import fs, lock
from kpi_publisher.contract import OK
from kpi_publisher.daemon import CrashLog, default_crash_file, runtime_dir
from kpi_publisher.sources import SourceReader

from .helpers import HEDGE_KPI, HERE, Layout, good_docs, run_argv, spawn, wait_for

INSIDE_NAV = 11_111.0
OUTSIDE_NAV = 99_999.0

# Re-points `link` between two targets as fast as it can (symlink + atomic rename, so the link
# always exists) until `stop` appears; prints how many swaps it made.
SWAPPER = textwrap.dedent(
    """
    import os, sys
    link, inside, outside, stop = sys.argv[1:5]
    tmp = link + ".swap"
    n = 0
    while not os.path.exists(stop):
        for target in (inside, outside):
            os.symlink(target, tmp)
            os.replace(tmp, link)
            n += 1
    print(n)
    """
)


@pytest.fixture
def race_layout(layout: Layout) -> Iterator[tuple[Layout, Path]]:
    """nav_state.json is a symlink; one target lies inside the state dir, one outside it."""
    inside = layout.state / "real" / "nav_state.json"
    inside.parent.mkdir()
    outside = layout.root / "elsewhere" / "nav_state.json"
    outside.parent.mkdir()
    for path, nav in ((inside, INSIDE_NAV), (outside, OUTSIDE_NAV)):
        doc = good_docs(nav_usd=nav)["nav_state"]
        path.write_bytes(orjson.dumps(doc))
    link = layout.path("nav_state")
    link.unlink()
    link.symlink_to(inside)
    yield layout, outside


def _swapper(link: Path, inside: Path, outside: Path, stop: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", SWAPPER, str(link), str(inside), str(outside), str(stop)],
        stdout=subprocess.PIPE,
        text=True,
    )


@pytest.mark.timeout(120)
def test_symlink_swapped_while_reading_never_yields_the_outside_file(
    race_layout: tuple[Layout, Path],
) -> None:
    """Another process re-points nav_state.json between a file inside the state dir and one
    outside it, as fast as it can, while the reader reads thousands of times (the reader
    itself and the SourceReader the daemon uses). The outside NAV is never returned as ok;
    both outcomes of the race really happened (inside read ok, outside refused)."""
    layout, outside = race_layout
    link = layout.path("nav_state")
    inside = Path(os.readlink(link))
    stop = layout.root / "stop"
    settings = layout.settings()
    reader = SourceReader(settings)
    swapper = _swapper(link, inside, outside, stop)
    counts = {"inside_ok": 0, "outside_ok": 0, "refused": 0, "other": 0}
    leaks: list[str] = []
    try:
        deadline = time.monotonic() + 60
        reads = 0
        while reads < 6_000 and time.monotonic() < deadline:
            reads += 1
            try:
                raw, _ = fs.read_bytes(link, max_bytes=1 << 20, root=layout.state)
            except fs.ReadError as exc:
                counts["refused" if "symlink leaves" in exc.reason else "other"] += 1
            except FileNotFoundError:
                counts["other"] += 1
            else:
                nav = orjson.loads(raw)["nav_usd"]
                counts["inside_ok" if nav == INSIDE_NAV else "outside_ok"] += 1
                if nav != INSIDE_NAV:
                    leaks.append("fs.read_bytes")
            reader.invalidate([link])
            read = reader.read("nav_state")
            ok_data = read.data if read.status == OK else None
            if ok_data is not None and ok_data.get("nav_usd") != INSIDE_NAV:
                leaks.append("SourceReader")
    finally:
        stop.touch()
        out, _ = swapper.communicate(timeout=30)
    swaps = int(out.strip() or 0)
    print(f"reads={reads} swaps={swaps} {counts}")
    assert leaks == []
    assert counts["outside_ok"] == 0
    assert swaps >= 200, swaps
    assert counts["inside_ok"] >= 200 and counts["refused"] >= 200, counts


def test_symlink_chains_and_linked_directories_are_judged_by_the_file_reached(
    layout: Layout,
) -> None:
    """Whatever the path to it (a chain of links inside the state dir, a linked directory),
    the file actually opened decides: inside is read, outside is refused."""
    state = layout.state
    nav = layout.path("nav_state")
    outside_dir = layout.root / "elsewhere"
    outside_dir.mkdir()
    (outside_dir / "nav.json").write_bytes(orjson.dumps({"nav_usd": OUTSIDE_NAV}))
    (state / "sub").mkdir()
    (state / "sub" / "nav.json").write_bytes(orjson.dumps({"nav_usd": INSIDE_NAV}))

    def read() -> bytes:
        return fs.read_bytes(nav, max_bytes=1 << 20, root=state)[0]

    nav.unlink()
    (state / "hop").symlink_to("sub/nav.json")
    nav.symlink_to("hop")  # a chain that stays inside
    assert orjson.loads(read())["nav_usd"] == INSIDE_NAV
    (state / "hop").unlink()
    (state / "hop").symlink_to(outside_dir / "nav.json")  # the same chain, now leaving
    with pytest.raises(fs.ReadError, match="symlink leaves"):
        read()
    (state / "hop").unlink()
    (state / "linked").symlink_to(outside_dir)  # a directory link leading out
    (state / "hop").symlink_to("linked/nav.json")
    with pytest.raises(fs.ReadError, match="symlink leaves"):
        read()


@pytest.mark.timeout(30)
def test_symlink_to_a_fifo_inside_the_state_dir_never_blocks(layout: Layout) -> None:
    """A link to a FIFO (inside the state dir, so the link itself is allowed) is refused as
    not a regular file at once: the reader neither blocks nor waits for a writer."""
    fifo = layout.state / "pipe"
    os.mkfifo(fifo)
    nav = layout.path("nav_state")
    nav.unlink()
    nav.symlink_to(fifo.name)
    started = time.monotonic()
    with pytest.raises(fs.ReadError, match="not a regular file"):
        fs.read_bytes(nav, max_bytes=1 << 20, root=layout.state)
    assert time.monotonic() - started < 2


# -- the crash log: a private place, read defensively -----------------------------------------


def _old_crash_file(out_dir: Path) -> Path:
    """Where crash times used to be kept: a predictable name in the shared temp dir."""
    digest = hashlib.sha1(str(out_dir).encode(), usedforsecurity=False).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"hedge-kpi-{digest}.crashes.json"


def _crash_env(layout: Layout, home: Path) -> dict[str, str]:
    return {
        "HOME": str(home),
        "KPI_STATE_DIR": str(layout.state),
        "KPI_OUT_DIR": str(layout.out),
        "KPI_FX_PATH": str(layout.fx),
        "KPI_HOLDINGS_PATH": str(layout.holdings),
        "KPI_FSYNC": "0",
        "KPI_HEARTBEAT_S": "0.5",
    }


def _run_crashing_daemon(env: dict[str, str]) -> tuple[int, list[dict[str, object]]]:
    """The real Daemon whose loop dies 0.3 s after start (tests/reliability/crashing_daemon.py)."""
    full = {k: v for k, v in os.environ.items() if not k.startswith(("KPI_", "XDG_"))}
    full.update(env, PYTHONUNBUFFERED="1")
    done = subprocess.run(
        [sys.executable, str(HERE / "crashing_daemon.py"), "0.3"],
        capture_output=True,
        env=full,
        timeout=30,  # a FIFO that blocked the crash log would hang here
    )
    events = []
    for line in done.stdout.splitlines():
        try:
            events.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            continue
    return done.returncode, events


@pytest.mark.timeout(120)
def test_fifos_planted_at_the_old_and_new_crash_log_paths_do_not_hang_the_daemon(
    tmp_path: Path,
) -> None:
    """FIFOs wait at the old /tmp name and at the new crash-log path. The real daemon still
    starts, publishes, crashes and exits (no hang); the crashes are still counted (1, then 2,
    with the growing backoff), and the old /tmp name is never touched."""
    layout = Layout(tmp_path / "site").make()
    layout.write_all(good_docs(now=time.time()))
    home = tmp_path / "home"
    home.mkdir()
    env = _crash_env(layout, home)
    new = default_crash_file(layout.out, environ={"HOME": str(home)})
    assert new.parent == home / ".local" / "state" / "hedge-kpi"
    old = _old_crash_file(layout.out)
    old.unlink(missing_ok=True)
    os.mkfifo(old)
    os.mkfifo(new)
    try:
        for expected in (1, 2):
            rc, events = _run_crashing_daemon(env)
            assert rc == 1, events[-5:]
            names = [e.get("event") for e in events]
            assert "publish" in names, names
            crashed = [e for e in events if e.get("event") == "crashed"]
            assert [e["recent_crashes"] for e in crashed] == [expected], events[-5:]
            assert crashed[0]["backoff_s"] == float(2 ** (expected - 1))
        assert stat.S_ISREG(os.lstat(new).st_mode)
        assert len(orjson.loads(new.read_bytes())) == 2
        assert stat.S_ISFIFO(os.lstat(old).st_mode)
    finally:
        old.unlink(missing_ok=True)


def test_crash_log_directory_is_private_and_a_planted_one_is_refused(tmp_path: Path) -> None:
    """The per-user fallback under the temp dir is created 0700 and ours. A symlink planted
    at that name, or a directory owned by someone else, is refused: nothing is read from or
    written there, and a crash still counts (as this process's only one)."""
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir(mode=0o1777)
    env = {"TMPDIR": str(tmpdir)}  # no HOME, no XDG_STATE_HOME: the temp-dir fallback
    tempfile.tempdir = None
    old_tmpdir = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = str(tmpdir)
    try:
        expected = tmpdir / f"hedge-kpi-{os.geteuid()}"
        assert runtime_dir(env) == expected
        st = os.lstat(expected)
        assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o700
        assert st.st_uid == os.geteuid()
        crash_log = CrashLog(default_crash_file(tmp_path / "out", environ=env))
        assert [crash_log.record(1000.0), crash_log.record(1001.0)] == [1, 2]

        # A directory of ours that others can write to is tightened back to 0700.
        os.chmod(expected, 0o777)  # noqa: S103 - the fault under test
        assert crash_log.record(1002.0) == 3
        assert stat.S_IMODE(os.lstat(expected).st_mode) == 0o700

        # Someone else's directory planted at the predictable name: a symlink to it, then
        # (as root) a real directory owned by another uid.
        planted = tmp_path / "attacker"
        planted.mkdir(mode=0o777)
        os.chmod(planted, 0o777)  # noqa: S103 - someone else's open directory
        for entry in list(expected.iterdir()):
            entry.unlink()
        expected.rmdir()
        expected.symlink_to(planted)
        assert runtime_dir(env) is None
        assert CrashLog(expected / "crashes-x.json").record(2000.0) == 1
        assert list(planted.iterdir()) == []
        if os.geteuid() == 0:
            expected.unlink()
            expected.mkdir(mode=0o700)
            os.chown(expected, 65534, 65534)
            assert runtime_dir(env) is None
            assert CrashLog(expected / "crashes-x.json").record(2000.0) == 1
            assert list(expected.iterdir()) == []
    finally:
        tempfile.tempdir = None
        if old_tmpdir is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = old_tmpdir


def test_runtime_dir_env_var_chooses_the_crash_log_place(tmp_path: Path) -> None:
    """KPI_RUNTIME_DIR wins over XDG_STATE_HOME and HOME; it is created 0700."""
    chosen = tmp_path / "run" / "hedge"
    env = {
        "KPI_RUNTIME_DIR": str(chosen),
        "XDG_STATE_HOME": str(tmp_path / "xdg"),
        "HOME": str(tmp_path / "home"),
    }
    path = default_crash_file(tmp_path / "out", environ=env)
    assert path.parent == chosen
    assert stat.S_IMODE(os.lstat(chosen).st_mode) == 0o700
    del env["KPI_RUNTIME_DIR"]
    assert (
        default_crash_file(tmp_path / "out", environ=env).parent == tmp_path / "xdg" / "hedge-kpi"
    )


def test_crash_log_reads_oversized_or_garbage_files_as_no_crashes(tmp_path: Path) -> None:
    """A crash file too large, not JSON, or with absurd numbers never raises."""
    crash_log = CrashLog(tmp_path / "crashes.json")
    for content in (b"[" + b"1," * 100_000 + b"1]", b"\xff\xfe", b"[1e999, 1e400]", b"{}"):
        crash_log.path.write_bytes(content)
        assert crash_log.record(5000.0) == 1


# -- one publisher per out dir -------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_second_daemon_on_one_out_dir_exits_2_naming_the_holder(tmp_path: Path) -> None:
    """Two `hedge-kpi run` on one out dir: the second exits 2 within seconds, its log line
    naming the first's pid; `once` is refused the same way. SIGKILL of the first frees the
    lock (the kernel drops it), and a new daemon then starts and publishes."""
    layout = Layout(tmp_path).make()
    layout.write_all(good_docs(now=time.time()))
    first = spawn(run_argv(layout))
    third = None
    try:
        first.wait_event("publish", 30)
        started = time.monotonic()
        second = spawn(run_argv(layout))
        assert second.proc.wait(15) == 2
        assert time.monotonic() - started < 10
        second.stop()
        locked = second.wait_event("out_dir_locked", 1)
        assert locked["holder_pid"] == first.proc.pid
        assert str(first.proc.pid) in locked["reason"]
        assert second.named("publish") == []

        started = time.monotonic()
        once = subprocess.run(
            [HEDGE_KPI, "once", *layout.cli_args(), "--no-fsync"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert once.returncode == 2, once.stderr
        assert time.monotonic() - started < 4  # a daemon is not waited for
        assert f"pid {first.proc.pid}" in once.stderr

        assert first.proc.poll() is None  # the holder runs on, undisturbed
        first.stop(signal.SIGKILL)
        third = spawn(run_argv(layout))
        third.wait_event("publish", 30)
        # The killed holder's spare temp files are swept; the live daemon's own spares stay
        # (looked at until they stand: a publish in flight consumes and remakes them).
        killed = f".{first.proc.pid}."

        def only_outputs_and_own_spares() -> bool:
            names = sorted(p.name for p in layout.out.iterdir())
            temps = [name for name in names if fs.is_temp_name(name)]
            assert not [name for name in temps if killed in name], temps
            outputs = [name for name in names if name not in temps]
            return outputs == ["kpis_v7.json", "positions_v7.json"] and (
                len(temps) == 2 and all(f".{third.proc.pid}." in name for name in temps)
            )

        wait_for(only_outputs_and_own_spares, 10)
        assert third.stop() == 0
        assert sorted(p.name for p in layout.out.iterdir()) == [
            "kpis_v7.json",
            "positions_v7.json",
        ]  # a clean stop removes its spares
    finally:
        first.stop()
        if third is not None:
            third.stop()


@pytest.mark.timeout(120)
def test_two_daemons_waiting_for_a_missing_state_dir_become_one_publisher(
    tmp_path: Path,
) -> None:
    """Out dir = state dir, which does not exist yet (neither daemon may create it). When the
    executor creates it, exactly one daemon takes the lock and publishes; the other exits 2
    naming it."""
    layout = Layout(tmp_path)
    layout.fx.parent.mkdir(parents=True)
    layout.holdings.parent.mkdir(parents=True)
    argv = [
        str(HEDGE_KPI),
        "run",
        "--state-dir",
        str(layout.state),
        "--fx-path",
        str(layout.fx),
        "--holdings-path",
        str(layout.holdings),
        "--log-format",
        "json",
        "--no-fsync",
    ]
    a, b = spawn(argv), spawn(argv)
    try:
        a.wait_event("start", 30)
        b.wait_event("start", 30)
        assert not layout.state.exists()
        layout.state.mkdir(parents=True)
        layout.write_all(good_docs(now=time.time()))
        wait_for(lambda: a.proc.poll() is not None or b.proc.poll() is not None, 30, 0.05)
        loser, winner = (a, b) if a.proc.poll() is not None else (b, a)
        assert loser.proc.wait(5) == 2
        assert loser.wait_event("out_dir_locked", 5)["holder_pid"] == winner.proc.pid
        winner.wait_event("publish", 30, where=lambda e: e.get("seq", 0) >= 1)
        assert winner.proc.poll() is None
    finally:
        a.stop()
        b.stop()


def test_the_lock_creates_no_file_and_names_its_holder(layout: Layout) -> None:
    """The lock is on the out dir itself: nothing appears in it (the out dir may be the
    executor's state dir). A second taker is refused naming this process's pid from the
    kernel's lock table; after release the lock is free again."""
    before = sorted(p.name for p in layout.out.iterdir())
    held = lock.acquire(layout.out)
    try:
        assert sorted(p.name for p in layout.out.iterdir()) == before
        probe = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; from pathlib import Path; from kpi_publisher import lock\n"
                "try:\n    lock.acquire(Path(sys.argv[1]))\n"
                "except lock.LockHeld as exc:\n    print(exc.pid); sys.exit(2)",
                str(layout.out),
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert probe.returncode == 2, probe.stderr
        assert probe.stdout.split() == [str(os.getpid())]
    finally:
        held.release()
    lock.acquire(layout.out).release()  # released: free again
