"""Source status: ok | missing | invalid | stale, with each source's age (contract 4, `sources`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from kpi_publisher.parse import age_s, doc_ts
from kpi_publisher.sources import INVALID, MISSING, OK, SOURCE_NAMES, SourceRead

STALE = "stale"
FX_TS_KEYS = ("usd_zar_ts", "prices_ts")


def source_ts(name: str, data: Any) -> float | None:
    """A source's own timestamp; the FX cache stamps its rate and prices separately."""
    if name == "fx":
        return doc_ts(data, FX_TS_KEYS)
    return doc_ts(data)


def build_sources(
    sources: Mapping[str, SourceRead],
    now: float,
    stale_limit_s: Callable[[str], float | None],
    notes: Mapping[str, str] | None = None,
) -> dict[str, dict[str, Any]]:
    """{name: {status, age_s, error}} for exactly the seven contract sources.

    `notes` adds an error text to a source without changing its status (e.g. a stated AUM
    total that disagrees with the slices).
    """
    out: dict[str, dict[str, Any]] = {}
    for name in SOURCE_NAMES:
        read = sources.get(name) or SourceRead(name, MISSING)
        age = age_s(source_ts(name, read.data), now) if read.status != MISSING else None
        status = read.status
        limit = stale_limit_s(name)
        if status == OK and age is not None and limit is not None and age > limit:
            status = STALE
        error = read.error
        if notes and name in notes and status != INVALID:
            error = notes[name] if error is None else f"{error}; {notes[name]}"
        out[name] = {"status": status, "age_s": age, "error": error}
    return out


__all__ = ["INVALID", "MISSING", "OK", "STALE", "build_sources", "source_ts"]
