"""A reload (SIGHUP) never blanks good data: every source whose file did not move keeps its last
good content through a new size cap, FX cache path or holdings path; a source whose path moved is
read from its new file; a state dir that is not there is refused, the running config kept."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest

from kpi_publisher.config import Settings
from kpi_publisher.contract import INVALID, OK
from kpi_publisher.sources import SourceReader
from tests import test_daemon
from tests.test_daemon import T0, hup, idle, nav_doc, play, write_now, write_raw

pytestmark = pytest.mark.timeout(60)

settings = test_daemon.settings  # the daemon suite's fixture: a state dir and a separate out dir

RISK = {
    "updated_at": T0,
    "atr": {"median_ratio": 1.3, "atr_regime": "high"},
    "dd_state": "cautious",
    "router_stats": {"maker_fill_rate": 0.8, "fallback_ratio": 0.1, "slip_q50_bps": 2.5},
    "fee_pnl": {"fee_pnl_ratio": 0.2, "fees": 10.0, "pnl": 50.0},
}
POSITIONS_STATE = {
    "updated_at": T0,
    "rows": [{"symbol": "BTCUSDT", "qty": 0.5, "entry_price": 60000.0, "mark_price": 61000.0}],
}
POSITIONS_FALLBACK = {
    "updated_at": T0,
    "rows": [{"symbol": "ETHUSDT", "qty": 2.0, "entry_price": 3000.0, "mark_price": 3100.0}],
}
FX = {"usd_zar": 18.0, "usd_zar_ts": T0}
HOLDINGS = {"XAUT": {"qty": 2.0, "usd_value": 5000.0}}

# What a reload changes, and the source that then lives elsewhere (None: every file stays).
CHANGES = ["max_input_bytes", "fx_path", "holdings_path"]
MOVED = {"max_input_bytes": None, "fx_path": "fx", "holdings_path": "holdings"}


def lay_out(s: Settings) -> dict[str, Path]:
    """Every input good, at the paths `s` reads; the files by source name."""
    files = {
        "nav_state": s.state_dir / "nav_state.json",
        "risk": s.state_dir / "risk_snapshot.json",
        "positions": s.state_dir / "positions_state.json",
        "fx": s.resolved_fx_path,
        "holdings": s.resolved_holdings_path,
    }
    for name, doc in (
        ("nav_state", nav_doc(1000.0)),
        ("risk", RISK),
        ("positions", POSITIONS_STATE),
        ("fx", FX),
        ("holdings", HOLDINGS),
    ):
        files[name].parent.mkdir(parents=True, exist_ok=True)
        write_now(files[name], doc)
    write_now(s.state_dir / "positions.json", POSITIONS_FALLBACK)
    return files


def torn(path: Path) -> bytes:
    """The first half of the file's bytes: an in-place write caught half-way."""
    data = path.read_bytes()
    return data[: len(data) // 2]


def reloaded(s: Settings, change: str, tmp_path: Path) -> Settings:
    """`s` with one setting changed; a moved file is a copy of the old one with a new value."""
    if change == "max_input_bytes":
        return replace(s, max_input_bytes=20_000_000)
    moved = tmp_path / "moved" / f"{change}.json"
    moved.parent.mkdir(exist_ok=True)
    if change == "fx_path":
        write_now(moved, {**FX, "usd_zar": 19.5})
        return replace(s, fx_path=moved)
    write_now(moved, {"XAUT": {"qty": 3.0, "usd_value": 7500.0}})
    return replace(s, holdings_path=moved)


def kept_blocks(kpis: dict[str, Any]) -> dict[str, Any]:
    """The published values fed by the risk snapshot."""
    return {
        "atr_ratio": kpis["risk"]["atr_ratio"],
        "atr_regime": kpis["risk"]["atr_regime"],
        "dd_state": kpis["risk"]["dd_state"],
        "router": kpis["router"],
        "fees": kpis["fees"],
    }


def slices(kpis: dict[str, Any]) -> dict[str, float]:
    return {s["label"]: s["usd"] for s in kpis["aum"]["slices"] if s["label"] != "Futures"}


@pytest.mark.parametrize("change", CHANGES)
def test_a_reload_keeps_the_last_good_content_of_every_source_whose_file_stayed(
    settings: Settings, tmp_path: Path, change: str
) -> None:
    """Torn risk snapshot and positions_state.json (and FX cache and holdings, unless the reload
    moves them), then a reload changing `change`: the published risk, router, fees, positions,
    rate and holdings are still the last good ones; a moved source is read from its new file."""
    files = lay_out(settings)
    moved = MOVED[change]
    tear = [name for name in ("risk", "positions", "fx", "holdings") if name != moved]
    steps = [write_raw(files[name], torn(files[name])) for name in tear]
    new = reloaded(settings, change, tmp_path)
    daemon, _, publisher, events, _ = play(settings, [*steps, hup], reload=lambda: new)

    assert [e["changed"] for e in events if e["event"] == "config_reloaded"] == [[change]]
    good, last = publisher.outputs[0], publisher.outputs[-1]
    assert daemon.settings is new
    assert good.kpis["risk"]["atr_ratio"] == 1.3 and good.kpis["fees"]["fees_usd"] == 10.0
    assert kept_blocks(last.kpis) == kept_blocks(good.kpis)
    assert last.positions["positions"] == good.positions["positions"]
    assert last.positions["source"]["file"] == "positions_state.json"
    for name in tear:
        assert last.kpis["sources"][name]["status"] == INVALID, name
    if moved == "fx":
        assert last.kpis["aum"]["usd_zar"] == 19.5
        assert daemon.reader.read("fx").path == new.fx_path
    else:
        assert last.kpis["aum"]["usd_zar"] == 18.0
    if moved == "holdings":
        assert slices(last.kpis) == {"XAUT": 7500.0}
        assert daemon.reader.read("holdings").path == new.holdings_path
    else:
        assert slices(last.kpis) == {"XAUT": 5000.0}
    assert last.kpis["sources"]["nav_state"]["status"] == OK


def test_a_reload_that_moves_the_state_dir_reads_the_new_files_and_keeps_the_fx_cache(
    settings: Settings, tmp_path: Path
) -> None:
    """The state dir moved: its sources start afresh from the new files (no last good content
    of the old dir's torn files is carried over), while an FX cache configured outside both
    keeps its last good content."""
    fx = tmp_path / "cache" / "fx.json"
    settings = replace(settings, fx_path=fx)
    files = lay_out(settings)
    other = tmp_path / "other" / "state"
    other.mkdir(parents=True)
    write_now(other / "risk_snapshot.json", {**RISK, "dd_state": "defensive"})
    write_now(other / "positions.json", POSITIONS_FALLBACK)
    steps = [write_raw(p, torn(p)) for p in (files["risk"], files["positions"], fx)]
    new = replace(settings, state_dir=other)
    _, _, publisher, _, _ = play(settings, [*steps, hup], reload=lambda: new)

    last = publisher.last
    assert last["risk"]["dd_state"] == "defensive"
    assert last["sources"]["risk"]["status"] == OK
    assert publisher.outputs[-1].positions["source"]["file"] == "positions.json"
    assert last["sources"]["nav_state"]["status"] == "missing"
    assert last["aum"]["usd_zar"] == 18.0
    assert last["sources"]["fx"]["status"] == INVALID


def test_a_reconfigured_reader_reports_only_the_moved_sources_as_changed(
    settings: Settings, tmp_path: Path
) -> None:
    """The reader after a reload: the sources that stayed are neither re-parsed nor reported
    as changed (same version, same objects); the moved one is new content."""
    lay_out(settings)
    reader = SourceReader(settings)
    before = reader.refresh()
    new = reloaded(settings, "fx_path", tmp_path)
    after = reader.reconfigured(new).refresh()
    assert after.changed == after.content_changed == {"fx"}
    for name in ("nav_state", "risk", "positions", "holdings"):
        assert after.sources[name].data is before.sources[name].data, name
        assert after.sources[name].version == before.sources[name].version, name
    assert after.sources["fx"].version > max(r.version for r in before.sources.values())
    assert reader.refresh().sources["fx"].path == settings.resolved_fx_path  # left as it was


def test_a_smaller_size_cap_rereads_kept_files_and_keeps_their_last_good_content(
    settings: Settings,
) -> None:
    """A new cap applies at once to the files kept: one now over it is `invalid`, naming the
    cap, with its last good content; one under it keeps its parse."""
    files = lay_out(settings)
    write_now(files["risk"], {**RISK, "pad": "x" * 2000})
    reader = SourceReader(settings)
    before = reader.refresh()
    after = reader.reconfigured(replace(settings, max_input_bytes=1024)).refresh()
    risk = after.sources["risk"]
    assert risk.status == INVALID and "1024-byte cap" in (risk.error or "")
    assert risk.data is before.sources["risk"].data
    assert after.sources["nav_state"] is before.sources["nav_state"]
    assert after.changed == {"risk"} and not after.content_changed


@pytest.mark.parametrize("kind", ["missing", "regular_file"])
def test_a_reload_to_a_state_dir_that_is_not_a_directory_is_refused(
    settings: Settings, tmp_path: Path, kind: str
) -> None:
    """A mistyped state dir would blank every source: the reload is refused like an unusable
    out dir (`config_reload_failed` naming the setting and the path), the running config kept
    and publishing its good data; nothing is created."""
    write_now(settings.state_dir / "nav_state.json", nav_doc(1000.0))
    target = tmp_path / "logs" / "stat"
    if kind == "regular_file":
        target.write_text("")
    new = replace(settings, state_dir=target, out_dir=None, nav_fresh_s=600.0)
    daemon, _, publisher, events, _ = play(settings, [hup, idle()], reload=lambda: new)

    failed = [e for e in events if e["event"] == "config_reload_failed"]
    problem = "No such file or directory" if kind == "missing" else "not a directory"
    assert failed == [
        {
            "event": "config_reload_failed",
            "file": None,
            "reason": f"state_dir {target}: {problem}",
            "kept": "previous config",
            "log_level": "error",
        }
    ]
    assert not any(e["event"] == "config_reloaded" for e in events)
    assert daemon.settings is settings
    assert target.exists() == (kind == "regular_file") and not target.is_dir()
    assert [o.kpis["nav"]["nav_usd"] for o in publisher.outputs] == [1000.0] * 3
    assert publisher.last["sources"]["nav_state"]["status"] == OK


def test_a_reload_that_keeps_a_state_dir_missing_since_start_is_applied(
    settings: Settings, tmp_path: Path
) -> None:
    """Start-up keeps its rule: a state dir missing at start is waited for, and a reload that
    leaves it as it is (changing something else) is applied, not refused."""
    missing = tmp_path / "not_yet" / "state"
    waiting = replace(settings, state_dir=missing)
    daemon, _, _, events, _ = play(
        waiting, [hup], reload=lambda: replace(waiting, nav_fresh_s=600.0)
    )
    assert [e["changed"] for e in events if e["event"] == "config_reloaded"] == [["nav_fresh_s"]]
    assert daemon.settings.nav_fresh_s == 600.0
    assert not missing.exists()


def test_a_reload_back_to_a_state_dir_that_exists_again_is_applied(
    settings: Settings, tmp_path: Path
) -> None:
    """A refused state dir is tried again by the next SIGHUP: once it exists, it is used."""
    later = tmp_path / "later" / "state"
    write_now(settings.state_dir / "nav_state.json", nav_doc(1000.0))

    def make_it(fake: Any, timeout_s: float) -> frozenset[Path]:
        later.mkdir(parents=True)
        (later / "nav_state.json").write_bytes(orjson.dumps(nav_doc(2000.0)))
        return hup(fake, timeout_s)

    new = replace(settings, state_dir=later)
    daemon, _, publisher, events, _ = play(settings, [hup, make_it], reload=lambda: new)
    assert [e["event"] for e in events if e["event"].startswith("config_")] == [
        "config_reload_failed",
        "config_reloaded",
    ]
    assert daemon.settings is new
    assert [o.kpis["nav"]["nav_usd"] for o in publisher.outputs] == [1000.0, 1000.0, 2000.0]
    shutil.rmtree(later)
