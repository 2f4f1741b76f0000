"""Whole-core properties: any JSON in any input file -> `once` publishes schema-valid output.

The JSON includes strings that are not valid Unicode (lone surrogates, in keys and values),
timestamps in s, ms, µs and ns and ahead of the clock, numeric strings with a comma anywhere,
and documents nested up to 5,000 levels (deeper than 64 is an invalid file: rule 6 of
docs/CONTRACT_RULES.md).
"""

import json
import math
from dataclasses import dataclass
from pathlib import Path

import jsonschema
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
# Lone surrogates, which json.dumps writes as "\udXXX" escapes, mixed with any code point.
WILD_TEXT = st.text(
    st.one_of(st.characters(), st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)),
    max_size=8,
)
KEYS = KEYS | WILD_TEXT
BUILD_TIME = 1762444830
TIMESTAMPS = st.tuples(
    st.one_of(
        st.floats(min_value=-30 * 86_400, max_value=60),
        st.floats(min_value=60, max_value=1e9),
    ),
    st.sampled_from([1, 1_000, 1_000_000, 1_000_000_000]),
).map(lambda p: int((BUILD_TIME + p[0]) * p[1]))
COMMA_NUMBERS = st.tuples(
    st.one_of(st.floats(allow_nan=False).map(repr), st.integers().map(str)), st.integers(0, 25)
).map(lambda p: p[0][: p[1]] + "," + p[0][p[1] :])
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.sampled_from(["2025-11-06T16:00:00Z", "1762444800000", "1,234.5", "LONG", "SHORT"])
    | WILD_TEXT
    | TIMESTAMPS
    | TIMESTAMPS.map(str)
    | COMMA_NUMBERS
)
JSON = st.recursive(
    SCALARS,
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(KEYS, kids, max_size=6),
    max_leaves=30,
)
MAX_DEPTH = 64


@dataclass(frozen=True)
class Deep:
    """`value` inside `depth` containers (an object {"k": ...} or a list, by `kinds`), written
    as text without recursion (json.dumps and repr would recurse over thousands of levels)."""

    value: object
    depth: int
    kinds: tuple[bool, ...]

    def text(self) -> str:
        kinds = [self.kinds[i % len(self.kinds)] for i in range(self.depth)]
        head = "".join('{"k":' if k else "[" for k in kinds)
        return head + json.dumps(self.value) + "".join("}" if k else "]" for k in reversed(kinds))

    def __repr__(self) -> str:
        return f"Deep({self.value!r}, depth={self.depth}, kinds={self.kinds})"


DEEP = st.builds(
    Deep,
    JSON,
    st.one_of(st.integers(1, 70), st.integers(1, 5_000)),
    st.lists(st.booleans(), min_size=1, max_size=3).map(tuple),
)
KPIS_SCHEMA = schemas.load("kpis_v7")
POSITIONS_SCHEMA = schemas.load("positions_v7")


def _write_inputs(root: Path, docs: dict) -> None:
    for name, rel in INPUT_FILES.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if name in docs:
            # stdlib json: lone surrogates as escapes, any depth (orjson refuses both).
            doc = docs[name]
            path.write_text(doc.text() if isinstance(doc, Deep) else json.dumps(doc), "ascii")
        elif path.exists():
            path.unlink()


def _no_non_finite(value) -> bool:
    """No NaN, no Infinity and no negative zero (zero is one value: rule 1)."""
    if isinstance(value, float):
        return math.isfinite(value) and (value != 0.0 or math.copysign(1.0, value) > 0)
    if isinstance(value, dict):
        return all(_no_non_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_no_non_finite(v) for v in value)
    return True


def _depth(value) -> int:
    """Container nesting depth (a top-level object is 1), without recursion."""
    if isinstance(value, Deep):
        return value.depth + _depth(value.value)
    deepest, level = 0, [value]
    while level:
        level = [c for c in level if isinstance(c, (dict, list))]
        if level:
            deepest += 1
        level = [v for c in level for v in (c.values() if isinstance(c, dict) else c)]
    return deepest


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(docs=st.dictionaries(st.sampled_from(sorted(INPUT_FILES)), JSON | DEEP))
def test_any_json_in_any_input_publishes_valid_output(tmp_path, docs):
    """No exception, exit 0, both outputs schema-valid, no NaN/Infinity/-0.0, same bytes twice."""
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
        top_type = (dict if doc.kinds[0] else list) if isinstance(doc, Deep) else type(doc)
        usable = top_type is dict or (name == "positions" and top_type is list)
        usable = usable and _depth(doc) <= MAX_DEPTH
        allowed = {"ok", "stale"} if usable else {"invalid"}
        assert kpis["sources"][name]["status"] in allowed
    nav = kpis["nav"]
    assert nav["fresh"] is (nav["age_s"] is not None and nav["age_s"] <= 90.0)


@settings(max_examples=200, deadline=None)
@given(doc=JSON)
def test_position_normalisation_is_idempotent(doc):
    """Normalising already-normalised rows changes nothing."""
    rows = positions.normalize(doc)
    assert positions.normalize(rows) == rows
