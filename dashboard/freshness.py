"""Freshness badges: which published file or input source the operator should not trust.

Pure: the published reads, the clock and the heartbeat come in as values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dashboard.data import MISSING, OK, Published
from kpi_publisher import fmt, parse
from kpi_publisher.sources import SOURCE_NAMES

SOURCE_ORDER: tuple[str, ...] = SOURCE_NAMES
BAD_SOURCE_STATUSES: frozenset[str] = frozenset({"stale", "invalid", "missing"})
PUBLISHER_DOWN = "publisher down"


@dataclass(frozen=True)
class Badge:
    """`label` is short and fixed-vocabulary (safe to show as a badge); `detail` is free text."""

    label: str
    level: str  # "error" (red) | "warning" (orange)
    detail: str = ""


def publish_age_s(kpis: Mapping[str, Any] | None, now: float) -> float | None:
    """Seconds since kpis_v7.json was generated (0 for a future stamp); None when unknown."""
    generated_at = parse.number(kpis.get("generated_at")) if kpis is not None else None
    if generated_at is None:
        return None
    return max(0.0, now - generated_at)


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
        return Badge(PUBLISHER_DOWN, "error", "kpis_v7.json has no valid generated_at")
    if age_s > down_after_s:
        return Badge(
            PUBLISHER_DOWN,
            "error",
            f"last publish {fmt.fmt_age(age_s)} ago (limit {fmt.fmt_age(down_after_s)})",
        )
    return None


def source_badges(kpis: Mapping[str, Any] | None) -> list[Badge]:
    """One badge per input source the publisher marked stale, invalid or missing."""
    sources = parse.mapping(kpis.get("sources")) if kpis is not None else {}
    names = [n for n in SOURCE_ORDER if n in sources]
    names += sorted(n for n in sources if n not in SOURCE_ORDER)
    badges: list[Badge] = []
    for name in names:
        entry = parse.mapping(sources.get(name))
        status = parse.text(entry.get("status"))
        if status is None or status.lower() not in BAD_SOURCE_STATUSES:
            continue
        status = status.lower()
        detail_parts = []
        age_s = parse.number(entry.get("age_s"))
        if age_s is not None:
            detail_parts.append(f"age {fmt.fmt_age(age_s)}")
        error = parse.text(entry.get("error"))
        if error is not None:
            detail_parts.append(error)
        level = "warning" if status == "stale" else "error"
        badges.append(Badge(f"{name} {status}", level, "; ".join(detail_parts)))
    return badges


def badges(kpis: Published, positions: Published, now: float, down_after_s: float) -> list[Badge]:
    """Every badge the page shows, most serious first."""
    out: list[Badge] = []
    for badge in (
        publisher_badge(kpis, now, down_after_s),
        file_badge(kpis),
        file_badge(positions),
    ):
        if badge is not None:
            out.append(badge)
    out.extend(source_badges(kpis.doc))
    return out
