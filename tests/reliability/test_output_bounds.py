"""Every bound the published schemas set holds for any number in any input field, and every
published file stays readable by the publisher's own readers (`check`, the dashboard).

The schemas bound some fields (minimum, maximum, exclusive limits, integer, enum, pattern,
minLength, a number that may not be null). `test_every_bounded_field_is_accounted_for` lists
them with the stage that keeps each one; the other tests put extreme and out-of-range numbers
(negative, 0, -0.0, tiny, huge, 1e308, 2**64, a percent where a fraction belongs) into every
input field a stage reads, one at a time and in random combinations, and validate both
documents against their schemas.
"""

from __future__ import annotations

import math
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from kpi_publisher import pipeline, render, schemas
from kpi_publisher.config import Settings
from kpi_publisher.contract import MAX_UNPRICED, SOURCE_NAMES, from_values
from kpi_publisher.parse import DOC_TS_KEYS, MAX_LABEL_CHARS
from kpi_publisher.stages import aum, fees, fx, nav, positions, router
from kpi_publisher.stages.risk import build_var, var_note

from .helpers import NOW, REPO, Layout, assert_valid_outputs, good_docs

# -- the audit: every bounded field of both schemas, and what keeps it in bounds ----------------

BOUND_KEYWORDS = frozenset(
    (
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "enum",
        "const",
        "pattern",
        "minLength",
    )
)
# "<schema>:<path>" -> where the bound is kept. A new bound in a schema fails the audit until
# its producer is checked and listed here.
BOUNDED: dict[str, str] = {
    "kpis_v7:schema": "pipeline: constant",
    "kpis_v7:schema_version": "pipeline: constant",
    "kpis_v7:generated_at": "pipeline: the build time, a number",
    "kpis_v7:ts": "pipeline: the build time, a number",
    "kpis_v7:updated_at": "parse.iso_utc of the build time",
    "kpis_v7:nav.age_s": "parse.doc_age: max(0, now - ts)",
    "kpis_v7:nav.fresh": "nav.build_nav: a comparison",
    "kpis_v7:nav.source": "nav.build_nav: one of two names",
    "kpis_v7:risk.gross_exposure_pct": "positions.exposure_pct: notionals >= 0 over NAV > 0",
    "kpis_v7:risk.var_confidence": "risk.confidence_frac: 0..1 or missing",
    "kpis_v7:router.slip_q25_bps": "router._slippage: |v| < 10,000 or missing",
    "kpis_v7:router.slip_q50_bps": "router._slippage",
    "kpis_v7:router.slip_q75_bps": "router._slippage",
    "kpis_v7:router.source": "router.build_router: one of three names",
    "kpis_v7:router.symbols_used": "router: a count",
    "kpis_v7:router.symbols.*.slip_q50_bps": "router._slippage",
    "kpis_v7:router.symbols.*.samples": "router._samples: whole, 0..2**53",
    "kpis_v7:aum.slices[].label": "aum: non-empty names, 'Futures', '<n> smaller assets'",
    "kpis_v7:aum.slices[].usd": "aum: finite or the asset is unpriced; Futures finite",
    "kpis_v7:aum.usd_zar": "fx.resolve_usd_zar: a rate > 0",
    "kpis_v7:aum.usd_zar_source": "fx.resolve_usd_zar: one of three names",
    "kpis_v7:sources.*.status": "status.build_sources: the status words",
    "kpis_v7:sources.*.age_s": "parse.doc_age",
    "kpis_v7:performance.windows.*.max_drawdown_pct": "performance: NAVs > 0",
    "kpis_v7:performance.drawdown_pct": "performance: NAVs > 0",
    "kpis_v7:performance.ratios.*.volatility_pct": "performance: a standard deviation",
    "kpis_v7:performance.ratios.*.daily_returns": "performance: a count",
    "kpis_v7:performance.history.points": "performance: a count",
    "kpis_v7:performance.history.largest_gap_s": "performance: sorted times",
    "kpis_v7:performance.as_of": "performance: the build time",
    "positions_v7:schema": "pipeline: constant",
    "positions_v7:schema_version": "pipeline: constant",
    "positions_v7:generated_at": "pipeline: the build time",
    "positions_v7:updated_at": "parse.iso_utc of the build time",
    "positions_v7:source.file": "pipeline: one of two file names",
    "positions_v7:source.status": "status.build_sources",
    "positions_v7:source.age_s": "parse.doc_age",
    "positions_v7:positions[].symbol": "positions.normalize_row: a non-empty name",
    "positions_v7:positions[].side": "positions.normalize_row: LONG or SHORT",
    "positions_v7:positions[].qty": "positions.normalize_row: finite, |qty| >= 1e-12",
    "positions_v7:positions[].notional": "positions.normalize_row: |qty| x price > 0, or |stated|",
    "positions_v7:totals.count": "positions.book_totals: len",
    "positions_v7:totals.gross_notional_usd": "positions.book_notionals: a sum of notionals",
    "positions_v7:totals.gross_exposure_pct": "positions.exposure_pct",
}


