"""The contract module is the one home of the published contract; everyone else agrees with it."""

from __future__ import annotations

import time
from pathlib import Path

import orjson

from kpi_publisher import config, contract, prom, schemas
from kpi_publisher.contract import Status
from kpi_publisher.render import render
from kpi_publisher.stages.status import build_sources

NOW = 1_790_000_000.0


def test_status_members_are_the_published_words() -> None:
    assert [s.value for s in Status] == ["ok", "missing", "invalid", "stale"]
    assert Status.STALE == "stale" and {"stale": 1}[Status.STALE] == 1
    assert contract.STATUS_WORDS == ("ok", "missing", "invalid", "stale")
    # A Status in a document renders exactly like the plain word: outputs stay byte-identical.
    assert render({"status": Status.MISSING}) == render({"status": "missing"})
    assert orjson.loads(render({"s": Status.OK})) == {"s": "ok"}


def test_publish_age_handles_absent_and_future_stamps() -> None:
    assert contract.publish_age_s(None, NOW) is None
    assert contract.publish_age_s({"generated_at": None}, NOW) is None
    assert contract.publish_age_s({"generated_at": NOW + 5}, NOW) == 0.0
    assert contract.publish_age_s({"generated_at": NOW + 60}, NOW) == 0.0
    assert contract.publish_age_s({"generated_at": NOW + 60.5}, NOW) is None
    age = contract.publish_age_s({"generated_at": time.time()}, time.time() + 1)
    assert age is not None and age > 0


def test_publish_age_refuses_what_is_not_a_build_time() -> None:
    assert contract.publish_age_s({"generated_at": True}, NOW) is None
    assert contract.publish_age_s({"generated_at": float("nan")}, NOW) is None
    assert contract.publish_age_s({}, NOW) is None
    assert contract.publish_age_s({"generated_at": NOW - 12.5}, NOW) == 12.5


def test_not_ok_skips_ok_and_an_older_eras_missing_source() -> None:
    kpis = {
        "sources": {
            "nav": {"status": "ok"},
            "risk": {"status": "stale"},
            "fx": {"status": "missing"},
            "router": {"status": "invalid"},
            "risk_advanced": {"status": "missing"},
            "holdings": "garbage",
        }
    }
    assert contract.not_ok(kpis) == {
        "risk": "stale",
        "fx": "missing",
        "router": "invalid",
        "holdings": "garbage",
    }
    assert contract.not_ok(kpis, include_expected=True)["risk_advanced"] == "missing"
    # risk_advanced that is present but broken is a problem like any other.
    broken = {"sources": {"risk_advanced": {"status": "invalid"}}}
    assert contract.not_ok(broken) == {"risk_advanced": "invalid"}
    assert contract.not_ok(None) == {} == contract.not_ok({"sources": []})


def test_publisher_down_after_three_heartbeats() -> None:
    assert contract.DOWN_HEARTBEATS == 3
    assert contract.down_after_s(5.0) == 15.0
    assert contract.CLOCK_SKEW_S == 60.0


def test_every_source_has_a_stale_limit_and_a_status_entry() -> None:
    assert set(config.DEFAULT_STALE_S) == set(contract.SOURCE_NAMES)
    built = build_sources({}, NOW, config.Settings().stale_limit_s)
    assert tuple(built) == contract.SOURCE_NAMES
    assert {e["status"] for e in built.values()} == {"missing"}
    assert set(contract.SOURCE_NAMES) == contract.CORE_SOURCES | contract.ERA_OPTIONAL


def test_schemas_match_the_file_names_ids_and_version() -> None:
    assert set(contract.SCHEMA_IDS) == set(contract.OUTPUT_FILES)
    for file_name, schema_id in contract.SCHEMA_IDS.items():
        props = schemas.load(contract.schema_name(file_name))["properties"]
        assert props["schema"]["const"] == schema_id
        assert props["schema_version"]["const"] == contract.SCHEMA_VERSION


def test_prometheus_exports_every_status_word() -> None:
    assert prom.SOURCE_STATUSES == contract.STATUS_WORDS


def test_exit_codes_are_the_documented_ones() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text("utf-8")
    documented = {int(c) for c in contract.ExitCode if f"| {int(c)} |" in readme}
    assert documented >= {0, 1, 2, 3, 4, 5, 6}
