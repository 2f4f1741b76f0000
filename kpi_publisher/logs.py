"""structlog configuration, applied once: JSON lines under supervisor, console on a TTY.

A log line that cannot be written (stdout a closed pipe, a closed descriptor, a full disk)
is dropped and counted, never raised: logging must not stop the publisher.
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any, TextIO

import structlog


def _isatty(stream: TextIO | None) -> bool:
    try:
        return stream is not None and stream.isatty()
    except (OSError, ValueError):  # a closed or broken stream is no terminal
        return False


def processors(fmt: str, stream: TextIO | None) -> list[Any]:
    """The processor chain for `fmt` (auto | json | console); pure, so tests can inspect it."""
    use_console = fmt == "console" or (fmt == "auto" and _isatty(stream))
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


class SafePrintLogger:
    """Prints each line to a stream and flushes; a failed write drops the line (counted in
    `dropped`) instead of raising: EPIPE from a reader that went away (`| head -1`), EBADF
    from a closed stdout (`>&-`), ENOSPC from a full disk under the log file."""

    dropped = 0  # lines dropped by every instance of this process

    def __init__(self, file: TextIO | None) -> None:
        self._file = file
        self._lock = threading.Lock()

    def msg(self, message: str) -> None:
        stream = self._file if self._file is not None else sys.stdout
        if stream is None:  # the process started with its stdout closed
            SafePrintLogger.dropped += 1
            return
        with self._lock:
            try:
                stream.write(message + "\n")
                stream.flush()
            except (OSError, ValueError):  # ValueError: write to a closed file object
                SafePrintLogger.dropped += 1

    log = debug = info = warn = warning = msg
    fatal = failure = err = error = critical = exception = msg


class SafePrintLoggerFactory:
    def __init__(self, file: TextIO | None = None) -> None:
        self._file = file

    def __call__(self, *args: Any) -> SafePrintLogger:
        return SafePrintLogger(self._file)


def configure(fmt: str = "auto", stream: TextIO | None = None, level: int = logging.INFO) -> None:
    """Configure structlog for the whole process (stdout unless `stream` is given)."""
    out = stream if stream is not None else sys.stdout
    structlog.configure(
        processors=processors(fmt, out),
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=SafePrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str = "hedge-kpi") -> Any:
    return structlog.get_logger(name)
