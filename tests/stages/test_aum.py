"""AUM stage: Futures first, one slice per asset, no dollar counted twice, ZAR only with a rate."""

import math

import pytest

from kpi_publisher.contract import unpriced_count
from kpi_publisher.stages import aum as aum_stage
from kpi_publisher.stages.aum import build_aum

HOLDINGS = {  # the real config/offexchange_holdings.json
    "BTC": {"qty": 0.035, "avg_cost": 119073},
    "XAUT": {"qty": 0.59, "avg_cost": 3692.70},
    "USDC": {"qty": 2098.96, "avg_cost": 1},
}
FX = {"prices": {"BTC": 103488.0, "XAUT": 4021.84}, "usd_zar": 17.34}


def labels(aum):
    return [(s["label"], s["usd"]) for s in aum["slices"]]


def test_holdings_priced_from_cache_then_avg_cost():
    """BTC and XAUT at the cache price, USDC (no cache price) at avg_cost; total = sum."""
    nav = {"nav": 2345.67, "nav_detail": {"asset_breakdown": {"USDT": 2300.0, "BNB": 45.67}}}
    out = build_aum(None, nav, FX, HOLDINGS, nav_usd=2345.67, usd_zar=17.34)
    assert labels(out) == [
        ("Futures", 2345.67),
        ("BTC", pytest.approx(0.035 * 103488.0)),
        ("XAUT", pytest.approx(0.59 * 4021.84)),
        ("USDC", 2098.96),
    ]
    assert out["total_usd"] == pytest.approx(2345.67 + 3622.08 + 2372.8856 + 2098.96)
    assert out["total_usd"] == math.fsum(s["usd"] for s in out["slices"])
    btc = out["slices"][1]
    assert btc["qty"] == 0.035
    assert btc["pnl_usd"] == pytest.approx((103488.0 - 119073) * 0.035)
    assert btc["zar"] == pytest.approx(3622.08 * 17.34)
    assert out["slices"][0]["qty"] is None
    assert out["unpriced"] == []


def test_offexchange_block_wins_over_holdings_and_breakdown_is_not_added():
    """The futures wallet's own breakdown is inside Futures: never a second slice."""
    nav_state = {
        "aum": {
            "futures": 1000.0,
            "offexchange": {
                "BTC": {"qty": 0.01, "avg_cost": 50000.0, "mark": 60000.0, "usd_value": 600.0},
                "XAUT": {"qty": 0.5, "avg_cost": 3000.0, "mark": None, "usd_value": None},
                "USDC": {"qty": 250.0, "avg_cost": 1.0, "mark": 1.0},
            },
            "total": 1850.0 + 0.5 * 4021.84,
        },
        "nav_detail": {"asset_breakdown": {"USDT": 1000.0}},
    }
    out = build_aum(nav_state, None, FX, HOLDINGS, nav_usd=1000.0, usd_zar=None)
    assert labels(out) == [
        ("Futures", 1000.0),
        ("XAUT", pytest.approx(0.5 * 4021.84)),
        ("BTC", 600.0),
        ("USDC", 250.0),
    ]
    assert out["total_usd"] == pytest.approx(1850.0 + 0.5 * 4021.84)
    assert out["stated_total_usd"] == pytest.approx(1850.0 + 0.5 * 4021.84)


def test_assets_list_from_sync_writer_skips_its_futures_row():
    nav_state = {
        "aum": {
            "futures": 500.0,
            "assets": [
                {"asset": "Futures", "usd": 500.0, "qty": None, "pnl": None},
                {"asset": "BTC", "usd": 700.0, "qty": 0.007, "pnl": -12.5},
                {"asset": "USDC", "usd": 0.0, "qty": 0.0},
            ],
        }
    }
    out = build_aum(nav_state, None, None, HOLDINGS, nav_usd=500.0, usd_zar=18.0)
    assert labels(out) == [("Futures", 500.0), ("BTC", 700.0)]
    assert out["slices"][1]["pnl_usd"] == -12.5
    assert out["total_zar"] == pytest.approx(1200.0 * 18.0)


