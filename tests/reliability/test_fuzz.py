"""Fuzzing the whole pipeline: generated state files, as bytes on disk, through the real
SourceReader, pipeline.build and render.

Properties, for any input: no exception; both outputs valid against their JSON Schema; no
NaN/Infinity in the bytes; the same files and the same build time give the same bytes; and a
file that cannot be used never replaces the last good content.

The inputs include what broke publishing before: strings that are not valid Unicode (lone
surrogate escapes in keys and values, bytes that are not UTF-8), nesting up to 5,000 levels,
timestamps in seconds, ms, µs and ns and ahead of the clock, and numeric strings with a comma
anywhere.

The default profile runs a few hundred examples per property (every CI run); the tests
marked slow are the same properties at 10,000 examples: `make test-long`
(HYPOTHESIS_PROFILE=long pytest -m slow), see tests/reliability/conftest.py.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kpi_publisher.contract import SOURCE_NAMES
from kpi_publisher.sources import SourceReader

from .helpers import NOW, Layout, assert_valid_outputs, build_bytes, good_docs

# -- values -----------------------------------------------------------------------------------

# Largest magnitude generated (None: the full float range). Arithmetic that overflows reads as
# missing (pinned by the two overflow tests at the end).
WILD_LIMIT: float | None = None
FINITE = st.floats(
    allow_nan=False,
    allow_infinity=False,
    min_value=-WILD_LIMIT if WILD_LIMIT else None,
    max_value=WILD_LIMIT,
)
SPECIAL_NUMBERS = st.sampled_from(
    [0, 0.0, -0.0, 1, -1, 1e150, -1e150, 5e-324, 1e-12, 2**63, 2**64 + 1, -(2**70), 10**30]
    + ([] if WILD_LIMIT else [1e308, -1e308])
)
NON_FINITE = st.sampled_from([float("nan"), float("inf"), float("-inf")])  # NaN tokens on disk


def _comma_at(text_and_cut: tuple[str, int]) -> str:
    text, cut = text_and_cut
    cut %= len(text) + 1
    return text[:cut] + "," + text[cut:]


# Numeric strings with a comma anywhere: well-formed grouping is a number, the rest missing.
COMMA_STRINGS = st.one_of(
    st.tuples(st.one_of(FINITE.map(repr), st.integers().map(str)), st.integers(0, 30)).map(
        _comma_at
    ),
    st.text(alphabet="0123456789,.-+ e_", max_size=14),
    st.sampled_from(["0,8", "18,05", "1,2345", "1.234,5", ",", "1,,000", "1_000", "١٢٣"]),
)
NUMERIC_STRINGS = st.one_of(
    FINITE.map(repr),
    st.floats(min_value=-1e12, max_value=1e12).map(lambda x: f"{x:,.2f}"),
    st.integers().map(str),
    st.sampled_from(
        [
            *("", " ", "abc", "1,234.5", " 12.5 ", "NaN", "Infinity", "1e999", "0x10"),
            *("-0", "-0.0", "-0,000.00"),  # negative zero: read as 0.0
        ]
    ),
    COMMA_STRINGS,
)
# Text with lone surrogates (written by json.dumps as "\udXXX" escapes) and any other code point.
SURROGATE = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
WILD_TEXT = st.text(st.one_of(st.characters(), SURROGATE), max_size=8)
NUMBER: st.SearchStrategy[Any] = st.one_of(
    FINITE,
    st.integers(min_value=-(2**70), max_value=2**70),
    SPECIAL_NUMBERS,
    NON_FINITE,
    NUMERIC_STRINGS,
    st.none(),
    st.booleans(),
)
DATETIMES = st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(2100, 1, 1), timezones=st.none()
)
OFFSETS = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
    lambda m: timezone(timedelta(minutes=m))
)
UNITS = st.sampled_from([1, 1_000, 1_000_000, 1_000_000_000])  # s, ms, µs, ns
# Behind the clock, a little ahead (skew: age 0.0) and far ahead (no valid timestamp).
OFFSET_S = st.one_of(
    st.floats(min_value=-10 * 86_400, max_value=0),
    st.floats(min_value=0, max_value=60),
    st.floats(min_value=60, max_value=10 * 365 * 86_400),
)
EPOCH_IN_UNITS = st.tuples(OFFSET_S, UNITS).map(lambda p: int((NOW + p[0]) * p[1]))
TIMESTAMP: st.SearchStrategy[Any] = st.one_of(
    st.floats(min_value=0, max_value=4e9),  # epoch seconds
    st.integers(min_value=10**12, max_value=4 * 10**12),  # epoch milliseconds
    EPOCH_IN_UNITS,  # s, ms, µs or ns, behind or ahead of the clock
    EPOCH_IN_UNITS.map(str),  # the same as digit strings
    st.integers(min_value=0, max_value=4 * 10**18),  # any magnitude
    st.integers(min_value=0, max_value=4 * 10**12).map(str),  # digit strings
    DATETIMES.map(lambda d: d.isoformat()),  # naive ISO = UTC
    DATETIMES.map(lambda d: d.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z")),
    st.tuples(DATETIMES, OFFSETS).map(lambda p: p[0].replace(tzinfo=p[1]).isoformat()),
    st.just(NOW + 3600.0),  # the future
    NUMBER,
    st.text(max_size=12),
)
SYMBOL = st.one_of(
    st.sampled_from(["BTCUSDT", "ETHUSDT", "SOLUSDT", "btcusdt", " XAUT ", "", "BTC", "X" * 40]),
    st.text(max_size=6),
    WILD_TEXT,
)
ASSET = st.sampled_from(["BTC", "ETH", "XAUT", "USDT", "USDC", "SOL", ""])
LABEL = st.one_of(
    st.sampled_from(
        ["NORMAL", "normal", "CAUTIOUS", "DRAWDOWN", "defensive", "recovery", "good", "ok"]
    ),
    st.sampled_from(["poor", "degraded", "broken", "low", "high", ""]),
    st.text(max_size=8),
    WILD_TEXT,
    st.none(),
    NUMBER,
)
TS_KEYS = ("updated_at", "updated_ts", "ts", "timestamp", "updated", "generated_at")


def obj(required: dict[str, Any] | None = None, /, **optional: Any) -> st.SearchStrategy[Any]:
    """An object with any subset of the optional keys."""
    return st.fixed_dictionaries(required or {}, optional=optional)


def per_symbol(entry: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Per-symbol data as a list of objects with `symbol`, or a dict keyed by symbol."""
    return st.one_of(
        st.lists(st.tuples(SYMBOL, entry).map(lambda p: {"symbol": p[0], **p[1]}), max_size=4),
        st.dictionaries(SYMBOL, entry, max_size=4),
    )


