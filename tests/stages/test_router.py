"""Router stage: router_stats first, router_health means as fallback, never "good" for no data."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kpi_publisher.stages.router import build_router

FIGURES = ("maker_fill_rate", "fallback_ratio", "slip_q50_bps")
E1_ENTRIES: list[dict[str, str | float | None]] = [
    {"symbol": "BTCUSDT", "maker_fill_rate": 0.6, "fallback_rate": 0.2, "slippage_p50": 1.0},
    {"symbol": "ETHUSDT", "maker_fill_rate": 0.4, "fallback_rate": None, "slippage_p50": 3.0},
    {"symbol": "SOLUSDT", "maker_fill_rate": None, "fallback_rate": None, "slippage_p50": None},
]


def test_router_stats_block_wins_and_names_its_source():
    """risk.router_stats supplies every number; symbols_used is null then."""
    risk = {
        "router_stats": {
            "maker_fill_ratio": 0.0,
            "fallback_ratio": 0.3,
            "slip_q25": 0.5,
            "slip_q50": 1.5,
            "slip_q75": 3.0,
        }
    }
    out = build_router(risk, {"symbols": E1_ENTRIES})
    assert out == {
        "maker_fill_rate": 0.0,
        "fallback_ratio": 0.3,
        "slip_q25_bps": 0.5,
        "slip_q50_bps": 1.5,
        "slip_q75_bps": 3.0,
        "quality": None,
        "source": "risk_snapshot.router_stats",
        "symbols_used": None,
        # per-symbol rows still come from router_health (the block has none of its own)
        "symbols": {
            "BTCUSDT": {
                "maker_fill_rate": 0.6,
                "fallback_ratio": 0.2,
                "slip_q50_bps": 1.0,
                "samples": None,
            },
            "ETHUSDT": {
                "maker_fill_rate": 0.4,
                "fallback_ratio": None,
                "slip_q50_bps": 3.0,
                "samples": None,
            },
        },
    }


def test_all_null_router_stats_does_not_hide_the_embedded_kpis():
    risk = {
        "router_stats": {"maker_fill_ratio": None, "fallback_ratio": None},
        "kpis_v7": {"router_stats": {"maker_fill_ratio": 0.4}, "router_quality": "ok"},
    }
    out = build_router(risk, None)
    assert out["source"] == "risk_snapshot.kpis_v7.router_stats"
    assert out["maker_fill_rate"] == 0.4
    assert out["quality"] == "ok"


@pytest.mark.parametrize(
    "router",
    [
        {"symbols": E1_ENTRIES},
        {"per_symbol": {e["symbol"]: e for e in E1_ENTRIES}},
        {"router_health": {"per_symbol": {e["symbol"]: e for e in E1_ENTRIES}}},
    ],
    ids=["list", "dict", "nested-dict"],
)
def test_router_health_means_over_list_or_dict(router):
    """Plain means over entries with a valid value; an all-null entry is not counted."""
    out = build_router({}, router)
    assert out["maker_fill_rate"] == pytest.approx(0.5)
    assert out["fallback_ratio"] == pytest.approx(0.2)
    assert out["slip_q50_bps"] == pytest.approx(2.0)
    assert out["slip_q25_bps"] is None
    assert out["source"] == "router_health"
    assert out["symbols_used"] == 2


def test_quality_is_null_without_data_never_good():
    """All-zero quality counts and no entries: quality null, source null."""
    router = {"summary": {"count": 0, "quality_counts": {"good": 0, "ok": 0, "degraded": 0}}}
    out = build_router({}, router)
    assert out["quality"] is None
    assert out["source"] is None
    assert out["maker_fill_rate"] is None


def test_quality_is_the_worst_nonzero_count():
    router = {"summary": {"quality_counts": {"good": 5, "ok": 2, "degraded": 1, "broken": 0}}}
    assert build_router({}, router)["quality"] == "degraded"


def test_quality_chain_order():
    """router_stats quality, then kpis_v7.router_quality, then router_health's own quality."""
    assert (
        build_router({"router_stats": {"quality": "poor"}}, {"quality": "ok"})["quality"] == "poor"
    )
    assert (
        build_router({"kpis_v7": {"router_quality": "OK"}}, {"quality": "broken"})["quality"]
        == "ok"
    )
    assert build_router({}, {"quality": "degraded"})["quality"] == "degraded"


