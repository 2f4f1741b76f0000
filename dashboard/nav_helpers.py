"""NAV and AUM helpers: pick the published AUM slices; never value assets a second way.

`build_aum_slices` returns the publisher's slices for a published document. Given a raw NAV
snapshot instead (a nav.json-like object, as the old dashboard passed), it runs the shared AUM
stage, so there is exactly one implementation of the AUM rules.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from kpi_publisher import parse

SLICE_KEYS: tuple[str, ...] = ("label", "usd", "zar", "qty", "pnl_usd")
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


def build_aum_slices(doc: Mapping[str, Any], usd_zar: float | None = None) -> list[dict[str, Any]]:
    """AUM slices `{label, usd, zar, qty, pnl_usd}` for a kpis_v7 document, an `aum` block, or a
    raw NAV snapshot (nav.json-like; valued by the shared stage with `usd_zar`, USD->ZAR)."""
    aum = parse.mapping(doc.get("aum"))
    if doc.get("schema") == "hedge.kpis_v7" or isinstance(aum.get("slices"), list):
        return published_slices(aum)
    if isinstance(doc.get("slices"), list):
        return published_slices(doc)
    return raw_snapshot_slices(doc, usd_zar)


def raw_snapshot_slices(snapshot: Mapping[str, Any], usd_zar: float | None) -> list[dict[str, Any]]:
    """Slices of a raw NAV snapshot through `kpi_publisher.stages.aum` (the one AUM stage)."""
    from kpi_publisher.stages import aum as aum_stage
    from kpi_publisher.stages import nav as nav_stage

    nav_usd = nav_stage.nav_value(snapshot)
    block = aum_stage.build_aum({}, snapshot, {}, {}, nav_usd=nav_usd, usd_zar=usd_zar)
    return published_slices(block)


def slice_labels(slices: Sequence[Mapping[str, Any]]) -> list[str]:
    """Labels of the slices that can be drawn (a known, positive USD value)."""
    return [str(s["label"]) for s in slices if (s.get("usd") or 0.0) > 0.0]
