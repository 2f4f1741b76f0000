"""Idle cost: CPU seconds of a daemon whose inputs never change (heartbeat publishes only).

`IdleProbe.start()` starts a daemon with production settings over its own realistic book and
`finish()` reads its CPU time from /proc after the window. The daemon's CPU time is its
own, so the probe can run while other measurements use the machine; only the window's
heartbeats and rescans are counted.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench import procs
from bench.book import REALISTIC, write_book
from kpi_publisher.config import Settings


class IdleProbe:
    def __init__(self, work: Path, duration_s: float) -> None:
        self.duration_s = duration_s
        book = write_book(work / "idle", REALISTIC)
        self.proc = procs.daemon(book.state_dir, book.out_dir, work / "idle-daemon.log", fsync=True)
        self._cpu0 = 0.0
        self._t0 = 0.0

    def start(self) -> IdleProbe:
        """Start the daemon; the window opens at `begin()`, once start-up is over."""
        self.proc.start()
        return self

    def begin(self) -> None:
        """Open the measured window (call at least a second after `start`)."""
        self._cpu0, self._t0 = self.proc.cpu_s(), time.perf_counter()

    def remaining_s(self) -> float:
        return max(0.0, self._t0 + self.duration_s - time.perf_counter())

    def finish(self) -> dict[str, Any]:
        """Wait out the window, then stop the daemon; CPU in % of one core, RSS in MB."""
        try:
            time.sleep(self.remaining_s())
            cpu1, t1 = self.proc.cpu_s(), time.perf_counter()
            peak_rss_mb = self.proc.peak_rss_mb()
            rss_kb = procs.status_kb(self.proc.pid, "VmRSS")
        finally:
            self.proc.stop()
        window_s = t1 - self._t0
        heartbeats = [e for e in self.proc.log_events("publish") if e.get("reason") == "heartbeat"]
        return {
            "window_s": window_s,
            "cpu_s": cpu1 - self._cpu0,
            "cpu_pct_of_core": 100.0 * (cpu1 - self._cpu0) / window_s,
            "heartbeat_s": Settings().heartbeat_s,
            "heartbeat_publishes": len(heartbeats),
            "peak_rss_mb": peak_rss_mb,
            "rss_mb": None if rss_kb is None else rss_kb / 1024.0,
        }
