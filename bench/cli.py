"""`hedge-kpi bench [--quick] [--out DIR]`: every measurement in one run, judged against the
targets, written as benchmarks.json (every figure) and benchmarks.png (the plot).

The full run (under 5 minutes here) writes into docs/, where docs/BENCHMARKS.md cites it.
`--quick` (under 30 s, the CI smoke run) writes to a fresh temp dir unless `--out` is given,
so it never overwrites the committed figures. No timing is asserted.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from bench import (
    burst,
    dashboard,
    e2e,
    idle,
    jsoncmp,
    machine,
    polling,
    profile,
    scaling,
)
from bench.plan import FULL, PLANS, QUICK, Plan
from bench.plot import plot
from bench.targets import evaluate
from kpi_publisher.config import Settings

REPO = Path(__file__).resolve().parents[1]
SCHEMA = "hedge-kpi.bench/1"
JSON_NAME = "benchmarks.json"
PNG_NAME = "benchmarks.png"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="measure publish latency, bursts, scaling and idle cost; write JSON + plot",
        description=__doc__,
    )
    add_options(parser)
    parser.set_defaults(func=run_command)


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--quick", action="store_true", help="smoke run (< 30 s); writes to a temp dir"
    )
    parser.add_argument(
        "--out", type=Path, help="output dir (default: docs/ for the full run, a temp dir quick)"
    )
    parser.add_argument("--plan", choices=sorted(PLANS), help=argparse.SUPPRESS)
    parser.add_argument(
        "--no-dashboard", action="store_true", help="skip the headless-Chromium measurement"
    )
    parser.add_argument("--seed", type=int, default=20261125, help="random seed of the schedule")
    parser.add_argument(
        "--keep-work", action="store_true", help="keep the scratch dir (books, process logs)"
    )


def default_out(plan: Plan) -> Path:
    if plan.name == FULL.name:
        return REPO / "docs"
    return Path(tempfile.mkdtemp(prefix=f"hedge-kpi-bench-{plan.name}-"))


def _iso_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def run_all(
    plan: Plan,
    work: Path,
    *,
    seed: int,
    with_dashboard: bool,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    """Every measurement, in one run; returns the results document."""
    load_trace: list[dict[str, Any]] = []

    def step(message: str) -> None:  # the machine's load at every step goes in the JSON
        load_trace.append({"step": message, **machine.load()})
        progress(message)

    rng = random.Random(seed)  # noqa: S311 - a reproducible schedule, not a secret
    started = time.perf_counter()
    defaults = Settings()
    results: dict[str, Any] = {
        "schema": SCHEMA,
        "plan": plan.as_dict(),
        "started_at": _iso_now(),
        "machine": machine.describe(work),
        "load_start": machine.load(),
        "settings": {
            "debounce_ms": defaults.debounce_ms,
            "heartbeat_s": defaults.heartbeat_s,
            "rescan_s": defaults.rescan_s,
            "fsync_default": defaults.fsync,
        },
    }
    step(f"idle: daemon started, measuring {plan.idle_s:g} s in the background")
    idle_probe = idle.IdleProbe(work, plan.idle_s).start()
    try:
        # Start-up (imports, first publish, gc.freeze) is over by the time these are done.
        results["scaling"] = scaling.run(
            plan.scaling_sizes, work, plan.scaling_budget_s, progress=step
        )
        results["json"] = jsoncmp.run(plan.json_sizes, work, plan.json_budget_s, progress=step)
        step("profile: one realistic build")
        results["profile"] = profile.run(work, plan.profile_reps, plan.profile_budget_s)
        idle_probe.begin()
        results["e2e"] = e2e.run(
            plan.e2e_realistic_rounds,
            plan.e2e_large_rounds,
            work,
            rng,
            progress=step,
            settle_s=plan.settle_s,
        )
    finally:
        step(f"idle: waiting {idle_probe.remaining_s():.0f} s more")
        results["idle"] = idle_probe.finish()
    step(f"polling baseline: {plan.polling_samples} samples")
    results["polling"] = polling.measure(plan.polling_samples, plan.polling_interval_s, work, rng)
    step(f"burst: {plan.burst_rate_hz:g} writes/s for {plan.burst_duration_s:g} s")
    results["burst"] = burst.run(
        plan.burst_rate_hz, plan.burst_duration_s, work, settle_s=plan.settle_s
    )
    if with_dashboard and plan.dashboard_samples > 0:
        step(f"dashboard: {plan.dashboard_samples} samples in headless Chromium")
        results["dashboard"] = dashboard.run(plan.dashboard_samples, work, rng)
    else:
        why = "--no-dashboard" if not with_dashboard else f"not part of the {plan.name} run"
        results["dashboard"] = {"skipped": why}
    results["load_end"] = machine.load()
    results["load_trace"] = load_trace
    results["finished_at"] = _iso_now()
    results["duration_s"] = time.perf_counter() - started
    results["targets"] = evaluate(results)
    return results


def write(results: dict[str, Any], out_dir: Path) -> list[Path]:
    """Write benchmarks.json (every figure of the run) and benchmarks.png into `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    png, js = out_dir / PNG_NAME, out_dir / JSON_NAME
    plot(results, png)
    js.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    return [js, png]


def run_command(args: argparse.Namespace) -> int:
    plan = PLANS[args.plan] if args.plan else (QUICK if args.quick else FULL)
    out = args.out if args.out is not None else default_out(plan)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="hedge-kpi-bench-work-"))

    t0 = time.perf_counter()

    def progress(message: str) -> None:
        elapsed = time.perf_counter() - t0
        print(f"[bench {plan.name} {elapsed:5.1f} s] {message}", file=sys.stderr, flush=True)

    try:
        results = run_all(
            plan, work, seed=args.seed, with_dashboard=not args.no_dashboard, progress=progress
        )
        paths = write(results, out)
    finally:
        if args.keep_work:
            progress(f"scratch dir kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    met = sum(1 for t in results["targets"] if t["met"] is True)
    missed = [t["id"] for t in results["targets"] if t["met"] is False]
    print(
        f"bench {plan.name}: {results['duration_s']:.0f} s; targets met {met}/"
        f"{len(results['targets'])}" + (f", missed: {', '.join(missed)}" if missed else "")
    )
    for path in paths:
        print(f"wrote {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    add_options(parser)
    return run_command(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
