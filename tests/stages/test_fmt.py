"""The one formatter used by the publisher and the dashboard."""

import pytest

from kpi_publisher.fmt import MISSING, fmt_age, fmt_bps, fmt_money, fmt_pct, fmt_ratio_pct


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (1234.5, "1,234.50"),
        (-12, "-12.00"),
        (0.0, "0.00"),
        (-0.0, "0.00"),
        (-0.004, "0.00"),
        (0.005, "0.01"),
        (1_000_000, "1,000,000.00"),
        ("1,234.5", "1,234.50"),
        (None, "–"),
        ("n/a", "–"),
        (float("nan"), "–"),
    ],
)
def test_fmt_money(raw, expected):
    """Thousands separators, two decimals, an en dash for missing, never -0.00."""
    assert fmt_money(raw) == expected


def test_percent_ratio_bps_and_age():
    """A real zero prints as a number; missing prints as the en dash."""
    assert MISSING == "–"
    assert fmt_pct(1.14) == "1.14%"
    assert fmt_pct(0.0) == "0.00%"
    assert fmt_pct(None) == MISSING
    assert fmt_ratio_pct(0.425) == "42.5%"
    assert fmt_ratio_pct(0.0) == "0.0%"
    assert fmt_ratio_pct(1e307) == MISSING  # x 100 is past the float range: the dash alone
    assert fmt_bps(1.5) == "1.50 bps"
    assert fmt_age(42.9) == "42s"
    assert fmt_age(185) == "3m 05s"
    assert fmt_age(7260) == "2h 01m"
    assert fmt_age(None) == MISSING
