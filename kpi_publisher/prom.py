"""Prometheus text exposition of the published KPIs (`kpis.prom`), for node_exporter's textfile
collector or the loopback /metrics endpoint.

`families()` is pure: the two published documents (plus the publisher's own health) in, a
tuple of metric families out, in a fixed order with samples sorted by label values, so the
same inputs give the same bytes. Every series carries `host` and `account` labels, so the
files of many publishers can be scraped into one Prometheus without collisions. A missing
value (null in kpis_v7) has no sample at all; it is never exported as 0. A family with no
sample is left out whole (node_exporter and Prometheus need no empty families).

Names follow Prometheus conventions: prefix `hedge_kpi_`, the unit in the name (`_usd`,
`_zar`, `_seconds`, `_ratio` for 0..1 fractions, `_bps`, `_pct` for percent), `_total` for
counters.
"""

from __future__ import annotations

import math
import os
import re
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from kpi_publisher import fs
from kpi_publisher.config import PROM_FILE as PROM_FILE
from kpi_publisher.config import Settings
from kpi_publisher.contract import OK, STATUS_WORDS, unpriced_count
from kpi_publisher.parse import mapping, number
from kpi_publisher.pipeline import Outputs

PREFIX = "hedge_kpi_"
DEFAULT_ACCOUNT = "default"
SECONDS_PER_DAY = 86400.0
SOURCE_STATUSES: tuple[str, ...] = STATUS_WORDS  # every word is exported, one-hot
# Error kinds always exported (0 until one happens) so `increase()` sees the first error.
ERROR_KINDS: tuple[str, ...] = ("build", "publish", "prom")
# Per-position series for the largest rows only (positions_v7 lists them largest first; the
# totals cover the whole book): at most 3 x this many series, whatever the book's size.
MAX_POSITION_SERIES = 100
# A label value (a state, a regime, a quality) is exported as given only when it reads as a
# word; any other text (markup, a sentence, an address) is exported as OTHER_LABEL, so what a
# state file holds never becomes an arbitrary label value.
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,31}")
OTHER_LABEL = "other"
# `quartile` label values; not `quantile`, which Prometheus reserves for summaries.
SLIPPAGE_QUARTILES: tuple[tuple[str, str], ...] = (
    ("q25", "slip_q25_bps"),
    ("q50", "slip_q50_bps"),
    ("q75", "slip_q75_bps"),
)

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class PublisherHealth:
    """The publisher's own counters. Times are epoch seconds; durations seconds."""

    publishes_total: int = 0
    last_duration_s: float | None = None
    last_publish_ts: float | None = None
    errors_by_kind: Mapping[str, int] = field(default_factory=dict)

    def published(self, *, duration_s: float, ts: float) -> PublisherHealth:
        """The health after one more successful publish that took `duration_s`, ending at `ts`."""
        return replace(
            self,
            publishes_total=self.publishes_total + 1,
            last_duration_s=duration_s,
            last_publish_ts=ts,
        )

    def failed(self, kind: str) -> PublisherHealth:
        """The health after one more error of `kind` (build | publish | prom | ...)."""
        errors = dict(self.errors_by_kind)
        errors[kind] = errors.get(kind, 0) + 1
        return replace(self, errors_by_kind=errors)


@dataclass(frozen=True)
class Family:
    """One metric family: its exposition name (counters end in `_total`), type, help, samples."""

    name: str
    kind: str  # "gauge" | "counter"
    help: str
    samples: tuple[tuple[Labels, float], ...]


