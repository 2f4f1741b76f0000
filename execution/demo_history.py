"""The demo's NAV history: the real month-long NAV series written once as `<root>/logs/nav.jsonl`
(the executor's NAV JSONL), so the publisher's back-fill fills the history charts on first open.

The series is the executor's `logs/nav.jsonl` @ 02db1d73 (22,514 points, 2025-09-17 ..
2025-10-16), shipped gzipped byte for byte as `data/nav_month.jsonl.gz`. It is moved in time to
end `gap_s` before the replay's first NAV and scaled so that its last NAV is that NAV: returns,
drawdowns and gaps are the real ones, USD amounts are scaled. An existing nav.jsonl is kept.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from typing import Any

from execution import demo_market

MONTH_FILE = "nav_month.jsonl.gz"
NAV_JSONL = "nav.jsonl"


def month_series() -> list[dict[str, Any]]:
    """The real series as shipped: [{t, nav}, ...] in file order."""
    text = gzip.decompress(demo_market.data_bytes(MONTH_FILE)).decode("utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def moved(rows: list[dict[str, Any]], end_t: float, end_nav: float) -> list[dict[str, float]]:
    """`rows` shifted to end at `end_t` and scaled to end at `end_nav`."""
    last = rows[-1]
    shift, scale = end_t - float(last["t"]), end_nav / float(last["nav"])
    return [{"t": float(r["t"]) + shift, "nav": float(r["nav"]) * scale} for r in rows]


def install_month(logs_dir: Path, first_t: float, first_nav: float, gap_s: float = 60.0) -> bool:
    """Write `<logs_dir>/nav.jsonl` unless it exists; True when written."""
    target = logs_dir / NAV_JSONL
    if target.exists():
        return False
    rows = moved(month_series(), first_t - gap_s, first_nav)
    temp = target.with_name(f".{NAV_JSONL}.{os.getpid()}.tmp")
    temp.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    os.replace(temp, target)
    return True
