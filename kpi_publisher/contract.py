"""The published contract in one place: what the publisher promises every reader.

Source names and their status words, the published file names and schema ids, the exit codes,
the "publisher down" rule and the clock-skew allowance, and the two questions every reader of
kpis_v7.json asks (`not_ok`, `publish_age_s`). The rules themselves are numbered in
docs/CONTRACT_RULES.md.

Imports nothing of this project: the stages, the daemon, `check`, the Prometheus exporter, the
dashboard and the executor side all import it, and it depends on none of them.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from pathlib import Path
from typing import Any

# --- input sources ----------------------------------------------------------------------------

# Every source the `sources` block lists, in its order.
SOURCE_NAMES: tuple[str, ...] = (
    "nav_state",
    "nav",
    "risk",
    "router",
    "positions",
    "fx",
    "holdings",
    "risk_advanced",
)
# Written only from a later executor era on (risk_advanced.json: v7.6). "missing" is the
# normal state of an older desk: --strict does not require it and it raises no alarm.
ERA_OPTIONAL: frozenset[str] = frozenset({"risk_advanced"})
# Sources every version of the contract lists; the era-optional ones came later.
CORE_SOURCES: frozenset[str] = frozenset(SOURCE_NAMES) - ERA_OPTIONAL


class Status(StrEnum):
    """A source's status word. Members compare equal to (and hash like) the published strings."""

    OK = "ok"
    MISSING = "missing"
    INVALID = "invalid"
    STALE = "stale"


OK = Status.OK.value
MISSING = Status.MISSING.value
INVALID = Status.INVALID.value
STALE = Status.STALE.value
# The published words, in the order exporters list them.
STATUS_WORDS: tuple[str, ...] = tuple(s.value for s in Status)


def expected_absent(name: str, status: object) -> bool:
    """True for a later-era source reported missing: its normal state, not a problem."""
    return status == MISSING and name in ERA_OPTIONAL


@dataclass(frozen=True)
class SourceRead:
    """One source as the pipeline sees it. `data` is the last good content when invalid."""

    name: str
    status: str
    data: Any = None
    error: str | None = None
    path: Path | None = None
    stamp: Hashable | None = None  # the file's identity when read (fs.FileStamp)
    version: int = 0  # bumped on every successful parse: new content even when the stamp is not
    # Key paths of values read as missing because they were not valid Unicode (the first
    # DROPPED_SHOWN of them) and how many there were in all.
    dropped: tuple[str, ...] = ()
    dropped_count: int = 0
    # The least age (s) to publish for it: a long-running reader sets the monotonic time since
    # it last saw the content change, so a wall clock stepped back cannot make old data new.
    min_age_s: float = 0.0

    def aged(self, min_age_s: float) -> SourceRead:
        """This read with another `min_age_s` (a copy made on every pass for every source:
        dataclasses.replace costs ten times as much)."""
        aged = object.__new__(SourceRead)
        aged.__dict__.update(self.__dict__, min_age_s=min_age_s)
        return aged


def from_values(values: Mapping[str, Any]) -> dict[str, SourceRead]:
    """Sources for in-process callers that already hold parsed snapshots (None = missing)."""
    return {
        name: SourceRead(name, MISSING)
        if values.get(name) is None
        else SourceRead(name, OK, values[name])
        for name in SOURCE_NAMES
    }


# --- published files --------------------------------------------------------------------------

KPIS_FILE = "kpis_v7.json"
POSITIONS_FILE = "positions_v7.json"
# Every file the publisher writes into the publish dir (positions_v7.json is replaced first,
# kpis_v7.json last: readers watch kpis for freshness).
OUTPUT_FILES: tuple[str, ...] = (KPIS_FILE, POSITIONS_FILE)

KPIS_SCHEMA = "hedge.kpis_v7"
POSITIONS_SCHEMA = "hedge.positions_v7"
# The NAV history's curves, published beside the two outputs by `run` (kpi_publisher.history).
NAV_HISTORY_FILE = "nav_history_v7.json"
NAV_HISTORY_SCHEMA = "hedge.nav_history_v7"
# The `schema` id each published file carries, by file name.
SCHEMA_IDS: Mapping[str, str] = {KPIS_FILE: KPIS_SCHEMA, POSITIONS_FILE: POSITIONS_SCHEMA}
# 2: nav fallbacks, aum.stated_total_usd, router.symbols, exposure and VaR/CVaR fields,
# the risk_advanced source, positions totals' exposure.
SCHEMA_VERSION = 2


def schema_name(file_name: str) -> str:
    """The JSON Schema's name for a published file: "kpis_v7.json" -> "kpis_v7"."""
    return file_name.removesuffix(".json")