# The catalogue: every family we may export, in output order -> (type, extra labels, help).
CATALOGUE: dict[str, tuple[str, tuple[str, ...], str]] = {
    "generated_timestamp_seconds": ("gauge", (), "Build time of kpis_v7.json (epoch seconds)."),
    "nav_usd": ("gauge", (), "Net asset value in USD."),
    "nav_zar": ("gauge", (), "Net asset value in ZAR (nav_usd x usd_zar)."),
    "nav_age_seconds": ("gauge", (), "NAV age at build time, from the NAV file's own timestamp."),
    "nav_fresh": ("gauge", (), "1 when the NAV age is within nav_fresh_s, else 0."),
    "nav_peak_usd": ("gauge", (), "Peak equity in USD."),
    "unrealized_pnl_usd": ("gauge", (), "Unrealized PnL in USD (NAV files)."),
    "realized_pnl_today_usd": ("gauge", (), "Realized PnL today in USD (NAV files)."),
    "usd_zar_rate": ("gauge", (), "USD to ZAR rate used for every ZAR value (ZAR per USD)."),
    "drawdown_pct": ("gauge", (), "Portfolio drawdown in percent (1.14 = 1.14 %)."),
    "drawdown_abs_usd": ("gauge", (), "Portfolio drawdown in USD."),
    "daily_loss_pct": ("gauge", (), "Daily loss in percent."),
    "nav_pnl_usd": ("gauge", ("window",), "NAV change in USD over a window, from the history."),
    "nav_pnl_pct": ("gauge", ("window",), "NAV change in percent over a window."),
    "nav_max_drawdown_pct": ("gauge", ("window",), "Largest peak-to-trough fall in a window, %."),
    "nav_history_drawdown_pct": ("gauge", (), "Fall from the history's all-time peak, %."),
    "nav_sharpe": ("gauge", ("window",), "Annualised Sharpe ratio of daily returns (rf 0)."),
    "nav_history_points": ("gauge", (), "NAV points held in the history."),
    "dd_state": ("gauge", ("state",), "Drawdown state of the executor: 1 for the current state."),
    "atr_ratio": ("gauge", (), "Median ATR ratio across symbols."),
    "atr_regime": ("gauge", ("regime",), "ATR regime: 1 for the current regime."),
    "gross_exposure_pct": ("gauge", (), "Gross position notional in percent of NAV."),
    "net_exposure_pct": ("gauge", (), "Net (long minus short) notional in percent of NAV."),
    "var_pct": ("gauge", (), "Portfolio value at risk in percent of NAV."),
    "var_usd": ("gauge", (), "Portfolio value at risk in USD."),
    "var_limit_pct": ("gauge", (), "The executor's portfolio VaR limit in percent of NAV."),
    "cvar_pct": ("gauge", (), "Worst per-symbol CVaR in percent of NAV."),
    "router_maker_fill_ratio": ("gauge", (), "Maker fill rate of the order router (0..1)."),
    "router_fallback_ratio": ("gauge", (), "Share of orders that fell back to taker (0..1)."),
    "router_slippage_bps": ("gauge", ("quartile",), "Router slippage quartiles in basis points."),
    "router_symbols_used": ("gauge", (), "Symbols aggregated from router_health."),
    "router_quality": ("gauge", ("quality",), "Router quality label: 1 for the current label."),
    "router_symbol_maker_fill_ratio": ("gauge", ("symbol",), "Maker fill rate of a symbol."),
    "router_symbol_fallback_ratio": ("gauge", ("symbol",), "Taker fallback share of a symbol."),
    "router_symbol_slippage_bps": ("gauge", ("symbol",), "Median slippage of a symbol in bps."),
    "router_symbol_samples": ("gauge", ("symbol",), "Router events counted for a symbol."),
    "fee_pnl_ratio": ("gauge", (), "Fees divided by PnL over the fee window."),
    "fees_usd": ("gauge", (), "Fees in USD over the fee window."),
    "fees_pnl_usd": ("gauge", (), "PnL in USD over the fee window."),
    "fees_window_seconds": ("gauge", (), "Length of the fee window (window_days x 86400)."),
    "aum_total_usd": ("gauge", (), "Assets under management in USD (sum of the slices)."),
    "aum_total_zar": ("gauge", (), "Assets under management in ZAR."),
    "aum_stated_total_usd": ("gauge", (), "AUM total as the NAV file states it, in USD."),
    "aum_slice_usd": ("gauge", ("asset",), "AUM slice value in USD (Futures wallet or asset)."),
    "aum_slice_zar": ("gauge", ("asset",), "AUM slice value in ZAR."),
    "aum_slice_qty": ("gauge", ("asset",), "AUM slice quantity in units of the asset."),
    "aum_slice_pnl_usd": ("gauge", ("asset",), "AUM slice PnL in USD."),
    "aum_unpriced_assets": ("gauge", (), "Assets held that could not be valued."),
    "symbol_atr_ratio": ("gauge", ("symbol",), "ATR ratio of a symbol."),
    "symbol_dd_today_pct": ("gauge", ("symbol",), "Drawdown today of a symbol in percent."),
    "symbol_cvar_pct": ("gauge", ("symbol",), "CVaR of a symbol in percent of NAV."),
    "position_notional_usd": ("gauge", ("symbol", "side"), "Position notional in USD (>= 0)."),
    "position_pnl_usd": ("gauge", ("symbol", "side"), "Unrealized PnL of a position in USD."),
    "position_qty": ("gauge", ("symbol", "side"), "Position size, signed by side."),
    "positions_open": ("gauge", (), "Open positions (count)."),
    "positions_gross_notional_usd": ("gauge", (), "Sum of position notionals in USD."),
    "positions_net_notional_usd": ("gauge", (), "Position notionals signed by side, in USD."),
    "positions_pnl_usd": ("gauge", (), "Sum of position PnL in USD."),
    "source_up": ("gauge", ("source",), "1 when the input source's status is ok, else 0."),
    "source_status": ("gauge", ("source", "status"), "Input source status, one-hot."),
    "source_age_seconds": ("gauge", ("source",), "Age of an input source at build time."),
    "publishes_total": ("counter", (), "Successful publishes since the publisher started."),
    "last_publish_timestamp_seconds": ("gauge", (), "End of the last successful publish."),
    "last_publish_duration_seconds": ("gauge", (), "Duration of the last successful publish."),
    "publish_errors_total": ("counter", ("kind",), "Publisher errors by kind since start."),
}
# risk fields exported under their own names (percent of NAV, or USD for var_usd)
RISK_EXTRAS = (
    "gross_exposure_pct",
    "net_exposure_pct",
    "var_pct",
    "var_usd",
    "var_limit_pct",
    "cvar_pct",
)
FAMILY_NAMES: tuple[str, ...] = tuple(PREFIX + name for name in CATALOGUE)


