"""The real `hedge-kpi run` daemon with one injected fault: its loop raises after N seconds.

Usage: python crashing_daemon.py CRASH_AFTER_S  (settings from KPI_* env vars, JSON logs).
Everything else is production code: the Daemon, its CrashLog (private per-user dir), its backoff,
the real watcher and publisher, the signal thread. supervisord runs this in the crash-loop
test; the fault stands in for any bug that kills the loop after `startsecs`.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from kpi_publisher import logs
from kpi_publisher.config import resolve
from kpi_publisher.daemon import install_signal_thread
from kpi_publisher.run import build_daemon, build_watcher
from kpi_publisher.sources import SourceReader
from kpi_publisher.watcher import Watcher


class FaultyWatcher(Watcher):
    """The real watcher, whose `next_batch` raises once `crash_at` (monotonic s) has passed."""

    crash_at = float("inf")

    def next_batch(self, timeout_s: float) -> frozenset[Path]:
        if time.monotonic() >= self.crash_at:
            raise RuntimeError("injected fault: loop died")
        return super().next_batch(min(timeout_s, max(0.0, self.crash_at - time.monotonic())))


def main(crash_after_s: float) -> int:
    settings = resolve({})
    logs.configure("json")
    watcher = build_watcher(settings, SourceReader(settings), FaultyWatcher)
    assert isinstance(watcher, FaultyWatcher)
    watcher.crash_at = time.monotonic() + crash_after_s
    daemon = build_daemon(settings, watcher=watcher)
    restore = install_signal_thread(daemon)
    try:
        return int(daemon.run())
    finally:
        restore()


if __name__ == "__main__":
    sys.exit(main(float(sys.argv[1])))
