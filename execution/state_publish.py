"""Executor-side publishing: the in-process KPI build and the one atomic state-file writer.

`build_kpis_v7` runs the publisher's own pipeline over snapshots the caller already holds, so
an executor that wants the KPIs in-process gets exactly the document `hedge-kpi` publishes for
the same inputs and build time: there is no second copy of any KPI rule here.

`write_state_json` is how every state file of this package reaches the disk: rendered by the
publisher's renderer, written by the publisher's atomic writer (temp file in the same
directory, rename into place; a reader never sees half a file).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kpi_publisher import fs
from kpi_publisher.config import Settings
from kpi_publisher.contract import from_values
from kpi_publisher.pipeline import Outputs, build
from kpi_publisher.render import render


def build_outputs(
    now_ts: float,
    nav_snapshot: Any,
    risk_snapshot: Any,
    router_state: Any,
    positions: Any = None,
    *,
    nav: Any = None,
    fx: Any = None,
    holdings: Any = None,
    risk_advanced: Any = None,
    settings: Settings | None = None,
) -> Outputs:
    """Both published documents for snapshots held in memory (None = that source is missing).

    `nav_snapshot` is the nav_state.json document, `nav` the nav.json one, `risk_snapshot`
    risk_snapshot.json, `router_state` router_health.json, `positions` positions_state.json
    (or positions.json), `fx` the price/FX cache, `holdings` the off-exchange config and
    `risk_advanced` risk_advanced.json (VaR/CVaR). `now_ts` is the build time in epoch seconds.
    """
    sources = from_values(
        {
            "nav_state": nav_snapshot,
            "nav": nav,
            "risk": risk_snapshot,
            "router": router_state,
            "positions": positions,
            "fx": fx,
            "holdings": holdings,
            "risk_advanced": risk_advanced,
        }
    )
    return build(sources, float(now_ts), settings if settings is not None else Settings())


def build_kpis_v7(
    now_ts: float,
    nav_snapshot: Any,
    risk_snapshot: Any,
    router_state: Any,
    positions: Any = None,
    *,
    nav: Any = None,
    fx: Any = None,
    holdings: Any = None,
    risk_advanced: Any = None,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """The kpis_v7 document the publisher would write for these inputs at `now_ts` (epoch s)."""
    return build_outputs(
        now_ts,
        nav_snapshot,
        risk_snapshot,
        router_state,
        positions,
        nav=nav,
        fx=fx,
        holdings=holdings,
        risk_advanced=risk_advanced,
        settings=settings,
    ).kpis


def build_positions_v7(
    now_ts: float,
    positions: Any,
    risk_snapshot: Any = None,
    *,
    nav_snapshot: Any = None,
    nav: Any = None,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """The positions_v7 document the publisher would write for these inputs at `now_ts`.

    The NAV files are needed only for the totals' exposure in percent of NAV.
    """
    return build_outputs(
        now_ts, nav_snapshot, risk_snapshot, None, positions, nav=nav, settings=settings
    ).positions


def render_state(doc: Mapping[str, Any] | list[Any]) -> bytes:
    """A state document as deterministic compact JSON (sorted keys, never NaN/Infinity)."""
    return render(doc)  # type: ignore[arg-type]


def write_state_json(
    path: Path, doc: Mapping[str, Any] | list[Any], *, fsync: bool = False
) -> None:
    """Atomically replace `path` with `doc` as JSON; raises OSError, leaving the old file intact.

    fsync defaults to off, like the real executor's writers (state files are rewritten every
    loop; losing the last one to a power cut costs one cycle).
    """
    fs.write_atomic(Path(path), render_state(doc), fsync=fsync)