def test_breakdown_inside_wallet_reduces_futures():
    """asset_breakdown summing to at most the futures value sits inside it: Futures is reduced."""
    nav = {"aum": {"futures": 1000.0}, "nav_detail": {"asset_breakdown": {"BTC": 400.0}}}
    out = build_aum(None, nav, None, None, nav_usd=1000.0, usd_zar=None)
    assert labels(out) == [("Futures", 600.0), ("BTC", 400.0)]
    assert out["total_usd"] == 1000.0


def test_unpriced_asset_is_named_not_valued():
    holdings = {"DOGE": {"qty": 100.0, "avg_cost": None}, "BTC": {"qty": 0.0, "avg_cost": 1.0}}
    out = build_aum(None, None, None, holdings, nav_usd=10.0, usd_zar=None)
    assert labels(out) == [("Futures", 10.0)]
    assert out["unpriced"] == ["DOGE"]


def test_zar_is_null_without_a_rate():
    out = build_aum(None, None, FX, HOLDINGS, nav_usd=100.0, usd_zar=None)
    assert out["total_zar"] is None
    assert {s["zar"] for s in out["slices"]} == {None}
    assert out["usd_zar"] is None


def test_stated_total_is_published_as_given_even_when_it_differs():
    """The live writer states the futures wallet alone as aum.total: published, not an error."""
    nav_state = {"aum": {"futures": 100.0, "total": 100.02}}
    holdings = {"USDC": {"qty": 50.0, "avg_cost": 1}}
    out = build_aum(nav_state, None, None, holdings, nav_usd=100.0, usd_zar=None)
    assert out["stated_total_usd"] == 100.02
    assert out["total_usd"] == 150.0


def test_no_stated_total_is_null():
    """A block without `total` publishes stated_total_usd null, not the computed sum."""
    out = build_aum({"aum": {"futures": 10.0}}, None, None, None, nav_usd=10.0, usd_zar=None)
    assert out["stated_total_usd"] is None
    assert out["total_usd"] == 10.0


def test_nothing_known_gives_no_slices_and_null_total():
    out = build_aum(None, None, None, None, nav_usd=None, usd_zar=None)
    assert out["slices"] == []
    assert out["total_usd"] is None
    assert out["unpriced"] == ["Futures"]


def test_the_wallet_of_a_file_whose_nav_is_unavailable_is_the_nav_in_use():
    """The executor's nav.json after a failed NAV computation states nav 0, nav_detail.source
    "unavailable" and an aum block built from that 0 (futures 0, total 0). Those zeros are no
    value, as its NAV is (contract rule 1): the Futures slice is the NAV in use (nav_state's
    4,300), not 0.00 (the whole wallet was missing from the AUM)."""
    nav = {
        "nav": 0.0,
        "nav_usd": 0.0,
        "nav_detail": {"source": "unavailable"},
        "aum": {"futures": 0.0, "offexchange": {}, "total": 0.0},
    }
    out = build_aum({"total_equity": 4300.0}, nav, FX, HOLDINGS, nav_usd=4300.0, usd_zar=17.34)
    assert labels(out)[0] == ("Futures", 4300.0)
    assert out["stated_total_usd"] is None
    assert out["total_usd"] == pytest.approx(4300.0 + sum(usd for _, usd in labels(out)[1:]))
    # A file whose NAV was computed keeps its stated zero wallet (a real 0.00).
    nav["nav_detail"]["source"] = "exchange"
    out = build_aum(None, nav, None, None, nav_usd=4300.0, usd_zar=None)
    assert labels(out)[0] == ("Futures", 0.0)


# -- rule 5: a source of assets exists only if it gives a value, judged by the reader that
# values it (`_valued`); a holding gives one with a USD value, or a qty and a price -----------

BTC_CONFIG = {"BTC": {"qty": 0.01, "avg_cost": 50000.0}}
BTC_FX = {"prices": {"BTC": 91000.0}}


