"""A demo executor: writes what the real one writes, on a cadence, with no exchange.

`hedge-kpi demo-executor --root DIR` (or `python -m execution.demo_executor --root DIR`) lays
out the real tree under DIR (`logs/state`, `logs/cache`, `config`) and every `--interval` seconds
writes nav.json, nav_state.json, risk_snapshot.json, router_health.json, positions.json,
positions_state.json, the NAV log, the drawdown tracker and the price/FX cache, in the shapes
of the chosen era (`--era v7.1|v7.6`, see `execution.shapes`). The holdings config is
copied in once (an existing one is kept).

Like the real executor it writes most state files by rename-into-place (temp names
`<stem>.tmp` in v7.1, `.tmp_<random>` in v7.6, `<file>.<pid>.tmp` for router health in v7.1)
and some files in place (truncate + write: positions.json, nav_log.json, peak_state.json, the
price/FX cache). nav_state.json and positions_state.json go through this package's own sync
write path (`execution.sync_state`). SIGTERM/SIGINT end the loop at once; exit code 0.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from execution import demo_history, demo_market, demo_shapes, shapes, sync_state
from execution.state_publish import write_state_json
from kpi_publisher.contract import ExitCode
from kpi_publisher.executor_root import (
    CACHE_DIR,
    FX_FILE,
    HOLDINGS_FILE,
    STATE_DIR,
    ExecutorRoot,
)

log = structlog.get_logger("hedge-kpi.demo-executor")

# How a file reaches the disk.
RENAME_STEM = "rename:<stem>.tmp"  # v7.1 state_publish: nav.json -> nav.tmp, then rename
RENAME_PID = "rename:<file>.<pid>.tmp"  # the real sync writer's temp name
RENAME_MKSTEMP = "rename:.tmp_<random>"  # v7.6 atomic writer (mkstemp prefix .tmp_)
IN_PLACE = "in-place"  # truncate + write: a reader can see a torn file
ATOMIC = "atomic"  # this package's writer (execution.state_publish.write_state_json)

ROUTER_EVERY = 2  # cycles between router-health refreshes (the real one: 60 s vs a 60 s loop)
FX_EVERY = 5  # cycles between price/FX refreshes (the real cache: at most every 120 s)


@dataclass(frozen=True)
class DemoOptions:
    """What to run: where, how often (seconds), which era's shapes, which NAV, how long."""

    root: Path
    interval_s: float = 2.0
    era: str = "v7.1"
    seed: int = 7
    cycles: int | None = None  # None: until SIGTERM/SIGINT
    nav_source: str = "replay"  # replay | random
    fsync: bool = False


@dataclass(frozen=True)
class FileWrite:
    """One file to write this cycle: path relative to the root, the JSON document, the method."""

    path: str
    doc: Any
    how: str


def executor_style(era: str) -> str:
    """The rename style of the executor's own state files in `era`."""
    return RENAME_STEM if era == "v7.1" else RENAME_MKSTEMP


def kpis_due(cycle: int, era: str) -> bool:
    """Whether the risk snapshot carries the flat KPIs this cycle. In v7.1 the first snapshot
    goes out before the (throttled) KPI emitter has run, so cycle 0 has none."""
    return cycle >= 1 or era != "v7.1"


