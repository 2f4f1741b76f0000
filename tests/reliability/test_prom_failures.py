"""An unwritable prom_dir is logged once per failure streak, like a failed publish.

`prom_failed` when the streak starts, `prom_still_failing` (failures, failing_s) once a
minute, `prom_recovered` (failures, failing_s) when kpis.prom is written again. Every failure
is still counted in the publisher's health (errors_by_kind["prom"]).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from structlog.testing import capture_logs

from kpi_publisher import pipeline, prom
from kpi_publisher.contract import from_values
from kpi_publisher.daemon.metrics import Metrics
from kpi_publisher.daemon.survival import PUBLISH_REMINDER_S

from .helpers import NOW, Layout, daemon, good_docs, wait_for

HEARTBEAT_S = 5.0


def named(events: Sequence[Mapping[str, Any]], name: str) -> list[Mapping[str, Any]]:
    return [e for e in events if e["event"] == name]


def test_an_unwritable_prom_dir_is_logged_once_per_streak_and_its_recovery_once(
    tmp_path: Path,
) -> None:
    """Ten minutes of heartbeats into a prom_dir that is a regular file: one prom_failed and a
    reminder a minute, not 120 lines; a line when it works again; a new streak starts over."""
    layout = Layout(tmp_path).make()
    prom_dir = tmp_path / "prom"
    prom_dir.write_text("a file where the textfile directory belongs\n")
    settings = layout.settings(prom_dir=prom_dir)
    outputs = pipeline.build(from_values(good_docs()), NOW, settings)
    metrics = Metrics()
    beats = 120
    with capture_logs() as events:
        for beat in range(beats):
            metrics.published(outputs, settings, duration_s=0.001, ts=NOW + beat * HEARTBEAT_S)
        failing = list(events)
        prom_dir.unlink()
        prom_dir.mkdir()
        metrics.published(outputs, settings, duration_s=0.001, ts=NOW + beats * HEARTBEAT_S)
        metrics.published(outputs, settings, duration_s=0.001, ts=NOW + (beats + 1) * HEARTBEAT_S)
        recovered = events[len(failing) :]
        prom_dir.rename(tmp_path / "moved")
        prom_dir.write_text("broken again\n")
        metrics.published(outputs, settings, duration_s=0.001, ts=NOW + (beats + 2) * HEARTBEAT_S)
        again = events[len(failing) + len(recovered) :]

    (first,) = named(failing, "prom_failed")
    assert first["file"] == str(prom_dir)
    assert first["reason"] == "File exists"
    reminders = named(failing, "prom_still_failing")
    minutes = int((beats - 1) * HEARTBEAT_S // PUBLISH_REMINDER_S)
    assert len(reminders) == minutes
    assert [r["failures"] for r in reminders] == [13 + 12 * i for i in range(minutes)]
    assert reminders[0]["failing_s"] == PUBLISH_REMINDER_S
    assert len(failing) == 1 + minutes  # nothing else was logged
    assert metrics.health.errors_by_kind["prom"] == beats + 1

    assert [e["event"] for e in recovered] == ["prom_recovered"]
    assert recovered[0]["failures"] == beats
    assert recovered[0]["failing_s"] == beats * HEARTBEAT_S
    assert (prom_dir.parent / "moved" / prom.PROM_FILE).is_file()

    assert [e["event"] for e in again] == ["prom_failed"]


def test_run_with_its_prom_dir_a_regular_file_logs_once_and_recovers(tmp_path: Path) -> None:
    """The reported fault, in the real process: 16 prom_failed lines in 3 s at a 5 s
    heartbeat's worth of publishes. Here dozens of publishes at a 0.05 s heartbeat log one, and
    kpis.prom appears with a prom_recovered line once the directory is made."""
    layout = Layout(tmp_path).make()
    layout.write_all(good_docs(now=time.time()))
    prom_dir = tmp_path / "prom"
    prom_dir.write_text("not a directory\n")
    with daemon(layout, "--prom-dir", str(prom_dir), "--heartbeat-s", "0.05") as proc:
        proc.wait_event("prom_failed", timeout_s=20)
        wait_for(lambda: len(proc.named("publish")) >= 30, timeout_s=30)
        assert len(proc.named("prom_failed")) == 1
        assert proc.named("prom_still_failing") == []  # less than a minute
        prom_dir.unlink()
        prom_dir.mkdir()
        back = proc.wait_event("prom_recovered", timeout_s=20)
        assert back["failures"] >= 29
        wait_for(lambda: (prom_dir / prom.PROM_FILE).is_file(), timeout_s=10)
        assert len(proc.named("prom_failed")) == 1
    assert proc.proc.returncode == 0
