"""Metrics fan-out: after each pass, kpis.prom (when prom_dir is set) and the /metrics
endpoint (when metrics_port is set) get the published outputs and the publisher's health."""

from __future__ import annotations

import structlog

from kpi_publisher import prom
from kpi_publisher.config import Settings
from kpi_publisher.contract import ExitCode
from kpi_publisher.daemon.survival import PUBLISH_REMINDER_S
from kpi_publisher.metrics_server import MetricsServer, MetricsUnavailable
from kpi_publisher.pipeline import Outputs

log = structlog.get_logger("hedge-kpi.daemon")

PROM_FILES: tuple[str, ...] = (prom.PROM_FILE,)


class PromStreak:
    """The log lines of a kpis.prom failure streak, as for publish failures: one `prom_failed`
    when it starts, `prom_still_failing` (failures, failing_s) each PUBLISH_REMINDER_S, and
    `prom_recovered` (failures, failing_s) on the next success. An unwritable prom_dir fails on
    every publish, heartbeats included: one line each would be 720 an hour."""

    def __init__(self) -> None:
        self.failures = 0
        self._since = 0.0
        self._next_reminder = 0.0

    def failed(self, file: str, reason: str, now: float) -> None:
        """Count a failure at `now` (epoch s); log it if it starts a streak or a reminder is due."""
        self.failures += 1
        if self.failures == 1:
            self._since = now
            self._next_reminder = now + PUBLISH_REMINDER_S
            log.error("prom_failed", file=file, reason=reason)
        elif now >= self._next_reminder:
            self._next_reminder = now + PUBLISH_REMINDER_S
            log.error(
                "prom_still_failing",
                file=file,
                reason=reason,
                failures=self.failures,
                failing_s=round(max(0.0, now - self._since), 1),
            )

    def succeeded(self, now: float) -> None:
        """End a streak, saying how long it lasted."""
        if self.failures:
            log.info(
                "prom_recovered",
                failures=self.failures,
                failing_s=round(max(0.0, now - self._since), 1),
            )
            self.failures = 0


class Metrics:
    """The publisher's health and where it is exported to."""

    def __init__(self) -> None:
        self.health = prom.PublisherHealth()
        self.server: MetricsServer | None = None
        self.prom_streak = PromStreak()

    def start(self, settings: Settings) -> ExitCode | None:
        """Bind the /metrics listener when configured; an ExitCode when it cannot be bound."""
        self.server = MetricsServer.from_settings(settings)
        if self.server is None:
            return None
        try:
            port = self.server.start()
        except MetricsUnavailable as exc:
            log.error("metrics_unavailable", reason=str(exc))
            self.server = None
            return ExitCode.USAGE
        log.info("metrics_listening", url=f"http://127.0.0.1:{port}/metrics")
        return None

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()

    def published(
        self, outputs: Outputs, settings: Settings, *, duration_s: float, ts: float
    ) -> None:
        """A publish succeeded at `ts` (epoch s): count it and export the new figures
        everywhere. A kpis.prom that cannot be written is counted every time (kind "prom") and
        logged once per failure streak (PromStreak)."""
        self.health = self.health.published(duration_s=duration_s, ts=ts)
        if settings.prom_dir is not None:
            try:
                prom.publish_prom(outputs, settings, self.health)
            except OSError as exc:
                self.health = self.health.failed("prom")
                self.prom_streak.failed(
                    str(exc.filename or settings.prom_dir / prom.PROM_FILE),
                    exc.strerror or str(exc),
                    ts,
                )
            else:
                self.prom_streak.succeeded(ts)
        if self.server is not None:
            self.server.update(outputs, self.health)

    def failed(self, kind: str) -> None:
        """A build or publish failed: count it (the endpoint shows it at once)."""
        self.health = self.health.failed(kind)
        if self.server is not None:
            self.server.update(None, self.health)