class _Samples:
    """Samples per family; a repeated label set (duplicate input rows) is summed, never doubled
    (a sum past the float range is left out when the families are built)."""

    def __init__(self, base: Labels) -> None:
        self.base = base
        self.by_family: dict[str, dict[Labels, float]] = {name: {} for name in CATALOGUE}

    def add(self, name: str, value: Any, **labels: Any) -> None:
        """Add a sample when `value` is a number; missing values add nothing."""
        val = number(value)
        if val is None:
            return
        _, extra, _ = CATALOGUE[name]
        key = self.base + tuple((k, str(labels[k])) for k in extra)
        bucket = self.by_family[name]
        bucket[key] = bucket.get(key, 0.0) + val

    def flag(self, name: str, value: Any, **labels: Any) -> None:
        """A 0/1 sample from a boolean; anything else is missing."""
        if isinstance(value, bool):
            self.add(name, 1.0 if value else 0.0, **labels)

    def label_one(self, name: str, label: str, value: Any) -> None:
        """A one-sample family whose label carries a string value (state, regime, quality):
        the value when it is a word, else OTHER_LABEL."""
        if isinstance(value, str) and value:
            self.add(name, 1.0, **{label: value if _WORD.fullmatch(value) else OTHER_LABEL})


def _nav(s: _Samples, kpis: Mapping[str, Any]) -> None:
    nav = mapping(kpis.get("nav"))
    s.add("nav_usd", nav.get("nav_usd"))
    s.add("nav_zar", nav.get("nav_zar"))
    s.add("nav_age_seconds", nav.get("age_s"))
    s.flag("nav_fresh", nav.get("fresh"))
    s.add("nav_peak_usd", nav.get("peak_usd"))
    s.add("unrealized_pnl_usd", nav.get("unrealized_pnl_usd"))
    s.add("realized_pnl_today_usd", nav.get("realized_pnl_today_usd"))


def _risk(s: _Samples, kpis: Mapping[str, Any]) -> None:
    risk = mapping(kpis.get("risk"))
    s.add("drawdown_pct", risk.get("drawdown_pct"))
    s.add("drawdown_abs_usd", risk.get("drawdown_abs_usd"))
    s.add("daily_loss_pct", risk.get("daily_loss_pct"))
    s.label_one("dd_state", "state", risk.get("dd_state"))
    s.add("atr_ratio", risk.get("atr_ratio"))
    s.label_one("atr_regime", "regime", risk.get("atr_regime"))
    for name in RISK_EXTRAS:
        s.add(name, risk.get(name))


