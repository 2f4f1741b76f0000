"""Freshness badges: which published file or input source the operator should not trust.

Pure: the published reads, the clock and the heartbeat come in as values. The green "all
sources ok" is earned, never a default: a document of an unknown schema_version, a `sources`
block that is absent, empty, short of a source or carries an entry or status this dashboard
does not know, and a build time beyond the clock-skew allowance, each get a badge.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dashboard.data import Published, Snapshot
from kpi_publisher import fmt, parse, schemas
from kpi_publisher.contract import (
    CLOCK_SKEW_S,
    CORE_SOURCES,
    MISSING,
    OK,
    SOURCE_NAMES,
    STALE,
    STATUS_WORDS,
    expected_absent,
    publish_age_s,
)

SOURCE_ORDER: tuple[str, ...] = SOURCE_NAMES
SOURCE_STATUSES: frozenset[str] = frozenset(STATUS_WORDS)
# CORE_SOURCES: listed by every version of the contract; one absent is "not reported". Sources
# added later (era-optional ones) are badged only when a document lists them.
PUBLISHER_DOWN = "publisher down"
SOURCES_MISSING = "sources missing"
SOURCES_EMPTY = "sources empty"
TWO_PUBLISHES = "kpis and positions of two publishes"
DETAIL_CHARS = 200  # a published string quoted in a badge's detail is cut to this length


@dataclass(frozen=True)
class Badge:
    """`label` is short and fixed-vocabulary (safe to show as a badge); `detail` is free text."""

    label: str
    level: str  # "error" (red) | "warning" (orange)
    detail: str = ""


def known_schema_versions(file_name: str) -> frozenset[int]:
    """The schema_versions the dashboard reads for a published file: 1 and the shipped schema's.

    Later versions only add fields; the cards read fields every version has.
    """
    schema = schemas.load(file_name.removesuffix(".json"))
    current = parse.mapping(parse.mapping(schema.get("properties")).get("schema_version"))
    version = current.get("const")
    return frozenset({1, version}) if type(version) is int else frozenset({1})


def _cut(text: str) -> str:
    """A published string in a badge's detail (plain text), cut to DETAIL_CHARS."""
    return text if len(text) <= DETAIL_CHARS else text[: DETAIL_CHARS - 1] + "…"


def _quote(value: Any) -> str:
    return _cut(repr(value))


def file_badge(read: Published) -> Badge | None:
    """A badge for a published file that is missing or unreadable right now."""
    if read.status == OK:
        return None
    shown = "showing the last good copy" if read.stale_read else "nothing to show"
    if read.status == MISSING:
        return Badge(f"{read.name} missing", "error", f"{read.error or ''}; {shown}")
    label = f"{read.name} invalid (stale read)" if read.stale_read else f"{read.name} invalid"
    return Badge(label, "error", f"{read.error or ''}; {shown}")


def publisher_badge(kpis: Published, now: float, down_after_s: float) -> Badge | None:
    """ "publisher down" when kpis_v7.json is older than `down_after_s` or has no build time."""
    if kpis.doc is None:
        return None
    age_s = publish_age_s(kpis.doc, now)
    if age_s is None:
        generated_at = parse.number(kpis.doc.get("generated_at"))
        if generated_at is not None:
            ahead = fmt.fmt_age(generated_at - now)
            skew = fmt.fmt_age(CLOCK_SKEW_S)
            detail = f"kpis_v7.json generated_at is {ahead} ahead of this clock (over {skew})"
            return Badge(PUBLISHER_DOWN, "error", detail)
        return Badge(PUBLISHER_DOWN, "error", "kpis_v7.json has no valid generated_at")
    if age_s > down_after_s:
        return Badge(
            PUBLISHER_DOWN,
            "error",
            f"last publish {fmt.fmt_age(age_s)} ago (limit {fmt.fmt_age(down_after_s)})",
        )
    return None


def schema_badge(read: Published) -> Badge | None:
    """A badge for a document whose schema_version this dashboard does not know."""
    if read.doc is None:
        return None
    version = read.doc.get("schema_version")
    known_versions = known_schema_versions(read.name)
    if type(version) is int and version in known_versions:
        return None
    expected = " or ".join(str(v) for v in sorted(known_versions))
    return Badge(
        f"{read.name} schema_version unknown",
        "error",
        f"schema_version {_quote(version)}, this dashboard reads {expected}: "
        "fields may not mean what the cards say",
    )


