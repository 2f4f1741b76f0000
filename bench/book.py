"""Synthetic books in the real shapes of the executor's files (docs/CONTRACT_RULES.md, inputs).

`documents(spec, now)` is pure: the JSON of every input file for a book of `n_symbols`
symbols and `n_positions` open positions, built by `execution.shapes` in the v7.1 executor's
shapes (docs/CONTRACT_RULES.md, executor file shapes), with slim health entries:
nav_state.json (sync shape with its NAV series), nav.json (NAV detail and AUM with
off-exchange holdings), risk_snapshot.json (per-symbol health entries, drawdown, ATR, fee/PnL
and the embedded flat `kpis_v7`), router_health.json (the per-symbol list and a summary),
positions_state.json (canonical rows), the price/FX cache and the holdings config.

`write_book(root, spec)` lays them out as the real tree (`logs/state`, `logs/cache`, `config`)
and returns a `Book` that can rewrite its risk snapshot with a marker: `fee_pnl.fees`, which
the publisher passes through to `kpis_v7.json` as `fees.fees_usd`. Probes encode a sample
index in it and read it back to know that the output reflects that very write.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from execution import shapes
from kpi_publisher.executor_root import (
    CACHE_DIR,
    CONFIG_DIR,
    FX_FILE,
    HOLDINGS_FILE,
    STATE_DIR,
    ExecutorRoot,
)

# The real universe was about 30 USDT-M perpetuals; larger books add synthetic names.
REAL_SYMBOLS: tuple[str, ...] = (
    "BTCUSDT",
    "ETHUSDT",
    "SOLUSDT",
    "BNBUSDT",
    "XRPUSDT",
    "DOGEUSDT",
    "ADAUSDT",
    "LTCUSDT",
    "LINKUSDT",
    "AVAXUSDT",
    "DOTUSDT",
    "TRXUSDT",
    "MATICUSDT",
    "ATOMUSDT",
    "NEARUSDT",
    "APTUSDT",
    "ARBUSDT",
    "OPUSDT",
    "SUIUSDT",
    "FILUSDT",
    "INJUSDT",
    "TIAUSDT",
    "SEIUSDT",
    "AAVEUSDT",
    "UNIUSDT",
    "ETCUSDT",
    "BCHUSDT",
    "XLMUSDT",
    "WLDUSDT",
    "PEPEUSDT",
)
MARKER_FILE = "risk_snapshot.json"
MARKER_BASE_USD = 1000.0
_PLACEHOLDER = 987654321.25  # unique in the rendered risk snapshot; replaced by the marker
ATR_REGIMES = ("quiet", "normal", "normal", "hot")
QUALITIES = ("good", "ok", "ok", "degraded")


@dataclass(frozen=True)
class BookSpec:
    """Size of a book: symbols in the universe, open positions, NAV series points."""

    name: str
    n_symbols: int
    n_positions: int
    series_points: int = 60


REALISTIC = BookSpec("realistic", 30, 10, series_points=24)
LARGE = BookSpec("large", 1000, 200, series_points=500)


def scaling_spec(n_symbols: int) -> BookSpec:
    """The books of the scaling series: one position per five symbols, a 60-point series."""
    return BookSpec(f"{n_symbols}-symbols", n_symbols, max(1, n_symbols // 5), 60)


def marker_value(index: int) -> float:
    """The `fees` (USD) that encodes sample `index`; exact in binary floating point."""
    return MARKER_BASE_USD + float(index)


def marker_index(fees_usd: Any) -> int | None:
    """The sample index encoded in a published `fees_usd`, or None."""
    if not isinstance(fees_usd, (int, float)) or isinstance(fees_usd, bool):
        return None
    index = fees_usd - MARKER_BASE_USD
    return int(index) if index >= 0 and index == int(index) else None


def symbols(n: int) -> list[str]:
    if n <= len(REAL_SYMBOLS):
        return list(REAL_SYMBOLS[:n])
    extra = [f"SYN{i:05d}USDT" for i in range(n - len(REAL_SYMBOLS))]
    return [*REAL_SYMBOLS, *extra]


HOLDINGS: dict[str, tuple[float, float]] = {
    "BTC": (0.35, 61_000.0),
    "XAUT": (2.0, 2_400.0),
    "USDC": (5_000.0, 1.0),
}
PRICES: dict[str, float] = {"BTC": 101_500.0, "ETH": 3_520.0, "USDT": 1.0, "XAUT": 4_010.0}
NAV_USD = 102_345.67
PEAK_USD = 104_000.0


@dataclass(frozen=True)
class _SymbolFigures:
    """One symbol's drawn figures: its health entry, ATR row and router row."""

    health: dict[str, Any]
    atr: dict[str, Any]
    router: dict[str, Any]


