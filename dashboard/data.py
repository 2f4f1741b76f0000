"""The dashboard's only file reads: kpis_v7.json, positions_v7.json and nav_history_v7.json,
cached on their stat.

A file is re-read only when its (inode, mtime_ns, size) changed, so a 1 s refresh costs one
`stat` per file when nothing was published. The last good document of each file is kept: a
missing, torn or invalid file never blanks the screen, it shows the last good document with a
"stale read" flag (the freshness badges say why).

A document is "invalid" unless it is a JSON object carrying its file's `schema` id;
nav_history_v7.json must also pass its whole JSON Schema (`FULL_SCHEMAS`).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from kpi_publisher import fs, schemas
from kpi_publisher.contract import (
    INVALID,
    KPIS_FILE,
    MISSING,
    NAV_HISTORY_FILE,
    NAV_HISTORY_SCHEMA,
    OK,
    POSITIONS_FILE,
    SCHEMA_IDS,
    schema_name,
)

# The `schema` id each published file must carry.
SCHEMAS: Mapping[str, str] = {**SCHEMA_IDS, NAV_HISTORY_FILE: NAV_HISTORY_SCHEMA}
# Files validated against their whole JSON Schema on every new version (~40 ms for 4 x 1000
# points). kpis_v7 and positions_v7 are read field by field with parse's tolerant readers, so
# one bad field shows as missing on its card alone; the history's columns are drawn whole, so a
# curve that breaks its schema is a publisher fault to badge, not to plot.
FULL_SCHEMAS: Mapping[str, str] = {NAV_HISTORY_FILE: schema_name(NAV_HISTORY_FILE)}
ERROR_CHARS = 300  # a schema error quotes the offending value: cut it to this length


@dataclass(frozen=True)
class Published:
    """One published file as the dashboard sees it.

    `status` is about the file on disk now (ok | missing | invalid, reason in `error`); `doc` is
    the current document when ok, else the last good one (then `stale_read` is True), else None.
    """

    name: str
    status: str
    doc: Mapping[str, Any] | None = None
    error: str | None = None
    stale_read: bool = False
    stamp: fs.FileStamp | None = None


def parse_document(name: str, raw: bytes) -> Mapping[str, Any]:
    """Bytes -> the published object; raises fs.ReadError when it is not a `name` document."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise fs.ReadError(f"not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise fs.ReadError(f"top level is {type(doc).__name__}, expected an object")
    expected = SCHEMAS.get(name)
    if expected is not None and doc.get("schema") != expected:
        raise fs.ReadError(f"schema is {_cut(repr(doc.get('schema')))}, expected {expected!r}")
    full = FULL_SCHEMAS.get(name)
    reason = schema_error(full, doc) if full is not None else None
    if reason is not None:
        raise fs.ReadError(reason)
    return doc


def schema_error(name: str, doc: Any) -> str | None:
    """Why `doc` fails the shipped JSON Schema `name` ("nav_history_v7"), or None when it fits."""
    reason = schemas.violation(name, doc)
    return None if reason is None else _cut(f"schema: {reason}")


def _cut(text: str) -> str:
    return text if len(text) <= ERROR_CHARS else text[: ERROR_CHARS - 1] + "…"


class PublishedStore:
    """Reads the published files of one directory; shared by every browser session (thread-safe).

    Documents handed out are shared: callers must not mutate them.
    """

    def __init__(self, out_dir: Path, *, max_bytes: int = 16 * 1024 * 1024) -> None:
        self.out_dir = out_dir
        self._max_bytes = max_bytes
        self._lock = threading.Lock()
        self._current: dict[str, Published] = {}
        self._good: dict[str, Published] = {}

    def read(self, name: str) -> Published:
        """The published file `name` (a key of SCHEMAS) as it stands now."""
        path = self.out_dir / name
        current = fs.stamp(path)
        with self._lock:
            cached = self._current.get(name)
            if cached is not None and current is not None and cached.stamp == current:
                return cached
            result = self._load(name, path)
            if result.status == OK:
                self._good[name] = result
                self._current[name] = result
                return result
            # Not cached by stamp: a torn in-place write is retried on the next refresh.
            self._current.pop(name, None)
            good = self._good.get(name)
            if good is not None:
                return Published(name, result.status, good.doc, result.error, True, good.stamp)
            return result

    def _load(self, name: str, path: Path) -> Published:
        try:
            raw, file_stamp = fs.read_bytes(path, max_bytes=self._max_bytes)
            doc = parse_document(name, raw)
        except FileNotFoundError:
            return Published(name, MISSING, error=f"{name} not found in {self.out_dir}")
        except fs.ReadError as exc:
            return Published(name, INVALID, error=f"{name}: {exc.reason}")
        except OSError as exc:
            return Published(name, INVALID, error=f"{name}: {exc.strerror or exc}")
        return Published(name, OK, doc, stamp=file_stamp)

    def kpis(self) -> Published:
        return self.read(KPIS_FILE)

    def positions(self) -> Published:
        return self.read(POSITIONS_FILE)

    def snapshot(self) -> Snapshot:
        """Both files of one publish: read again once when their `generated_at` differ.

        A publish renames positions_v7.json, then kpis_v7.json; a reader between the two
        renames sees two publishes. Still apart after one more read means it is not that
        window (a stale or torn file, a back-to-back publish): `paired` is False then.
        """
        kpis, positions = self.kpis(), self.positions()
        if not _same_publish(kpis, positions):
            kpis, positions = self.kpis(), self.positions()
        return Snapshot(kpis, positions, _same_publish(kpis, positions))


@dataclass(frozen=True)
class Snapshot:
    """kpis_v7.json and positions_v7.json as shown together; `paired` when of one publish
    (same `generated_at`, or one of them has no document to compare)."""

    kpis: Published
    positions: Published
    paired: bool

    @property
    def key(self) -> tuple[object, object]:
        """Changes whenever either file shown changes (see `stamp_key`)."""
        return stamp_key(self.kpis), stamp_key(self.positions)


def stamp_key(published: Published) -> tuple[int, int, int] | None:
    """The stamp of the document `published` holds, as a hashable key (None without one)."""
    stamp = published.stamp
    return None if stamp is None else (stamp.ino, stamp.mtime_ns, stamp.size)


def _same_publish(kpis: Published, positions: Published) -> bool:
    if kpis.doc is None or positions.doc is None:
        return True
    return bool(kpis.doc.get("generated_at") == positions.doc.get("generated_at"))
