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
from pathlib import Path
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.book import REALISTIC, documents
from kpi_publisher import pipeline
from kpi_publisher.config import Settings, resolve
from kpi_publisher.render import render
from kpi_publisher.sources import SourceReader

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
)


def _apply(root: Path, step: tuple[str, str, int]) -> list[Path]:
    """Make one change on disk; the paths that had an event."""
    kind, name, seed = step
    if kind in ("clock", "reload"):
        return []
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
        events_reader, full_reader = SourceReader(s), SourceReader(s)
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


def test_incremental_reuses_the_symbol_stages_on_a_nav_change(tmp_path: Path) -> None:
    """A NAV-only change rebuilds neither the symbol map nor the joined positions."""
    _lay_out(tmp_path)
    s = _settings(tmp_path)
    reader = SourceReader(s)
    incremental = pipeline.Incremental()
    before = incremental(reader.refresh().sources, NOW, s)
    after = incremental(reader.refresh(_apply(tmp_path, ("write", "nav_state", 3))).sources, NOW, s)
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