def _symbol(sym: str, rng: random.Random, now: float) -> _SymbolFigures:
    ratio = round(rng.uniform(0.5, 1.8), 4)
    regime = ATR_REGIMES[rng.randrange(len(ATR_REGIMES))]
    maker = round(rng.uniform(0.2, 0.8), 4)
    fallback = round(rng.uniform(0.05, 0.6), 4)
    quality = QUALITIES[rng.randrange(len(QUALITIES))]
    slip = (
        round(rng.uniform(0.1, 1.0), 3),
        round(rng.uniform(1.0, 3.0), 3),
        round(rng.uniform(3.0, 6.0), 3),
    )
    dd_today = round(rng.uniform(-2.0, 0.5), 4)
    atr_now, atr_med = round(rng.uniform(0.2, 2.0), 5), round(rng.uniform(0.2, 2.0), 5)

    def vol(symbol: str | None = None) -> dict[str, Any]:
        return shapes.vol_block(
            symbol=symbol, atr_now=atr_now, atr_med=atr_med, atr_ratio=ratio, regime=regime
        )

    policy = shapes.policy_block(
        maker_first=maker > 0.4, taker_bias="neutral", quality=quality, offset_bps=slip[1] * 0.5
    )
    health = shapes.health_entry(
        sym,
        now,
        maker=maker,
        fallback=fallback,
        slip=slip,
        policy=policy,
        dd_today_pct=dd_today,
        vol=vol(),
        slim=True,
    )
    router = shapes.router_entry(
        sym,
        maker=maker,
        fallback=fallback,
        p50=slip[1],
        p95=slip[2] * 1.6,
        ack_ms=round(rng.uniform(20.0, 180.0), 1),
        updated_ts=now,
    )
    return _SymbolFigures(health, vol(sym), router)


def _position(sym: str, rng: random.Random, now: float) -> dict[str, Any]:
    side = "LONG" if rng.random() < 0.5 else "SHORT"
    entry = round(rng.uniform(0.5, 60000.0), 4)
    mark = round(entry * rng.uniform(0.97, 1.03), 4)
    qty = round(rng.uniform(100.0, 5000.0) / entry, 6)
    signed = qty if side == "LONG" else -qty
    return shapes.snake_row(
        sym,
        signed,
        entry,
        mark,
        side=side,
        pnl=(mark - entry) * signed,
        leverage=3.0,
        ts=now,
        pnl_key="unrealized_pnl",
    )


def documents(spec: BookSpec, now: float, *, seed: int = 7) -> dict[str, Any]:
    """Every input file of the book, keyed by its path relative to the book's root."""
    rng = random.Random(seed)  # noqa: S311 - reproducible data, not a secret
    era = "v7.1"
    syms = symbols(spec.n_symbols)
    nav, peak = NAV_USD, PEAK_USD
    figures = [_symbol(s, rng, now) for s in syms]
    open_syms = syms[: spec.n_positions] if spec.n_positions <= len(syms) else syms
    positions = [_position(s, rng, now) for s in open_syms]
    series = [
        shapes.series_point(
            now - 60.0 * (spec.series_points - i),
            round(nav + 50.0 * rng.uniform(-1, 1), 2),
            round(rng.uniform(-200, 200), 2),
        )
        for i in range(spec.series_points)
    ]
    notionals = [(p["notional"], 1 if p["side"] == "LONG" else -1) for p in positions]
    exposures = (
        round(sum(n for n, _ in notionals), 2),
        round(sum(n * sign for n, sign in notionals), 2),
        max((n for n, _ in notionals), default=0.0),
    )
    dd_pct = round((peak - nav) / peak * 100.0, 4)
    drawdown = shapes.drawdown_snapshot(
        dd_pct=dd_pct,
        dd_abs=round(peak - nav, 2),
        daily_loss_pct=0.42,
        peak=peak,
        nav=nav,
        daily_peak=102_800.0,
        realized_today=120.25,
        nav_cache_ts=now - 4.0,
        now=now,
    )
    atr = shapes.atr_block("normal", 1.07, [f.atr for f in figures])
    kpis_atr = shapes.atr_block("normal", 1.07)
    offexchange = {
        sym: shapes.offexchange_entry(qty, cost, PRICES.get(sym, cost))
        for sym, (qty, cost) in HOLDINGS.items()
    }
    aum = shapes.aum_block(nav, offexchange)
    conversions = {"BTC": {"amount": 0.0, "price": PRICES["BTC"], "value_usd": 0.0}}
    kpis = shapes.flat_kpis(
        era,
        now=now,
        atr=kpis_atr,
        dd_state="normal",
        drawdown=drawdown,
        fee_pnl=shapes.fee_pnl_block(fee_pnl_ratio=0.18, fees=387.0, pnl=2_150.0, window_days=7),
        router_quality="ok",
        router_stats=shapes.router_stats(
            maker=0.47, fallback=0.21, q25=0.6, q50=1.8, q75=3.9, q95=7.2
        ),
    )
    return {
        f"{STATE_DIR}/nav_state.json": shapes.nav_state_doc(
            nav=nav,
            peak=peak,
            dd_pct=dd_pct,
            updated_at=now,
            series=series,
            dd_abs=round(peak - nav, 2),
            realized_pnl=310.5,
            realized_today=120.25,
            unrealized=-85.4,
            exposures=exposures,
            snapshot_at=now,
        ),
        f"{STATE_DIR}/nav.json": shapes.nav_doc(
            era,
            nav=nav,
            updated_ts=now,
            detail=shapes.nav_detail(nav=nav, aum=aum, conversions=conversions),
            aum=aum,
        ),
        f"{STATE_DIR}/{MARKER_FILE}": shapes.risk_doc(
            era,
            updated_ts=now,
            symbols=[f.health for f in figures],
            atr=atr,
            fee_pnl=shapes.fee_pnl_block(
                fee_pnl_ratio=0.18, fees=_PLACEHOLDER, pnl=2_150.0, window_days=7
            ),
            dd_state="normal",
            drawdown=drawdown,
            nav_health=shapes.nav_health(now=now, nav_ts=now - 4.0, nav=nav),
            n_positions=len(positions),
            kpis=kpis,
        ),
        f"{STATE_DIR}/router_health.json": shapes.router_doc(
            era, updated_ts=now, entries=[f.router for f in figures]
        ),
        f"{STATE_DIR}/positions_state.json": shapes.positions_state_doc(
            updated_at=now, positions=positions
        ),
        f"{CACHE_DIR}/{FX_FILE}": shapes.fx_cache_doc(era, prices=PRICES, usd_zar=17.42, ts=now),
        f"{CONFIG_DIR}/{HOLDINGS_FILE}": shapes.holdings_doc(HOLDINGS),
    }


