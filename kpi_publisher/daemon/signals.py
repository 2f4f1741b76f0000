"""The signal thread: SIGTERM/SIGINT stop the daemon, SIGHUP reloads its config."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import Protocol

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
RELOAD_SIGNALS = (signal.SIGHUP,)


class Controllable(Protocol):
    def request_stop(self) -> None: ...

    def request_reload(self) -> None: ...


def install_signal_thread(daemon: Controllable) -> Callable[[], None]:
    """Route SIGTERM/SIGINT (stop) and SIGHUP (reload) to `daemon` from a dedicated thread.

    The signals are blocked in every thread and taken with `sigwait` by one helper thread,
    which then sets the daemon's Events. A Python-level signal handler would run inside the
    main thread, possibly while it holds the very Event lock the handler needs (a deadlock).
    Call this from the main thread before any other thread starts, so all threads inherit
    the mask. Returns a function restoring the previous mask.
    """
    wanted = {*STOP_SIGNALS, *RELOAD_SIGNALS}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, wanted)

    def _take() -> None:
        while True:
            signum = signal.sigwait(wanted)
            if signum in RELOAD_SIGNALS:
                daemon.request_reload()
            else:
                daemon.request_stop()

    threading.Thread(target=_take, name="hedge-kpi-signals", daemon=True).start()

    def restore() -> None:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)

    return restore
