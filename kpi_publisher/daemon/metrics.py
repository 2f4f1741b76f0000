"""Metrics fan-out: after each pass, kpis.prom (when prom_dir is set) and the /metrics
endpoint (when metrics_port is set) get the published outputs and the publisher's health."""

from __future__ import annotations

import structlog

from kpi_publisher import prom
from kpi_publisher.config import Settings
from kpi_publisher.contract import ExitCode
from kpi_publisher.daemon.survival import FailureStreak
from kpi_publisher.metrics_server import MetricsServer, MetricsUnavailable
from kpi_publisher.pipeline import Outputs

log = structlog.get_logger("hedge-kpi.daemon")

PROM_FILES: tuple[str, ...] = (prom.PROM_FILE,)


class Metrics:
    """The publisher's health and where it is exported to."""

    def __init__(self) -> None:
        self.health = prom.PublisherHealth()
        self.server: MetricsServer | None = None
        # kpis.prom failures in a row, logged once per streak (an unwritable prom_dir fails on
        # every publish, heartbeats included).
        self.prom_failures = 0
        self.prom_streak = FailureStreak("prom")

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
        logged once per failure streak (`survival.FailureStreak`)."""
        self.health = self.health.published(duration_s=duration_s, ts=ts)
        if settings.prom_dir is not None:
            try:
                prom.publish_prom(outputs, settings, self.health)
            except OSError as exc:
                self.health = self.health.failed("prom")
                self.prom_streak.failed(
                    self.prom_failures,
                    str(exc.filename or settings.prom_dir / prom.PROM_FILE),
                    exc.strerror or str(exc),
                    ts,
                )
                self.prom_failures += 1
            else:
                self.prom_streak.recovered(self.prom_failures, ts)
                self.prom_failures = 0
        if self.server is not None:
            self.server.update(outputs, self.health)

    def failed(self, kind: str) -> None:
        """A build or publish failed: count it (the endpoint shows it at once)."""
        self.health = self.health.failed(kind)
        if self.server is not None:
            self.server.update(None, self.health)