def render(doc: Any) -> bytes:
    return orjson.dumps(doc)


@dataclass
class Book:
    """A book on disk. `write_marker` replaces the risk snapshot atomically, like the executor."""

    spec: BookSpec
    root: Path
    files: dict[str, int] = field(default_factory=dict)  # relative path -> bytes
    # Like the executor, every write restamps each per-symbol entry's `updated_ts` (and the
    # snapshot's own): every block the symbol stages read is new. Off, a write changes the
    # fee block alone.
    restamp: bool = False
    _head: bytes = b""
    _tail: bytes = b""
    _stamp: bytes = b""

    @property
    def state_dir(self) -> Path:
        return ExecutorRoot(self.root).state

    @property
    def out_dir(self) -> Path:
        return self.root / "out"

    @property
    def marker_path(self) -> Path:
        return self.state_dir / MARKER_FILE

    @property
    def state_bytes(self) -> int:
        """Bytes of every input file (state dir, price cache, holdings)."""
        return sum(self.files.values())

    @property
    def marker_file_bytes(self) -> int:
        return self.files[f"{STATE_DIR}/{MARKER_FILE}"]

    def payload(self, index: int) -> bytes:
        """The risk snapshot's bytes with sample `index` encoded in `fee_pnl.fees` (and, when
        `restamp`, every `updated_ts` moved on by `index` ms)."""
        data = self._head + repr(marker_value(index)).encode() + self._tail
        if self.restamp and index:
            key, _, value = self._stamp.partition(b":")
            stamp = float(orjson.loads(value)) + index / 1000.0
            data = data.replace(self._stamp, key + b":" + orjson.dumps(stamp))
        return data

    def stage(self, index: int) -> Path:
        """Write the next version to a temp name beside the target (not yet visible)."""
        tmp = self.state_dir / f".{MARKER_FILE}.{index}.tmp"
        with open(tmp, "wb") as fh:
            fh.write(self.payload(index))
        return tmp


def write_book(
    root: Path, spec: BookSpec, *, now: float | None = None, seed: int = 7, restamp: bool = False
) -> Book:
    """Lay the book out under `root` (logs/state, logs/cache, config, out) and return it."""
    stamp_now = float(now if now is not None else round(datetime.now(UTC).timestamp(), 3))
    docs = documents(spec, stamp_now, seed=seed)
    book = Book(spec=spec, root=root, restamp=restamp)
    book._stamp = b'"updated_ts":' + orjson.dumps(stamp_now)
    book.out_dir.mkdir(parents=True, exist_ok=True)
    for rel, doc in docs.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        data = render(doc)
        if rel.endswith(MARKER_FILE):
            head, sep, tail = data.partition(repr(_PLACEHOLDER).encode())
            if not sep or repr(_PLACEHOLDER).encode() in tail:
                raise AssertionError("marker placeholder must occur exactly once")
            book._head, book._tail = head, tail
            data = book.payload(0)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        book.files[rel] = len(data)
    return book
