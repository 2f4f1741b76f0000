"""The sync side of the executor: `nav_state.json` and `positions_state.json`.

What the real sync writer got wrong, and what this one does instead:

- `age_s` was the constant 0.0. Here `updated_at` is the time of the NAV point the file
  carries (so any reader's age of the file is the age of the NAV, even if this writer keeps
  running after the executor stopped) and `age_s` is that age at the moment of writing;
  `written_at` is the write time.
- AUM was left to each reader. Here `aum.assets` lists `[{asset, usd, qty, pnl}]`, Futures
  first, then each off-exchange holding priced from the price cache, else its avg cost, and
  sums exactly to `aum.total`; `aum.futures` / `aum.offexchange` stay for old readers.
- Position rows came camelCase from the exchange while the writer read snake_case, so every
  price (and so every notional and PnL) was written as 0. Here rows in either style go
  through the publisher's own normaliser, and carry numeric `notional` / `pnl` and the
  formatted `notional_fmt` / `pnl_fmt`.

Valuation, position normalisation, the symbols join and formatting are the publisher's
(`kpi_publisher.stages.aum`, `.positions`, `kpi_publisher.pipeline.position_book`,
`kpi_publisher.fmt`), called, never re-implemented. Builders are pure (`now` comes in);
`write_*` are the only I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from execution.state_publish import write_state_json
from kpi_publisher.contract import DEFAULT_SYMBOLS_CAP
from kpi_publisher.parse import age_s, finite, first_number, get, mapping, number, parse_ts
from kpi_publisher.pipeline import position_book
from kpi_publisher.stages import aum as aum_stage
from kpi_publisher.stages import positions as positions_stage

NAV_STATE_FILE = "nav_state.json"
POSITIONS_STATE_FILE = "positions_state.json"
SERIES_MAX = 500  # points of NAV history kept in nav_state.series, as upstream


# The times `iso` can write: the epoch to the last second of the year 9999.
_MIN_TS, _MAX_TS = 0.0, 253_402_300_799.0


def iso(ts: float) -> str:
    """Epoch seconds -> ISO-8601 UTC (`+00:00`), the style the real sync writer used."""
    return datetime.fromtimestamp(ts, UTC).isoformat()


# --- AUM --------------------------------------------------------------------------------------


def normalise_aum(
    futures_usd: float,
    fx: Any,
    holdings: Any,
    *,
    futures_pnl_usd: float | None = None,
) -> dict[str, Any]:
    """The `aum` block: `assets` (Futures, then holdings by USD value), `total`, and old keys.

    `futures_usd` is the futures NAV in USD; `fx` the price cache (`prices{SYM: USD}`);
    `holdings` the off-exchange config (`{SYM: {qty, avg_cost}}`). A holding with no price and
    no avg cost is left out of `assets` and listed in `unpriced`; in `offexchange` it keeps
    `mark`/`usd_value` null, as the real executor wrote it.
    """
    built = aum_stage.build_aum(None, None, fx, holdings, nav_usd=futures_usd, usd_zar=None)
    config = aum_stage.holding_map(holdings)
    assets: list[dict[str, Any]] = []
    offexchange: dict[str, dict[str, Any]] = {}
    for item in built["slices"]:
        label = item["label"]
        if label == aum_stage.FUTURES:
            assets.append({"asset": label, "usd": item["usd"], "qty": None, "pnl": futures_pnl_usd})
            continue
        assets.append(
            {"asset": label, "usd": item["usd"], "qty": item["qty"], "pnl": item["pnl_usd"]}
        )
        qty = item["qty"]
        offexchange[label] = {
            "qty": qty,
            "avg_cost": first_number(config.get(label), "avg_cost"),
            "mark": round(item["usd"] / qty, 10) if qty else None,
            "usd_value": item["usd"],
        }
    for label, entry in config.items():
        if label not in offexchange:  # unpriced, or worth nothing (qty 0)
            offexchange[label] = {
                "qty": first_number(entry, "qty"),
                "avg_cost": first_number(entry, "avg_cost"),
                "mark": None,
                "usd_value": 0.0 if first_number(entry, "qty") == 0.0 else None,
            }
    return {
        "assets": assets,
        "total": built["total_usd"],
        "futures": futures_usd,
        "offexchange": offexchange,
        "unpriced": [u for u in built["unpriced"] if u != aum_stage.FUTURES],
    }


# --- positions --------------------------------------------------------------------------------


def build_positions_state(
    raw_positions: Any,
    risk_snapshot: Any = None,
    *,
    now: float,
    container: str = "positions",
    symbols_cap: int = DEFAULT_SYMBOLS_CAP,
) -> dict[str, Any]:
    """`positions_state.json` from executor rows (camelCase or snake_case, any container).

    Rows are the publisher's normalised rows (signed qty, entry/mark prices, numeric notional
    and pnl, `notional_fmt`/`pnl_fmt`) joined with the risk snapshot's per-symbol ATR/drawdown.
    `container` names the list key: "positions" (v7.6 on) or "items" (the v7.1 sync shape).
    Exposures are USD: gross = sum of notionals, net = signed by side.
    """
    if container not in positions_stage.CONTAINERS:
        raise ValueError(
            f"container must be one of {positions_stage.CONTAINERS}, got {container!r}"
        )
    _, built = position_book(
        positions_stage.normalize(raw_positions), risk_snapshot, symbols_cap, every_row=True
    )
    totals = built["totals"]
    notionals = [r["notional"] for r in built["positions"] if r["notional"] is not None]
    gross, net = totals["gross_notional_usd"], totals["net_notional_usd"]
    stamp = iso(now)
    return {
        "updated_at": stamp,
        "updated_ts": stamp,
        container: built["positions"],
        "totals": totals,  # says when no row's notional is known (null)
        # The executor's own flat keys stay numbers, as it writes them (its readers add them up).
        "gross_exposure": 0.0 if gross is None else gross,
        "net_exposure": 0.0 if net is None else net,
        "largest_position_value": max(notionals) if notionals else 0.0,
    }


# --- nav_state --------------------------------------------------------------------------------


def _nav_points(nav_log: Iterable[Any] | None) -> list[tuple[float | None, float, float | None]]:
    """(t epoch s | None, nav USD, unrealized USD | None) of the usable points (nav > 0). A
    log that is not a list of points (None, an object, a string) has none."""
    out: list[tuple[float | None, float, float | None]] = []
    if nav_log is None or isinstance(nav_log, (str, bytes, Mapping)):
        return out
    for point in nav_log:
        nav = first_number(point, "nav", "nav_usd", "total_equity", "equity")
        if nav is None or nav <= 0:
            continue
        t = parse_ts(get(point, "t"))
        if t is not None and not _MIN_TS <= t <= _MAX_TS:
            t = None  # no calendar writes it (past the year 9999): the point has no time
        out.append((t, nav, first_number(point, "unrealized_pnl")))
    return out


def build_nav_state(
    nav_log: Iterable[Any] | None,
    *,
    now: float,
    peak_usd: float | None = None,
    realized_pnl_today: float | None = None,
    positions_state: Any = None,
    fx: Any = None,
    holdings: Any = None,
    series_max: int = SERIES_MAX,
) -> dict[str, Any] | None:
    """`nav_state.json` from the executor's NAV series (`nav_log.json` points `{t, nav, ...}`).

    The last usable point is the NAV. `peak_usd` is the drawdown tracker's peak (default: the
    highest NAV in the series); `drawdown`/`drawdown_pct` are percent from that peak.
    `positions_state` (a `build_positions_state` document) gives the exposures. Returns None
    when there is no usable NAV point: like the real sync pass, it then writes nothing.
    """
    points = _nav_points(nav_log)
    if not points:
        return None
    nav_ts, nav, unrealized = points[-1]
    # Read as every input is: a string, a bool or NaN is no realised PnL (never a TypeError).
    realized = number(realized_pnl_today)
    keep = series_max if type(series_max) is int and series_max > 0 else 0
    tracker_peak = number(peak_usd)
    peak = max(nav, tracker_peak if tracker_peak is not None else max(p[1] for p in points))
    dd_abs = peak - nav
    dd_pct = dd_abs / peak * 100.0
    pos = mapping(positions_state)
    gross = number(pos.get("gross_exposure"))
    net = number(pos.get("net_exposure"))
    largest = number(pos.get("largest_position_value"))
    futures_pnl = None
    if realized is not None and unrealized is not None:
        futures_pnl = finite(realized + unrealized)
    series = [
        {
            "nav": p_nav,
            "t": iso(t) if t is not None else None,
            "unrealized_pnl": u,
            "equity": p_nav,
            "total_equity": p_nav,
        }
        for t, p_nav, u in (points[-keep:] if keep else [])
    ]
    return {
        "series": series,
        "nav_usd": nav,
        "total_equity": nav,
        "peak_equity": peak,
        "unrealized_pnl": unrealized,
        "realized_pnl": realized,
        "realized_pnl_today": realized,
        "drawdown": dd_pct,
        "drawdown_pct": dd_pct,
        "drawdown_abs": dd_abs,
        "drawdown_snapshot_at": iso(now),
        "gross_exposure": 0.0 if gross is None else gross,
        "net_exposure": 0.0 if net is None else net,
        "largest_position_value": 0.0 if largest is None else largest,
        "aum": normalise_aum(nav, fx, holdings, futures_pnl_usd=futures_pnl),
        "updated_at": nav_ts,
        "age_s": age_s(nav_ts, now),
        "written_at": now,
    }


# --- writers ----------------------------------------------------------------------------------


def write_nav_state(state_dir: Path, doc: Mapping[str, Any] | None, *, fsync: bool = False) -> bool:
    """Atomically write nav_state.json; False (nothing written) when `doc` is None."""
    if doc is None:
        return False
    write_state_json(Path(state_dir) / NAV_STATE_FILE, doc, fsync=fsync)
    return True


def write_positions_state(state_dir: Path, doc: Mapping[str, Any], *, fsync: bool = False) -> None:
    """Atomically write positions_state.json."""
    write_state_json(Path(state_dir) / POSITIONS_STATE_FILE, doc, fsync=fsync)


__all__ = [
    "build_nav_state",
    "build_positions_state",
    "normalise_aum",
    "write_nav_state",
    "write_positions_state",
]
