"""The plot of a run, docs/benchmarks.png: latency distributions of both books against the
floors and polling, pipeline cost against book size, and the burst's lag over time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.targets import case, lookup, number


def _cdf(ax: Any, samples: Sequence[float], label: str) -> None:
    if not samples:
        return
    xs = sorted(samples)
    ys = [(i + 1) / len(xs) for i in range(len(xs))]
    ax.step(xs, ys, where="post", label=f"{label} (n={len(xs)})")


def plot(results: Mapping[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    names = {"ours": "hedge-kpi run", "floor_inotify": "floor (raw inotify)",
             "floor_watchdog": "floor (watchdog)",
             "floor_inotify_fast": "floor (raw inotify, rename before sync)",
             "floor_watchdog_fast": "floor (watchdog, rename before sync)"}  # fmt: skip
    for ax, book in ((axes[0][0], "realistic"), (axes[0][1], "large")):
        c = case(results, book, True)
        for key, label in names.items():
            _cdf(ax, lookup(c, "samples_ms", key) or [], label)
        fee = case(results, book, True, "fee_block")
        _cdf(ax, lookup(fee, "samples_ms", "ours") or [], "hedge-kpi run, fee block only")
        if book == "realistic":
            _cdf(ax, lookup(results, "polling", "samples_ms") or [], "polling every 1 s")
        ax.set_xscale("log")
        ax.set_xlabel("rename → kpis_v7.json visible (ms, log)")
        ax.set_ylabel("fraction of samples")
        ax.set_title(f"{book} book, executor-like writes, fsync on")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    ax = axes[1][0]
    sizes = lookup(results, "scaling", "sizes") or []
    if sizes:
        n = [s["n_symbols"] for s in sizes]
        for key, label in (("build_render_ms", "build + render"),
                           ("read_decode_ms", "read + decode all inputs")):  # fmt: skip
            ax.plot(n, [s[key]["median"] for s in sizes], marker="o", label=label)
        # Slope 1 through the largest book: a linear build lies on it; fixed costs sit above.
        top = sizes[-1]["build_render_ms"]["median"]
        ax.plot(n, [top * x / n[-1] for x in n], linestyle=":", color="grey", label="linear")
        ax.axhline(50.0, color="red", linestyle="--", linewidth=1, label="50 ms target")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.legend(fontsize=8)
    ax.set_xlabel("symbols in the book (log)")
    ax.set_ylabel("median ms (log)")
    ax.set_title("pipeline cost against book size")
    ax.grid(True, which="both", alpha=0.3)
    ax = axes[1][1]
    series = lookup(results, "burst", "lag_series") or []
    if series:
        ax.plot([p[0] for p in series], [p[1] for p in series], linewidth=0.7, label="lag")
        bound = number(lookup(results, "burst", "coalescing_bound_ms")) or 0.0
        ax.axhline(bound + 10.0, color="red", linestyle="--", linewidth=1, label="bound + 10 ms")
        ax.legend(fontsize=8)
    ax.set_xlabel("time into the burst (s)")
    ax.set_ylabel("write → visible (ms)")
    ax.set_title("burst: lag of the output behind each write")
    ax.grid(True, alpha=0.3)
    fig.suptitle(f"hedge-kpi benchmarks ({results.get('started_at')}, plan "
                 f"{lookup(results, 'plan', 'name')})")  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
