"""The tolerant reader: numbers, timestamps, key paths, per-symbol data."""

import math
import unicodedata
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kpi_publisher.parse import (
    MAX_LABEL_CHARS,
    age_s,
    doc_age,
    doc_ts,
    finite,
    first_number,
    iso_utc,
    key_number,
    label,
    lower_label,
    number,
    parse_ts,
    per_symbol,
    symbol,
    total,
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


# -- negative zero: read as 0.0 wherever a number is read ------------------------------------


@pytest.mark.parametrize("raw", [-0.0, "-0", "-0.0", " -0.000 ", "-0,000.0", "-0e5"])
def test_negative_zero_reads_as_positive_zero(raw):
    """Zero is a value, and only one: "-0" and -0.0 read as 0.0, never published as -0.0."""
    out = number(raw)
    assert out == 0.0 and math.copysign(1.0, out) == 1.0
    assert math.copysign(1.0, key_number({"v": raw}, ("v",))) == 1.0
    assert math.copysign(1.0, first_number({"a": {"v": raw}}, "a.v")) == 1.0


def test_arithmetic_that_gives_negative_zero_is_zero():
    """0.0 x a negative number is -0.0 in IEEE arithmetic: `finite` and `total` give 0.0."""
    assert math.copysign(1.0, finite(0.0 * -3.0)) == 1.0
    assert math.copysign(1.0, total([-0.0])) == 1.0


# -- timestamps: ISO-8601 obeys the numeric path's bounds; a leap second is the next second ----


@given(
    st.integers(min_value=-62_135_596_800, max_value=253_402_214_399)
)  # 0001-01-01 .. 9999-12-30
def test_an_iso_timestamp_reads_as_its_epoch_number_would(epoch_s):
    """Any time from year 1 to 9999, as ISO-8601 (Z, an offset, naive) and, below 1e11 s, as
    epoch seconds: the same reading, so a time before the epoch is no timestamp however it is
    written."""
    moment = datetime.fromtimestamp(0, UTC) + timedelta(seconds=epoch_s)
    as_number = float(epoch_s) if epoch_s >= 0 else None
    if epoch_s < 1e11:
        assert parse_ts(epoch_s) == as_number
    plus_two = moment.astimezone(timezone(timedelta(hours=2)))
    for text in (
        moment.isoformat().replace("+00:00", "Z"),
        plus_two.isoformat(),
        moment.replace(tzinfo=None).isoformat(),
    ):
        assert parse_ts(text) == as_number, text


@pytest.mark.parametrize(
    "raw", ["0001-01-01T00:00:00Z", "1969-12-31T23:59:59Z", "1970-01-01T01:00:00+02:00", -1, "-1"]
)
def test_a_time_before_the_epoch_is_no_timestamp(raw):
    assert parse_ts(raw) is None
    assert doc_age({"updated_at": raw}, T) == (None, None, None)


ZONES = {"Z": 0, "+00:00": 0, "-05:30": -330, "+02:00": 120, "": 0}  # offset in minutes


@given(
    st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9999, 12, 30)),
    st.sampled_from(sorted(ZONES)),
    st.sampled_from(["T", " "]),
    st.booleans(),
    st.booleans(),
)
def test_a_leap_second_is_the_next_second_only_at_23_59_utc(moment, zone, sep, fraction, at_leap):
    """hh:mm:60 is a leap second only where UTC inserts one, 23:59:60 once the offset is
    applied (18:29:60-05:30 too): it is the next second, as POSIX time counts it. At any other
    minute (12:00:60 is not 12:01:00), and any second past 60, it is no time."""
    offset = timedelta(minutes=ZONES[zone])
    if at_leap:  # the wall clock that is 23:59 UTC in this zone
        moment = (
            datetime.combine(moment.date(), datetime.min.time()).replace(hour=23, minute=59)
            + offset
        )
    moment = moment.replace(second=59, microsecond=500_000 if fraction else 0)
    base = moment.isoformat(sep=sep, timespec="microseconds" if fraction else "seconds")
    head, tail = base[:17], base[19:]  # the seconds field is base[17:19]
    expected = parse_ts(base + zone)
    assert expected is not None
    utc = moment - offset
    if (utc.hour, utc.minute) == (23, 59):
        assert parse_ts(f"{head}60{tail}{zone}") == expected + 1.0
    else:
        assert parse_ts(f"{head}60{tail}{zone}") is None
    assert parse_ts(f"{head}61{tail}{zone}") is None


def test_leap_second_example():
    assert parse_ts("2016-12-31T23:59:60Z") == parse_ts("2017-01-01T00:00:00Z")
    assert parse_ts("2017-01-01T01:59:60+02:00") == parse_ts("2017-01-01T00:00:00Z")
    assert parse_ts("2016-12-31 23:59:60.25+00:00") == parse_ts("2017-01-01T00:00:00.25Z")
    assert parse_ts("20161231T235960Z") == parse_ts("2017-01-01T00:00:00Z")
    # The probe: ":60" at any other minute read as the next minute.
    assert parse_ts("2025-11-30T12:00:60Z") is None
    assert parse_ts("2025-11-30T10:53:60.25+00:00") is None
    assert parse_ts("2016-12-31T23:59:60+01:00") is None  # 22:59:60 UTC


# -- names: bounded after case mapping, no control characters ---------------------------------

WILD_NAMES = st.text(
    st.one_of(
        st.characters(),
        st.sampled_from(["ß", "İ", "ŉ", "ﬃ", "\x00", "\x1f", "\x7f", "\x85", "\x9f", " "]),
    ),
    max_size=80,
)


def _publishable_name(name: str) -> bool:
    return 0 < len(name) <= MAX_LABEL_CHARS and not any(
        unicodedata.category(c) == "Cc" for c in name
    )


@given(WILD_NAMES)
def test_every_name_reader_gives_a_publishable_name_or_none(raw):
    """symbol, label, lower_label and per_symbol's keys: at most MAX_LABEL_CHARS characters as
    published (after upper- or lower-casing: "ß" * 40 is 80 characters upper-cased) and no
    control character; what they refuse is missing, never cut or cleaned."""
    for read, case in ((symbol, str.upper), (label, str), (lower_label, str.lower)):
        out = read(raw)
        expected = case(raw.strip())
        assert out == (expected if _publishable_name(expected) else None), (read, raw)
    assert list(per_symbol([{"symbol": raw}])) == ([symbol(raw)] if symbol(raw) else [])
    assert list(per_symbol({raw: {}})) == ([symbol(raw)] if symbol(raw) else [])


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("ß" * 32, "SS" * 32),
        ("ß" * 33, None),
        ("\x00", None),
        ("BTC\x00USDT", None),
        ("BTC\u0085USDT", None),  # C1 control (NEL): stripped at an end, refused inside
        (" btcusdt ", "BTCUSDT"),
        ("BTC USDT", "BTC USDT"),
        ("x" * 64, "X" * 64),
        ("x" * 65, None),
    ],
)
def test_symbol(raw, expected):
    assert symbol(raw) == expected
    assert symbol(raw) == expected  # the remembered answer is the same
