"""Source status: ok, missing, invalid, stale by per-source limits; ages from each file's stamp."""

import pytest

from kpi_publisher.config import Settings
from kpi_publisher.contract import SourceRead
from kpi_publisher.stages.status import build_sources

T = 1_762_444_800.0
LIMITS = Settings().stale_limit_s


def test_statuses_and_ages():
    sources = {
        "nav_state": SourceRead("nav_state", "ok", {"updated_at": T - 91}),
        "nav": SourceRead("nav", "ok", {"updated_ts": "2025-11-06T15:59:00Z"}),
        "risk": SourceRead(
            "risk", "invalid", {"updated_ts": T - 10}, error="risk_snapshot.json: empty file"
        ),
        "fx": SourceRead("fx", "ok", {"usd_zar_ts": T - 3000, "updated_at": T - 99999}),
        "holdings": SourceRead("holdings", "ok", {"BTC": {"qty": 1}}),
    }
    out = build_sources(sources, T, LIMITS, {"nav": "aum.total differs"})
    assert out["nav_state"] == {"status": "stale", "age_s": 91.0, "error": None}
    assert out["nav"] == {"status": "ok", "age_s": 60.0, "error": "aum.total differs"}
    assert out["risk"] == {
        "status": "invalid",
        "age_s": 10.0,
        "error": "risk_snapshot.json: empty file",
    }
    assert out["router"] == {"status": "missing", "age_s": None, "error": None}
    assert out["positions"]["status"] == "missing"
    assert out["fx"] == {"status": "ok", "age_s": 3000.0, "error": None}
    assert out["holdings"] == {"status": "ok", "age_s": None, "error": None}
    assert out["risk_advanced"] == {"status": "missing", "age_s": None, "error": None}
    assert list(out) == [
        "nav_state",
        "nav",
        "risk",
        "router",
        "positions",
        "fx",
        "holdings",
        "risk_advanced",
    ]


def test_zero_age_is_ok():
    out = build_sources({"risk": SourceRead("risk", "ok", {"ts": T})}, T, LIMITS)
    assert out["risk"] == {"status": "ok", "age_s": 0.0, "error": None}


def test_broken_primary_positions_file_is_named_when_the_fallback_is_used(tmp_path):
    """positions_state.json invalid, positions.json good: ok, but the error names the primary."""
    from kpi_publisher.sources import SourceReader

    state = tmp_path / "state"
    state.mkdir()
    (state / "positions_state.json").write_bytes(b'{"positions": [')
    (state / "positions.json").write_bytes(b'{"rows": [{"symbol": "BTCUSDT", "qty": 1}]}')
    read = SourceReader(Settings(state_dir=state)).read("positions")
    assert read.status == "ok"
    assert read.path.name == "positions.json"
    assert read.error.startswith("positions_state.json: not valid JSON")
    assert read.error.endswith("; using positions.json")


DAY = 86_400.0


def test_a_timestamp_far_ahead_has_no_age_and_says_why():
    """More than 60 s ahead: age null, status ok (as a null age allows), error names the key."""
    sources = {
        "nav_state": SourceRead("nav_state", "ok", {"updated_at": int((T + DAY) * 1e6)}),
        "risk": SourceRead("risk", "ok", {"updated_ts": T + 59}),
        "fx": SourceRead("fx", "ok", {"usd_zar_ts": T + 3600, "prices_ts": T - 10}),
    }
    out = build_sources(sources, T, LIMITS)
    assert out["nav_state"]["status"] == "ok"
    assert out["nav_state"]["age_s"] is None
    assert "updated_at is 86,400 s ahead of the clock" in out["nav_state"]["error"]
    assert out["risk"] == {"status": "ok", "age_s": 0.0, "error": None}  # clock skew
    assert out["fx"] == {"status": "ok", "age_s": 10.0, "error": None}  # next valid key


