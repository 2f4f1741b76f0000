"""The executor's tree under one root: `logs/state` (its state files, where the publisher
publishes by default), `logs/cache` (the price/FX cache) and `config` (the off-exchange
holdings). The publisher's default input paths, the demo executor, the demo, the benchmarks
and the tests all lay out or find files through this one description.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

STATE_DIR = Path("logs", "state")
CACHE_DIR = Path("logs", "cache")
CONFIG_DIR = Path("config")
FX_FILE = "coingecko_cache.json"
HOLDINGS_FILE = "offexchange_holdings.json"


@dataclass(frozen=True)
class ExecutorRoot:
    """Paths of the executor's tree under `root`."""

    root: Path

    @property
    def logs(self) -> Path:
        return self.root / STATE_DIR.parent

    @property
    def state(self) -> Path:
        return self.root / STATE_DIR

    @property
    def cache(self) -> Path:
        return self.root / CACHE_DIR

    @property
    def config(self) -> Path:
        return self.root / CONFIG_DIR

    @property
    def fx(self) -> Path:
        return self.cache / FX_FILE

    @property
    def holdings(self) -> Path:
        return self.config / HOLDINGS_FILE


def fx_path_beside(state_dir: Path) -> Path:
    """The price/FX cache of the tree a state dir belongs to: `../cache/coingecko_cache.json`."""
    return state_dir.parent / CACHE_DIR.name / FX_FILE


def holdings_path_above(state_dir: Path) -> Path:
    """The holdings config of the tree a state dir belongs to: `../../config/...`."""
    return state_dir.parent.parent / CONFIG_DIR / HOLDINGS_FILE
