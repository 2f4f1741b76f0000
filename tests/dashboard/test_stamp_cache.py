"""What is drawn from a published file is built once per version of that file."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from dashboard import charts
from dashboard.data import PublishedStore
from dashboard.stamp_cache import by_stamp
from kpi_publisher import fs
from kpi_publisher.contract import KPIS_FILE, POSITIONS_FILE
from tests.dashboard import published, test_app

APP = test_app.APP


# The app's environment of the AppTest suite: KPI_OUT_DIR is the test's tmp dir.
out_dir = test_app.out_dir


@pytest.fixture
def donuts_built(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts every AUM donut the page builds (the real builder still draws it)."""
    built: list[int] = []
    real = charts.aum_donut

    def counting(slices: Any) -> Any:
        built.append(len(slices))
        return real(slices)

    monkeypatch.setattr(charts, "aum_donut", counting)
    return built


def donut_labels(app: AppTest) -> list[str]:
    specs = [c.proto.spec for c in app.get("plotly_chart")]
    return [label for spec in specs for label in _pie_labels(spec)]


def _pie_labels(spec: str) -> list[str]:
    return [
        label
        for trace in json.loads(spec)["data"]
        if trace.get("type") == "pie"
        for label in trace["labels"]
    ]


def test_reruns_on_an_unchanged_publish_build_no_figure(
    out_dir: Path, donuts_built: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reruns (every session, every refresh) reuse the figures and reads of the version shown."""
    published.publish(out_dir, "full", time.time())
    reads: list[str] = []
    real_read = fs.read_bytes

    def counting_read(path: Path, **kwargs: Any) -> Any:
        reads.append(path.name)
        return real_read(path, **kwargs)

    monkeypatch.setattr(fs, "read_bytes", counting_read)
    app = AppTest.from_file(str(APP), default_timeout=30)
    app.run()
    assert not app.exception, app.exception
    shown = donut_labels(app)
    assert len(shown) == 4
    for _ in range(3):
        app.run()
    other_session = AppTest.from_file(str(APP), default_timeout=30)
    other_session.run()
    assert donuts_built == [4], "the donut was rebuilt for an unchanged kpis_v7.json"
    overview_reads = sorted(r for r in reads if r in (KPIS_FILE, POSITIONS_FILE))
    assert overview_reads == [KPIS_FILE, POSITIONS_FILE], "one read per file for all sessions"
    assert donut_labels(app) == donut_labels(other_session) == shown


def test_a_new_publish_builds_the_figures_once_and_shows_them(
    out_dir: Path, donuts_built: list[int]
) -> None:
    docs = published.publish(out_dir, "full", time.time())
    app = AppTest.from_file(str(APP), default_timeout=30)
    app.run()
    kpis = published.restamp(docs[KPIS_FILE], time.time() + 1.0)
    kpis["aum"]["slices"] = kpis["aum"]["slices"][:2]
    published.write_doc(
        out_dir, POSITIONS_FILE, published.restamp(docs[POSITIONS_FILE], kpis["generated_at"])
    )
    published.write_doc(out_dir, KPIS_FILE, kpis)
    app.run()
    app.run()
    assert not app.exception, app.exception
    assert donuts_built == [4, 2]
    assert len(donut_labels(app)) == 2


def test_by_stamp_builds_once_per_file_version(tmp_path: Path) -> None:
    builds: list[float] = []

    def nav(doc: Any) -> float:
        builds.append(doc["nav"]["nav_usd"])
        return float(doc["nav"]["nav_usd"])

    cached_nav = by_stamp(nav)
    store = PublishedStore(tmp_path)
    docs = published.publish(tmp_path, "full", time.time())
    assert cached_nav(store.kpis()) == cached_nav(store.kpis()) == 10234.5
    torn = tmp_path / KPIS_FILE
    torn.write_bytes(torn.read_bytes()[:40])  # in place: a torn read keeps the last good doc
    assert store.kpis().stale_read
    assert cached_nav(store.kpis()) == 10234.5
    doc = published.restamp(docs[KPIS_FILE], time.time())
    doc["nav"]["nav_usd"] = 7.5
    published.write_doc(tmp_path, KPIS_FILE, doc)
    assert cached_nav(store.kpis()) == 7.5
    assert builds == [10234.5, 7.5]


def test_snapshot_pairs_the_two_files_of_one_publish(tmp_path: Path) -> None:
    """Both files carry the publish's generated_at; a pair from two publishes is flagged."""
    store = PublishedStore(tmp_path)
    docs = published.publish(tmp_path, "full", 1_700_000_000.0)
    snapshot = store.snapshot()
    assert snapshot.paired
    assert snapshot.kpis.doc is not None and snapshot.positions.doc is not None
    assert snapshot.kpis.doc["generated_at"] == snapshot.positions.doc["generated_at"]
    published.write_doc(tmp_path, KPIS_FILE, published.restamp(docs[KPIS_FILE], 1_700_000_005.0))
    apart = store.snapshot()
    assert not apart.paired
    assert apart.key != snapshot.key
    (tmp_path / POSITIONS_FILE).unlink()
    stale = store.snapshot()  # the last good positions, of an older publish
    assert stale.positions.stale_read and not stale.paired
    fresh = PublishedStore(tmp_path).snapshot()
    assert fresh.positions.doc is None
    assert fresh.paired  # nothing to compare: the missing file has its own badge


def test_snapshot_reads_again_when_caught_between_the_two_renames(tmp_path: Path) -> None:
    """A reader between the publisher's two renames reads again and gets one publish."""
    docs = published.publish(tmp_path, "full", 1_700_000_000.0)
    renamed_kpis: list[bool] = []

    class BetweenRenames(PublishedStore):
        def read(self, name: str) -> Any:
            result = super().read(name)
            if name == POSITIONS_FILE and not renamed_kpis:
                # The publisher renames kpis_v7.json right after this read.
                new = published.restamp(docs[KPIS_FILE], 1_700_000_005.0)
                published.write_doc(tmp_path, KPIS_FILE, new)
                renamed_kpis.append(True)
            return result

    published.write_doc(
        tmp_path, POSITIONS_FILE, published.restamp(docs[POSITIONS_FILE], 1_700_000_005.0)
    )
    snapshot = BetweenRenames(tmp_path).snapshot()
    assert snapshot.paired
    assert snapshot.kpis.doc is not None and snapshot.kpis.doc["generated_at"] == 1_700_000_005.0
    assert fs.stamp(tmp_path / KPIS_FILE) == snapshot.kpis.stamp
