"""Input sources: where each lives, how its bytes become JSON, and the last good copy.

A `SourceReader` is the only stateful piece between the filesystem and the pure pipeline:
it re-parses a file only when its stamp changed, and keeps the last good content of every
source so that a torn or malformed file never blanks good data (contract rule 7).
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import orjson

from kpi_publisher import fs
from kpi_publisher.config import Settings

SOURCE_NAMES: tuple[str, ...] = (
    "nav_state",
    "nav",
    "risk",
    "router",
    "positions",
    "fx",
    "holdings",
)
STATE_FILES: Mapping[str, tuple[str, ...]] = {
    "nav_state": ("nav_state.json",),
    "nav": ("nav.json",),
    "risk": ("risk_snapshot.json",),
    "router": ("router_health.json",),
    "positions": ("positions_state.json", "positions.json"),
}
OUTPUT_FILES: tuple[str, ...] = ("kpis_v7.json", "positions_v7.json")

OK = "ok"
MISSING = "missing"
INVALID = "invalid"


@dataclass(frozen=True)
class SourceRead:
    """One source as the pipeline sees it. `data` is the last good content when invalid."""

    name: str
    status: str
    data: Any = None
    error: str | None = None
    path: Path | None = None
    stamp: fs.FileStamp | None = None
    version: int = 0  # bumped on every successful parse: new content even when the stamp is not


def source_paths(settings: Settings) -> dict[str, tuple[Path, ...]]:
    """Candidate paths per source, in preference order."""
    paths: dict[str, tuple[Path, ...]] = {
        name: tuple(settings.state_dir / f for f in files) for name, files in STATE_FILES.items()
    }
    paths["fx"] = (settings.resolved_fx_path,)
    paths["holdings"] = (settings.resolved_holdings_path,)
    return paths


def _nan_to_none(_: str) -> None:
    return None


def _scrub(value: Any) -> Any:
    """Replace float NaN/Infinity anywhere in a decoded document with None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    return value


def decode(raw: bytes, *, allow_list: bool = False) -> Any:
    """Bytes -> JSON value; raises fs.ReadError with the reason when the file is unusable.

    NaN/Infinity tokens (stdlib json writes them by default) read as null; the file stays valid.
    """
    if not raw.strip():
        raise fs.ReadError("empty file")
    if raw.startswith(b"\xef\xbb\xbf"):
        raise fs.ReadError("starts with a UTF-8 byte-order mark")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as fast_exc:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise fs.ReadError(f"not UTF-8 (byte {exc.start})") from exc
        try:
            value = json.loads(text, parse_constant=_nan_to_none)
        except (ValueError, RecursionError):
            raise fs.ReadError(f"not valid JSON: {fast_exc}") from None
        value = _scrub(value)
    if isinstance(value, dict) or (allow_list and isinstance(value, list)):
        return value
    expected = "an object or a list" if allow_list else "an object"
    raise fs.ReadError(f"top level is {type(value).__name__}, expected {expected}")


class SourceReader:
    """Reads every source, re-parsing only files whose stamp changed, keeping last good data."""

    def __init__(self, settings: Settings) -> None:
        self._paths = source_paths(settings)
        self._max_bytes = settings.max_input_bytes
        self._root = settings.state_dir
        self._last: dict[Path, SourceRead] = {}
        self._good: dict[str, SourceRead] = {}
        self._versions = itertools.count(1)
        self._digests: dict[Path, int] = {}
        self._verify: set[Path] = set()

    @property
    def paths(self) -> Mapping[str, tuple[Path, ...]]:
        return self._paths

    def _read_file(self, name: str, path: Path) -> SourceRead:
        current = fs.stamp(path)
        cached = self._last.get(path)
        verify = path in self._verify
        self._verify.discard(path)
        if cached is not None and current is not None and cached.stamp == current and not verify:
            return cached
        root = self._root if path.parent == self._root else None
        try:
            raw, file_stamp = fs.read_bytes(path, max_bytes=self._max_bytes, root=root)
            digest = hash(raw)
            if cached is not None and cached.stamp == file_stamp and self._digests[path] == digest:
                return cached  # an event, but the same bytes: nothing new to parse or publish
            data = decode(raw, allow_list=(name == "positions"))
        except FileNotFoundError:
            result = SourceRead(name, MISSING, path=path)
        except fs.ReadError as exc:
            result = SourceRead(name, INVALID, error=f"{path.name}: {exc.reason}", path=path)
        except OSError as exc:
            result = SourceRead(
                name, INVALID, error=f"{path.name}: {exc.strerror or exc}", path=path
            )
        else:
            result = SourceRead(
                name, OK, data=data, path=path, stamp=file_stamp, version=next(self._versions)
            )
            self._digests[path] = digest
        # Invalid reads are not cached by stamp: a torn in-place write is retried next pass.
        if result.status == OK:
            self._last[path] = result
        else:
            self._last.pop(path, None)
        return result

    def read(self, name: str) -> SourceRead:
        """The source as it stands now; an invalid file yields the last good content, if any.

        Later candidates (positions.json after positions_state.json) are tried only while no
        earlier one gave data and there is no last good content (contract rule 7).
        """
        failures: list[SourceRead] = []
        for path in self._paths[name]:
            result = self._read_file(name, path)
            if result.status == OK:
                self._good[name] = result
                broken = [f.error for f in failures if f.status == INVALID]
                if broken:
                    # The fallback's data is good, but the operator must see the primary is not.
                    return replace(result, error=f"{broken[0]}; using {path.name}")
                return result
            good = self._good.get(name)
            if result.status == INVALID and good is not None:
                return replace(good, status=INVALID, error=result.error)
            failures.append(result)
        invalid = [r for r in failures if r.status == INVALID]
        return invalid[0] if invalid else failures[0]

    def invalidate(self, paths: Iterable[Path]) -> None:
        """Re-read `paths` on the next read even if their stamp looks unchanged (an in-place
        rewrite of the same size within one mtime tick); unchanged bytes keep the old parse."""
        self._verify.update(paths)

    def read_all(self) -> dict[str, SourceRead]:
        return {name: self.read(name) for name in SOURCE_NAMES}

    def stamps(self) -> dict[Path, fs.FileStamp | None]:
        """Current stamps of every candidate path, for the periodic rescan."""
        return {p: fs.stamp(p) for paths in self._paths.values() for p in paths}


def from_values(values: Mapping[str, Any]) -> dict[str, SourceRead]:
    """Sources for in-process callers that already hold parsed snapshots (None = missing)."""
    return {
        name: SourceRead(name, MISSING)
        if values.get(name) is None
        else SourceRead(name, OK, values[name])
        for name in SOURCE_NAMES
    }
