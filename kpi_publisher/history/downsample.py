"""Largest-triangle-three-buckets (Steinarsson 2013) without numpy: a long series drawn with at
most `threshold` points whose peaks and troughs survive.

The first and last points are always kept; each bucket in between keeps the point forming the
largest triangle with the point kept before it and the average of the next bucket. A series of
`threshold` points or fewer is returned whole.
"""

from __future__ import annotations

from collections.abc import Sequence

MAX_POINTS = 1000


def lttb_columns(
    xs: Sequence[float],
    ys: Sequence[float],
    threshold: int = MAX_POINTS,
    lo: int = 0,
    hi: int | None = None,
) -> list[int]:
    """Indices (ascending, into xs/ys) to keep from xs[lo:hi], ys[lo:hi]; xs sorted."""
    if threshold < 3:
        raise ValueError(f"threshold must be >= 3, got {threshold}")
    end_all = len(xs) if hi is None else hi
    n = end_all - lo
    if threshold >= n:
        return list(range(lo, end_all))
    kept = [lo]
    every = (n - 2) / (threshold - 2)
    a = lo
    for i in range(threshold - 2):
        start = lo + int(i * every) + 1
        end = lo + int((i + 1) * every) + 1
        next_end = min(lo + int((i + 2) * every) + 1, end_all)
        next_start = end if end < next_end else end_all - 1
        span = next_end - next_start
        avg_x = sum(xs[next_start:next_end]) / span
        avg_y = sum(ys[next_start:next_end]) / span
        ax, ay = xs[a], ys[a]
        dx = ax - avg_x
        dy = avg_y - ay
        # area * 2 = |dx * (y - ay) + dy * (x - ax)| = |dx * y + dy * x - c|
        c = dx * ay + dy * ax
        areas = [
            abs(dx * y + dy * x - c) for x, y in zip(xs[start:end], ys[start:end], strict=True)
        ]
        a = start + areas.index(max(areas))
        kept.append(a)
    kept.append(end_all - 1)
    return kept


def lttb(points: Sequence[tuple[float, float]], threshold: int = MAX_POINTS) -> list[int]:
    """Indices (ascending) of the points to keep; `points` are (x, y) sorted by x."""
    return lttb_columns([p[0] for p in points], [p[1] for p in points], threshold)


def downsample(
    points: Sequence[tuple[float, float]], threshold: int = MAX_POINTS
) -> list[tuple[float, float]]:
    """The kept points themselves (see `lttb`)."""
    return [points[i] for i in lttb(points, threshold)]
