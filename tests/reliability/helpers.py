"""Shared pieces of the reliability suite: a good set of state files, the publish/validate
round trip, and a daemon subprocess whose structlog JSON lines the test can wait on.

Everything here is bounded in time: waits take a timeout and every process started is
stopped (SIGTERM, then SIGKILL) by the caller's `finally`/fixture.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import orjson

from execution import shapes
from kpi_publisher import fs, pipeline, render, schemas
from kpi_publisher.config import Settings, resolve
from kpi_publisher.executor_root import ExecutorRoot
from kpi_publisher.sources import STATE_FILES, SourceReader

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
BIN = Path(sys.executable).parent
HEDGE_KPI = BIN / "hedge-kpi"
NOW = 1_764_000_000.0  # 2025-11-24T16:00:00Z: build time of in-process tests

# Each state-dir source's preferred file, from the publisher's own table.
STATE_NAMES = {name: files[0] for name, files in STATE_FILES.items()}


def good_docs(now: float = NOW, nav_usd: float = 10_234.56) -> dict[str, Any]:
    """One valid document per source, in the shapes the real executor wrote (v7.1 era): the
    lean writers' forms, with hand-picked values (1.14 % drawdown, one BTC holding)."""
    era = "v7.1"
    holdings = shapes.holdings_doc({"BTC": (0.05, 60_000.0)})
    return {
        "nav_state": shapes.nav_state_doc(
            nav=nav_usd,
            peak=11_000.0,
            dd_pct=6.95,
            updated_at=now - 10,
            aum={"futures": nav_usd, "offexchange": holdings},
        ),
        "nav": shapes.nav_doc(
            era,
            nav=nav_usd,
            updated_ts=now - 12,
            detail=shapes.nav_detail(source="exchange", conversions={"BTC": {"price": 91_000.0}}),
        ),
        "risk": shapes.risk_doc(
            era,
            updated_ts=now - 20,
            symbols=[{"symbol": "BTCUSDT", "dd_today_pct": 0.2, "dd_state": "normal"}],
            atr=shapes.atr_block("normal", 0.8),
            fee_pnl=shapes.fee_pnl_block(fee_pnl_ratio=0.1, fees=12.0, pnl=120.0),
            dd_state="NORMAL",
            drawdown=shapes.drawdown_snapshot(dd_pct=1.14, dd_abs=120.5, daily_loss_pct=0.3),
            router_stats=shapes.risk_router_stats(maker=0.62, fallback=0.1, q50=2.5, quality="ok"),
        ),
        "router": shapes.router_doc(
            era,
            updated_ts=now - 30,
            entries=[shapes.router_entry("BTCUSDT", maker=0.5, fallback=0.1)],
            summary=False,
        ),
        "positions": shapes.positions_state_doc(
            updated_at=now - 5,
            iso_stamps=False,
            positions=[
                shapes.exchange_row("BTCUSDT", "LONG", "0.01", "90000", "91000", 3),
                shapes.snake_row("ETHUSDT", -0.5, 3000.0, 2990.0),
            ],
        ),
        "fx": shapes.fx_cache_doc(
            era, prices={"BTC": 91_000.0, "ETH": 2990.0, "USDT": 1.0}, usd_zar=18.2, ts=now - 60
        ),
        "holdings": holdings,
        "risk_advanced": shapes.risk_advanced_doc(
            updated_ts=now - 40,
            var_nav_pct=0.021,
            var_usd=214.9,
            max_var_nav_pct=0.05,
            confidence=0.99,
            lookback=90,
            cvar={"BTCUSDT": (0.012, 122.8, 0.04)},
        ),
    }


class Layout(ExecutorRoot):
    """The executor's tree under a test's root, and an out dir beside it."""

    @property
    def out(self) -> Path:
        return self.root / "out"

    def path(self, source: str) -> Path:
        if source == "fx":
            return self.fx
        if source == "holdings":
            return self.holdings
        return self.state / STATE_NAMES[source]

    def make(self) -> Layout:
        for d in (self.state, self.out, self.fx.parent, self.holdings.parent):
            d.mkdir(parents=True, exist_ok=True)
        return self

    def write(self, source: str, doc: Any) -> Path:
        """Write one source atomically, as the executor does."""
        raw = doc if isinstance(doc, bytes) else orjson.dumps(doc)
        target = self.path(source)
        fs.write_atomic(target, raw, fsync=False)
        return target

    def write_all(self, docs: Mapping[str, Any]) -> None:
        for source, doc in docs.items():
            self.write(source, doc)

    def settings(self, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "state_dir": self.state,
            "out_dir": self.out,
            "fx_path": self.fx,
            "holdings_path": self.holdings,
            "fsync": False,
        }
        values.update(overrides)
        return resolve(values, environ={})

    def cli_args(self) -> list[str]:
        return [
            "--state-dir",
            str(self.state),
            "--out-dir",
            str(self.out),
            "--fx-path",
            str(self.fx),
            "--holdings-path",
            str(self.holdings),
        ]

    def temps(self) -> list[str]:
        """Temp files left in the out dir (anything the publisher's sweep would remove)."""
        return sorted(p.name for p in self.out.iterdir() if fs.is_temp_name(p.name))


_VALIDATORS: dict[str, jsonschema.protocols.Validator] = {}


def validator(name: str) -> jsonschema.protocols.Validator:
    """A compiled validator for "kpis_v7" or "positions_v7"."""
    if name not in _VALIDATORS:
        schema = schemas.load(name)
        cls = jsonschema.validators.validator_for(schema)
        cls.check_schema(schema)
        _VALIDATORS[name] = cls(schema)
    return _VALIDATORS[name]


