"""Raw inotify through ctypes: the observation method of every latency probe.

The probes read events in the measuring thread itself (a blocking `poll` + `read`), so the
time of observation carries no thread hand-off. This is also the absolute floor of any
watcher on Linux (perf_reliability 2.1: 0.19 ms p50).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import select
import struct
from collections.abc import Iterator
from pathlib import Path

IN_CLOSE_WRITE = 0x00000008
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_Q_OVERFLOW = 0x00004000
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000
_HEADER = struct.Struct("iIII")

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.inotify_init1.argtypes = [ctypes.c_int]
_libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]


def _check(result: int, what: str) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


class Inotify:
    """One inotify instance watching one directory (non-recursive)."""

    def __init__(self, directory: Path, mask: int = IN_MOVED_TO | IN_CLOSE_WRITE) -> None:
        self.fd = _check(_libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC), "inotify_init1")
        try:
            _check(
                _libc.inotify_add_watch(self.fd, os.fsencode(directory), mask),
                f"inotify_add_watch({directory})",
            )
        except OSError:
            os.close(self.fd)
            raise
        self._poll = select.poll()
        self._poll.register(self.fd, select.POLLIN)

    def read(self, timeout_s: float) -> list[tuple[int, str]]:
        """(mask, name) of the events that arrive within `timeout_s`; [] on timeout."""
        if not self._poll.poll(max(0, int(timeout_s * 1000))):
            return []
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return []
        return list(_parse(data))

    def drain(self) -> None:
        while self.read(0):
            pass

    def close(self) -> None:
        os.close(self.fd)

    def __enter__(self) -> Inotify:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _parse(data: bytes) -> Iterator[tuple[int, str]]:
    offset = 0
    while offset + _HEADER.size <= len(data):
        _wd, mask, _cookie, length = _HEADER.unpack_from(data, offset)
        raw = data[offset + _HEADER.size : offset + _HEADER.size + length]
        offset += _HEADER.size + length
        yield mask, os.fsdecode(raw.rstrip(b"\0"))
