"""AUM stage: Futures first, one slice per asset, no dollar counted twice, ZAR only with a rate."""

import math

import pytest

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
