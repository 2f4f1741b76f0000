"""Passes that redo only what changed give what a full pass gives, byte for byte.

The daemon's reader re-reads only the sources that had events (`SourceReader.refresh(events)`)
and its build re-runs only the stages whose inputs changed (`pipeline.Incremental`). After any
sequence of changes (new content, invalid or missing files, the fallback positions file, the
clock moving either way, a settings reload), both outputs equal a build from a reader that
re-read every file, by `pipeline.build`.
"""

import copy
import dataclasses
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.book import REALISTIC, documents
from kpi_publisher import pipeline
from kpi_publisher.config import Settings, resolve
from kpi_publisher.render import render
from kpi_publisher.sources import SourceReader
from kpi_publisher.stages import fees, nav, risk, router, symbols

NOW = 1_767_000_000.0
BOOK = documents(REALISTIC, NOW)
FILES = {
    "nav_state": "logs/state/nav_state.json",
    "nav": "logs/state/nav.json",
    "risk": "logs/state/risk_snapshot.json",
    "router": "logs/state/router_health.json",
    "positions": "logs/state/positions_state.json",
    "positions_fallback": "logs/state/positions.json",
    "risk_advanced": "logs/state/risk_advanced.json",
    "fx": "logs/cache/coingecko_cache.json",
    "holdings": "config/offexchange_holdings.json",
}
INVALID = (b"", b"{", b'{"nav": 1', b"\xff\xfe{}", b"[1, 2]", b"[" * 70 + b"]" * 70)
# Top-level keys of the risk snapshot that stages read, and values that `==` confuses (1, 1.0
# and True; 0.0 and -0.0) but a stage may not: a new snapshot that changes one block only is
# re-read with its other blocks shared (sources.share_unchanged).
RISK_TOP_KEYS = (
    "fee_pnl", "fees", "pnl", "fee_pnl_ratio", "dd_frac", "drawdown", "dd_state", "atr",
    "atr_ratio", "router_stats", "kpis_v7", "symbols", "daily_loss_frac", "unread",
)  # fmt: skip
TRICKY = (
    1, 1.0, True, 0.0, -0.0, None, "DRAWDOWN",
    {"fees": 1, "pnl": 0.0}, {"fees": 1.0, "pnl": -0.0}, {"fees": True, "pnl": 0.0},
    {"dd_pct": -0.0, "dd_abs": 1}, {"dd_pct": 0.0, "dd_abs": 1.0}, {"median_ratio": 1.0},
    {"maker_fill_rate": 1, "slippage_bps": 0.0}, {"maker_fill_rate": 1.0, "slippage_bps": -0.0},
    {"atr": {"median_ratio": 1}, "fee_pnl": {"fees": 2}}, [{"symbol": "BTCUSDT", "atr_ratio": 1}],
    [{"symbol": "BTCUSDT", "atr_ratio": 1.0}], [[[[1]]]],
)  # fmt: skip


def _variant(name: str, seed: int) -> Any:
    """The book's document for `name`, changed in a way its stage reads, by `seed`."""
    key = FILES["positions" if name == "positions_fallback" else name]
    doc = copy.deepcopy(BOOK.get(key, {"rows": []}))
    if name == "nav_state" and isinstance(doc, dict):
        doc["total_equity"] = 100_000.0 + seed
    elif name == "nav" and isinstance(doc, dict):
        doc["nav"] = doc["nav_usd"] = 100_000.0 + seed
    elif name == "risk" and isinstance(doc, dict):
        doc["fee_pnl"] = {"fees": 10.0 + seed, "pnl": 5.0 * seed}
        symbols = doc.get("symbols")
        if isinstance(symbols, list):
            doc["symbols"] = symbols[seed % 3 :]
    elif name.startswith("positions") and isinstance(doc, dict):
        rows = doc.get("rows") or doc.get("positions") or []
        doc = {"rows": rows[: 1 + seed % max(1, len(rows))]}
    elif isinstance(doc, dict):
        doc["seed"] = seed
    return doc