@pytest.mark.parametrize(
    "valueless",
    [
        {"offexchange": {"BTC": {}}},
        {"offexchange": {"BTC": {"qty": None, "usd_value": None, "mark": 5.0, "avg_cost": 1.0}}},
        {"offexchange": {"BTC": {"qty": "n/a"}, "\x00ETH": {"qty": 1.0, "usd_value": 5.0}}},
        {"assets": [{"asset": "BTC"}]},
        {"assets": [{"asset": "BTC", "usd": None, "qty": True}, {"label": "", "usd": 5.0}]},
        {"assets": [{"asset": "BTC"}], "offexchange": {"ETH": {"avg_cost": 3.0}}},
    ],
    ids=["empty-entry", "nulls", "junk-and-control-name", "label-only", "nulls-no-name", "both"],
)
def test_a_source_of_assets_without_a_value_does_not_hide_the_holdings_config(valueless):
    """aum.assets / aum.offexchange whose entries give no value: the holdings config is used,
    and nothing of the value-less source is named in `unpriced`."""
    nav_state = {"aum": {"futures": 2000.0, **valueless}}
    out = build_aum(nav_state, None, BTC_FX, BTC_CONFIG, nav_usd=2000.0, usd_zar=None)
    assert labels(out) == [("Futures", 2000.0), ("BTC", pytest.approx(910.0))]
    assert out["unpriced"] == []


@pytest.mark.parametrize(
    "valueless_aum",
    [
        {"assets": [{"asset": "ETH"}]},
        {"offexchange": {"ETH": {"qty": None}}},
        {"futures": None, "total": "n/a", "assets": [], "offexchange": {}},
        {"assets": [{"asset": "Futures", "pnl": None}]},
    ],
)
def test_an_aum_block_without_a_value_does_not_hide_the_next_block(valueless_aum):
    """nav_state.aum with no value: nav.aum (futures 1000, XAUT) is the block in use."""
    nav = {"aum": {"futures": 1000.0, "offexchange": {"XAUT": {"qty": 1, "usd_value": 2600}}}}
    out = build_aum({"aum": valueless_aum}, nav, None, None, nav_usd=2345.67, usd_zar=None)
    assert labels(out) == [("Futures", 1000.0), ("XAUT", 2600.0)]
    assert out["unpriced"] == []


@pytest.mark.parametrize(
    "holdings",
    [{"_meta": {"note": "x"}}, {"BTC": {"qty": None}}, {"BTC": {"avg_cost": 5.0}}, {"BTC": 3}],
    ids=["meta", "null-qty", "cost-only", "not-an-object"],
)
def test_a_holdings_config_without_a_holding_does_not_hide_the_breakdown(holdings):
    """The breakdown is used (Futures reduced by what sits inside it); no name is unpriced."""
    nav = {"nav": 2000, "nav_detail": {"asset_breakdown": {"USDT": 500, "BNB": 100}}}
    out = build_aum(None, nav, None, holdings, nav_usd=2000.0, usd_zar=None)
    assert labels(out) == [("Futures", 1400.0), ("USDT", 500.0), ("BNB", 100.0)]
    assert out["unpriced"] == []


def test_a_holding_that_cannot_be_priced_is_named_even_when_its_source_is_skipped():
    """A qty with no price anywhere gives no value, so the next source is used; the asset is
    still named in `unpriced` (contract: an asset that cannot be priced is named), unless a
    later source values it."""
    nav = {"nav": 2000, "nav_detail": {"asset_breakdown": {"USDT": 500}}}
    holdings = {"DOGE": {"qty": 100.0}, "XRP": {"qty": 5.0}}
    nav_state = {"aum": {"offexchange": {"XRP": {"qty": 5.0}}}}  # no futures, no price
    out = build_aum(nav_state, nav, None, holdings, nav_usd=2000.0, usd_zar=None)
    assert labels(out) == [("Futures", 1500.0), ("USDT", 500.0)]
    assert out["unpriced"] == ["DOGE", "XRP"]
    out = build_aum(
        nav_state, nav, {"prices": {"XRP": 2.0}}, holdings, nav_usd=2000.0, usd_zar=None
    )
    assert labels(out) == [("Futures", 2000.0), ("XRP", 10.0)]  # nav_state's own XRP, priced
    assert out["unpriced"] == []


