"""Fixtures shared by the history's tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(params=["hist", "hist-\udcff"], ids=["utf8", "not-utf8"])
def hist(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """A directory for the history file: a plain name, and one whose bytes are not UTF-8
    (b"hist-\\xff", which the config reads as a surrogate escape and the daemon runs with)."""
    made: Path = tmp_path / request.param
    made.mkdir()
    return made
