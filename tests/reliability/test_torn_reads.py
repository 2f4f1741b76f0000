"""Nothing half-written is ever visible: a reader process parses and schema-checks both
published files in a tight loop while the real daemon republishes 10,000 times.

The daemon runs with a 1 ms heartbeat (so it republishes as fast as it can) while a writer
changes nav_state.json every 5 ms (so the content really changes, not just `generated_at`).
The 10,000-publish run lives on tmpfs: on ext4 every `os.replace` over an existing file
forces a writeback (`auto_da_alloc`) and costs ~2 ms, which would take the run past the CI
budget; rename atomicity is the same on both. A shorter run on the disk-backed tmp dir covers
ext4 itself. A negative control proves the reader does catch torn files when they exist.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from kpi_publisher.sources import SourceReader

from .helpers import HERE, Layout, build_bytes, daemon, good_docs

READER = HERE / "torn_reader.py"
SHM = Path("/dev/shm")


@contextlib.contextmanager
def _reader(out_dir: Path) -> Iterator[dict[str, Any]]:
    """Run torn_reader.py; on exit it is stopped with SIGTERM and its counts fill the dict."""
    proc = subprocess.Popen(
        [sys.executable, str(READER), str(out_dir)], stdout=subprocess.PIPE, text=True
    )
    counts: dict[str, Any] = {}
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        yield counts
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate(timeout=5)
            raise
        counts.update(orjson.loads(out.strip().splitlines()[-1]))


@contextlib.contextmanager
def _changing_inputs(layout: Layout, period_s: float = 0.005) -> Iterator[list[int]]:
    """A writer thread replacing nav_state.json with a new NAV every `period_s`."""
    stop = threading.Event()
    written = [0]

    def run() -> None:
        while not stop.is_set():
            written[0] += 1
            doc = good_docs(now=time.time(), nav_usd=10_000.0 + written[0])["nav_state"]
            layout.write("nav_state", doc)
            stop.wait(period_s)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield written
    finally:
        stop.set()
        thread.join(5)


@pytest.fixture
def tmpfs_layout(tmp_path: Path) -> Iterator[Layout]:
    """The layout on tmpfs (/dev/shm) when there is one, else on the tmp dir."""
    if SHM.is_dir() and os.access(SHM, os.W_OK):
        root = Path(tempfile.mkdtemp(prefix="hedge-kpi-torn-", dir=SHM))
    else:
        root = tmp_path / "torn"
    try:
        layout = Layout(root).make()
        layout.write_all(good_docs(now=time.time()))
        yield layout
    finally:
        if root.is_relative_to(SHM):
            shutil.rmtree(root, ignore_errors=True)


def _republish_under_reader(layout: Layout, republishes: int, timeout_s: float) -> dict[str, Any]:
    with daemon(layout, "--heartbeat-s", "0.001", "--debounce-ms", "1") as proc:
        proc.wait_event("publish", 10)
        with _reader(layout.out) as counts, _changing_inputs(layout) as written:
            first = proc.events[-1]["seq"] if proc.named("publish") else 0
            proc.wait_event("publish", timeout_s, where=lambda e: e["seq"] >= first + republishes)
        assert proc.stop(signal.SIGTERM) == 0
    assert written[0] > 100, "the inputs hardly changed during the run"
    assert layout.temps() == [], "temp files left behind"
    return counts


def _assert_never_torn(counts: dict[str, Any], republishes: int) -> None:
    print(f"{republishes} republishes under the reader: {counts}")  # shown with -s
    assert counts["absent"] == 0, counts
    assert counts["parse_failures"] == 0, counts
    assert counts["schema_failures"] == 0, counts
    # Not vacuous: the reader really read all the time and saw many distinct versions.
    assert counts["reads"] >= 2_000, counts
    assert counts["versions"] >= republishes // 20, counts


@pytest.mark.timeout(180)
def test_no_torn_read_across_10000_republishes(tmpfs_layout: Layout) -> None:
    """10,000 daemon republishes under a reader: zero parse failures, zero schema failures,
    the files never absent."""
    counts = _republish_under_reader(tmpfs_layout, 10_000, timeout_s=150)
    _assert_never_torn(counts, 10_000)


@pytest.mark.timeout(120)
def test_no_torn_read_on_the_disk_backed_filesystem(tmp_path: Path) -> None:
    """The same on the tmp dir's filesystem (ext4 in CI), 1,000 republishes."""
    layout = Layout(tmp_path).make()
    layout.write_all(good_docs(now=time.time()))
    counts = _republish_under_reader(layout, 1_000, timeout_s=90)
    _assert_never_torn(counts, 1_000)


@pytest.mark.timeout(60)
def test_reader_does_catch_torn_files_written_in_place(tmp_path: Path) -> None:
    """Negative control: publishing by open('wb') (what the daemon must never do) is caught
    by the same reader, so its zero counts above mean something."""
    layout = Layout(tmp_path).make()
    layout.write_all(good_docs(now=time.time()))
    settings = layout.settings()
    kpis_raw, positions_raw = build_bytes(SourceReader(settings), settings, now=time.time())
    kpis = layout.out / "kpis_v7.json"
    (layout.out / "positions_v7.json").write_bytes(positions_raw)
    kpis.write_bytes(kpis_raw)
    stop = threading.Event()

    def in_place_writer() -> None:
        half = len(kpis_raw) // 2
        while not stop.is_set():
            with kpis.open("wb") as fh:
                fh.write(kpis_raw[:half])
                fh.flush()
                time.sleep(0.001)
                fh.write(kpis_raw[half:])

    with _reader(layout.out) as counts:
        thread = threading.Thread(target=in_place_writer, daemon=True)
        thread.start()
        time.sleep(1.5)
        stop.set()
        thread.join(5)
    assert counts["parse_failures"] > 0, counts
