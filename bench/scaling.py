"""Pipeline cost alone against book size: read + decode, build, render, per symbol count.

In process, no watcher, no publish: a fresh `SourceReader` reads and decodes every input
(what the daemon does at start; on a change it re-reads only the changed file); then
`pipeline.build` + `render` of both documents (the build), and `render` alone. Growth is
reported as the log-log slope of build time between sizes: 1.0 is linear.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import math
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from bench.book import scaling_spec, write_book
from bench.stats import summary
from bench.timing import repeat_ms
from kpi_publisher import pipeline
from kpi_publisher.config import Settings, resolve
from kpi_publisher.daemon import GC_GEN0_THRESHOLD
from kpi_publisher.render import render
from kpi_publisher.sources import SourceReader


def settings_for(state_dir: Path, out_dir: Path) -> Settings:
    return resolve({"state_dir": state_dir, "out_dir": out_dir}, environ={})


def slope(n1: float, t1: float | None, n2: float, t2: float | None) -> float | None:
    """log(t2/t1) / log(n2/n1): the exponent of growth between two sizes."""
    if not t1 or not t2 or n1 == n2:
        return None
    return math.log(t2 / t1) / math.log(n2 / n1)


@contextlib.contextmanager
def daemon_gc() -> Iterator[None]:
    """Run with the garbage collector set up as `hedge-kpi run` sets it (long-lived inputs
    frozen, a raised young-generation threshold), so a build is timed as the daemon runs it."""
    previous = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_GEN0_THRESHOLD, 20, 100)
    try:
        yield
    finally:
        gc.set_threshold(*previous)
        gc.unfreeze()


def measure_size(n_symbols: int, work: Path, budget_s: float) -> dict[str, Any]:
    book = write_book(work / f"scaling-{n_symbols}", scaling_spec(n_symbols))
    settings = settings_for(book.state_dir, book.out_dir)
    sources = SourceReader(settings).read_all()
    now = time.time()
    outputs = pipeline.build(sources, now, settings)

    def read() -> Any:
        return SourceReader(settings).read_all()

    def render_both() -> Any:
        return render(outputs.kpis), render(outputs.positions)

    def build_render() -> Any:
        out = pipeline.build(sources, now, settings)
        return render(out.kpis), render(out.positions)

    timed: dict[str, Callable[[], Any]] = {
        "read_decode": read,
        "build_render": build_render,
        "render": render_both,
    }
    result: dict[str, Any] = {
        "n_symbols": n_symbols,
        "n_positions": book.spec.n_positions,
        "state_bytes": book.state_bytes,
        "kpis_bytes": len(render(outputs.kpis)),
        "positions_bytes": len(render(outputs.positions)),
    }
    for name, fn in timed.items():
        with daemon_gc():
            samples = repeat_ms(fn, budget_s=budget_s / len(timed), min_reps=3)
        result[name + "_ms"] = summary(samples)
    median = result["build_render_ms"]["median"]
    result["build_render_us_per_symbol"] = 1000.0 * median / n_symbols
    return result


def run(
    sizes: Sequence[int], work: Path, budget_s: float, *, progress: Callable[[str], None]
) -> dict[str, Any]:
    rows = []
    for n in sizes:
        progress(f"scaling: {n} symbols")
        rows.append(measure_size(n, work, budget_s))
    slopes = []
    for a, b in itertools.pairwise(rows):
        slopes.append(
            {
                "from": a["n_symbols"],
                "to": b["n_symbols"],
                "build_render": slope(
                    a["n_symbols"], a["build_render_ms"]["median"],
                    b["n_symbols"], b["build_render_ms"]["median"],
                ),
                "read_decode": slope(
                    a["n_symbols"], a["read_decode_ms"]["median"],
                    b["n_symbols"], b["read_decode_ms"]["median"],
                ),
            }
        )  # fmt: skip
    return {"sizes": rows, "slopes": slopes}
