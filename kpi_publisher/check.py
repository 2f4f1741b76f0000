"""`hedge-kpi check`: are the published files valid and fresh? For monitoring and supervisor
event listeners.

Each published file is read with the inputs' defensive reader (regular files only, never
blocking on a FIFO, under the size cap), parsed and validated against its JSON Schema; each
must also be younger than `--max-age-s` (default: three heartbeats, the dashboard's "publisher
down" rule) and not stamped more than CLOCK_SKEW_S ahead of the clock. Both are read as one
publish: read again once when their `generated_at` differ. Exit 0 when all is well, 6
(CHECK_INVALID) when a file is missing, unreadable, unparseable or fails its schema, when
kpis_v7.json reports every state-dir source `missing` (a publisher reading the wrong state dir),
or when the two files are of two publishes (still apart when read again), else 5 (CHECK_STALE)
when a file is too old or from the future. One structlog line per file, then a summary line
`check`.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from kpi_publisher import fs, logs, schemas
from kpi_publisher.cli import add_path_options
from kpi_publisher.config import ConfigError, resolve
from kpi_publisher.contract import (
    CLOCK_SKEW_S,
    INVALID,
    KPIS_FILE,
    MISSING,
    NAV_HISTORY_FILE,
    OUTPUT_FILES,
    POSITIONS_FILE,
    STALE,
    ExitCode,
    down_after_s,
    publish_age_s,
)
from kpi_publisher.contract import OK as VALID
from kpi_publisher.contract import not_ok as sources_not_ok
from kpi_publisher.contract import schema_name as schema_of
from kpi_publisher.parse import number
from kpi_publisher.sources import STATE_FILES, TOO_DEEP, too_deep

# Published file -> its JSON Schema's name.
FILES: Mapping[str, str] = {name: schema_of(name) for name in OUTPUT_FILES}
# The verdict on both files together: of one publish, or not (`check_outputs`).
PAIR = f"{KPIS_FILE} + {POSITIONS_FILE}"
ALL_MISSING = (
    "every state-dir source is missing: the publisher reads nothing (is its --state-dir right?)"
)


@dataclass(frozen=True)
class FileCheck:
    """The verdict on one published file; `age_s` is now - generated_at (None if unknown)."""

    file: str
    status: str  # ok | stale | invalid
    age_s: float | None = None
    error: str | None = None
    sources_not_ok: Mapping[str, str] | None = None
    generated_at: float | None = None


def check_document(raw: bytes, schema_name: str) -> tuple[Any, str | None]:
    """(document, None) when `raw` parses and fits its schema, else (None | doc, reason)."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return None, f"not valid JSON: {exc}"
    if too_deep(doc):  # no published file nests past a few levels
        return doc, f"schema: (top level): {TOO_DEEP}"
    reason = schemas.violation(schema_name, doc)
    return doc, None if reason is None else f"schema: {reason}"


def _all_sources_missing(doc: Any) -> bool:
    """True when every source that lives in the state dir is reported `missing`.

    That is what a publisher pointed at a wrong (mistyped, empty) state dir publishes, even
    when the FX cache or the holdings file, configured by their own paths, are found.
    """
    sources = doc.get("sources") if isinstance(doc, dict) else None
    if not isinstance(sources, dict):
        return False
    listed = [sources[name] for name in STATE_FILES if name in sources]
    return bool(listed) and all(isinstance(e, dict) and e.get("status") == MISSING for e in listed)


def _read(path: Path, max_bytes: int) -> bytes | FileCheck:
    """The file's bytes, or the verdict on a file that cannot be read."""
    try:
        raw, _ = fs.read_bytes(path, max_bytes=max_bytes)
    except FileNotFoundError:
        return FileCheck(path.name, INVALID, error="missing")
    except fs.ReadError as exc:
        return FileCheck(path.name, INVALID, error=f"cannot read: {exc.reason}")
    except OSError as exc:
        return FileCheck(path.name, INVALID, error=f"cannot read: {exc.strerror or exc}")
    return raw


