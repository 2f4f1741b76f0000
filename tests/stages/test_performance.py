"""Performance stage: window arithmetic, gaps, short history, skew, duplicates, ratios."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kpi_publisher.stages.performance import (
    DAY_S,
    HOUR_S,
    OUT_OF_RANGE,
    build_performance,
    span_text,
)

T0 = 1_760_000_000.0 - (1_760_000_000.0 % DAY_S)  # a UTC midnight


def hourly(days: float, nav=lambda i: 1000.0 + i, start: float = T0):
    """One point an hour for `days` days, NAV from `nav(i)`."""
    return [(start + i * HOUR_S, float(nav(i))) for i in range(int(days * 24) + 1)]


def test_window_start_is_the_last_point_at_or_before_the_cut_off():
    """24 h PnL: NAV now minus NAV at exactly now - 24 h (a point sits on the cut-off)."""
    points = hourly(3)
    out = build_performance(points, now=points[-1][0])["windows"]["24h"]
    assert out["start_t"] == points[-1][0] - DAY_S
    assert out["pnl_usd"] == 24.0
    assert out["pnl_pct"] == pytest.approx(24.0 / (1000.0 + 48) * 100)
    assert out["reason"] is None


def test_cut_off_between_points_takes_the_earlier_point():
    """With points at :00 and the cut-off at :30, the start is the point at :00 before it."""
    points = [*hourly(3), (T0 + 72 * HOUR_S + 1800.0, 2000.0)]
    out = build_performance(points, now=points[-1][0])["windows"]["24h"]
    assert out["start_t"] == T0 + 48 * HOUR_S  # the cut-off is 48.5 h
    assert out["start_nav_usd"] == 1000.0 + 48
    assert out["pnl_usd"] == 2000.0 - 1048.0


def test_series_shorter_than_every_window():
    """Two hours of history: every fixed window is null with how much is there; all is given."""
    points = hourly(2 / 24)
    out = build_performance(points, now=points[-1][0])
    assert out["windows"]["24h"]["reason"] == "needs 1.0 d, have 2.0 h"
    assert out["windows"]["7d"]["reason"] == "needs 7.0 d, have 2.0 h"
    assert out["windows"]["30d"]["pnl_usd"] is None
    assert out["windows"]["all"]["pnl_usd"] == 2.0
    assert out["ratios"]["30d"]["sharpe"] is None
    assert out["ratios"]["30d"]["reason"] == "needs 14 daily returns, have 0"


def test_needs_seven_days_have_two_point_three():
    points = hourly(2.3)
    out = build_performance(points, now=points[-1][0])["windows"]["7d"]
    assert out["reason"] == "needs 7.0 d, have 2.3 d"
    assert all(out[k] is None for k in ("pnl_usd", "pnl_pct", "max_drawdown_pct"))


def test_a_gap_longer_than_the_limit_voids_the_window():
    """A 3 h hole inside the last 24 h voids 24 h (limit 1 h) but not 7 d (limit 6 h)."""
    points = [p for p in hourly(8) if not (180 <= (p[0] - T0) / HOUR_S < 182)]
    out = build_performance(points, now=points[-1][0])["windows"]
    assert out["24h"]["reason"] == "gap of 3.0 h (limit 1.0 h)"
    assert out["7d"]["reason"] is None


def test_a_stale_latest_point_is_a_gap():
    """No point for 2 h before `now`: the 24 h window is not covered."""
    points = hourly(3)
    out = build_performance(points, now=points[-1][0] + 2 * HOUR_S)["windows"]["24h"]
    assert out["reason"] == "gap of 2.0 h (limit 1.0 h)"


def test_gap_before_the_window_start_does_not_count():
    points = [(T0 - 20 * DAY_S, 900.0), *hourly(2)]
    out = build_performance(points, now=points[-1][0])["windows"]
    assert out["24h"]["reason"] is None
    assert out["all"]["pnl_usd"] == 1048.0 - 900.0  # all: no gap limit


def test_duplicates_and_clock_skew():
    """Out-of-order and repeated timestamps give the same figures as the clean series; a point
    a little after `now` is the latest, one far after `now` is ignored."""
    points = hourly(2)
    now = points[-1][0]
    messy = list(reversed(points)) + points[:10] + [(now + 60.0, 1100.0), (now + 7200, 5.0)]
    clean = build_performance([*points, (now + 60.0, 1100.0)], now)
    assert build_performance(messy, now) == clean
    assert clean["windows"]["24h"]["pnl_usd"] == 1100.0 - (1000.0 + 24)
    assert clean["history"]["points"] == len(points) + 1


def test_max_drawdown_is_peak_to_later_trough_within_the_window():
    """Peak 1200 then trough 900 inside 24 h: 25 %; a later recovery does not undo it."""
    navs = [1000.0] * 30 + [1200.0, 1100.0, 900.0, 1300.0] + [1250.0] * 20
    points = [(T0 + i * HOUR_S, v) for i, v in enumerate(navs)]
    out = build_performance(points, now=points[-1][0])
    assert out["windows"]["24h"]["max_drawdown_pct"] == pytest.approx(25.0)
    assert out["drawdown_pct"] == pytest.approx(50 / 1300 * 100)
    assert out["peak_nav_usd"] == 1300.0


def test_ratios_from_daily_returns_at_utc_midnights():
    """NAV alternating +1 % / -0.5 % per day for 20 days: hand-computed vol, Sharpe, Sortino."""
    navs = [1000.0]
    for day in range(20):
        navs.append(navs[-1] * (1.01 if day % 2 == 0 else 0.995))
    points = []
    for day, nav in enumerate(navs):  # a point every 6 h, the midnight point carries the NAV
        points += [(T0 + day * DAY_S + k * 6 * HOUR_S, nav) for k in range(4)]
    out = build_performance(points, now=points[-1][0])["ratios"]["30d"]
    returns = [0.01 if d % 2 == 0 else -0.005 for d in range(20)]
    mean = sum(returns) / 20
    sd = math.sqrt(sum((r - mean) ** 2 for r in returns) / 19)
    down = math.sqrt(sum(min(r, 0) ** 2 for r in returns) / 20)
    assert out["daily_returns"] == 20
    assert out["volatility_pct"] == pytest.approx(sd * math.sqrt(365) * 100)
    assert out["sharpe"] == pytest.approx(mean / sd * math.sqrt(365))
    assert out["sortino"] == pytest.approx(mean / down * math.sqrt(365))


def test_empty_history():
    out = build_performance([], now=T0)
    assert out["windows"]["all"]["reason"] == "needs 2 points, have 0"
    assert out["drawdown_pct"] is None
    assert out["history"] == {"first_t": None, "last_t": None, "points": 0, "largest_gap_s": None}


def test_span_text():
    assert [span_text(s) for s in (2400, 5 * HOUR_S, 2.3 * DAY_S)] == ["40 min", "5.0 h", "2.3 d"]


@pytest.mark.parametrize("glitch", [1e308, 1e-300, 5e-324], ids=["1e308", "1e-300", "5e-324"])
def test_a_nav_glitch_at_a_midnight_is_out_of_range_never_an_exception(glitch):
    """One NAV of 1e308 (or 1e-300 beside thousands) at a UTC midnight makes a daily return past
    any float statistic (the square of it raised OverflowError and ended the history's
    thread): every figure it touches is null with the reason, the others stand."""
    points = hourly(40)
    midnight = T0 + 20 * DAY_S
    points = [(t, glitch if t == midnight else nav) for t, nav in points]
    out = build_performance(points, now=points[-1][0])
    for name, ratios in out["ratios"].items():
        assert ratios["volatility_pct"] is None and ratios["sharpe"] is None, name
        assert ratios["sortino"] is None and ratios["reason"] == OUT_OF_RANGE, name
    assert out["windows"]["24h"]["pnl_pct"] == pytest.approx(24.0 / (1000.0 + 40 * 24 - 24) * 100)
    numbers = [v for w in out["windows"].values() for v in w.values() if isinstance(v, float)]
    assert all(math.isfinite(v) for v in numbers)


def test_a_window_starting_at_a_tiny_nav_has_no_percent_and_says_why():
    """PnL over a window that starts at a NAV of 5e-324 is a number; in percent it is past the
    float range: null, with the reason."""
    points = hourly(3)
    points[0] = (points[0][0], 5e-324)
    window = build_performance(points, now=points[-1][0])["windows"]["all"]
    assert window["pnl_usd"] == pytest.approx(1000.0 + 72)
    assert window["pnl_pct"] is None and window["reason"] == OUT_OF_RANGE


def compound(days: int, daily: float, *, nav0: float = 1000.0, step_s: float = 600.0, offset=0.0):
    """A point every `step_s` for `days` days, the NAV growing by `daily` a day, compounded."""
    per_day = int(DAY_S // step_s)
    return [
        (T0 + offset + i * step_s, nav0 * (1.0 + daily) ** (i / per_day))
        for i in range(days * per_day + 1)
    ]


def test_constant_compound_growth_has_no_sharpe():
    """The probe's series: 1000 * 1.001^day every 10 minutes for 100 days. The returns differ
    only by float rounding, so they do not vary: Sharpe null with the reason (it was 1.37e14
    over a volatility of 2.65e-13 %), volatility 0, no losing day so no Sortino either."""
    points = compound(100, 0.001)
    for name, ratios in build_performance(points, now=points[-1][0])["ratios"].items():
        assert ratios["sharpe"] is None and ratios["sortino"] is None, name
        assert ratios["volatility_pct"] == 0.0, name
        assert ratios["reason"] == "returns do not vary", name


@settings(max_examples=150, deadline=None)
@given(
    st.floats(-0.05, 0.05) | st.sampled_from([0.0, 1e-15, -1e-14, 0.3]),
    st.floats(1e-2, 1e10),
    st.sampled_from([300.0, 600.0, 3600.0, 4 * 3600.0]),
    st.floats(0.0, DAY_S - 1.0),
)
def test_returns_that_differ_only_by_rounding_do_not_vary(daily, nav0, step_s, offset):
    """Any constant daily growth or decline (none, a rounding's worth, 5 %, 30 %), any NAV
    size, any sampling, any time of day: never a Sharpe, always "returns do not vary"; a
    Sortino only for a real, steady loss (mean over downside: -sqrt(365))."""
    points = compound(40, daily, nav0=nav0, step_s=step_s, offset=offset)
    ratios = build_performance(points, now=points[-1][0])["ratios"]["30d"]
    assert ratios["daily_returns"] >= 29
    assert (ratios["sharpe"], ratios["volatility_pct"]) == (None, 0.0)
    assert ratios["reason"] == "returns do not vary"
    if daily < -1e-11:  # a steady loss
        assert ratios["sortino"] == pytest.approx(-math.sqrt(365), rel=1e-3)
    elif daily > -1e-13:  # no loss, or one of rounding size
        assert ratios["sortino"] is None


def _daily_points(navs: list[float]) -> list[tuple[float, float]]:
    return [(T0 + day * DAY_S, nav) for day, nav in enumerate(navs)]


def test_a_loss_of_rounding_size_is_no_losing_day():
    """Returns that vary (+1 % and +0.5 % days) with one day whose NAV is one float step lower
    (a return of -1e-16): Sharpe is a number, Sortino is null with "no losing day" (it was
    ~1e15). A real loss of a hundredth of a percent still gives a Sortino."""
    navs = [1000.0]
    for day in range(20):
        navs.append(navs[-1] * (1.01 if day % 2 else 1.005))
    rounding = [*navs[:10], math.nextafter(navs[9], 0.0), *(v * (1 - 2**-52) for v in navs[10:])]
    out = build_performance(_daily_points(rounding), now=T0 + 20 * DAY_S)["ratios"]["30d"]
    assert out["sharpe"] is not None and out["sharpe"] > 0
    assert (out["sortino"], out["reason"]) == (None, "no losing day")
    real = [*navs[:10], navs[9] * 0.9999, *(v * 0.9999 for v in navs[10:])]
    out = build_performance(_daily_points(real), now=T0 + 20 * DAY_S)["ratios"]["30d"]
    assert out["sortino"] is not None and out["sortino"] > out["sharpe"]
    assert out["reason"] is None


def test_ratios_are_over_the_window_that_ends_now_not_at_the_last_point():
    """A history that stopped two months ago has no returns in the last 30 or 90 days' windows
    that it lacks: its ratios are not those of its last month, published as current."""
    points = hourly(40, nav=lambda i: 1000.0 * (1.0 + 0.001 * (i % 48 < 24)) + i * 0.1)
    live = build_performance(points, now=points[-1][0])["ratios"]
    assert live["30d"]["daily_returns"] >= 29 and live["30d"]["sharpe"] is not None
    stopped = build_performance(points, now=points[-1][0] + 60 * DAY_S)["ratios"]
    assert stopped["30d"]["daily_returns"] == 0
    assert stopped["30d"]["sharpe"] is None
    assert stopped["30d"]["reason"] == "needs 14 daily returns, have 0"
    # 90 days back from now reach the last 30 of the 40 days held: 31 midnights, 30 returns
    assert stopped["90d"]["daily_returns"] == 30
