"""The real NAV series, read from the copies in the repo (CI needs nothing beside the clone).

The month-long `nav.jsonl` (22,514 points) ships with the demo as
`execution/data/nav_month.jsonl.gz`; the recent `nav_log.json` (720 points) is among the
upstream copies in `tests/fixtures/upstream`. Both decompress to the originals byte for byte
(`SHA256` below; `test_real_series.py` checks them against `../shared` when it is present).
"""

from __future__ import annotations

import gzip
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MONTH_GZ = REPO / "execution" / "data" / "nav_month.jsonl.gz"
RECENT_NAV_LOG_GZ = (
    REPO / "tests" / "fixtures" / "upstream" / "54b8fb93" / "logs" / "nav_log.json.gz"
)
SHARED = REPO.parent / "shared" / "upstream_data"
ORIGINALS = {
    MONTH_GZ: (
        "02db1d73/logs/nav.jsonl",
        "83ad8667199b6725b0aab7ccf68968a51776781e3f29f5e29f0ef60df112f897",
    ),
}


def month_bytes() -> bytes:
    """The month-long nav.jsonl, as the executor wrote it."""
    return gzip.decompress(MONTH_GZ.read_bytes())


def month_text() -> str:
    return month_bytes().decode("utf-8")


def write_month(dest: Path) -> Path:
    """Write the month-long series to `dest` (a nav.jsonl path); returns it."""
    dest.write_bytes(month_bytes())
    return dest


def write_recent_nav_log(dest: Path) -> Path:
    """Write the recent nav_log.json (720 points) to `dest`; returns it."""
    dest.write_bytes(gzip.decompress(RECENT_NAV_LOG_GZ.read_bytes()))
    return dest
