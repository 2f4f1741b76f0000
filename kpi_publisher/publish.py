"""Writes both outputs atomically: positions first, then kpis (readers watch kpis for freshness)."""

from __future__ import annotations

from pathlib import Path

from kpi_publisher import fs
from kpi_publisher.pipeline import Outputs
from kpi_publisher.render import render

KPIS_FILE = "kpis_v7.json"
POSITIONS_FILE = "positions_v7.json"


def publish(outputs: Outputs, out_dir: Path, *, fsync: bool = True) -> None:
    """Replace both published files; on error the old files stay intact and OSError propagates."""
    fs.write_atomic(out_dir / POSITIONS_FILE, render(outputs.positions), fsync=fsync)
    fs.write_atomic(out_dir / KPIS_FILE, render(outputs.kpis), fsync=fsync)
