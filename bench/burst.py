"""Burst: the executor writes 1,000 times a second for 10 s; does the output keep up?

A writer paces `os.replace` of the risk snapshot on an absolute schedule (each write carries
its index as marker); a reader thread on raw inotify records every publish of
`kpis_v7.json` and the marker it carries. The lag of write i is the time until a publish
shows i or a newer write: the worst lag is how far the dashboard's file ever fell behind
the newest state. Daemon CPU comes from /proc over the burst window.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import procs
from bench.book import REALISTIC, write_book
from bench.e2e import OUT_NAME, kpis_marker
from bench.inotify import IN_MOVED_TO, Inotify
from bench.stats import summary
from kpi_publisher.config import Settings

DRAIN_TIMEOUT_S = 3.0


def lags_ms(writes: Sequence[float], publishes: Sequence[tuple[float, int]]) -> list[float]:
    """Per write, ms until a publish at or after it shows that write or a newer one.

    `writes[i]` is the time (s) write i was made; `publishes` are (time s, newest index shown),
    in time order. Writes never shown get no lag (the caller counts them as lost).
    """
    out: list[float] = []
    j = 0
    for i, w in enumerate(writes):
        while j < len(publishes) and (publishes[j][1] < i or publishes[j][0] < w):
            j += 1
        if j == len(publishes):
            break
        out.append((publishes[j][0] - w) * 1000.0)
    return out


class _Reader(threading.Thread):
    """Records (time, marker) of every kpis_v7.json publish until stopped."""

    def __init__(self, out_dir: Path) -> None:
        super().__init__(name="burst-reader", daemon=True)
        self.out_dir = out_dir
        self.ino = Inotify(out_dir, IN_MOVED_TO)
        self.publishes: list[tuple[float, int]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                events = self.ino.read(0.1)
                t = time.perf_counter()
                if not any(name == OUT_NAME for _m, name in events):
                    continue
                try:
                    with open(self.out_dir / OUT_NAME, "rb") as fh:
                        index = kpis_marker(fh.read())
                except (OSError, ValueError):
                    continue
                if index is not None:
                    self.publishes.append((t, index))
        finally:
            self.ino.close()

    def newest(self) -> int:
        return self.publishes[-1][1] if self.publishes else -1


def run(
    rate_hz: float, duration_s: float, work: Path, *, fsync: bool = True, settle_s: float = 1.0
) -> dict[str, Any]:
    """One burst against a daemon over a realistic book; times in ms, CPU in % of one core."""
    book = write_book(work / "burst", REALISTIC)
    daemon = procs.daemon(book.state_dir, book.out_dir, work / "burst-daemon.log", fsync=fsync)
    n = int(rate_hz * duration_s)
    writes: list[float] = []
    reader = _Reader(book.out_dir)
    with daemon.start():
        time.sleep(settle_s)  # past start-up: first publish, gc.freeze
        reader.start()
        cpu0, wall0 = daemon.cpu_s(), time.perf_counter()
        start = time.perf_counter()
        for i in range(1, n + 1):
            due = start + (i - 1) / rate_hz
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            tmp = book.stage(i)
            writes.append(time.perf_counter())
            os.replace(tmp, book.marker_path)
        writing_s = time.perf_counter() - start
        deadline = time.perf_counter() + DRAIN_TIMEOUT_S
        while reader.newest() < n and time.perf_counter() < deadline:
            time.sleep(0.005)
        cpu1, wall1 = daemon.cpu_s(), time.perf_counter()
        peak_rss_mb = daemon.peak_rss_mb()
        reader.stop.set()
        reader.join(1.0)
    publishes = [(t, i) for t, i in reader.publishes if t >= writes[0]] if writes else []
    lags = lags_ms(writes, publishes)
    debounce_ms = Settings().debounce_ms
    return {
        "rate_hz": rate_hz,
        "duration_s": duration_s,
        "writes": n,
        "achieved_rate_hz": n / writing_s if writing_s > 0 else None,
        "publishes": len(publishes),
        "last_write_published": reader.newest() >= n,
        "lag_ms": summary(lags),
        "max_lag_ms": max(lags) if lags else None,
        "coalescing_bound_ms": debounce_ms,
        "daemon_cpu_s": cpu1 - cpu0,
        "window_s": wall1 - wall0,
        "daemon_cpu_pct_of_core": 100.0 * (cpu1 - cpu0) / (wall1 - wall0),
        "daemon_peak_rss_mb": peak_rss_mb,
        "lag_series": [
            [round((w - writes[0]), 4), round(lag, 3)] for w, lag in zip(writes, lags, strict=False)
        ][:: max(1, n // 2000)],
    }
