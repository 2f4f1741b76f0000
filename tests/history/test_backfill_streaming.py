"""The back-fill streams the executor's NAV logs: its memory does not follow a log's size, and
it stores what reading each file whole, then thinning once, stored."""

import io
import itertools
import json
import os
import random
import subprocess
import sys
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from kpi_publisher import fs
from kpi_publisher.history import backfill as backfill_module
from kpi_publisher.history import logfile
from kpi_publisher.history import store as store_module
from kpi_publisher.history.backfill import Tally, backfill, points_of
from kpi_publisher.history.curves import Series
from kpi_publisher.history.store import DAY_S, HistoryStore, Point
from kpi_publisher.sources import decode_doc

NOW = 1_760_000_000.0
REPO = Path(__file__).resolve().parents[2]


# --- the reference: the back-fill as it was before it streamed ---------------------------------

_BAD = object()


def _whole_file_line(line: bytes) -> object:
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        pass
    try:
        return decode_doc(line).value
    except fs.ReadError:
        return _BAD


def whole_file_points(path: Path, logs: Path, now: float, retention_days: float) -> list[Point]:
    """Each file read whole (nav_log.json decoded as one document, nav.jsonl split from the
    bytes in memory), every point inserted, one thinning at the end: what the back-fill and
    the recorder's thinning after it stored before the back-fill streamed."""
    store = HistoryStore(path, retention_days=retention_days)
    for name in ("nav_log.json", "nav.jsonl"):
        data = (logs / name).read_bytes()
        if name == "nav.jsonl":
            rows = [_whole_file_line(line) for line in io.BytesIO(data) if line.strip()]
            rows = [row for row in rows if row is not _BAD]
        else:
            rows = decode_doc(data, allow_list=True).value
        store.extend(points_of(rows, now, Tally()))
    store.thin(now)
    return store.points()


def _line(t: float, nav: float) -> bytes:
    return b'{"t": %r, "nav": %r}\n' % (t, nav)


def _long_log(rng: random.Random) -> bytes:
    """Every retention regime (past the horizon, daily, hourly, whole), NAVs on a coarse grid
    (equal lows and highs in a bucket), repeated lines, lines out of order, bad lines, points
    from the future, and lines seen again at the end, long after their first copy was thinned."""
    stretches = [  # (from days ago, to days ago, step s)
        (420, 360, 1800.0),
        (360, 70, 3 * 3600.0),
        (70, 30, 300.0),
        (30, 0, 600.0),
    ]
    out: list[bytes] = []
    for older, newer, step in stretches:
        t = NOW - older * DAY_S
        while t < NOW - newer * DAY_S:
            out.append(_line(t + rng.uniform(0, step / 2), 1000.0 + rng.randrange(8)))
            t += step
    for i in range(0, len(out) - 1, 37):  # out of order
        out[i], out[i + 1] = out[i + 1], out[i]
    for i in range(0, len(out), 53):  # the same line twice
        out.insert(i, out[i])
    out[100:100] = [b"not json\n", b'{"t": 5, "nav": NaN}\n', b"\n"]
    out.append(_line(NOW + 30.0, 1001.0))  # skew: kept
    out.append(_line(NOW + 3600.0, 1002.0))  # the future: never stored
    out.extend(rng.sample(out[200:-2], 300))  # seen again, after their first copy was thinned
    late = [float(orjson.loads(line)["t"]) + 0.5 for line in rng.sample(out[200:4200], 200)]
    out.extend(_line(t, 999.0 + rng.randrange(10)) for t in late if t < NOW)  # new, late
    return b"".join(out)