def _performance(s: _Samples, kpis: Mapping[str, Any]) -> None:
    """The history's figures; absent (no samples) when the publisher keeps no history."""
    performance = mapping(kpis.get("performance"))
    for window, entry in mapping(performance.get("windows")).items():
        row = mapping(entry)
        s.add("nav_pnl_usd", row.get("pnl_usd"), window=window)
        s.add("nav_pnl_pct", row.get("pnl_pct"), window=window)
        s.add("nav_max_drawdown_pct", row.get("max_drawdown_pct"), window=window)
    s.add("nav_history_drawdown_pct", performance.get("drawdown_pct"))
    for window, entry in mapping(performance.get("ratios")).items():
        s.add("nav_sharpe", mapping(entry).get("sharpe"), window=window)
    s.add("nav_history_points", mapping(performance.get("history")).get("points"))


def _router_fees(s: _Samples, kpis: Mapping[str, Any]) -> None:
    router = mapping(kpis.get("router"))
    s.add("router_maker_fill_ratio", router.get("maker_fill_rate"))
    s.add("router_fallback_ratio", router.get("fallback_ratio"))
    for quartile, key in SLIPPAGE_QUARTILES:
        s.add("router_slippage_bps", router.get(key), quartile=quartile)
    s.add("router_symbols_used", router.get("symbols_used"))
    s.label_one("router_quality", "quality", router.get("quality"))
    for symbol, entry in mapping(router.get("symbols")).items():
        row = mapping(entry)
        s.add("router_symbol_maker_fill_ratio", row.get("maker_fill_rate"), symbol=symbol)
        s.add("router_symbol_fallback_ratio", row.get("fallback_ratio"), symbol=symbol)
        s.add("router_symbol_slippage_bps", row.get("slip_q50_bps"), symbol=symbol)
        s.add("router_symbol_samples", row.get("samples"), symbol=symbol)
    fees = mapping(kpis.get("fees"))
    s.add("fee_pnl_ratio", fees.get("fee_pnl_ratio"))
    s.add("fees_usd", fees.get("fees_usd"))
    s.add("fees_pnl_usd", fees.get("pnl_usd"))
    days = number(fees.get("window_days"))
    s.add("fees_window_seconds", None if days is None else days * SECONDS_PER_DAY)


def _aum(s: _Samples, kpis: Mapping[str, Any]) -> None:
    aum = mapping(kpis.get("aum"))
    s.add("usd_zar_rate", aum.get("usd_zar"))
    s.add("aum_total_usd", aum.get("total_usd"))
    s.add("aum_total_zar", aum.get("total_zar"))
    s.add("aum_stated_total_usd", aum.get("stated_total_usd"))
    slices = aum.get("slices")
    for item in slices if isinstance(slices, list) else ():
        row = mapping(item)
        asset = row.get("label")
        if not isinstance(asset, str) or not asset:
            continue
        s.add("aum_slice_usd", row.get("usd"), asset=asset)
        s.add("aum_slice_zar", row.get("zar"), asset=asset)
        s.add("aum_slice_qty", row.get("qty"), asset=asset)
        s.add("aum_slice_pnl_usd", row.get("pnl_usd"), asset=asset)
    s.add("aum_unpriced_assets", unpriced_count(aum.get("unpriced")))


def _symbols(s: _Samples, kpis: Mapping[str, Any]) -> None:
    for symbol, entry in mapping(kpis.get("symbols")).items():
        row = mapping(entry)
        s.add("symbol_atr_ratio", row.get("atr_ratio"), symbol=symbol)
        s.add("symbol_dd_today_pct", row.get("dd_today_pct"), symbol=symbol)
        s.add("symbol_cvar_pct", row.get("cvar_pct"), symbol=symbol)


def _positions(s: _Samples, doc: Mapping[str, Any]) -> None:
    rows = doc.get("positions")
    for item in rows[:MAX_POSITION_SERIES] if isinstance(rows, list) else ():
        row = mapping(item)
        symbol, side = row.get("symbol"), row.get("side")
        if not isinstance(symbol, str) or not symbol or not isinstance(side, str):
            continue
        s.add("position_notional_usd", row.get("notional"), symbol=symbol, side=side)
        s.add("position_pnl_usd", row.get("pnl"), symbol=symbol, side=side)
        s.add("position_qty", row.get("qty"), symbol=symbol, side=side)
    totals = mapping(doc.get("totals"))
    s.add("positions_open", totals.get("count"))
    s.add("positions_gross_notional_usd", totals.get("gross_notional_usd"))
    s.add("positions_net_notional_usd", totals.get("net_notional_usd"))
    s.add("positions_pnl_usd", totals.get("pnl_usd"))


