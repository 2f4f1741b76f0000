"""Repeat-until-budget timing of an in-process callable (milliseconds)."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any


def repeat_ms(
    fn: Callable[[], Any], *, budget_s: float, min_reps: int = 5, max_reps: int = 1000
) -> list[float]:
    """Times of `fn()` in ms: at least `min_reps`, then until `budget_s` or `max_reps`.

    The garbage collector stays on, as in the daemon: its pauses belong in a p99.
    """
    fn()  # warm-up: imports, caches, first allocations (not counted)
    gc.collect()
    samples: list[float] = []
    stop_at = time.perf_counter() + budget_s
    while len(samples) < max_reps and (len(samples) < min_reps or time.perf_counter() < stop_at):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000.0)
    return samples
