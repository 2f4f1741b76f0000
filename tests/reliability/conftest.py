"""Hypothesis profiles and the fixtures every reliability test shares.

Profiles (env HYPOTHESIS_PROFILE): "default" runs a few hundred examples per property, fast
enough for every CI run; "long" runs 10,000 per property (`make test-long`, tests marked slow).
Neither has a deadline: a 2-core CI box under load must not turn slowness into failures.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
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


@pytest.fixture
def open_layout() -> Iterator[Layout]:
    """Like `layout`, but in a world-traversable dir so a process run as nobody can use it.

    pytest's own tmp root is 0700 (root only), which would make every unprivileged test fail
    for the wrong reason.
    """
    root = Path(tempfile.mkdtemp(prefix="hedge-kpi-rel-"))
    try:
        root.chmod(0o755)
        lay = Layout(root).make()
        lay.write_all(good_docs())
        for d in (lay.root / "logs", lay.state, lay.fx.parent, lay.holdings.parent, lay.out):
            d.chmod(0o755)
        for source in ("nav_state", "nav", "risk", "router", "positions", "fx", "holdings"):
            lay.path(source).chmod(0o644)
        yield lay
    finally:
        shutil.rmtree(root, ignore_errors=True)