def _bounded(schema: dict[str, Any], path: str) -> Iterator[str]:
    """Paths of the fields `schema` bounds beyond "a number, a string or null"."""
    kinds = schema.get("type")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    if path and (
        BOUND_KEYWORDS & schema.keys()
        or "integer" in kinds
        or ("number" in kinds and "null" not in kinds)
        or kinds == ["boolean"]
    ):
        yield path
    for key, sub in schema.get("properties", {}).items():
        yield from _bounded(sub, f"{path}.{key}" if path else key)
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        yield from _bounded(extra, f"{path}.*")
    items = schema.get("items")
    if isinstance(items, dict):
        yield from _bounded(items, f"{path}[]")


def _audited(name: str, path: str) -> bool:
    """Whether `path` of schema `name` is in BOUNDED; sources.<name> rows share one entry,
    and every window or ratio period shares its `*` row."""
    parts = path.split(".")
    candidates = {path}
    for i in range(len(parts)):
        candidates.add(".".join([*parts[:i], "*", *parts[i + 1 :]]))
    return any(f"{name}:{c}" in BOUNDED for c in candidates)


def test_every_bounded_field_is_accounted_for() -> None:
    """The audit covers every bounded field of both schemas (a new bound fails here first)."""
    unlisted = [
        f"{name}:{path}"
        for name in ("kpis_v7", "positions_v7")
        for path in _bounded(schemas.load(name), "")
        if not _audited(name, path)
    ]
    assert unlisted == []


# -- extreme values in every input field ------------------------------------------------------

EXTREMES: tuple[Any, ...] = (
    -1.7976931348623157e308,
    -1e12,
    -1.0,
    -0.0,
    0,
    5e-324,
    1e-12,
    0.95,
    1,
    95,  # a percent where a fraction belongs
    99.9,
    9999.999999999998,  # just under the slippage sentinel
    10_000,
    1e150,
    1.7976931348623157e308,
    2**64 + 1,
    "1e308",
    "-1,000.5",
)
SYMBOL = "BTCUSDT"


def _row(**extra: Any) -> dict[str, Any]:
    return {"symbol": SYMBOL, **extra}


# (source, the document around the field, the field's key path). A path step that is an int
# is a list index. The base gives the field the context in which a stage reads it (a row needs
# a symbol, a holding a qty), and holds no earlier key of the field's own chain.
Case = tuple[str, dict[str, Any], tuple[Any, ...]]