def test_a_day_old_nav_in_us_or_ns_is_a_day_old_and_not_fresh():
    """A NAV stamped one day ago in µs or ns: age 86,400, fresh false, nav_state stale."""
    from kpi_publisher import pipeline
    from kpi_publisher.contract import from_values

    for scale in (1.0, 1e3, 1e6, 1e9):
        stamp = int((T - DAY) * scale)
        out = pipeline.build(from_values({"nav_state": {"nav": 100.0, "ts": stamp}}), T, Settings())
        assert out.kpis["nav"]["age_s"] == pytest.approx(DAY, abs=1e-3), scale
        assert out.kpis["nav"]["fresh"] is False
        assert out.kpis["sources"]["nav_state"]["status"] == "stale"


def test_a_nav_stamped_far_ahead_is_not_fresh():
    """A NAV a day in the future: updated_at and age null, fresh false, the source says why."""
    from kpi_publisher import pipeline
    from kpi_publisher.contract import from_values

    future = from_values({"nav_state": {"nav": 100.0, "updated_at": T + DAY}})
    out = pipeline.build(future, T, Settings())
    nav = out.kpis["nav"]
    assert (nav["nav_usd"], nav["updated_at"], nav["age_s"], nav["fresh"]) == (
        100.0,
        None,
        None,
        False,
    )
    assert "ahead of the clock" in out.kpis["sources"]["nav_state"]["error"]
    skewed = pipeline.build(
        from_values({"nav_state": {"nav": 100.0, "updated_at": T + 30}}), T, Settings()
    )
    assert skewed.kpis["nav"]["age_s"] == 0.0 and skewed.kpis["nav"]["fresh"] is True


def test_min_age_makes_a_source_stale_and_the_nav_not_fresh():
    """A source whose content a long-running reader has not seen change for 120 s is published
    at least that old, whatever its timestamp says: the NAV is not fresh, nav_state is stale,
    and positions_v7's source age follows; a null age (no timestamp) stays null."""
    from dataclasses import replace

    from kpi_publisher import pipeline
    from kpi_publisher.contract import from_values

    reads = from_values(
        {
            "nav_state": {"nav": 100.0, "updated_at": T - 5},
            "positions": {"positions": [], "updated_at": T - 1},
            "router": {"symbols": []},
        }
    )
    fresh = pipeline.build(reads, T, Settings())
    assert (fresh.kpis["nav"]["age_s"], fresh.kpis["nav"]["fresh"]) == (5.0, True)
    floored = {name: replace(read, min_age_s=120.0) for name, read in reads.items()}
    out = pipeline.build(floored, T, Settings())
    assert (out.kpis["nav"]["age_s"], out.kpis["nav"]["fresh"]) == (120.0, False)
    assert out.kpis["sources"]["nav_state"] == {"status": "stale", "age_s": 120.0, "error": None}
    assert out.kpis["sources"]["positions"]["age_s"] == 120.0
    assert out.positions["source"]["age_s"] == 120.0
    assert out.kpis["sources"]["router"]["age_s"] is None  # no timestamp: no age to raise
    short = {name: replace(read, min_age_s=2.0) for name, read in reads.items()}
    assert pipeline.build(short, T, Settings()).kpis["nav"]["age_s"] == 5.0  # never lowered


def test_values_dropped_as_invalid_unicode_are_named_in_the_error():
    """A read with dropped key paths: status ok, the error counts them and names the first."""
    read = SourceRead(
        "risk",
        "ok",
        {"ts": T},
        dropped=tuple(f"symbols[{i}].symbol" for i in range(20)),
        dropped_count=25,
    )
    out = build_sources({"risk": read}, T, LIMITS)
    assert out["risk"]["status"] == "ok"
    assert out["risk"]["error"].startswith("25 values not valid Unicode, read as missing: ")
    assert "symbols[0].symbol" in out["risk"]["error"]
    assert out["risk"]["error"].endswith("and 20 more")
