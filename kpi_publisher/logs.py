"""structlog configuration, applied once: JSON lines under supervisor, console on a TTY."""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog


def processors(fmt: str, stream: TextIO) -> list[Any]:
    """The processor chain for `fmt` (auto | json | console); pure, so tests can inspect it."""
    use_console = fmt == "console" or (fmt == "auto" and stream.isatty())
    chain: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
    ]
    if use_console:
        chain.append(structlog.dev.ConsoleRenderer(colors=False))
    else:
        chain.append(structlog.processors.JSONRenderer(sort_keys=True))
    return chain


def configure(fmt: str = "auto", stream: TextIO | None = None, level: int = logging.INFO) -> None:
    """Configure structlog for the whole process."""
    out = stream if stream is not None else sys.stdout
    structlog.configure(
        processors=processors(fmt, out),
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str = "hedge-kpi") -> Any:
    return structlog.get_logger(name)
