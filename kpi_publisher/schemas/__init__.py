"""JSON Schemas of the published documents, shipped with the package, and the one check of a
document against them (`violation`, used by `hedge-kpi check` and the dashboard)."""

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


@cache
def _validator(name: str) -> Any:
    import jsonschema  # ~0.1 s of imports, paid by the first caller that validates

    schema = load(name)
    return jsonschema.validators.validator_for(schema)(schema)


def violation(name: str, doc: Any) -> str | None:
    """Why `doc` fails the schema `name` ("<key path>: <message>"), or None when it fits. A
    document nested too deep for the validator's recursion fails, never raises."""
    import jsonschema

    try:
        error = jsonschema.exceptions.best_match(_validator(name).iter_errors(doc))
        if error is None:
            return None
        where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        return f"{where}: {error.message}"
    except RecursionError:
        return "(top level): nested too deep to validate"