def _cases() -> list[Case]:
    out: list[Case] = []
    priced_row = {"rows": [_row(qty=2.0, markPrice=100.0, entryPrice=90.0)]}
    for keys, base in (
        (positions.QTY_KEYS, {"rows": [_row(markPrice=100.0, entryPrice=90.0)]}),
        (positions.ENTRY_KEYS, {"rows": [_row(qty=2.0)]}),
        (positions.MARK_KEYS, {"rows": [_row(qty=-2.0, entryPrice=90.0)]}),
        (positions.PNL_KEYS, priced_row),
        (positions.NOTIONAL_KEYS, {"rows": [_row(qty=2.0)]}),
        (("leverage",), priced_row),
    ):
        out += [("positions", base, ("rows", 0, k)) for k in keys]
    out += [("positions", {"rows": [_row(qty=1.0)]}, (k,)) for k in DOC_TS_KEYS]
    for source in ("nav_state", "nav"):
        out += [(source, {}, (k,)) for k in nav.NAV_KEYS]
        with_nav = {"nav_usd": 1000.0}
        flat = (
            "peak_equity",
            "peak",
            "unrealized_pnl",
            "realized_pnl_today",
            "drawdown_pct",
            "drawdown",
            "dd_abs",
            "drawdown_abs",
            *DOC_TS_KEYS,
        )
        out += [(source, with_nav, (k,)) for k in flat]
        out += [(source, with_nav, tuple(k.split("."))) for k in fx.RATE_KEYS]
        out += [(source, with_nav, ("aum", k)) for k in ("futures", "total")]
        held = {"nav_usd": 1000.0, "aum": {"offexchange": {"BTC": {"qty": 1.0}}}}
        out += [
            (source, held, ("aum", "offexchange", "BTC", k))
            for k in ("qty", "usd_value", "mark", "avg_cost", "pnl")
        ]
        listed = {"nav_usd": 1000.0, "aum": {"assets": [{"asset": "BTC"}]}}
        out += [
            (source, listed, ("aum", "assets", 0, k))
            for k in (*aum.VALUE_KEYS, "qty", "quantity", "amount", "balance", "pnl", "avg_cost")
        ]
        out += [
            (source, with_nav, ("nav_detail", "asset_breakdown", "BTC")),
            (source, held, ("nav_detail", "conversions", "BTC", "price")),
        ]
    out += [("fx", {}, ("usd_zar",)), ("fx", {}, ("prices_ts",)), ("fx", {}, ("usd_zar_ts",))]
    out += [("fx", {}, ("prices", "BTC")), ("holdings", {"BTC": {"qty": 1.0}}, ("BTC", "mark"))]
    out += [("holdings", {"BTC": {}}, ("BTC", k)) for k in ("qty", "avg_cost", "usd_value")]
    for block in ((), ("kpis_v7",)):
        drawdown = (*block, "drawdown")
        out += [
            ("risk", {}, (*drawdown, k)) for k in ("dd_pct", "dd_abs", "peak", "realized_today")
        ]
        out += [("risk", {}, (*drawdown, "daily_loss", "pct"))]
        out += [("risk", {}, (*block, "atr", "median_ratio"))]
        out += [
            ("risk", {}, (*block, "router_stats", k))
            for keys in router.FIELD_KEYS.values()
            for k in keys
        ]
        out += [("risk", {}, (*block, "fee_pnl", k)) for k in fees.FIELDS]
        out += [("risk", {}, (*block, k)) for k in fees.FIELDS]
        symbol_rows = {(*block, "symbols"): [_row()], (*block, "atr", "symbols"): [_row()]}
        for at, rows in symbol_rows.items():
            base = _put({}, at, rows)
            out += [("risk", base, (*at, 0, k)) for k in ("atr_ratio", "ratio", "dd_today_pct")]
    synthesised = {"dd_state": {"state": "DRAWDOWN"}}
    out += [("risk", synthesised, ("dd_state", "drawdown", "dd_pct"))]
    out += [
        ("risk", {}, (k,))
        for k in ("dd_frac", "daily_loss_frac", "dd_abs", "drawdown_abs", "atr_ratio")
    ]
    out += [("risk", {"symbols": [_row()]}, ("symbols", 0, "vol", "atr_ratio"))]
    out += [("risk", {"symbols": [_row()]}, ("symbols", 0, "risk", "dd_today_pct"))]
    out += [("risk", {"symbols": [_row()]}, ("symbols", 0, "router", "samples"))]
    router_keys = [k for ks in router.FIELD_KEYS.values() for k in ks] + list(router.SAMPLE_KEYS)
    for dotted in router.PER_SYMBOL_PATHS:
        steps = tuple(dotted.split("."))
        out += [("router", _put({}, steps, [_row()]), (*steps, 0, k)) for k in router_keys]
    out += [("router", {}, ("summary", "quality_counts", "broken"))]
    estimated = {"var": {"lookback_used": 90}}
    var_keys = ("portfolio_var_nav_pct", "portfolio_var_usd", "max_portfolio_var_nav_pct")
    out += [("risk_advanced", estimated, ("var", k)) for k in (*var_keys, "confidence")]
    out += [("risk_advanced", {"var": {"portfolio_var_usd": 1.0}}, ("var", "lookback_used"))]
    cvar = ("cvar", "per_symbol", SYMBOL)
    out += [("risk_advanced", {}, (*cvar, k)) for k in ("cvar_nav_pct", "lookback_used")]
    return out


