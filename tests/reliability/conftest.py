"""Hypothesis profiles and the fixtures every reliability test shares.

Profiles (env HYPOTHESIS_PROFILE): "default" runs a few hundred examples per property, fast
enough for every CI run; "long" runs 10,000 per property (`make test-long`, tests marked slow).
Neither has a deadline: a 2-core CI box under load must not turn slowness into failures.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from .helpers import Layout, good_docs

settings.register_profile(
    "default",
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "long",
    max_examples=10_000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    """The real directory layout under tmp_path, holding a good document for every source."""
    lay = Layout(tmp_path).make()
    lay.write_all(good_docs())
    return lay
