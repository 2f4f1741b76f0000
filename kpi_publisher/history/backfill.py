"""Importing the NAV series the executor already keeps, once, into the store.

Two files beside the state dir (`<state>/../`): `nav_log.json`, a JSON list of
`{t, nav, unrealized_pnl}` (the executor caps it at 720 points), and `nav.jsonl`, one `{t, nav}`
per line. They are imported at start-up, again only when a file's size or modification time
changed, and a file that appears later is imported when it is first seen; points already held
are ignored (the store is keyed by timestamp), so importing twice adds nothing.
Unreadable lines and points without a finite positive NAV or timestamp are skipped.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import structlog

from kpi_publisher.history.store import HistoryStore, Point

log = structlog.get_logger("hedge-kpi.history")

NAV_LOG = "nav_log.json"
NAV_JSONL = "nav.jsonl"
MAX_BYTES = 256 * 1024 * 1024


def sources(logs_dir: Path) -> list[Path]:
    return [logs_dir / NAV_LOG, logs_dir / NAV_JSONL]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    out = float(value)
    return out if math.isfinite(out) else None


def _point(row: Any) -> Point | None:
    if not isinstance(row, dict):
        return None
    t = _number(row.get("t"))
    nav = _number(row.get("nav"))
    if t is None or nav is None or t <= 0 or nav <= 0:
        return None
    return Point(t, nav, _number(row.get("unrealized_pnl")))


def read_points(path: Path) -> Iterator[Point]:
    """The usable points of one executor file (JSON list or JSON lines)."""
    data = path.read_bytes()
    if path.name.endswith(".jsonl"):
        rows: list[Any] = []
        for line in data.splitlines():
            try:
                rows.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                continue
    else:
        try:
            loaded = orjson.loads(data)
        except orjson.JSONDecodeError:
            return
        rows = loaded if isinstance(loaded, list) else []
    for row in rows:
        point = _point(row)
        if point is not None:
            yield point


def backfill(store: HistoryStore, logs_dir: Path, *, new_files_only: bool = False) -> int:
    """Import every changed executor NAV file (with `new_files_only`, only a file never
    imported before: one that appeared after start-up); returns how many points were new."""
    added = 0
    for path in sources(logs_dir):
        try:
            info = path.stat()
            if info.st_size > MAX_BYTES:
                log.warning("history_backfill_skipped", file=str(path), reason="too large")
                continue
            identity = f"{info.st_size}:{info.st_mtime_ns}"
            known = store.imported(str(path))
            if known == identity or (new_files_only and known is not None):
                continue
            new = store.extend(read_points(path))
        except FileNotFoundError:
            continue
        except OSError as exc:
            log.warning("history_backfill_failed", file=str(path), reason=str(exc))
            continue
        if store.paused:
            break
        store.mark_imported(str(path), identity)
        added += new
        log.info("history_backfilled", file=str(path), points=new)
    return added