def plan_cycle(
    w: demo_market.World,
    era: str,
    kpis: Mapping[str, Any] | None,
    holdings: Mapping[str, Any],
) -> list[FileWrite]:
    """Every file this cycle writes, in order (pure: the world in, the writes out)."""
    style = executor_style(era)
    state = f"{STATE_DIR}/"
    fx = demo_shapes.fx_cache_doc(w, era)
    raw_positions = demo_shapes.positions_doc(w, era)
    risk = demo_shapes.risk_doc(w, era, kpis)
    positions_state = sync_state.build_positions_state(
        raw_positions, risk, now=w.now, container="items" if era == "v7.1" else "positions"
    )
    nav_state = sync_state.build_nav_state(
        demo_shapes.nav_log_doc(w),
        now=w.now,
        peak_usd=w.peak_usd,
        realized_pnl_today=w.realized_today_usd,
        positions_state=positions_state,
        fx=fx,
        holdings=holdings,
    )
    writes = []
    if w.cycle % FX_EVERY == 0:
        writes.append(FileWrite(f"{CACHE_DIR}/{FX_FILE}", fx, IN_PLACE))
    writes += [
        FileWrite(f"{STATE_DIR.parent}/nav_log.json", demo_shapes.nav_log_doc(w), IN_PLACE),
        FileWrite(f"{CACHE_DIR}/peak_state.json", demo_shapes.peak_state_doc(w), IN_PLACE),
        FileWrite(state + "nav.json", demo_shapes.nav_doc(w, era, holdings), style),
        FileWrite(state + "positions.json", raw_positions, IN_PLACE),
        FileWrite(state + "risk_snapshot.json", risk, style),
    ]
    if w.cycle % ROUTER_EVERY == 0:
        router_style = RENAME_PID if era == "v7.1" else style
        writes.append(
            FileWrite(state + "router_health.json", demo_shapes.router_doc(w, era), router_style)
        )
    if era != "v7.1":  # risk_advanced.json is written from v7.6 on
        writes.append(
            FileWrite(state + "risk_advanced.json", demo_shapes.risk_advanced_doc(w), style)
        )
    writes.append(FileWrite(state + sync_state.POSITIONS_STATE_FILE, positions_state, ATOMIC))
    if nav_state is not None:
        writes.append(FileWrite(state + sync_state.NAV_STATE_FILE, nav_state, ATOMIC))
    return writes


def _rename_into_place(target: Path, data: bytes, how: str) -> None:
    """Write a temp file beside `target` under the named writer's temp name, then rename."""
    if how == RENAME_MKSTEMP:
        fd, name = tempfile.mkstemp(prefix=".tmp_", dir=target.parent)
        tmp = Path(name)
    else:
        tmp = (
            target.with_suffix(".tmp")
            if how == RENAME_STEM
            else target.with_name(f"{target.name}.{os.getpid()}.tmp")
        )
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def apply_write(root: Path, item: FileWrite, *, fsync: bool = False) -> None:
    """Put one planned file on disk the way its real writer did; raises OSError."""
    target = root / item.path
    if item.how == ATOMIC:
        write_state_json(target, item.doc, fsync=fsync)
    elif item.how == IN_PLACE:
        # The executor's cache writer: pretty, sorted, truncate-and-write in place.
        with open(target, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(item.doc, indent=2, sort_keys=True))
    else:
        data = json.dumps(item.doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        _rename_into_place(target, data, item.how)


def install_holdings(layout: ExecutorRoot) -> Mapping[str, Any]:
    """Copy the shipped holdings config into `<root>/config` unless one exists; return it."""
    path = layout.holdings
    if not path.exists():
        path.write_bytes(demo_market.data_bytes(HOLDINGS_FILE))
        log.info("holdings_installed", file=str(path))
    try:
        doc = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        log.warning("holdings_unreadable", file=str(path), reason=str(exc), using="shipped copy")
        doc = demo_market.load_data(HOLDINGS_FILE)
    return doc if isinstance(doc, Mapping) else {}


def run(
    options: DemoOptions,
    stop: threading.Event | None = None,
    *,
    clock: Callable[[], float] = time.time,
) -> int:
    """Run cycles until `stop` is set or `options.cycles` are done; returns cycles completed."""
    if options.era not in shapes.ERAS:
        raise ValueError(f"era must be one of {', '.join(shapes.ERAS)}, got {options.era!r}")
    stop = stop if stop is not None else threading.Event()
    layout = ExecutorRoot(options.root)
    for directory in (layout.state, layout.cache, layout.config):
        directory.mkdir(parents=True, exist_ok=True)
    holdings = install_holdings(layout)
    rng = random.Random(options.seed)  # noqa: S311 - a seeded simulation, not cryptography
    nav_source = demo_market.NavSource(options.nav_source)
    seed = demo_market.MarketSeed.load()
    log.info(
        "demo_start",
        root=str(layout.root),
        era=options.era,
        interval_s=options.interval_s,
        nav_source=options.nav_source,
        seed=options.seed,
        cycles=options.cycles,
    )
    world = demo_market.initial_world(clock(), rng, nav_source, seed)
    if options.nav_source == "replay" and demo_history.install_month(
        layout.logs, world.nav_t, world.nav_usd, options.interval_s
    ):
        log.info("nav_history_installed", file=str(layout.logs / demo_history.NAV_JSONL))
    done = 0
    while not stop.is_set():
        if done > 0:
            world = demo_market.step(world, clock(), rng, nav_source, seed)
        kpis = (
            demo_shapes.flat_kpis(world, options.era)
            if kpis_due(world.cycle, options.era)
            else None
        )
        failed = []
        for item in plan_cycle(world, options.era, kpis, holdings):
            try:
                apply_write(layout.root, item, fsync=options.fsync)
            except OSError as exc:
                failed.append(item.path)
                log.error(
                    "write_failed",
                    file=str(layout.root / item.path),
                    reason=exc.strerror or str(exc),
                )
        done += 1
        log.info(
            "demo_cycle",
            cycle=world.cycle,
            nav_usd=round(world.nav_usd, 2),
            dd_pct=round(world.dd_pct, 4),
            positions=len(world.positions),
            events=list(world.events),
            failed=failed,
        )
        if options.cycles is not None and done >= options.cycles:
            break
        stop.wait(options.interval_s)
    log.info("demo_stopped", cycles=done)
    return done


# --- command line -----------------------------------------------------------------------------


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--root", required=True, help="tree to write into (logs/state, logs/cache, config)"
    )
    parser.add_argument(
        "--interval", type=_positive_float, default=2.0, help="seconds between cycles (2)"
    )
    parser.add_argument("--era", choices=shapes.ERAS, default="v7.1", help="file shapes (v7.1)")
    parser.add_argument("--seed", type=int, default=7, help="random seed (7)")
    parser.add_argument("--cycles", type=_positive_int, help="stop after this many cycles")
    parser.add_argument(
        "--nav-source",
        choices=("replay", "random"),
        default="replay",
        help="replay the real NAV series, or a seeded random walk (replay)",
    )
    parser.add_argument("--fsync", action="store_true", help="fsync the atomically written files")
    parser.add_argument("--log-format", choices=("auto", "json", "console"), default="auto")