STEPS = st.one_of(
    st.tuples(st.just("write"), st.sampled_from(sorted(FILES)), st.integers(0, 5)),
    st.tuples(st.just("invalid"), st.sampled_from(sorted(FILES)), st.integers(0, 5)),
    st.tuples(st.just("delete"), st.sampled_from(sorted(FILES)), st.just(0)),
    st.tuples(st.just("in_place"), st.sampled_from(sorted(FILES)), st.integers(0, 5)),
    st.tuples(st.just("clock"), st.just(""), st.integers(-120, 600)),
    st.tuples(st.just("reload"), st.just(""), st.integers(1, 40)),
    st.tuples(st.just("risk_key"), st.sampled_from(RISK_TOP_KEYS), st.integers(0, len(TRICKY) - 1)),
)


def _apply(root: Path, step: tuple[str, str, int]) -> list[Path]:
    """Make one change on disk; the paths that had an event."""
    kind, name, seed = step
    if kind in ("clock", "reload"):
        return []
    if kind == "risk_key":  # one top-level block of the snapshot on disk takes a new value
        path = root / FILES["risk"]
        try:
            doc = orjson.loads(path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            doc = None
        doc = doc if isinstance(doc, dict) else _variant("risk", 0)
        doc[name] = TRICKY[seed]
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(orjson.dumps(doc))
        os.replace(tmp, path)
        return [path]
    path = root / FILES[name]
    if kind == "delete":
        if not path.exists():
            return []
        path.unlink()
        return [path]
    data = INVALID[seed % len(INVALID)] if kind == "invalid" else orjson.dumps(_variant(name, seed))
    if kind == "in_place":
        with open(path, "wb") as fh:  # the executor's unsafe write: same inode
            fh.write(data)
    else:
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    return [path]


def _lay_out(root: Path) -> None:
    """Every input of the book (positions.json, the fallback, only once a step writes it)."""
    for name in FILES:
        (root / FILES[name]).parent.mkdir(parents=True, exist_ok=True)
        if name != "positions_fallback":
            _apply(root, ("write", name, 0))


def _settings(root: Path) -> Settings:
    return resolve(
        {"state_dir": root / "logs/state", "out_dir": root / "out"},
        environ={},
    )


def _daemon_builds(root: Path) -> Callable[..., pipeline.Outputs]:
    """The book laid out under `root`, and a build as the daemon makes it: each call makes one
    change (none without a step), re-reads what had events and builds incrementally."""
    _lay_out(root)
    s = _settings(root)
    reader, incremental = SourceReader(s), pipeline.Incremental()

    def build(step: tuple[str, str, int] | None = None) -> pipeline.Outputs:
        events = _apply(root, step) if step is not None else []
        return incremental(reader.refresh(events).sources, NOW, s)

    return build


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(st.lists(STEPS, min_size=1, max_size=14))
def test_incremental_passes_equal_full_passes(steps: list[tuple[str, str, int]]) -> None:
    """After any sequence of changes, re-reading only what had events and re-running only the
    stages whose inputs changed publishes the bytes a full re-read and full build publish."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _lay_out(root)
        s = _settings(root)
        events_reader, full_reader = SourceReader(s), SourceReader(s, share=False)
        incremental = pipeline.Incremental()
        now = NOW
        for index, step in enumerate([("clock", "", 0), *steps]):
            events = _apply(root, step)
            if step[0] == "clock":
                now += step[2]
            elif step[0] == "reload":
                s = dataclasses.replace(s, symbols_cap=step[2], nav_fresh_s=30.0 + step[2])
            report = events_reader.refresh(events)
            full_reader.invalidate(p for paths in full_reader.paths.values() for p in paths)
            expected_report = full_reader.refresh()
            got = incremental(report.sources, now, s)
            expected = pipeline.build(expected_report.sources, now, s)
            assert report.changed == expected_report.changed, (index, step)
            assert report.content_changed == expected_report.content_changed, (index, step)
            assert render(got.kpis) == render(expected.kpis), (index, step)
            assert render(got.positions) == render(expected.positions), (index, step)


def test_a_risk_snapshot_changed_in_one_block_reruns_only_the_stages_that_read_it(
    tmp_path: Path,
) -> None:
    """A new risk snapshot whose fee block alone changed keeps every other block as the same
    object, so the symbol map, the router block and the joined positions are reused; a change
    in the execution-health entries (`symbols`) rebuilds them."""
    build = _daemon_builds(tmp_path)
    before = build()
    fees = build(("risk_key", "fee_pnl", 7))
    assert fees.kpis["fees"]["fees_usd"] == 1.0 != before.kpis["fees"]["fees_usd"]
    assert fees.kpis["symbols"] is before.kpis["symbols"]
    assert fees.kpis["router"] is before.kpis["router"]
    assert fees.positions["positions"] is before.positions["positions"]
    held = build(("risk_key", "symbols", 16))
    assert held.kpis["symbols"] is not fees.kpis["symbols"]
    assert held.kpis["symbols"]["BTCUSDT"]["atr_ratio"] == 1.0
    assert held.kpis["fees"] is fees.kpis["fees"]


def test_a_new_risk_snapshot_does_not_read_router_health_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The router block reads router_health.json's means, per-symbol rows and quality once
    per version of that file (`router.health`): every write of the executor restamps the
    snapshot's per-symbol entries, which rebuilds the router block, but not those."""
    read: list[Any] = []
    real = router.health
    monkeypatch.setattr(router, "health", lambda doc: read.append(doc) or real(doc))
    build = _daemon_builds(tmp_path)
    before = build()
    assert len(read) == 1
    held = build(("risk_key", "symbols", 16))
    assert held.kpis["router"] is not before.kpis["router"]
    assert len(read) == 1
    build(("write", "router", 2))
    assert len(read) == 2 and read[-1] is not read[0]


def _restamp_entries(root: Path, stamp: float, atr: float | None = None) -> list[Path]:
    """Write the risk snapshot again as the executor does, every per-symbol entry restamped
    (and, with `atr`, BTCUSDT's ATR ratio changed)."""
    path = root / FILES["risk"]
    doc = orjson.loads(path.read_bytes())
    for entry in doc["symbols"]:
        entry["updated_ts"] = stamp
        if atr is not None and entry["symbol"] == "BTCUSDT":
            entry["vol"]["atr_ratio"] = atr
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(orjson.dumps(doc))
    os.replace(tmp, path)
    return [path]


def test_a_restamped_snapshot_keeps_the_joined_positions_until_a_held_value_moves(
    tmp_path: Path,
) -> None:
    """Each write of the executor restamps every per-symbol entry: the symbol map is built
    again, but the positions joined with it are kept while their risk values stand, and are
    joined again as soon as one of them moves."""
    _lay_out(tmp_path)
    s = _settings(tmp_path)
    reader, incremental = SourceReader(s), pipeline.Incremental()
    before = incremental(reader.refresh().sources, NOW, s)
    events = _restamp_entries(tmp_path, NOW + 1)
    after = incremental(reader.refresh(events).sources, NOW, s)
    assert after.kpis["symbols"] is not before.kpis["symbols"]
    assert after.kpis["symbols"] == before.kpis["symbols"]
    assert after.positions["positions"] is before.positions["positions"]
    events = _restamp_entries(tmp_path, NOW + 2, atr=3.25)
    moved = incremental(reader.refresh(events).sources, NOW, s)
    (btc,) = [p for p in moved.positions["positions"] if p["symbol"] == "BTCUSDT"]
    assert btc["atr_ratio"] == 3.25
    expected = pipeline.build(SourceReader(s, share=False).refresh().sources, NOW, s)
    assert render(moved.positions) == render(expected.positions)


def test_blocks_equal_by_eq_but_not_by_bytes_are_not_shared(tmp_path: Path) -> None:
    """1, 1.0 and True (and 0.0 and -0.0) compare equal but read differently: a new snapshot
    that swaps one for another in any block publishes what a full build publishes."""
    _lay_out(tmp_path)
    s = _settings(tmp_path)
    reader, full = SourceReader(s), SourceReader(s, share=False)
    incremental = pipeline.Incremental()
    incremental(reader.refresh().sources, NOW, s)
    alike = [i for i, v in enumerate(TRICKY) if sum(v == w for w in TRICKY) > 1]
    assert len(alike) >= 12
    for key in RISK_TOP_KEYS:
        for index in alike:
            events = _apply(tmp_path, ("risk_key", key, index))
            got = incremental(reader.refresh(events).sources, NOW, s)
            full.invalidate(events)
            expected = pipeline.build(full.refresh().sources, NOW, s)
            assert render(got.kpis) == render(expected.kpis), (key, TRICKY[index])
            assert render(got.positions) == render(expected.positions), (key, TRICKY[index])


class _Recording(Mapping[str, Any]):
    """A risk snapshot that notes which of its top-level keys were read."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self._doc, self.read = doc, set[str]()

    def __getitem__(self, key: str) -> Any:
        self.read.add(key)
        return self._doc[key]

    def __contains__(self, key: object) -> bool:
        self.read.add(str(key))
        return key in self._doc

    def __iter__(self) -> Iterator[str]:
        self.read.add("*every key*")
        return iter(self._doc)

    def __len__(self) -> int:
        return len(self._doc)


def _risk_snapshots() -> list[dict[str, Any]]:
    """Every risk snapshot the tests hold (real eras, golden books, the bench book) and one
    holding every key variant together."""
    fixtures = Path(__file__).parent / "fixtures"
    docs = [orjson.loads(p.read_bytes()) for p in sorted(fixtures.rglob("risk_snapshot.json"))]
    docs.append(BOOK[FILES["risk"]])
    union: dict[str, Any] = {}
    for doc in docs:
        union.update(doc)
    return [*docs, union]


@pytest.mark.parametrize(
    ("stage", "keys"),
    [
        (lambda r: risk.build_risk(r, None), risk.RISK_KEYS),
        (lambda r: router.build_router(r, None, ["BTCUSDT"], 8), router.RISK_KEYS),
        (fees.build_fees, fees.RISK_KEYS),
        (lambda r: symbols.symbol_book(r, ["BTCUSDT"], 8), symbols.RISK_KEYS),
        (lambda r: nav.nav_values({"nav_usd": 1.0}, None, None, r), nav.RISK_KEYS),
    ],
    ids=["risk", "router", "fees", "symbols", "nav"],
)
def test_each_stage_reads_only_the_risk_keys_it_names(stage: Any, keys: tuple[str, ...]) -> None:
    """The pipeline hands a stage only the top-level keys of the risk snapshot its module names
    (`RISK_KEYS`): a key it read beyond those would be missing in the view, in every build."""
    snapshots = _risk_snapshots()
    assert len(snapshots) >= 18
    for doc in snapshots:
        recording = _Recording(doc)
        stage(recording)
        assert recording.read <= set(keys), sorted(recording.read - set(keys))
        assert stage(pipeline.view(doc, keys)) == stage(doc)


def test_incremental_reuses_the_symbol_stages_on_a_nav_change(tmp_path: Path) -> None:
    """A NAV-only change rebuilds neither the symbol map nor the joined positions."""
    build = _daemon_builds(tmp_path)
    before = build()
    after = build(("write", "nav_state", 3))
    assert after.kpis["nav"]["nav_usd"] != before.kpis["nav"]["nav_usd"]
    assert after.kpis["symbols"] is before.kpis["symbols"]
    assert after.kpis["router"] is before.kpis["router"]
    assert after.positions["positions"] is before.positions["positions"]


def test_an_event_reads_only_its_source(tmp_path: Path) -> None:
    """A pass with events reads the sources those files belong to; a change without an event
    waits for the rescan (`unread_changes` names it) or a pass with no events."""
    _lay_out(tmp_path)
    reader = SourceReader(_settings(tmp_path))
    reader.refresh()
    unseen = _apply(tmp_path, ("write", "risk", 1))
    report = reader.refresh(_apply(tmp_path, ("write", "nav", 1)))
    assert report.changed == {"nav"}
    assert reader.unread_changes() == set(unseen)
    assert reader.refresh(unseen).changed == {"risk"}
    _apply(tmp_path, ("write", "router", 1))
    assert reader.refresh().changed == {"router"}


def test_an_event_on_a_file_no_source_reads_reads_everything(tmp_path: Path) -> None:
    """An event the reader cannot place (a path spelled another way) looks at every source."""
    _lay_out(tmp_path)
    reader = SourceReader(_settings(tmp_path))
    reader.refresh()
    _apply(tmp_path, ("write", "risk", 1))
    assert reader.refresh([tmp_path / "logs/state/other.json"]).changed == {"risk"}
