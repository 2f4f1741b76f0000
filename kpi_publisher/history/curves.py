"""nav_history_v7.json: per window (24 h, 7 d, 30 d, all) the equity curve and the drawdown from
the all-time peak, each at most `MAX_POINTS` points chosen by LTTB on the NAV so that peaks and
troughs survive. Pure: a `Series` + `now` -> dict; columns, not rows, to keep it small.
A point far after `now` (stored by an older version from a millisecond timestamp) is left out
as the performance block leaves it out, so the windows end at the latest real point."""

from __future__ import annotations

import bisect
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from kpi_publisher.contract import NAV_HISTORY_SCHEMA, SCHEMA_VERSION
from kpi_publisher.history.downsample import MAX_POINTS, lttb_columns
from kpi_publisher.parse import iso_utc
from kpi_publisher.stages.performance import WINDOWS, clean_series


def _column() -> array[float]:
    return array("d")


@dataclass
class Series:
    """The NAV series in memory, sorted by time, with the drawdown (%) from the running peak
    kept alongside so that adding a point at the end costs O(1). Columns of machine doubles
    (24 bytes a point, not the ~100 of lists of floats): thirty days of 10-second points, which
    retention keeps whole, are ~6 MB."""

    times: array[float] = field(default_factory=_column)
    navs: array[float] = field(default_factory=_column)
    drawdowns: array[float] = field(default_factory=_column)
    peak: float = 0.0

    @classmethod
    def of(cls, points: Iterable[tuple[float, float]]) -> Series:
        """The series of `points`; the first of two with one timestamp wins. Points in time
        order (the store's) are taken one at a time, never gathered in a list."""
        series = cls()
        rows = iter(points)
        for t, nav in rows:
            if series.times and not t > series.times[-1]:
                return cls._of_unsorted([*series.pairs(), (t, nav), *rows])
            series._push(t, nav)
        return series

    @classmethod
    def _of_unsorted(cls, points: list[tuple[float, float]]) -> Series:
        series = cls()
        for t, nav in sorted(dict(reversed(points)).items()):
            series._push(t, nav)
        return series

    def _push(self, t: float, nav: float) -> None:
        self.times.append(t)
        self.navs.append(nav)
        self.peak = max(self.peak, nav)
        self.drawdowns.append((self.peak - nav) / self.peak * 100.0)

    def add(self, t: float, nav: float) -> bool:
        """Add one point; False when its timestamp is already held. A point older than the
        latest (clock skew) is placed in order and the drawdowns after it recomputed."""
        if not self.times or t > self.times[-1]:
            self._push(t, nav)
            return True
        i = bisect.bisect_left(self.times, t)
        if i < len(self.times) and self.times[i] == t:
            return False
        self.times.insert(i, t)
        self.navs.insert(i, nav)
        # The drawdowns from i on, in place (a point before the whole series redoes them all:
        # no copy of the series as Python objects).
        del self.drawdowns[i:]
        self.peak = max(self.navs[:i], default=0.0)
        for v in self.navs[i:]:
            self.peak = max(self.peak, v)
            self.drawdowns.append((self.peak - v) / self.peak * 100.0)
        return True

    def remove(self, times: Iterable[float]) -> None:
        """Take out the points at `times` (a time not held is ignored); the drawdowns from the
        first one on are recomputed, so taking out the latest points costs what they number."""
        gone = set(times)
        if not gone or not self.times:
            return
        i = bisect.bisect_left(self.times, min(gone))
        rest = [
            (t, nav) for t, nav in zip(self.times[i:], self.navs[i:], strict=True) if t not in gone
        ]
        del self.times[i:], self.navs[i:], self.drawdowns[i:]
        self.peak = max(self.navs, default=0.0)
        for t, nav in rest:
            self._push(t, nav)

    def pairs(self) -> list[tuple[float, float]]:
        return list(zip(self.times, self.navs, strict=True))


def published_end(times: Sequence[float], navs: Sequence[float], now: float) -> int:
    """How many of the points (sorted, one per timestamp) are published at `now`: the
    performance block's rule (`clean_series`) judges the few stamped after `now`, so a point
    far in the future is left out here exactly as there; O(log n) for the rest."""
    after = bisect.bisect_right(times, now)
    kept = clean_series(list(zip(times[after:], navs[after:], strict=True)), now)
    return bisect.bisect_right(times, kept[-1][0]) if kept else after


def _window(series: Series, end: int, length: float | None) -> dict[str, Any]:
    times = series.times
    last = times[end - 1] if end else None
    lo = 0 if length is None or last is None else bisect.bisect_left(times, last - length, 0, end)
    kept = lttb_columns(times, series.navs, MAX_POINTS, lo, end)
    return {
        "from_t": times[lo] if end else None,
        "to_t": last,
        "points_in_window": end - lo,
        "t": [times[i] for i in kept],
        "nav_usd": [series.navs[i] for i in kept],
        "drawdown_pct": [series.drawdowns[i] for i in kept],
    }


def build_nav_history(series: Series, now: float) -> dict[str, Any]:
    """The nav_history_v7 document for `series` as it stands at `now`."""
    times = series.times
    end = published_end(times, series.navs, now)
    return {
        "schema": NAV_HISTORY_SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "generated_at": now,
        "updated_at": iso_utc(now),
        "points": end,
        "first_t": times[0] if end else None,
        "last_t": times[end - 1] if end else None,
        "windows": {name: _window(series, end, length) for name, (length, _gap) in WINDOWS.items()},
    }
