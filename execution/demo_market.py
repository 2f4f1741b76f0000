"""The demo market: a pure step from one executor cycle to the next.

No clock and no filesystem here: `now` (epoch s) and a seeded `random.Random` come in, a new
frozen `World` goes out. The NAV comes from a `NavSource` (the real NAV series replayed point
by point, or a seeded random walk); marks drift with the NAV's own returns plus noise;
positions open, move and close; router statistics and ATR ratios wander inside plausible
bounds; drawdown is measured from the NAV's running peak.
"""

from __future__ import annotations

import json
import math
import random
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

NAV_LOG_CAP = 720  # the real executor's NAV_LOG_MAX_POINTS
MAX_OPEN = 5
MAX_HOLD_CYCLES = 12  # a position is closed at the latest after this many cycles
P_OPEN = 0.25  # chance per cycle of opening a position in a flat symbol
P_CLOSE = 0.10  # chance per cycle and open position of closing it
MARK_BETA = 8.0  # marks move this many times the NAV's log return, plus noise
NAV_LAG_S = (0.2, 1.5)  # seconds from the NAV observation to the cycle's writes
RANDOM_WALK_SIGMA = 0.0006  # per-cycle log-return sigma of the random-walk NAV
DD_CAUTIOUS_PCT = 0.25  # demo label thresholds on the percent drawdown
DD_DEFENSIVE_PCT = 0.75
QTY_DECIMALS = {"BTCUSDT": 3, "ETHUSDT": 3, "LTCUSDT": 3, "LINKUSDT": 2, "SUIUSDT": 1, "WIFUSDT": 1}


DATA_DIR = Path(__file__).resolve().parent / "data"


def data_bytes(name: str) -> bytes:
    """The exact bytes of a file shipped in execution/data/ (copied verbatim into a demo root)."""
    return (DATA_DIR / name).read_bytes()


def load_data(name: str) -> Any:
    """A JSON file shipped in execution/data/."""
    return json.loads(data_bytes(name))


@dataclass(frozen=True)
class MarketSeed:
    """The starting point shipped in execution/data/market_seed.json (see its README)."""

    marks_usd: Mapping[str, float]
    atr_med_pct: Mapping[str, float]  # ATR in percent of price
    open_positions: tuple[Mapping[str, Any], ...]
    fees_usd: float
    gross_pnl_usd: float
    window_days: int
    fee_rate: float  # fraction of traded notional
    median_entry_notional_usd: float

    @classmethod
    def load(cls, doc: Mapping[str, Any] | None = None) -> MarketSeed:
        d = doc if doc is not None else load_data("market_seed.json")
        window = d["fee_window"]
        return cls(
            marks_usd={str(k): float(v) for k, v in d["marks_usd"].items()},
            atr_med_pct={str(k): float(v) for k, v in d["atr_med_pct"].items()},
            open_positions=tuple(d["open_positions"]),
            fees_usd=float(window["fees_usd"]),
            gross_pnl_usd=float(window["gross_pnl_usd"]),
            window_days=int(window["window_days"]),
            fee_rate=float(d["fee_rate"]),
            median_entry_notional_usd=float(d["median_entry_notional_usd"]),
        )


@dataclass(frozen=True)
class Position:
    """An open futures position; qty is signed contracts (negative = SHORT), prices in USD."""

    symbol: str
    qty: float
    entry_price: float
    leverage: float
    opened_cycle: int

    @property
    def side(self) -> str:
        return "LONG" if self.qty > 0 else "SHORT"

    def pnl_usd(self, mark: float) -> float:
        """Unrealised PnL in USD at `mark`."""
        return (mark - self.entry_price) * self.qty


@dataclass(frozen=True)
class RouterStats:
    """One symbol's 7-day router effectiveness: fractions 0..1, slippage in bps, latency in ms."""

    maker_fill_rate: float
    fallback_rate: float
    slippage_p50_bps: float
    slippage_p95_bps: float
    ack_latency_ms: float
    event_count: int