def stamped(doc: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """Add zero, one or two of the file-timestamp keys."""
    stamps = st.dictionaries(st.sampled_from(TS_KEYS), TIMESTAMP, max_size=2)
    return st.tuples(doc, stamps).map(lambda p: {**p[0], **p[1]})


OFFEXCHANGE = st.dictionaries(
    ASSET, obj(qty=NUMBER, usd_value=NUMBER, mark=NUMBER, avg_cost=NUMBER), max_size=4
)
ASSETS = st.lists(
    obj(asset=ASSET, label=ASSET, usd=NUMBER, usd_value=NUMBER, qty=NUMBER, pnl=NUMBER),
    max_size=4,
)
AUM = obj(futures=NUMBER, offexchange=OFFEXCHANGE, assets=ASSETS, total=NUMBER)
NAV_FIELDS = dict(
    nav_usd=NUMBER,
    nav=NUMBER,
    nav_total=NUMBER,
    total_equity=NUMBER,
    equity=NUMBER,
    peak_equity=NUMBER,
    peak=NUMBER,
    drawdown_pct=NUMBER,
    drawdown=NUMBER,
    unrealized_pnl=NUMBER,
    realized_pnl_today=NUMBER,
    usd_zar=NUMBER,
    fx=obj(usd_zar=NUMBER, usd_to_zar=NUMBER),
    age_s=NUMBER,
    aum=AUM,
)
NAV_STATE = stamped(obj(**NAV_FIELDS))
NAV = stamped(
    obj(
        **NAV_FIELDS,
        nav_detail=obj(
            source=st.sampled_from(["exchange", "unavailable", ""]),
            asset_breakdown=st.dictionaries(ASSET, NUMBER, max_size=4),
            conversions=st.dictionaries(ASSET, obj(price=NUMBER), max_size=4),
            aum=AUM,
        ),
    )
)
DRAWDOWN = obj(dd_pct=NUMBER, dd_abs=NUMBER, daily_loss=obj(pct=NUMBER))
ROUTER_STATS = obj(
    maker_fill_rate=NUMBER,
    maker_fill_ratio=NUMBER,
    fallback_ratio=NUMBER,
    fallback_rate=NUMBER,
    slip_q25_bps=NUMBER,
    slip_q50_bps=NUMBER,
    slippage_bps=NUMBER,
    slip_q75_bps=NUMBER,
    quality=LABEL,
    policy_quality=LABEL,
)
SYMBOL_RISK = obj(
    atr_ratio=NUMBER,
    ratio=NUMBER,
    atr_regime=LABEL,
    dd_state=LABEL,
    dd_today_pct=NUMBER,
    risk=obj(dd_today_pct=NUMBER, dd_state=LABEL),
    vol=obj(atr_ratio=NUMBER, atr_regime=LABEL),
)
FEE_PNL = obj(fee_pnl_ratio=NUMBER, fees=NUMBER, pnl=NUMBER, window_days=NUMBER)
ATR = obj(median_ratio=NUMBER, atr_regime=LABEL, symbols=per_symbol(SYMBOL_RISK))
KPIS_V7 = obj(
    drawdown=DRAWDOWN,
    dd_state=LABEL,
    atr=ATR,
    atr_regime=LABEL,
    router_stats=ROUTER_STATS,
    router_quality=LABEL,
    fee_pnl=FEE_PNL,
    symbols=per_symbol(SYMBOL_RISK),
)
RISK = stamped(
    obj(
        drawdown=DRAWDOWN,
        dd_state=st.one_of(LABEL, obj(dd_state=LABEL, state=LABEL, drawdown=DRAWDOWN), st.just({})),
        dd_frac=NUMBER,
        daily_loss_frac=NUMBER,
        portfolio_dd_pct=NUMBER,
        atr=ATR,
        atr_ratio=NUMBER,
        atr_regime=LABEL,
        router_stats=st.one_of(ROUTER_STATS, st.just({}), st.just({"quality": None})),
        fee_pnl=FEE_PNL,
        fee_pnl_ratio=NUMBER,
        fees=NUMBER,
        pnl=NUMBER,
        symbols=per_symbol(SYMBOL_RISK),
        kpis_v7=KPIS_V7,
    )
)
ROUTER_ENTRY = obj(
    maker_fill_rate=NUMBER,
    fallback_rate=NUMBER,
    fallback_ratio=NUMBER,
    slippage_p25=NUMBER,
    slippage_p50=NUMBER,
    slippage_p75=NUMBER,
    quality=LABEL,
)
ROUTER = stamped(
    obj(
        symbols=per_symbol(ROUTER_ENTRY),
        per_symbol=per_symbol(ROUTER_ENTRY),
        router_health=obj(per_symbol=per_symbol(ROUTER_ENTRY)),
        symbol_stats=per_symbol(ROUTER_ENTRY),
        quality=LABEL,
        summary=obj(
            quality_counts=st.dictionaries(LABEL.filter(lambda v: isinstance(v, str)), NUMBER)
        ),
    )
)
ROW_CAMEL = obj(
    symbol=SYMBOL,
    positionAmt=NUMBER,
    entryPrice=NUMBER,
    markPrice=NUMBER,
    positionSide=st.sampled_from(["LONG", "SHORT", "BOTH", "", "sideways"]),
    unRealizedProfit=NUMBER,
    leverage=NUMBER,
    notional=NUMBER,
)
ROW_SNAKE = obj(
    symbol=SYMBOL,
    qty=NUMBER,
    pos_qty=NUMBER,
    entry_price=NUMBER,
    mark_price=NUMBER,
    side=st.sampled_from(["LONG", "SHORT", "BUY", "SELL", "BOTH", None]),
    unrealized_pnl=NUMBER,
    leverage=NUMBER,
    notional_usd=NUMBER,
)
ROWS = st.lists(st.one_of(ROW_CAMEL, ROW_SNAKE), max_size=6)
POSITIONS = st.one_of(
    ROWS,
    stamped(obj(rows=ROWS)),
    stamped(obj(items=ROWS)),
    stamped(obj(positions=ROWS)),
)
FX = obj(
    prices=st.dictionaries(ASSET, NUMBER, max_size=5),
    usd_zar=NUMBER,
    prices_ts=TIMESTAMP,
    usd_zar_ts=TIMESTAMP,
)
HOLDINGS = st.dictionaries(ASSET, obj(qty=NUMBER, avg_cost=NUMBER), max_size=4)

SHAPED: dict[str, st.SearchStrategy[Any]] = {
    "nav_state": NAV_STATE,
    "nav": NAV,
    "risk": RISK,
    "router": ROUTER,
    "positions": POSITIONS,
    "fx": FX,
    "holdings": HOLDINGS,
}
# Any source missing, or present with a wild but well-shaped document.
SHAPED_STATE = st.fixed_dictionaries({}, optional=SHAPED)

# Arbitrary JSON, NaN/Infinity included (stdlib json writes them as bare tokens).
ANY_JSON = st.recursive(
    st.none() | st.booleans() | NUMBER | st.text(max_size=12) | WILD_TEXT,
    lambda kids: (
        st.lists(kids, max_size=4)
        | st.dictionaries(st.one_of(st.text(max_size=8), WILD_TEXT), kids, max_size=5)
    ),
    max_leaves=25,
)


def _depth(value: Any) -> int:
    """Container nesting depth of a decoded value (a top-level object is 1), iteratively."""
    deepest, level = 0, [value]
    while level:
        level = [c for c in level if isinstance(c, (dict, list))]
        deepest += bool(level)
        level = [v for c in level for v in (c.values() if isinstance(c, dict) else c)]
    return deepest


def _nest(depth: int, kinds: list[bool], inner: tuple[int, bytes], pad: int) -> tuple[int, bytes]:
    """(total depth, bytes): `inner` inside `depth` containers (True: {"k": ...}, False: a
    list), followed by `pad` spaces."""
    inner_depth, body = inner
    head = b"".join(b'{"k":' if kinds[i % len(kinds)] else b"[" for i in range(depth))
    tail = b"".join(b"}" if kinds[i % len(kinds)] else b"]" for i in reversed(range(depth)))
    return depth + inner_depth, head + body + tail + b" " * pad


# Nesting up to 5,000 levels around any value (a NaN token or a lone surrogate sends it to the
# stdlib decoder): 64 levels are a document, anything deeper is an invalid file.
DEEP = st.builds(
    _nest,
    st.one_of(st.integers(1, 70), st.integers(1, 5_000)),
    st.lists(st.booleans(), min_size=1, max_size=3),
    st.one_of(
        ANY_JSON.map(lambda v: (_depth(v), json.dumps(v).encode())),
        st.just((0, b"NaN")),
        st.just((0, b'"\\udcff"')),
    ),
    st.sampled_from([0, 70_000]),  # small files and files past the size where orjson pads
)
# A JSON document with bytes that are not UTF-8 spliced in (a stray byte, an encoded surrogate).
NOT_UTF8 = st.builds(
    lambda doc, bad, cut: doc[: cut % (len(doc) + 1)] + bad + doc[cut % (len(doc) + 1) :],
    ANY_JSON.map(lambda v: json.dumps(v, ensure_ascii=False).encode("utf-8", "surrogatepass")),
    st.sampled_from([b"\xff", b"\x80", b"\xc3", b"\xed\xa0\x80", b"\xed\xb3\xbf", b"\xf8\x88"]),
    st.integers(min_value=0),
)
RAW_BYTES = st.one_of(
    DEEP.map(lambda p: p[1]),
    NOT_UTF8,
    ANY_JSON.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=64),
    ANY_JSON.map(lambda v: b"\xef\xbb\xbf" + json.dumps(v).encode()),
    st.tuples(ANY_JSON, st.integers(min_value=0, max_value=200)).map(
        lambda p: json.dumps(p[0]).encode()[: p[1]]
    ),
)
ARBITRARY_STATE = st.dictionaries(
    st.sampled_from(SOURCE_NAMES),
    st.one_of(ANY_JSON.map(lambda v: json.dumps(v).encode()), RAW_BYTES),
)


