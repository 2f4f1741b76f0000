"""Synthetic books in the real shapes of the executor's files (docs/CONTRACT_RULES.md, inputs).

`documents(spec, now)` is pure: the JSON of every input file for a book of `n_symbols`
symbols and `n_positions` open positions, shaped like the v7.1 executor
(docs/CONTRACT_RULES.md, executor file shapes):
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
    "BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT", "DOGEUSDT", "ADAUSDT", "LTCUSDT",
    "LINKUSDT", "AVAXUSDT", "DOTUSDT", "TRXUSDT", "MATICUSDT", "ATOMUSDT", "NEARUSDT",
    "APTUSDT", "ARBUSDT", "OPUSDT", "SUIUSDT", "FILUSDT", "INJUSDT", "TIAUSDT", "SEIUSDT",
    "AAVEUSDT", "UNIUSDT", "ETCUSDT", "BCHUSDT", "XLMUSDT", "WLDUSDT", "PEPEUSDT",
)  # fmt: skip
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


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def _health_entry(sym: str, rng: random.Random, now: float) -> dict[str, Any]:
    """One per-symbol execution-health entry, slimmed to the used blocks.

    docs/CONTRACT_RULES.md, executor file shapes: per-symbol health entries.
    """
    ratio = round(rng.uniform(0.5, 1.8), 4)
    regime = ATR_REGIMES[rng.randrange(len(ATR_REGIMES))]
    maker = round(rng.uniform(0.2, 0.8), 4)
    fallback = round(rng.uniform(0.05, 0.6), 4)
    quality = QUALITIES[rng.randrange(len(QUALITIES))]
    return {
        "schema": "execution_health_v1",
        "symbol": sym,
        "updated_ts": now,
        "router": {
            "maker_fill_ratio": maker,
            "fallback_ratio": fallback,
            "slip_q25": round(rng.uniform(0.1, 1.0), 3),
            "slip_q50": round(rng.uniform(1.0, 3.0), 3),
            "slip_q75": round(rng.uniform(3.0, 6.0), 3),
            "policy_quality": quality,
            "policy": {"maker_first": maker > 0.4, "taker_bias": "neutral", "quality": quality},
        },
        "risk": {
            "dd_today_pct": round(rng.uniform(-2.0, 0.5), 4),
            "dd_state": "normal",
            "risk_flags": [],
            "sharpe_state": "neutral",
        },
        "vol": {
            "atr_now": round(rng.uniform(0.2, 2.0), 5),
            "atr_med": round(rng.uniform(0.2, 2.0), 5),
            "atr_ratio": ratio,
            "atr_regime": regime,
        },
    }


def _atr_symbol(entry: dict[str, Any]) -> dict[str, Any]:
    vol = entry["vol"]
    return {"symbol": entry["symbol"], **vol}


def _router_symbol(entry: dict[str, Any], rng: random.Random, now: float) -> dict[str, Any]:
    router = entry["router"]
    return {
        "symbol": entry["symbol"],
        "maker_fill_rate": router["maker_fill_ratio"],
        "fallback_rate": router["fallback_ratio"],
        "slippage_p50": router["slip_q50"],
        "slippage_p95": round(router["slip_q75"] * 1.6, 3),
        "ack_latency_ms": round(rng.uniform(20.0, 180.0), 1),
        "quality": router["policy_quality"],
        "updated_ts": now,
    }


def _position(sym: str, rng: random.Random, now: float) -> dict[str, Any]:
    side = "LONG" if rng.random() < 0.5 else "SHORT"
    entry = round(rng.uniform(0.5, 60000.0), 4)
    mark = round(entry * rng.uniform(0.97, 1.03), 4)
    qty = round(rng.uniform(100.0, 5000.0) / entry, 6)
    signed = qty if side == "LONG" else -qty
    return {
        "symbol": sym,
        "side": side,
        "qty": signed,
        "entry_price": entry,
        "mark_price": mark,
        "unrealized_pnl": round((mark - entry) * signed, 6),
        "realized_pnl": None,
        "notional": round(abs(signed) * mark, 6),
        "leverage": 3.0,
        "ts": _iso(now),
    }


def documents(spec: BookSpec, now: float, *, seed: int = 7) -> dict[str, Any]:
    """Every input file of the book, keyed by its path relative to the book's root."""
    rng = random.Random(seed)  # noqa: S311 - reproducible data, not a secret
    syms = symbols(spec.n_symbols)
    nav = 102_345.67
    peak = 104_000.0
    health = [_health_entry(s, rng, now) for s in syms]
    atr_symbols = [_atr_symbol(e) for e in health]
    router_rows = [_router_symbol(e, rng, now) for e in health]
    open_syms = syms[: spec.n_positions] if spec.n_positions <= len(syms) else syms
    positions = [_position(s, rng, now) for s in open_syms]
    series = [
        {
            "nav": round(nav + 50.0 * rng.uniform(-1, 1), 2),
            "t": _iso(now - 60.0 * (spec.series_points - i)),
            "unrealized_pnl": round(rng.uniform(-200, 200), 2),
            "equity": nav,
            "total_equity": nav,
        }
        for i in range(spec.series_points)
    ]
    drawdown = {
        "dd_pct": round((peak - nav) / peak * 100.0, 4),
        "dd_abs": round(peak - nav, 2),
        "peak": peak,
        "nav": nav,
        "usable": True,
        "drawdown": {"pct": round((peak - nav) / peak * 100.0, 4), "abs": round(peak - nav, 2)},
        "daily_loss": {"pct": 0.42, "daily_peak": 102_800.0, "nav": nav},
    }
    fee_pnl = {"fee_pnl_ratio": 0.18, "fees": _PLACEHOLDER, "pnl": 2_150.0, "window_days": 7}
    router_stats = {
        "maker_fill_ratio": 0.47,
        "fallback_ratio": 0.21,
        "slip_q25": 0.6,
        "slip_q50": 1.8,
        "slip_q75": 3.9,
        "slip_q95": 7.2,
    }
    offexchange = {
        "BTC": {"qty": 0.35, "avg_cost": 61_000.0, "mark": 101_500.0, "usd_value": 35_525.0},
        "XAUT": {"qty": 2.0, "avg_cost": 2_400.0, "mark": 4_010.0, "usd_value": 8_020.0},
        "USDC": {"qty": 5_000.0, "avg_cost": 1.0, "mark": 1.0, "usd_value": 5_000.0},
    }
    aum = {"futures": nav, "offexchange": offexchange, "total": round(nav + 48_545.0, 2)}
    return {
        f"{STATE_DIR}/nav_state.json": {
            "series": series,
            "peak_equity": peak,
            "total_equity": nav,
            "realized_pnl": 310.5,
            "realized_pnl_today": 120.25,
            "unrealized_pnl": -85.4,
            "drawdown": drawdown["dd_pct"],
            "drawdown_pct": drawdown["dd_pct"],
            "drawdown_abs": drawdown["dd_abs"],
            "drawdown_snapshot_at": _iso(now),
            "gross_exposure": round(sum(p["notional"] for p in positions), 2),
            "net_exposure": round(
                sum(p["notional"] * (1 if p["side"] == "LONG" else -1) for p in positions), 2
            ),
            "largest_position_value": max((p["notional"] for p in positions), default=0.0),
            "updated_at": now,
            "age_s": 0.0,
        },
        f"{STATE_DIR}/nav.json": {
            "nav": nav,
            "nav_usd": nav,
            "updated_ts": now,
            "nav_mode": "live_wallet",
            "assets": {"USDT": nav},
            "nav_detail": {
                "source": "live",
                "fresh": True,
                "total_nav": nav,
                "breakdown": {"USDT": nav},
                "asset_breakdown": {"USDT": nav},
                "conversions": {"BTC": {"amount": 0.0, "price": 101_500.0, "value_usd": 0.0}},
                "aum": aum,
            },
            "aum": aum,
        },
        f"{STATE_DIR}/{MARKER_FILE}": {
            "updated_ts": now,
            "symbols": health,
            "dd_state": {"dd_state": "normal", "drawdown": drawdown},
            "atr_regime": "normal",
            "atr": {"atr_regime": "normal", "median_ratio": 1.07, "symbols": atr_symbols},
            "fee_pnl_ratio": 0.18,
            "fee_pnl": fee_pnl,
            "nav_health": {"age_s": 4.0, "sources_ok": True, "fresh": True, "threshold_s": 90},
            "risk_config_meta": {
                "testnet_overrides_active": False,
                "max_nav_drawdown_pct": 0.3,
                "daily_loss_limit_pct": 0.1,
            },
            "kpis_v7": {
                "ts": now,
                "atr_regime": "normal",
                "atr": {"atr_regime": "normal", "median_ratio": 1.07, "symbols": atr_symbols},
                "dd_state": "normal",
                "drawdown": drawdown,
                "fee_pnl_ratio": 0.18,
                "fees": 387.0,
                "pnl": 2_150.0,
                "router_quality": "ok",
                "router_stats": router_stats,
            },
        },
        f"{STATE_DIR}/router_health.json": {
            "updated_ts": now,
            "summary": {
                "updated_ts": now,
                "count": len(router_rows),
                "quality_counts": {"good": 0, "ok": len(router_rows), "degraded": 0, "broken": 0},
                "maker_first_enabled": len(router_rows),
            },
            "symbols": router_rows,
        },
        f"{STATE_DIR}/positions_state.json": {
            "updated_at": _iso(now),
            "updated_ts": _iso(now),
            "positions": positions,
        },
        f"{CACHE_DIR}/{FX_FILE}": {
            "prices": {"BTC": 101_500.0, "ETH": 3_520.0, "USDT": 1.0, "XAUT": 4_010.0},
            "prices_ts": now,
            "usd_zar": 17.42,
            "usd_zar_ts": now,
            "usd_zar_source": "api",
        },
        f"{CONFIG_DIR}/{HOLDINGS_FILE}": {
            "BTC": {"qty": 0.35, "avg_cost": 61_000.0},
            "XAUT": {"qty": 2.0, "avg_cost": 2_400.0},
            "USDC": {"qty": 5_000.0, "avg_cost": 1.0},
        },
    }


def render(doc: Any) -> bytes:
    return orjson.dumps(doc)


@dataclass
class Book:
    """A book on disk. `write_marker` replaces the risk snapshot atomically, like the executor."""

    spec: BookSpec
    root: Path
    files: dict[str, int] = field(default_factory=dict)  # relative path -> bytes
    _head: bytes = b""
    _tail: bytes = b""

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
        """The risk snapshot's bytes with sample `index` encoded in `fee_pnl.fees`."""
        return self._head + repr(marker_value(index)).encode() + self._tail

    def stage(self, index: int) -> Path:
        """Write the next version to a temp name beside the target (not yet visible)."""
        tmp = self.state_dir / f".{MARKER_FILE}.{index}.tmp"
        with open(tmp, "wb") as fh:
            fh.write(self.payload(index))
        return tmp


def write_book(root: Path, spec: BookSpec, *, now: float | None = None, seed: int = 7) -> Book:
    """Lay the book out under `root` (logs/state, logs/cache, config, out) and return it."""
    stamp_now = float(now if now is not None else round(datetime.now(UTC).timestamp(), 3))
    docs = documents(spec, stamp_now, seed=seed)
    book = Book(spec=spec, root=root)
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