def _put(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    """A copy of `doc` with `value` at `path` (creating objects and lists on the way)."""
    if not path:
        return value
    step, rest = path[0], path[1:]
    if isinstance(step, int):
        items = list(doc) if isinstance(doc, list) else []
        items += [{}] * (step + 1 - len(items))
        items[step] = _put(items[step], rest, value)
        return items
    out = dict(doc) if isinstance(doc, dict) else {}
    out[step] = _put(out.get(step), rest, value)
    return out


CASES = _cases()
SETTINGS = Settings()


def _assert_valid(docs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    outputs = pipeline.build(from_values(docs), NOW, SETTINGS)
    return assert_valid_outputs(render.render(outputs.kpis), render.render(outputs.positions))


def test_the_cases_cover_every_source() -> None:
    assert {source for source, _, _ in CASES} == set(SOURCE_NAMES)


@pytest.mark.parametrize(
    ("source", "base", "path"), CASES, ids=[f"{s}:{'.'.join(map(str, p))}" for s, _, p in CASES]
)
def test_any_number_in_any_field_keeps_both_documents_schema_valid(
    source: str, base: dict[str, Any], path: tuple[Any, ...]
) -> None:
    """One field at a time, every extreme value, the other sources good (real shapes)."""
    for value in EXTREMES:
        docs = {**good_docs(), source: _put(base, path, value)}
        _assert_valid(docs)


CASES_BY_SOURCE = {
    name: [i for i, (source, _, _) in enumerate(CASES) if source == name] for name in SOURCE_NAMES
}
# One to three sources, several of their fields each: a few sources' fields together meet
# far more often than fields drawn from all cases at once.
PICKS = st.lists(st.sampled_from(SOURCE_NAMES), min_size=1, max_size=3, unique=True).flatmap(
    lambda sources: st.lists(
        st.tuples(
            st.sampled_from([i for s in sources for i in CASES_BY_SOURCE[s]]),
            st.sampled_from(EXTREMES),
        ),
        min_size=1,
        max_size=12,
    )
)


def _case(source: str, path: tuple[Any, ...]) -> int:
    return next(i for i, (s, _, p) in enumerate(CASES) if (s, p) == (source, path))


@given(picks=PICKS, with_good=st.booleans())
@example(  # NAV near the float limit, a breakdown as negative: Futures overflowed to null
    picks=[
        (_case("nav", ("nav_usd",)), 1.7976931348623157e308),
        (_case("nav", ("nav_detail", "asset_breakdown", "BTC")), -1.7976931348623157e308),
    ],
    with_good=False,
)
def test_extreme_values_in_any_combination_keep_both_documents_schema_valid(
    picks: list[tuple[int, Any]], with_good: bool
) -> None:
    """Several fields of several sources at once (an overflowing NAV beside a negative
    breakdown, a percent confidence beside a sentinel slippage ...)."""
    docs: dict[str, Any] = dict(good_docs()) if with_good else {}
    chosen: dict[str, Any] = {CASES[i][0]: {} for i, _ in picks}
    for index, _ in picks:  # contexts first, so no base overwrites a drawn value
        source, base, _ = CASES[index]
        for key, value in base.items():
            chosen[source] = _put(chosen[source], (key,), value)
    for index, value in picks:
        source, _, path = CASES[index]
        chosen[source] = _put(chosen[source], path, value)
    _assert_valid({**docs, **chosen})


# -- the VaR confidence -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("confidence", "published"),
    [
        (0.99, 0.99),
        (0.95, 0.95),
        (0.0, 0.0),
        (1, 1.0),
        ("0.975", 0.975),
        (95, None),
        (99.9, None),
        (1.0000001, None),
        (-0.05, None),
        (-0.0, -0.0),
        (1e308, None),
        (None, None),
    ],
)
def test_var_confidence_is_a_fraction_or_missing(confidence: Any, published: Any) -> None:
    """A confidence outside 0..1 (95 meaning 95 %) is never published: units go by the key."""
    out = build_var({"var": {"confidence": confidence, "lookback_used": 90}})
    assert out["var_confidence"] == published


def test_a_percent_confidence_is_named_in_a_note() -> None:
    """The text the risk_advanced source's error can carry for it."""
    assert var_note({"var": {"confidence": 95}}) == (
        "var.confidence 95 is not a fraction 0..1: read as missing"
    )
    assert var_note({"var": {"confidence": 0.99}}) is None
    assert var_note({"var": {}}) is None


def test_once_with_a_percent_confidence_publishes_what_check_accepts(tmp_path: Path) -> None:
    """The reported fault: risk_advanced.json with confidence 95, through the real commands."""
    layout = Layout(tmp_path).make()
    docs = good_docs(now=time.time())
    docs["risk_advanced"]["var"]["confidence"] = 95
    layout.write_all(docs)
    _once_and_check(layout)
    published = orjson.loads((layout.out / "kpis_v7.json").read_bytes())
    assert published["risk"]["var_confidence"] is None
    assert published["risk"]["var_pct"] == pytest.approx(2.1)
    advanced = published["sources"]["risk_advanced"]
    assert advanced["status"] == "ok"
    assert advanced["error"] == "var.confidence 95 is not a fraction 0..1: read as missing"


# -- everything published stays readable ------------------------------------------------------


def _once_and_check(layout: Layout) -> None:
    """`once` then `check` as real processes, both exiting 0."""
    base = [sys.executable, "-m", "kpi_publisher"]
    once = subprocess.run(
        [*base, "once", *layout.cli_args()], cwd=REPO, capture_output=True, timeout=120
    )
    assert once.returncode == 0, once.stderr.decode()
    check = subprocess.run(
        [*base, "check", *layout.cli_args(), "--log-format", "json"],
        cwd=REPO,
        capture_output=True,
        timeout=120,
    )
    assert check.returncode == 0, check.stdout.decode()[-2000:]


def test_a_hundred_thousand_positions_publish_a_file_check_accepts(tmp_path: Path) -> None:
    """The reported fault: 100,000 rows (under the 16 MiB input cap) gave a 27 MB
    positions_v7.json that `check` and the dashboard refused. The largest 5,000 by notional are
    listed, the source's error says how many were not and what they add up to, and the totals
    (and the exposure) still cover the whole book."""
    layout = Layout(tmp_path).make()
    now = time.time()
    docs = good_docs(now=now)
    rows = [
        {"symbol": f"S{i:05d}USDT", "qty": 1.5, "entry_price": 10.0, "mark_price": 10.0 + i % 7}
        for i in range(100_000)
    ]
    docs["positions"] = {"updated_at": now, "positions": rows}
    layout.write_all(docs)
    assert layout.path("positions").stat().st_size < SETTINGS.max_input_bytes
    _once_and_check(layout)
    published = orjson.loads((layout.out / "positions_v7.json").read_bytes())
    assert len(published["positions"]) == positions.MAX_ROWS
    assert published["totals"]["count"] == 100_000
    book = math.fsum(1.5 * (10.0 + i % 7) for i in range(100_000))
    assert published["totals"]["gross_notional_usd"] == pytest.approx(book, rel=1e-12)
    kpis = orjson.loads((layout.out / "kpis_v7.json").read_bytes())
    nav_usd = kpis["nav"]["nav_usd"]
    assert kpis["risk"]["gross_exposure_pct"] == pytest.approx(book / nav_usd * 100.0)
    notionals = [row["notional"] for row in published["positions"]]
    assert min(notionals) >= 15.0 + 1.5 * 5  # the largest rows were kept
    error = published["source"]["error"]
    assert error.startswith("100,000 rows, over the 5,000-row limit")
    assert "the other 95,000 (gross notional" in error
    assert error.endswith("are in the totals only")
    kpis = orjson.loads((layout.out / "kpis_v7.json").read_bytes())
    assert kpis["sources"]["positions"]["status"] == "ok"
    assert kpis["sources"]["positions"]["error"] == error


def test_the_largest_positions_file_fits_the_readers_cap() -> None:
    """The worst rows there can be (the longest symbol and labels, numbers whose formatted
    strings are longest) as many times as the input cap allows: positions_v7.json stays
    schema-valid and under the readers' 16 MiB cap."""
    # The longest names there can be: 64 characters of four UTF-8 bytes each (a control
    # character, six bytes escaped, is no name).
    symbol = labels = "\U0001d538" * MAX_LABEL_CHARS
    row = {"symbol": symbol, "qty": -1e300, "entry": 1e8, "mark": 1.79e8, "leverage": -1e308}
    risk_doc = {
        "symbols": [
            {
                "symbol": symbol,
                "atr_ratio": -1e308,
                "atr_regime": labels,
                "dd_state": "İ" * (MAX_LABEL_CHARS // 2),  # lower-cased to twice as many
                "dd_today_pct": -1e308,
            }
        ]
    }
    count = SETTINGS.max_input_bytes // len(orjson.dumps(row))
    outputs = pipeline.build(
        from_values({"positions": [row] * count, "risk": risk_doc}), NOW, SETTINGS
    )
    raw = render.render(outputs.positions)
    assert len(raw) < SETTINGS.max_input_bytes
    assert schemas.violation("positions_v7", orjson.loads(raw)) is None
    assert outputs.positions["positions"][0]["atr_regime"] == labels


def _names(count: int, width: int, base: int = 0x20000) -> list[str]:
    """`count` distinct asset names of `width` characters, each four UTF-8 bytes (CJK
    Extension B: no case mapping, no control character): the most bytes a name can publish."""
    fill = chr(base) * (width - 2)
    return [fill + chr(base + i // 40_000) + chr(base + i % 40_000) for i in range(count)]


def _filling(make: Any, entry_bytes: int) -> int:
    """How many entries of `entry_bytes` bytes a document built by `make(n)` holds under the
    input cap (the largest file a source may be)."""
    count = SETTINGS.max_input_bytes // entry_bytes
    while len(orjson.dumps(make(count))) >= SETTINGS.max_input_bytes:
        count -= count // 100 + 1
    return count


def test_the_largest_kpis_file_fits_the_readers_cap() -> None:
    """The AUM block at its largest: every file that lists assets filled to the input cap with
    distinct unpriceable names of the most bytes a name can publish (64 characters of four
    bytes; a longer one is cut to that), in sources that are all skipped for want of a value
    and so all named, and a breakdown of long names for the most slices.
    Before `unpriced` was bounded, such inputs gave a kpis_v7.json of tens of MB; now it is
    schema-valid and far under the readers' 16 MiB cap, whatever the inputs."""
    width = MAX_LABEL_CHARS
    entry = len(orjson.dumps({_names(1, width)[0]: {"qty": 1.0}})) + 1

    def nav_state(n: int) -> dict[str, Any]:
        held = {name: {"qty": 1.0} for name in _names(n, width)}
        return {"nav_usd": 1e6, "aum": {"offexchange": held}}  # no value: skipped, named

    def nav_doc(n: int) -> dict[str, Any]:
        listed = [{"asset": name, "qty": 1.0} for name in _names(n, width, 0x21000)]
        breakdown = {name: 1.0 + i for i, name in enumerate(_names(500, width, 0x22000))}
        return {
            "nav_usd": 1e6,
            "aum": {"assets": listed},
            "nav_detail": {"asset_breakdown": breakdown},
        }

    def holdings(n: int) -> dict[str, Any]:
        return {name: {"qty": 1.0} for name in _names(n, width, 0x23000)}

    docs = {
        "nav_state": nav_state(_filling(nav_state, entry)),
        "nav": nav_doc(_filling(nav_doc, entry + 20)),
        "holdings": holdings(_filling(holdings, entry)),
    }
    names = len(docs["nav_state"]["aum"]["offexchange"]) + len(docs["holdings"])
    names += len(docs["nav"]["aum"]["assets"])
    assert names > 150_000  # 38 MB of names unbounded
    outputs = pipeline.build(from_values(docs), NOW, SETTINGS)
    raw = render.render(outputs.kpis)
    assert len(raw) < SETTINGS.max_input_bytes // 100
    assert schemas.violation("kpis_v7", orjson.loads(raw)) is None
    published = outputs.kpis["aum"]
    assert len(published["slices"]) == 1 + aum.MAX_ASSET_SLICES
    assert len(published["unpriced"]) == MAX_UNPRICED + 1
    assert published["unpriced"][-1] == f"{names - MAX_UNPRICED:,} more"


def test_four_hundred_thousand_unpriced_names_publish_a_file_check_accepts(tmp_path: Path) -> None:
    """The reported fault: 210,000 unpriceable names in aum.offexchange and 210,000 in the
    holdings config (each file under the 16 MiB input cap) gave a 28 MB kpis_v7.json that
    `check` and the dashboard refused. Now 100 names are listed, then how many more."""
    layout = Layout(tmp_path).make()
    docs = good_docs(now=time.time())
    count = 210_000
    docs["nav_state"]["aum"]["offexchange"] = {
        f"N{i:06d}{'X' * 57}": {"qty": 1} for i in range(count)
    }
    docs["holdings"] = {f"H{i:06d}{'X' * 57}": {"qty": 1} for i in range(count)}
    layout.write_all(docs)
    for source in ("nav_state", "holdings"):
        assert layout.path(source).stat().st_size < SETTINGS.max_input_bytes
    _once_and_check(layout)
    unpriced = orjson.loads((layout.out / "kpis_v7.json").read_bytes())["aum"]["unpriced"]
    assert unpriced[:MAX_UNPRICED] == [f"H{i:06d}{'X' * 57}" for i in range(100)]
    assert unpriced[MAX_UNPRICED:] == ["419,900 more"]


def test_a_label_too_long_to_be_one_is_never_copied_onto_rows() -> None:
    """A megabyte "regime" copied onto each of 5,000 rows would be gigabytes: it reads as
    missing, as in the risk block; a row's symbol over the limit drops the row, counted."""
    long_text = "x" * (MAX_LABEL_CHARS + 1)
    docs = {
        "positions": [
            {"symbol": "BTCUSDT", "qty": 1.0, "markPrice": 10.0},
            {"symbol": long_text, "qty": 1.0},
        ],
        "risk": {
            "atr_regime": long_text,
            "dd_state": long_text,
            "symbols": [{"symbol": "BTCUSDT", "atr_regime": long_text, "dd_state": long_text}],
        },
    }
    kpis, published = _assert_valid(docs)
    (row,) = published["positions"]
    assert (row["atr_regime"], row["dd_state"]) == (None, None)
    assert (kpis["risk"]["atr_regime"], kpis["risk"]["dd_state"]) == (None, None)
    cut = long_text[:24]  # drop notes name a row by its first 24 characters
    assert published["source"]["error"] == f"1 row dropped: symbol too long ({cut})"


def test_many_assets_are_folded_into_one_slice_and_the_total_is_kept() -> None:
    """A breakdown of 50,000 assets (six input bytes each, sixty published) gave as many
    slices; beyond 100, the smallest are one slice and total_usd is unchanged."""
    breakdown = {f"A{i}": float(i + 1) for i in range(50_000)}
    nav_doc = {"nav_usd": 1e12, "nav_detail": {"asset_breakdown": breakdown}}
    kpis, _ = _assert_valid({"nav": nav_doc})
    slices = kpis["aum"]["slices"]
    assert len(slices) == 1 + aum.MAX_ASSET_SLICES
    assert slices[-1]["label"] == "49,901 smaller assets"
    assert slices[-1]["usd"] == sum(range(1, 49_902))
    assert kpis["aum"]["total_usd"] == 1e12


def test_a_negative_breakdown_that_would_overflow_the_futures_slice_keeps_it_a_number() -> None:
    """NAV 1e308 minus a breakdown of -1e308 overflowed: Futures was published as null."""
    nav_doc = {"nav_usd": 1e308, "nav_detail": {"asset_breakdown": {"BTC": -1e308}}}
    kpis, _ = _assert_valid({"nav": nav_doc})
    assert kpis["aum"]["slices"][0] == {
        "label": "Futures",
        "usd": 1e308,
        "zar": None,
        "qty": None,
        "pnl_usd": None,
    }
