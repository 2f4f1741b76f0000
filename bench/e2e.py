"""End to end: from `os.replace` of an input to the new `kpis_v7.json` seen by an inotify reader.

A `Probe` owns one book and the publisher process watching it. One sample: stage the next
version of the risk snapshot under a temp name, take t0, `os.replace` it into place, then
block on raw inotify on the out dir; on each rename of `kpis_v7.json` take t1 and read the
file: the sample counts when the published content carries this sample's marker (a
heartbeat publish in between is skipped). Reading and parsing the output happen after t1,
so a 1 MB floor output and a 3 KB KPI file are observed at the same cost.

`run_interleaved` alternates the probes sample by sample in a shuffled order, so the
daemon, the floors and a noisy neighbour share every second of the run, and ratios hold.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from bench import procs
from bench.book import LARGE, REALISTIC, Book, BookSpec, marker_index, write_book
from bench.inotify import IN_MOVED_TO, Inotify
from bench.stats import ratio, summary
from kpi_publisher.config import Settings
from kpi_publisher.fs import FAST, STRICT

OUT_NAME = "kpis_v7.json"
GAP_S = (0.02, 0.04)  # random pause before each sample (s)
QUIET_MARGIN_S = 0.015  # beyond the debounce: the daemon's next change is a leading edge
# What a sample's write changes in the risk snapshot (keyed by `restamp`).
WRITES = {True: "executor", False: "fee_block"}
# The floors, by probe label: (watcher, durability). The targets are judged against the
# conventional floors (fill, fsync, rename: what any simple durable publisher does, and what
# the targets were set against); the `_fast` floors rename before they sync, as the daemon
# does by default, and are reported beside them (docs/BENCHMARKS.md).
FLOORS: dict[str, tuple[str, str]] = {
    "floor_inotify": ("inotify", STRICT),
    "floor_watchdog": ("watchdog", STRICT),
    "floor_inotify_fast": ("inotify", FAST),
    "floor_watchdog_fast": ("watchdog", FAST),
}


def kpis_marker(data: bytes) -> int | None:
    """The sample index in a published kpis_v7.json (`fees.fees_usd`)."""
    doc = orjson.loads(data)
    fees = doc.get("fees") if isinstance(doc, dict) else None
    return marker_index(fees.get("fees_usd")) if isinstance(fees, dict) else None


def copy_marker(data: bytes) -> int | None:
    """The sample index in the floor's output (a byte copy of the risk snapshot)."""
    doc = orjson.loads(data)
    fee_pnl = doc.get("fee_pnl") if isinstance(doc, dict) else None
    return marker_index(fee_pnl.get("fees")) if isinstance(fee_pnl, dict) else None


@dataclass
class Probe:
    """Writer and reader for one book; latencies in milliseconds."""

    label: str
    book: Book
    extract: Callable[[bytes], int | None]
    quiet_s: float = 0.0  # time since the last visible publish before the next write
    latencies_ms: list[float] = field(default_factory=list)
    replace_ms: list[float] = field(default_factory=list)
    misses: int = 0
    last_visible: float = -math.inf
    _ino: Inotify | None = None

    def open(self) -> Probe:
        self._ino = Inotify(self.book.out_dir, IN_MOVED_TO)
        return self

    def close(self) -> None:
        if self._ino is not None:
            self._ino.close()
            self._ino = None

    def _shows(self, index: int) -> bool:
        try:
            with open(self.book.out_dir / OUT_NAME, "rb") as fh:
                found = self.extract(fh.read())
        except (OSError, ValueError):
            return False
        return found is not None and found >= index

    def sample(self, index: int, timeout_s: float) -> float | None:
        """One write -> visible latency (ms), or None (a miss) after `timeout_s`."""
        assert self._ino is not None, "open() the probe first"
        wait = self.last_visible + self.quiet_s - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        tmp = self.book.stage(index)
        self._ino.drain()
        t0 = time.perf_counter()
        os.replace(tmp, self.book.marker_path)
        replaced = time.perf_counter()
        deadline = t0 + timeout_s
        while True:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                self.misses += 1
                self.last_visible = time.perf_counter()
                return None
            events = self._ino.read(remaining)
            t1 = time.perf_counter()
            if any(name == OUT_NAME for _mask, name in events) and self._shows(index):
                latency_ms = (t1 - t0) * 1000.0
                self.latencies_ms.append(latency_ms)
                self.replace_ms.append((replaced - t0) * 1000.0)
                self.last_visible = t1
                return latency_ms

    def __enter__(self) -> Probe:
        return self.open()

    def __exit__(self, *_: object) -> None:
        self.close()


