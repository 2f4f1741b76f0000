"""Every name the publisher copies from its inputs is published bounded and without control
characters, and every listed position carries its symbol's risk fields, whatever the cap.

Names (symbols, asset names, states, regimes, qualities) are read by `parse.symbol`,
`parse.label` and `parse.lower_label`: at most MAX_LABEL_CHARS characters as published (after
upper- or lower-casing, which can lengthen a string: "ß" is "SS", "İ" is "i̇") and no control
character; anything else is missing. The property puts wild text in every place a name is read
from, runs the whole build and checks every place a name is published.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from kpi_publisher import pipeline
from kpi_publisher.config import Settings
from kpi_publisher.contract import from_values
from kpi_publisher.parse import MAX_LABEL_CHARS

from .helpers import NOW

SETTINGS = Settings()
# Text that tempts each rule: case mappings that lengthen, control characters (C0, DEL, C1) at
# the ends and inside, whitespace, and lengths around the limit.
TRICKY = st.sampled_from(["ß", "İ", "ŉ", "ﬃ", "\x00", "\x07", "\x1f", "\x7f", "\x85", "\x9f", " "])
NAME = st.one_of(
    st.sampled_from(["BTCUSDT", "ethusdt", "BTC", "XAUT", "normal", "DRAWDOWN", "ok"]),
    st.text(st.one_of(st.characters(), TRICKY), max_size=12),
    st.tuples(st.sampled_from(["ß", "İ", "x", "\x01"]), st.integers(20, 70)).map(
        lambda p: p[0] * p[1]
    ),
    st.tuples(st.text(max_size=3), TRICKY, st.text(max_size=3)).map(lambda p: "A" + "".join(p)),
)


def _health(name: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {"symbol": name},
        optional={
            "atr_ratio": st.just(1.25),
            "atr_regime": name,
            "dd_state": name,
            "dd_today_pct": st.just(-0.5),
            "risk": st.fixed_dictionaries({"dd_state": name}),
            "vol": st.fixed_dictionaries({"atr_regime": name}),
            "router": st.fixed_dictionaries({"maker_fill_ratio": st.just(0.5)}),
        },
    )


def _obj(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(fields)


def _by_name(value: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(NAME, value, max_size=3)


HOLDING = _obj(qty=st.just(1.0), avg_cost=st.just(2.0))
DOCS = _obj(
    positions=st.lists(_obj(symbol=NAME, qty=st.sampled_from([1.0, -2.0]), mark=st.just(3.0))),
    risk=_obj(
        symbols=st.lists(_health(NAME), max_size=6),
        dd_state=NAME,
        atr=_obj(atr_regime=NAME, symbols=_by_name(_health(NAME))),
        router_stats=_obj(quality=NAME, maker_fill_ratio=st.just(0.3)),
        kpis_v7=_obj(router_quality=NAME, dd_state=NAME),
    ),
    router=_obj(
        quality=NAME,
        per_symbol=_by_name(_obj(maker_fill_rate=st.just(0.4))),
        summary=_obj(quality_counts=_by_name(st.just(1))),
    ),
    nav_state=_obj(
        nav=st.just(1_000.0),
        aum=st.fixed_dictionaries(
            {},
            optional={
                "assets": st.lists(_obj(asset=NAME, usd=st.just(5.0)), max_size=3),
                "offexchange": _by_name(HOLDING),
            },
        ),
    ),
    nav=_obj(nav_detail=_obj(asset_breakdown=_by_name(st.just(7.0)))),
    holdings=_by_name(HOLDING),
    fx=_obj(prices=_by_name(st.just(9.0))),
)


def _strings(value: Any) -> Iterator[str]:
    """Every string in a document, keys included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _names(kpis: dict[str, Any], positions: dict[str, Any]) -> Iterator[Any]:
    """Every published name: the places a symbol, an asset, a state, a regime or a quality is
    copied to."""
    risk = kpis["risk"]
    yield from (risk["dd_state"], risk["atr_regime"], kpis["router"]["quality"])
    yield from (kpis["dd_state"], kpis["atr_regime"], kpis["router_quality"])
    for symbol, entry in kpis["symbols"].items():
        yield from (symbol, entry["atr_regime"], entry["dd_state"])
    yield from kpis["router"]["symbols"]
    yield from (s["label"] for s in kpis["aum"]["slices"])
    yield from kpis["aum"]["unpriced"]
    for row in kpis["atr"]["symbols"]:
        yield from (row["symbol"], row["atr_regime"])
    for row in positions["positions"]:
        yield from (row["symbol"], row["atr_regime"], row["dd_state"])