def test_a_zero_holding_is_a_value():
    """qty 0 is worth 0.0 (zero is a value): the source exists, its slice is dropped."""
    nav = {"nav": 2000, "nav_detail": {"asset_breakdown": {"USDT": 500}}}
    out = build_aum(None, nav, None, {"BTC": {"qty": 0}}, nav_usd=2000.0, usd_zar=None)
    assert labels(out) == [("Futures", 2000.0)]


def test_an_empty_breakdown_does_not_hide_nav_states():
    nav = {"nav": 2000, "nav_detail": {"asset_breakdown": {"USDT": None, "": 5}}}
    nav_state = {"nav_detail": {"asset_breakdown": {"BNB": 100}}}
    out = build_aum(nav_state, nav, None, None, nav_usd=2000.0, usd_zar=None)
    assert labels(out) == [("Futures", 1900.0), ("BNB", 100.0)]


def test_asset_names_are_bounded_after_upper_casing_and_never_hold_a_control_character():
    """ "ß" * 40 is 80 characters upper-cased: not valued, named cut; a name with a control
    character is no name."""
    holdings = {"ß" * 40: {"qty": 1.0, "usd_value": 5.0}, "A\x00": {"qty": 1.0, "usd_value": 7.0}}
    out = build_aum(None, None, None, holdings, nav_usd=10.0, usd_zar=None)
    assert labels(out) == [("Futures", 10.0)]
    assert out["unpriced"] == ["SS" * 31 + "S…"]


# -- one way to read a name: upper-cased, the first entry for a name winning -----------------


FIRST, LAST = {"usd_value": 100}, {"usd_value": 50}
LISTED = [{"asset": "btc", "usd": 100}, {"asset": "BTC", "usd": 50}]


@pytest.mark.parametrize(
    ("nav_state", "nav", "holdings"),
    [
        (None, {"nav_detail": {"asset_breakdown": {"btc": 100, "BTC": 50}}}, None),
        ({"aum": {"assets": LISTED}}, None, None),
        ({"aum": {"offexchange": {"btc": FIRST, "BTC": LAST}}}, None, None),
        (None, None, {"btc": FIRST, " BTC ": LAST}),
        (None, None, {"btc": {"qty": 1, "mark": 100}, "BTC": {"qty": 1, "mark": 50}}),
    ],
    ids=["breakdown", "assets", "offexchange", "holdings-config", "holdings-priced"],
)
def test_names_differing_only_in_case_are_one_asset_the_first_winning(nav_state, nav, holdings):
    """Every AUM source reads a name as parse.symbol does and keeps the first entry for it, as
    per_symbol does: never two slices labelled BTC (the breakdown gave both), never the last
    entry in one source and the first in another."""
    out = build_aum(nav_state, nav, None, holdings, nav_usd=1000.0, usd_zar=None)
    others = labels(out)[1:]
    assert others == [("BTC", 100.0)]
    assert out["unpriced"] == []


# -- `unpriced`: named unless a slice of that name is published; bounded -----------------------


def test_an_unpriced_name_stays_when_its_slice_is_zero_and_dropped():
    """The probe: DOGE listed with no price anywhere in nav_state.aum.assets (a skipped block)
    and held at qty 0 in the config (a 0 USD slice, dropped): DOGE was in no slice and not in
    `unpriced` either. Only a slice published by that name removes it."""
    nav_state = {"aum": {"assets": [{"asset": "DOGE", "qty": 5}]}}
    out = build_aum(nav_state, None, None, {"DOGE": {"qty": 0}}, nav_usd=10.0, usd_zar=None)
    assert labels(out) == [("Futures", 10.0)]
    assert out["unpriced"] == ["DOGE"]