def check_file(
    path: Path, schema_name: str, now: float, max_age_s: float, *, max_bytes: int
) -> FileCheck:
    """Validate one published file and judge its freshness at `now` (epoch seconds).

    The file is read with `fs.read_bytes`: a FIFO, a device or a directory at the path is
    refused without blocking, and a file over `max_bytes` is refused without being read.
    """
    raw = _read(path, max_bytes)
    if isinstance(raw, FileCheck):
        return raw
    return _judge(path.name, raw, schema_name, now, max_age_s)


def _judge(name: str, raw: bytes, schema_name: str, now: float, max_age_s: float) -> FileCheck:
    doc, error = check_document(raw, schema_name)
    age = publish_age_s(doc, now) if isinstance(doc, dict) else None
    generated = number(doc.get("generated_at")) if isinstance(doc, dict) else None
    ahead = None if generated is None else generated - now
    not_ok = None
    if isinstance(doc, dict) and isinstance(doc.get("sources"), dict):
        # The log lists every source that is not ok, an older era's missing one included.
        not_ok = sources_not_ok(doc, include_expected=True)
    if error is None and schema_name == FILES[KPIS_FILE] and _all_sources_missing(doc):
        error = ALL_MISSING
    if error is not None:
        return FileCheck(name, INVALID, age, error, not_ok, generated)
    if age is None:
        if ahead is None:
            why = "no generated_at"
        else:
            why = f"generated_at {ahead:.1f} s ahead of the clock (skew limit {CLOCK_SKEW_S:.0f} s)"
        return FileCheck(name, STALE, None, why, not_ok, generated)
    if age > max_age_s:
        return FileCheck(
            name, STALE, age, f"{age:.1f} s old, limit {max_age_s:.1f} s", not_ok, generated
        )
    return FileCheck(name, VALID, age, None, not_ok, generated)


def _generated_at(raw: bytes | FileCheck) -> Any:
    """The `generated_at` of a readable JSON object, else None (nothing to pair by)."""
    if isinstance(raw, FileCheck):
        return None
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return doc.get("generated_at") if isinstance(doc, dict) else None


def _read_pair(out_dir: Path, max_bytes: int) -> list[bytes | FileCheck]:
    return [_read(out_dir / name, max_bytes) for name in FILES]


def _paired(raws: list[bytes | FileCheck]) -> bool:
    stamps = [_generated_at(raw) for raw in raws]
    return None in stamps or all(stamp == stamps[0] for stamp in stamps)


def check_outputs(
    out_dir: Path, now: float, max_age_s: float, *, max_bytes: int
) -> list[FileCheck]:
    """Both published files, judged as one publish: read again once when their `generated_at`
    differ (a read between a publish's two renames). Still apart, they are two publishes (a
    publisher that stopped between its renames, another writer): `PAIR` is invalid then."""
    raws = _read_pair(out_dir, max_bytes)
    if not _paired(raws):
        raws = _read_pair(out_dir, max_bytes)
    results = [
        raw if isinstance(raw, FileCheck) else _judge(name, raw, schema, now, max_age_s)
        for raw, (name, schema) in zip(raws, FILES.items(), strict=True)
    ]
    if not _paired(raws):
        stamps = " and ".join(repr(_generated_at(raw)) for raw in raws)
        why = f"{PAIR} are of two publishes (generated_at {stamps}), also when read again"
        results.append(FileCheck(PAIR, INVALID, error=why))
    return results


