"""Named figures of one run, formatted for the prose of the report (notes.py uses them).

Pure: the results document in, {name: text} out. A figure the run did not measure is an en dash.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any


def _get(obj: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


def _case(results: Mapping[str, Any], book: str, fsync: bool) -> Mapping[str, Any]:
    for c in results.get("e2e") or ():
        if isinstance(c, Mapping) and c.get("book") == book and c.get("fsync") is fsync:
            return c
    return {}


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        return "–"
    if abs(value) < 10:
        return f"{value:.2f}"
    if abs(value) < 100:
        return f"{value:.1f}"
    return f"{value:,.0f}"


class Facts(dict[str, str]):
    """A dict for str.format_map: an unknown name renders as a dash, never a KeyError."""

    def __missing__(self, key: str) -> str:
        return "–"


def facts(results: Mapping[str, Any]) -> Facts:
    real_on, real_off = _case(results, "realistic", True), _case(results, "realistic", False)
    large_on = _case(results, "large", True)
    prof = results.get("profile") or {}
    burst = results.get("burst") or {}
    pass_p99 = _get(real_on, "daemon_pass_ms", "p99")
    slow = [
        s
        for s in _get(real_on, "samples_ms", "ours") or []
        if isinstance(pass_p99, (int, float)) and s > pass_p99 + 5.0
    ]
    n = _get(real_on, "ours", "n")
    sizes = {s.get("n_symbols"): s for s in _get(results, "scaling", "sizes") or []}
    values: dict[str, Any] = {
        "real_on_p50": _get(real_on, "ours", "median"),
        "real_on_p99": _get(real_on, "ours", "p99"),
        "real_off_p50": _get(real_off, "ours", "median"),
        "real_off_p99": _get(real_off, "ours", "p99"),
        "real_pass_p50": _get(real_on, "daemon_pass_ms", "median"),
        "real_pass_p99": pass_p99,
        "floor_on_p50": _get(real_on, "floor_inotify", "median"),
        "floor_off_p50": _get(real_off, "floor_inotify", "median"),
        "floor_wd_on_p50": _get(real_on, "floor_watchdog", "median"),
        "ratio_on": real_on.get("ratio_to_floor_inotify"),
        "ratio_wd_on": real_on.get("ratio_to_floor_watchdog"),
        "publish_fsync_p50": _get(prof, "wall_ms", "publish_both_fsync", "median"),
        "publish_nofsync_p50": _get(prof, "wall_ms", "publish_both_no_fsync", "median"),
        "build_p50": _get(prof, "wall_ms", "build", "median"),
        "read_changed_p50": _get(prof, "daemon_pass_ms", "read_changed", "median"),
        "build_pass_p50": _get(prof, "daemon_pass_ms", "build", "median"),
        "pass_inproc_p50": _get(prof, "daemon_pass_ms", "total", "median"),
        "slow_max": max(slow) if slow else None,
        "slow_min": min(slow) if slow else None,
        "large_on_p50": _get(large_on, "ours", "median"),
        "large_on_p99": _get(large_on, "ours", "p99"),
        "large_pass_p50": _get(large_on, "daemon_pass_ms", "median"),
        "large_pass_p99": _get(large_on, "daemon_pass_ms", "p99"),
        "large_build_p50": _get(sizes.get(1_000), "build_render_ms", "median"),
        "build_10k_p50": _get(sizes.get(10_000), "build_render_ms", "median"),
        "read_10k_p50": _get(sizes.get(10_000), "read_decode_ms", "median"),
        "burst_max": burst.get("max_lag_ms"),
        "burst_p99": _get(burst, "lag_ms", "p99"),
        "burst_p50": _get(burst, "lag_ms", "median"),
        "burst_bound": burst.get("coalescing_bound_ms"),
        "burst_cpu": burst.get("daemon_cpu_pct_of_core"),
        "burst_rate": burst.get("achieved_rate_hz"),
        "idle_pct": _get(results, "idle", "cpu_pct_of_core"),
        "dash_p50": _get(results, "dashboard", "input_to_visible_ms", "median"),
        "dash_max": _get(results, "dashboard", "input_to_visible_ms", "max"),
        "dash_refresh": _get(results, "dashboard", "refresh_s"),
    }
    out = Facts({k: _fmt(v) for k, v in values.items()})
    refresh = _get(results, "dashboard", "refresh_s")
    out["dash_refresh"] = f"{refresh:g}" if isinstance(refresh, (int, float)) else "–"
    out["slow_count"] = str(len(slow))
    out["samples"] = str(n or 0)
    return out


def render(template: str, figures: Mapping[str, str]) -> str:
    """`template` with {name} replaced by the run's figures (unknown names: a dash)."""
    fill: Callable[[Mapping[str, str]], str] = template.format_map
    return fill(figures if isinstance(figures, Facts) else Facts(figures))