def test_a_long_log_thinned_as_it_is_read_ends_as_one_thinning_at_the_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Thinning every batch of new points (500 here: the 21,942 lines cross dozens of
    batches) stores exactly what inserting everything and thinning once stored."""
    monkeypatch.setattr(store_module, "THIN_BATCH", 500)
    monkeypatch.setattr(logfile, "PIECE_BYTES", 4096)
    rng = random.Random(11)  # noqa: S311 - a reproducible log, not a secret
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "nav.jsonl").write_bytes(_long_log(rng))
    overlap = [orjson.loads(line) for line in (logs / "nav.jsonl").read_bytes().splitlines()[-40:]]
    nav_log = [{**row, "unrealized_pnl": float("nan")} for row in overlap if "t" in row]
    nav_log.append({"t": NOW - 40 * DAY_S, "nav": 990.0, "unrealized_pnl": -1.5})
    (logs / "nav_log.json").write_text(json.dumps(nav_log, indent=2))
    want = whole_file_points(tmp_path / "whole.sqlite", logs, NOW, 400)
    assert 365 * DAY_S < NOW - want[0].t < 400 * DAY_S  # every regime: daily, hourly, whole

    store = HistoryStore(tmp_path / "streamed.sqlite", retention_days=400)
    with capture_logs() as seen:
        assert backfill(store, logs, now=NOW) > 0
    assert store.thinned > 0  # thinned while it was read, not only at the end
    store.thin(NOW)  # the recorder's, after the back-fill
    assert store.points() == want
    done = {Path(e["file"]).name: e for e in seen if e["event"] == "history_backfilled"}
    assert (done["nav.jsonl"]["skipped_lines"], done["nav.jsonl"]["future_points"]) == (1, 1)


# --- a file that changes while it is read -------------------------------------------------------


def _meddling(monkeypatch: pytest.MonkeyPatch, meddle) -> None:
    """Open logs as the back-fill does, calling `meddle(path)` after the first piece is read."""

    class Meddled(logfile.Snapshot):
        def pieces(self) -> Iterator[bytes]:
            for i, piece in enumerate(super().pieces()):
                yield piece
                if i == 0:
                    meddle(self.path)

    def open_meddled(path: Path, *, max_bytes: int) -> logfile.Snapshot:
        plain = logfile.open_snapshot(path, max_bytes=max_bytes)
        return Meddled(plain.path, plain.fd, plain.opened)

    monkeypatch.setattr(logfile, "PIECE_BYTES", 64)
    monkeypatch.setattr(backfill_module, "open_snapshot", open_meddled)


ROWS = b"".join(_line(NOW - 600 + i, 1000.0 + i) for i in range(20))


def _written_long_ago(path: Path, data: bytes) -> None:
    """`data` at `path` with an old mtime: a change made in the same clock tick as the write
    would otherwise leave the stamp the same."""
    path.write_bytes(data)
    os.utime(path, (NOW - 3600, NOW - 3600))


def test_a_log_rewritten_while_it_is_read_stores_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """An in-place rewrite (the same size, other bytes) under the reader: the points already
    read are rolled back, the file is skipped as `fs.read_bytes` skips it, and retried."""
    logs = tmp_path / "logs"
    logs.mkdir()
    _written_long_ago(logs / "nav.jsonl", ROWS)

    def rewrite(path: Path) -> None:
        with path.open("r+b") as f:
            f.write(ROWS.replace(b"1000.0", b"2000.0"))

    _meddling(monkeypatch, rewrite)
    store = HistoryStore(tmp_path / "h.sqlite")
    with capture_logs() as seen:
        assert backfill(store, logs, now=NOW) == 0
    assert store.count() == 0
    assert [(e["event"], e["reason"]) for e in seen] == [
        ("history_backfill_skipped", logfile.CHANGED)
    ]
    known = store.imported(str(logs / "nav.jsonl"))
    assert known is not None and known.startswith(backfill_module.FAILED)  # read again later


@pytest.mark.parametrize(
    ("meddle", "stored"),
    [
        ("truncate", 0),
        ("append", 20),
    ],
)
def test_a_log_cut_or_grown_while_it_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, meddle: str, stored: int
):
    """Cut short under the reader: nothing stored. Appended to (the executor writing its next
    line): what was there when it was opened is stored, and the next start imports the rest."""
    logs = tmp_path / "logs"
    logs.mkdir()
    _written_long_ago(logs / "nav.jsonl", ROWS)

    def change(path: Path) -> None:
        if meddle == "truncate":
            os.truncate(path, 100)
        else:
            with path.open("ab") as f:
                f.write(_line(NOW, 3000.0))

    _meddling(monkeypatch, change)
    store = HistoryStore(tmp_path / "h.sqlite")
    assert backfill(store, logs, now=NOW) == stored
    assert store.count() == stored
    monkeypatch.undo()
    assert backfill(store, logs, now=NOW) == (1 if meddle == "append" else 2)


# --- the pieces, the lines and the list elements ------------------------------------------------


def _pieces(data: bytes, size: int) -> Iterator[bytes]:
    return (data[i : i + size] for i in range(0, len(data), size))


def _shown(line: bytes | None) -> bool:
    """A line the back-fill looks at: one over the cap (None, counted as bad) or not blank."""
    return line is None or bool(line.strip())


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.binary(max_size=30) | st.sampled_from([b"\n", b" \n", b"\x00" * 70]), max_size=12),
    st.integers(1, 40),
    st.integers(1, 50),
)
def test_lines_in_pieces_are_the_lines_of_the_file(parts: list[bytes], size: int, cap: int):
    """Cut anywhere, the non-blank lines are those the whole file's bytes give, each line over
    the cap (a crash's run of NUL bytes) as None, in its place."""
    data = b"".join(parts)
    whole = [line.rstrip(b"\n") for line in io.BytesIO(data)]
    want = [None if len(line) > cap else line for line in whole]
    got = list(logfile.lines(_pieces(data, size), max_bytes=cap))
    assert [line for line in got if _shown(line)] == [line for line in want if _shown(line)]


def test_a_line_past_the_cap_is_never_held_whole():
    """64 MiB of NUL bytes without a newline (a crash-torn log) then a good line: the long line
    is None and the good one follows; Python's memory never holds more than a piece and the
    cap (before, the 64 MiB were joined into one line and handed to two JSON parsers)."""
    nul = b"\x00" * logfile.PIECE_BYTES
    pieces = itertools.chain(itertools.repeat(nul, 64), [b'\n{"t": 1, "nav": 2}\n'])
    tracemalloc.start()
    try:
        got = list(logfile.lines(pieces))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert got == [None, b'{"t": 1, "nav": 2}']
    assert peak < 2 * logfile.PIECE_BYTES + logfile.MAX_LINE_BYTES


def test_a_line_past_the_cap_is_a_skipped_line_and_the_file_is_imported(tmp_path: Path):
    """A long line in the middle and a torn tail of NUL bytes: two skipped lines, every point
    stored, the file imported (not failed, so not read again)."""
    logs = tmp_path / "logs"
    logs.mkdir()
    good = [_line(NOW - 600.0 * (100 - i), 2000.0 + i) for i in range(100)]
    long_line = b'{"t": 1.0, "nav": 5.0, "note": "' + b"x" * logfile.MAX_LINE_BYTES + b'"}\n'
    with (logs / "nav.jsonl").open("wb") as f:
        f.write(b"".join([*good[:50], long_line, *good[50:]]))
        f.truncate(f.tell() + 3 * logfile.PIECE_BYTES)  # the torn tail: NUL bytes, no newline
    store = HistoryStore(tmp_path / "h.sqlite")
    with capture_logs() as seen:
        assert backfill(store, logs, now=NOW) == 100
    assert [nav for _, nav in store.navs()] == [2000.0 + i for i in range(100)]
    (done,) = [e for e in seen if e["event"].startswith("history_backfill")]
    assert (done["event"], done["points"], done["skipped_lines"]) == ("history_backfilled", 100, 2)
    assert backfill(store, logs, now=NOW, new_files_only=True) == 0


_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(10**30), 10**30)
    | st.floats()
    | st.text(max_size=6)
    | st.sampled_from(["\udcff", "a\\b", '"', "\u20ac"])
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)
_NUMBERS = st.floats() | st.integers(-(10**30), 10**30)
_ROWS = st.lists(
    st.fixed_dictionaries({"t": st.floats(0, 2e9) | _NUMBERS, "nav": _NUMBERS, "x": _VALUES})
    | _VALUES,
    max_size=6,
)


def _encoded(value: object, indent: int | None, ascii_only: bool) -> bytes:
    text = json.dumps(value, indent=indent, ensure_ascii=ascii_only)
    return text.encode("utf-8", "surrogatepass")  # a lone surrogate: bytes that are not UTF-8


def _stored(rows) -> tuple[list[Point], dict[str, int]]:
    tally = Tally()
    return list(points_of(rows, NOW, tally)), tally.counts()


def _whole(data: bytes) -> object:
    """What the back-fill took from nav_log.json when it decoded it whole."""
    try:
        value = decode_doc(data, allow_list=True).value
    except fs.ReadError:
        return "failed"
    return _stored(value) if isinstance(value, list) else "failed"


def _streamed(data: bytes, size: int) -> object:
    try:
        return _stored(backfill_module._list_rows(logfile.list_items(_pieces(data, size))))
    except fs.ReadError:
        return "failed"


@settings(max_examples=300, deadline=None)
@given(
    _ROWS | _VALUES,
    st.sampled_from([None, 0, 2]),
    st.booleans(),
    st.sampled_from(["", "cut", "byte", "tail"]),
    st.integers(0, 10**6),
    st.binary(min_size=1, max_size=2),
    st.integers(1, 50),
)
def test_nav_log_read_element_by_element_decodes_as_the_whole_file(
    rows, indent, ascii_only, damage: str, where: int, junk: bytes, size: int
):
    """Any list (NaN, big integers, lone surrogates, non-ASCII), whole or damaged (cut short, a
    byte changed, something after it), cut into pieces anywhere: the same points and counts,
    or a failure exactly when decoding the whole file fails."""
    data = _encoded(rows, indent, ascii_only)
    at = where % (len(data) + 1)
    if damage == "cut":
        data = data[:at]
    elif damage == "byte":
        data = data[:at] + junk + data[at + 1 :]
    elif damage == "tail":
        data += junk
    assert _streamed(data, size) == _whole(data)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"  \n",
        b"\xef\xbb\xbf[]",
        b"[" * 70 + b"]" * 70,  # deeper than the 64 levels any file may have
        b"[" * 3000 + b"]" * 3000,  # deeper than the stdlib parser recurses
        b'[{"t": 1, "nav": 2}] [',
        b'{"t": 1, "nav": 2}',
        b"[1e400, -Infinity, NaN, 123456789012345678901234567890]",
        b'[{"t": 1e9, "nav": 123456789012345678901234567890}, NaN]',
        b"[" + b"7" * 5000 + b"]",  # an integer past int()'s digit limit reads as null
        b'["\\udcff", {"\\udcff": 1, "t": 2}]',
        b'[{"t": 1}, \xff]',
    ],
)
def test_nav_log_edge_cases_read_as_the_whole_file(data: bytes):
    for size in (1, 3, 4096):
        assert _streamed(data, size) == _whole(data), size


# --- the series in memory ---------------------------------------------------------------------


def _series_before(points: list[tuple[float, float]]) -> tuple[list, list, list]:
    """Series.of as it was (lists of floats): first of a timestamp wins, sorted, drawdowns."""
    times, navs, drawdowns, peak = [], [], [], 0.0
    for t, nav in sorted(dict(reversed(points)).items()):
        peak = max(peak, nav)
        times.append(t)
        navs.append(nav)
        drawdowns.append((peak - nav) / peak * 100.0)
    return times, navs, drawdowns


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 40).map(float), st.floats(0.5, 1e6)), max_size=30),
    st.integers(0, 30),
)
def test_compact_series_holds_what_the_list_series_held(points, split: int):
    """Built at once or point by point (late points land in order), the same columns."""
    want = _series_before(points)
    built = Series.of(iter(points))
    assert (list(built.times), list(built.navs), list(built.drawdowns)) == want
    grown = Series.of(points[:split])
    for t, nav in points[split:]:
        grown.add(t, nav)
    assert (list(grown.times), list(grown.navs), list(grown.drawdowns)) == want


# --- memory: a real process back-filling long logs ----------------------------------------------

BACKFILL = """
import json, sys
from pathlib import Path
from kpi_publisher.history.backfill import backfill
from kpi_publisher.history.curves import Series
from kpi_publisher.history.store import HistoryStore

def status(key):
    lines = Path("/proc/self/status").read_text().splitlines()
    return int(dict(line.split(":", 1) for line in lines)[key].split()[0])

store = HistoryStore(Path(sys.argv[2]))
store.open()
before_kb = status("VmRSS")
added = backfill(store, Path(sys.argv[1]), now=float(sys.argv[3]))
store.thin(float(sys.argv[3]))
series = Series.of(store.nav_rows())
print(json.dumps({"before_kb": before_kb, "peak_kb": status("VmHWM"), "added": added,
                  "held": store.count(), "series": len(series.times)}))
"""
GROWTH_LIMIT_MB = 32