def _encode(doc: Any) -> bytes:
    """What a Python executor writes: stdlib json, NaN/Infinity as bare tokens."""
    return json.dumps(doc, allow_nan=True).encode()


def _in_layout(files: dict[str, bytes], check: Callable[[Layout], object]) -> None:
    root = Path(tempfile.mkdtemp(prefix="hedge-kpi-fuzz-"))
    try:
        layout = Layout(root).make()
        for source, raw in files.items():
            layout.path(source).write_bytes(raw)
        check(layout)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _negative_zeros(value: Any, path: str = "$") -> list[str]:
    """The paths of every -0.0 in a decoded document."""
    if isinstance(value, float):
        return [path] if value == 0.0 and math.copysign(1.0, value) < 0 else []
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _negative_zeros(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _negative_zeros(v, f"{path}[{i}]")]
    return []


def _build_both_twice(layout: Layout) -> tuple[dict[str, Any], dict[str, Any]]:
    """Build with two fresh readers: valid, NaN-free, without a negative zero (zero is one
    value: "-0" and -0.0 read as 0.0, and arithmetic never publishes -0.0) and byte-identical;
    returns both documents."""
    settings = layout.settings()
    first = build_bytes(SourceReader(settings), settings)
    kpis, positions = assert_valid_outputs(*first)
    assert _negative_zeros(kpis) + _negative_zeros(positions) == []
    assert build_bytes(SourceReader(settings), settings) == first
    return kpis, positions


