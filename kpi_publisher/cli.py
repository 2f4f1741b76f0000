"""`hedge-kpi` command line: main(argv) -> exit code. Each subcommand lives in its own module.

A subcommand module exposes `register(subparsers) -> None`, which adds its parser and sets
`func(args) -> int` as the parser default.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import math
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

# main() returns one of these; callers compare its result to cli.ExitCode.
from kpi_publisher.contract import ExitCode as ExitCode

# Every subcommand -> the module registering it, in the order `--help` lists them. Only the
# module of the command being run is imported, so `run` starts without the dashboard, the demo
# or the benchmark code.
COMMANDS: dict[str, str] = {
    "once": "kpi_publisher.once",
    "run": "kpi_publisher.run",
    "check": "kpi_publisher.check",
    "demo": "kpi_publisher.demo_supervisor",
    "dashboard": "dashboard.serve",
    "bench": "bench.cli",
    "demo-executor": "execution.demo_executor",
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; with a known `command`, only that command's module is imported."""
    parser = argparse.ArgumentParser(
        prog="hedge-kpi",
        description="Publish kpis_v7.json and positions_v7.json from the executor's state files.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name in [command] if command in COMMANDS else list(COMMANDS):
        try:
            module = importlib.import_module(COMMANDS[name])
        except ModuleNotFoundError as exc:
            if exc.name != COMMANDS[name].partition(".")[0]:
                raise
            _register_checkout_only(subparsers, name, exc.name)
            continue
        module.register(subparsers)
    return parser


def _register_checkout_only(subparsers: Any, command: str, package: str) -> None:
    """A command whose package is not installed (bench/ runs from the source checkout)."""
    parser = subparsers.add_parser(
        command,
        help=f"(from a source checkout: python -m {package})",
        add_help=False,
        prefix_chars="\0",  # every argument, options included, lands in `args`
    )
    parser.add_argument("args", nargs="*")

    def unavailable(_args: argparse.Namespace) -> int:
        print(
            f"hedge-kpi {command}: the {package} package is not installed; "
            f"run `python -m {package}` from a source checkout",
            file=sys.stderr,
        )
        return ExitCode.USAGE

    parser.set_defaults(func=unavailable)


# Epoch seconds are below this (docs/CONTRACT_RULES.md, rule 2: larger values are ms, µs or ns).
EPOCH_S_LIMIT = 1e11


def epoch_seconds(text: str) -> float:
    """argparse type of `--now`: a finite epoch in seconds, 0 <= t < 1e11 (else exit 2)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of epoch seconds: {text!r}") from None
    if not (math.isfinite(value) and 0 <= value < EPOCH_S_LIMIT):
        raise argparse.ArgumentTypeError(
            f"must be epoch seconds, finite, >= 0 and < {EPOCH_S_LIMIT:g}, got {text!r}"
        )
    return value


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


# Held from the first moment of `run` until its signal thread takes them (daemon/signals.py).
RUN_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def hold_run_signals() -> None:
    """Block stop and reload signals before `run` imports anything heavy: one that arrives in
    the first moments stays pending until the daemon's signal thread takes it (SIGTERM then
    ends the daemon with 0, SIGHUP reloads) instead of killing a half-started process."""
    signal.pthread_sigmask(signal.SIG_BLOCK, RUN_SIGNALS)


class QuietStdout:
    """sys.stdout for a command run as a process: a line that cannot be written (a pipe whose
    reader exited, as in `| head -1`; a full disk) is dropped, and the descriptor is pointed
    at /dev/null so the interpreter's final flush cannot fail either. The command's exit
    code is then its own, never 1 or 120 from a BrokenPipeError."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def _silence(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, self._stream.fileno())
            os.close(null)

    def write(self, text: str) -> int:
        try:
            return int(self._stream.write(text))
        except (OSError, ValueError):
            self._silence()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except (OSError, ValueError):
            self._silence()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def main(argv: Sequence[str] | None = None) -> int:
    args_in = list(sys.argv[1:] if argv is None else argv)
    if argv is None:  # the process entry (`hedge-kpi ...`, `python -m kpi_publisher ...`)
        if args_in[:1] == ["run"]:
            hold_run_signals()
        if sys.stdout is not None:
            sys.stdout = QuietStdout(sys.stdout)
    parser = build_parser(args_in[0] if args_in else None)
    try:
        args = parser.parse_args(args_in)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
        return int(exc.code or 0)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
