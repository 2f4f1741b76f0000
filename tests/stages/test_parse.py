"""The tolerant reader: numbers, timestamps, key paths, per-symbol data."""

import math

import pytest

from kpi_publisher.parse import (
    age_s,
    doc_age,
    doc_ts,
    first_number,
    iso_utc,
    number,
    parse_ts,
    per_symbol,
)

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
    """Epoch s, epoch ms, digit strings, ISO with Z, an offset, or naive (= UTC)."""
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


# -- numbers with a comma: only well-formed thousands grouping ------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1,234.5", 1234.5),
        ("-1,234,567.89", -1234567.89),
        ("12,345", 12345.0),
        (" +1,000 ", 1000.0),
        ("999", 999.0),
        ("0,8", None),  # a decimal comma: never 8.0
        ("18,05", None),  # never 1805.0
        ("1,2345", None),
        ("1234,567", None),
        (",123", None),
        ("1,,234", None),
        ("1,234,56", None),
        ("1,234.", None),
        ("1.234,5", None),
        ("1,234e3", None),
        (",", None),
        ("1_000", None),  # float() would read it; a JSON writer never writes it
        ("١٢٣", None),  # non-ASCII digits float() would read
    ],
)
def test_a_comma_is_only_a_thousands_separator(raw, expected):
    """A decimal comma or any malformed grouping reads as missing, not as a number x10 or x100."""
    assert number(raw) == expected


# -- timestamps: four units by magnitude, and not too far ahead -----------------------------

DAY = 86_400.0


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (T - DAY, T - DAY),  # seconds
        (int((T - DAY) * 1e3), T - DAY),  # milliseconds
        (int((T - DAY) * 1e6), T - DAY),  # microseconds
        (int((T - DAY) * 1e9), T - DAY),  # nanoseconds (pandas Timestamp.value)
        (str(int((T - DAY) * 1e6)), T - DAY),
        (str(int((T - DAY) * 1e9)), T - DAY),
        (99_999_999_999, 99_999_999_999.0),  # just below 1e11: seconds
        (100_000_000_000, 100_000_000.0),  # 1e11: milliseconds
        (10**14, 10**8),  # 1e14: microseconds
        (10**17, 10**8),  # 1e17: nanoseconds
    ],
)
def test_parse_ts_tells_the_four_units_apart(raw, expected):
    """Below 1e11 s, below 1e14 ms, below 1e17 µs, else ns; digit strings alike."""
    assert parse_ts(raw) == pytest.approx(expected, abs=1e-3)


def test_doc_age_refuses_a_timestamp_too_far_ahead():
    """Up to 60 s ahead is skew (age 0.0); further ahead is no timestamp, with a reason."""
    assert doc_age({"updated_at": T + 60}, T) == (T + 60, 0.0, None)
    ts, age, error = doc_age({"updated_at": T + 61}, T)
    assert (ts, age) == (None, None)
    assert "updated_at" in error and "ahead" in error
    ts, age, error = doc_age({"updated_at": int((T + DAY) * 1e9)}, T)
    assert (ts, age) == (None, None) and "86,400 s ahead" in error
    # The next valid key wins; no error then.
    assert doc_age({"updated_at": T + DAY, "ts": T - 5}, T) == (T - 5, 5.0, None)
    assert doc_age({}, T) == (None, None, None)