def _build_twice(layout: Layout) -> dict[str, Any]:
    """`_build_both_twice`'s KPIs."""
    return _build_both_twice(layout)[0]


# -- properties -------------------------------------------------------------------------------


def _shaped_property(docs: dict[str, Any]) -> None:
    def check(layout: Layout) -> None:
        kpis = _build_twice(layout)
        for source in SOURCE_NAMES:
            expected = {"ok", "stale"} if source in docs else {"missing"}
            assert kpis["sources"][source]["status"] in expected, (source, kpis["sources"])
            age = kpis["sources"][source]["age_s"]
            assert age is None or age >= 0.0, (source, age)
        nav = kpis["nav"]
        # Fresh only with a real age within the limit: never from a timestamp far ahead.
        assert nav["fresh"] is (nav["age_s"] is not None and nav["age_s"] <= 90.0), nav
        assert nav["updated_at"] is None or nav["updated_at"] <= NOW + 60.0, nav

    _in_layout({s: _encode(d) for s, d in docs.items()}, check)


def _deep_property(source: str, deep: tuple[int, bytes]) -> None:
    """A file nested `depth` levels: a document up to 64, invalid (with the reason) beyond."""
    depth, raw = deep

    def check(layout: Layout) -> None:
        kpis = _build_twice(layout)
        status = kpis["sources"][source]
        if depth > 64:
            assert status["status"] == "invalid", status
            assert status["error"].endswith("nested deeper than 64 levels"), status
        elif raw.lstrip().startswith(b"{"):
            assert status["status"] != "invalid" or "not valid JSON" in status["error"], status

    _in_layout({source: raw}, check)


