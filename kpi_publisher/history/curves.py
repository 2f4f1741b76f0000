"""nav_history_v7.json: per window (24 h, 7 d, 30 d, all) the equity curve and the drawdown from
the all-time peak, each at most `MAX_POINTS` points chosen by LTTB on the NAV so that peaks and
troughs survive. Pure: a `Series` + `now` -> dict; columns, not rows, to keep it small."""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from kpi_publisher.contract import SCHEMA_VERSION
from kpi_publisher.history.downsample import MAX_POINTS, lttb_columns
from kpi_publisher.parse import iso_utc
from kpi_publisher.stages.performance import WINDOWS

NAV_HISTORY_FILE = "nav_history_v7.json"
NAV_HISTORY_SCHEMA = "hedge.nav_history_v7"


@dataclass
class Series:
    """The NAV series in memory, sorted by time, with the drawdown (%) from the running peak
    kept alongside so that adding a point at the end costs O(1)."""

    times: list[float] = field(default_factory=list)
    navs: list[float] = field(default_factory=list)
    drawdowns: list[float] = field(default_factory=list)
    peak: float = 0.0

    @classmethod
    def of(cls, points: Iterable[tuple[float, float]]) -> Series:
        series = cls()
        for t, nav in sorted(dict(reversed(list(points))).items()):
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
        rest = list(zip(self.times[i:], self.navs[i:], strict=True))
        del self.times[i:], self.navs[i:], self.drawdowns[i:]
        self.peak = max(self.navs, default=0.0)
        for u, v in rest:
            self._push(u, v)
        return True

    def pairs(self) -> list[tuple[float, float]]:
        return list(zip(self.times, self.navs, strict=True))


def _window(series: Series, length: float | None) -> dict[str, Any]:
    times = series.times
    lo = 0 if length is None or not times else bisect.bisect_left(times, times[-1] - length)
    kept = lttb_columns(times, series.navs, MAX_POINTS, lo)
    return {
        "from_t": times[lo] if times else None,
        "to_t": times[-1] if times else None,
        "points_in_window": len(times) - lo,
        "t": [times[i] for i in kept],
        "nav_usd": [series.navs[i] for i in kept],
        "drawdown_pct": [series.drawdowns[i] for i in kept],
    }


def build_nav_history(series: Series, now: float) -> dict[str, Any]:
    """The nav_history_v7 document for `series` as it stands at `now`."""
    times = series.times
    return {
        "schema": NAV_HISTORY_SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "generated_at": now,
        "updated_at": iso_utc(now),
        "points": len(times),
        "first_t": times[0] if times else None,
        "last_t": times[-1] if times else None,
        "windows": {name: _window(series, length) for name, (length, _gap) in WINDOWS.items()},
    }
