"""Rule 5 for every chain of blocks: a block with no valid value never hides the next source.

docs/CONTRACT_RULES.md, rule 5: "A block exists only if it is a non-empty object with at least
one valid value ... An empty or all-null block never hides the next source in a chain." Each
stage must judge a block's existence by exactly the readers its fields are read with, or a value
one reader accepts and the other refuses (a label too long, a slippage sentinel, an asset entry
with a name and no amount) hides real data behind nulls.

Each property puts a generated value-less block in front of a good source (router_stats before
the embedded kpis_v7.router_stats and router_health; router_health's per-symbol shapes in their
order; the three AUM blocks; aum.assets, aum.offexchange, the holdings config and the two
breakdowns; the fee blocks) and asserts the stage's output equals its output without it.
"""

from __future__ import annotations

import math
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from kpi_publisher.parse import MAX_LABEL_CHARS
from kpi_publisher.stages import aum, fees, router

# -- values no reader takes ---------------------------------------------------------------------

NOT_A_NUMBER: st.SearchStrategy[Any] = st.sampled_from(
    [None, True, False, "", " ", "n/a", "0,8", "1_000", "١", math.nan, math.inf, -math.inf, [], {}]
)
# A slippage of 10,000 bps or more is the router's "no price" sentinel (rule 4).
NOT_A_SLIPPAGE = NOT_A_NUMBER | st.sampled_from([10_000, -10_000.0, 1e9, "10,000", "-10000"])
CONTROL = st.sampled_from(["\x00", "\x01", "\x07", "\x1b", "\x7f", "\x85", "\x9f"])
# Text that is no label: too long, or holding a control character between two letters (so no
# strip removes it); a lower-cased label (a quality) also "İ" * 33, 66 characters lower-cased,
# and an upper-cased name (an asset) "ß" * 33, 66 characters upper-cased.
NOT_A_LABEL = st.one_of(
    NOT_A_NUMBER.filter(lambda v: not isinstance(v, str) or not v.strip()),
    st.just(1.5),
    st.integers(min_value=MAX_LABEL_CHARS + 1, max_value=200).map(lambda n: "q" * n),
    st.tuples(st.text(max_size=4), CONTROL, st.text(max_size=4)).map(
        lambda p: f"a{p[0]}{p[1]}{p[2]}b"
    ),
)
NOT_A_LOWER_LABEL = NOT_A_LABEL | st.just("İ" * 33)
NOT_A_NAME = NOT_A_LABEL | st.just("ß" * 33)
SYMBOLS = st.sampled_from(["BTCUSDT", "ETHUSDT", "btcusdt", "SOLUSDT"])
ASSETS = st.sampled_from(["BTC", "ETH", "XAUT", "usdc", "Futures", "futures"])


def _numeric(keys: tuple[str, ...]) -> dict[str, st.SearchStrategy[Any]]:
    return {k: NOT_A_NUMBER for k in keys}


# -- router -----------------------------------------------------------------------------------

ROUTER_NUMBERS = {
    key: NOT_A_SLIPPAGE if name in router.SLIP_FIELDS else NOT_A_NUMBER
    for name, keys in router.FIELD_KEYS.items()
    for key in keys
}
VALUELESS_STATS = st.fixed_dictionaries(
    {}, optional={**ROUTER_NUMBERS, **{k: NOT_A_LOWER_LABEL for k in router.QUALITY_KEYS}}
)
# A per-symbol router entry with nothing any field reads (no sample count either: a count is a
# value of the symbol's row).
VALUELESS_ENTRY = st.fixed_dictionaries({}, optional=ROUTER_NUMBERS)
VALUELESS_SHAPE = st.one_of(
    st.lists(st.tuples(SYMBOLS, VALUELESS_ENTRY).map(lambda p: {"symbol": p[0], **p[1]})),
    st.dictionaries(SYMBOLS, VALUELESS_ENTRY, min_size=1),
)
GOOD_STATS = {"maker_fill_ratio": 0.4, "slip_q50": 1.5, "quality": "ok"}
GOOD_HEALTH = [
    {"symbol": "BTCUSDT", "maker_fill_rate": 0.6, "fallback_rate": 0.1, "slippage_p50": 2.0},
    {"symbol": "ETHUSDT", "maker_fill_rate": 0.2, "slippage_p25": 0.5},
]


@given(stats=VALUELESS_STATS, embedded=st.booleans())
def test_a_value_less_router_stats_block_hides_nothing(stats: dict[str, Any], embedded: bool):
    """risk.router_stats with no value: the embedded block (or router_health) is used, as if
    it were absent."""
    health = {"symbols": GOOD_HEALTH, "quality": "degraded"}
    rest = {"kpis_v7": {"router_stats": GOOD_STATS}} if embedded else {}
    assert router.build_router({"router_stats": stats, **rest}, health) == router.build_router(
        rest, health
    )
    # The embedded block alike, before router_health.
    risk = {"kpis_v7": {"router_stats": stats}}
    assert router.build_router(risk, health) == router.build_router({}, health)


@given(
    shapes=st.lists(VALUELESS_SHAPE, min_size=1, max_size=3),
    good_at=st.integers(min_value=0, max_value=3),
)
def test_value_less_per_symbol_shapes_hide_nothing(shapes: list[Any], good_at: int):
    """router_health's shapes (symbols, per_symbol, router_health.per_symbol, symbol_stats):
    value-less ones in the other places, before or after the good one, change neither the
    means nor the symbol rows."""
    paths = router.PER_SYMBOL_PATHS
    good_at = min(good_at, len(paths) - 1)
    others = [p for p in paths if p != paths[good_at]][: len(shapes)]
    valueless = dict(zip(others, shapes, strict=True))
    with_valueless = _nested({paths[good_at]: GOOD_HEALTH, **valueless})
    without = _nested({paths[good_at]: GOOD_HEALTH})
    assert router.build_router({}, with_valueless) == router.build_router({}, without)


