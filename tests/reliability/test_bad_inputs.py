"""A bad input never blanks good data (docs/CONTRACT_RULES.md, rules 6 and 7).

Each corruption lands on a source that was read good once: the rebuilt KPIs must equal the
previous ones except for that source's status (`invalid`) and error (the file and the reason),
and the daemon must say so in exactly one log event. NaN/Infinity tokens and numbers written
as strings are the exception: the file stays usable and only the bad field reads as missing.
"""

from __future__ import annotations

import copy
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import orjson
import pytest
from structlog.testing import capture_logs

from kpi_publisher import fs, pipeline
from kpi_publisher.contract import OK, SOURCE_NAMES, SourceRead
from kpi_publisher.daemon import Daemon
from kpi_publisher.render import render
from kpi_publisher.sources import SourceReader

from .helpers import (
    NOW,
    Layout,
    assert_valid_outputs,
    build_bytes,
    daemon,
    good_docs,
    kpis_nav,
    read_outputs,
    wait_for,
)

CAP_BYTES = 16 * 1024 * 1024  # the default size cap (docs/CONTRACT_RULES.md, rule 6)
HUNDRED_MB = 100 * 1024 * 1024


def _truncated_in_place(path: Path) -> None:
    """An in-place writer caught half-way: the same inode, the first half of the bytes."""
    raw = path.read_bytes()
    with path.open("r+b") as fh:
        fh.truncate(len(raw) // 2)


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _whitespace(path: Path) -> None:
    path.write_bytes(b"  \n\t\n")


def _top_level_array(path: Path) -> None:
    path.write_bytes(orjson.dumps([orjson.loads(path.read_bytes())]))


def _top_level_string(path: Path) -> None:
    path.write_bytes(b'"nav_usd"')


def _top_level_number(path: Path) -> None:
    path.write_bytes(b"10234.56")


def _top_level_null(path: Path) -> None:
    path.write_bytes(b"null")


def _top_level_bool(path: Path) -> None:
    path.write_bytes(b"true")


def _not_utf8(path: Path) -> None:
    path.write_bytes(b'{"nav_usd": 1.0, "note": "caf\xe9 \xff\xfe"}')


def _bom(path: Path) -> None:
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())


def _hundred_mb(path: Path) -> None:
    """Sparse: 100 MB long, no blocks written, so creating it costs nothing."""
    path.unlink()
    with path.open("wb") as fh:
        fh.truncate(HUNDRED_MB)


def _directory(path: Path) -> None:
    path.unlink()
    path.mkdir()


def _fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


def _symlink_out(path: Path) -> None:
    """A symlink to a *valid* file outside the state dir: following it would change the NAV."""
    outside = path.parent.parent.parent / "elsewhere" / path.name
    outside.parent.mkdir(exist_ok=True)
    doc = orjson.loads(path.read_bytes())
    outside.write_bytes(orjson.dumps(_poison(doc)))
    path.unlink()
    path.symlink_to(outside)