@dataclass(frozen=True)
class World:
    """Everything the executor knows after one cycle. Money in USD, times in epoch seconds."""

    cycle: int
    now: float  # when this cycle's files are written
    nav_t: float  # when the NAV was observed: early in the cycle, a little before `now`
    nav_usd: float
    nav_index: int  # index into the replayed series (-1 for the random walk)
    peak_usd: float  # running peak of the NAV since the start
    day: str  # UTC day of `now`, YYYY-MM-DD
    daily_peak_usd: float  # running peak since UTC midnight
    marks: Mapping[str, float]
    atr_med_pct: Mapping[str, float]
    atr_ratio: Mapping[str, float]
    router: Mapping[str, RouterStats]
    positions: tuple[Position, ...]
    fees_usd: float  # fee window
    gross_pnl_usd: float  # realised PnL over the fee window
    window_days: int
    realized_today_usd: float
    symbol_pnl_today_usd: Mapping[str, float]  # realised today per symbol
    nav_log: tuple[tuple[float, float, float], ...]  # (t, nav, unrealized_pnl), last 720
    prices: Mapping[str, float]  # price cache: BTC, ETH, USDT, XAUT, USDC in USD
    usd_zar: float
    events: tuple[str, ...] = ()  # what happened in this cycle: "open X", "close X"

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(self.marks)

    @property
    def unrealized_usd(self) -> float:
        return sum(p.pnl_usd(self.marks[p.symbol]) for p in self.positions)

    @property
    def dd_abs_usd(self) -> float:
        return self.peak_usd - self.nav_usd

    @property
    def dd_pct(self) -> float:
        """Drawdown from the running peak, in percent (1.14 = 1.14 %)."""
        return (self.peak_usd - self.nav_usd) / self.peak_usd * 100.0 if self.peak_usd > 0 else 0.0

    @property
    def daily_loss_pct(self) -> float:
        """Loss from today's peak, in percent."""
        peak = self.daily_peak_usd
        return (peak - self.nav_usd) / peak * 100.0 if peak > 0 else 0.0

    @property
    def dd_state(self) -> str:
        """The demo's portfolio drawdown label (lower-case, like the real risk engine's)."""
        if self.dd_pct >= DD_DEFENSIVE_PCT:
            return "defensive"
        if self.dd_pct >= DD_CAUTIOUS_PCT:
            return "cautious"
        return "normal"

    @property
    def fee_pnl_ratio(self) -> float | None:
        """fees / |gross realised PnL| over the window; None when the PnL is about zero."""
        return self.fees_usd / abs(self.gross_pnl_usd) if abs(self.gross_pnl_usd) > 1e-9 else None

    @property
    def median_atr_ratio(self) -> float:
        return float(statistics.median(self.atr_ratio.values()))

    def dd_today_pct(self, symbol: str) -> float:
        """A symbol's loss today (realised + unrealised) in percent of NAV; 0.0 or negative."""
        pnl = self.symbol_pnl_today_usd.get(symbol, 0.0)
        pnl += sum(p.pnl_usd(self.marks[symbol]) for p in self.positions if p.symbol == symbol)
        return min(0.0, pnl / self.nav_usd * 100.0) if self.nav_usd > 0 else 0.0


def atr_regime(ratio: float | None) -> str:
    """The executor's regime labels: quiet < 0.7 <= normal < 1.5 <= hot < 2.5 <= panic."""
    if ratio is None:
        return "unknown"
    if ratio < 0.7:
        return "quiet"
    if ratio < 1.5:
        return "normal"
    return "hot" if ratio < 2.5 else "panic"


def router_quality(maker: float, fallback: float, slip_p50_bps: float) -> str:
    """The executor's router label (poor / good / degraded / ok rules of its flat KPIs)."""
    if maker < 0.35 or fallback > 0.6 or slip_p50_bps > 6.0:
        return "poor"
    if maker >= 0.55 and fallback <= 0.25:
        return "good"
    return "degraded" if fallback > 0.35 else "ok"


def policy_quality(stats: RouterStats) -> str:
    """The router policy label per symbol (good / ok / degraded / broken)."""
    if stats.fallback_rate > 0.6 or stats.maker_fill_rate < 0.25:
        return "broken"
    if stats.fallback_rate > 0.35 or stats.slippage_p50_bps > 4.0:
        return "degraded"
    return "good" if stats.maker_fill_rate >= 0.55 else "ok"


