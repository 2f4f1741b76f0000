"""Writes both outputs atomically: positions first, then kpis (readers watch kpis for freshness)."""

from __future__ import annotations

from pathlib import Path

from kpi_publisher import fs
from kpi_publisher.contract import KPIS_FILE, POSITIONS_FILE
from kpi_publisher.pipeline import Outputs
from kpi_publisher.render import render


def _files(outputs: Outputs, out_dir: Path) -> list[tuple[Path, bytes]]:
    return [
        (out_dir / POSITIONS_FILE, render(outputs.positions)),
        (out_dir / KPIS_FILE, render(outputs.kpis)),
    ]


def publish(
    outputs: Outputs, out_dir: Path, *, fsync: bool = True, durability: str = fs.FAST
) -> None:
    """Replace both published files (one directory fsync for the pair), durable on return when
    `fsync` (`durability`: fs.FAST renames before syncing, fs.STRICT after); on an error
    before the renames the old files stay intact, no temp file is left, and OSError
    propagates (see fs.write_atomic_many for a failed sync after them)."""
    fs.write_atomic_many(_files(outputs, out_dir), fsync=fsync, durability=durability)


class Publisher:
    """`publish` for the daemon, which publishes again and again: the same files, order and
    syncs, through one `fs.OutputWriter` (temp files made ahead, the previous files held until
    the new ones are in place). `close()` removes its spare temp files."""

    def __init__(self) -> None:
        self._writer = fs.OutputWriter()

    def __call__(
        self, outputs: Outputs, out_dir: Path, *, fsync: bool = True, durability: str = fs.FAST
    ) -> None:
        self._writer.write(_files(outputs, out_dir), fsync=fsync, durability=durability)

    def spares(self) -> list[Path]:
        """Its live temp files (`fs.OutputWriter.spares`)."""
        return self._writer.spares()

    def close(self) -> None:
        self._writer.close()
