"""Pure: output document -> deterministic bytes (sorted keys, compact UTF-8, never NaN/Infinity)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import orjson


def _text(value: str) -> str:
    """The string with every lone surrogate replaced by U+FFFD (a pair becomes its character)."""
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return value


def _key(key: Any) -> str:
    return _text(key if isinstance(key, str) else str(key))


def _encodable(value: Any) -> Any:
    """A copy orjson can always encode: finite floats, 64-bit ints, str keys, valid Unicode."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return _text(value)
    if type(value) is int and not -(2**63) <= value < 2**64:
        try:
            return _encodable(float(value))
        except OverflowError:
            return None
    if isinstance(value, Mapping):
        return {_key(k): _encodable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encodable(v) for v in value]
    return value


def render(doc: Mapping[str, Any]) -> bytes:
    """The bytes to publish; the same document always gives the same bytes.

    Inputs are decoded to valid Unicode already (sources.decode_doc); a string from an
    in-process caller that is not (a lone surrogate) is published with U+FFFD in its place
    rather than stopping every publish.
    """
    try:
        return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)
    except (TypeError, orjson.JSONEncodeError):
        # Non-str keys, integers beyond 64 bits or strings that are not valid Unicode from an
        # in-process caller: normalise, retry.
        return orjson.dumps(_encodable(doc), option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