class NavSource:
    """Where each cycle's NAV comes from: the real series, replayed, or a seeded random walk."""

    def __init__(self, kind: str, series: Sequence[Mapping[str, Any]] | None = None) -> None:
        if kind not in ("replay", "random"):
            raise ValueError(f"nav source must be replay or random, got {kind!r}")
        self.kind = kind
        raw = series if series is not None else load_data("nav_log.json")
        self.series: tuple[float, ...] = tuple(float(p["nav"]) for p in raw)
        if not self.series:
            raise ValueError("the NAV series is empty")

    def first(self) -> tuple[float, int]:
        return self.series[0], 0 if self.kind == "replay" else -1

    def next(self, nav_usd: float, index: int, rng: random.Random) -> tuple[float, int]:
        """The NAV of the next cycle and its series index (wrapping at the end)."""
        if self.kind == "replay":
            index = (index + 1) % len(self.series)
            return self.series[index], index
        return nav_usd * math.exp(rng.gauss(0.0, RANDOM_WALK_SIGMA)), -1


def _utc_day(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d")


def _clamp(x: float, lo: float, hi: float) -> float:
    return min(hi, max(lo, x))


def _initial_router(rng: random.Random) -> RouterStats:
    p50 = rng.uniform(0.8, 3.0)
    return RouterStats(
        maker_fill_rate=rng.uniform(0.45, 0.75),
        fallback_rate=rng.uniform(0.08, 0.3),
        slippage_p50_bps=p50,
        slippage_p95_bps=p50 * rng.uniform(1.8, 3.0),
        ack_latency_ms=rng.uniform(80.0, 400.0),
        event_count=rng.randint(20, 120),
    )


def _drift_router(s: RouterStats, rng: random.Random, traded: bool) -> RouterStats:
    p50 = _clamp(s.slippage_p50_bps + rng.gauss(0.0, 0.25), 0.1, 9.0)
    return RouterStats(
        maker_fill_rate=_clamp(s.maker_fill_rate + rng.gauss(0.0, 0.03), 0.15, 0.97),
        fallback_rate=_clamp(s.fallback_rate + rng.gauss(0.0, 0.03), 0.01, 0.75),
        slippage_p50_bps=p50,
        slippage_p95_bps=_clamp(p50 * rng.uniform(1.8, 3.0), p50, 30.0),
        ack_latency_ms=_clamp(s.ack_latency_ms * math.exp(rng.gauss(0.0, 0.1)), 30.0, 2000.0),
        event_count=s.event_count + (2 if traded else 0),
    )


def initial_world(now: float, rng: random.Random, nav_source: NavSource, seed: MarketSeed) -> World:
    """Cycle 0: the real marks, open positions and fee window of the market seed."""
    prices_doc = load_data("coingecko_cache.json")
    marks = dict(seed.marks_usd)
    nav, index = nav_source.first()
    positions = tuple(
        Position(
            str(p["symbol"]), float(p["qty"]), float(p["entry_price"]), float(p["leverage"]), 0
        )
        for p in seed.open_positions
    )
    prices = {str(k): float(v) for k, v in prices_doc["prices"].items()}
    prices.setdefault("USDC", 1.0)
    world = World(
        cycle=0,
        now=now,
        nav_t=now - rng.uniform(*NAV_LAG_S),
        nav_usd=nav,
        nav_index=index,
        peak_usd=nav,
        day=_utc_day(now),
        daily_peak_usd=nav,
        marks=marks,
        atr_med_pct={s: seed.atr_med_pct.get(s, 0.6) for s in marks},
        atr_ratio={s: rng.uniform(0.8, 1.3) for s in marks},
        router={s: _initial_router(rng) for s in marks},
        positions=positions,
        fees_usd=seed.fees_usd,
        gross_pnl_usd=seed.gross_pnl_usd,
        window_days=seed.window_days,
        realized_today_usd=0.0,
        symbol_pnl_today_usd={},
        nav_log=(),
        prices=prices,
        usd_zar=float(prices_doc["usd_zar"]),
    )
    return replace(
        world, nav_log=((world.nav_t, nav, world.unrealized_usd),), prices=_price_cache(world)
    )


def _price_cache(w: World) -> dict[str, float]:
    out = dict(w.prices)
    if "BTCUSDT" in w.marks:
        out["BTC"] = w.marks["BTCUSDT"]
    if "ETHUSDT" in w.marks:
        out["ETH"] = w.marks["ETHUSDT"]
    return out


def _round_qty(symbol: str, qty: float) -> float:
    decimals = QTY_DECIMALS.get(symbol, 3)
    step = 10.0**-decimals
    return round(max(step, round(qty, decimals)), decimals)


def step(
    w: World, now: float, rng: random.Random, nav_source: NavSource, seed: MarketSeed
) -> World:
    """The next cycle: new NAV, drifted marks/ATR/router, positions opened and closed."""
    fee_rate = seed.fee_rate
    median_notional = seed.median_entry_notional_usd
    nav, index = nav_source.next(w.nav_usd, w.nav_index, rng)
    nav_ret = math.log(nav / w.nav_usd) if nav > 0 and w.nav_usd > 0 else 0.0

    atr_ratio = {
        s: _clamp(math.exp(0.95 * math.log(r) + rng.gauss(0.0, 0.05)), 0.3, 3.2)
        for s, r in w.atr_ratio.items()
    }
    marks = {}
    for s, m in w.marks.items():
        sigma = w.atr_med_pct[s] / 100.0 * 0.25 * atr_ratio[s]
        marks[s] = m * math.exp(MARK_BETA * nav_ret + rng.gauss(0.0, sigma))

    day = _utc_day(now)
    new_day = day != w.day
    realized_today = 0.0 if new_day else w.realized_today_usd
    symbol_today: dict[str, float] = {} if new_day else dict(w.symbol_pnl_today_usd)
    fees, gross = w.fees_usd, w.gross_pnl_usd
    events: list[str] = []
    traded: set[str] = set()

    kept: list[Position] = []
    for p in w.positions:
        age = w.cycle + 1 - p.opened_cycle
        if age >= MAX_HOLD_CYCLES or rng.random() < P_CLOSE:
            pnl = p.pnl_usd(marks[p.symbol])
            fees += abs(p.qty) * marks[p.symbol] * fee_rate
            gross += pnl
            realized_today += pnl
            symbol_today[p.symbol] = symbol_today.get(p.symbol, 0.0) + pnl
            events.append(f"close {p.symbol}")
            traded.add(p.symbol)
        else:
            kept.append(p)

    flat = [s for s in marks if all(p.symbol != s for p in kept) and s not in traded]
    want_open = flat and len(kept) < MAX_OPEN and (rng.random() < P_OPEN or not kept)
    if want_open:
        symbol = rng.choice(flat)
        direction = 1.0 if rng.random() < 0.5 else -1.0
        notional = median_notional * math.exp(rng.gauss(0.0, 0.5))
        slip = w.router[symbol].slippage_p50_bps / 1e4
        entry = marks[symbol] * (1.0 + direction * slip)
        qty = direction * _round_qty(symbol, notional / marks[symbol])
        kept.append(Position(symbol, qty, entry, float(rng.choice((2, 3, 5))), w.cycle + 1))
        fees += abs(qty) * entry * fee_rate
        events.append(f"open {symbol}")
        traded.add(symbol)

    router = {s: _drift_router(r, rng, s in traded) for s, r in w.router.items()}
    prices = dict(w.prices)
    prices["XAUT"] = prices.get("XAUT", 4000.0) * math.exp(rng.gauss(0.0, 0.0008))
    prices["USDT"] = _clamp(prices.get("USDT", 1.0) + rng.gauss(0.0, 0.0001), 0.998, 1.001)
    prices["USDC"] = _clamp(prices.get("USDC", 1.0) + rng.gauss(0.0, 0.0001), 0.998, 1.001)

    nxt = replace(
        w,
        cycle=w.cycle + 1,
        now=now,
        nav_t=now - rng.uniform(*NAV_LAG_S),
        nav_usd=nav,
        nav_index=index,
        peak_usd=max(w.peak_usd, nav),
        day=day,
        daily_peak_usd=nav if new_day else max(w.daily_peak_usd, nav),
        marks=marks,
        atr_ratio=atr_ratio,
        router=router,
        positions=tuple(kept),
        fees_usd=fees,
        gross_pnl_usd=gross,
        realized_today_usd=realized_today,
        symbol_pnl_today_usd=symbol_today,
        prices=prices,
        usd_zar=w.usd_zar * math.exp(rng.gauss(0.0, 0.0005)),
        events=tuple(events),
    )
    nxt = replace(nxt, prices=_price_cache(nxt))
    return replace(nxt, nav_log=(*w.nav_log, (nxt.nav_t, nav, nxt.unrealized_usd))[-NAV_LOG_CAP:])
