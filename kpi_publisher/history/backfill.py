"""Importing the NAV series the executor already keeps, once, into the store.

Two files beside the state dir (`<state>/../`): `nav_log.json`, a JSON list of
`{t, nav, unrealized_pnl}` (the executor caps it at 720 points), and `nav.jsonl`, one `{t, nav}`
per line. They are imported at start-up, again only when a file's size or modification time
changed, and a file that appears later is imported when it is first seen; points already held
are ignored (the store is keyed by timestamp), so importing twice adds nothing.

Reading is defensive and streamed (`logfile`): a FIFO, a device (a symlink to /dev/zero) or a
file over `MAX_BYTES` is refused without blocking or reading it, logged
`history_backfill_skipped`; a file is otherwise read once in bounded pieces, parsed as it is
read (nav.jsonl line by line, nav_log.json element by element) and its points are stored in one
transaction as they come: memory follows the longest line, never the size of a log. A file that
changed while it was read (other than by growing: an executor appending to it) is rolled back
and skipped.
Decoding is the project's tolerant one (`sources.decode_doc`, per line or list element):
NaN/Infinity tokens and lone surrogates read as null, so only those values are missing. A bad
line of nav.jsonl (one over `logfile.MAX_LINE_BYTES` too, never held whole) is skipped and
counted; nav_log.json that is not JSON (or not UTF-8), or nav.jsonl without one JSON line, is
logged `history_backfill_failed` and stores nothing. A file refused or failed is recorded as
such (never as imported): it is read again at the next start and, while running, once it
changes and is a regular file within the cap.

Retention applies as the points arrive: the store thins them (`HistoryStore.extend`, at the
back-fill's clock) after every `store.THIN_BATCH` new points, so a year of 10-second points
never sits in the store whole; the caller's own thinning afterwards, as before, ends the job.

A point is a timestamp (`parse.parse_ts`: epoch s, ms, µs or ns, or ISO-8601) no more than
`CLOCK_SKEW_S` ahead of the clock and a finite NAV > 0 (`parse.number`); other rows are skipped.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import structlog

from kpi_publisher import fs
from kpi_publisher.contract import CLOCK_SKEW_S
from kpi_publisher.history.logfile import Changed, lines, list_items, open_snapshot
from kpi_publisher.history.store import HistoryStore, Point
from kpi_publisher.parse import number, parse_ts
from kpi_publisher.sources import decode_doc

log = structlog.get_logger("hedge-kpi.history")

NAV_LOG = "nav_log.json"
NAV_JSONL = "nav.jsonl"
# A year of one point a minute is ~30 MB of nav.jsonl (~50 B a line): 512 MiB holds well over
# a decade of it, or a year of points every 3 s, while bounding what a runaway file costs in
# time and disk (it is read in pieces, never held whole; a file over the cap is refused unread,
# with one log line).
MAX_BYTES = 512 * 1024 * 1024
# What `imports` records for a file that was refused or could not be decoded, before its
# identity: never equal to an identity, so the file is read again at start or once it changes.
FAILED = "failed "
_BAD = object()  # a line that is not JSON (None is the JSON line `null`)


def sources(logs_dir: Path) -> list[Path]:
    return [logs_dir / NAV_LOG, logs_dir / NAV_JSONL]


@dataclass
class Tally:
    """What one file held besides its points (logged with them when not zero)."""

    lines: int = 0  # non-blank lines of a JSON-lines file
    bad_lines: int = 0  # of those, lines that are not JSON
    unusable_rows: int = 0  # rows without a valid timestamp and a finite NAV > 0
    future_points: int = 0  # rows stamped more than CLOCK_SKEW_S ahead of the clock

    def counts(self) -> dict[str, int]:
        named = {
            "skipped_lines": self.bad_lines,
            "unusable_rows": self.unusable_rows,
            "future_points": self.future_points,
        }
        return {name: count for name, count in named.items() if count}


def _line(line: bytes, tally: Tally) -> Any:
    """One line of nav.jsonl, or _BAD (counted) when it is not JSON. orjson reads a well-formed
    line (the full decoder's checks cost 14x more per line); what it refuses (a NaN token, a
    lone surrogate) goes to the tolerant decoder."""
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        pass
    try:
        return decode_doc(line).value
    except fs.ReadError:
        tally.bad_lines += 1
        return _BAD


def _jsonl_rows(text_lines: Iterable[bytes | None], tally: Tally) -> Iterator[Any]:
    """The rows of the lines; a line over `logfile.MAX_LINE_BYTES` (None) is a bad line."""
    for line in text_lines:
        if line is None:
            tally.lines += 1
            tally.bad_lines += 1
        elif line.strip():
            tally.lines += 1
            row = _line(line, tally)
            if row is not _BAD:
                yield row


def _list_rows(items: Iterable[bytes]) -> Iterator[Any]:
    """Each element decoded on its own by the tolerant decoder, the list level counted in the
    depth limit: the points of the whole list decoded at once (an integer past 64 bits may read
    as the float it equals rather than as an int); fs.ReadError when one cannot be decoded."""
    for item in items:
        yield decode_doc(b"[" + item + b"]", allow_list=True).value[0]


def rows_of(path: Path, pieces: Iterator[bytes], tally: Tally) -> Iterator[Any]:
    """The rows of one executor file as its pieces are read; fs.ReadError, raised when it is
    reached, when nav_log.json cannot be decoded."""
    if path.name.endswith(".jsonl"):
        return _jsonl_rows(lines(pieces), tally)
    return _list_rows(list_items(pieces))


def point_of_row(row: Any, now: float, tally: Tally) -> Point | None:
    """The point a row states, or None (counted in `tally`)."""
    if not isinstance(row, dict):
        tally.unusable_rows += 1
        return None
    t = parse_ts(row.get("t"))
    nav = number(row.get("nav"))
    if t is None or nav is None or t <= 0 or nav <= 0:
        tally.unusable_rows += 1
        return None
    if t > now + CLOCK_SKEW_S:
        tally.future_points += 1
        return None
    return Point(t, nav, number(row.get("unrealized_pnl")))


def points_of(rows: Iterable[Any], now: float, tally: Tally) -> Iterator[Point]:
    for row in rows:
        point = point_of_row(row, now, tally)
        if point is not None:
            yield point


def _worth_reading(known: str | None, identity: str, info: os.stat_result) -> bool:
    """While running: a file never seen before, or one that failed, changed since and could
    now be read (a regular file within the cap; a refused FIFO or over-cap file waits for the
    next start, so it costs one log line per start, not one per change)."""
    if known is None:
        return True
    return (
        known.startswith(FAILED)
        and known != FAILED + identity
        and stat.S_ISREG(info.st_mode)
        and info.st_size <= MAX_BYTES
    )


def _skip(store: HistoryStore, path: Path, identity: str, event: str, reason: str) -> None:
    log.warning(event, file=str(path), reason=reason)
    store.mark_imported(str(path), FAILED + identity)


def backfill(
    store: HistoryStore,
    logs_dir: Path,
    *,
    now: float | None = None,
    new_files_only: bool = False,
) -> int:
    """Import every changed executor NAV file (with `new_files_only`, only a file never
    imported before, or one that failed and changed since); returns how many points were new.
    `now` (epoch s, default the clock) is when a point starts to lie in the future, and the
    clock retention thins a long import by."""
    clock = time.time() if now is None else now
    added = 0
    for path in sources(logs_dir):
        try:
            info = path.stat()
        except FileNotFoundError:
            continue
        except OSError as exc:  # a symlink loop, a directory we may not search
            if not new_files_only:  # once per start, not once per LATE_S
                log.warning("history_backfill_skipped", file=str(path), reason=str(exc))
            continue
        identity = f"{info.st_size}:{info.st_mtime_ns}"
        known = store.imported(str(path))
        if known == identity or (new_files_only and not _worth_reading(known, identity, info)):
            continue
        try:
            snapshot = open_snapshot(path, max_bytes=MAX_BYTES)
        except FileNotFoundError:
            continue
        except fs.ReadError as exc:  # a FIFO, a device, over the cap, unreadable
            _skip(store, path, identity, "history_backfill_skipped", exc.reason)
            continue
        with snapshot:
            identity = snapshot.identity  # what is read
            tally = Tally()
            points = points_of(rows_of(path, snapshot.pieces(), tally), clock, tally)
            try:
                new = store.extend(points, thin_at=clock)  # rolled back on any exception
            except Changed as exc:
                _skip(store, path, identity, "history_backfill_skipped", exc.reason)
                continue
            except fs.ReadError as exc:
                _skip(store, path, identity, "history_backfill_failed", exc.reason)
                continue
        if store.paused:
            break
        if tally.lines and tally.bad_lines == tally.lines:
            reason = f"none of its {tally.lines} lines is JSON"
            _skip(store, path, identity, "history_backfill_failed", reason)
            continue
        store.mark_imported(str(path), identity)
        added += new
        log.info("history_backfilled", file=str(path), points=new, **tally.counts())
    return added