def source_badges(kpis: Mapping[str, Any] | None) -> list[Badge]:
    """One badge per input source that is not plainly ok.

    A source the publisher marked stale, invalid or missing; one marked ok with an `error` text
    (a warning: something was left out of it, the text says what); a source of the contract's list
    that is not reported; an entry that is not an object or whose status is not one of the
    contract's. No `sources` object at all, or an empty one, is one badge of its own.
    """
    if kpis is None:
        return []
    raw_sources = kpis.get("sources")
    if not parse.is_object(raw_sources):
        detail = "kpis_v7.json has no sources object: input health unknown"
        if raw_sources is not None:
            detail = f"kpis_v7.json sources is {type(raw_sources).__name__}: input health unknown"
        return [Badge(SOURCES_MISSING, "error", detail)]
    sources = parse.mapping(raw_sources)
    if not sources:
        return [Badge(SOURCES_EMPTY, "error", "kpis_v7.json lists no sources: health unknown")]
    names = list(SOURCE_ORDER)
    names += sorted(str(n) for n in sources if n not in SOURCE_ORDER)
    badges: list[Badge] = []
    for name in names:
        if name not in sources:
            if name not in CORE_SOURCES:
                continue
            badges.append(Badge(f"{name} not reported", "error", "absent from kpis_v7.json"))
            continue
        raw_entry = sources.get(name)
        if not parse.is_object(raw_entry):
            detail = f"entry is {type(raw_entry).__name__}, not an object: {_quote(raw_entry)}"
            badges.append(Badge(f"{name} unreadable", "error", detail))
            continue
        entry = parse.mapping(raw_entry)
        raw_status = entry.get("status")
        status = raw_status.strip().lower() if isinstance(raw_status, str) else None
        if status not in SOURCE_STATUSES:
            detail = f"status {_quote(raw_status)} is not ok, stale, invalid or missing"
            badges.append(Badge(f"{name} status unknown", "error", detail))
            continue
        if status == OK:
            # Read, but with something left out on the way (rows that could not be read, a
            # value out of its range, a book over the row limit): said, not alarmed.
            note = parse.text(entry.get("error"))
            if note is not None:
                badges.append(Badge(f"{name} note", "warning", _cut(note)))
            continue
        if expected_absent(name, status):
            continue  # an older executor era never writes it: not an alarm
        detail_parts = []
        age_s = parse.number(entry.get("age_s"))
        if age_s is not None:
            detail_parts.append(f"age {fmt.fmt_age(age_s)}")
        error = parse.text(entry.get("error"))
        if error is not None:
            detail_parts.append(_cut(error))
        level = "warning" if status == STALE else "error"
        badges.append(Badge(f"{name} {status}", level, "; ".join(detail_parts)))
    return badges


def pair_badge(snapshot: Snapshot) -> Badge | None:
    """A badge when kpis_v7.json and positions_v7.json shown together are not of one publish
    (`Snapshot.paired`: still apart when read again): the table and the cards disagree."""
    if snapshot.paired:
        return None
    kpis, positions = parse.mapping(snapshot.kpis.doc), parse.mapping(snapshot.positions.doc)
    kpis_t = parse.number(kpis.get("generated_at"))
    positions_t = parse.number(positions.get("generated_at"))
    if kpis_t is None or positions_t is None:
        detail = (
            f"generated_at {_quote(kpis.get('generated_at'))} (kpis_v7.json) and "
            f"{_quote(positions.get('generated_at'))} (positions_v7.json)"
        )
    else:
        which = "older" if positions_t < kpis_t else "newer"
        detail = f"positions_v7.json is {fmt.fmt_age(abs(kpis_t - positions_t))} {which}"
    return Badge(
        TWO_PUBLISHES, "error", f"{detail}: the positions table and the cards may disagree"
    )


def badges(snapshot: Snapshot, now: float, down_after_s: float) -> list[Badge]:
    """Every badge the page shows for the two files shown together, most serious first."""
    kpis, positions = snapshot.kpis, snapshot.positions
    out: list[Badge] = []
    for badge in (
        publisher_badge(kpis, now, down_after_s),
        file_badge(kpis),
        file_badge(positions),
        pair_badge(snapshot),
        schema_badge(kpis),
        schema_badge(positions),
    ):
        if badge is not None:
            out.append(badge)
    out.extend(source_badges(kpis.doc))
    return out