def _poison(doc: Any) -> Any:
    """The same shape with every number replaced, so any leak of it is visible."""
    if isinstance(doc, dict):
        return {k: _poison(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_poison(v) for v in doc]
    if isinstance(doc, (int, float)) and not isinstance(doc, bool):
        return 666.0
    return doc


def _garbage(path: Path) -> None:
    path.write_bytes(b'{"nav_usd": 10234.56, "aum": {"futures": 1,,}}')


def _unterminated(path: Path) -> None:
    path.write_bytes(path.read_bytes() + b'{"extra":')


# name -> (corrupt the file, the reason the error must carry)
CORRUPTIONS: dict[str, tuple[Callable[[Path], None], str]] = {
    "truncated_in_place": (_truncated_in_place, "not valid JSON"),
    "empty": (_empty, "empty file"),
    "whitespace_only": (_whitespace, "empty file"),
    "garbage": (_garbage, "not valid JSON"),
    "trailing_garbage": (_unterminated, "not valid JSON"),
    "top_level_string": (_top_level_string, "top level is str"),
    "top_level_number": (_top_level_number, "top level is float"),
    "top_level_null": (_top_level_null, "top level is NoneType"),
    "top_level_bool": (_top_level_bool, "top level is bool"),
    "not_utf8": (_not_utf8, "not UTF-8"),
    "utf8_bom": (_bom, "byte-order mark"),
    "hundred_mb": (_hundred_mb, "over the 16777216-byte cap"),
    "directory": (_directory, "not a regular file"),
    "fifo": (_fifo, "not a regular file"),
    "symlink_out_of_state_dir": (_symlink_out, "symlink leaves"),
    # An array where an object belongs; for positions an array is legal (rule 6).
    "top_level_array": (_top_level_array, "top level is list"),
}
STATE_DIR_ONLY = {"symlink_out_of_state_dir"}  # the rule guards the state dir (rule 6)


def _cases() -> Iterable[Any]:
    for source in SOURCE_NAMES:
        for kind in CORRUPTIONS:
            if kind in STATE_DIR_ONLY and source in ("fx", "holdings"):
                continue
            if kind == "top_level_array" and source == "positions":
                continue
            yield pytest.param(source, kind, id=f"{source}-{kind}")


def _without_source(kpis: dict[str, Any], source: str) -> dict[str, Any]:
    out = copy.deepcopy(kpis)
    del out["sources"][source]
    return out


def _read_in_thread(fn: Callable[[], Any], timeout_s: float = 5.0) -> Any:
    """Run `fn` in a thread and fail (rather than hang the suite) if it blocks."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # re-raised in the test thread
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout_s)
    assert not thread.is_alive(), f"read blocked for more than {timeout_s} s"
    if "error" in box:
        raise box["error"]
    return box["value"]


@pytest.mark.parametrize(("source", "kind"), list(_cases()))
def test_bad_file_keeps_the_last_good_kpis(layout: Layout, source: str, kind: str) -> None:
    """The previous good KPIs stay in place; only the source's status and error change."""
    settings = layout.settings()
    reader = SourceReader(settings)
    good_kpis, good_positions = (orjson.loads(b) for b in build_bytes(reader, settings))
    assert good_kpis["sources"][source]["status"] == "ok"

    corrupt, reason = CORRUPTIONS[kind]
    corrupt(layout.path(source))
    kpis_raw, positions_raw = _read_in_thread(lambda: build_bytes(reader, settings))
    kpis, positions = assert_valid_outputs(kpis_raw, positions_raw)

    status = kpis["sources"][source]
    assert status["status"] == "invalid"
    assert status["error"].startswith(layout.path(source).name + ": ")
    assert reason in status["error"]
    assert _without_source(kpis, source) == _without_source(good_kpis, source)
    assert positions["positions"] == good_positions["positions"]
    assert positions["totals"] == good_positions["totals"]
    if source == "positions":
        assert positions["source"]["status"] == "invalid"
        assert positions["source"]["file"] == "positions_state.json"


def test_hundred_mb_file_is_refused_without_being_read(
    layout: Layout, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The size cap is checked on fstat: not one byte of a 100 MB file is read."""
    _hundred_mb(layout.path("nav_state"))
    read_sizes: list[int] = []
    real_read = os.read

    def counting_read(fd: int, n: int) -> bytes:
        read_sizes.append(n)
        return real_read(fd, n)

    monkeypatch.setattr(os, "read", counting_read)
    with pytest.raises(fs.ReadError, match="over the 16777216-byte cap"):
        fs.read_bytes(layout.path("nav_state"), max_bytes=CAP_BYTES, root=layout.state)
    assert read_sizes == []


def test_fifo_never_blocks_even_with_a_writer_attached(layout: Layout) -> None:
    """A FIFO with a live writer (the worst case: data would flow) is still refused at once."""
    path = layout.path("nav_state")
    _fifo(path)
    wfd = os.open(path, os.O_RDWR | os.O_NONBLOCK)  # holds the FIFO open like a writer would
    try:
        os.write(wfd, b'{"nav_usd": 666}')
        with pytest.raises(fs.ReadError, match="not a regular file"):
            _read_in_thread(lambda: fs.read_bytes(path, max_bytes=CAP_BYTES, root=layout.state))
    finally:
        os.close(wfd)


def test_symlink_inside_the_state_dir_is_followed(layout: Layout) -> None:
    """Only links *leaving* the state dir are refused: a link to a sibling file is fine."""
    nav_state = layout.path("nav_state")
    real = layout.state / "nav_state.real.json"
    nav_state.rename(real)
    nav_state.symlink_to(real.name)
    settings = layout.settings()
    kpis, _ = assert_valid_outputs(*build_bytes(SourceReader(settings), settings))
    assert kpis["sources"]["nav_state"]["status"] == "ok"
    assert kpis["nav"]["nav_usd"] == 10_234.56


def test_bad_file_with_no_last_good_content_falls_through(layout: Layout) -> None:
    """With nothing good read yet, the fields come from the next source in the chain."""
    _garbage(layout.path("nav_state"))
    settings = layout.settings()
    kpis, _ = assert_valid_outputs(*build_bytes(SourceReader(settings), settings))
    assert kpis["sources"]["nav_state"]["status"] == "invalid"
    assert kpis["nav"]["source"] == "nav"
    assert kpis["nav"]["nav_usd"] == 10_234.56  # nav.json's `nav`


def test_invalid_positions_state_without_last_good_falls_back_to_positions_json(
    layout: Layout,
) -> None:
    """positions_state.json broken from the start: positions.json is used (rule 7)."""
    layout.path("positions").write_bytes(b"{")
    (layout.state / "positions.json").write_bytes(
        orjson.dumps([{"symbol": "SOLUSDT", "qty": 2.0, "mark_price": 150.0}])
    )
    settings = layout.settings()
    _, positions = assert_valid_outputs(*build_bytes(SourceReader(settings), settings))
    assert [r["symbol"] for r in positions["positions"]] == ["SOLUSDT"]
    assert positions["source"]["file"] == "positions.json"


def test_recovery_after_a_bad_file_publishes_the_new_good_values(layout: Layout) -> None:
    """Once the file is good again its new content is used and the status is ok."""
    settings = layout.settings()
    reader = SourceReader(settings)
    build_bytes(reader, settings)
    _truncated_in_place(layout.path("nav_state"))
    build_bytes(reader, settings)
    layout.write("nav_state", good_docs(nav_usd=20_000.0)["nav_state"])
    kpis, _ = assert_valid_outputs(*build_bytes(reader, settings))
    assert kpis["sources"]["nav_state"] == {"status": "ok", "age_s": 10.0, "error": None}
    assert kpis["nav"]["nav_usd"] == 20_000.0


# -- the exception of rule 6: a bad value inside a good file ------------------------------------


def test_nan_and_infinity_tokens_read_as_missing_values(layout: Layout) -> None:
    """stdlib json's NaN/Infinity: the file stays ok; only the bad fields become missing."""
    raw = orjson.dumps(good_docs()["nav_state"]).decode()
    raw = raw.replace('"peak_equity":11000.0', '"peak_equity":NaN')
    raw = raw.replace('"drawdown_pct":6.95', '"drawdown_pct":-Infinity')
    raw = raw[:-1] + ',"unrealized_pnl":Infinity}'
    layout.path("nav_state").write_text(raw)
    settings = layout.settings()
    kpis, positions = assert_valid_outputs(*build_bytes(SourceReader(settings), settings))
    assert kpis["sources"]["nav_state"]["status"] == "ok"
    assert kpis["nav"]["nav_usd"] == 10_234.56
    assert kpis["nav"]["peak_usd"] is None
    # Infinity is missing, so the contract's fallback (the positions' summed PnL) stands in.
    assert kpis["nav"]["unrealized_pnl_usd"] == positions["totals"]["pnl_usd"] == 15.0


def test_an_integer_too_long_to_read_is_a_missing_value_not_a_broken_file(
    layout: Layout,
) -> None:
    """An integer literal past Python's int() digit limit (4,300 digits) is valid JSON: the
    file stays ok, that field is missing (as any number beyond the float range is), and a
    shorter huge integer elsewhere reads the same way."""
    raw = orjson.dumps(good_docs()["nav_state"]).decode()
    raw = raw.replace('"peak_equity":11000.0', '"peak_equity":' + "9" * 4301)
    raw = raw[:-1] + ',"junk":' + "1" * 5000 + ',"big":' + "7" * 400 + "}"
    layout.path("nav_state").write_text(raw)
    settings = layout.settings()
    kpis, _ = assert_valid_outputs(*build_bytes(SourceReader(settings), settings))
    assert kpis["sources"]["nav_state"]["status"] == "ok"
    assert kpis["sources"]["nav_state"]["error"] is None
    assert kpis["nav"]["nav_usd"] == 10_234.56
    assert kpis["nav"]["peak_usd"] is None


def test_numbers_as_strings_are_numbers(layout: Layout) -> None:
    """Numeric strings such as "1,234.5" and "11000" are numbers (rule 1)."""
    doc = good_docs()["nav_state"]
    doc.update(nav_usd="10,234.56", peak_equity="11000", unrealized_pnl=" -12.5 ")
    layout.write("nav_state", doc)
    settings = layout.settings()
    kpis, _ = assert_valid_outputs(*build_bytes(SourceReader(settings), settings))
    assert kpis["sources"]["nav_state"]["status"] == "ok"
    assert kpis["nav"]["nav_usd"] == 10_234.56
    assert kpis["nav"]["peak_usd"] == 11_000.0
    assert kpis["nav"]["unrealized_pnl_usd"] == -12.5


# -- wrong types below the top level: the field is missing, the rest is untouched ---------------

WRONG_VALUES: tuple[Any, ...] = ([], {}, [1, 2], {"x": 1}, "abc", True, None, "")
# Blocks of kpis_v7 that a source does not feed: they must not move when it goes bad.
# Positions feed nav (the unrealized-PnL fallback) and risk (exposure as a share of NAV).
UNRELATED: dict[str, tuple[str, ...]] = {
    "nav_state": ("router", "fees"),
    "nav": ("router", "fees", "risk"),
    "risk": ("nav",),
    "router": ("nav", "aum", "risk", "fees"),
    "positions": ("aum", "router", "fees"),
    "risk_advanced": ("nav", "aum", "router", "fees"),
    "fx": ("risk", "router", "fees"),
    "holdings": ("nav", "risk", "router", "fees"),
}


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> Iterable[tuple[Any, ...]]:
    """Every key/index path in a document (branches and leaves)."""
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield (*prefix, key)
            yield from _paths(value, (*prefix, key))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            yield (*prefix, i)
            yield from _paths(value, (*prefix, i))


def _replaced(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    out = copy.deepcopy(doc)
    node = out
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    return out


@pytest.mark.parametrize("source", SOURCE_NAMES)
def test_wrong_types_at_every_level_never_break_the_build(layout: Layout, source: str) -> None:
    """Every key of every source, swapped for every wrong type: schema-valid output, the file
    still `ok`, and the blocks this source does not feed are exactly as before."""
    settings = layout.settings()
    baseline, _ = assert_valid_outputs(*build_bytes(SourceReader(settings), settings))
    doc = good_docs()[source]
    paths = list(_paths(doc))
    assert len(paths) >= 3
    good_sources = SourceReader(settings).read_all()
    checked = 0
    for path in paths:
        for value in WRONG_VALUES:
            broken = _replaced(doc, path, value)
            sources = {
                **good_sources,
                source: SourceRead(source, OK, broken, path=layout.path(source)),
            }
            out = pipeline.build(sources, NOW, settings)
            kpis, _ = assert_valid_outputs(render(out.kpis), render(out.positions))
            assert kpis["sources"][source]["status"] in ("ok", "stale"), (path, value)
            for block in UNRELATED[source]:
                assert kpis[block] == baseline[block], (source, path, value, block)
            checked += 1
    assert checked == len(paths) * len(WRONG_VALUES)


# -- a real in-place writer racing the reader ---------------------------------------------------


def test_in_place_writer_racing_the_reader_never_leaks_a_torn_document(layout: Layout) -> None:
    """An executor rewriting nav_state.json in place (truncate, then three slow writes) while
    the reader polls: every value read is one of the complete documents; torn reads are seen
    as invalid and the last good content stands in."""
    path = layout.path("nav_state")
    docs = [orjson.dumps(good_docs(nav_usd=v)["nav_state"]) for v in (10_234.56, 20_000.0)]
    stop = threading.Event()

    def writer() -> None:
        i = 0
        while not stop.is_set():
            raw = docs[i % 2]
            third = len(raw) // 3
            with path.open("wb") as fh:  # O_TRUNC: the torn moment
                for part in (raw[:third], raw[third : 2 * third], raw[2 * third :]):
                    fh.write(part)
                    fh.flush()
                    time.sleep(0.0005)
            i += 1

    settings = layout.settings()
    reader = SourceReader(settings)
    assert reader.read("nav_state").status == "ok"
    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    seen = {"ok": 0, "invalid": 0}
    values = set()
    deadline = time.monotonic() + 1.5
    try:
        while time.monotonic() < deadline:
            read = reader.read("nav_state")
            seen[read.status] += 1
            assert read.data is not None
            values.add(read.data["nav_usd"])
    finally:
        stop.set()
        thread.join(5)
    assert values <= {10_234.56, 20_000.0}
    assert seen["invalid"] > 0, "the race never produced a torn read: the test proved nothing"
    assert seen["ok"] > 0


# -- the daemon's one clear log line ------------------------------------------------------------


class _NoBatches:
    """A BatchSource that never reports anything: these tests drive `run_pass` directly."""

    debounce_s = 0.05
    rescan_s = 60.0

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def next_batch(self, timeout_s: float) -> frozenset[Path]:
        return frozenset()

    def interrupt(self) -> None: ...

    def set_paths(self, paths: Iterable[Path]) -> None: ...


@pytest.mark.parametrize("kind", list(CORRUPTIONS))
def test_daemon_logs_one_clear_line_per_bad_file(layout: Layout, kind: str) -> None:
    """One `source_invalid` event naming the file and the reason, not one per retry; the
    published KPIs keep the good NAV."""
    d = Daemon(layout.settings(), batches=_NoBatches(), clock=lambda: NOW)
    d._prepare_out_dir()
    assert d.run_pass("start").published
    corrupt, reason = CORRUPTIONS[kind]
    corrupt(layout.path("nav_state"))
    with capture_logs() as events:
        for pass_reason in ("change", "retry", "retry", "heartbeat"):
            d.run_pass(pass_reason)
    invalid = [e for e in events if e["event"] == "source_invalid"]
    assert len(invalid) == 1, events
    assert invalid[0]["log_level"] == "warning"
    assert invalid[0]["source"] == "nav_state"
    assert invalid[0]["file"] == str(layout.path("nav_state"))
    assert reason in invalid[0]["reason"]
    assert invalid[0]["last_good"] is True
    kpis, _ = read_outputs(layout.out)
    assert kpis["nav"]["nav_usd"] == 10_234.56
    assert kpis["sources"]["nav_state"]["status"] == "invalid"


@pytest.mark.parametrize("kind", ["fifo", "hundred_mb", "symlink_out_of_state_dir", "not_utf8"])
@pytest.mark.timeout(30)
def test_running_daemon_survives_a_bad_file(layout: Layout, kind: str) -> None:
    """The real `hedge-kpi run`: the bad file is logged once, the good NAV stays published,
    heartbeats go on (nothing blocked), and SIGTERM still ends it cleanly."""
    with daemon(layout, "--heartbeat-s", "0.2", "--retry-ms", "20") as proc:
        proc.wait_event("publish", 10)
        corrupt, reason = CORRUPTIONS[kind]
        corrupt(layout.path("nav_state"))
        event = proc.wait_event("source_invalid", 10)
        assert event["file"] == str(layout.path("nav_state"))
        assert reason in event["reason"]
        mark = len(proc.events)
        for _ in range(3):  # three more heartbeats after the bad file: the loop is not stuck
            mark = proc.events.index(proc.wait_event("publish", 5, after=mark)) + 1
        kpis, _ = read_outputs(layout.out)
        assert kpis["nav"]["nav_usd"] == 10_234.56
        assert kpis["sources"]["nav_state"]["status"] == "invalid"
        assert len(proc.named("source_invalid")) == 1
        assert proc.stop(signal.SIGTERM) == 0
    assert layout.temps() == []
    assert wait_for(lambda: kpis_nav(layout.out), 1) == 10_234.56


# -- strings that are not valid Unicode: read as missing, named, never a stopped publisher ------


def _with_lone_surrogates(doc: dict[str, Any]) -> bytes:
    """The document as a Python executor with ensure_ascii writes it, plus lone surrogate
    escapes in a value, in a key and inside a list (orjson refuses them, the stdlib accepts)."""
    raw = orjson.dumps(doc).decode()
    return (
        raw[:-1] + r',"dd_state":"\udcff","\ud800key":1,"symbols":[{"symbol":"\udfff"}]}'
    ).encode()


def test_lone_surrogates_read_as_missing_and_are_named(layout: Layout) -> None:
    """A value that is not valid Unicode reads as missing, an entry whose key is one is
    dropped; the file stays ok, the error names each key path, the outputs render."""
    layout.path("risk").write_bytes(_with_lone_surrogates(good_docs()["risk"]))
    settings = layout.settings()
    read = SourceReader(settings).read("risk")
    assert read.status == OK
    assert read.dropped == ("dd_state", r"\ud800key", "symbols[0].symbol")
    assert read.dropped_count == 3
    assert read.data["dd_state"] is None and r"\ud800key" not in read.data
    kpis, _ = assert_valid_outputs(*build_bytes(SourceReader(settings), settings))
    risk = kpis["sources"]["risk"]
    assert risk["status"] == "ok"
    assert risk["error"] == (
        r"3 values not valid Unicode, read as missing: dd_state, \ud800key, symbols[0].symbol"
    )
    assert kpis["risk"]["dd_state"] is None
    assert kpis["risk"]["drawdown_pct"] == 1.14  # the rest of the file is untouched


def test_invalid_utf8_bytes_make_the_file_invalid(layout: Layout) -> None:
    """Raw bytes that are not UTF-8 (an encoded surrogate, a stray 0xff) are rule 6: invalid."""
    settings = layout.settings()
    for bad in (b"\xed\xb3\xbf", b"\xff", b"\xc3"):
        layout.path("risk").write_bytes(b'{"dd_state":"' + bad + b'","ts":1}')
        read = SourceReader(settings).read("risk")
        assert read.status == "invalid" and read.error is not None, bad
        assert "not UTF-8" in read.error, bad


def test_daemon_logs_the_dropped_values_once_and_keeps_publishing(layout: Layout) -> None:
    """`source_value_dropped` names the source, the file and the key paths, once per change;
    every pass publishes."""
    d = Daemon(layout.settings(), batches=_NoBatches(), clock=lambda: NOW)
    d._prepare_out_dir()
    assert d.run_pass("start").published
    layout.path("risk").write_bytes(_with_lone_surrogates(good_docs()["risk"]))
    with capture_logs() as events:
        for pass_reason in ("change", "heartbeat", "heartbeat"):
            assert d.run_pass(pass_reason).published
    dropped = [e for e in events if e["event"] == "source_value_dropped"]
    assert len(dropped) == 1, events
    assert dropped[0]["source"] == "risk"
    assert dropped[0]["file"] == str(layout.path("risk"))
    assert dropped[0]["keys"] == ["dd_state", r"\ud800key", "symbols[0].symbol"]
    assert not [e for e in events if e["event"] in ("publish_failed", "build_failed")]
    kpis, _ = read_outputs(layout.out)
    assert kpis["sources"]["risk"]["status"] == "ok"


def test_render_never_raises_on_a_string_from_an_in_process_caller() -> None:
    """Lone surrogates in keys and values, huge ints, NaN: rendered, valid UTF-8, U+FFFD."""
    # an int key too: what an untyped caller could pass, beyond render's Mapping[str, Any]
    doc: dict[Any, Any] = {
        "a": "x\udcffy",
        "\ud800": ["\ud83d\ude00", float("nan")],
        3: 10**30,
        "b": 10**400,
    }
    out = render(doc)
    assert orjson.loads(out) == {
        "a": "x\ufffdy",
        "\ufffd": ["\U0001f600", None],
        "3": 1e30,
        "b": None,
    }
    assert render(doc) == out


# -- nesting: any depth is invalid past the documented limit, on every decode path ---------------

MAX_DEPTH = 64


def _nested(depth: int, *, objects: bool, nan: bool, pad_to: int = 0) -> bytes:
    """A document nested `depth` containers deep (the top level is 1), optionally with a NaN
    token (the stdlib path) and whitespace padding past the size where orjson's limit is used."""
    leaf = b"NaN" if nan else b"1"
    if objects:
        body = b'{"k":' * depth + leaf + b"}" * depth
    else:
        body = b'{"k":' + b"[" * (depth - 1) + leaf + b"]" * (depth - 1) + b"}"
    return body + b" " * max(0, pad_to - len(body))


@pytest.mark.parametrize("pad_to", [0, 100_000], ids=["small", "large"])
@pytest.mark.parametrize("nan", [False, True], ids=["orjson", "stdlib"])
@pytest.mark.parametrize("objects", [False, True], ids=["arrays", "objects"])
def test_nesting_limit_is_the_same_on_every_decode_path(
    objects: bool, nan: bool, pad_to: int
) -> None:
    """64 levels decode; 65 and any deeper are invalid with a clear reason, never an
    exception, on the orjson path (small and large files) and the stdlib (NaN token) path."""
    from kpi_publisher.sources import decode

    assert isinstance(decode(_nested(MAX_DEPTH, objects=objects, nan=nan, pad_to=pad_to)), dict)
    for depth in (MAX_DEPTH + 1, 100, 300, 1000, 1025, 5000, 100_000):
        raw = _nested(depth, objects=objects, nan=nan, pad_to=pad_to)
        with pytest.raises(fs.ReadError, match=f"nested deeper than {MAX_DEPTH} levels"):
            decode(raw)


def test_bytes_that_close_more_than_they_open_are_not_valid_json() -> None:
    """A large file whose brackets only balance with more around it is still not JSON."""
    from kpi_publisher.sources import decode

    for body in (b"{}],[{}", b"1],[2", b"],[", b'{"a":1}]]]]', b'[[[[{"a":1}'):
        with pytest.raises(fs.ReadError, match="not valid JSON"):
            decode(body + b" " * 100_000, allow_list=True)


@pytest.mark.parametrize("depth", [100, 300, 1000, 5000, 100_000])
def test_deep_file_is_invalid_and_publishing_goes_on(layout: Layout, depth: int) -> None:
    """Through the reader and the pipeline: the deep source is invalid and keeps its last good
    content, every other KPI is unchanged, the outputs render and validate."""
    settings = layout.settings()
    reader = SourceReader(settings)
    good, _ = assert_valid_outputs(*build_bytes(reader, settings))
    layout.path("risk").write_bytes(b'{"ts":1,"x":' + b"[" * depth + b"NaN" + b"]" * depth + b"}")
    kpis, _ = assert_valid_outputs(*build_bytes(reader, settings))
    status = kpis["sources"].pop("risk")
    assert status["status"] == "invalid"
    assert status["error"] == f"risk_snapshot.json: nested deeper than {MAX_DEPTH} levels"
    good["sources"].pop("risk")
    assert kpis == good
