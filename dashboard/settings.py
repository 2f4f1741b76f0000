"""Where the dashboard reads from and how it judges freshness, resolved once per process.

Paths come from the command line after `--` (`streamlit run dashboard/app.py -- --out-dir DIR`)
or the environment (KPI_OUT_DIR, KPI_STATE_DIR, KPI_HEARTBEAT_S, KPI_CONFIG_FILE), through the
publisher's own resolver, so both sides agree on the publish dir and the heartbeat. The browser
never chooses a path.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from kpi_publisher import config
from kpi_publisher.contract import down_after_s

DEFAULT_PORT = 8501
DEFAULT_ADDRESS = "127.0.0.1"
REFRESH_S = 1.0  # status tick: a published change shows within about a second


@dataclass(frozen=True)
class DashboardSettings:
    """`out_dir` holds the published files; `heartbeat_s` is the publisher's heartbeat (s)."""

    out_dir: Path
    heartbeat_s: float
    max_bytes: int

    @property
    def down_after_s(self) -> float:
        """Age of kpis_v7.json (s) beyond which the publisher counts as down."""
        return down_after_s(self.heartbeat_s)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dashboard", allow_abbrev=False, add_help=False)
    parser.add_argument("--out-dir", dest="out_dir")
    parser.add_argument("--state-dir", dest="state_dir")
    parser.add_argument("--heartbeat-s", dest="heartbeat_s")
    parser.add_argument("--config", dest="config_file")
    return parser


def resolve(argv: Sequence[str], environ: Mapping[str, str]) -> DashboardSettings:
    """CLI > KPI_* environment > config file > defaults; raises config.ConfigError when unusable.

    Unknown arguments are ignored: under `streamlit run` and AppTest the process argv may carry
    options that are not ours.
    """
    known, _ = _parser().parse_known_args(list(argv))
    settings = config.resolve(vars(known), environ)
    return DashboardSettings(
        out_dir=settings.publish_dir,
        heartbeat_s=settings.heartbeat_s,
        max_bytes=settings.max_input_bytes,
    )
