"""The one tolerant reader all stages use: numbers, strings, timestamps, key paths, per-symbol data.

Rules (docs/CONTRACT_RULES.md, rules 1-6): zero is a value; a missing key, null, a boolean,
a non-numeric string, NaN or +-Infinity is missing; numeric strings ("1.5", "1,234.5") are
numbers. A comma in a numeric string is only ever a thousands separator in well-formed groups
of three ("1,234.5", "-1,234,567.89"); anything else with a comma ("0,8", "18,05": a decimal
comma), an underscore ("1_000") or a non-ASCII character is missing, never a misread number.
Negative zero reads as 0.0: no published number is ever -0.0.
A label or a symbol (a name the publisher copies into its files) is at most MAX_LABEL_CHARS
characters after its case mapping and holds no control character; anything else is missing.
Every helper takes any JSON value and never raises.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from kpi_publisher.contract import CLOCK_SKEW_S

EMPTY: Mapping[str, Any] = {}

# A file's own timestamp: the first valid of these keys (docs/CONTRACT_RULES.md, rule 2).
DOC_TS_KEYS: tuple[str, ...] = (
    "updated_at",
    "updated_ts",
    "ts",
    "timestamp",
    "updated",
    "generated_at",
)
# Epoch units told apart by magnitude (docs/CONTRACT_RULES.md, rule 2): below 1e11 seconds,
# below 1e14 milliseconds, below 1e17 microseconds, else nanoseconds (pandas' Timestamp.value).
MS_THRESHOLD = 1e11
US_THRESHOLD = 1e14
NS_THRESHOLD = 1e17
# A timestamp up to this far ahead of the build time is clock skew (age 0.0); further ahead it
# is not a valid timestamp (docs/CONTRACT_RULES.md, rule 2).
MAX_FUTURE_S = CLOCK_SKEW_S
# Thousands grouping, the only comma a numeric string may hold.
_GROUPED = re.compile(r"[+-]?[0-9]{1,3}(?:,[0-9]{3})+(?:\.[0-9]+)?")


def number(value: Any) -> float | None:
    """A finite float, or None when the value is missing in the contract's sense. Negative
    zero reads as 0.0 (`x or 0.0`: a truth test, no new float, on the hot path)."""
    kind = type(value)
    if kind is float:
        return (value or 0.0) if math.isfinite(value) else None
    if value is None or kind is bool:
        return None
    if isinstance(value, float):
        return (float(value) or 0.0) if math.isfinite(value) else None
    if isinstance(value, int):
        try:
            return float(value)
        except OverflowError:
            return None
    if isinstance(value, str):
        return _number_text(value)
    return None


def _number_text(value: str) -> float | None:
    text = value.strip()
    if "," in text:
        if _GROUPED.fullmatch(text) is None:
            return None  # a decimal comma or a malformed grouping: never a guess
        text = text.replace(",", "")
    elif "_" in text or not text.isascii():
        return None  # float() would read "1_000" or non-ASCII digits; JSON writers never do
    try:
        out = float(text)
    except ValueError:
        return None
    return (out or 0.0) if math.isfinite(out) else None  # "-0" is 0.0


def finite(value: float | None) -> float | None:
    """The value when it is a finite float; arithmetic that overflowed reads as missing, and
    a negative zero (0.0 x a negative number) is 0.0."""
    return (value or 0.0) if value is not None and math.isfinite(value) else None


def total(values: Iterable[float]) -> float | None:
    """An exact sum (math.fsum); None when it overflows the float range."""
    try:
        return finite(math.fsum(values))
    except OverflowError:
        return None


# What a decoded document holds besides objects: never a Mapping, told without the
# abstract-class check (which costs a string, the commonest leaf, a slow path).
_LEAF_TYPES = frozenset((str, float, int, bool, list, type(None)))


def is_object(value: Any) -> bool:
    """True for a JSON object (a dict, the common case, checked first because it is cheap; the
    other JSON types next; a dict subclass such as pipeline.View before the abstract Mapping
    check)."""
    kind = type(value)
    if kind is dict:
        return True
    return kind not in _LEAF_TYPES and isinstance(value, (dict, Mapping))


def mapping(value: Any) -> Mapping[str, Any]:
    """The value if it is an object, else an empty one (a list in place of an object is missing)."""
    return value if is_object(value) else EMPTY


@lru_cache(maxsize=4096)
def _keys(path: str) -> tuple[str, ...]:
    return tuple(path.split("."))


def get(obj: Any, path: str) -> Any:
    """Follow a dotted key path through nested objects; None when any step is absent."""
    current = obj
    for key in _keys(path):
        if not is_object(current):
            return None
        current = current.get(key)
        if current is None:
            return None
    return current


def first_number(obj: Any, *paths: str) -> float | None:
    """The first path holding a valid number."""
    for path in paths:
        out = number(get(obj, path))
        if out is not None:
            return out
    return None


def key_number(obj: Mapping[str, Any], keys: tuple[str, ...]) -> float | None:
    """The first plain key (no dots) of `obj` holding a valid number: the hot path for rows."""
    for key in keys:
        value = obj.get(key)
        if value is not None:
            out = number(value)
            if out is not None:
                return out
    return None


def key_text(obj: Mapping[str, Any], keys: tuple[str, ...]) -> str | None:
    """The first plain key of `obj` holding a non-empty string."""
    for key in keys:
        value = obj.get(key)
        if type(value) is str:
            stripped = value.strip()
            if stripped:
                return stripped
    return None


def text(value: Any) -> str | None:
    """A non-empty, stripped string, or None."""
    if isinstance(value, str):
        stripped = value.strip()
        return stripped or None
    return None


# A label (a regime, a state, a quality, an asset) is a word or two; longer text is not a label
# and reads as missing, so one string cannot grow the published files without bound
# (docs/RELIABILITY.md). The limit holds for the label as published, after its case mapping
# ("ß".upper() is "SS"; case mappings only ever lengthen a string, so a longer one is refused
# before it is mapped).
MAX_LABEL_CHARS = 64
# Control characters (Unicode category Cc): never part of a name, read as missing.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def has_control(value: str) -> bool:
    """True when `value` holds a control character (`isprintable` is the fast test; it also
    refuses other characters, so only a string it refuses is searched)."""
    return not value.isprintable() and _CONTROL.search(value) is not None


def _publishable(name: str) -> str | None:
    """`name` when it can be published as a label: at most MAX_LABEL_CHARS characters, no
    control character."""
    return None if len(name) > MAX_LABEL_CHARS or has_control(name) else name


def label(value: Any) -> str | None:
    """A non-empty, stripped string of at most MAX_LABEL_CHARS characters and no control
    character, or None. (Read for every field of every open symbol, hence spelled out.)"""
    if not isinstance(value, str):
        return None
    found = value.strip()
    if not found or len(found) > MAX_LABEL_CHARS:
        return None
    if not found.isprintable() and _CONTROL.search(found):
        return None
    return found


def lower_label(value: Any) -> str | None:
    """`label`, lower-cased (a state, a quality), the limit applied to the lower-cased text.
    (Read for every open symbol, hence spelled out.)"""
    if not isinstance(value, str):
        return None
    found = value.strip()
    if not found or len(found) > MAX_LABEL_CHARS:
        return None
    found = found.lower()
    if len(found) > MAX_LABEL_CHARS or (not found.isprintable() and _CONTROL.search(found)):
        return None
    return found


# `symbol`'s answers by input string: a universe's names recur in every per-symbol list of
# every build (a dict lookup costs half the checks). Only short strings are kept, and it is
# cleared when full, so it stays small.
_SYMBOLS: dict[str, str | None] = {}
_SYMBOLS_MAX = 1 << 16
_SYMBOLS_CHARS = 2 * MAX_LABEL_CHARS


def symbol(value: Any) -> str | None:
    """A symbol or an asset name: a stripped, upper-cased `label`, the limit applied to the
    upper-cased text. Runs for every symbol of a universe, hence remembered."""
    if type(value) is not str:
        return None
    found = _SYMBOLS.get(value, "")  # "" is never an answer: it marks a string not yet seen
    if found != "":
        return found
    found = _symbol(value)
    if len(value) <= _SYMBOLS_CHARS:
        if len(_SYMBOLS) >= _SYMBOLS_MAX:
            _SYMBOLS.clear()
        _SYMBOLS[value] = found
    return found


def _symbol(value: str) -> str | None:
    stripped = value.strip()
    if not stripped or len(stripped) > MAX_LABEL_CHARS:
        return None
    return _publishable(stripped.upper())


def first_label(obj: Any, *paths: str, lower: bool = False) -> str | None:
    """The first path holding a label (`label`; `lower_label` when `lower`)."""
    read = lower_label if lower else label
    for path in paths:
        found = read(get(obj, path))
        if found is not None:
            return found
    return None


def first_text(obj: Any, *paths: str) -> str | None:
    for path in paths:
        out = text(get(obj, path))
        if out is not None:
            return out
    return None


def parse_ts(value: Any) -> float | None:
    """Epoch seconds from epoch s, ms, µs or ns (told apart by magnitude: see MS_THRESHOLD),
    digit strings of those, or ISO-8601 (naive = UTC). A time before the epoch is not valid,
    however it is written. Whether it lies too far in the future depends on the build time:
    see `doc_age`."""
    if isinstance(value, str):
        stripped = value.strip()
        as_number = number(stripped) if stripped[:1].isdigit() and "-" not in stripped[1:] else None
        if as_number is None:
            return _parse_iso(stripped)
        value = as_number
    out = number(value)
    if out is None or out < 0:
        return None
    if out < MS_THRESHOLD:
        return out
    if out < US_THRESHOLD:
        return out / 1e3
    if out < NS_THRESHOLD:
        return out / 1e6
    return out / 1e9


# A seconds field of 60 (extended or basic form): the fields before it and what follows it.
_LEAP_SECOND = re.compile(r"([Tt ]\d\d(:?)\d\d\2)60(?=$|[.,Zz+-])")
# The one UTC time a leap second is inserted at: 23:59:60, read as 23:59:59 plus a second.
_LEAP_AT = (23, 59, 59)


def _parse_iso(value: str) -> float | None:
    """ISO-8601 in epoch seconds; before the epoch is not valid (as a negative number is not).
    A leap second (":60" at 23:59 UTC, once the offset is applied) is the next second, as
    POSIX time counts it; ":60" at any other minute is not a time."""
    if not value:
        return None
    candidate = value[:-1] + "+00:00" if value[-1] in "zZ" else value
    leap = 0.0
    try:
        parsed = datetime.fromisoformat(candidate)
    except ValueError:
        # Rare: only a string that is not plain ISO-8601 gets here, so the common path pays
        # nothing for the leap second.
        candidate, found = _LEAP_SECOND.subn(r"\g<1>59", candidate, count=1)
        if not found:
            return None
        try:
            parsed = datetime.fromisoformat(candidate)
        except ValueError:
            return None
        leap = 1.0
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    if leap:
        try:
            at = parsed.astimezone(UTC)
        except (OverflowError, ValueError):
            return None
        if (at.hour, at.minute, at.second) != _LEAP_AT:
            return None
    try:
        out = (parsed + timedelta(seconds=leap)).timestamp() if leap else parsed.timestamp()
    except (OverflowError, OSError, ValueError):
        return None
    return out if out >= 0 else None


def first_ts(obj: Any, *paths: str) -> float | None:
    for path in paths:
        out = parse_ts(get(obj, path))
        if out is not None:
            return out
    return None


def doc_ts(doc: Any, keys: tuple[str, ...] = DOC_TS_KEYS) -> float | None:
    """A file's own timestamp (epoch seconds), docs/CONTRACT_RULES.md rule 2."""
    return first_ts(doc, *keys)


