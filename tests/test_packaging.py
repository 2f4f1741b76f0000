"""What `pip install` puts into site-packages: the three packages of the product, no more.

`bench` and `tests` run from the checkout; installed, they would land in site-packages as
generic top-level names that clash with other projects' (README, "Layout").
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from setuptools import find_packages

ROOT = Path(__file__).resolve().parent.parent


def _installed_packages() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    return find_packages(where=str(ROOT), include=config["packages"]["find"]["include"])


def test_three_top_level_packages_are_installed_and_nothing_from_the_checkout_only_dirs() -> None:
    packages = _installed_packages()
    assert {name.split(".")[0] for name in packages} == {"kpi_publisher", "dashboard", "execution"}
    # Every sub-package of those three is shipped (a missing __init__.py would drop one).
    on_disk = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for top in ("kpi_publisher", "dashboard", "execution")
        for init in (ROOT / top).rglob("__init__.py")
    }
    assert on_disk == set(packages)


def test_the_schemas_and_the_demo_data_are_shipped_with_the_code() -> None:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]
    schemas = [p.name for p in (ROOT / "kpi_publisher" / "schemas").glob("*.json")]
    assert schemas and data["kpi_publisher.schemas"] == ["*.json"]
    shipped = {p.name for pattern in data["execution"] for p in (ROOT / "execution").glob(pattern)}
    assert "nav_month.jsonl.gz" in shipped
