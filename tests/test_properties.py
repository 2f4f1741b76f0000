"""Whole-core properties: any JSON in any input file -> `once` publishes schema-valid output."""

import json
import math
from pathlib import Path

import jsonschema
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kpi_publisher import schemas
from kpi_publisher.cli import main
from kpi_publisher.stages import positions

INPUT_FILES = {
    "nav_state": "logs/state/nav_state.json",
    "nav": "logs/state/nav.json",
    "risk": "logs/state/risk_snapshot.json",
    "router": "logs/state/router_health.json",
    "positions": "logs/state/positions_state.json",
    "fx": "logs/cache/coingecko_cache.json",
    "holdings": "config/offexchange_holdings.json",
}
KEYS = st.sampled_from(
    [
        "nav",
        "nav_usd",
        "total_equity",
        "updated_at",
        "updated_ts",
        "ts",
        "aum",
        "futures",
        "offexchange",
        "assets",
        "drawdown",
        "dd_pct",
        "dd_state",
        "state",
        "dd_frac",
        "atr",
        "median_ratio",
        "symbols",
        "per_symbol",
        "router_stats",
        "kpis_v7",
        "fee_pnl",
        "rows",
        "items",
        "positions",
        "symbol",
        "qty",
        "positionSide",
        "markPrice",
        "entryPrice",
        "usd_zar",
        "prices",
        "BTC",
        "avg_cost",
        "quality",
        "summary",
        "quality_counts",
        "maker_fill_rate",
    ]
) | st.text(max_size=8)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.sampled_from(["2025-11-06T16:00:00Z", "1762444800000", "1,234.5", "LONG", "SHORT"])
)
JSON = st.recursive(
    SCALARS,
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(KEYS, kids, max_size=6),
    max_leaves=30,
)
KPIS_SCHEMA = schemas.load("kpis_v7")
POSITIONS_SCHEMA = schemas.load("positions_v7")


def _write_inputs(root: Path, docs: dict) -> None:
    for name, rel in INPUT_FILES.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if name in docs:
            path.write_bytes(orjson.dumps(docs[name]))
        elif path.exists():
            path.unlink()


def _no_non_finite(value) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_no_non_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_no_non_finite(v) for v in value)
    return True


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(docs=st.dictionaries(st.sampled_from(sorted(INPUT_FILES)), JSON))
def test_any_json_in_any_input_publishes_valid_output(tmp_path, docs):
    """No exception, exit 0, both outputs schema-valid, no NaN/Infinity, same bytes twice."""
    _write_inputs(tmp_path, docs)
    state = tmp_path / "logs" / "state"
    out = tmp_path / "out"
    argv = ["once", "--state-dir", str(state), "--out-dir", str(out), "--now", "1762444830"]
    assert main(argv) == 0
    first = {p.name: p.read_bytes() for p in out.glob("*.json")}
    assert main(argv) == 0
    assert {p.name: p.read_bytes() for p in out.glob("*.json")} == first
    kpis = json.loads(first["kpis_v7.json"])
    pos = json.loads(first["positions_v7.json"])
    jsonschema.validate(kpis, KPIS_SCHEMA)
    jsonschema.validate(pos, POSITIONS_SCHEMA)
    assert _no_non_finite(kpis) and _no_non_finite(pos)
    for name, doc in docs.items():
        usable = isinstance(doc, dict) or (name == "positions" and isinstance(doc, list))
        allowed = {"ok", "stale"} if usable else {"invalid"}
        assert kpis["sources"][name]["status"] in allowed


@settings(max_examples=200, deadline=None)
@given(doc=JSON)
def test_position_normalisation_is_idempotent(doc):
    """Normalising already-normalised rows changes nothing."""
    rows = positions.normalize(doc)
    assert positions.normalize(rows) == rows
