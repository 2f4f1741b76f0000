"""The floor: a minimal watcher that copies one input to `kpis_v7.json`, with no transforms.

`python -m bench.floor --watch-file F --out-dir D [--watcher inotify|watchdog] [--fsync]
[--durability strict|fast]`. On every rename into place (or close after writing) of F it reads
F's bytes and publishes them with the plain atomic writer (`kpi_publisher.fs.write_atomic`:
exclusive temp, fill, then rename and sync in the order `--durability` names). `strict`, the
default, is the conventional order any simple durable publisher uses (fill, fsync, rename: the
floor the latency targets were set against); `fast` renames before it syncs, as the daemon
does by default, so the copy is visible as soon as the daemon's own would be (the
like-for-like floor). The daemon's own writer (`fs.OutputWriter`) goes further: it makes its
temps ahead and holds the files it published (docs/BENCHMARKS.md). `inotify` reads
raw inotify events in the main thread (the absolute floor); `watchdog` does the copy inside
the watchdog handler (the least any watchdog-based publisher can do). Publishes once at start
so a prober knows it is ready.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.inotify import IN_CLOSE_WRITE, IN_MOVED_TO, Inotify
from kpi_publisher.fs import DURABILITIES, STRICT, write_atomic

OUT_NAME = "kpis_v7.json"


def copy(src: Path, dst: Path, *, fsync: bool, durability: str = STRICT) -> None:
    with open(src, "rb") as fh:
        data = fh.read()
    write_atomic(dst, data, fsync=fsync, durability=durability)


def run_inotify(
    src: Path, dst: Path, fsync: bool, stop: threading.Event, durability: str = STRICT
) -> None:
    with Inotify(src.parent, IN_MOVED_TO | IN_CLOSE_WRITE) as ino:
        copy(src, dst, fsync=fsync, durability=durability)
        while not stop.is_set():
            events = ino.read(0.5)
            if any(name == src.name for _mask, name in events):
                copy(src, dst, fsync=fsync, durability=durability)


def run_watchdog(
    src: Path, dst: Path, fsync: bool, stop: threading.Event, durability: str = STRICT
) -> None:
    from watchdog.events import FileSystemEvent, FileSystemEventHandler
    from watchdog.observers.inotify import InotifyObserver

    target = str(src)

    class Handler(FileSystemEventHandler):
        def dispatch(self, event: FileSystemEvent) -> None:
            if event.event_type not in ("moved", "created", "closed"):
                return
            if target in (event.src_path, getattr(event, "dest_path", "")):
                try:
                    copy(src, dst, fsync=fsync, durability=durability)
                except OSError as exc:  # never let the observer thread die
                    print(f"floor copy failed: {exc}", file=sys.stderr)

    observer = InotifyObserver()
    observer.schedule(Handler(), str(src.parent), recursive=False)
    observer.start()
    # As the daemon's watcher does: no 0.5 s hold-back of MOVED_FROM for move pairing, which
    # under load delays a rename into place (the comparison stays like for like).
    for emitter in list(observer.emitters):
        grouper = getattr(getattr(emitter, "_inotify", None), "_move_event_grouper", None)
        queue = getattr(grouper, "_queue", None)
        if queue is not None and hasattr(queue, "delay"):
            queue.delay = 0.0
    copy(src, dst, fsync=fsync, durability=durability)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        observer.stop()
        observer.join(2.0)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.floor", description=__doc__)
    parser.add_argument("--watch-file", required=True, type=Path)
    parser.add_argument("--out-dir", required=True, type=Path)
    parser.add_argument("--watcher", choices=("inotify", "watchdog"), default="inotify")
    parser.add_argument("--fsync", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--durability", choices=DURABILITIES, default=STRICT)
    args = parser.parse_args(argv)
    stop = threading.Event()

    def _stop(*_: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    src = args.watch_file.absolute()
    dst = args.out_dir.absolute() / OUT_NAME
    if args.watcher == "inotify":
        run_inotify(src, dst, args.fsync, stop, args.durability)
    else:
        run_watchdog(src, dst, args.fsync, stop, args.durability)
    return 0


if __name__ == "__main__":
    sys.exit(main())