def run_interleaved(
    probes: Sequence[Probe],
    n: int,
    rng: random.Random,
    *,
    timeout_s: float,
    gap_s: tuple[float, float] = GAP_S,
) -> None:
    """n rounds; each round samples every probe once, in a shuffled order."""
    for index in range(1, n + 1):
        order = list(probes)
        rng.shuffle(order)
        for probe in order:
            time.sleep(rng.uniform(*gap_s))
            probe.sample(index, timeout_s)


def _rounded(samples: Sequence[float]) -> list[float]:
    return [round(s, 4) for s in samples]


def run_case(
    spec: BookSpec,
    fsync: bool,
    n: int,
    work: Path,
    rng: random.Random,
    timeout_s: float,
    settle_s: float = 1.0,
    *,
    restamp: bool = True,
) -> dict[str, Any]:
    """The daemon and every floor (`FLOORS`) on copies of one book, sampled interleaved. With
    `restamp` each write restamps every per-symbol entry, as the executor's writes do;
    without, it changes the fee block alone."""
    write = WRITES[restamp]
    tag = f"{spec.name}-{write}-{'fsync' if fsync else 'nofsync'}"
    books = {k: write_book(work / f"{tag}-{k}", spec, restamp=restamp) for k in ("ours", *FLOORS)}
    quiet_s = Settings().debounce_ms / 1000.0 + QUIET_MARGIN_S
    daemon = procs.daemon(
        books["ours"].state_dir, books["ours"].out_dir, work / f"{tag}-daemon.log", fsync=fsync
    )
    floors = [
        procs.floor(
            books[k].marker_path, books[k].out_dir, work / f"{tag}-{k}.log",
            fsync=fsync, watcher=watcher, durability=durability,
        )
        for k, (watcher, durability) in FLOORS.items()
    ]  # fmt: skip
    started: list[procs.Proc] = []
    probes = [Probe("ours", books["ours"], kpis_marker, quiet_s)]
    probes += [Probe(k, books[k], copy_marker) for k in FLOORS]
    try:
        for proc in (daemon, *floors):  # start-up in parallel: imports dominate
            started.append(proc.launch())
        for proc in started:
            proc.wait_ready()
        time.sleep(settle_s)  # let start-up publishes, imports and gc.freeze settle
        for probe in probes:
            probe.open()
        run_interleaved(probes, n, rng, timeout_s=timeout_s)
        peak_rss_mb = daemon.peak_rss_mb()
    finally:
        for probe in probes:
            probe.close()
        for proc in started:
            proc.stop()
    passes = [
        float(e["duration_ms"])
        for e in daemon.log_events("publish")
        if e.get("reason") == "change" and isinstance(e.get("duration_ms"), (int, float))
    ]
    result: dict[str, Any] = {
        "book": spec.name,
        "write": write,
        "fsync": fsync,
        "state_bytes": books["ours"].state_bytes,
        "changed_file_bytes": books["ours"].marker_file_bytes,
        "daemon_peak_rss_mb": peak_rss_mb,
        "daemon_pass_ms": summary(passes),
        "replace_ms": summary(probes[0].replace_ms),
    }
    for probe in probes:
        result[probe.label] = summary(probe.latencies_ms)
        result[probe.label]["misses"] = probe.misses
        result.setdefault("samples_ms", {})[probe.label] = _rounded(probe.latencies_ms)
    for k in FLOORS:
        result[f"ratio_to_{k}"] = ratio(result["ours"]["median"], result[k]["median"])
    return result


def run(
    n_realistic: int,
    n_large: int,
    work: Path,
    rng: random.Random,
    *,
    progress: Callable[[str], None],
    settle_s: float = 1.0,
) -> list[dict[str, Any]]:
    """Every case: realistic and large book, executor-like writes and fee-block writes, fsync
    on (the default; with renames before syncs, fsync no longer delays visibility)."""
    cases: list[dict[str, Any]] = []
    for spec, n, timeout_s in ((REALISTIC, n_realistic, 2.0), (LARGE, n_large, 5.0)):
        for restamp in (True, False):
            progress(f"e2e {spec.name} {WRITES[restamp]} writes: {n} rounds")
            cases.append(run_case(spec, True, n, work, rng, timeout_s, settle_s, restamp=restamp))
    return cases
