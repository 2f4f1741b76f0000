"""The tolerant reader: numbers, timestamps, key paths, per-symbol data."""

import math

import pytest

from kpi_publisher.parse import age_s, doc_ts, first_number, iso_utc, number, parse_ts, per_symbol

T = 1_762_444_800.0  # 2025-11-06T16:00:00Z


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (0, 0.0),
        (0.0, 0.0),
        (-0.0, 0.0),
        ("1.5", 1.5),
        ("1,234.5", 1234.5),
        (" 42 ", 42.0),
        (7, 7.0),
        (None, None),
        (True, None),
        (False, None),
        ("", None),
        ("n/a", None),
        ("NaN", None),
        ("inf", None),
        (math.nan, None),
        (math.inf, None),
        (-math.inf, None),
        ([1], None),
        ({"v": 1}, None),
        (10**400, None),
    ],
)
def test_number(raw, expected):
    """Zero is a value; booleans, NaN, Infinity and non-numeric strings are missing."""
    assert number(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (T, T),
        (int(T), T),
        (T * 1000, T),
        ("1762444800", T),
        ("1762444800000", T),
        ("2025-11-06T16:00:00Z", T),
        ("2025-11-06T16:00:00z", T),
        ("2025-11-06T18:00:00+02:00", T),
        ("2025-11-06T16:00:00", T),
        ("2025-11-06 16:00:00", T),
        ("2025-11-06T16:00:00.250Z", T + 0.25),
        (None, None),
        ("yesterday", None),
        (True, None),
        (-5, None),
        ("", None),
    ],
)
def test_parse_ts(raw, expected):
    """Epoch s, epoch ms (> 1e12), digit strings, ISO with Z, an offset, or naive (= UTC)."""
    assert parse_ts(raw) == expected


def test_doc_ts_takes_first_valid_key_in_contract_order():
    """updated_at wins over updated_ts, ts ...; an unparseable one is skipped."""
    assert doc_ts({"ts": T, "updated_at": T + 5}) == T + 5
    assert doc_ts({"updated_at": "garbage", "updated_ts": "2025-11-06T16:00:00Z"}) == T
    assert doc_ts({"generated_at": T}) == T
    assert doc_ts({"age_s": 0.0}) is None


def test_age_is_zero_for_future_timestamp_and_none_without_one():
    """A future timestamp gives 0.0, a missing one None; ages are rounded to the millisecond."""
    assert age_s(T + 60, T) == 0.0
    assert age_s(None, T) is None
    assert age_s(T, T + 12.0004) == 12.0


def test_first_number_follows_dotted_paths_and_skips_invalid():
    """The first path holding a valid number wins; 0.0 is valid."""
    doc = {"a": {"b": None}, "c": {"d": "x"}, "e": {"f": 0.0}, "g": 5}
    assert first_number(doc, "a.b", "c.d", "e.f", "g") == 0.0
    assert first_number(doc, "zz", "a.b.c") is None
    assert first_number([1, 2], "a") is None


def test_per_symbol_accepts_list_and_dict():
    """List entries keyed by `symbol`, or a dict by symbol; symbols upper-cased."""
    as_list = per_symbol([{"symbol": "btcusdt", "x": 1}, {"no_symbol": 1}, "junk"])
    as_dict = per_symbol({"BTCUSDT": {"x": 1}, "ETHUSDT": 3})
    assert list(as_list) == ["BTCUSDT"]
    assert list(as_dict) == ["BTCUSDT"]
    assert as_list["BTCUSDT"]["x"] == as_dict["BTCUSDT"]["x"] == 1


def test_iso_utc_ends_in_z():
    assert iso_utc(T) == "2025-11-06T16:00:00.000Z"
