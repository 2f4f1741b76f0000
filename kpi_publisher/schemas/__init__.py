"""JSON Schemas of the two published documents, shipped with the package."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from kpi_publisher.contract import OUTPUT_FILES, schema_name

# nav_history_v7 is published only with a history (kpi_publisher.history).
NAMES: tuple[str, ...] = (*(schema_name(f) for f in OUTPUT_FILES), "nav_history_v7")


@cache
def load(name: str) -> dict[str, Any]:
    """The schema for `name` ("kpis_v7" or "positions_v7") as a dict."""
    if name not in NAMES:
        raise KeyError(name)
    text = resources.files(__package__).joinpath(f"{name}.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema
