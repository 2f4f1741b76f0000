"""The NAV history on disk: one SQLite file (stdlib `sqlite3`, WAL) of points keyed by the
NAV's own timestamp.

Durability: every append (or `save` of a batch) is its own transaction in WAL mode with
`synchronous=NORMAL`, so a process killed mid-write loses at most what was in flight (the WAL is
replayed on the next open). A history file SQLite cannot read is moved aside
(`<name>.corrupt-<epoch>`) with one log line and a new one is started. A file that is plainly
not a history at all is never moved, written or converted: one that does not begin with
SQLite's header (a JSON document, say: a `history_path` pointing at an input or an output by
mistake), or a SQLite database of another program (none of our tables). The history then
pauses with one `history_refused` line and the file stays as it was. SQLite writes the 16
header bytes once, when it creates the file, so a damaged history of ours still begins with
them (or with zeros, where a crash lost the block). A full disk (or any write error) pauses the
history with one log line; writes are refused quietly until `PAUSE_RETRY_S` has passed, then
tried again (`save` says so: its caller keeps the points and saves them later). Nothing here
raises into the publisher.

One publisher per history file: the store holds an exclusive `flock` on a descriptor of the
database file from its open to its close (SQLite's own locks are `fcntl` locks, which Linux
keeps apart from `flock`); the kernel drops it when the process dies, however it dies. A store
that finds it taken logs one `history_locked` error naming the holder (its pid, from
/proc/locks, and its hedge-kpi command) and stays closed; it tries again every `PAUSE_RETRY_S`,
so it takes the file over once the holder stops. Two daemons pointed at one file by mistake
never mix two desks' NAVs into one curve.

The file held stays the one at `history_path`: before each write (and at `verify`) the path is
compared with the open file (device and inode, one stat). A file deleted or replaced under the
store is noticed there: one `history_file_changed` line (the file, `deleted` or `replaced`),
and the store closes and opens what is at the path as a restart would (a missing file is made
again; another file is checked as at start, and refused when it is not a history).

A file that can be read but not written (a read-only mount, a directory without write
permission) is opened read-only (`history_read_only`, one line): its points are read as ever,
writes are refused quietly like a pause (`save` says so: the caller keeps its points), and the
write open is tried again every `PAUSE_RETRY_S`. SQLite reads a WAL file read-only only when
its -shm exists or can be made; without either side file (closed cleanly) the file is the
whole database and is read as immutable. A file that cannot be read either is `unread`: what it
holds is unknown, so the caller publishes no curve from it.

Retention (`thin`): points older than `retention_days` are deleted. Older points are thinned,
never dropped at random: beyond `HOURLY_AFTER_S` (30 days) each UTC hour keeps its first, its
lowest and its highest point; beyond `DAILY_AFTER_S` (365 days) each UTC day keeps the same
three. Keeping the extremes means the drawdowns of thinned stretches stay visible. Age is
measured in data time: from the clock, but never from past the newest point stored, so a wall
clock stepped forward (for seconds or for good) never thins or deletes a point that is recent
against the data; a clock more than `CLOCK_FAR_S` from the newest point is logged once
(`history_clock_far`). Thinning twice at the same clock keeps what thinning once keeps (the
first, lowest and highest of a bucket are among the points kept before), and so does thinning
at an earlier then a later time (the buckets are thinned before the points past retention are
deleted), so a long import (`extend` with `thin_at`) thins as it goes, at the data time reached
so far, and ends where one thinning at its end would.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import itertools
import os
import sqlite3
import stat
import time
import urllib.parse
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import structlog

from kpi_publisher.lock import holder_command, holder_pid, holder_text

log = structlog.get_logger("hedge-kpi.history")

DAY_S = 86_400.0
DEFAULT_RETENTION_DAYS = 400
HOURLY_AFTER_S = 30 * DAY_S
DAILY_AFTER_S = 365 * DAY_S
THIN_EVERY_S = 3600.0
# A clock this far from the newest point stored is logged (once): retention then measures age
# from the data, not from the clock.
CLOCK_FAR_S = DAY_S
# A long import is thinned after every this many new points: what the store holds beyond what
# retention keeps is at most one batch (~3 MB of pages), and the thinning that runs then costs
# about what inserting the batch did.
THIN_BATCH = 100_000
PAUSE_RETRY_S = 60.0
# Tries at locking and opening the file at the path when it is replaced in between (a race).
_ATTACH_TRIES = 3
# The first bytes of every SQLite 3 database file.
SQLITE_HEADER = b"SQLite format 3\x00"
# The files SQLite keeps beside a database `<name>`: `<name>-wal`, `<name>-shm` in WAL mode, and
# `<name>-journal` while it converts a database to WAL.
SIDE_SUFFIXES: tuple[str, ...] = ("-wal", "-shm", "-journal")
_WAL_FILES = ("-wal", "-shm")
_TABLES = frozenset({"points", "imports"})
_TABLE_NAMES = "SELECT name FROM sqlite_master WHERE type = 'table'"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS points (
    t REAL PRIMARY KEY,
    nav_usd REAL NOT NULL,
    unrealized_pnl_usd REAL,
    drawdown_pct REAL,
    gross_exposure_usd REAL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS imports (
    source TEXT PRIMARY KEY,
    identity TEXT NOT NULL
);
"""
_INSERT = "INSERT OR IGNORE INTO points VALUES (?, ?, ?, ?, ?)"


class NotAHistory(Exception):
    """The file at `history_path` is something else; it must be left as it is."""


class HistoryHeld(Exception):
    """Another publisher holds the history file."""

    def __init__(self, path: Path, pid: int | None, command: str | None) -> None:
        holder = holder_text(pid, command, unknown="another publisher")
        super().__init__(f"{path} is held by {holder}")
        self.pid = pid
        self.command = command


class Point(NamedTuple):
    """One NAV observation; `t` is the NAV's own timestamp (epoch s), not the publish time."""

    t: float
    nav_usd: float
    unrealized_pnl_usd: float | None = None
    drawdown_pct: float | None = None
    gross_exposure_usd: float | None = None


@dataclass
class HistoryStore:
    """The store behind one `history_path`. Open lazily; every method is safe to call after a
    failure (it then does nothing and returns the empty answer)."""

    path: Path
    retention_days: float = DEFAULT_RETENTION_DAYS
    _db: sqlite3.Connection | None = None
    _lock: io.FileIO | None = None  # the file's flock, held while `_db` is open
    _change: str | None = None  # "deleted" / "replaced", noticed and not yet told by `verify`
    # The device and inode of the -wal and -shm files SQLite opened beside the file.
    _sides: dict[str, tuple[int, int]] = field(default_factory=dict)
    _paused_until: float = 0.0
    _last_thin: float = 0.0
    _last_t: float | None = None
    _clock_far: bool = False  # the clock was far from the data at the last thinning (logged)
    thinned: int = 0  # points removed by retention since open
    held_by: HistoryHeld | None = None  # who held the file at the last try, while they do
    read_only: bool = False  # open for reading only: the file takes no writes (retried)
    unread: bool = False  # a file is at the path that could not be opened, even to read
    _told_read_only: bool = False  # `history_read_only` was logged since writes last worked

    # -- opening ---------------------------------------------------------------------------

    def open(self) -> bool:
        """Open (or create) the file; a corrupt one is moved aside and replaced, one that is not
        a history is left alone, one another publisher holds is not opened, one that takes no
        writes is opened read-only. False when the history is unavailable (the reason was
        logged; tried again after PAUSE_RETRY_S)."""
        if self._db is not None:
            return True
        if self.paused and time.monotonic() < self._paused_until:
            return False
        self.unread = False
        try:
            self._open_file()
        except HistoryHeld as exc:
            return self._held(exc)
        except NotAHistory as exc:
            return self._refuse(exc)
        except Exception as exc:  # SQLite's or the OS's, or a path an API cannot take: read it
            return self._open_read_only(exc)
        self.held_by = None
        self._resumed()
        return True

    def _open_read_only(self, cause: BaseException) -> bool:
        """The file could not be opened for writing (`cause`): read it as it is, so its points
        are still published; writes wait for the next try at a write open."""
        try:
            self._attach(read_only=True)
        except HistoryHeld as exc:
            return self._held(exc)
        except NotAHistory as exc:
            return self._refuse(exc)
        except FileNotFoundError:  # no file: nothing stored, the write failure is the reason
            return self._pause("open", cause)
        except Exception as exc:  # whatever it is, the history pauses: it never raises out of here
            self.unread = _holds_bytes(self.path)
            return self._pause("open", OSError(f"{cause}; cannot be read either: {exc}"))
        if not self._told_read_only:
            self._told_read_only = True
            log.warning(
                "history_read_only",
                file=str(self.path),
                reason=str(cause),
                kept="the stored history is published; new points are kept in memory and "
                "saved once the file can be written",
                retry_s=PAUSE_RETRY_S,
            )
        self.held_by = None
        self._paused_until = time.monotonic() + PAUSE_RETRY_S
        return True

    def _open_file(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if (reason := foreign_file(self.path)) is not None:
            raise NotAHistory(reason)
        self._attach()

    def _attach(self, *, read_only: bool = False) -> None:
        """Lock the file at the path (made when missing), then connect to it: SQLite never opens
        a file another publisher holds, and a corrupt one is moved aside (once) by the holder of
        its lock only. The path must still name the locked file once SQLite has it open, or
        both are let go and tried again (it was replaced in between). `read_only`: an existing
        file only, never changed (FileNotFoundError when there is none)."""
        moved_aside = False
        for _ in range(_ATTACH_TRIES):
            lock = _locked(self.path, writable=not read_only)
            try:
                db = self._connect_read_only() if read_only else self._connect()
            except sqlite3.DatabaseError as exc:
                corrupt = (
                    not read_only
                    and _is_corruption(exc)
                    and not moved_aside
                    and _names(self.path, lock)
                )
                if corrupt:
                    self._move_aside(exc)
                    moved_aside = True
                lock.close()
                if corrupt:
                    continue
                raise
            except BaseException:
                lock.close()
                raise
            if _names(self.path, lock):
                self._db, self._lock = db, lock
                self._sides = _identities(self.path, _WAL_FILES)
                self.read_only = read_only
                return
            db.close()
            lock.close()
        raise OSError(f"{self.path} kept being replaced while it was opened")

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        return self._checked(db, writable=True)

    def _connect_read_only(self) -> sqlite3.Connection:
        """A connection that never writes to the file or beside it. `mode=ro` reads the WAL
        through its -shm; with neither side file there (closed cleanly) and none to be made
        (a read-only directory) the file is the whole database, read as immutable. A WAL left
        without its -shm cannot be read: an error rather than a history missing its WAL."""
        # The path's bytes, quoted: a name that is not UTF-8 (surrogate escapes) has no UTF-8
        # text to quote, and SQLite turns each %XX back into its byte.
        uri = "file:" + urllib.parse.quote(os.fsencode(os.path.abspath(self.path)))
        try:
            return self._read_only_at(uri + "?mode=ro")
        except sqlite3.OperationalError:
            if _holds_bytes(Path(str(self.path) + "-wal")):
                raise
        return self._read_only_at(uri + "?immutable=1")

    def _read_only_at(self, uri: str) -> sqlite3.Connection:
        db = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        return self._checked(db, writable=False)

    def _checked(self, db: sqlite3.Connection, *, writable: bool) -> sqlite3.Connection:
        """`db` once it is known to hold a history (NotAHistory: another program's database;
        DatabaseError: a damaged one), with `_last_t` loaded from it; `writable`: in WAL mode
        with the schema made. Closed on any failure."""
        try:
            # Before anything is changed (journal_mode=WAL is written into the file's header).
            tables = {name for (name,) in db.execute(_TABLE_NAMES)}
            if tables and not tables & _TABLES:
                raise NotAHistory(f"a SQLite database of another program (tables: {_few(tables)})")
            ok = db.execute("PRAGMA quick_check").fetchone()
            if ok is None or ok[0] != "ok":
                raise sqlite3.DatabaseError(f"database disk image is malformed: {ok}")
            if writable:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                db.executescript(_SCHEMA)
            self._last_t = _newest_t(db)
        except BaseException:
            db.close()
            raise
        return db

    def _move_aside(self, exc: BaseException) -> None:
        aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
        for suffix in ("", *SIDE_SUFFIXES):
            source = Path(str(self.path) + suffix)
            with contextlib.suppress(FileNotFoundError):
                os.replace(source, Path(str(aside) + suffix))
        log.error("history_corrupt", file=str(self.path), moved_to=str(aside), reason=str(exc))

    def close(self) -> None:
        """Close the database, then let go of the file's lock (in this order: closing another
        descriptor of the file would drop the locks SQLite holds on it)."""
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None
        self.read_only = False
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    # -- the file at the path --------------------------------------------------------------

    def verify(self) -> str | None:
        """What happened to the open file since the last call: "deleted", "replaced" or None.
        One stat: when the path no longer names the file the store has open, the store is
        closed (one `history_file_changed` line) and the next write opens what is at the path
        as a restart would."""
        self._notice_change()
        change, self._change = self._change, None
        return change

    def _notice_change(self) -> None:
        if self._db is None or self._lock is None or _names(self.path, self._lock):
            return
        try:
            os.stat(self.path)
        except FileNotFoundError:
            change, done = "deleted", "a new one is made"
        except OSError:  # cannot tell (a directory no longer searchable): writes go on
            return
        else:
            change, done = "replaced", "the file now there is opened as the history"
        log.warning(
            "history_file_changed",
            file=str(self.path),
            change=change,
            reason=f"the history file was {change} while open; {done}",
        )
        self._let_go()
        self._change = change

    def _let_go(self) -> None:
        """Close a store whose file has left the path. SQLite neither checkpoints nor removes
        the WAL of a moved file when it closes it, and would replay that WAL into the file next
        found at the path: it is checkpointed into its own file first (by descriptor), and this
        store's -wal and -shm are then removed from the path."""
        assert self._db is not None
        with contextlib.suppress(sqlite3.Error):
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        self.close()
        there = _identities(self.path, self._sides)
        for suffix, identity in self._sides.items():
            if there.get(suffix) == identity:
                with contextlib.suppress(OSError):
                    Path(str(self.path) + suffix).unlink()
        self._sides = {}

    # -- failures ----------------------------------------------------------------------------

    @property
    def paused(self) -> bool:
        return self._paused_until > 0.0

    def _pause(self, action: str, exc: BaseException) -> bool:
        """Stop writing for PAUSE_RETRY_S; log only the first failure of a run of failures."""
        if not self.paused:
            log.warning("history_paused", file=str(self.path), action=action, reason=str(exc))
        self.held_by = None
        self._paused_until = time.monotonic() + PAUSE_RETRY_S
        return False

    def _refuse(self, exc: NotAHistory) -> bool:
        """Pause like `_pause`, but as an error: the file is not ours and nothing retries it
        into shape; the operator moves it or points history_path elsewhere."""
        if not self.paused:
            log.error("history_refused", file=str(self.path), reason=str(exc), kept="file as it is")
        self.held_by = None
        self._paused_until = time.monotonic() + PAUSE_RETRY_S
        return False

    def _held(self, exc: HistoryHeld) -> bool:
        """Pause like `_pause`: another publisher has the file. One error line per run of
        tries, naming the holder; taken over by the first try after the holder has stopped."""
        if not self.paused or self.held_by is None:
            log.error(
                "history_locked",
                file=str(self.path),
                holder_pid=exc.pid,
                holder=exc.command,
                reason=str(exc),
                retry_s=PAUSE_RETRY_S,
            )
        self.held_by = exc
        self._paused_until = time.monotonic() + PAUSE_RETRY_S
        return False

    def retry_now(self) -> None:
        """End the current pause early: the next write tries again (a last try at a stop)."""
        if self.paused:
            self._paused_until = min(self._paused_until, time.monotonic())

    def _writable(self) -> bool:
        self._notice_change()
        if self.paused and time.monotonic() < self._paused_until:
            return False
        if self.read_only:
            self.close()  # the write open is tried again; read-only again when it fails
        return self.open() and not self.read_only

    def _resumed(self) -> None:
        self._told_read_only = False
        if self.paused:
            self._paused_until = 0.0
            log.info("history_resumed", file=str(self.path))

    # -- writing -----------------------------------------------------------------------------

    def append(self, point: Point, now: float | None = None) -> bool:
        """Store one point; True when it is new (the same timestamp twice is one row)."""
        if point.t == self._last_t or not self._writable():
            return False
        assert self._db is not None
        try:
            added = self._db.execute(_INSERT, point).rowcount == 1
        except sqlite3.Error as exc:
            return self._pause("append", exc)
        self._resumed()
        if added and (self._last_t is None or point.t > self._last_t):
            self._last_t = point.t
        clock = time.time() if now is None else now
        if added and self._thin_due(clock):
            self.thin(clock)
        return added

    def extend(self, points: Iterable[Point], *, thin_at: float | None = None) -> int:
        """Store many points in one transaction, reading them as they come; returns how many
        were new. With `thin_at` (epoch s), retention as `thin(thin_at)` applies within the
        transaction after every THIN_BATCH new points (what comes after the last full batch is
        the caller's to thin). An exception raised by `points` rolls everything back and is
        raised again."""
        return self._insert(points, thin_at) or 0

    def save(self, points: Iterable[Point], now: float | None = None) -> bool:
        """Store `points` in one transaction (a timestamp already held keeps its row) and thin
        when due, as `append` does; True once the store holds them all, False when it is paused
        or unavailable (nothing was written: the caller keeps them and saves them again)."""
        if self._insert(points, None) is None:
            return False
        clock = time.time() if now is None else now
        if self._thin_due(clock):
            self.thin(clock)
        return True

    def _thin_due(self, clock: float) -> bool:
        """At most hourly; a clock stepped back (past the last thinning) does not hold it off."""
        return abs(clock - self._last_thin) >= THIN_EVERY_S

    def _insert(self, points: Iterable[Point], thin_at: float | None) -> int | None:
        """`extend`'s transaction; how many points were new, None when nothing was written."""
        if not self._writable():
            return None
        assert self._db is not None
        rows = iter(points)
        added = removed = unthinned = 0
        try:
            self._db.execute("BEGIN")
            while (first := next(rows, None)) is not None:
                before = self._db.total_changes
                batch = itertools.chain((first,), itertools.islice(rows, THIN_BATCH - 1))
                self._db.executemany(_INSERT, batch)
                new = self._db.total_changes - before
                added, unthinned = added + new, unthinned + new
                if thin_at is not None and unthinned >= THIN_BATCH:
                    removed += self._thin_rows(thin_at)
                    unthinned = 0
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback()
            self._pause("extend", exc)
            return None
        except BaseException:
            self._rollback()
            raise
        self._resumed()
        self.thinned += removed
        self._last_t = _newest_t(self._db)
        return added

    def _rollback(self) -> None:
        assert self._db is not None
        with contextlib.suppress(sqlite3.Error):
            self._db.execute("ROLLBACK")

    def thin(self, now: float) -> int:
        """Apply retention (see the module docstring); returns how many points were removed."""
        self._last_thin = now
        if not self._writable():
            return 0
        assert self._db is not None
        try:
            self._db.execute("BEGIN")
            removed = self._thin_rows(now)
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback()
            return self._pause("thin", exc)
        self.thinned += removed
        return removed

    def _thin_rows(self, now: float) -> int:
        """Retention's deletes, within the caller's transaction, at `now` or at the newest
        point stored when that is older (data time); how many points they removed. Buckets are
        thinned before the points past retention go: a bucket cut by the retention horizon keeps
        what it kept before, so thinning as the data time advances (a long import) ends where
        one thinning at its end would."""
        assert self._db is not None
        # Read, not `_last_t`: within `extend` the rows of the open transaction count, and
        # `_last_t` takes them only once they are committed.
        newest = _newest_t(self._db)
        if newest is None:
            return 0
        now = self._data_time(now, newest)
        before = self._db.total_changes
        for older, newer, bucket in (
            (-1e300, now - DAILY_AFTER_S, DAY_S),
            (now - DAILY_AFTER_S, now - HOURLY_AFTER_S, 3600.0),
        ):
            self._db.execute(_THIN, (older, newer, bucket))
        self._db.execute("DELETE FROM points WHERE t < ?", (now - self.retention_days * DAY_S,))
        return self._db.total_changes - before

    def _data_time(self, clock: float, newest: float) -> float:
        """Retention's time: the clock, never past the newest point stored. A clock far from
        that point either way (stepped, or wrong) is logged once, until it is near again."""
        far = abs(clock - newest) > CLOCK_FAR_S
        if far and not self._clock_far:
            log.warning(
                "history_clock_far",
                file=str(self.path),
                clock=clock,
                newest_t=newest,
                ahead_s=clock - newest,
                reason="the clock is far from the newest point stored; retention measures age "
                "from that point, never from past it",
            )
        self._clock_far = far
        return min(clock, newest)

    # -- imports bookkeeping ------------------------------------------------------------------

    def imported(self, source: str) -> str | None:
        if not self.open():
            return None
        assert self._db is not None
        row = self._db.execute("SELECT identity FROM imports WHERE source = ?", (source,))
        found = row.fetchone()
        return None if found is None else str(found[0])

    def mark_imported(self, source: str, identity: str) -> None:
        if not self._writable():
            return
        assert self._db is not None
        try:
            self._db.execute("INSERT OR REPLACE INTO imports VALUES (?, ?)", (source, identity))
        except sqlite3.Error as exc:
            self._pause("import", exc)

    # -- reading -----------------------------------------------------------------------------

    def count(self) -> int:
        if not self.open():
            return 0
        assert self._db is not None
        return int(self._db.execute("SELECT COUNT(*) FROM points").fetchone()[0])

    def navs(self, since: float | None = None) -> list[tuple[float, float]]:
        """(t, nav_usd) in time order, from `since` on (everything when None)."""
        if not self.open():
            return []
        assert self._db is not None
        query = "SELECT t, nav_usd FROM points"
        if since is None:
            return self._db.execute(query + " ORDER BY t").fetchall()
        return self._db.execute(query + " WHERE t >= ? ORDER BY t", (since,)).fetchall()

    def nav_rows(self) -> Iterator[tuple[float, float]]:
        """(t, nav_usd) in time order, read as they are taken: loading a long history into a
        compact series never holds it as a list of tuples."""
        if not self.open():
            return iter(())
        assert self._db is not None
        return iter(self._db.execute("SELECT t, nav_usd FROM points ORDER BY t"))

    def points(self) -> list[Point]:
        if not self.open():
            return []
        assert self._db is not None
        rows: Sequence[tuple[float, ...]] = self._db.execute(
            "SELECT * FROM points ORDER BY t"
        ).fetchall()
        return [Point(*row) for row in rows]


# Within [older, newer) keep, per bucket, the first, the lowest and the highest point.
_THIN = """
DELETE FROM points WHERE t >= ?1 AND t < ?2 AND t NOT IN (
    SELECT MIN(t) FROM points WHERE t >= ?1 AND t < ?2 GROUP BY CAST(t / ?3 AS INTEGER)
    UNION SELECT t FROM (SELECT t, MIN(nav_usd) FROM points WHERE t >= ?1 AND t < ?2
                         GROUP BY CAST(t / ?3 AS INTEGER))
    UNION SELECT t FROM (SELECT t, MAX(nav_usd) FROM points WHERE t >= ?1 AND t < ?2
                         GROUP BY CAST(t / ?3 AS INTEGER))
)
"""


def foreign_file(path: Path) -> str | None:
    """Why the file at `path` is plainly not a history database, or None (no file yet, an empty
    one, or one that begins with SQLite's header or with zeros: a history, perhaps damaged).

    Opened without blocking and never written: a FIFO or a device is refused unread."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        return "a directory"
    except OSError:  # unreadable: SQLite's own open reports why, and the history pauses
        return None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            return "a directory"
        if not stat.S_ISREG(info.st_mode):
            return "not a regular file"
        head = os.read(fd, len(SQLITE_HEADER))
    except OSError:
        return None
    finally:
        os.close(fd)
    if SQLITE_HEADER.startswith(head) or not any(head):
        return None
    return f"not a SQLite database (it begins {head[:8]!r})"


def _locked(path: Path, *, writable: bool = True) -> io.FileIO:
    """The file at `path` (made when missing, as SQLite would), open and under our exclusive
    flock. HistoryHeld naming the holder when another process has it; NotAHistory when
    something other than a regular file got there since it was checked; OSError. Not
    `writable`: an existing file, opened for reading (flock needs no write access)."""
    if writable:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
    else:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    lock = io.FileIO(fd, "r+" if writable else "r")
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotAHistory("not a regular file")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = holder_pid(fd)
            raise HistoryHeld(path, pid, holder_command(pid)) from None
    except BaseException:
        lock.close()
        raise
    return lock


def _holds_bytes(path: Path) -> bool:
    """True unless `path` is missing or empty (a file that cannot be stat-ed may hold some)."""
    try:
        return os.stat(path).st_size > 0
    except FileNotFoundError:
        return False
    except (OSError, ValueError):
        return True


def _newest_t(db: sqlite3.Connection) -> float | None:
    """The newest point's timestamp (one descent of the primary key), None when there is none."""
    row = db.execute("SELECT MAX(t) FROM points").fetchone()
    return None if row is None else row[0]


def _names(path: Path, lock: io.FileIO) -> bool:
    """True when `path` names the file open as `lock` (its device and inode)."""
    try:
        current = os.stat(path)
    except OSError:
        return False
    held = os.fstat(lock.fileno())
    return (held.st_dev, held.st_ino) == (current.st_dev, current.st_ino)


def _identities(path: Path, suffixes: Iterable[str]) -> dict[str, tuple[int, int]]:
    """The device and inode of each side file `<path><suffix>` there is."""
    found = {}
    for suffix in suffixes:
        with contextlib.suppress(OSError):
            info = os.stat(str(path) + suffix)
            found[suffix] = (info.st_dev, info.st_ino)
    return found


def _few(names: set[str], shown: int = 5) -> str:
    listed = sorted(names)
    more = f" and {len(listed) - shown} more" if len(listed) > shown else ""
    return ", ".join(listed[:shown]) + more


def _is_corruption(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "malformed" in text or "not a database" in text or "corrupt" in text