def _nested(flat: dict[str, Any]) -> dict[str, Any]:
    """{"a.b": v} as {"a": {"b": v}}."""
    out: dict[str, Any] = {}
    for path, value in flat.items():
        *parents, last = path.split(".")
        node = out
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    return out


# -- AUM --------------------------------------------------------------------------------------

PRICES = st.one_of(NOT_A_NUMBER, st.floats(min_value=0.5, max_value=1e5), st.just(0.0))
# A holding that states no amount (no qty, no USD value): whatever its prices, no value.
VALUELESS_HOLDING = st.fixed_dictionaries(
    {},
    optional={
        **_numeric(aum.QTY_KEYS),
        **_numeric(aum.VALUE_KEYS),
        "mark": PRICES,
        "avg_cost": PRICES,
        "note": st.text(max_size=5),
    },
)
VALUELESS_HOLDINGS = st.dictionaries(
    st.one_of(ASSETS, NOT_A_NAME.filter(lambda v: isinstance(v, str))), VALUELESS_HOLDING
)
VALUELESS_ASSET = st.fixed_dictionaries(
    {},
    optional={
        "asset": st.one_of(ASSETS, NOT_A_NAME),
        "label": st.one_of(ASSETS, NOT_A_NAME),
        "pnl": NOT_A_NUMBER,
        "pnl_usd": NOT_A_NUMBER,
        **_numeric(aum.QTY_KEYS),
        **_numeric(aum.VALUE_KEYS),
    },
)
VALUELESS_AUM = st.fixed_dictionaries(
    {},
    optional={
        "futures": NOT_A_NUMBER,
        "total": NOT_A_NUMBER,
        "assets": st.lists(VALUELESS_ASSET, max_size=4),
        "offexchange": VALUELESS_HOLDINGS,
    },
)
VALUELESS_BREAKDOWN = st.dictionaries(
    st.one_of(ASSETS, NOT_A_NAME.filter(lambda v: isinstance(v, str))), NOT_A_NUMBER
)
FX = {"prices": {"BTC": 90_000.0, "XAUT": 4_000.0}}
HOLDINGS = {"BTC": {"qty": 0.01, "avg_cost": 50_000.0}, "XAUT": {"qty": 0.5}}
GOOD_AUM = {"futures": 1_000.0, "offexchange": {"XAUT": {"qty": 1.0, "usd_value": 2_600.0}}}


def _aum(nav_state: Any, nav: Any, holdings: Any = HOLDINGS) -> dict[str, Any]:
    return aum.build_aum(nav_state, nav, FX, holdings, nav_usd=2_000.0, usd_zar=18.0)


@given(block=VALUELESS_AUM, slot=st.sampled_from(["nav_state", "nav", "nav_detail"]))
def test_a_value_less_aum_block_hides_nothing(block: dict[str, Any], slot: str):
    """nav_state.aum, nav.aum and nav.nav_detail.aum in order: a value-less one before the
    good block (or, last, before the holdings config) changes nothing."""
    if slot == "nav_state":
        with_valueless = _aum({"aum": block}, {"aum": GOOD_AUM})
        without = _aum({}, {"aum": GOOD_AUM})
    elif slot == "nav":
        with_valueless = _aum(None, {"aum": block, "nav_detail": {"aum": GOOD_AUM}})
        without = _aum(None, {"nav_detail": {"aum": GOOD_AUM}})
    else:
        with_valueless = _aum({"aum": {}}, {"nav_detail": {"aum": block}})
        without = _aum({"aum": {}}, {})
    assert with_valueless == without


@given(
    assets=st.lists(VALUELESS_ASSET, max_size=4),
    offexchange=VALUELESS_HOLDINGS,
    config=VALUELESS_HOLDINGS,
    breakdown=VALUELESS_BREAKDOWN,
)
def test_value_less_sources_of_assets_hide_nothing(
    assets: list[Any], offexchange: dict[str, Any], config: dict[str, Any], breakdown: Any
):
    """aum.assets, aum.offexchange, the holdings config, nav.json's breakdown and then
    nav_state.json's: value-less ones before a good one change nothing (the Futures slice is
    reduced by the breakdown in use only)."""
    block = {"futures": 1_000.0}
    # The block's own sources before the holdings config.
    full = {**block, "assets": assets, "offexchange": offexchange}
    assert _aum({"aum": full}, None) == _aum({"aum": block}, None)
    # The holdings config and nav.json's breakdown before nav_state.json's breakdown.
    inside = {"nav_detail": {"asset_breakdown": {"USDT": 300.0, "BNB": 50.0}}}
    nav = {"nav_detail": {"asset_breakdown": breakdown}}
    assert _aum({**inside, "aum": full}, nav, config) == _aum({**inside, "aum": block}, None, None)


# -- fees -------------------------------------------------------------------------------------

VALUELESS_FEES = st.fixed_dictionaries({}, optional=_numeric(fees.FIELDS))


@given(first=VALUELESS_FEES, second=VALUELESS_FEES)
def test_value_less_fee_blocks_hide_nothing(first: dict[str, Any], second: dict[str, Any]):
    """risk.fee_pnl and risk.kpis_v7.fee_pnl with no value: the top-level keys are used."""
    top = {"fee_pnl_ratio": 0.1, "fees": 2.0, "pnl": 20.0}
    risk = {"fee_pnl": first, "kpis_v7": {"fee_pnl": second}, **top}
    assert fees.build_fees(risk) == fees.build_fees(top)
