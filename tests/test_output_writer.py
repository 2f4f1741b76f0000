"""The daemon's writer (`fs.OutputWriter`): temp files made ahead, published files held.

Every fault of the atomic write is covered for it in tests/reliability/test_faults.py; these
pin what it adds: the spares it leaves between publishes, what it does when they were
tampered with, that the sweep of a starting daemon spares a live writer's temps, and that
`close()` leaves nothing behind.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from kpi_publisher import fs

TARGETS = ("positions_v7.json", "kpis_v7.json")


def _files(out: Path, version: int) -> list[tuple[Path, bytes]]:
    return [(out / name, f'{{"name": "{name}", "v": {version}}}'.encode()) for name in TARGETS]


def _temps(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if fs.is_temp_name(p.name))


def test_a_write_leaves_one_empty_private_spare_per_target_and_the_next_uses_it(
    tmp_path: Path,
) -> None:
    writer = fs.OutputWriter()
    writer.write(_files(tmp_path, 1), fsync=False)
    spares = _temps(tmp_path)
    assert len(spares) == 2
    for name, target in zip(spares, sorted(TARGETS, key=lambda t: f".{t}"), strict=True):
        assert name.startswith(f".{target}.{os.getpid()}.")
        info = (tmp_path / name).stat()
        assert info.st_size == 0
        assert stat.S_IMODE(info.st_mode) == fs.OUTPUT_MODE
    inode = (tmp_path / spares[0]).stat().st_ino
    writer.write(_files(tmp_path, 2), fsync=True)
    assert {(tmp_path / t).read_bytes() for t in TARGETS} == {d for _, d in _files(tmp_path, 2)}
    assert inode in {(tmp_path / t).stat().st_ino for t in TARGETS}  # the spare became a target
    assert stat.S_IMODE((tmp_path / "kpis_v7.json").stat().st_mode) == fs.OUTPUT_MODE
    assert len(_temps(tmp_path)) == 2 and set(_temps(tmp_path)).isdisjoint(spares)
    writer.close()
    assert _temps(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(TARGETS)


def test_a_swept_or_scribbled_spare_is_not_used(tmp_path: Path) -> None:
    """A spare someone removed, or wrote into, is dropped: the publish makes a fresh temp and
    the targets hold exactly the new documents."""
    writer = fs.OutputWriter()
    writer.write(_files(tmp_path, 1), fsync=False)
    first, second = _temps(tmp_path)
    (tmp_path / first).unlink()
    (tmp_path / second).write_bytes(b"junk that must never be published")
    writer.write(_files(tmp_path, 2), fsync=False)
    assert {(tmp_path / t).read_bytes() for t in TARGETS} == {d for _, d in _files(tmp_path, 2)}
    assert second not in _temps(tmp_path)
    writer.close()
    assert _temps(tmp_path) == []


def test_the_previous_files_stay_readable_through_a_held_descriptor(tmp_path: Path) -> None:
    """A reader that opened the old file reads it whole after the new one is in place."""
    writer = fs.OutputWriter()
    writer.write(_files(tmp_path, 1), fsync=False)
    with open(tmp_path / "kpis_v7.json", "rb") as old:
        writer.write(_files(tmp_path, 2), fsync=False)
        assert old.read() == _files(tmp_path, 1)[1][1]
    assert (tmp_path / "kpis_v7.json").read_bytes() == _files(tmp_path, 2)[1][1]
    writer.close()


def test_a_new_out_dir_drops_the_spares_of_the_old_one(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    writer = fs.OutputWriter()
    writer.write(_files(first, 1), fsync=False)
    writer.write(_files(second, 1), fsync=False)
    assert _temps(first) == []
    assert len(_temps(second)) == 2
    writer.close()


def test_the_sweep_removes_a_dead_writers_temps_and_keeps_the_live_spares(
    tmp_path: Path,
) -> None:
    """A daemon that prepares its out dir again (a reload, the dir replaced) sweeps what a
    killed publisher left, even one that had the same pid, and keeps its own spares; spares
    swept anyway (another process's sweep) are made again on the next write."""
    writer = fs.OutputWriter()
    writer.write(_files(tmp_path, 1), fsync=False)
    mine = _temps(tmp_path)
    assert sorted(p.name for p in writer.spares()) == mine
    dead = tmp_path / f".kpis_v7.json.{os.getpid()}.abcd0123.tmp"
    dead.write_bytes(b"{")
    assert fs.sweep_stale_temps(tmp_path, TARGETS, writer.spares()) == [dead]
    assert _temps(tmp_path) == mine
    assert sorted(fs.sweep_stale_temps(tmp_path, TARGETS)) == [tmp_path / n for n in mine]
    writer.write(_files(tmp_path, 2), fsync=False)
    assert {(tmp_path / t).read_bytes() for t in TARGETS} == {d for _, d in _files(tmp_path, 2)}
    assert len(_temps(tmp_path)) == 2
    writer.close()