class _Stopper:
    """What the publisher's signal thread drives: SIGTERM/SIGINT stop, SIGHUP is ignored."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def request_stop(self) -> None:
        self.event.set()

    def request_reload(self) -> None:
        log.info("reload_ignored", reason="the demo executor has no config to reload")


def run_cli(args: argparse.Namespace) -> int:
    """Entry point of both `hedge-kpi demo-executor` and `python -m execution.demo_executor`."""
    from kpi_publisher import logs
    from kpi_publisher.daemon import install_signal_thread

    logs.configure(args.log_format)
    options = DemoOptions(
        root=Path(os.path.expanduser(args.root)).absolute(),
        interval_s=args.interval,
        era=args.era,
        seed=args.seed,
        cycles=args.cycles,
        nav_source=args.nav_source,
        fsync=args.fsync,
    )
    stop = threading.Event()
    restore = install_signal_thread(_Stopper(stop))
    try:
        run(options, stop)
    except OSError as exc:
        log.error(
            "demo_failed", file=str(exc.filename or options.root), reason=exc.strerror or str(exc)
        )
        return ExitCode.OUT_DIR_UNWRITABLE
    finally:
        restore()
    return ExitCode.OK


def register(subparsers: Any) -> None:
    """Add `hedge-kpi demo-executor`."""
    parser = subparsers.add_parser(
        "demo-executor",
        help="write realistic executor state files on a cadence (no exchange needed)",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    add_options(parser)
    parser.set_defaults(func=run_cli)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m execution.demo_executor", description=__doc__)
    add_options(parser)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    return run_cli(args)


if __name__ == "__main__":
    sys.exit(main())
