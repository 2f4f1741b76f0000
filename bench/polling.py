"""The polling baseline: re-read every input, build and publish on a fixed timer.

`python -m bench.polling --state-dir D --out-dir O --interval-s 1.0 [--fsync]`. This is the
shape of the real system's sync loop (it ran every 20 s; 1 s here), using this project's own
reader, pipeline and publisher, so the only difference from the daemon is the trigger.
A fresh `SourceReader` each tick re-reads every file, as a polling loop does.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kpi_publisher import pipeline
from kpi_publisher.config import resolve
from kpi_publisher.publish import publish
from kpi_publisher.sources import SourceReader


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.polling", description=__doc__)
    parser.add_argument("--state-dir", required=True, type=Path)
    parser.add_argument("--out-dir", required=True, type=Path)
    parser.add_argument("--interval-s", type=float, default=1.0)
    parser.add_argument("--fsync", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args(argv)
    settings = resolve(
        {"state_dir": args.state_dir, "out_dir": args.out_dir, "fsync": args.fsync}, environ={}
    )
    stop = threading.Event()

    def _stop(*_: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    next_tick = time.monotonic()
    while not stop.is_set():
        sources = SourceReader(settings).read_all()
        outputs = pipeline.build(sources, time.time(), settings)
        publish(outputs, settings.publish_dir, fsync=settings.fsync)
        next_tick += args.interval_s
        stop.wait(max(0.0, next_tick - time.monotonic()))
    return 0


if __name__ == "__main__":
    sys.exit(main())


def measure(
    n: int, interval_s: float, work: Path, rng: Any, *, fsync: bool = True
) -> dict[str, Any]:
    """n samples of write -> visible against the polling loop, each at a random phase."""
    from bench import procs
    from bench.book import REALISTIC, write_book
    from bench.e2e import Probe, kpis_marker
    from bench.stats import summary

    book = write_book(work / "polling", REALISTIC)
    proc = procs.polling(
        book.state_dir, book.out_dir, work / "polling.log", fsync=fsync, interval_s=interval_s
    )
    probe = Probe("polling", book, kpis_marker)
    with proc.start(), probe:
        cpu0, t0 = proc.cpu_s(), time.perf_counter()
        for index in range(1, n + 1):
            time.sleep(rng.uniform(0.0, interval_s))
            probe.sample(index, timeout_s=3.0 * interval_s + 1.0)
        cpu1, t1 = proc.cpu_s(), time.perf_counter()
    result = summary(probe.latencies_ms)
    result.update(
        misses=probe.misses,
        interval_s=interval_s,
        cpu_pct_of_core=100.0 * (cpu1 - cpu0) / (t1 - t0),
        samples_ms=[round(s, 3) for s in probe.latencies_ms],
    )
    return result