def test_e2_stats_shape_avg_slippage_only():
    """E2 router_health has no maker/fallback ratios: those stay null."""
    router = {
        "router_health": {
            "per_symbol": {
                "BTCUSDT": {"quality_score": 0.9, "avg_slippage_bps": 2.0},
                "ETHUSDT": {"quality_score": 0.7, "avg_slippage_bps": 4.0},
            }
        },
        "symbols": [],
    }
    out = build_router({}, router)
    assert out["slip_q50_bps"] == pytest.approx(3.0)
    assert out["maker_fill_rate"] is None
    assert out["symbols_used"] == 2


# ------------------------------------------------------------------------ slippage sentinels
@pytest.mark.parametrize("sentinel", [10_000.0, -10_000.0, 25_000.0, "10000"])
def test_sentinel_quartiles_read_as_missing(sentinel):
    """Rule 4: a stated quartile of |x| >= 10,000 bps is "no price", never published."""
    risk = {
        "router_stats": {
            "maker_fill_ratio": 0.5,
            "slip_q25": sentinel,
            "slip_q50": 1.2,
            "slip_q75": sentinel,
        }
    }
    out = build_router(risk, None)
    assert out["slip_q25_bps"] is None
    assert out["slip_q75_bps"] is None
    assert out["slip_q50_bps"] == 1.2
    assert out["maker_fill_rate"] == 0.5


def test_sentinel_falls_through_to_the_next_key():
    """A sentinel under the first key is missing, so the next key of the chain is read."""
    out = build_router({"router_stats": {"slip_q50_bps": -10_000, "slip_q50": 2.5}}, None)
    assert out["slip_q50_bps"] == 2.5


def test_just_below_the_sentinel_is_a_measurement():
    out = build_router({"router_stats": {"slip_q50": 9_999.5}}, None)
    assert out["slip_q50_bps"] == 9_999.5


def test_block_of_only_sentinels_does_not_exist():
    """Rules 4+5: a router_stats of nulls and sentinels does not hide the next source."""
    risk = {
        "router_stats": {"maker_fill_ratio": None, "slip_q25": -10000.0, "slip_q75": 10000.0},
        "kpis_v7": {"router_stats": {"maker_fill_ratio": 0.4, "slip_q50": 1.0}},
    }
    out = build_router(risk, None)
    assert out["source"] == "risk_snapshot.kpis_v7.router_stats"
    assert (out["slip_q25_bps"], out["slip_q50_bps"], out["slip_q75_bps"]) == (None, 1.0, None)


def test_sentinel_samples_are_left_out_of_the_means_and_the_symbol_rows():
    """A per-symbol slippage sentinel is not averaged in and not published for the symbol."""
    router = {
        "symbols": [
            {"symbol": "BTCUSDT", "maker_fill_rate": 0.5, "slippage_p50": 10000.0},
            {"symbol": "ETHUSDT", "maker_fill_rate": 0.3, "slippage_p50": 4.0},
            {"symbol": "XRPUSDT", "slippage_p50": -10000.0},
        ]
    }
    out = build_router({}, router)
    assert out["slip_q50_bps"] == 4.0
    assert out["symbols_used"] == 2
    assert out["symbols"]["BTCUSDT"]["slip_q50_bps"] is None
    assert "XRPUSDT" not in out["symbols"]


# ------------------------------------------------------------------------ per-symbol rows
def test_e1_lists_give_one_row_per_symbol():
    """E1 router_health lists: each symbol's own maker, fallback and median slippage."""
    out = build_router({}, {"symbols": E1_ENTRIES, "per_symbol": E1_ENTRIES})
    assert out["symbols"] == {
        "BTCUSDT": {
            "maker_fill_rate": 0.6,
            "fallback_ratio": 0.2,
            "slip_q50_bps": 1.0,
            "samples": None,
        },
        "ETHUSDT": {
            "maker_fill_rate": 0.4,
            "fallback_ratio": None,
            "slip_q50_bps": 3.0,
            "samples": None,
        },
    }


