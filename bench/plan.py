"""How much of each measurement a run makes: the full run, the CI smoke run, the test run."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Plan:
    """Sample counts and durations. Durations in seconds, rates in writes per second."""

    name: str
    e2e_realistic_rounds: int
    e2e_large_rounds: int
    polling_samples: int
    polling_interval_s: float
    burst_rate_hz: float
    burst_duration_s: float
    idle_s: float
    scaling_sizes: tuple[int, ...]
    scaling_budget_s: float  # per size, split over the timed steps
    json_sizes: tuple[int, ...]
    json_budget_s: float
    profile_reps: int
    profile_budget_s: float
    dashboard_samples: int  # 0: skip the browser measurement
    settle_s: float = 1.0  # after a publisher's first publish, before measuring it

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


FULL = Plan(
    name="full",
    e2e_realistic_rounds=200,
    e2e_large_rounds=80,
    polling_samples=30,
    polling_interval_s=1.0,
    burst_rate_hz=1000.0,
    burst_duration_s=10.0,
    idle_s=60.0,
    scaling_sizes=(10, 100, 1_000, 10_000),
    scaling_budget_s=3.0,
    json_sizes=(10, 100, 1_000, 10_000),
    json_budget_s=2.0,
    profile_reps=300,
    profile_budget_s=3.0,
    dashboard_samples=15,
)

QUICK = Plan(
    name="quick",
    e2e_realistic_rounds=8,
    e2e_large_rounds=3,
    polling_samples=2,
    polling_interval_s=1.0,
    burst_rate_hz=1000.0,
    burst_duration_s=1.0,
    idle_s=3.0,
    scaling_sizes=(10, 100, 1_000),
    scaling_budget_s=0.4,
    json_sizes=(10, 1_000),
    json_budget_s=0.2,
    profile_reps=20,
    profile_budget_s=0.3,
    dashboard_samples=0,
    settle_s=0.3,
)

# For the smoke test: every code path, the smallest sizes.
TINY = Plan(
    name="tiny",
    e2e_realistic_rounds=2,
    e2e_large_rounds=1,
    polling_samples=2,
    polling_interval_s=0.2,
    burst_rate_hz=200.0,
    burst_duration_s=0.3,
    idle_s=0.5,
    scaling_sizes=(10, 100),
    scaling_budget_s=0.05,
    json_sizes=(10,),
    json_budget_s=0.05,
    profile_reps=2,
    profile_budget_s=0.05,
    dashboard_samples=0,
    settle_s=0.2,
)

PLANS = {p.name: p for p in (FULL, QUICK, TINY)}