def _is_control(char: str) -> bool:
    return unicodedata.category(char) == "Cc"


@given(docs=DOCS)
def test_every_published_name_is_bounded_and_free_of_control_characters(docs: dict[str, Any]):
    """No string anywhere in either output holds a control character, and every published
    name is at most MAX_LABEL_CHARS characters (an asset name too long to publish is named in
    `unpriced` cut to that length)."""
    outputs = pipeline.build(from_values(docs), NOW, SETTINGS)
    for doc in (outputs.kpis, outputs.positions):
        bad = [s for s in _strings(doc) if any(map(_is_control, s))]
        assert bad == []
    for name in _names(outputs.kpis, outputs.positions):
        assert name is None or 0 < len(name) <= MAX_LABEL_CHARS, name


# -- the symbols cap bounds the `symbols` map, never a listed row's risk fields -----------------


@given(
    held=st.integers(min_value=1, max_value=90),
    others=st.integers(min_value=0, max_value=20),
    cap=st.integers(min_value=0, max_value=80),
    without=st.sets(st.integers(min_value=0, max_value=110), max_size=10),
)
def test_every_listed_row_carries_its_symbols_risk_fields_whatever_the_cap(
    held: int, others: int, cap: int, without: set[int]
):
    """Open symbols beyond the cap keep atr_ratio, atr_regime, dd_state and dd_today_pct on
    their rows; the map holds the open symbols first, at most `cap`; an incremental build gives
    the same bytes."""
    names = [f"S{i:03d}" for i in range(held + others)]
    risk = {
        "symbols": [
            {"symbol": s, "atr_ratio": i / 8, "atr_regime": f"R{i}", "dd_state": f"D{i}",
             "dd_today_pct": -i / 4}
            for i, s in enumerate(names) if i not in without
        ]
    }  # fmt: skip
    rows = [{"symbol": s, "qty": 1.0, "mark": 1_000.0 - i} for i, s in enumerate(names[:held])]
    settings = Settings(symbols_cap=cap)
    sources = from_values({"positions": rows, "risk": risk})
    outputs = pipeline.build(sources, NOW, settings)
    for row in outputs.positions["positions"]:
        i = int(row["symbol"][1:])
        expected = (None,) * 4 if i in without else (i / 8, f"R{i}", f"d{i}", -i / 4)
        assert (row["atr_ratio"], row["atr_regime"], row["dd_state"], row["dd_today_pct"]) == (
            expected
        ), row
    published = list(outputs.kpis["symbols"])
    assert len(published) <= cap
    valued_held = [s for i, s in enumerate(names[:held]) if i not in without]
    assert published[: min(cap, len(valued_held))] == valued_held[:cap]
    assert pipeline.Incremental()(sources, NOW, settings) == outputs


# -- an asset is one name in every AUM source ----------------------------------------------------

# Names that differ only in case or spacing, or meet after upper-casing ("ß" is "SS").
CASED = st.sampled_from(["btc", "BTC", " Btc ", "eth", "ETH", "ß", "SS"])
PRICED = st.sampled_from([{"qty": 1.0, "mark": 3.0}, {"qty": 2.0}, {"usd_value": 5.0}, {"qty": 0}])
AUM_DOCS = _obj(
    nav_state=_obj(
        nav=st.just(1_000.0),
        aum=st.fixed_dictionaries(
            {},
            optional={
                "futures": st.just(900.0),
                "assets": st.lists(
                    st.fixed_dictionaries({"asset": CASED}, optional={"usd": st.just(5.0)}),
                    max_size=4,
                ),
                "offexchange": st.dictionaries(CASED, PRICED, max_size=4),
            },
        ),
    ),
    nav=_obj(nav_detail=_obj(asset_breakdown=st.dictionaries(CASED, st.just(7.0), max_size=4))),
    holdings=st.dictionaries(CASED, PRICED, max_size=4),
)


@given(docs=AUM_DOCS)
def test_an_asset_is_published_under_one_name_once(docs: dict[str, Any]):
    """Every AUM source reads a name as `parse.symbol` does, the first entry for it winning:
    no two slices share a label ("btc" and "BTC" in one breakdown were two BTC slices), and a
    name is either a published slice or unpriced, never both."""
    aum = pipeline.build(from_values(docs), NOW, SETTINGS).kpis["aum"]
    labels = [s["label"] for s in aum["slices"]]
    assert len(labels) == len(set(labels)), labels
    assert not set(labels) & set(aum["unpriced"])
    assert all(name == name.strip().upper() for name in [*labels[1:], *aum["unpriced"]])
