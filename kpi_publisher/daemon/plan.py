"""The pass as pure planning: what the reader reported and where the clocks stand -> whether to
publish, what to log, and when to look again.

Nothing here reads a file, a clock or a global: the loop (`loop.py`) passes in the reader's
report (`sources.Refresh`), the monotonic time and the settings, and carries the returned
`PassState` to the next pass. So a pass can run on whichever thread reads the events, and a
pass that re-reads only some sources plans the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from kpi_publisher.config import Settings
from kpi_publisher.contract import INVALID, SOURCE_NAMES, SourceRead

# Reasons that publish whatever the inputs: ages and staleness stay current (heartbeat), a new
# config or a foreign write to an output must show at once.
FORCING_REASONS = frozenset({"start", "heartbeat", "reload", "foreign_writer", "history"})
STATE_DIR_POLL_S = 1.0  # how often a missing state dir is looked for


def retry_delay_s(failures: int, retry_s: float, cap_s: float) -> float:
    """Seconds until the next re-read after `failures` consecutive invalid passes (>= 1)."""
    return float(min(cap_s, retry_s * 2 ** max(0, failures - 1)))


@dataclass(frozen=True)
class LogLine:
    """A line the pass asks the loop to log: level, event and fields."""

    level: str
    event: str
    fields: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PassState:
    """Everything one pass leaves for the next (times are monotonic seconds)."""

    dirty: bool = True  # publish on the next pass whatever the inputs (start, failure, reload)
    unpublished: frozenset[str] = frozenset()  # sources changed since the last publish
    invalid_passes: int = 0  # consecutive passes with an invalid source
    source_retry_at: float | None = None  # re-read of an invalid source (or missing state dir)
    publish_failures: int = 0  # the current publish-failure streak
    publish_retry_at: float | None = None
    next_heartbeat: float = 0.0

    @property
    def retry_at(self) -> float | None:
        """The earliest re-read of an invalid source or retry of a failed publish."""
        due = [t for t in (self.source_retry_at, self.publish_retry_at) if t is not None]
        return min(due) if due else None

    def wait_s(self, now: float) -> float:
        """How long the loop may wait for events before a pass is due anyway."""
        due = (
            self.next_heartbeat
            if self.retry_at is None
            else min(self.next_heartbeat, self.retry_at)
        )
        return max(0.0, due - now)

    def due(self, now: float) -> str | None:
        """The reason for a pass with no event: "heartbeat", "retry", or None."""
        if now >= self.next_heartbeat:
            return "heartbeat"
        if self.retry_at is not None and now >= self.retry_at:
            return "retry"
        return None


@dataclass(frozen=True)
class Plan:
    """What a pass does after reading: publish or not, and what to log first."""

    state: PassState
    publish: bool
    logs: tuple[LogLine, ...] = ()


def plan_pass(
    state: PassState,
    reason: str,
    sources: Mapping[str, SourceRead],
    changed: frozenset[str],
    now: float,
    settings: Settings,
) -> Plan:
    """Given what the reader reported, decide the pass: publish when a source changed since the
    last publish or when `reason` forces it; re-read an invalid source soon (doubling)."""
    logs: list[LogLine] = []
    for read in (sources[n] for n in sorted(changed) if sources[n].dropped_count):
        logs.append(
            LogLine(
                "warning",
                "source_value_dropped",
                {
                    "source": read.name,
                    "file": str(read.path),
                    "keys": list(read.dropped),
                    "count": read.dropped_count,
                },
            )
        )
    invalid = [n for n in SOURCE_NAMES if sources[n].status == INVALID]
    for name in sorted(changed & set(invalid)):
        read = sources[name]
        logs.append(
            LogLine(
                "warning",
                "source_invalid",
                {
                    "source": name,
                    "file": str(read.path) if read.path else None,
                    "reason": read.error,
                    "last_good": read.data is not None,
                },
            )
        )
    passes, retry_at = 0, None
    if invalid:
        passes = state.invalid_passes + 1
        retry_at = now + retry_delay_s(passes, settings.retry_ms / 1000.0, settings.heartbeat_s)
    state = replace(
        state,
        invalid_passes=passes,
        source_retry_at=retry_at,
        unpublished=state.unpublished | changed,
    )
    publish = bool(state.unpublished) or state.dirty or reason in FORCING_REASONS
    return Plan(state, publish, tuple(logs))


def published(state: PassState, now: float, settings: Settings) -> PassState:
    """After a publish: nothing pending, the streak over, the heartbeat from now."""
    return replace(
        state,
        dirty=False,
        unpublished=frozenset(),
        publish_failures=0,
        publish_retry_at=None,
        next_heartbeat=now + settings.heartbeat_s,
    )


def failed(state: PassState, now: float, settings: Settings) -> PassState:
    """After a failed build or publish: retried on its own schedule, doubling from retry_ms up
    to the heartbeat, not hammered by the heartbeat or by the invalid-source re-reads."""
    failures = state.publish_failures + 1
    delay = retry_delay_s(failures, settings.retry_ms / 1000.0, settings.heartbeat_s)
    return replace(
        state,
        dirty=True,
        publish_failures=failures,
        publish_retry_at=now + delay,
        next_heartbeat=now + settings.heartbeat_s,
    )


def waiting_for_state_dir(state: PassState, now: float, settings: Settings) -> PassState:
    """The out dir is (inside) a state dir that does not exist: look again soon, and publish on
    the first pass after it appears."""
    return replace(
        state,
        dirty=True,
        source_retry_at=now + min(STATE_DIR_POLL_S, settings.heartbeat_s),
        next_heartbeat=now + settings.heartbeat_s,
    )


def reloaded(state: PassState) -> PassState:
    """A new config: the next pass publishes."""
    return replace(state, dirty=True)


def age_floors(
    changed_at: Mapping[str, float], content_changed: frozenset[str], now: float
) -> tuple[dict[str, float], dict[str, float]]:
    """(new changed_at, floors): per source, when (monotonic) its content last changed and the
    seconds since then."""
    at = {**changed_at, **{name: now for name in content_changed}}
    return at, {name: max(0.0, now - at.get(name, now)) for name in SOURCE_NAMES}