def age_s(ts: float | None, now: float) -> float | None:
    """Seconds from `ts` to `now`, rounded to the millisecond; a future timestamp gives 0.0.

    For a file's own timestamp use `doc_age`, which also refuses one too far ahead."""
    if ts is None:
        return None
    return round(max(0.0, now - ts), 3)


def aged_at_least(age: float | None, floor_s: float) -> float | None:
    """`age` raised to `floor_s` seconds; a null age (no valid timestamp) stays null."""
    return age if age is None or age >= floor_s else round(floor_s, 3)


def doc_age(
    doc: Any, now: float, keys: tuple[str, ...] = DOC_TS_KEYS
) -> tuple[float | None, float | None, str | None]:
    """(timestamp, age_s, error) of a file's own timestamp at build time `now`.

    docs/CONTRACT_RULES.md, rule 2.

    The first valid of `keys` wins. A timestamp more than MAX_FUTURE_S ahead of `now` is not
    valid: it is skipped, and when no valid one follows, timestamp and age are None and
    `error` says why. Up to MAX_FUTURE_S ahead is clock skew and gives age 0.0. The one rule
    for every age the publisher computes (the sources block and the NAV).
    """
    error: str | None = None
    for key in keys:
        ts = parse_ts(get(doc, key))
        if ts is None:
            continue
        ahead = ts - now
        if ahead > MAX_FUTURE_S:
            if error is None:
                shown = f"{ahead:,.0f}" if ahead < 1e9 else f"{ahead:.2e}"
                error = (
                    f"{key} is {shown} s ahead of the clock "
                    f"(more than {MAX_FUTURE_S:.0f} s): not a valid timestamp"
                )
            continue
        return ts, age_s(ts, now), None
    return None, None, error


