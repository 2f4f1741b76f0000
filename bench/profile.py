"""Where the time of one realistic build goes.

Two views of the same pass over the realistic book:
- wall-clock steps without a profiler: read + decode every input, `pipeline.build`,
  `render` of both documents, and `publish` (two atomic writes) with and without fsync;
- a cProfile of `pipeline.build` alone, grouped by module (which stage costs what) with the
  functions that spend the most time of their own.
"""

from __future__ import annotations

import cProfile
import pstats
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.book import REALISTIC, BookSpec, write_book
from bench.scaling import settings_for
from bench.stats import summary
from bench.timing import repeat_ms
from kpi_publisher import pipeline
from kpi_publisher.publish import publish
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


def run(work: Path, reps: int, budget_s: float, spec: BookSpec = REALISTIC) -> dict[str, Any]:
    book = write_book(work / "profile", spec)
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
        "profiled_build_us": 1e6 * total_s / reps,
        "modules": modules,
        "top_functions": functions[:TOP_FUNCTIONS],
    }
