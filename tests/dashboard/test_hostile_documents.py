"""Published documents that pass the reader's `schema`-id check but break the contract inside:
every view builder shows what is valid, a dash for the rest, and never raises."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from typing import Any

import plotly.io
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dashboard import fields, freshness, history_panel, kpi_panel, views
from dashboard.data import Published, PublishedStore, Snapshot
from kpi_publisher import fs, schemas
from kpi_publisher.contract import (
    INVALID,
    KPIS_SCHEMA,
    NAV_HISTORY_FILE,
    NAV_HISTORY_SCHEMA,
    OK,
    POSITIONS_SCHEMA,
    unpriced_count,
)
from kpi_publisher.render import render
from tests.dashboard.test_history_panel import history_docs

NOW = 1_790_000_000.0
T0 = 1_700_000_000.0
# Values of the wrong kind, and numbers that are not epoch seconds or not finite.
HOSTILE: tuple[Any, ...] = (
    None,
    True,
    0,
    -1,
    5,
    1e308,
    2**70,
    float("nan"),
    float("inf"),
    "abc",
    "",
    "1,234.5",
    [],
    [1, "x"],
    {},
    {"a": 1},
    ["a", "b"],
)


def nav_history(**series: Any) -> dict[str, Any]:
    """A nav_history_v7 document whose 24 h window holds `series` (t, nav_usd, drawdown_pct)."""
    return {"schema": NAV_HISTORY_SCHEMA, "windows": {"24h": series}}


# -- the shared readers ---------------------------------------------------------------------------


@pytest.mark.parametrize("value", [5, True, 1.5, "BTC,ETH", {"BTC": 1}, None])
def test_a_list_field_that_is_not_a_list_is_empty(value: Any) -> None:
    """A string is not split into letters, a number is not iterated."""
    assert fields.texts(value) == []


def test_a_list_field_keeps_its_non_empty_strings() -> None:
    assert fields.texts([" BTC ", 1, None, "", ["ETH"], "ZAR"]) == ["BTC", "ZAR"]


@pytest.mark.parametrize(
    "value",
    [None, True, "x", float("nan"), float("inf"), 1.7e12 * 1000, 1e20, -1e20, 2**70, [T0]],
)
def test_a_time_outside_the_datetime_range_or_not_a_number_is_no_time(value: Any) -> None:
    assert fields.epoch_time(value) is None


def test_a_curve_keeps_only_valid_points_in_order() -> None:
    """Bad times (null, NaN, text, a millisecond stamp: year 55,000) and bad values drop."""
    times = [T0, None, float("nan"), "x", 1.7e12, T0 + 60, T0 + 120, T0 + 180, T0 + 240]
    values = [1.0, 2.0, 3.0, 4.0, 5.0, "6.5", None, float("inf"), 0.0, 99.0]
    x, y = fields.curve(times, values)
    assert y == [1.0, 6.5, 0.0]
    assert x == [dt.datetime.fromtimestamp(t, dt.UTC) for t in (T0, T0 + 60, T0 + 240)]


@pytest.mark.parametrize("column", [None, 5, "abc", {"t": 1}, True])
def test_a_curve_column_that_is_not_a_list_has_no_points(column: Any) -> None:
    assert fields.curve(column, [1.0, 2.0]) == ([], [])
    assert fields.curve([T0, T0 + 1], column) == ([], [])


# -- the view builders ----------------------------------------------------------------------------


def aum_caption(kpis: Any) -> str:
    cards = {c.label: c for c in kpi_panel.overview_cards(kpis)}
    return cards["AUM (USD)"].caption


@pytest.mark.parametrize("unpriced", [None, 5, -1, 1e308, True, False, {"BTC": 1}, "", "XAUT"])
def test_unpriced_that_is_not_a_list_is_unknown_not_all_priced(unpriced: Any) -> None:
    """Only an empty `unpriced` list says every asset is priced; anything else is not known."""
    assert aum_caption({"aum": {"unpriced": unpriced}}) == "–"


@pytest.mark.parametrize("kpis", [None, {}, {"aum": None}, {"aum": [1]}, {"nav": {"nav_usd": 1}}])
def test_no_aum_block_claims_nothing(kpis: Any) -> None:
    """A null or foreign document has no AUM block: the caption is the missing marker."""
    assert aum_caption(kpis) == "–"


@pytest.mark.parametrize(
    ("unpriced", "caption"),
    [
        ([], "all assets priced"),
        (["XAUT"], "unpriced: XAUT"),
        (["XAUT", 7], "unpriced: XAUT and 1 more"),
        ([7, None], "2 unpriced"),
        (["A", "B", "C", "D", "E", "F"], "unpriced: A, B, C, D, E and 1 more"),
        (
            [*(f"C{i:03d}" for i in range(100)), "300 more"],
            "unpriced: C000, C001, C002, C003, C004 and 395 more",
        ),
        (["Futures", "1,234 more"], "unpriced: Futures and 1,234 more"),
    ],
)
def test_unpriced_caption_names_a_few_and_counts_the_rest(unpriced: Any, caption: str) -> None:
    """At most five names, then how many more of the whole count, so 100 names and "300 more"
    take one line, not 25."""
    assert aum_caption({"aum": {"unpriced": unpriced}}) == caption


@pytest.mark.parametrize(
    ("unpriced", "count"),
    [(None, None), (5, None), ("x", None), ([], 0), (["A"], 1), (["A", "3 more"], 4),
     (["A", "1,234 more"], 1235), (["A", "x more"], 2), (["A", 7], 2), (["A", "more"], 2),
     (["A", " more"], 2), (["A", "٣ more"], 2), (["12 more"], 12)],
)  # fmt: skip
def test_the_unpriced_count_read_from_any_list(unpriced: Any, count: int | None) -> None:
    """The one reader of "<n> more" (the dashboard's caption and the Prometheus gauge): only
    a last entry of ASCII digits and " more" counts n; any other entry counts one."""
    assert unpriced_count(unpriced) == count


@pytest.mark.parametrize("daily_returns", [None, "abc", True, {}, float("nan")])
def test_sharpe_caption_shows_a_dash_for_a_missing_day_count(daily_returns: Any) -> None:
    ratios = {"30d": {"sharpe": 1.2, "daily_returns": daily_returns}}
    doc = {"performance": {"windows": {}, "ratios": ratios}}
    sharpe = {t.label: t for t in history_panel.history_tiles(doc, "7d")}["Sharpe 30d"]
    assert sharpe.caption == "vol – · Sortino – · – days"


def test_sharpe_caption_shows_the_day_count() -> None:
    doc = {"performance": {"ratios": {"30d": {"daily_returns": 28}}}}
    sharpe = {t.label: t for t in history_panel.history_tiles(doc, "24h")}["Sharpe 30d"]
    assert sharpe.caption.endswith("· 28 days")


@pytest.mark.parametrize("column", HOSTILE)
def test_history_figures_take_any_time_column(column: Any) -> None:
    """A time column that is not a list of epoch seconds draws no window, never raises."""
    doc = nav_history(t=column, nav_usd=[1.0, 2.0], drawdown_pct=[0.0, 1.0])
    assert history_panel.history_figures(doc) == {}


@pytest.mark.parametrize("column", HOSTILE)
def test_history_figures_take_any_value_column(column: Any) -> None:
    """A NAV column that is not a list of numbers draws no window; a bad drawdown column draws
    the equity curve over an empty underwater chart."""
    doc = nav_history(t=[T0, T0 + 60], nav_usd=column, drawdown_pct=column)
    assert history_panel.history_figures(doc) == {}
    doc = nav_history(t=[T0, T0 + 60], nav_usd=[1.0, 2.0], drawdown_pct=column)
    equity, under = history_panel.history_figures(doc)["24h"]
    assert list(equity.data[0].y) == [1.0, 2.0]
    assert all(math.isfinite(v) for v in under.data[0].y)


def test_history_figures_plot_only_valid_points() -> None:
    """Null, NaN and text times and a millisecond stamp (year 58,883) drop with their values."""
    times = [T0, None, float("nan"), "x", 1.796e12, T0 + 60, T0 + 120]
    doc = nav_history(t=times, nav_usd=[10, 11, 12, 13, 14, 15, None], drawdown_pct=[0] * 7)
    equity, under = history_panel.history_figures(doc)["24h"]
    assert list(equity.data[0].y) == [10, 15]
    assert len(under.data[0].x) == 3
    plotly.io.to_json(equity)  # what st.plotly_chart sends


def test_history_figures_draw_the_ends_of_the_datetime_range() -> None:
    first, last = -62_135_596_800.0, 253_402_300_799.0  # 0001-01-01, 9999-12-31T23:59:59
    doc = nav_history(t=[first, last], nav_usd=[1.0, 2.0], drawdown_pct=[0.0, 0.0])
    equity, under = history_panel.history_figures(doc)["24h"]
    plotly.io.to_json(equity)
    plotly.io.to_json(under)


# -- the reader -----------------------------------------------------------------------------------


def test_store_reads_a_published_history_as_ok(tmp_path: Path) -> None:
    _, history = history_docs(NOW)
    fs.write_atomic(tmp_path / NAV_HISTORY_FILE, render(history), fsync=False)
    assert PublishedStore(tmp_path).read(NAV_HISTORY_FILE).status == OK


@pytest.mark.parametrize(
    "bad",
    [
        {"windows": {"24h": {"t": "abcdef"}}},
        {"windows": "abc"},
        {"generated_at": "soon"},
        {"schema": "hedge.kpis_v7"},
    ],
)
def test_store_marks_a_history_off_its_schema_invalid_keeping_the_last_good(
    tmp_path: Path, bad: dict[str, Any]
) -> None:
    _, history = history_docs(NOW)
    fs.write_atomic(tmp_path / NAV_HISTORY_FILE, render(history), fsync=False)
    store = PublishedStore(tmp_path)
    store.read(NAV_HISTORY_FILE)
    (tmp_path / NAV_HISTORY_FILE).write_bytes(render({**history, **bad}))
    read = store.read(NAV_HISTORY_FILE)
    assert (read.status, read.stale_read) == (INVALID, True)
    assert read.error is not None and read.error.startswith(NAV_HISTORY_FILE)
    assert len(read.error) < 400  # the schema error quotes the value: cut short
    assert read.doc is not None and read.doc["windows"] == history["windows"]


def test_store_marks_a_history_nested_past_the_validators_recursion_invalid(tmp_path: Path) -> None:
    """1,000 levels of lists where a curve column belongs (orjson reads it; the validator
    recurses into it): invalid with a reason, never an exception on the page."""
    _, history = history_docs(NOW)
    history["windows"]["24h"]["t"] = "@DEEP@"
    raw = render(history).replace(b'"@DEEP@"', b"[" * 1000 + b"]" * 1000)
    (tmp_path / NAV_HISTORY_FILE).write_bytes(raw)
    read = PublishedStore(tmp_path).read(NAV_HISTORY_FILE)
    assert read.status == INVALID
    assert read.error is not None and "nested too deep" in read.error


# -- any JSON in, no exception --------------------------------------------------------------------

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats()  # NaN and infinities included: Python's json module reads them
    | st.floats(min_value=1e9, max_value=2e18)  # epoch s, ms, µs and ns
    | st.text(max_size=8)
    | st.sampled_from(["1,234.5", "2025-11-06T16:00:00Z", "1762444800000", "ok", "stale"])
)
ANY_JSON = st.recursive(
    SCALARS,
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=6), kids, max_size=4)
    ),
    max_leaves=12,
)
NUMBERS = st.floats(min_value=-1e3, max_value=4e9) | st.integers(0, 4_000_000_000)
MAP_KEYS = st.sampled_from(["BTC", "BTCUSDT", "nav", "24h", "7d", "30d", "90d", "all"]) | st.text(
    max_size=6
)


ABSENT = object()  # a key left out of a generated object


def mostly(shape: st.SearchStrategy[Any], other: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`shape` four times in five, else `other`: deep fields still get reached."""
    return st.integers(0, 4).flatmap(lambda i: other if i == 0 else shape)


def _present(fixed: dict[str, Any], more: dict[str, Any]) -> dict[str, Any]:
    return {**more, **{k: v for k, v in fixed.items() if v is not ABSENT}}


def shaped(schema: Any) -> st.SearchStrategy[Any]:
    """Documents in the shape of a shipped JSON Schema where any key may be absent and any
    value, at any depth, any JSON instead: every field the dashboard reads gets hostile values
    where it looks."""
    schema = schema if isinstance(schema, dict) else {}
    properties = schema.get("properties")
    extra = schema.get("additionalProperties")
    items = schema.get("items")
    if isinstance(properties, dict) or isinstance(extra, dict):
        fixed = st.fixed_dictionaries(
            {k: mostly(shaped(v), st.just(ABSENT)) for k, v in (properties or {}).items()}
        )
        more = (  # a map by symbol, source or window
            st.dictionaries(MAP_KEYS, shaped(extra), max_size=3)
            if isinstance(extra, dict)
            else st.just({})
        )
        return mostly(st.builds(_present, fixed, more), ANY_JSON)
    if isinstance(items, dict):
        return mostly(st.lists(shaped(items), max_size=8), ANY_JSON)
    if schema.get("type") in ("number", "integer"):  # also epoch seconds: curves get drawn
        return NUMBERS | ANY_JSON
    return ANY_JSON


def published_doc(name: str, schema_id: str) -> st.SearchStrategy[dict[str, Any]]:
    """Any document the reader passes: an object carrying its `schema` id."""
    body = shaped(schemas.load(name)).filter(lambda d: isinstance(d, dict))
    return body.map(lambda d: {**d, "schema": schema_id})


PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(doc=published_doc("kpis_v7", KPIS_SCHEMA))
def test_any_kpis_document_builds_every_kpis_view(doc: dict[str, Any]) -> None:
    built = views.kpi_views(doc)
    assert all(card.value and card.caption is not None for card in built.cards)
    assert all("None" not in card.value + card.caption for card in built.cards)
    for window in history_panel.WINDOWS:
        tiles = history_panel.history_tiles(doc, window)
        assert all("None" not in tile.value + tile.caption for tile in tiles)
    kpis = Published("kpis_v7.json", OK, doc)
    freshness.badges(Snapshot(kpis, Published("positions_v7.json", OK, {}), False), NOW, 15.0)


@PROPERTY
@given(doc=published_doc("positions_v7", POSITIONS_SCHEMA))
def test_any_positions_document_builds_the_table(doc: dict[str, Any]) -> None:
    view = views.positions_view(doc)
    assert "None" not in view.totals


@PROPERTY
@given(doc=published_doc("nav_history_v7", NAV_HISTORY_SCHEMA))
def test_any_history_document_builds_finite_figures(doc: dict[str, Any]) -> None:
    for equity, under in history_panel.history_figures(doc).values():
        for figure in (equity, under):
            trace = figure.data[0]
            assert len(trace.x) == len(trace.y)
            assert all(math.isfinite(y) for y in trace.y)
        assert len(equity.data[0].x) >= 2