def check_optional(path: Path, schema_name: str, *, max_bytes: int) -> FileCheck | None:
    """A file only some publishers write (nav_history_v7.json, with a history): absent is
    fine (None); present, it must fit its schema. Its age is not judged: it is rewritten only
    when the NAV history gains a point."""
    try:
        raw, _ = fs.read_bytes(path, max_bytes=max_bytes)
    except FileNotFoundError:
        return None
    except fs.ReadError as exc:
        return FileCheck(path.name, INVALID, error=f"cannot read: {exc.reason}")
    except OSError as exc:
        return FileCheck(path.name, INVALID, error=f"cannot read: {exc.strerror or exc}")
    _, error = check_document(raw, schema_name)
    return FileCheck(path.name, VALID if error is None else INVALID, None, error)


def exit_code(results: list[FileCheck]) -> ExitCode:
    """Invalid beats stale beats ok."""
    statuses = {r.status for r in results}
    if INVALID in statuses:
        return ExitCode.CHECK_INVALID
    if STALE in statuses:
        return ExitCode.CHECK_STALE
    return ExitCode.OK


def _finite(text: str) -> float:
    """argparse type: a finite float (nan and inf are usage errors, exit 2)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be finite, got {text!r}")
    return value


def _max_age(text: str) -> float:
    """argparse type: a finite number of seconds >= 0 (0: only a publish stamped now is fresh)."""
    value = _finite(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return value


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "check",
        help="validate the published files and their freshness (exit 5 stale, 6 invalid)",
        description="Validate kpis_v7.json and positions_v7.json against their schemas and "
        "report how old they are. Exit 0 ok; 5 stale (older than --max-age-s, or generated_at "
        f"more than {CLOCK_SKEW_S:.0f} s in the future); 6 missing, unreadable (a FIFO or other "
        "non-regular file, over the size cap) or invalid, or kpis_v7.json reports every state-dir "
        "source missing (a publisher pointed at the wrong state dir); 2 bad arguments or config.",
    )
    add_path_options(parser)
    parser.add_argument(
        "--max-age-s",
        type=_max_age,
        help="oldest acceptable generated_at, seconds >= 0 (default: 3 heartbeats)",
    )
    parser.add_argument("--now", type=_finite, help="judge freshness at this epoch (default: now)")
    parser.add_argument("--log-format", choices=("auto", "json", "console"))
    parser.set_defaults(func=run_check)


def run_check(args: argparse.Namespace) -> int:
    fields = ("state_dir", "out_dir", "fx_path", "holdings_path", "config_file", "prom_dir")
    cli = {k: getattr(args, k, None) for k in fields}
    cli["log_format"] = args.log_format
    log = logs.get_logger("hedge-kpi.check")
    try:
        settings = resolve(cli)
    except ConfigError as exc:
        logs.configure(args.log_format or "auto")
        log.error("config_invalid", reason=str(exc))
        return ExitCode.USAGE
    logs.configure(settings.log_format)
    max_age_s = down_after_s(settings.heartbeat_s) if args.max_age_s is None else args.max_age_s
    now = args.now if args.now is not None else time.time()
    results = check_outputs(
        settings.publish_dir, now, max_age_s, max_bytes=settings.max_input_bytes
    )
    history = check_optional(
        settings.publish_dir / NAV_HISTORY_FILE,
        schema_of(NAV_HISTORY_FILE),
        max_bytes=settings.max_input_bytes,
    )
    results += [history] if history is not None else []
    for r in results:
        if r.file == PAIR:
            log.error("check_pair", status=r.status, reason=r.error)
            continue
        path = settings.publish_dir / r.file
        fields_out: dict[str, Any] = {"file": str(path), "status": r.status}
        fields_out["age_s"] = None if r.age_s is None else round(r.age_s, 3)
        if r.sources_not_ok is not None:
            fields_out["sources_not_ok"] = dict(r.sources_not_ok)
        if r.error is None:
            log.info("check_file", **fields_out)
        else:
            log.error("check_file", reason=r.error, **fields_out)
    code = exit_code(results)
    status = {ExitCode.OK: VALID, ExitCode.CHECK_STALE: STALE}.get(code, INVALID)
    log.info("check", status=status, exit_code=int(code), max_age_s=max_age_s)
    return code