def test_stats_shape_rows_take_samples_from_the_stats_dict():
    """v7.6+ stats-shaped router_health: slippage from the symbols list, event counts from
    router_health.per_symbol, no maker/fallback (the shape has none) and no false quality."""
    router = {
        "updated_ts": "2025-12-09T12:00:00+00:00",
        "router_health_score": 0.72,
        "router_health": {
            "global": {"quality_score": 0.72, "avg_slippage_bps": 2.0},
            "per_symbol": {
                "BTCUSDT": {
                    "symbol": "BTCUSDT",
                    "quality_score": 0.8,
                    "avg_slippage_bps": 1.5,
                    "event_count": 12,
                },
                "ETHUSDT": {
                    "symbol": "ETHUSDT",
                    "quality_score": 0.6,
                    "avg_slippage_bps": 3.0,
                    "event_count": 0,
                },
            },
        },
        "summary": {"count": 2, "quality_counts": {"good": 1, "ok": 1, "degraded": 0, "broken": 0}},
        "symbols": [
            {"symbol": "BTCUSDT", "avg_slippage_bps": 1.5, "quality_score": 0.8},
            {"symbol": "ETHUSDT", "avg_slippage_bps": 3.0, "quality_score": 0.6},
        ],
        "symbol_stats": {"BTCUSDT": {"maker_reliability": 0.8, "avg_slippage_bps": 1.5}},
    }
    out = build_router({}, router)
    assert out["symbols"] == {
        "BTCUSDT": {
            "maker_fill_rate": None,
            "fallback_ratio": None,
            "slip_q50_bps": 1.5,
            "samples": 12,
        },
        # router_health.per_symbol counted no ETH event: that entry has no value, its 0
        # is not the count of the list's measurement
        "ETHUSDT": {
            "maker_fill_rate": None,
            "fallback_ratio": None,
            "slip_q50_bps": 3.0,
            "samples": None,
        },
    }
    assert out["slip_q50_bps"] == pytest.approx(2.25)
    assert out["maker_fill_rate"] is None
    assert out["quality"] == "ok"


@pytest.mark.parametrize(
    ("count", "samples"),
    [(12, 12), (12.0, 12), ("7", 7), (2**53, 2**53), (0, 0), (2**53 + 2, None), (1e300, None),
     (2**64, None), (-1, None), (2.5, None), (True, None)],
)  # fmt: skip
def test_a_symbol_row_counts_its_events_as_an_integer_or_not_at_all(
    count: object, samples: int | None
) -> None:
    """An event count is published as an integer: a whole number up to 2**53; a count past
    that (1e300, 2**64: no router counts so many), negative, fractional or a boolean is
    missing, never a float in the `samples` field."""
    router = {"symbols": [{"symbol": "BTCUSDT", "avg_slippage_bps": 1.5, "event_count": count}]}
    row = build_router({}, router)["symbols"]["BTCUSDT"]
    assert row["samples"] == samples
    assert row["samples"] is None or type(row["samples"]) is int


def test_router_stats_block_rows_come_first():
    """A router_stats block with its own per-symbol rows supplies the symbol numbers."""
    risk = {
        "router_stats": {
            "maker_fill_ratio": 0.5,
            "sample_count": 40,
            "per_symbol": {
                "BTCUSDT": {"maker_fill_ratio": 0.7, "slip_q50": 10000.0, "sample_count": 30}
            },
        }
    }
    out = build_router(risk, {"symbols": E1_ENTRIES})
    assert out["symbols"]["BTCUSDT"] == {
        "maker_fill_rate": 0.7,  # not router_health's 0.6
        "fallback_ratio": None,  # one row supplies the numbers: not mixed with 0.2
        "slip_q50_bps": None,  # the sentinel is no measurement
        "samples": 30,
    }
    # a symbol the block has no row for still gets router_health's numbers
    assert out["symbols"]["ETHUSDT"]["maker_fill_rate"] == 0.4


def test_symbol_rows_are_capped_with_open_positions_first():
    entries = [{"symbol": f"S{i:02d}USDT", "maker_fill_rate": 0.5} for i in range(10)]
    out = build_router({}, {"symbols": entries}, open_symbols=["S07USDT"], cap=3)
    assert list(out["symbols"]) == ["S07USDT", "S00USDT", "S01USDT"]
    assert out["symbols_used"] == 10  # the means still use every entry


def test_no_router_data_gives_no_symbol_rows():
    assert build_router({}, None)["symbols"] == {}


def _health_entry(symbol, **router):
    """An execution-health entry of risk.symbols with its per-symbol router stats."""
    return {"symbol": symbol, "router": {"router_warnings": [], "policy_quality": "ok", **router}}


