"""The AUM slices of a published document (donut input); never value assets a second way.

`build_aum_slices` returns the publisher's slices, as published: the AUM rules exist only in
the publisher's AUM stage.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from kpi_publisher import parse
from kpi_publisher.contract import KPIS_SCHEMA

NUMERIC_SLICE_KEYS: tuple[str, ...] = ("usd", "zar", "qty", "pnl_usd")


def _clean_slice(raw: Any) -> dict[str, Any] | None:
    entry = parse.mapping(raw)
    label = parse.text(entry.get("label"))
    if label is None:
        return None
    out: dict[str, Any] = {"label": label}
    for key in NUMERIC_SLICE_KEYS:
        out[key] = parse.number(entry.get(key))
    return out


def published_slices(aum: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The slices of a published `aum` block, in the publisher's order (Futures first)."""
    slices = aum.get("slices")
    if not isinstance(slices, list):
        return []
    return [s for s in (_clean_slice(raw) for raw in slices) if s is not None]


def build_aum_slices(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """AUM slices `{label, usd, zar, qty, pnl_usd}` of a kpis_v7 document or of its `aum` block."""
    aum = parse.mapping(doc.get("aum"))
    if doc.get("schema") == KPIS_SCHEMA or isinstance(aum.get("slices"), list):
        return published_slices(aum)
    return published_slices(doc)


def slice_labels(slices: Sequence[Mapping[str, Any]]) -> list[str]:
    """Labels of the slices that can be drawn (a known, positive USD value)."""
    return [str(s["label"]) for s in slices if (s.get("usd") or 0.0) > 0.0]