def _arbitrary_property(files: dict[str, bytes]) -> None:
    _in_layout(files, _build_twice)


def _last_good_property(source: str, cut: int, junk: bytes) -> None:
    """A good file replaced by a proper prefix of itself (+ junk): the KPIs stay the same."""

    def check(layout: Layout) -> None:
        settings = layout.settings()
        reader = SourceReader(settings)
        good, _ = assert_valid_outputs(*build_bytes(reader, settings))
        raw = layout.path(source).read_bytes()
        layout.path(source).write_bytes(raw[: cut % len(raw)] + junk)
        kpis, _ = assert_valid_outputs(*build_bytes(reader, settings))
        status = kpis["sources"].pop(source)
        good["sources"].pop(source)
        assert status["status"] == "invalid", status
        assert kpis == good

    _in_layout({s: _encode(d) for s, d in good_docs().items()}, check)


SHAPED_GIVEN = given(docs=SHAPED_STATE)
DEEP_GIVEN = given(source=st.sampled_from(SOURCE_NAMES), deep=DEEP)
ARBITRARY_GIVEN = given(files=ARBITRARY_STATE)
LAST_GOOD_GIVEN = given(
    source=st.sampled_from(SOURCE_NAMES),
    cut=st.integers(min_value=0),
    junk=st.sampled_from([b"", b"\x00", b"\xff", b',"x":', b"]]"]),
)