def test_execution_health_router_stats_come_before_router_health():
    """v7.7 loop: risk.symbols[].router (maker, fallback, quartiles) beats the stats-shaped
    router_health row, which has slippage only; its event count still gives the samples."""
    risk = {
        "symbols": [
            _health_entry("BTCUSDT", maker_fill_ratio=0.6, fallback_ratio=0.25, slip_q50=1.4),
            # testnet "no price" quartiles around a real median of 0.0
            _health_entry(
                "LINKUSDT",
                maker_fill_ratio=0.0,
                fallback_ratio=1.0,
                slip_q25=-10000.0,
                slip_q50=0.0,
                slip_q75=10000.0,
            ),
            _health_entry("DOGEUSDT", maker_fill_ratio=None, fallback_ratio=None, slip_q50=None),
        ],
        "kpis_v7": {"router_stats": {"maker_fill_ratio": 0.3, "slip_q95": 10000.0}},
    }
    router = {
        "router_health": {
            "per_symbol": {
                "BTCUSDT": {"avg_slippage_bps": 1.1, "event_count": 2},
                "DOGEUSDT": {"avg_slippage_bps": 0.9, "event_count": 1},
            }
        },
    }
    out = build_router(risk, router)
    assert out["symbols"] == {
        "BTCUSDT": {
            "maker_fill_rate": 0.6,
            "fallback_ratio": 0.25,
            "slip_q50_bps": 1.4,
            "samples": 2,
        },
        "LINKUSDT": {
            "maker_fill_rate": 0.0,
            "fallback_ratio": 1.0,
            "slip_q50_bps": 0.0,
            "samples": None,
        },
        # no router stats for DOGE: the router_health row supplies its numbers
        "DOGEUSDT": {
            "maker_fill_rate": None,
            "fallback_ratio": None,
            "slip_q50_bps": 0.9,
            "samples": 1,
        },
    }
    assert out["maker_fill_rate"] == 0.3


def test_numbers_of_a_symbol_come_from_one_row():
    """A row with any valid number supplies all three; a later row's maker does not mix in."""
    risk = {"symbols": [_health_entry("BTCUSDT", slip_q50=1.4)]}
    router = {"symbol_stats": {"BTCUSDT": {"maker_reliability": 0.81, "avg_slippage_bps": 1.2}}}
    row = build_router(risk, router)["symbols"]["BTCUSDT"]
    assert row == {
        "maker_fill_rate": None,
        "fallback_ratio": None,
        "slip_q50_bps": 1.4,
        "samples": None,
    }


def test_legacy_symbol_stats_give_counts_never_a_quality_score_as_fill_rate():
    """v7.7+ legacy router_health: symbol_stats.maker_reliability is a quality score (0.0 for
    a symbol that never routed), so it is no maker fill rate; order_count is the sample count."""
    router = {
        "symbols": [{"symbol": "DOGEUSDT", "maker_fill_rate": None, "slippage_p50": None}],
        "symbol_stats": {
            "DOGEUSDT": {"maker_reliability": 0.0, "order_count": 0, "maker_count": 0},
            "BTCUSDT": {"maker_reliability": 0.0, "order_count": 5, "avg_slippage_bps": 1.6},
        },
    }
    out = build_router({}, router)
    assert out["symbols"] == {
        "BTCUSDT": {
            "maker_fill_rate": None,
            "fallback_ratio": None,
            "slip_q50_bps": 1.6,
            "samples": 5,
        },
        "DOGEUSDT": {
            "maker_fill_rate": None,
            "fallback_ratio": None,
            "slip_q50_bps": None,
            "samples": 0,
        },
    }


# -- rule 5: a block exists only if the reader of one of its fields finds a value -------------


@pytest.mark.parametrize(
    "quality",
    ["x" * 65, "\x00", "ok\x07", "İ" * 33, "", "  ", 5, True, None],
    ids=[
        "too-long",
        "nul",
        "bell",
        "too-long-lower-cased",
        "empty",
        "blank",
        "number",
        "bool",
        "null",
    ],
)
def test_a_router_stats_block_whose_quality_is_no_label_does_not_exist(quality):
    """Existence is judged by the reader the field uses (`first_label(..., lower=True)`): a
    quality no reader publishes does not hide router_health's numbers."""
    router = {"symbols": [{"symbol": "BTCUSDT", "maker_fill_rate": 0.5, "fallback_rate": 0.2}]}
    out = build_router({"router_stats": {"quality": quality}}, router)
    assert out["source"] == "router_health"
    assert (out["maker_fill_rate"], out["fallback_ratio"], out["symbols_used"]) == (0.5, 0.2, 1)
    assert out["quality"] is None


def test_a_router_stats_block_with_only_a_quality_label_exists():
    """A label is a value: the block is used (its numbers null), router_health is not."""
    router = {"symbols": [{"symbol": "BTCUSDT", "maker_fill_rate": 0.5}]}
    out = build_router({"router_stats": {"quality": " Degraded "}}, router)
    assert (out["source"], out["quality"], out["maker_fill_rate"]) == (
        "risk_snapshot.router_stats",
        "degraded",
        None,
    )