def _write_long_logs(logs: Path, jsonl_lines: int, nav_log_rows: int) -> None:
    """A year of nav.jsonl (~26 s apart, the real format) and a nav_log.json far past the
    executor's 720 points, both ending just before NOW; no timestamp in both."""
    rng = random.Random(5)  # noqa: S311 - a reproducible log, not a secret
    step = 365 * DAY_S / jsonl_lines
    with (logs / "nav.jsonl").open("wb") as f:
        nav = 2000.0
        for block in range(0, jsonl_lines, 50_000):
            lines = []
            for i in range(block, min(jsonl_lines, block + 50_000)):
                nav *= 1.0 + rng.gauss(0.0, 0.0005)
                lines.append(_line(NOW - 365 * DAY_S + i * step, round(nav, 8)))
            f.write(b"".join(lines))
    with (logs / "nav_log.json").open("w") as f:
        f.write("[\n")
        for i in range(nav_log_rows):
            row = {"nav": 2000.0 + i / 1000, "t": NOW - 10.25 - 20 * i, "unrealized_pnl": 0.0}
            f.write(("" if i == 0 else ",\n") + json.dumps(row, indent=2))
        f.write("\n]\n")


def _backfill_in_a_process(logs: Path, history: Path) -> dict[str, Any]:
    """Back-fill `logs` into `history` in a fresh process (`BACKFILL`); its report: memory
    before and at the peak (kB), points added, held and in the series."""
    done = subprocess.run(
        [sys.executable, "-c", BACKFILL, str(logs), str(history), str(NOW)],
        capture_output=True,
        check=True,
        cwd=REPO,
        timeout=60,
    )
    report: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return report


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux's /proc")
def test_peak_memory_of_a_back_fill_does_not_follow_the_logs_size(tmp_path: Path):
    """A 51 MB nav.jsonl (a year, 1.2 million lines) and a 14 MB nav_log.json (200,000 rows):
    the back-fill, its thinning and the series it loads grow the process by less than
    GROWTH_LIMIT_MB (32 MiB). Measured: 13 MB (a piece of each file, SQLite's page cache, the
    ~250,000 points retention keeps, as a series). Read whole, as before, either file alone
    broke the limit: nav.jsonl grew the process by 50 MB (its bytes), nav_log.json by 118 MB
    (its bytes and 200,000 decoded rows)."""
    logs = tmp_path / "logs"
    logs.mkdir()
    _write_long_logs(logs, jsonl_lines=1_200_000, nav_log_rows=200_000)
    sizes_mb = [(logs / name).stat().st_size / 1e6 for name in ("nav.jsonl", "nav_log.json")]
    result = _backfill_in_a_process(logs, tmp_path / "h.sqlite")
    growth_mb = (result["peak_kb"] - result["before_kb"]) / 1024
    assert growth_mb < GROWTH_LIMIT_MB, (sizes_mb, result)
    assert result["added"] == 1_200_000 + 200_000
    assert result["held"] == result["series"] < 1_200_000  # thinned: a year is not held whole


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux's /proc")
def test_peak_memory_of_a_back_fill_does_not_follow_a_torn_tail(tmp_path: Path):
    """Two days of minute points, then 400 MB of NUL bytes without a newline (a crash-torn
    nav.jsonl, under the 512 MiB cap): the back-fill grows the process by less than
    GROWTH_LIMIT_MB and stores every point. Before, that one line took the daemon to a
    1.67 GB peak and left it at 420 MB."""
    logs = tmp_path / "logs"
    logs.mkdir()
    with (logs / "nav.jsonl").open("wb") as f:
        f.write(b"".join(_line(NOW - 60.0 * (2880 - i), 2000.0 + i / 100) for i in range(2880)))
        f.truncate(f.tell() + 400 * 1000 * 1000)  # sparse: costs no disk
    result = _backfill_in_a_process(logs, tmp_path / "h.sqlite")
    growth_mb = (result["peak_kb"] - result["before_kb"]) / 1024
    assert growth_mb < GROWTH_LIMIT_MB, result
    assert result["added"] == result["held"] == 2880
