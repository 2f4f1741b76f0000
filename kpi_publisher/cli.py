"""`hedge-kpi` command line: main(argv) -> exit code. Each subcommand lives in its own module.

A subcommand module exposes `register(subparsers) -> None`, which adds its parser and sets
`func(args) -> int` as the parser default.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from enum import IntEnum


class ExitCode(IntEnum):
    """Documented exit codes (README, "Exit codes")."""

    OK = 0
    FAILURE = 1  # unexpected internal error
    USAGE = 2  # bad arguments or an unusable config file
    OUT_DIR_UNWRITABLE = 3  # the out dir cannot be created or written
    STRICT_INPUTS = 4  # --strict and a source is missing, invalid or stale
    CHECK_STALE = 5  # `check`: a published file is older than allowed
    CHECK_INVALID = 6  # `check`: a published file is missing or fails its schema
    WORKER_STUCK = 70  # `run`: the publish loop made no progress; exit so supervisord restarts


# Subcommand -> the module registering it, in the order `--help` lists them. Only the module of
# the command being run is imported, so `run` starts without the dashboard or benchmark code.
COMMANDS: dict[str, str] = {
    "once": "kpi_publisher.once",
    "run": "kpi_publisher.run",
    "check": "kpi_publisher.check",
    "demo-executor": "execution.demo",
    "demo": "kpi_publisher.demo",
    "dashboard": "kpi_publisher.demo",
    "bench": "bench.cli",
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; with a known `command`, only that command's module is imported."""
    parser = argparse.ArgumentParser(
        prog="hedge-kpi",
        description="Publish kpis_v7.json and positions_v7.json from the executor's state files.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    modules = [COMMANDS[command]] if command in COMMANDS else list(dict.fromkeys(COMMANDS.values()))
    for name in modules:
        importlib.import_module(name).register(subparsers)
    return parser


# The Settings fields that `add_path_options` fills (None = not given on the command line).
PATH_OPTION_FIELDS: tuple[str, ...] = (
    "state_dir",
    "out_dir",
    "fx_path",
    "holdings_path",
    "config_file",
    "prom_dir",
    "host_label",
    "account_label",
)


def add_path_options(parser: argparse.ArgumentParser) -> None:
    """The input/output path options shared by `once`, `run` and `check`."""
    parser.add_argument("--state-dir", dest="state_dir", help="executor state dir (logs/state)")
    parser.add_argument("--out-dir", dest="out_dir", help="where to publish (default: state dir)")
    parser.add_argument("--fx-path", dest="fx_path", help="price/FX cache (coingecko_cache.json)")
    parser.add_argument(
        "--holdings-path", dest="holdings_path", help="off-exchange holdings config"
    )
    parser.add_argument("--config", dest="config_file", help="TOML config file")
    parser.add_argument("--prom-dir", dest="prom_dir", help="also write kpis.prom here")
    parser.add_argument(
        "--host-label", dest="host_label", help="host label of kpis.prom (default: hostname)"
    )
    parser.add_argument(
        "--account-label", dest="account_label", help="account label of kpis.prom (default)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    args_in = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(args_in[0] if args_in else None)
    try:
        args = parser.parse_args(args_in)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
        return int(exc.code or 0)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
