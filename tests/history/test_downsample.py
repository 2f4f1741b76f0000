"""LTTB downsampling: at most the threshold, ends kept, peaks and troughs survive."""

import math
import random

import pytest

from kpi_publisher.history.downsample import downsample, lttb


def test_short_series_is_returned_whole():
    points = [(float(i), float(i * i)) for i in range(10)]
    assert downsample(points, 10) == points
    assert downsample([], 5) == []


def test_keeps_ends_and_at_most_the_threshold_in_time_order():
    points = [(float(i), math.sin(i / 50)) for i in range(50_000)]
    kept = lttb(points, 1000)
    assert len(kept) == 1000
    assert kept[0] == 0 and kept[-1] == len(points) - 1
    assert kept == sorted(set(kept))


def test_single_spikes_survive():
    """A one-minute crash and a one-minute spike in a noisy year of minutes both stay."""
    rng = random.Random(7)  # noqa: S311 - reproducible noise, not secrets
    points = [(i * 60.0, 1000.0 + rng.uniform(-1, 1)) for i in range(525_600)]
    points[123_456] = (points[123_456][0], 700.0)
    points[400_000] = (points[400_000][0], 1400.0)
    values = [v for _, v in downsample(points, 1000)]
    assert min(values) == 700.0
    assert max(values) == 1400.0


def test_threshold_below_three_is_refused():
    with pytest.raises(ValueError, match="threshold"):
        lttb([(0.0, 0.0)] * 10, 2)
