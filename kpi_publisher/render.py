"""Pure: output document -> deterministic bytes (sorted keys, compact UTF-8, never NaN/Infinity)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import orjson


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def render(doc: Mapping[str, Any]) -> bytes:
    """The bytes to publish; the same document always gives the same bytes."""
    try:
        return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)
    except (TypeError, orjson.JSONEncodeError):
        # Non-str keys or integers beyond 64 bits from an in-process caller: normalise, retry.
        return orjson.dumps(_finite(doc), option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