@SHAPED_GIVEN
def test_wild_values_in_real_shapes(docs: dict[str, Any]) -> None:
    """Real shapes, wild values: valid, NaN-free, deterministic output; files never invalid."""
    _shaped_property(docs)


@ARBITRARY_GIVEN
def test_arbitrary_bytes_in_any_input(files: dict[str, bytes]) -> None:
    """Any JSON, binary, BOM-prefixed or truncated bytes: valid, NaN-free, deterministic."""
    _arbitrary_property(files)


@LAST_GOOD_GIVEN
def test_a_torn_file_never_replaces_the_last_good_content(
    source: str, cut: int, junk: bytes
) -> None:
    """Truncated at any offset (plus junk): invalid, and every other KPI is unchanged."""
    _last_good_property(source, cut, junk)


@DEEP_GIVEN
def test_any_nesting_depth_is_a_document_or_invalid(source: str, deep: tuple[int, bytes]) -> None:
    """Up to 5,000 levels, objects and lists, NaN tokens and lone surrogates inside: never an
    exception; deeper than 64 levels is invalid with the reason."""
    _deep_property(source, deep)


# The same properties for `make test-long` (10,000 examples each under the "long" profile).


@pytest.mark.slow
@pytest.mark.timeout(3600)  # 10,000 examples: minutes, not seconds
@SHAPED_GIVEN
def test_wild_values_in_real_shapes_long(docs: dict[str, Any]) -> None:
    _shaped_property(docs)


@pytest.mark.slow
@pytest.mark.timeout(3600)  # 10,000 examples: minutes, not seconds
@ARBITRARY_GIVEN
def test_arbitrary_bytes_in_any_input_long(files: dict[str, bytes]) -> None:
    _arbitrary_property(files)


@pytest.mark.slow
@pytest.mark.timeout(3600)  # 10,000 examples: minutes, not seconds
@LAST_GOOD_GIVEN
def test_a_torn_file_never_replaces_the_last_good_content_long(
    source: str, cut: int, junk: bytes
) -> None:
    _last_good_property(source, cut, junk)


@pytest.mark.slow
@pytest.mark.timeout(3600)  # 10,000 examples: minutes, not seconds
@DEEP_GIVEN
def test_any_nesting_depth_is_a_document_or_invalid_long(
    source: str, deep: tuple[int, bytes]
) -> None:
    _deep_property(source, deep)


# -- overflow, pinned -----------------------------------------------------------------------------


