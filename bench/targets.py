"""The targets each run is judged against: one row per target with the measured value, the
limit, and met (True), missed (False) or not measured (None). Pure: results in, rows out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

TARGET_IDS = (
    "e2e_p50",
    "e2e_p99",
    "floor_ratio",
    "floor_ratio_watchdog",
    "large_p99",
    "burst_lag",
    "idle_cpu",
    "rss",
    "build_10k",
    "dashboard",
    "dashboard_idle_server",
    "dashboard_idle_browser",
)


def number(x: Any) -> float | None:
    """x as a float; None for a bool, a non-number or NaN."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    return None if math.isnan(x) else float(x)


def ms(x: Any) -> str:
    """Milliseconds for a table: 3 significant-ish digits; a dash when missing."""
    v = number(x)
    if v is None:
        return "–"
    if v < 1:
        return f"{v:.3f}"
    if v < 10:
        return f"{v:.2f}"
    if v < 100:
        return f"{v:.1f}"
    return f"{v:,.0f}"


def times(x: Any) -> str:
    v = number(x)
    if v is None:
        return "–"
    return f"{v:,.0f}×" if v >= 100 else f"{v:.2f}×"


def case(
    results: Mapping[str, Any], book: str, fsync: bool, write: str = "executor"
) -> Mapping[str, Any]:
    """The e2e case of one book, fsync setting and kind of write (the executor's, which
    restamps every per-symbol entry, unless told), or {} when the run has none."""
    for c in results.get("e2e") or ():
        if (
            isinstance(c, Mapping)
            and c.get("book") == book
            and c.get("fsync") is fsync
            and c.get("write", "executor") == write
        ):
            return c
    return {}


def lookup(obj: Any, *path: str) -> Any:
    """obj[path[0]][path[1]]..., or None where a level is missing or not a mapping."""
    for key in path:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


def _row(
    tid: str, target: str, value: float | None, limit: float, unit: str, *,
    strict: bool = False, detail: str = "", missing: str = "not measured",
) -> dict[str, Any]:  # fmt: skip
    if value is None:
        met = None
        measured = missing
    else:
        met = value < limit if strict else value <= limit
        shown = f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
        measured = (f"{shown} {unit}" if unit != "×" else f"{value:.2f}×") + (
            f" ({detail})" if detail else ""
        )
    return {"id": tid, "target": target, "value": value, "limit": limit, "unit": unit,
            "measured": measured, "met": met}  # fmt: skip


def evaluate(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per target of the issue; `met` is True, False, or None (not measured)."""
    real = case(results, "realistic", True)
    large = case(results, "large", True)
    burst = results.get("burst") or {}
    idle = results.get("idle") or {}
    bound = number(burst.get("coalescing_bound_ms"))
    rss_values = [
        number(idle.get("peak_rss_mb")),
        number(burst.get("daemon_peak_rss_mb")),
        *(number(c.get("daemon_peak_rss_mb")) for c in results.get("e2e") or ()),
    ]
    rss = [v for v in rss_values if v is not None]
    sizes = lookup(results, "scaling", "sizes") or []
    at_10k = (lookup(s, "build_render_ms", "median") for s in sizes if s.get("n_symbols") == 10_000)
    build_10k = number(next(at_10k, None))
    dash = results.get("dashboard") or {}
    idle_tab = lookup(dash, "idle", "tabs_1") or {}
    idle_none = lookup(dash, "idle", "no_tab") or {}
    server_tab, server_none = (
        number(idle_tab.get("server_pct")),
        number(idle_none.get("server_pct")),
    )
    per_tab_server = (
        server_tab - server_none if server_tab is not None and server_none is not None else None
    )
    return [
        _row("e2e_p50", "Realistic book, executor-like writes, end to end p50 with fsync ≤ 2.5 ms",
             number(lookup(real, "ours", "median")), 2.5, "ms"),
        _row("e2e_p99", "Realistic book, end to end p99 with fsync ≤ 5 ms",
             number(lookup(real, "ours", "p99")), 5.0, "ms"),
        _row("floor_ratio", "Realistic book, median ≤ 1.5× the raw-inotify floor's median (fsync "
             "on; the floor copies the changed file: fill, fsync, rename)",
             number(real.get("ratio_to_floor_inotify")), 1.5, "×",
             detail=f"{times(real.get('ratio_to_floor_inotify_fast'))} of the floor that "
             "renames before it syncs"),
        _row("floor_ratio_watchdog", "Realistic book, median ≤ 1.1× the watchdog floor's median "
             "(fsync on; fill, fsync, rename)", number(real.get("ratio_to_floor_watchdog")), 1.1,
             "×", detail=f"{times(real.get('ratio_to_floor_watchdog_fast'))} of the floor that "
             "renames before it syncs"),
        _row("large_p99", "Large book, end to end p99 ≤ 15 ms (fsync on)",
             number(lookup(large, "ours", "p99")), 15.0, "ms"),
        _row("burst_lag", "Burst: max lag ≤ coalescing bound + 5 ms",
             number(burst.get("max_lag_ms")), (bound or 0.0) + 5.0, "ms",
             detail=f"bound {ms(bound)} ms + 5 ms"),
        _row("idle_cpu", "Idle CPU < 0.1 % of one core", number(idle.get("cpu_pct_of_core")),
             0.1, "%", strict=True, detail=f"{number(idle.get('cpu_s')) or 0:.2f} CPU s in "
             f"{number(idle.get('window_s')) or 0:.0f} s"),
        _row("rss", "Peak RSS < 45 MB (worst daemon of the run)", max(rss) if rss else None,
             45.0, "MB", strict=True),
        _row("build_10k", "10,000-symbol build ≤ 35 ms (build + render, median)", build_10k,
             35.0, "ms", missing="not part of this run"),
        _row("dashboard", "Dashboard: a change visible in the browser within 1.5 s (max)",
             number(lookup(dash, "input_to_visible_ms", "max")), 1500.0, "ms",
             detail=f"p50 {ms(lookup(dash, 'input_to_visible_ms', 'median'))} ms",
             missing=f"skipped: {dash.get('skipped', 'not measured')}"),
        _row("dashboard_idle_server", "Dashboard idle, files unchanged: Streamlit server ≤ 2 % "
             "of a core per open tab (above the no-tab figure)", per_tab_server, 2.0, "%",
             detail=f"{ms(server_tab)} % with 1 tab, {ms(server_none)} % with none",
             missing=f"skipped: {dash.get('skipped', 'not measured')}"),
        _row("dashboard_idle_browser", "Dashboard idle, files unchanged: browser ≤ 5 % of a "
             "core for one tab", number(idle_tab.get("browser_pct")), 5.0, "%",
             missing=f"skipped: {dash.get('skipped', 'not measured')}"),
    ]  # fmt: skip
