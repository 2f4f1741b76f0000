"""Source status (ok | missing | invalid | stale) and each source's age.

The rules are docs/CONTRACT_RULES.md, rules 2 and 10.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from kpi_publisher.contract import INVALID, MISSING, OK, SOURCE_NAMES, STALE, SourceRead
from kpi_publisher.parse import DOC_TS_KEYS, aged_at_least, doc_age

FX_TS_KEYS = ("usd_zar_ts", "prices_ts")


def source_age(name: str, data: Any, now: float) -> tuple[float | None, str | None]:
    """(age_s, error) of a source at `now`: a timestamp too far ahead has no age.

    The FX cache stamps its rate and its prices separately; either one dates it."""
    _, age, error = doc_age(data, now, FX_TS_KEYS if name == "fx" else DOC_TS_KEYS)
    return age, error


def dropped_note(read: SourceRead, shown: int = 5) -> str | None:
    """The error text for values read as missing because they were not valid Unicode."""
    count = read.dropped_count
    if not count:
        return None
    listed = ", ".join(read.dropped[:shown])
    more = count - min(shown, len(read.dropped))
    plural = "value" if count == 1 else "values"
    tail = f" and {more} more" if more else ""
    return f"{count} {plural} not valid Unicode, read as missing: {listed}{tail}"


def build_sources(
    sources: Mapping[str, SourceRead],
    now: float,
    stale_limit_s: Callable[[str], float | None],
    notes: Mapping[str, str] | None = None,
) -> dict[str, dict[str, Any]]:
    """{name: {status, age_s, error}} for exactly the contract sources (SOURCE_NAMES).

    `notes` adds an error text to a source without changing its status (e.g. position rows
    dropped for an unreadable value); so do a timestamp too far in the future (age null) and
    values dropped as invalid Unicode (`SourceRead.dropped`).
    """
    out: dict[str, dict[str, Any]] = {}
    for name in SOURCE_NAMES:
        read = sources.get(name) or SourceRead(name, MISSING)
        age, ts_error = source_age(name, read.data, now) if read.status != MISSING else (None, None)
        age = aged_at_least(age, read.min_age_s)
        status = read.status
        limit = stale_limit_s(name)
        # How old the content is known to be: its age, or, when its timestamp reads as too far
        # ahead (the wall clock stepped back past the skew allowance), the monotonic time since
        # its content last changed. The age stays null (no valid timestamp); the status follows
        # what is known, so an executor that stopped turns stale on time whatever the clock did.
        known = age if age is not None or ts_error is None else read.min_age_s or None
        if status == OK and known is not None and limit is not None and known > limit:
            status = STALE
        error = read.error
        if status != INVALID:
            note = notes.get(name) if notes else None
            extra = [e for e in (ts_error, dropped_note(read), note) if e]
            if extra:
                error = "; ".join([error, *extra] if error else extra)
        out[name] = {"status": status, "age_s": age, "error": error}
    return out


__all__ = ["build_sources", "source_age"]