def test_an_unpriced_name_stays_when_its_slice_is_folded():
    """A slice summed into "<n> smaller assets" is not published by its name: A000, unpriced in
    a skipped block and the smallest of 150 valued holdings, stays named."""
    nav_state = {"aum": {"assets": [{"asset": "A000", "qty": 5}]}}
    holdings = {f"A{i:03d}": {"usd_value": i + 1.0} for i in range(150)}
    out = build_aum(nav_state, None, None, holdings, nav_usd=10.0, usd_zar=None)
    assert out["slices"][-1]["label"] == "51 smaller assets"
    assert out["unpriced"] == ["A000"]
    # A published slice still removes the name (the largest holding).
    nav_state["aum"]["assets"][0]["asset"] = "A149"
    out = build_aum(nav_state, None, None, holdings, nav_usd=10.0, usd_zar=None)
    assert out["unpriced"] == []


def test_unpriced_names_at_most_a_hundred_then_how_many_more():
    """420,000 unpriceable names made a 28 MB kpis_v7.json: the first 100 by name are listed,
    then one entry says how many more; "Futures" (no NAV) is always among them."""
    holdings = {f"X{i:05d}": {"qty": 1.0} for i in range(1000)}
    out = build_aum(None, None, None, holdings, nav_usd=10.0, usd_zar=None)
    assert out["unpriced"] == [*(f"X{i:05d}" for i in range(100)), "900 more"]
    out = build_aum(None, None, None, holdings, nav_usd=None, usd_zar=None)
    assert out["unpriced"] == ["Futures", *(f"X{i:05d}" for i in range(99)), "901 more"]
    exactly = {f"X{i:05d}": {"qty": 1.0} for i in range(100)}
    out = build_aum(None, None, None, exactly, nav_usd=10.0, usd_zar=None)
    assert out["unpriced"] == [f"X{i:05d}" for i in range(100)]


def test_the_count_of_unpriced_assets_includes_the_ones_not_listed():
    """What the Prometheus gauge reports: every asset that could not be valued, not the
    length of the shortened list (101 for any number past 100)."""
    many = {f"X{i:05d}": {"qty": 1.0} for i in range(12_345)}
    out = build_aum(None, None, None, many, nav_usd=10.0, usd_zar=None)
    assert out["unpriced"][-1] == "12,245 more"
    assert unpriced_count(out["unpriced"]) == 12_345
    assert unpriced_count(["BTC", "ETH"]) == 2
    assert unpriced_count([]) == 0
    assert unpriced_count(None) is None


# -- each source of assets is valued only when the ones before it gave no value ---------------


def test_a_source_after_one_with_a_value_is_never_valued(monkeypatch):
    """`_asset_sources` promises laziness (the publish path is latency-critical): a block that
    states its futures values aum.assets alone when those give a value, neither its
    aum.offexchange nor the holdings config; a block with no stated figure values what it
    needs to exist, no more."""
    valued: list[list[str]] = []
    real = aum_stage._valued

    def spy(holdings, pricer):
        valued.append(sorted(holdings))
        return real(holdings, pricer)

    monkeypatch.setattr(aum_stage, "_valued", spy)
    block = {
        "futures": 100.0,
        "assets": [{"asset": "BTC", "usd": 5.0}],
        "offexchange": {"ETH": {"qty": 1.0, "mark": 3.0}},
    }
    out = build_aum({"aum": block}, None, None, HOLDINGS, nav_usd=100.0, usd_zar=None)
    assert labels(out) == [("Futures", 100.0), ("BTC", 5.0)]
    assert valued == [["BTC"]]
    valued.clear()
    del block["futures"]
    build_aum({"aum": block}, None, None, HOLDINGS, nav_usd=100.0, usd_zar=None)
    assert valued == [["BTC"]]  # valued once: for the block's existence and its slices