def test_a_per_symbol_shape_without_a_value_does_not_hide_the_next():
    """The aggregate takes the first shape in which an entry has a valid value, as a symbol's
    row takes the first row with one: value-less `symbols` entries do not hide per_symbol."""
    router = {
        "symbols": [{"symbol": "BTCUSDT"}, {"symbol": "ETHUSDT", "maker_fill_rate": "n/a"}],
        "per_symbol": [{"symbol": "BTCUSDT", "maker_fill_rate": 0.5}],
    }
    out = build_router({}, router)
    assert (out["source"], out["maker_fill_rate"], out["symbols_used"]) == ("router_health", 0.5, 1)
    assert out["symbols"]["BTCUSDT"]["maker_fill_rate"] == 0.5


def test_entries_that_counted_no_event_give_no_mean():
    """A cold start: the router writes 0.0 fill and slippage with a count of 0 for a symbol that
    never routed. Those are no measurement: no mean, source null (never a 0 % fill rate)."""
    never = {"maker_reliability": 0.0, "avg_slippage_bps": 0.0, "order_count": 0}
    router = {
        "symbols": [{"symbol": "BTCUSDT", "maker_fill_rate": None}],
        "symbol_stats": {"BTCUSDT": never, "ETHUSDT": never},
    }
    out = build_router({}, router)
    assert (out["source"], out["maker_fill_rate"], out["slip_q50_bps"]) == (None, None, None)
    # One symbol that did route: the mean is its alone.
    router["symbol_stats"]["SOLUSDT"] = {"maker_reliability": 0.8, "order_count": 4}
    out = build_router({}, router)
    assert (out["source"], out["maker_fill_rate"], out["symbols_used"]) == ("router_health", 0.8, 1)


def test_a_zero_event_row_does_not_hide_a_later_measurement():
    """The probe: risk.symbols[].router's cold-start 0.0 placeholders beside samples 0 hid
    router_health's real row (maker 0.8 over 10 events) in router.symbols, while the block's
    mean already skipped them. One reader (`_entry`) serves both: the row is router_health's."""
    risk = {
        "symbols": [
            _health_entry(
                "BTCUSDT", maker_fill_ratio=0.0, fallback_ratio=0.0, slip_q50=0.0, samples=0
            )
        ]
    }
    router = {"symbols": [{"symbol": "BTCUSDT", "maker_fill_rate": 0.8, "samples": 10}]}
    out = build_router(risk, router)
    assert (out["source"], out["maker_fill_rate"]) == ("router_health", 0.8)
    assert out["symbols"] == {
        "BTCUSDT": {
            "maker_fill_rate": 0.8,
            "fallback_ratio": None,
            "slip_q50_bps": None,
            "samples": 10,
        }
    }


@pytest.mark.parametrize("count_key", ["samples", "sample_count", "event_count", "order_count"])
def test_a_symbol_that_counted_no_event_shows_no_figure(count_key):
    """router_health alone with a 0.0 fill beside a count of 0: no mean (source null) and a
    row with null figures and samples 0, never a 0 % fill rate."""
    entry = {"symbol": "BTCUSDT", "maker_fill_rate": 0.0, "slippage_p50": 0.0, count_key: 0}
    out = build_router({}, {"symbols": [entry]})
    assert (out["source"], out["maker_fill_rate"], out["symbols_used"]) == (None, None, None)
    assert out["symbols"]["BTCUSDT"] == {
        "maker_fill_rate": None,
        "fallback_ratio": None,
        "slip_q50_bps": None,
        "samples": 0,
    }


_FIGURE = st.sampled_from([None, 0.0, 0.5, "n/a", 10_000.0])
_ENTRY = st.fixed_dictionaries(
    {},
    optional={
        "maker_fill_rate": _FIGURE,
        "fallback_rate": _FIGURE,
        "slippage_p50": _FIGURE,
        "order_count": st.sampled_from([0, 3, -1, None]),
    },
)


@given(st.dictionaries(st.sampled_from(["AAAUSDT", "BBBUSDT", "CCCUSDT", "DDDUSDT"]), _ENTRY))
def test_the_means_and_the_rows_read_each_entry_alike(entries):
    """Whatever the entries, an entry gives the block's means a value exactly when it gives
    its symbol's row a figure: no row shows a figure the means skipped, or the reverse."""
    out = build_router({}, {"per_symbol": entries})
    with_figure = [
        s for s, row in out["symbols"].items() if any(row[k] is not None for k in FIGURES)
    ]
    assert (out["symbols_used"] or 0) == len(with_figure)
    assert (out["source"] is None) == (not with_figure)
