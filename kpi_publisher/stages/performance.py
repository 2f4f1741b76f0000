"""Performance over time, from the NAV history: windowed PnL and drawdown, risk-adjusted
ratios from daily returns, and facts about the history itself.

Pure: `build_performance(points, now)` with `points` a sequence of (t epoch s, nav USD).

- The series is sorted by time; a point stamped more than `MAX_SKEW_S` after `now` (the
  contract's clock-skew allowance, rule 2: further ahead is not a valid timestamp) is ignored,
  one stamped slightly after `now` counts as the latest; points with the same timestamp are one
  point (the first one seen wins, as in the store).
- A window ends at the latest point. Its start NAV is the last point at or before
  `end - length`. Its PnL and max drawdown are given only when the history reaches back to the
  start and no gap between consecutive points from the start point on (nor between the latest
  point and `now`) exceeds the window's `gap_limit_s`; otherwise every value is null and
  `reason` says why ("needs 7 d, have 2.3 d"). "all" starts at the first point and has no gap
  limit: its PnL is exact whatever lies between, its max drawdown is over the points held.
- Max drawdown: the largest fall from a running peak to a later trough within the window, in
  percent of that peak. `drawdown_pct` is the current fall from the series' all-time peak (the
  executor's own `risk.drawdown_pct` measures from its own peak; both are published).
- Ratios: over the window that ends now (a history that stopped has fewer returns in it, not
  the ratios of its last month), daily returns between consecutive UTC midnights (the NAV at
  a midnight is the last point at or before it, if no older than `DAY_S`), risk-free rate 0,
  365 days a year, sample
  standard deviation; Sortino divides by the downside deviation (root mean square of the
  negative returns over all days). At least `MIN_DAILY_RETURNS` returns, else null. A deviation
  within rounding of zero (`negligible`) is zero: returns that differ only by float error
  (constant compound growth) do not vary (volatility 0, Sharpe null), and a loss of rounding
  size is no losing day (Sortino null).
- Transfers: the executor records no deposits or withdrawals (its treasury and reserve files
  are holdings snapshots, not flows), so NAV deltas include any transfer; nothing is adjusted.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Sequence
from typing import Any

from kpi_publisher.contract import CLOCK_SKEW_S
from kpi_publisher.parse import finite

DAY_S = 86_400.0
HOUR_S = 3_600.0
MAX_SKEW_S = CLOCK_SKEW_S  # the back-fill stores nothing further ahead either
MIN_DAILY_RETURNS = 14
# The reason for a figure the NAV series holds but no float can (a NAV of 1e308, or 1e-300
# beside thousands, at a window's start or a midnight).
OUT_OF_RANGE = "NAV values out of range"
YEAR_DAYS = 365
# A deviation of the daily returns this small is rounding, not variation (as math.isclose):
# relative to the mean return's magnitude, with an absolute floor for a return near zero. A
# return is a NAV ratio less one, off by a few float epsilons (2.2e-16) from the NAVs' own
# rounding: 1e-12 is ~4,500 of them, and a cent in 10 billion USD a day.
DEVIATION_REL_TOL = 1e-9
DEVIATION_ABS_TOL = 1e-12

# name -> (length s or None for "since the first point", largest gap allowed s or None)
WINDOWS: dict[str, tuple[float | None, float | None]] = {
    "24h": (DAY_S, HOUR_S),
    "7d": (7 * DAY_S, 6 * HOUR_S),
    "30d": (30 * DAY_S, 12 * HOUR_S),
    "all": (None, None),
}
RATIO_WINDOWS: dict[str, float] = {"30d": 30 * DAY_S, "90d": 90 * DAY_S}


def span_text(seconds: float) -> str:
    """A duration as a reason states it: "2.3 d", "5.0 h", "40 min"."""
    if seconds >= DAY_S:
        return f"{seconds / DAY_S:.1f} d"
    if seconds >= HOUR_S:
        return f"{seconds / HOUR_S:.1f} h"
    return f"{seconds / 60:.0f} min"


def clean_series(points: Sequence[tuple[float, float]], now: float) -> list[tuple[float, float]]:
    """Sorted by time, one point per timestamp, none far in the future, finite NAV > 0."""
    seen: dict[float, float] = {}
    for t, nav in points:
        if t in seen or not (math.isfinite(t) and math.isfinite(nav)) or nav <= 0:
            continue
        if t > now + MAX_SKEW_S:
            continue
        seen[t] = nav
    return sorted(seen.items())


def largest_gap(times: Sequence[float], lo: int = 0, hi: int | None = None) -> float:
    stop = len(times) if hi is None else hi
    return max((times[i] - times[i - 1] for i in range(lo + 1, stop)), default=0.0)


def max_drawdown_pct(navs: Sequence[float], lo: int = 0, hi: int | None = None) -> float:
    peak = navs[lo]
    worst = 0.0
    for nav in navs[lo:hi]:
        if nav > peak:
            peak = nav
        else:
            fall = (peak - nav) / peak
            if fall > worst:
                worst = fall
    return worst * 100.0


def _empty(reason: str) -> dict[str, Any]:
    return {
        "pnl_usd": None,
        "pnl_pct": None,
        "max_drawdown_pct": None,
        "start_t": None,
        "start_nav_usd": None,
        "reason": reason,
    }


def _window(
    times: Sequence[float],
    navs: Sequence[float],
    now: float,
    length: float | None,
    gap_limit: float | None,
) -> dict[str, Any]:
    if len(times) < 2:
        return _empty(f"needs 2 points, have {len(times)}")
    end = times[-1]
    have = end - times[0]
    if length is None:
        anchor = 0
    else:
        start = end - length
        if times[0] > start:
            return _empty(f"needs {span_text(length)}, have {span_text(have)}")
        anchor = bisect.bisect_right(times, start) - 1
    gap = max(largest_gap(times, anchor), now - end)
    if gap_limit is not None and gap > gap_limit:
        return _empty(f"gap of {span_text(gap)} (limit {span_text(gap_limit)})")
    first = navs[anchor]
    pnl = navs[-1] - first
    pnl_pct = finite(pnl / first * 100.0)
    return {
        "pnl_usd": pnl,
        "pnl_pct": pnl_pct,
        "max_drawdown_pct": max_drawdown_pct(navs, anchor),
        "start_t": times[anchor],
        "start_nav_usd": first,
        "reason": None if pnl_pct is not None else OUT_OF_RANGE,
    }


def daily_navs(times: Sequence[float], navs: Sequence[float], since: float) -> list[float | None]:
    """The NAV at each UTC midnight from the first at or after `since` to the last point."""
    out: list[float | None] = []
    if not times:
        return out
    midnight = math.ceil(since / DAY_S) * DAY_S
    while midnight <= times[-1]:
        i = bisect.bisect_right(times, midnight) - 1
        out.append(navs[i] if i >= 0 and midnight - times[i] <= DAY_S else None)
        midnight += DAY_S
    return out


def daily_returns(navs: Sequence[float | None]) -> list[float]:
    return [b / a - 1.0 for a, b in itertools.pairwise(navs) if a and b is not None]


def negligible(deviation: float, mean: float) -> bool:
    """True when a deviation of daily returns whose mean is `mean` is float rounding: a ratio
    over it (Sharpe ~1e14 for constant growth) would be an artefact, never a figure."""
    return deviation <= max(DEVIATION_REL_TOL * abs(mean), DEVIATION_ABS_TOL)


def _ratios(
    times: Sequence[float], navs: Sequence[float], length: float, now: float
) -> dict[str, Any]:
    since = now - length
    returns = daily_returns(daily_navs(times, navs, since))
    out: dict[str, Any] = {
        "volatility_pct": None,
        "sharpe": None,
        "sortino": None,
        "daily_returns": len(returns),
        "reason": None,
    }
    if len(returns) < MIN_DAILY_RETURNS:
        out["reason"] = f"needs {MIN_DAILY_RETURNS} daily returns, have {len(returns)}"
        return out
    try:
        mean = math.fsum(returns) / len(returns)
        deviations = [(r - mean) * (r - mean) for r in returns]
        sd = math.sqrt(math.fsum(deviations) / (len(returns) - 1))
        downside = math.sqrt(math.fsum(min(r, 0.0) * min(r, 0.0) for r in returns) / len(returns))
    except (OverflowError, ValueError):  # fsum of returns past the float range
        mean = sd = downside = math.inf
    scale = math.sqrt(YEAR_DAYS)
    if not all(map(math.isfinite, (sd, downside, sd * scale * 100.0, mean))):
        # A NAV glitch (1e308, or 1e-300 beside thousands) at a midnight: a return past any
        # float statistic. Missing, said, and never an exception in the history's thread.
        out["reason"] = OUT_OF_RANGE
        return out
    flat = negligible(sd, mean)
    no_loss = negligible(downside, mean)
    out["volatility_pct"] = 0.0 if flat else sd * scale * 100.0
    out["sharpe"] = None if flat else finite(mean / sd * scale)
    out["sortino"] = None if no_loss else finite(mean / downside * scale)
    if (not flat and out["sharpe"] is None) or (not no_loss and out["sortino"] is None):
        out["reason"] = OUT_OF_RANGE
    elif flat:
        out["reason"] = "returns do not vary"
    elif no_loss:
        out["reason"] = "no losing day"
    return out


def build_performance(points: Sequence[tuple[float, float]], now: float) -> dict[str, Any]:
    """The `performance` block of kpis_v7 (see the module docstring)."""
    series = clean_series(points, now)
    return performance_of_columns([t for t, _ in series], [nav for _, nav in series], now)


def performance_of_columns(
    times: Sequence[float], navs: Sequence[float], now: float
) -> dict[str, Any]:
    """`build_performance` for a series already sorted by time with one point per timestamp
    (as the history holds it); points far after `now` are left out here too."""
    cut = bisect.bisect_right(times, now + MAX_SKEW_S)
    if cut < len(times):
        times, navs = times[:cut], navs[:cut]
    windows = {
        name: _window(times, navs, now, length, gap) for name, (length, gap) in WINDOWS.items()
    }
    peak = max(navs, default=None)
    return {
        "as_of": now,
        "windows": windows,
        "drawdown_pct": None if peak is None else (peak - navs[-1]) / peak * 100.0,
        "peak_nav_usd": peak,
        "ratios": {
            name: _ratios(times, navs, length, now) for name, length in RATIO_WINDOWS.items()
        },
        "history": {
            "first_t": times[0] if times else None,
            "last_t": times[-1] if times else None,
            "points": len(times),
            "largest_gap_s": largest_gap(times) if len(times) > 1 else None,
        },
    }
