"""`hedge-kpi once`: read every source, build, publish atomically, print a one-line summary."""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from kpi_publisher import lock, pipeline, prom
from kpi_publisher.cli import PATH_OPTION_FIELDS, add_path_options, epoch_seconds
from kpi_publisher.config import ConfigError, Settings, resolve
from kpi_publisher.contract import (
    INVALID,
    KPIS_FILE,
    MISSING,
    POSITIONS_FILE,
    ExitCode,
    expected_absent,
    not_ok,
)
from kpi_publisher.fmt import fmt_money
from kpi_publisher.publish import publish
from kpi_publisher.sources import SourceReader


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "once",
        help="build and publish once, then exit",
        description="Read the state files, build kpis_v7.json and positions_v7.json, publish "
        "them atomically and print a one-line summary.",
    )
    add_path_options(parser)
    parser.add_argument(
        "--now", type=epoch_seconds, help="build time as epoch seconds (default: now)"
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="exit 4 without publishing when any source is missing or invalid",
    )
    parser.add_argument("--no-fsync", dest="fsync", action="store_false", default=None)
    parser.set_defaults(func=run_once)


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Settings from the parsed path options (and --no-fsync), over env and config file."""
    return resolve({k: getattr(args, k, None) for k in (*PATH_OPTION_FIELDS, "fsync")})


def summary(outputs: pipeline.Outputs, out_dir: str, duration_ms: float) -> str:
    kpis = outputs.kpis
    problems = ", ".join(f"{n}={s}" for n, s in not_ok(kpis).items()) or "none"
    return (
        f"published {KPIS_FILE} and {POSITIONS_FILE} to {out_dir}: "
        f"nav {fmt_money(kpis['nav']['nav_usd'])} USD, "
        f"aum {fmt_money(kpis['aum']['total_usd'])} USD in {len(kpis['aum']['slices'])} slices, "
        f"{outputs.positions['totals']['count']} positions; "
        f"sources not ok: {problems} ({duration_ms:.1f} ms)"
    )


def run_once(args: argparse.Namespace) -> int:
    try:
        settings = settings_from_args(args)
    except ConfigError as exc:
        print(f"hedge-kpi once: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    if not settings.state_dir.is_dir():
        print(f"hedge-kpi once: state dir {settings.state_dir} does not exist", file=sys.stderr)
        return ExitCode.USAGE
    started = time.perf_counter()
    now = args.now if args.now is not None else time.time()
    sources = SourceReader(settings).read_all()
    if args.strict:
        bad = {
            n: s
            for n, s in sources.items()
            if s.status == INVALID or (s.status == MISSING and not expected_absent(n, s.status))
        }
        if bad:
            for name, read in bad.items():
                print(
                    f"hedge-kpi once: {name} is {read.status}: {read.error or read.path}",
                    file=sys.stderr,
                )
            return ExitCode.STRICT_INPUTS
    outputs = pipeline.build(sources, now, settings)
    out_dir = settings.publish_dir
    held: lock.OutDirLock | None = None
    try:
        os.makedirs(out_dir, exist_ok=True)
        # A running daemon on this out dir is refused at once; another `once` is waited for.
        held = lock.acquire(out_dir, wait_s=lock.SHORT_HOLDER_WAIT_S)
        publish(outputs, out_dir, fsync=settings.fsync, durability=settings.durability)
    except lock.LockHeld as exc:
        print(f"hedge-kpi once: not published: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    except OSError as exc:
        print(
            f"hedge-kpi once: cannot publish to {out_dir}: {exc.strerror or exc}", file=sys.stderr
        )
        return ExitCode.OUT_DIR_UNWRITABLE
    finally:
        if held is not None:
            held.release()
    if settings.prom_dir is not None:
        health = prom.PublisherHealth().published(
            duration_s=time.perf_counter() - started, ts=time.time()
        )
        try:
            prom.publish_prom(outputs, settings, health)
        except OSError as exc:
            print(
                f"hedge-kpi once: cannot write {prom.PROM_FILE} to {settings.prom_dir}: "
                f"{exc.strerror or exc}",
                file=sys.stderr,
            )
            return ExitCode.OUT_DIR_UNWRITABLE
    print(summary(outputs, str(out_dir), (time.perf_counter() - started) * 1000.0))
    return ExitCode.OK
