"""Shared fixtures: a clean KPI_* environment, fixture dirs copied to tmp, and a JSON matcher."""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

TESTS_DIR = Path(__file__).resolve().parent
FIXTURES = TESTS_DIR / "fixtures"
REPO_ROOT = TESTS_DIR.parent


@pytest.fixture(autouse=True)
def _no_kpi_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings read KPI_* variables; a developer's shell must not change what a test sees."""
    for key in list(os.environ):
        if key.startswith("KPI_"):
            monkeypatch.delenv(key, raising=False)


@pytest.fixture(autouse=True)
def _private_state_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The publisher keeps its crash log and NAV history under $XDG_STATE_HOME: the daemons a
    test starts keep them in the session's temp dir, not in the developer's home."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.getbasetemp() / "state-home"))


def kpi_free_env() -> dict[str, str]:
    """The current environment without KPI_* settings, for subprocesses."""
    return {k: v for k, v in os.environ.items() if not k.startswith("KPI_")}


@pytest.fixture
def copy_fixture(tmp_path: Path) -> Callable[[Path], Path]:
    """Copy a fixture tree into tmp (tests never write into tests/fixtures); returns the copy."""

    def _copy(src: Path) -> Path:
        dst = tmp_path / src.name
        shutil.copytree(src, dst)
        return dst

    return _copy


def _iso_epoch(value: str) -> float:
    return datetime.fromisoformat(value[:-1] + "+00:00").timestamp()


def json_mismatches(
    expected: Any, actual: Any, path: str = "$", *, age_tol: float = 5e-4
) -> Iterator[str]:
    """Every difference between two parsed JSON documents, as readable lines.

    Types must agree exactly (a float is not an int, null is not 0.0). Floats agree within
    1e-9 relative (cent-exact for any amount here); `age_s` within half a millisecond because
    the contract does not fix the rounding of ages. An ISO string ending in "Z" under
    `updated_at` is compared as the instant it names (its precision is not fixed).
    """
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            yield f"{path}: expected an object, got {actual!r}"
            return
        for key in sorted(set(expected) | set(actual)):
            if key not in actual:
                yield f"{path}.{key}: missing (expected {expected[key]!r})"
            elif key not in expected:
                yield f"{path}.{key}: unexpected key (value {actual[key]!r})"
            else:
                yield from json_mismatches(
                    expected[key], actual[key], f"{path}.{key}", age_tol=age_tol
                )
        return
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            yield f"{path}: expected {expected!r}, got {actual!r}"
            return
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            yield from json_mismatches(e, a, f"{path}[{i}]", age_tol=age_tol)
        return
    if type(expected) is not type(actual):
        yield f"{path}: expected {expected!r} ({type(expected).__name__}), got {actual!r}"
        return
    if isinstance(expected, float):
        tol = age_tol if path.endswith(".age_s") else 0.0
        if not math.isclose(expected, actual, rel_tol=1e-9, abs_tol=max(tol, 1e-9)):
            yield f"{path}: expected {expected!r}, got {actual!r}"
        return
    if isinstance(expected, str) and path.endswith(".updated_at") and expected.endswith("Z"):
        if not actual.endswith("Z") or abs(_iso_epoch(expected) - _iso_epoch(actual)) > 1e-3:
            yield f"{path}: expected the instant {expected!r}, got {actual!r}"
        return
    if expected != actual:
        yield f"{path}: expected {expected!r}, got {actual!r}"


@pytest.fixture
def assert_json_matches() -> Callable[[Any, Any], None]:
    def _check(expected: Any, actual: Any) -> None:
        problems = list(json_mismatches(expected, actual))
        assert not problems, "published document differs:\n  " + "\n  ".join(problems)

    return _check