def iso_utc(ts: float) -> str:
    """ISO-8601 UTC with millisecond precision and a trailing "Z"."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def per_symbol(value: Any) -> dict[str, Mapping[str, Any]]:
    """Per-symbol data as {SYMBOL: entry}, from a list of objects with `symbol` or a dict by symbol.

    Symbols are read by `symbol` (upper-cased, bounded; an entry whose `symbol` is not one is
    keyed by its dict key); the first entry for a symbol wins; non-object entries are skipped.
    This runs over whole universes (10,000 symbols), hence the inlined checks.
    """
    out: dict[str, Mapping[str, Any]] = {}
    if type(value) is list:
        for entry in value:
            if type(entry) is dict or is_object(entry):
                name = symbol(entry.get("symbol"))
                if name is not None and name not in out:
                    out[name] = entry
    elif is_object(value):
        for key, entry in value.items():
            if type(entry) is dict or is_object(entry):
                name = symbol(entry.get("symbol")) or symbol(key)
                if name is not None and name not in out:
                    out[name] = entry
    return out


def has_valid(obj: Any, numbers: tuple[str, ...] = ()) -> bool:
    """True when `obj` has a valid number (`number`, the reader of a numeric field) under
    `numbers`. A stage whose block also holds labels judges it with its own readers: a block
    exists only if the reader of one of its fields finds a value (docs/CONTRACT_RULES.md,
    rule 5)."""
    if not is_object(obj) or not obj:
        return False
    return any(number(obj.get(k)) is not None for k in numbers)
