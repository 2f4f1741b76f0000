"""Source status: ok, missing, invalid, stale by per-source limits; ages from each file's stamp."""

from kpi_publisher.config import Settings
from kpi_publisher.sources import SourceRead
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
    assert list(out) == ["nav_state", "nav", "risk", "router", "positions", "fx", "holdings"]


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
