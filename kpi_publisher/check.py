"""`hedge-kpi check`: are the published files valid and fresh? For monitoring and supervisor
event listeners.

Each published file is parsed and validated against its JSON Schema; `kpis_v7.json` must also
be younger than `--max-age-s` (default: three heartbeats, the dashboard's "publisher down"
rule). Exit 0 when all is well, 6 (CHECK_INVALID) when a file is missing, unparseable or fails
its schema, else 5 (CHECK_STALE) when a file is too old. One structlog line per file, then a
summary line `check`.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from kpi_publisher import logs, schemas
from kpi_publisher.cli import ExitCode, add_path_options
from kpi_publisher.config import ConfigError, resolve
from kpi_publisher.parse import number
from kpi_publisher.publish import KPIS_FILE, POSITIONS_FILE

FILES: Mapping[str, str] = {KPIS_FILE: "kpis_v7", POSITIONS_FILE: "positions_v7"}
HEARTBEATS_BEFORE_STALE = 3

VALID = "ok"
STALE = "stale"
INVALID = "invalid"


@dataclass(frozen=True)
class FileCheck:
    """The verdict on one published file; `age_s` is now - generated_at (None if unknown)."""

    file: str
    status: str  # ok | stale | invalid
    age_s: float | None = None
    error: str | None = None
    sources_not_ok: Mapping[str, str] | None = None


def check_document(raw: bytes, schema_name: str) -> tuple[Any, str | None]:
    """(document, None) when `raw` parses and fits its schema, else (None | doc, reason)."""
    import jsonschema  # ~0.1 s of imports: paid by `check`, not by every `hedge-kpi` start

    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return None, f"not valid JSON: {exc}"
    validator_cls = jsonschema.validators.validator_for(schemas.load(schema_name))
    validator = validator_cls(schemas.load(schema_name))
    error = jsonschema.exceptions.best_match(validator.iter_errors(doc))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        return doc, f"schema: {where}: {error.message}"
    return doc, None


def check_file(path: Path, schema_name: str, now: float, max_age_s: float) -> FileCheck:
    """Validate one published file and judge its freshness at `now` (epoch seconds)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return FileCheck(path.name, INVALID, error="missing")
    except OSError as exc:
        return FileCheck(path.name, INVALID, error=f"cannot read: {exc.strerror or exc}")
    doc, error = check_document(raw, schema_name)
    generated = number(doc.get("generated_at")) if isinstance(doc, dict) else None
    age = None if generated is None else max(0.0, now - generated)
    not_ok = None
    if isinstance(doc, dict) and isinstance(doc.get("sources"), dict):
        not_ok = {
            str(name): str(entry.get("status"))
            for name, entry in doc["sources"].items()
            if isinstance(entry, dict) and entry.get("status") != "ok"
        }
    if error is not None:
        return FileCheck(path.name, INVALID, age, error, not_ok)
    if age is None or age > max_age_s:
        why = "no generated_at" if age is None else f"{age:.1f} s old, limit {max_age_s:.1f} s"
        return FileCheck(path.name, STALE, age, why, not_ok)
    return FileCheck(path.name, VALID, age, None, not_ok)


def exit_code(results: list[FileCheck]) -> ExitCode:
    """Invalid beats stale beats ok."""
    statuses = {r.status for r in results}
    if INVALID in statuses:
        return ExitCode.CHECK_INVALID
    if STALE in statuses:
        return ExitCode.CHECK_STALE
    return ExitCode.OK


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "check",
        help="validate the published files and their freshness (exit 5 stale, 6 invalid)",
        description="Validate kpis_v7.json and positions_v7.json against their schemas and "
        "report how old they are. Exit 0 ok, 5 stale, 6 missing or invalid, 2 bad config.",
    )
    add_path_options(parser)
    parser.add_argument(
        "--max-age-s",
        type=float,
        help="oldest acceptable generated_at, seconds (default: 3 heartbeats)",
    )
    parser.add_argument("--now", type=float, help="judge freshness at this epoch (default: now)")
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
    max_age_s = args.max_age_s or HEARTBEATS_BEFORE_STALE * settings.heartbeat_s
    now = args.now if args.now is not None else time.time()
    results = [
        check_file(settings.publish_dir / name, schema, now, max_age_s)
        for name, schema in FILES.items()
    ]
    for r in results:
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