# --- freshness --------------------------------------------------------------------------------

# A timestamp up to this far ahead of the reader's clock is clock skew (age 0); further ahead
# it is not a valid timestamp (docs/CONTRACT_RULES.md, rule 2).
CLOCK_SKEW_S = 60.0
# kpis_v7.json older than this many heartbeats: the publisher is down.
DOWN_HEARTBEATS = 3
DEFAULT_SYMBOLS_CAP = 64  # entries kept in the `symbols` map (and router.symbols)


def down_after_s(heartbeat_s: float) -> float:
    """Age of kpis_v7.json (s) beyond which the publisher counts as down."""
    return DOWN_HEARTBEATS * heartbeat_s


def _number(value: Any) -> float | None:
    """A finite JSON number (not a bool), else None: the schemas' type for a build time."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer beyond any float
        return None
    return number if math.isfinite(number) else None


# `aum.unpriced` names at most this many assets; a last entry "<n> more" stands for the rest.
MAX_UNPRICED = 100
_MORE = " more"


def unpriced_more(n: int) -> str:
    """The last `aum.unpriced` entry standing for `n` assets not named."""
    return f"{n:,}{_MORE}"


def unpriced_count(value: Any) -> int | None:
    """How many assets a published `aum.unpriced` list stands for: its entries, a last
    "<n> more" entry counting n; None when it is not a list."""
    if not isinstance(value, list):
        return None
    last = value[-1] if value else None
    if isinstance(last, str) and last.endswith(_MORE):
        digits = last[: -len(_MORE)].replace(",", "")
        if digits.isascii() and digits.isdigit():
            return len(value) - 1 + int(digits)
    return len(value)


def publish_age_s(kpis: Mapping[str, Any] | None, now: float) -> float | None:
    """Seconds since a published document was generated at `now`; None when unknown.

    A stamp up to CLOCK_SKEW_S ahead of the clock is skew (age 0); one further ahead is not a
    valid timestamp and gives None, like no stamp at all.
    """
    generated_at = _number(kpis.get("generated_at")) if isinstance(kpis, Mapping) else None
    if generated_at is None or generated_at - now > CLOCK_SKEW_S:
        return None
    return max(0.0, now - generated_at)


def not_ok(kpis: Mapping[str, Any] | None, *, include_expected: bool = False) -> dict[str, str]:
    """{source: status} of every source a kpis_v7 document reports as not ok.

    An era-optional source reported missing is its normal state and left out, unless
    `include_expected`. An entry that is not an object is reported with its own text.
    """
    sources = kpis.get("sources") if isinstance(kpis, Mapping) else None
    if not isinstance(sources, Mapping):
        return {}
    out: dict[str, str] = {}
    for name, entry in sources.items():
        status = entry.get("status") if isinstance(entry, Mapping) else entry
        if status == OK:
            continue
        if not include_expected and expected_absent(str(name), status):
            continue
        out[str(name)] = str(status)
    return out


# --- exit codes -------------------------------------------------------------------------------


class ExitCode(IntEnum):
    """Documented exit codes (README, "Exit codes")."""

    OK = 0
    FAILURE = 1  # unexpected internal error
    USAGE = 2  # bad arguments or an unusable config file
    OUT_DIR_UNWRITABLE = 3  # the out dir cannot be created or written
    STRICT_INPUTS = 4  # --strict and a source is missing, invalid or stale
    CHECK_STALE = 5  # `check`: a published file is older than allowed
    CHECK_INVALID = 6  # `check`: a published file is missing or fails its schema
    WORKER_STUCK = 70  # `run`: the publish loop made no progress; exit so supervisord restarts


__all__ = [
    "CLOCK_SKEW_S",
    "CORE_SOURCES",
    "DEFAULT_SYMBOLS_CAP",
    "DOWN_HEARTBEATS",
    "ERA_OPTIONAL",
    "INVALID",
    "KPIS_FILE",
    "KPIS_SCHEMA",
    "MAX_UNPRICED",
    "MISSING",
    "NAV_HISTORY_FILE",
    "NAV_HISTORY_SCHEMA",
    "OK",
    "OUTPUT_FILES",
    "POSITIONS_FILE",
    "POSITIONS_SCHEMA",
    "SCHEMA_IDS",
    "SCHEMA_VERSION",
    "SOURCE_NAMES",
    "STALE",
    "STATUS_WORDS",
    "ExitCode",
    "SourceRead",
    "Status",
    "down_after_s",
    "expected_absent",
    "from_values",
    "not_ok",
    "publish_age_s",
    "schema_name",
    "unpriced_count",
    "unpriced_more",
]
