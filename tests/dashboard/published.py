"""Fixture published outputs (tests/dashboard/fixtures/<book>/) written into an out dir.

Each book is a pair kpis_v7.json + positions_v7.json in the shapes of CONTRACT sections 4 and
5. `publish` restamps the build time, so a test decides how old the publish looks.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from pathlib import Path
from typing import Any

import orjson

from kpi_publisher import fs

FIXTURES = Path(__file__).parent / "fixtures"
BOOKS = ("full", "nulls", "zeros", "stale")
# What the overview cards show for the "full" book, formatted by kpi_publisher.fmt.
FULL_CARDS = {
    "NAV (USD)": "10,234.50",
    "NAV (ZAR)": "189,338.25",
    "AUM (USD)": "16,365.80",
    "AUM (ZAR)": "302,767.30",
    "Drawdown": "1.14%",
    "ATR ratio": "1.27",
    "Router fill / fallback": "62.5% / 12.5%",
    "Slippage q50": "1.50 bps",
    "Fee / PnL": "18.5%",
    "DD state": "cautious",
    "Exposure": "131.71% / 28.77%",
    "VaR": "4.56%",
}


def load(book: str, name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / book / name).read_text(encoding="utf-8"))


def iso_z(epoch_s: float) -> str:
    return dt.datetime.fromtimestamp(epoch_s, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def restamp(doc: dict[str, Any], generated_at: float) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    out["generated_at"] = generated_at
    out["updated_at"] = iso_z(generated_at)
    if "ts" in out:
        out["ts"] = generated_at
    return out


def write_doc(out_dir: Path, name: str, doc: dict[str, Any]) -> None:
    """Publish one document the way the publisher does: sorted keys, atomic replace."""
    fs.write_atomic(out_dir / name, orjson.dumps(doc, option=orjson.OPT_SORT_KEYS), fsync=False)


def publish(out_dir: Path, book: str, generated_at: float) -> dict[str, dict[str, Any]]:
    """Write the book's two files into `out_dir`, built at `generated_at`; returns them."""
    docs = {}
    for name in ("positions_v7.json", "kpis_v7.json"):
        docs[name] = restamp(load(book, name), generated_at)
        write_doc(out_dir, name, docs[name])
    return docs