def _kpis_for(files: dict[str, Any]) -> dict[str, Any]:
    box: dict[str, Any] = {}
    _in_layout({s: _encode(d) for s, d in files.items()}, lambda lay: box.update(_build_twice(lay)))
    return box


def test_overflowing_holding_value_is_unpriced() -> None:
    """A holding whose value overflows a float is unpriced, not a null slice."""
    kpis = _kpis_for(
        {"nav_state": {}, "holdings": {"BTC": {"qty": 8.98846567431158e307, "avg_cost": 2}}}
    )
    assert "BTC" in kpis["aum"]["unpriced"]


def test_overflowing_aum_total_does_not_raise() -> None:
    """Two slices near the float limit: the build finishes and publishes valid output."""
    assets = [{"asset": "BTC", "usd": 1.5e308}, {"asset": "ETH", "usd": 1.5e308}]
    kpis = _kpis_for({"nav_state": {"aum": {"assets": assets}}})
    assert kpis["aum"]["total_usd"] is None or kpis["aum"]["total_usd"] < float("inf")


# -- negative zero, pinned ----------------------------------------------------------------------


SYMBOL_ZEROS = ("atr_ratio", "dd_today_pct")


def test_negative_zero_in_every_numeric_field_publishes_zero() -> None:
    """ "-0" and -0.0 wherever a number is read (and a short at its entry price, whose PnL is
    0.0 x a negative qty): every published zero is 0.0, never -0.0."""
    docs = good_docs()
    docs["nav_state"]["aum"] = {"futures": "-0", "offexchange": {"BTC": {"qty": -0.0}}}
    docs["nav_state"]["unrealized_pnl"] = "-0.0"
    docs["risk"]["drawdown"] = {"dd_pct": -0.0, "dd_abs": "-0", "daily_loss": {"pct": "-0"}}
    docs["risk"]["router_stats"] = {"maker_fill_ratio": "-0", "slip_q50": -0.0, "quality": "ok"}
    docs["risk"]["fee_pnl"] = {"fee_pnl_ratio": -0.0, "fees": "-0", "pnl": -0.0}
    docs["risk"]["symbols"] = [{"symbol": "BTCUSDT", "atr_ratio": "-0", "dd_today_pct": -0.0}]
    docs["positions"] = {"rows": [{"symbol": "ETHUSDT", "qty": -2.0, "entry": 5.0, "mark": 5.0}]}
    box: dict[str, Any] = {}
    files = {s: _encode(d) for s, d in docs.items()}
    _in_layout(
        files, lambda lay: box.update(zip(("kpis", "pos"), _build_both_twice(lay), strict=True))
    )
    kpis, published = box["kpis"], box["pos"]
    named = {
        "aum.slices[Futures].usd": kpis["aum"]["slices"][0]["usd"],
        "nav.unrealized_pnl_usd": kpis["nav"]["unrealized_pnl_usd"],
        **{f"risk.{k}": kpis["risk"][k] for k in ("drawdown_pct", "drawdown_abs_usd")},
        "risk.daily_loss_pct": kpis["risk"]["daily_loss_pct"],
        "router.maker_fill_rate": kpis["router"]["maker_fill_rate"],
        "router.slip_q50_bps": kpis["router"]["slip_q50_bps"],
        **{f"fees.{k}": kpis["fees"][k] for k in ("fee_pnl_ratio", "fees_usd", "pnl_usd")},
        **{f"symbols.BTC.{k}": kpis["symbols"]["BTCUSDT"][k] for k in SYMBOL_ZEROS},
        "positions[ETHUSDT].pnl": published["positions"][0]["pnl"],
        "totals.pnl_usd": published["totals"]["pnl_usd"],
    }  # fmt: skip
    # == 0.0 holds for -0.0 too: the sign is what is pinned.
    signs = {path: math.copysign(1.0, value) for path, value in named.items()}
    assert signs == dict.fromkeys(named, 1.0)
    assert set(named.values()) == {0.0}
