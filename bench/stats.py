"""Summaries of samples: min / median / p99 (nearest rank), all in milliseconds or as given."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any


def percentile(samples: Sequence[float], q: float) -> float:
    """Nearest-rank percentile, q in 0..100 (p99 of 300 samples is the 297th smallest)."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return float(ordered[min(rank, len(ordered)) - 1])


def summary(samples: Sequence[float]) -> dict[str, Any]:
    """n, min, median, p99, max and mean of `samples` (same unit as the samples)."""
    if not samples:
        return {"n": 0, "min": None, "median": None, "p99": None, "max": None, "mean": None}
    return {
        "n": len(samples),
        "min": float(min(samples)),
        "median": float(statistics.median(samples)),
        "p99": percentile(samples, 99.0),
        "max": float(max(samples)),
        "mean": float(statistics.fmean(samples)),
    }


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b, or None when either is missing or b is zero."""
    if a is None or b is None or b == 0 or math.isnan(a) or math.isnan(b):
        return None
    return a / b
