"""Real data the upstream system wrote, through the publisher.

Inputs are the copies in tests/fixtures/upstream/ (checked against MANIFEST.json and, when the
shared folder sits beside the clone, against the originals). Expected values come from the
contract applied to the real numbers, written out in each test.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from kpi_publisher import cli, pipeline
from kpi_publisher.config import Settings
from kpi_publisher.contract import from_values
from kpi_publisher.sources import SourceReader
from tests.conftest import FIXTURES

UPSTREAM = FIXTURES / "upstream"
MANIFEST: dict[str, dict[str, Any]] = json.loads((UPSTREAM / "MANIFEST.json").read_text())
# CI copies shared/ beside the clone: <repo>/../shared/upstream_data
SHARED = Path(__file__).resolve().parents[2] / "shared" / "upstream_data"

HOLDINGS = "1bc948f3/config/offexchange_holdings.json"
FX_CACHE = "54b8fb93/logs/cache/coingecko_cache.json"
PEAK_STATE = "54b8fb93/logs/cache/peak_state.json"


def raw(rel: str) -> bytes:
    """The original bytes of an upstream file, from the copy in tests/fixtures/upstream."""
    data = (UPSTREAM / MANIFEST[rel]["copy"]).read_bytes()
    return gzip.decompress(data) if MANIFEST[rel]["copy"].endswith(".gz") else data


def load(rel: str) -> Any:
    return json.loads(raw(rel))


def load_lines(rel: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in raw(rel).decode("utf-8").splitlines() if line.strip()]


def build(now: float, **docs: Any) -> pipeline.Outputs:
    return pipeline.build(from_values(docs), now, Settings())


# ------------------------------------------------------------------------------ the copies
@pytest.mark.parametrize("rel", sorted(MANIFEST))
def test_copy_matches_the_manifest(rel: str) -> None:
    """Each copy decompresses to the recorded size and SHA-256 of the upstream original."""
    data = raw(rel)
    assert len(data) == MANIFEST[rel]["bytes"]
    assert hashlib.sha256(data).hexdigest() == MANIFEST[rel]["sha256"]


def test_shared_originals_match_the_manifest_when_present() -> None:
    """Where ../shared/upstream_data exists (CI, the team's tree) the originals match too."""
    present = [rel for rel in MANIFEST if (SHARED / rel).is_file()]
    if SHARED.is_dir():
        assert present == sorted(MANIFEST) or set(present) == set(MANIFEST)
    for rel in present:
        assert hashlib.sha256((SHARED / rel).read_bytes()).hexdigest() == MANIFEST[rel]["sha256"]


def test_copies_stay_small() -> None:
    """The checked-in copies stay well under the 200 KB budget."""
    total = sum(p.stat().st_size for p in UPSTREAM.rglob("*") if p.is_file())
    assert total < 200_000


# ------------------------------------------------------------------------------ nav_probe
# Real hedge-mode book of 2025-11-06 ~13:25 UTC: the last non-zero snapshot per (symbol, side)
# in logs/execution/position_state.jsonl (qty, entry) and the last mark for the symbol in
# logs/execution/order_metrics.jsonl. The exchange's unrealised PnL is stated to 8 decimals.
OPEN_BOOK = {
    # (symbol, positionSide): (qty as the exchange signs it, entryPrice, markPrice)
    ("LINKUSDT", "LONG"): (8.11, 14.847, 15.037),
    ("LINKUSDT", "SHORT"): (-8.04, 15.067, 15.037),
    ("LTCUSDT", "LONG"): (5.556, 86.69249640029, 88.03),
    ("LTCUSDT", "SHORT"): (-1.373, 88.04, 88.03),
    ("SUIUSDT", "LONG"): (121.8, 1.980842036125, 1.9999),
    ("SUIUSDT", "SHORT"): (-60.4, 1.9951, 1.9999),
    ("WIFUSDT", "LONG"): (308.0, 0.4236152597403, 0.4291),
    ("WIFUSDT", "SHORT"): (-281.7, 0.4283, 0.4291),
}


def _unrealized(qty: float, entry: float, mark: float) -> float:
    return round((mark - entry) * qty, 8)


def _probe_with_open_book() -> dict[str, Any]:
    probe = load("050cf476/nav_probe.json")
    for row in probe["positions"]:
        key = (row["symbol"], row["positionSide"])
        if key in OPEN_BOOK:
            qty, entry, mark = OPEN_BOOK[key]
            row.update(
                qty=qty, entryPrice=entry, markPrice=mark, unrealized=_unrealized(qty, entry, mark)
            )
    return probe


def test_real_probe_has_only_empty_hedge_rows() -> None:
    """The real probe: 1,170 LONG/SHORT rows, all zero -> no positions, zero gross, null pnl."""
    probe = load("050cf476/nav_probe.json")
    assert len(probe["positions"]) == 1170
    out = build(float(probe["ts"]) + 30.0, positions=probe).positions
    assert out["positions"] == []
    assert out["totals"] == {
        "count": 0,
        "gross_notional_usd": 0.0,
        "net_notional_usd": 0.0,
        "pnl_usd": None,
        "gross_exposure_pct": None,  # no NAV in this build
        "net_exposure_pct": None,
        "gross_notional_fmt": "0.00",
        "pnl_fmt": "–",
    }


def test_probe_with_an_open_book_publishes_only_the_open_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Hedge-mode rows via `once`: zero rows dropped, signed qty, |qty| x mark, pnl as stated."""
    probe = _probe_with_open_book()
    state = tmp_path / "logs" / "state"
    state.mkdir(parents=True)
    (state / "positions.json").write_text(json.dumps(probe))
    now = float(probe["ts"]) + 30.0
    code = cli.main(
        ["once", "--state-dir", str(state), "--out-dir", str(tmp_path / "out"), "--now", str(now)]
    )
    assert code == 0, capsys.readouterr().err
    out = json.loads((tmp_path / "out" / "positions_v7.json").read_text())
    rows = out["positions"]
    leverage = {(r["symbol"], r["positionSide"]): r["leverage"] for r in probe["positions"]}
    assert len(rows) == len(OPEN_BOOK) == 8
    by_key = {(r["symbol"], r["side"]): r for r in rows}
    assert set(by_key) == set(OPEN_BOOK)
    for key, (qty, entry, mark) in OPEN_BOOK.items():
        r = by_key[key]
        assert r["qty"] == qty  # the exchange's sign: negative for SHORT
        assert (r["qty"] < 0) == (key[1] == "SHORT")
        assert r["entry_price"] == entry
        assert r["mark_price"] == mark
        assert r["notional"] == pytest.approx(abs(qty) * mark, rel=1e-12)
        assert r["pnl"] == _unrealized(qty, entry, mark)
        assert r["leverage"] == leverage[key]
    notionals = [r["notional"] for r in rows]
    assert notionals == sorted(notionals, reverse=True)
    assert rows[0]["symbol"] == "LTCUSDT"  # 5.556 x 88.03 = 489.09 is the largest
    totals = out["totals"]
    gross = math.fsum(abs(q) * m for q, _, m in OPEN_BOOK.values())
    net = math.fsum(q * m for q, _, m in OPEN_BOOK.values())
    pnl = math.fsum(_unrealized(*v) for v in OPEN_BOOK.values())
    assert totals["count"] == 8
    assert totals["gross_notional_usd"] == pytest.approx(gross, rel=1e-12)
    assert totals["net_notional_usd"] == pytest.approx(net, rel=1e-12)
    assert totals["pnl_usd"] == pytest.approx(pnl, rel=1e-12)
    assert totals["gross_notional_fmt"] == f"{gross:,.2f}"
    assert out["source"]["file"] == "positions.json"
    assert out["source"]["age_s"] == 30.0  # the probe's own `ts`


# ------------------------------------------------------------------------------ NAV series
def _series_point(p: dict[str, Any]) -> dict[str, Any]:
    """A nav_state series point: nav_log's epoch `t` becomes an ISO string.

    docs/CONTRACT_RULES.md, executor file shapes: nav_state.json.
    """
    return {
        "nav": p["nav"],
        "t": datetime.fromtimestamp(p["t"], UTC).isoformat(),
        "unrealized_pnl": p.get("unrealized_pnl", 0.0),
        "equity": p["nav"],
        "total_equity": p["nav"],
    }


def _sync_nav_state(
    points: list[dict[str, Any]], series: list[dict[str, Any]], peak: float
) -> dict[str, Any]:
    """The sync writer's nav_state shape after the last of `points`.

    docs/CONTRACT_RULES.md, executor file shapes: nav_state.json.
    """
    last = points[-1]
    dd_abs = peak - last["nav"]
    return {
        "series": series[-500:],
        "peak_equity": peak,
        "total_equity": last["nav"],
        "unrealized_pnl": last.get("unrealized_pnl", 0.0),
        "drawdown": dd_abs / peak * 100.0,
        "drawdown_pct": dd_abs / peak * 100.0,
        "drawdown_abs": dd_abs,
        "updated_at": last["t"],
        "age_s": 0.0,  # what the real writer always stores
    }


def _replay(tmp_path: Path, docs: list[tuple[dict[str, Any], float]]) -> list[dict[str, Any]]:
    """Write each doc as nav_state.json (atomically, like the executor), read it, build at now."""
    state = tmp_path / "logs" / "state"
    state.mkdir(parents=True, exist_ok=True)
    settings = Settings(state_dir=state)
    out = []
    for doc, now in docs:
        tmp = state / ".nav_state.json.tmp"
        tmp.write_text(json.dumps(doc))
        os.replace(tmp, state / "nav_state.json")
        sources = SourceReader(settings).read_all()
        assert sources["nav_state"].status == "ok"
        out.append(pipeline.build(sources, now, settings).kpis)
    return out


def test_nav_log_replayed_as_nav_state_gives_true_age_and_percent_drawdown(
    tmp_path: Path,
) -> None:
    """Real nav_log.json (720 points, ~66 s apart) replayed as the sync nav_state file.

    At each point's successor the age is the real gap (the stored age_s 0.0 is ignored),
    fresh means gap <= 90 s, and the drawdown percent passes through unscaled.
    """
    points = load("54b8fb93/logs/nav_log.json")
    assert len(points) == 720
    series = [_series_point(p) for p in points]
    docs, expected = [], []
    peak = 0.0
    for i, point in enumerate(points[:-1]):
        peak = max(peak, point["nav"])
        nxt = points[i + 1]["t"]
        docs.append((_sync_nav_state(points[: i + 1], series[: i + 1], peak), nxt))
        expected.append((point, peak, nxt - point["t"], (peak - point["nav"]) / peak * 100.0))
    kpis = _replay(tmp_path, docs)
    for out, (point, peak_i, gap, dd_pct) in zip(kpis, expected, strict=True):
        assert out["nav"]["nav_usd"] == point["nav"]
        assert out["nav"]["source"] == "nav_state"
        assert out["nav"]["updated_at"] == point["t"]
        assert out["nav"]["age_s"] == pytest.approx(gap, abs=1e-3)
        assert out["nav"]["fresh"] is (gap <= 90.0)
        assert out["nav"]["peak_usd"] == peak_i
        assert out["risk"]["drawdown_pct"] == pytest.approx(dd_pct, rel=1e-12, abs=1e-15)
        assert out["sources"]["nav_state"]["status"] == ("ok" if gap <= 90.0 else "stale")
    # What an operator sees over the day: the real drawdown peak and the stale spells.
    worst = max(out["risk"]["drawdown_pct"] for out in kpis)
    assert worst == pytest.approx(max(e[3] for e in expected), rel=1e-12)
    assert 0.0 < worst < 5.0  # percent of a ~3.9k NAV, never a fraction x100 or /100
    stale = sum(1 for out in kpis if not out["nav"]["fresh"])
    assert stale == sum(1 for e in expected if e[2] > 90.0)
    assert 0 < stale < len(kpis)  # the real day has both fresh and stale spells (58 gaps > 90 s)


def test_nav_jsonl_replayed_as_iso_mirror_parses_every_timestamp(tmp_path: Path) -> None:
    """Real nav.jsonl points as the E2 mirror (`nav`, ISO `updated_ts`): same instant back."""
    points = load_lines("54b8fb93/logs/nav.jsonl")
    assert len(points) == 997
    sample = points[::10]
    docs = [
        (
            {
                "nav": p["nav"],
                "nav_usd": p["nav"],
                "updated_ts": datetime.fromtimestamp(p["t"], UTC).isoformat(),
            },
            p["t"] + 45.0,
        )
        for p in sample
    ]
    for out, p in zip(_replay(tmp_path, docs), sample, strict=True):
        assert out["nav"]["nav_usd"] == p["nav"]
        assert out["nav"]["updated_at"] == pytest.approx(p["t"], abs=1e-6)
        assert out["nav"]["age_s"] == pytest.approx(45.0, abs=1e-3)
        assert out["nav"]["fresh"] is True
        assert out["risk"]["drawdown_pct"] is None  # the mirror carries no drawdown


@pytest.mark.parametrize(
    ("rel", "nav_usd", "updated_at"),
    [
        ("54b8fb93/logs/cache/nav_confirmed.json", 2418.66767076, 1762435688.3650358),
        ("fffab267/logs/cache/nav_confirmed.json", 2841.61, 1760906041.0),  # ISO "...Z"
        ("72fb2e25/logs/cache/nav_confirmed.json", 1000.0, 1760944294.6661751),
    ],
    ids=["epoch-full", "iso-oldest", "epoch-intermediate"],
)
def test_real_nav_confirmed_variants_read_as_nav_files(
    rel: str, nav_usd: float, updated_at: float
) -> None:
    """Each real nav_confirmed variant, read as nav.json, gives its NAV and its own timestamp."""
    kpis = build(updated_at + 12.5, nav=load(rel)).kpis
    assert kpis["nav"]["nav_usd"] == nav_usd
    assert kpis["nav"]["source"] == "nav"
    assert kpis["nav"]["updated_at"] == pytest.approx(updated_at, abs=1e-6)
    assert kpis["nav"]["age_s"] == pytest.approx(12.5, abs=1e-3)


# ------------------------------------------------------------------------------ AUM
def test_real_holdings_and_fx_cache_give_the_aum_slices(
    tmp_path: Path, copy_fixture: Callable[[Path], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """Real holdings config + CoinGecko cache in the real layout -> BTC/XAUT/USDC slices.

    BTC and XAUT are priced from the cache; the cache has no USDC price (only USDT), so
    USDC falls back to its avg_cost of 1. Slices sum to the total; ZAR = USD x 17.34.
    """
    root = tmp_path / "root"
    state = root / "logs" / "state"
    state.mkdir(parents=True)
    (root / "logs" / "cache").mkdir()
    (root / "config").mkdir()
    (root / "logs" / "cache" / "coingecko_cache.json").write_bytes(raw(FX_CACHE))
    (root / "config" / "offexchange_holdings.json").write_bytes(raw(HOLDINGS))
    (state / "nav_state.json").write_bytes(raw(PEAK_STATE))  # nav_usd 3915.68325628
    code = cli.main(
        [
            "once",
            "--state-dir",
            str(state),
            "--out-dir",
            str(tmp_path / "out"),
            "--now",
            "1762435700",
        ]
    )
    assert code == 0, capsys.readouterr().err
    aum = json.loads((tmp_path / "out" / "kpis_v7.json").read_text())["aum"]
    expected = [
        ("Futures", 3915.68325628, None, None),
        ("BTC", 0.035 * 103488.0, 0.035, (103488.0 - 119073) * 0.035),
        ("XAUT", 0.59 * 4021.84, 0.59, (4021.84 - 3692.70) * 0.59),
        ("USDC", 2098.96 * 1, 2098.96, 0.0),
    ]
    assert [s["label"] for s in aum["slices"]] == [e[0] for e in expected]
    for got, (_, usd, qty, pnl) in zip(aum["slices"], expected, strict=True):
        assert got["usd"] == pytest.approx(usd, rel=1e-12)
        assert got["zar"] == pytest.approx(usd * 17.34, rel=1e-12)
        assert got["qty"] == qty
        assert got["pnl_usd"] == (None if pnl is None else pytest.approx(pnl, abs=1e-9))
    total = math.fsum(e[1] for e in expected)  # 12009.61 USD
    assert aum["total_usd"] == pytest.approx(total, rel=1e-12)
    assert aum["total_usd"] == pytest.approx(math.fsum(s["usd"] for s in aum["slices"]))
    assert aum["total_zar"] == pytest.approx(total * 17.34, rel=1e-12)
    assert (aum["usd_zar"], aum["usd_zar_source"], aum["unpriced"]) == (17.34, "fx_cache", [])


# ------------------------------------------------------------------------------ peak_state
def test_real_peak_state_dd_pct_is_percent() -> None:
    """peak_state's dd_pct 0.1302 means 0.13 %: published as 0.1302, not 13.02 or 0.0013."""
    peak = load(PEAK_STATE)
    for risk in (
        {"dd_state": {"dd_state": "normal", "drawdown": peak}},  # E1 engine snapshot
        {"drawdown": peak},
    ):
        out = build(1762435700.0, risk=risk).kpis["risk"]
        assert out["drawdown_pct"] == 0.1302006318198985
        assert out["drawdown_abs_usd"] == 5.104890940000132
    # and it agrees with its own peak and NAV: (peak - nav) / peak x 100
    assert (peak["peak"] - peak["nav"]) / peak["peak"] * 100 == pytest.approx(
        peak["dd_pct"], rel=1e-9
    )


def test_real_peak_state_as_nav_state() -> None:
    """The tracker file read as nav_state: nav_usd, peak, today's realised PnL, ISO updated_at."""
    nav = build(1762435700.0, nav_state=load(PEAK_STATE)).kpis["nav"]
    assert nav["nav_usd"] == 3915.68325628
    assert nav["peak_usd"] == 3920.78814722
    assert nav["realized_pnl_today_usd"] == 31.833339770000013
    # updated_at "2025-11-06T13:27:51.699904+00:00" comes before its epoch `ts`
    assert nav["updated_at"] == pytest.approx(1762435671.699904, abs=1e-6)
    assert nav["fresh"] is True


def test_minimal_real_peak_state_has_no_nav_and_no_age() -> None:
    """{day, peak} only: peak 1000.0, no NAV, no timestamp -> age null, not fresh, status ok."""
    kpis = build(1762435700.0, nav_state=load("acc6e1b0/logs/cache/peak_state.json")).kpis
    assert kpis["nav"]["nav_usd"] is None
    assert kpis["nav"]["peak_usd"] == 1000.0
    assert (kpis["nav"]["age_s"], kpis["nav"]["fresh"]) == (None, False)
    assert kpis["sources"]["nav_state"] == {"status": "ok", "age_s": None, "error": None}


# ------------------------------------------------------------------------------ position_state
def test_real_position_state_rows_normalise() -> None:
    """Every real position_state.jsonl row (pos_qty, entry_px, mode) normalises or is dropped."""
    rows = load_lines("54b8fb93/logs/execution/position_state.jsonl")
    assert len(rows) == 379
    published = 0
    for raw_row in rows:
        out = build(1762435700.0, positions=[raw_row]).positions["positions"]
        if raw_row["pos_qty"] == 0:
            assert out == []
            continue
        published += 1
        (r,) = out
        qty, entry = raw_row["pos_qty"], raw_row["entry_px"]
        assert r["symbol"] == raw_row["symbol"]
        assert r["side"] == raw_row["mode"]
        assert r["qty"] == qty
        assert r["entry_price"] == (float(entry) if entry else None)
        assert r["mark_price"] is None  # these snapshots carry no mark
        assert r["notional"] == pytest.approx(abs(qty) * entry, rel=1e-12)
        assert r["pnl"] == raw_row["unrealized_pnl"]  # as stated (null except the smoke row)
        assert r["leverage"] == float(raw_row["leverage"])
    assert published == 166


def test_real_position_state_last_book_totals() -> None:
    """The last non-zero snapshot per (symbol, side) as a bare-list positions_state file."""
    last: dict[tuple[str, str], dict[str, Any]] = {}
    for r in load_lines("54b8fb93/logs/execution/position_state.jsonl"):
        if r["pos_qty"] != 0 and r["symbol"] != "BTCUSDT":  # BTCUSDT is a smoke-test row
            last[(r["symbol"], r["mode"])] = r
    out = build(1762435700.0, positions=list(last.values())).positions
    assert out["totals"]["count"] == 8
    gross = math.fsum(abs(r["pos_qty"]) * r["entry_px"] for r in last.values())
    net = math.fsum(r["pos_qty"] * r["entry_px"] for r in last.values())
    assert out["totals"]["gross_notional_usd"] == pytest.approx(gross, rel=1e-12)
    assert out["totals"]["net_notional_usd"] == pytest.approx(net, rel=1e-12)
    assert out["totals"]["pnl_usd"] is None  # no row states a pnl and none has a mark
    assert out["totals"]["pnl_fmt"] == "–"


# ------------------------------------------------------------------------------ router health
def test_real_router_health_fixture_aggregates() -> None:
    """The upstream E1-shape router_health fixture: one symbol's rates become the means."""
    router = build(200.0, router=load("8dd5e921/archive/tmp_router_health.json")).kpis["router"]
    assert router == {
        "maker_fill_rate": 0.7,
        "fallback_ratio": 0.1,
        "slip_q25_bps": None,
        "slip_q50_bps": 1.0,
        "slip_q75_bps": None,
        "quality": None,  # only policy.quality per symbol; no top-level label or counts
        "source": "router_health",
        "symbols_used": 1,
        # the same symbol's own numbers; E1 rows state no sample count
        "symbols": {
            "BTCUSDT": {
                "maker_fill_rate": 0.7,
                "fallback_ratio": 0.1,
                "slip_q50_bps": 1.0,
                "samples": None,
            }
        },
    }


def test_shared_folder_location_is_beside_the_repo() -> None:
    """The lookup path is <repo>/../shared/upstream_data (where CI puts it)."""
    assert SHARED.parent.parent == Path(__file__).resolve().parents[1].parent
    if SHARED.is_dir():
        assert (SHARED / "README.md").is_file()
