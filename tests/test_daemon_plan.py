"""The pass as pure planning: the reader's report and the clocks in, the decision out."""

from __future__ import annotations

from pathlib import Path

from kpi_publisher.config import Settings
from kpi_publisher.contract import INVALID, OK, SOURCE_NAMES, SourceRead
from kpi_publisher.daemon import plan


def _settings(tmp_path: Path) -> Settings:
    return Settings(state_dir=tmp_path, heartbeat_s=5.0, retry_ms=100.0, fsync=False)


def _sources(invalid: str | None = None) -> dict[str, SourceRead]:
    return {
        n: SourceRead(n, INVALID, error="torn") if n == invalid else SourceRead(n, OK, {})
        for n in SOURCE_NAMES
    }


def test_an_invalid_source_is_re_read_at_doubling_intervals_up_to_the_heartbeat(
    tmp_path: Path,
) -> None:
    s, state, waits = _settings(tmp_path), plan.PassState(dirty=False), []
    for i in range(8):
        now = 100.0 + i
        changed = frozenset({"nav"}) if i == 0 else frozenset()
        decided = plan.plan_pass(state, "retry", _sources("nav"), changed, now, s)
        state = decided.state
        assert state.retry_at is not None
        waits.append(round(state.retry_at - now, 3))
        if i == 0:
            assert [line.event for line in decided.logs] == ["source_invalid"]
        else:
            assert decided.logs == ()  # logged once, when it became invalid
    assert waits == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]
    healed = plan.plan_pass(state, "change", _sources(), frozenset({"nav"}), 200.0, s).state
    assert healed.retry_at is None and healed.invalid_passes == 0


def test_nothing_changed_publishes_only_when_forced(tmp_path: Path) -> None:
    s, quiet = _settings(tmp_path), plan.PassState(dirty=False)
    none = frozenset[str]()
    assert not plan.plan_pass(quiet, "change", _sources(), none, 0.0, s).publish
    for reason in ("start", "heartbeat", "reload", "foreign_writer"):
        assert plan.plan_pass(quiet, reason, _sources(), none, 0.0, s).publish
    assert plan.plan_pass(quiet, "change", _sources(), frozenset({"fx"}), 0.0, s).publish


def test_a_failed_publish_is_retried_on_its_own_doubling_schedule(tmp_path: Path) -> None:
    s, state = _settings(tmp_path), plan.PassState(dirty=False, next_heartbeat=5.0)
    retries = []
    for _ in range(4):
        state = plan.failed(state, 10.0, s)
        retries.append(round((state.publish_retry_at or 0.0) - 10.0, 3))
    assert retries == [0.1, 0.2, 0.4, 0.8]
    assert state.dirty and state.due(10.05) is None and state.due(10.8) == "retry"
    done = plan.published(state, 11.0, s)
    assert (done.publish_failures, done.retry_at, done.next_heartbeat) == (0, None, 16.0)