def _sources(s: _Samples, kpis: Mapping[str, Any]) -> None:
    for source, entry in mapping(kpis.get("sources")).items():
        row = mapping(entry)
        status = row.get("status")
        if isinstance(status, str) and status:
            s.add("source_up", 1.0 if status == OK else 0.0, source=source)
            for known in dict.fromkeys((*SOURCE_STATUSES, status)):
                s.add("source_status", 1.0 if known == status else 0.0, source=source, status=known)
        s.add("source_age_seconds", row.get("age_s"), source=source)


def _health(s: _Samples, health: PublisherHealth) -> None:
    s.add("publishes_total", health.publishes_total)
    s.add("last_publish_timestamp_seconds", health.last_publish_ts)
    s.add("last_publish_duration_seconds", health.last_duration_s)
    for kind in dict.fromkeys((*ERROR_KINDS, *sorted(health.errors_by_kind))):
        s.add("publish_errors_total", health.errors_by_kind.get(kind, 0), kind=kind)


def families(
    outputs: Outputs | None, *, host: str, account: str, health: PublisherHealth | None
) -> tuple[Family, ...]:
    """Every family that has at least one sample, in catalogue order, samples sorted. With no
    outputs (nothing published yet), the publisher's health alone: its error counters and
    `publishes_total` 0 are what tell a publisher that never managed a publish."""
    s = _Samples((("host", host), ("account", account)))
    if outputs is not None:
        kpis = mapping(outputs.kpis)
        s.add("generated_timestamp_seconds", kpis.get("generated_at"))
        _nav(s, kpis)
        _risk(s, kpis)
        _performance(s, kpis)
        _router_fees(s, kpis)
        _aum(s, kpis)
        _symbols(s, kpis)
        _positions(s, mapping(outputs.positions))
        _sources(s, kpis)
    if health is not None:
        _health(s, health)
    out: list[Family] = []
    for name, (kind, _, help_text) in CATALOGUE.items():
        # A sum of duplicate rows past the float range is missing, as every overflow is: no
        # sample (never `inf`).
        samples = tuple(sorted((k, v) for k, v in s.by_family[name].items() if math.isfinite(v)))
        if samples:
            out.append(Family(PREFIX + name, kind, help_text, samples))
    return tuple(out)


# -- text exposition format 0.0.4 ------------------------------------------------------------


def escape_label_value(value: str) -> str:
    """Backslash, double quote and newline escaped, as the exposition format requires."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float) -> str:
    """Shortest round-tripping decimal; integral values without a trailing `.0`; never -0."""
    text = repr(float(value) + 0.0)
    return text[:-2] if text.endswith(".0") else text


def encode(fams: Iterable[Family]) -> bytes:
    """The families as UTF-8 exposition text (no sample timestamps: the textfile collector
    refuses them), ending in a newline."""
    lines: list[str] = []
    for fam in fams:
        lines.append(f"# HELP {fam.name} {escape_help(fam.help)}")
        lines.append(f"# TYPE {fam.name} {fam.kind}")
        for labels, value in fam.samples:
            body = ",".join(f'{k}="{escape_label_value(v)}"' for k, v in labels)
            lines.append(f"{fam.name}{{{body}}} {format_value(value)}")
    return ("\n".join(lines) + "\n").encode("utf-8") if lines else b""


def render_prom(
    outputs: Outputs, *, host: str, account: str, health: PublisherHealth | None
) -> bytes:
    """kpis.prom bytes for these outputs; deterministic for the same arguments."""
    return encode(families(outputs, host=host, account=account, health=health))


# -- the shell edge ------------------------------------------------------------------------------


def host_account(settings: Settings) -> tuple[str, str]:
    """The (host, account) labels: the configured ones, else the hostname and "default"."""
    return (
        settings.host_label or socket.gethostname(),
        settings.account_label or DEFAULT_ACCOUNT,
    )


def publish_prom(outputs: Outputs, settings: Settings, health: PublisherHealth | None) -> None:
    """Atomically replace `<prom_dir>/kpis.prom`; nothing when prom_dir is unset.

    The temp file is dot-prefixed and ends in `.tmp`, so the textfile collector (which reads
    `*.prom`) never sees a partial file. Raises OSError; the old file then stays intact.
    """
    if settings.prom_dir is None:
        return
    host, account = host_account(settings)
    data = render_prom(outputs, host=host, account=account, health=health)
    os.makedirs(settings.prom_dir, exist_ok=True)
    fs.write_atomic(settings.prom_dir / PROM_FILE, data, fsync=settings.fsync)
