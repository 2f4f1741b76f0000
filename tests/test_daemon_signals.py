"""`hedge-kpi run` as a real process: signals, config reload, a deleted state dir, its stdout."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import orjson
import pytest

from bench.inotify import IN_CREATE, Inotify
from kpi_publisher import fs

pytestmark = pytest.mark.timeout(60)

WAIT_S = 10.0  # bound for a start-up or an event on a loaded machine


def write_json(path: Path, doc: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(orjson.dumps(doc))
    os.replace(tmp, path)


class Proc:
    """A `hedge-kpi run` child whose stdout lines are parsed as JSON log events."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("KPI_")}
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "kpi_publisher", "run", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**clean, **(env or {})},
        )
        self.events: list[dict[str, Any]] = []
        self.raw: list[bytes] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            with self._cond:
                self.raw.append(line)
                with contextlib.suppress(orjson.JSONDecodeError):
                    self.events.append(orjson.loads(line))
                self._cond.notify_all()

    def wait_event(
        self, pred: Callable[[dict[str, Any]], bool], timeout_s: float = WAIT_S, start: int = 0
    ) -> dict[str, Any]:
        """The first event at index >= start matching `pred`; fails the test on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                for event in self.events[start:]:
                    if pred(event):
                        return event
                remaining = deadline - time.monotonic()
                ended = self.popen.poll() is not None and not self._reader.is_alive()
                if remaining <= 0 or ended:
                    raise AssertionError(f"no matching event; saw {self.events[-5:]}")
                self._cond.wait(remaining)

    def mark(self) -> int:
        with self._cond:
            return len(self.events)

    def stop(self, sig: int = signal.SIGTERM) -> tuple[int, float]:
        """Send `sig`; returns (exit code, seconds until the process was gone)."""
        sent = time.monotonic()
        self.popen.send_signal(sig)
        code = self.popen.wait(WAIT_S)
        elapsed = time.monotonic() - sent
        self._reader.join(WAIT_S)
        return code, elapsed

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(WAIT_S)
        for stream in (self.popen.stdout, self.popen.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def dirs(tmp_path: Path) -> dict[str, Path]:
    state = tmp_path / "logs" / "state"
    out = tmp_path / "out"
    state.mkdir(parents=True)
    write_json(state / "nav_state.json", {"nav_usd": 1000.0, "updated_at": time.time()})
    return {"state": state, "out": out, "root": tmp_path}


@pytest.fixture
def spawn() -> Iterator[Callable[..., Proc]]:
    procs: list[Proc] = []

    def start(args: list[str], env: dict[str, str] | None = None) -> Proc:
        proc = Proc(args, env)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.kill()


def base_args(dirs: dict[str, Path], *extra: str) -> list[str]:
    return ["--state-dir", str(dirs["state"]), "--out-dir", str(dirs["out"]), *extra]


def remove_tree(path: Path) -> None:
    """Remove `path` while a daemon may be writing into it: a file it adds or renames while
    the tree is walked fails that walk, which is tried again (it is gone within a few tries)."""
    for _ in range(50):
        try:
            shutil.rmtree(path)
        except FileNotFoundError:
            if not path.exists():
                return
        except OSError:
            pass
        else:
            return
        time.sleep(0.01)
    raise AssertionError(f"{path} could not be removed")


def is_publish(event: dict[str, Any]) -> bool:
    return event.get("event") == "publish"


def kpis(dirs: dict[str, Path]) -> dict[str, Any]:
    doc: dict[str, Any] = orjson.loads((dirs["out"] / "kpis_v7.json").read_bytes())
    return doc


def published_nav(dirs: dict[str, Path]) -> float | None:
    """The NAV in the out dir now; None while the out dir has no kpis_v7.json (a test that
    replaces the out dir may look at a publish line read after the replacement)."""
    try:
        return cast(float | None, kpis(dirs)["nav"]["nav_usd"])
    except FileNotFoundError:
        return None


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stop_signal_in_the_middle_of_a_burst_exits_0_within_a_second(
    dirs: dict[str, Path], spawn: Callable[..., Proc], sig: int
) -> None:
    """supervisorctl stop sends TERM mid-burst: the publish in flight finishes, exit 0 < 1 s."""
    proc = spawn(base_args(dirs, "--fsync"))
    proc.wait_event(is_publish)
    stop_writing = threading.Event()

    def burst() -> None:
        i = 0
        while not stop_writing.is_set():
            i += 1
            write_json(dirs["state"] / "nav_state.json", {"nav_usd": float(i), "ts": time.time()})

    writer = threading.Thread(target=burst)
    writer.start()
    try:
        proc.wait_event(lambda e: is_publish(e) and e["reason"] == "change")
        code, elapsed = proc.stop(sig)
    finally:
        stop_writing.set()
        writer.join()
    assert code == 0
    assert elapsed < 1.0
    assert proc.events[-1]["event"] == "stopped"
    assert kpis(dirs)["schema"] == "hedge.kpis_v7"  # the last publish is whole
    assert not list(dirs["out"].glob(".*.tmp"))


def test_stdout_carries_only_json_log_lines(
    dirs: dict[str, Path], spawn: Callable[..., Proc]
) -> None:
    """Under supervisord stdout is a pipe: every line is one JSON object with an event name."""
    proc = spawn(base_args(dirs, "--heartbeat-s", "0.2"))
    proc.wait_event(lambda e: is_publish(e) and e["reason"] == "heartbeat")
    code, _ = proc.stop()
    assert code == 0
    assert proc.raw and len(proc.events) == len(proc.raw)
    assert all("event" in e and "timestamp" in e for e in proc.events)
    assert proc.popen.stderr is not None and proc.popen.stderr.read() == b""


def test_state_dir_deleted_and_recreated_keeps_publishing_changes(
    dirs: dict[str, Path], spawn: Callable[..., Proc]
) -> None:
    proc = spawn(base_args(dirs))
    proc.wait_event(is_publish)
    shutil.rmtree(dirs["state"])
    proc.wait_event(lambda e: is_publish(e) and e["not_ok"].get("nav_state") == "missing")
    dirs["state"].mkdir()
    mark = proc.mark()
    write_json(dirs["state"] / "nav_state.json", {"nav_usd": 4321.0, "updated_at": time.time()})
    proc.wait_event(lambda e: is_publish(e) and "nav_state" in e["changed"], start=mark)
    assert kpis(dirs)["nav"]["nav_usd"] == 4321.0
    # ... and later changes arrive through the new watch too.
    mark = proc.mark()
    write_json(dirs["state"] / "nav_state.json", {"nav_usd": 4322.0, "updated_at": time.time()})
    proc.wait_event(lambda e: is_publish(e) and "nav_state" in e["changed"], start=mark)
    assert kpis(dirs)["nav"]["nav_usd"] == 4322.0
    assert proc.stop()[0] == 0


def test_sighup_with_a_good_config_applies_it(
    dirs: dict[str, Path], spawn: Callable[..., Proc]
) -> None:
    """SIGHUP re-reads the TOML file; the new nav_fresh_s shows in the very next publish."""
    write_json(dirs["state"] / "nav_state.json", {"nav_usd": 1.0, "updated_at": time.time() - 200})
    config = dirs["root"] / "kpi.toml"
    config.write_text("[kpi]\nnav_fresh_s = 90\n")
    proc = spawn(base_args(dirs, "--config", str(config)))
    # The start line names the config file in force (an operator's first question).
    assert proc.wait_event(lambda e: e["event"] == "start")["config_file"] == str(config)
    proc.wait_event(is_publish)
    assert kpis(dirs)["nav"]["fresh"] is False
    config.write_text("[kpi]\nnav_fresh_s = 100000\n")
    proc.popen.send_signal(signal.SIGHUP)
    reloaded = proc.wait_event(lambda e: e["event"] == "config_reloaded")
    assert reloaded["changed"] == ["nav_fresh_s"]
    assert reloaded["file"] == str(config)
    proc.wait_event(lambda e: is_publish(e) and e["reason"] == "reload")
    assert kpis(dirs)["nav"]["fresh"] is True
    assert proc.stop()[0] == 0


@pytest.mark.parametrize(
    ("bad", "reason_part"),
    [
        ("[kpi]\nnav_fresh_s = \n", "kpi.toml"),
        ("[kpi]\nheartbeat_s = -1\n", "heartbeat_s must be >= 0.001"),
        ("[kpi]\nno_such_setting = 1\n", "unknown settings no_such_setting"),
    ],
    ids=["broken-toml", "bad-value", "unknown-key"],
)
def test_sighup_with_a_bad_config_keeps_the_old_one_and_says_why(
    dirs: dict[str, Path], spawn: Callable[..., Proc], bad: str, reason_part: str
) -> None:
    write_json(dirs["state"] / "nav_state.json", {"nav_usd": 1.0, "updated_at": time.time() - 200})
    config = dirs["root"] / "kpi.toml"
    config.write_text("[kpi]\nnav_fresh_s = 100000\nheartbeat_s = 0.3\n")
    proc = spawn(base_args(dirs, "--config", str(config)))
    proc.wait_event(is_publish)
    config.write_text(bad)
    proc.popen.send_signal(signal.SIGHUP)
    failed = proc.wait_event(lambda e: e["event"] == "config_reload_failed")
    assert reason_part in failed["reason"]
    assert failed["file"] == str(config)
    assert failed["level"] == "error"
    mark = proc.mark()
    proc.wait_event(lambda e: is_publish(e) and e["reason"] == "heartbeat", start=mark)
    assert kpis(dirs)["nav"]["fresh"] is True  # still the old nav_fresh_s
    assert proc.stop()[0] == 0


def test_sighup_to_another_path_of_its_own_out_dir_is_applied_at_once(
    dirs: dict[str, Path], spawn: Callable[..., Proc]
) -> None:
    """A reload whose out dir is the running one by another path (a symlink to it): the
    daemon holds that directory already, so the reload applies and publishing goes on. It was
    refused as "published into by another process" (its own lock) after a 5 s stall."""
    config = dirs["root"] / "kpi.toml"
    alias = dirs["root"] / "alias"
    config.write_text(f'[kpi]\nout_dir = "{dirs["out"]}"\nheartbeat_s = 0.5\n')
    proc = spawn(["--state-dir", str(dirs["state"]), "--config", str(config)])
    proc.wait_event(is_publish)
    alias.symlink_to(dirs["out"])
    config.write_text(f'[kpi]\nout_dir = "{alias}"\nheartbeat_s = 0.5\n')
    mark = proc.mark()
    sent = time.monotonic()
    proc.popen.send_signal(signal.SIGHUP)
    reloaded = proc.wait_event(lambda e: e["event"] == "config_reloaded", start=mark)
    assert reloaded["changed"] == ["out_dir"]
    proc.wait_event(lambda e: is_publish(e) and e["reason"] == "reload", start=mark)
    assert time.monotonic() - sent < 3.0  # no wait on its own lock
    assert not [e for e in proc.events[mark:] if e["event"] == "config_reload_failed"]
    assert proc.stop()[0] == 0


def test_a_reload_into_another_daemon_s_dir_writes_nothing_there(
    dirs: dict[str, Path], spawn: Callable[..., Proc]
) -> None:
    """A reload to a link into a directory another daemon holds is refused before anything is
    written there: the writability probe comes after the lock (it created and removed a temp
    file in the other desk's directory first)."""
    config = dirs["root"] / "kpi.toml"
    taken, link = dirs["root"] / "taken", dirs["root"] / "link"
    config.write_text(f'[kpi]\nout_dir = "{dirs["out"]}"\n')
    first = spawn(["--state-dir", str(dirs["state"]), "--config", str(config)])
    first.wait_event(is_publish)
    holder = spawn(["--state-dir", str(dirs["state"]), "--out-dir", str(taken)])
    holder.wait_event(is_publish)
    link.symlink_to(taken)
    config.write_text(f'[kpi]\nout_dir = "{link}"\n')
    with Inotify(taken, IN_CREATE) as watch:
        watch.read(0.2)  # the holder's own files so far
        holder.popen.send_signal(signal.SIGSTOP)  # the holder writes nothing meanwhile
        try:
            watch.read(0.2)
            mark = first.mark()
            first.popen.send_signal(signal.SIGHUP)
            first.wait_event(lambda e: e["event"] == "config_reload_failed", start=mark)
            created = watch.read(0.3)
        finally:
            holder.popen.send_signal(signal.SIGCONT)
    assert created == [], created
    assert first.stop()[0] == 0
    assert holder.stop()[0] == 0


def test_sighup_to_another_out_dir_moves_the_lock_and_never_shares_a_dir(
    dirs: dict[str, Path], spawn: Callable[..., Proc]
) -> None:
    """The out dir's lock moves with a reload. To a dir another daemon publishes into, the
    reload is refused (the running config kept, the holder named, nothing written there); to
    a free dir, that dir is locked before anything is written and the old one is let go: a
    second daemon can then start on the old dir, and none on the new."""
    config = dirs["root"] / "kpi.toml"
    taken, free = dirs["root"] / "taken", dirs["root"] / "free"
    state = ["--state-dir", str(dirs["state"])]
    config.write_text(f'[kpi]\nout_dir = "{dirs["out"]}"\n')
    first = spawn([*state, "--config", str(config)])
    first.wait_event(is_publish)
    holder = spawn([*state, "--out-dir", str(taken)])
    holder.wait_event(is_publish)

    config.write_text(f'[kpi]\nout_dir = "{taken}"\n')
    mark = first.mark()
    first.popen.send_signal(signal.SIGHUP)
    failed = first.wait_event(lambda e: e["event"] == "config_reload_failed", start=mark)
    assert str(taken) in failed["reason"] and f"pid {holder.popen.pid}" in failed["reason"]
    assert failed["kept"] == "previous config"
    write_json(dirs["state"] / "nav_state.json", {"nav_usd": 2000.0, "updated_at": time.time()})
    first.wait_event(lambda e: is_publish(e) and "nav_state" in e["changed"], start=mark)
    assert kpis(dirs)["nav"]["nav_usd"] == 2000.0  # still its own dir
    # Nothing of the first daemon's in the taken dir: no spares of its own, and the holder's
    # spares were not swept (the holder may be publishing too, so its spares are looked at
    # until they stand).
    deadline = time.monotonic() + WAIT_S
    while True:
        temps = [p.name for p in taken.iterdir() if fs.is_temp_name(p.name)]
        assert not [name for name in temps if f".{first.popen.pid}." in name], temps
        if len(temps) == 2 and all(f".{holder.popen.pid}." in name for name in temps):
            break
        assert time.monotonic() < deadline, temps
        time.sleep(0.05)

    config.write_text(f'[kpi]\nout_dir = "{free}"\n')
    mark = first.mark()
    first.popen.send_signal(signal.SIGHUP)
    first.wait_event(lambda e: e["event"] == "config_reloaded", start=mark)
    first.wait_event(lambda e: is_publish(e) and e["reason"] == "reload", start=mark)
    assert orjson.loads((free / "kpis_v7.json").read_bytes())["nav"]["nav_usd"] == 2000.0
    second = spawn(base_args(dirs))  # the old dir: free now
    second.wait_event(is_publish)
    third = spawn([*state, "--out-dir", str(free)])
    assert third.popen.wait(WAIT_S) == 2
    locked = third.wait_event(lambda e: e["event"] == "out_dir_locked")
    assert locked["holder_pid"] == first.popen.pid
    for proc in (first, second, holder):
        assert proc.stop()[0] == 0


def test_sighup_to_an_out_dir_nothing_can_be_written_into_is_refused(
    dirs: dict[str, Path], spawn: Callable[..., Proc]
) -> None:
    """A reload to an existing directory no file can be created in (/proc/1: refused even to
    root, as a read-only mount is) is refused like an unusable config: `config_reload_failed`
    naming the dir, the running config and its lock kept, publishing goes on in the old dir."""
    config = dirs["root"] / "kpi.toml"
    config.write_text(f'[kpi]\nout_dir = "{dirs["out"]}"\nheartbeat_s = 0.3\n')
    first = spawn(["--state-dir", str(dirs["state"]), "--config", str(config)])
    first.wait_event(is_publish)
    config.write_text('[kpi]\nout_dir = "/proc/1"\nheartbeat_s = 0.3\n')
    mark = first.mark()
    first.popen.send_signal(signal.SIGHUP)
    failed = first.wait_event(lambda e: e["event"] == "config_reload_failed", start=mark)
    assert "/proc/1" in failed["reason"] and failed["kept"] == "previous config"
    write_json(dirs["state"] / "nav_state.json", {"nav_usd": 5000.0, "updated_at": time.time()})
    first.wait_event(lambda e: is_publish(e) and kpis(dirs)["nav"]["nav_usd"] == 5000.0, start=mark)
    assert not [e for e in first.events[mark:] if e["event"] == "publish_failed"]
    second = spawn(base_args(dirs))
    assert second.popen.wait(WAIT_S) == 2
    assert second.wait_event(lambda e: e["event"] == "out_dir_locked")["holder_pid"] == (
        first.popen.pid
    )
    assert first.stop()[0] == 0


def test_a_removed_out_dir_is_made_and_locked_again_so_no_second_daemon_shares_it(
    dirs: dict[str, Path], spawn: Callable[..., Proc]
) -> None:
    """The out dir removed under a running daemon: it is made again, locked again and published
    into, and a second daemon started on it is refused naming the first (the lock on the
    removed directory would keep no one out of the new one)."""
    first = spawn(base_args(dirs))
    first.wait_event(is_publish)
    remove_tree(dirs["out"])
    mark = first.mark()
    write_json(dirs["state"] / "nav_state.json", {"nav_usd": 3000.0, "updated_at": time.time()})
    first.wait_event(lambda e: is_publish(e) and kpis(dirs)["nav"]["nav_usd"] == 3000.0, start=mark)
    second = spawn(base_args(dirs))
    assert second.popen.wait(WAIT_S) == 2
    locked = second.wait_event(lambda e: e["event"] == "out_dir_locked")
    assert locked["holder_pid"] == first.popen.pid
    assert first.stop()[0] == 0


def test_an_out_dir_replaced_by_another_directory_is_locked_again_before_a_publish(
    dirs: dict[str, Path], spawn: Callable[..., Proc]
) -> None:
    """The out dir renamed away and a new directory made at its path (as when the executor
    recreates a state dir that is also the out dir): the daemon locks the new directory before
    it publishes there, so a second daemon started on it is refused naming the first."""
    first = spawn(base_args(dirs))
    first.wait_event(is_publish)
    mark = first.mark()  # before the change: a pass may notice it before the write below
    dirs["out"].rename(dirs["root"] / "out.old")
    dirs["out"].mkdir()
    write_json(dirs["state"] / "nav_state.json", {"nav_usd": 3000.0, "updated_at": time.time()})
    first.wait_event(lambda e: e["event"] == "out_dir_replaced", start=mark)
    first.wait_event(lambda e: is_publish(e) and published_nav(dirs) == 3000.0, start=mark)
    second = spawn(base_args(dirs))
    assert second.popen.wait(WAIT_S) == 2
    locked = second.wait_event(lambda e: e["event"] == "out_dir_locked")
    assert locked["holder_pid"] == first.popen.pid
    assert first.stop()[0] == 0


def test_an_out_dir_replaced_by_a_link_to_another_daemon_s_dir_is_never_published_into(
    dirs: dict[str, Path], spawn: Callable[..., Proc], tmp_path: Path
) -> None:
    """The out dir's path made a symlink to a directory another daemon holds: this daemon is
    refused there and publishes nothing into it (the other desk's numbers stay), and it
    publishes again once its path is a directory of its own."""
    other_state = tmp_path / "other" / "logs" / "state"
    other_state.mkdir(parents=True)
    write_json(other_state / "nav_state.json", {"nav_usd": 2000.0, "updated_at": time.time()})
    other_out = tmp_path / "other" / "out"
    first = spawn(base_args(dirs))
    other = spawn(["--state-dir", str(other_state), "--out-dir", str(other_out)])
    first.wait_event(is_publish)
    other.wait_event(is_publish)
    mark = first.mark()  # before the change: a pass may notice it before the write below
    dirs["out"].rename(dirs["root"] / "out.old")
    dirs["out"].symlink_to(other_out)
    write_json(dirs["state"] / "nav_state.json", {"nav_usd": 3000.0, "updated_at": time.time()})
    refused = first.wait_event(lambda e: e["event"] == "publish_failed", start=mark)
    assert "held by" in refused["reason"] or str(other.popen.pid) in refused["reason"], refused
    time.sleep(0.5)
    assert orjson.loads((other_out / "kpis_v7.json").read_bytes())["nav"]["nav_usd"] == 2000.0
    dirs["out"].unlink()
    dirs["out"].mkdir()
    write_json(dirs["state"] / "nav_state.json", {"nav_usd": 3100.0, "updated_at": time.time()})
    first.wait_event(lambda e: is_publish(e) and published_nav(dirs) == 3100.0, start=mark)
    assert orjson.loads((other_out / "kpis_v7.json").read_bytes())["nav"]["nav_usd"] == 2000.0
    assert first.stop()[0] == 0
    assert other.stop()[0] == 0


def test_an_out_dir_whose_name_is_not_utf8_is_published_into(
    dirs: dict[str, Path], spawn: Callable[..., Proc]
) -> None:
    """A path of bytes that are not UTF-8 (the config reads it as surrogate escapes) names
    the out dir's own crash log and history files too: `run` starts, publishes there and
    keeps its history, where it used to die at start on encoding the name."""
    out = dirs["root"] / "out-\udcff"
    proc = spawn(["--state-dir", str(dirs["state"]), "--out-dir", str(out)])
    proc.wait_event(is_publish)
    assert orjson.loads((out / "kpis_v7.json").read_bytes())["nav"]["nav_usd"] == 1000.0
    # A second NAV point: the curve is published from two points on.
    write_json(dirs["state"] / "nav_state.json", {"nav_usd": 1010.0, "updated_at": time.time()})
    deadline = time.monotonic() + WAIT_S
    while not (out / "nav_history_v7.json").is_file() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (out / "nav_history_v7.json").is_file(), proc.events[-5:]
    assert proc.stop()[0] == 0


def test_a_reload_into_a_state_dir_made_later_never_shares_its_out_dir(
    dirs: dict[str, Path], spawn: Callable[..., Proc]
) -> None:
    """A reload to a state dir that does not exist yet is refused (`config_reload_failed`
    naming state_dir and the path, nothing created, the running config still published): a
    mistyped path must not blank good data. Once the executor has made it, the next SIGHUP
    applies it; the out dir inside it is locked before the first write there, and a second
    daemon started on it is refused, naming the first."""
    config = dirs["root"] / "kpi.toml"
    later = dirs["root"] / "later" / "logs" / "state"
    config.write_text(f'[kpi]\nstate_dir = "{dirs["state"]}"\nout_dir = "{dirs["out"]}"\n')
    first = spawn(["--config", str(config)])
    first.wait_event(is_publish)
    config.write_text(f'[kpi]\nstate_dir = "{later}"\nout_dir = "{later / "out"}"\n')
    mark = first.mark()
    first.popen.send_signal(signal.SIGHUP)
    failed = first.wait_event(lambda e: e["event"] == "config_reload_failed", start=mark)
    assert failed["reason"] == f"state_dir {later}: No such file or directory"
    assert failed["kept"] == "previous config"
    write_json(dirs["state"] / "nav_state.json", {"nav_usd": 3000.0, "updated_at": time.time()})
    first.wait_event(lambda e: is_publish(e) and kpis(dirs)["nav"]["nav_usd"] == 3000.0, start=mark)
    assert not (dirs["root"] / "later").exists()

    later.mkdir(parents=True)
    write_json(later / "nav_state.json", {"nav_usd": 4000.0, "updated_at": time.time()})
    mark = first.mark()
    first.popen.send_signal(signal.SIGHUP)
    first.wait_event(lambda e: e["event"] == "config_reloaded", start=mark)
    first.wait_event(lambda e: is_publish(e) and e["reason"] == "reload", start=mark)
    published = orjson.loads((later / "out" / "kpis_v7.json").read_bytes())
    assert published["nav"]["nav_usd"] == 4000.0
    other = spawn(["--state-dir", str(later), "--out-dir", str(later / "out")])
    assert other.popen.wait(WAIT_S) == 2
    lost = other.wait_event(lambda e: e["event"] == "out_dir_locked")
    assert lost["holder_pid"] == first.popen.pid
    assert first.stop()[0] == 0


def test_an_out_dir_in_a_state_dir_made_after_start_is_locked_before_its_first_publish(
    tmp_path: Path, spawn: Callable[..., Proc]
) -> None:
    """`run` started before the executor made its state dir (the out dir inside it): when the
    dir appears and a second daemon starts on it at once, never both publish there. Whichever
    locks it first publishes; the other is refused (exit 2) or stops, naming it. Three rounds,
    since who comes first (the first daemon's next pass, its lock thread, the second daemon)
    is a race."""
    for round_ in range(3):
        state = tmp_path / f"r{round_}" / "logs" / "state"
        args = ["--state-dir", str(state), "--out-dir", str(state / "out")]
        first = spawn(args)
        first.wait_event(lambda e: e["event"] == "state_dir_missing")
        state.mkdir(parents=True)
        write_json(state / "nav_state.json", {"nav_usd": 1000.0, "updated_at": time.time()})
        second = spawn(args)
        deadline = time.monotonic() + WAIT_S
        while not any(p.popen.poll() is not None for p in (first, second)):
            assert time.monotonic() < deadline, "neither daemon gave way"
            time.sleep(0.05)
        time.sleep(0.5)
        published = [p for p in (first, second) if any(is_publish(e) for e in p.events)]
        assert len(published) == 1, [[e["event"] for e in p.events] for p in (first, second)]
        loser = second if published[0] is first else first
        assert loser.wait_event(lambda e: e["event"] == "out_dir_locked")["holder_pid"] == (
            published[0].popen.pid
        )
        assert published[0].popen.poll() is None
        assert published[0].stop()[0] == 0


def test_an_unusable_config_at_start_exits_2_with_the_reason(
    dirs: dict[str, Path], spawn: Callable[..., Proc]
) -> None:
    proc = spawn(base_args(dirs), env={"KPI_DEBOUNCE_MS": "soon"})
    assert proc.popen.wait(WAIT_S) == 2
    event = proc.wait_event(lambda e: e["event"] == "config_invalid")
    assert "debounce_ms" in event["reason"]


def test_on_a_terminal_the_log_is_rendered_for_humans(dirs: dict[str, Path]) -> None:
    """Run by hand on a TTY, the same events come out as console lines, not JSON."""
    import pty

    leader, follower = pty.openpty()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("KPI_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "kpi_publisher", "run", *base_args(dirs)],
        stdout=follower,
        stderr=follower,
        env=clean,
    )
    os.close(follower)
    seen = b""
    try:
        deadline = time.monotonic() + WAIT_S
        while b"publish" not in seen and time.monotonic() < deadline:
            try:
                seen += os.read(leader, 4096)
            except OSError:
                break
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(WAIT_S) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(WAIT_S)
        os.close(leader)
    first = seen.decode().splitlines()[0]
    assert not first.lstrip().startswith("{")
    assert "start" in first and "state_dir=" in first
    assert b"publish" in seen


def _replace_with_fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


def _replace_with_dir(path: Path) -> None:
    path.unlink()
    path.mkdir()


# How an operator's edit (or a stray process) breaks the config file, and what the log says.
RELOAD_BREAKERS: dict[str, tuple[Callable[[Path], object], str]] = {
    "non-utf8-byte": (
        lambda p: p.write_bytes(b'[kpi]\nnav_fresh_s = 90\nhost_label = "desk\xff"\n'),
        "not UTF-8 (byte 0xff on line 3)",
    ),
    "metrics-port-inf": (
        lambda p: p.write_text("[kpi]\nmetrics_port = inf\n"),
        "metrics_port must be a finite number",
    ),
    "symbols-cap-overflow": (
        lambda p: p.write_text("[kpi]\nsymbols_cap = 1e400\n"),
        "symbols_cap must be a finite number",
    ),
    "stale-limit-zero": (
        lambda p: p.write_text("[kpi]\nnav_fresh_s = 90\n[kpi.stale_s]\nnav_state = 0\n"),
        "stale_s.nav_state must be > 0",
    ),
    "fifo": (_replace_with_fifo, "not a regular file"),
    "directory": (_replace_with_dir, "not a regular file"),
    "deleted": (lambda p: p.unlink(), "not found"),
}


@pytest.mark.parametrize("kind", sorted(RELOAD_BREAKERS))
def test_sighup_with_an_unreadable_or_overflowing_config_keeps_publishing(
    dirs: dict[str, Path], spawn: Callable[..., Proc], kind: str
) -> None:
    """No config file SIGHUP can read makes `run` exit: it logs why, keeps the running config
    and publishing, and a later good file is applied."""
    write_json(dirs["state"] / "nav_state.json", {"nav_usd": 1.0, "updated_at": time.time() - 200})
    config = dirs["root"] / "kpi.toml"
    config.write_text("[kpi]\nnav_fresh_s = 100000\nheartbeat_s = 0.3\n")
    proc = spawn(base_args(dirs, "--config", str(config)))
    proc.wait_event(is_publish)
    breaker, reason_part = RELOAD_BREAKERS[kind]
    breaker(config)
    proc.popen.send_signal(signal.SIGHUP)
    failed = proc.wait_event(lambda e: e["event"] == "config_reload_failed")
    assert failed["file"] == str(config)
    assert reason_part in failed["reason"]
    assert failed["level"] == "error"
    mark = proc.mark()
    proc.wait_event(lambda e: is_publish(e) and e["reason"] == "heartbeat", start=mark)
    assert proc.popen.poll() is None
    assert kpis(dirs)["nav"]["fresh"] is True  # still the old nav_fresh_s
    # The operator fixes the file: the next SIGHUP applies it.
    if config.is_dir():
        config.rmdir()
    elif config.exists() or config.is_symlink():
        config.unlink()
    config.write_text("[kpi]\nnav_fresh_s = 90\nheartbeat_s = 0.3\n")
    mark = proc.mark()
    proc.popen.send_signal(signal.SIGHUP)
    reloaded = proc.wait_event(lambda e: e["event"] == "config_reloaded", start=mark)
    assert reloaded["changed"] == ["nav_fresh_s"]
    proc.wait_event(lambda e: is_publish(e) and e["reason"] == "reload", start=mark)
    assert kpis(dirs)["nav"]["fresh"] is False
    assert proc.stop()[0] == 0
    assert proc.popen.stderr is not None and b"Traceback" not in proc.popen.stderr.read()
