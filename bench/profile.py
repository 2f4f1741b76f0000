"""Where the time of one realistic build goes.

Three views of the same work over the realistic book:
- wall-clock steps without a profiler: read + decode every input, `pipeline.build`,
  `render` of both documents, and `publish` (two atomic writes) with and without fsync;
- a daemon-shaped pass: the risk snapshot replaced as the executor writes it (every
  per-symbol entry restamped), then what the daemon does: the long-lived `SourceReader`
  re-reads the file that had the event, `pipeline.Incremental` re-runs the stages that read
  what changed, and `publish.Publisher` (spare temps, held files) publishes with fsync;
- a cProfile of `pipeline.build` alone, grouped by module (which stage costs what) with the
  functions that spend the most time of their own.
"""

from __future__ import annotations

import cProfile
import os
import pstats
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.book import REALISTIC, Book, BookSpec, write_book
from bench.scaling import settings_for
from bench.stats import summary
from bench.timing import repeat_ms
from kpi_publisher import pipeline
from kpi_publisher.config import Settings
from kpi_publisher.publish import Publisher, publish
from kpi_publisher.render import render
from kpi_publisher.sources import SourceReader

TOP_FUNCTIONS = 12


def _short(filename: str) -> str:
    """A module-ish label for a profiled file: kpi_publisher/stages/aum.py, or the library."""
    for marker in ("kpi_publisher/", "site-packages/", "lib/python3"):
        if marker in filename:
            return filename.split(marker, 1)[1] if marker == "kpi_publisher/" else "(stdlib/libs)"
    if filename.startswith("<frozen"):
        return "(stdlib)"
    return "(builtins)" if filename.startswith(("~", "<")) else filename


def _daemon_pass(book: Book, settings: Settings, reps: int) -> dict[str, Any]:
    """Per step of a pass after one changed input, as the daemon runs it (ms summaries)."""
    reader = SourceReader(settings)
    build = pipeline.Incremental()
    publisher = Publisher()
    publisher(build(reader.refresh().sources, time.time(), settings), book.out_dir, fsync=True)
    steps: dict[str, list[float]] = {"read_changed": [], "build": [], "publish_fsync": []}
    for index in range(1, reps + 1):
        os.replace(book.stage(index), book.marker_path)
        t0 = time.perf_counter()
        sources = reader.refresh({book.marker_path}).sources
        t1 = time.perf_counter()
        outputs = build(sources, time.time(), settings)
        t2 = time.perf_counter()
        publisher(outputs, book.out_dir, fsync=True)
        t3 = time.perf_counter()
        steps["read_changed"].append((t1 - t0) * 1000.0)
        steps["build"].append((t2 - t1) * 1000.0)
        steps["publish_fsync"].append((t3 - t2) * 1000.0)
    publisher.close()
    totals = [sum(parts) for parts in zip(*steps.values(), strict=True)]
    return {**{k: summary(v) for k, v in steps.items()}, "total": summary(totals)}


def run(work: Path, reps: int, budget_s: float, spec: BookSpec = REALISTIC) -> dict[str, Any]:
    book = write_book(work / "profile", spec, restamp=True)
    settings = settings_for(book.state_dir, book.out_dir)
    sources = SourceReader(settings).read_all()
    now = time.time()
    outputs = pipeline.build(sources, now, settings)
    steps: dict[str, Callable[[], Any]] = {
        "read_decode_all_inputs": lambda: SourceReader(settings).read_all(),
        "build": lambda: pipeline.build(sources, now, settings),
        "render_both": lambda: (render(outputs.kpis), render(outputs.positions)),
        "publish_both_fsync": lambda: publish(outputs, book.out_dir, fsync=True),
        "publish_both_no_fsync": lambda: publish(outputs, book.out_dir, fsync=False),
    }
    wall = {k: summary(repeat_ms(fn, budget_s=budget_s / len(steps))) for k, fn in steps.items()}
    daemon_pass = _daemon_pass(book, settings, max(5, reps // 2))

    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(reps):
        pipeline.build(sources, now, settings)
    profiler.disable()
    stats = pstats.Stats(profiler)
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    total_s = sum(v[2] for v in raw.values())
    by_module: dict[str, float] = defaultdict(float)
    functions = []
    for (filename, line, name), (_cc, ncalls, tottime, cumtime, _callers) in raw.items():
        module = _short(filename)
        by_module[module] += tottime
        functions.append(
            {
                "function": f"{module}:{line}({name})",
                "calls_per_build": ncalls / reps,
                "own_us_per_build": 1e6 * tottime / reps,
                "cum_us_per_build": 1e6 * cumtime / reps,
                "own_share": tottime / total_s if total_s else None,
            }
        )
    functions.sort(key=lambda f: -f["own_us_per_build"])
    modules = sorted(
        (
            {"module": m, "own_us_per_build": 1e6 * t / reps, "share": t / total_s}
            for m, t in by_module.items()
        ),
        key=lambda m: -m["own_us_per_build"],
    )
    return {
        "book": spec.name,
        "reps": reps,
        "wall_ms": wall,
        "daemon_pass_ms": daemon_pass,
        "profiled_build_us": 1e6 * total_s / reps,
        "modules": modules,
        "top_functions": functions[:TOP_FUNCTIONS],
    }