def _no_constant(token: str) -> None:
    raise AssertionError(f"bare {token} token in published bytes")


def strict_loads(raw: bytes) -> Any:
    """Parse published bytes strictly: UTF-8, no NaN/Infinity tokens (orjson refuses them too)."""
    json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    return orjson.loads(raw)


def assert_valid_outputs(kpis_raw: bytes, positions_raw: bytes) -> tuple[dict, dict]:
    """Both documents parse strictly, carry no NaN/Infinity and validate against their schema."""
    kpis = strict_loads(kpis_raw)
    positions = strict_loads(positions_raw)
    validator("kpis_v7").validate(kpis)
    validator("positions_v7").validate(positions)
    return kpis, positions


def build_bytes(reader: SourceReader, settings: Settings, now: float = NOW) -> tuple[bytes, bytes]:
    """One pass of the real pipeline: read all sources, build, render both documents."""
    outputs = pipeline.build(reader.read_all(), now, settings)
    return render.render(outputs.kpis), render.render(outputs.positions)


def read_outputs(out_dir: Path) -> tuple[dict, dict]:
    return assert_valid_outputs(
        (out_dir / "kpis_v7.json").read_bytes(), (out_dir / "positions_v7.json").read_bytes()
    )


def wait_for(predicate: Callable[[], Any], timeout_s: float, interval_s: float = 0.01) -> Any:
    """Poll `predicate` until it returns something truthy; AssertionError after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        with contextlib.suppress(OSError, ValueError):
            value = predicate()
            if value:
                return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        time.sleep(interval_s)


def kpis_nav(out_dir: Path) -> float | None:
    """nav.nav_usd of the published kpis_v7.json (None when absent or unparseable)."""
    try:
        return orjson.loads((out_dir / "kpis_v7.json").read_bytes())["nav"]["nav_usd"]
    except (OSError, orjson.JSONDecodeError):
        return None


def history_caught_up(out_dir: Path) -> bool:
    """True once the published performance block ends at the published NAV's own timestamp:
    the history's start-up publishes are done, and a test may freeze the daemon without one
    of them landing in the middle of what it measures."""
    try:
        doc = orjson.loads((out_dir / "kpis_v7.json").read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return False
    last_t = ((doc.get("performance") or {}).get("history") or {}).get("last_t")
    return last_t is not None and last_t == (doc.get("nav") or {}).get("updated_at")


@dataclass
class DaemonProc:
    """A `hedge-kpi run` (or a driver script) subprocess whose stdout is structlog JSON lines."""

    proc: subprocess.Popen[bytes]
    started_mono: float
    events: list[dict[str, Any]] = field(default_factory=list)
    raw_lines: list[bytes] = field(default_factory=list)
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _reader: threading.Thread | None = None

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                event = orjson.loads(line)
            except orjson.JSONDecodeError:
                event = None
            with self._cond:
                if isinstance(event, dict):
                    event["_mono"] = time.monotonic()
                    self.events.append(event)
                else:
                    self.raw_lines.append(line)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def start_pump(self) -> DaemonProc:
        self._reader = threading.Thread(target=self._pump, daemon=True)
        self._reader.start()
        return self

    def named(self, name: str) -> list[dict[str, Any]]:
        with self._cond:
            return [e for e in self.events if e.get("event") == name]

    def wait_event(
        self,
        name: str,
        timeout_s: float,
        where: Callable[[dict[str, Any]], bool] = lambda e: True,
        after: int = 0,
    ) -> dict[str, Any]:
        """The first event called `name` (from index `after`) matching `where`."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                for event in self.events[after:]:
                    if event.get("event") == name and where(event):
                        return event
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._pumping()):
                    raise AssertionError(
                        f"no {name!r} event within {timeout_s} s; rc={self.proc.poll()}; "
                        f"last events: {self.events[-5:]}; other output: {self.raw_lines[-5:]}"
                    )
                self._cond.wait(min(left, 0.1))

    def _pumping(self) -> bool:
        return self._reader is not None and self._reader.is_alive()

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 10.0) -> int:
        """Signal the process and wait; SIGKILL when it does not exit in time."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self._reader is not None:
            self._reader.join(5)
        return self.proc.returncode


def spawn(argv: Sequence[str], env: Mapping[str, str] | None = None, **kw: Any) -> DaemonProc:
    """Start a process with JSON logs on stdout (stderr merged) and pump its events."""
    # The caller's KPI_* settings must not leak into the daemon under test.
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("KPI_")}
    full_env.update({"PYTHONUNBUFFERED": "1", **(env or {})})
    proc = subprocess.Popen(
        list(argv),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=full_env,
        cwd=str(REPO),
        **kw,
    )
    return DaemonProc(proc=proc, started_mono=time.monotonic()).start_pump()


def run_argv(layout: Layout, *extra: str) -> list[str]:
    """`hedge-kpi run` over `layout` with JSON logs and fsync off (the tests' disks are tmp)."""
    return [
        str(HEDGE_KPI),
        "run",
        *layout.cli_args(),
        "--log-format",
        "json",
        "--no-fsync",
        *extra,
    ]


@contextlib.contextmanager
def daemon(layout: Layout, *extra: str, prefix: Sequence[str] = ()) -> Iterator[DaemonProc]:
    """A running `hedge-kpi run` (optionally wrapped by `prefix`, e.g. unshare), stopped after."""
    proc = spawn([*prefix, *run_argv(layout, *extra)])
    try:
        yield proc
    finally:
        proc.stop()
