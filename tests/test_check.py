"""`hedge-kpi check`: schema validation and freshness of the published files, as exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import orjson
import pytest
from structlog.testing import capture_logs

from kpi_publisher import check as check_module
from kpi_publisher import cli, fs, logs, publish
from kpi_publisher.check import PAIR
from kpi_publisher.contract import KPIS_FILE, OUTPUT_FILES, POSITIONS_FILE
from kpi_publisher.parse import iso_utc
from kpi_publisher.pipeline import Outputs

pytestmark = pytest.mark.timeout(60)

NOW = 1_764_000_000.0


@pytest.fixture(autouse=True)
def captured_logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """The command's structlog events (its own logs.configure would replace the capture)."""
    monkeypatch.setattr(logs, "configure", lambda *args, **kwargs: None)
    with capture_logs() as events:
        yield cast(list[dict[str, Any]], events)  # structlog types them as MutableMapping


@pytest.fixture
def published(tmp_path: Path) -> dict[str, Path]:
    """A state dir with a NAV file, published once at NOW into out/."""
    state = tmp_path / "logs" / "state"
    out = tmp_path / "out"
    state.mkdir(parents=True)
    (state / "nav_state.json").write_bytes(orjson.dumps({"nav_usd": 2000.0, "updated_at": NOW}))
    code = cli.main(
        ["once", "--state-dir", str(state), "--out-dir", str(out), "--now", str(NOW), "--no-fsync"]
    )
    assert code == 0
    return {"state": state, "out": out}


def check(dirs: dict[str, Path], *extra: str) -> int:
    return cli.main(
        ["check", "--state-dir", str(dirs["state"]), "--out-dir", str(dirs["out"]), *extra]
    )


def by_file(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {Path(e["file"]).name: e for e in events if e["event"] == "check_file"}


def summary(events: list[dict[str, Any]]) -> dict[str, Any]:
    return next(e for e in events if e["event"] == "check")


def test_fresh_valid_files_exit_0(
    published: dict[str, Path], captured_logs: list[dict[str, Any]]
) -> None:
    assert check(published, "--now", str(NOW + 2.5)) == 0
    files = by_file(captured_logs)
    assert files["kpis_v7.json"]["status"] == "ok"
    assert files["kpis_v7.json"]["age_s"] == 2.5
    assert files["positions_v7.json"]["status"] == "ok"
    assert summary(captured_logs)["status"] == "ok"


def test_sources_that_are_not_ok_are_reported_without_failing_the_check(
    published: dict[str, Path], captured_logs: list[dict[str, Any]]
) -> None:
    assert check(published, "--now", str(NOW + 1)) == 0
    not_ok = by_file(captured_logs)["kpis_v7.json"]["sources_not_ok"]
    assert not_ok["risk"] == "missing"
    assert "nav_state" not in not_ok


def test_older_than_three_heartbeats_is_stale_exit_5(
    published: dict[str, Path], captured_logs: list[dict[str, Any]]
) -> None:
    """The default limit is 3 x heartbeat_s (15 s): the dashboard's "publisher down" rule."""
    assert check(published, "--now", str(NOW + 16)) == 5
    kpis = by_file(captured_logs)["kpis_v7.json"]
    assert kpis["status"] == "stale"
    assert kpis["reason"] == "16.0 s old, limit 15.0 s"
    assert kpis["log_level"] == "error"
    assert summary(captured_logs)["status"] == "stale"
    assert summary(captured_logs)["exit_code"] == 5


def test_max_age_option_moves_the_limit(published: dict[str, Path]) -> None:
    assert check(published, "--now", str(NOW + 16), "--max-age-s", "60") == 0


def test_heartbeat_from_the_config_moves_the_default_limit(
    published: dict[str, Path], tmp_path: Path
) -> None:
    config = tmp_path / "kpi.toml"
    config.write_text("heartbeat_s = 10\n")
    assert check(published, "--now", str(NOW + 16), "--config", str(config)) == 0
    assert check(published, "--now", str(NOW + 31), "--config", str(config)) == 5


def test_missing_file_is_invalid_exit_6(
    published: dict[str, Path], captured_logs: list[dict[str, Any]]
) -> None:
    (published["out"] / "positions_v7.json").unlink()
    assert check(published, "--now", str(NOW)) == 6
    assert by_file(captured_logs)["positions_v7.json"]["reason"] == "missing"


def test_truncated_file_is_invalid_exit_6(
    published: dict[str, Path], captured_logs: list[dict[str, Any]]
) -> None:
    kpis = published["out"] / "kpis_v7.json"
    kpis.write_bytes(kpis.read_bytes()[:40])
    assert check(published, "--now", str(NOW)) == 6
    assert by_file(captured_logs)["kpis_v7.json"]["reason"].startswith("not valid JSON")


def test_schema_violation_names_the_field_exit_6(
    published: dict[str, Path], captured_logs: list[dict[str, Any]]
) -> None:
    """A money field published as a string breaks the contract: check says where."""
    kpis = published["out"] / "kpis_v7.json"
    doc = orjson.loads(kpis.read_bytes())
    doc["nav"]["nav_usd"] = "2,000.00"
    kpis.write_bytes(orjson.dumps(doc))
    assert check(published, "--now", str(NOW)) == 6
    reason = by_file(captured_logs)["kpis_v7.json"]["reason"]
    assert reason.startswith("schema: nav/nav_usd:")


def test_invalid_wins_over_stale(published: dict[str, Path]) -> None:
    (published["out"] / "positions_v7.json").write_text("{}")
    assert check(published, "--now", str(NOW + 100)) == 6


def test_exit_code_reaches_the_shell(published: dict[str, Path]) -> None:
    """Monitoring and supervisor event listeners see the code from the real command."""
    args = ["--state-dir", str(published["state"]), "--out-dir", str(published["out"])]
    stale = subprocess.run(
        [sys.executable, "-m", "kpi_publisher", "check", *args, "--now", str(NOW + 100)],
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert stale.returncode == 5
    lines = [orjson.loads(line) for line in stale.stdout.splitlines()]
    assert lines[-1]["event"] == "check" and lines[-1]["exit_code"] == 5


def run_check_process(dirs: dict[str, Path], *extra: str) -> subprocess.CompletedProcess[bytes]:
    """`python -m kpi_publisher check` as monitoring runs it, with a hard timeout."""
    args = ["--state-dir", str(dirs["state"]), "--out-dir", str(dirs["out"]), *extra]
    return subprocess.run(
        [sys.executable, "-m", "kpi_publisher", "check", "--log-format", "json", *args],
        capture_output=True,
        timeout=30,
        check=False,
    )


def process_files(result: subprocess.CompletedProcess[bytes]) -> dict[str, dict[str, Any]]:
    return by_file([orjson.loads(line) for line in result.stdout.splitlines()])


FX_CACHE = Path(__file__).parent / "fixtures/golden/v7_1_flat/logs/cache/coingecko_cache.json"


@pytest.mark.parametrize("with_fx", [False, True])
def test_every_state_dir_source_missing_fails_the_check_exit_6(
    tmp_path: Path, captured_logs: list[dict[str, Any]], with_fx: bool
) -> None:
    """A publisher on an empty (mistyped) state dir publishes valid all-null files: not ok,
    even when the FX cache, found by its own path, is read fine."""
    empty = tmp_path / "logs" / "stat"
    empty.mkdir(parents=True)
    dirs = {"state": empty, "out": tmp_path / "out"}
    once = ["once", "--state-dir", str(empty), "--out-dir", str(dirs["out"]), "--now", str(NOW)]
    fx = ["--fx-path", str(FX_CACHE)] if with_fx else []
    assert cli.main([*once, *fx, "--no-fsync"]) == 0
    assert check(dirs, "--now", str(NOW + 1)) == 6
    kpis = by_file(captured_logs)["kpis_v7.json"]
    assert kpis["status"] == "invalid"
    assert kpis["reason"].startswith("every state-dir source is missing")
    assert (kpis["sources_not_ok"].get("fx") == "missing") is not with_fx  # found: read
    assert kpis["sources_not_ok"]["nav_state"] == "missing"
    assert summary(captured_logs)["exit_code"] == 6
    # The real command says the same to the shell, and "invalid" still beats "stale".
    result = run_check_process(dirs, "--now", str(NOW + 100))
    assert result.returncode == 6
    reason = process_files(result)["kpis_v7.json"]["reason"]
    assert reason.startswith("every state-dir source is missing")


def test_one_source_present_is_not_all_missing(
    published: dict[str, Path], captured_logs: list[dict[str, Any]]
) -> None:
    assert check(published, "--now", str(NOW + 1)) == 0
    assert by_file(captured_logs)["kpis_v7.json"]["sources_not_ok"]["nav"] == "missing"


@pytest.mark.parametrize(
    "fifos",
    [("kpis_v7.json",), ("positions_v7.json",), ("kpis_v7.json", "positions_v7.json")],
)
def test_fifo_at_an_output_path_does_not_hang_check(
    published: dict[str, Path], fifos: tuple[str, ...]
) -> None:
    """A FIFO (no writer) where a published file belongs: exit 6 at once, never a hang."""
    for name in fifos:
        (published["out"] / name).unlink()
        os.mkfifo(published["out"] / name)
    started = time.monotonic()
    result = run_check_process(published, "--now", str(NOW))
    assert time.monotonic() - started < 20
    assert result.returncode == 6
    files = process_files(result)
    for name in fifos:
        assert files[name]["status"] == "invalid"
        assert files[name]["reason"] == "cannot read: not a regular file"


def test_directory_at_an_output_path_is_invalid(
    published: dict[str, Path], captured_logs: list[dict[str, Any]]
) -> None:
    (published["out"] / "positions_v7.json").unlink()
    (published["out"] / "positions_v7.json").mkdir()
    assert check(published, "--now", str(NOW)) == 6
    assert (
        by_file(captured_logs)["positions_v7.json"]["reason"] == "cannot read: not a regular file"
    )


@pytest.mark.parametrize("levels", [65, 1000])
@pytest.mark.parametrize("name", ["kpis_v7.json", "positions_v7.json"])
def test_a_deeply_nested_output_fails_its_schema_exit_6(
    published: dict[str, Path], captured_logs: list[dict[str, Any]], name: str, levels: int
) -> None:
    """A value nested far deeper than any published file (orjson still parses 1,000 levels)
    fails the check with the reason, exit 6; it used to end `check` with a RecursionError
    from the schema validator (exit 1)."""
    path = published["out"] / name
    doc = orjson.loads(path.read_bytes())
    key = "symbols" if name == KPIS_FILE else "source"
    doc[key] = "@DEEP@"
    path.write_bytes(orjson.dumps(doc).replace(b'"@DEEP@"', b"[" * levels + b"]" * levels))
    assert check(published, "--now", str(NOW)) == 6
    assert "nested deeper than 64 levels" in by_file(captured_logs)[name]["reason"]


def test_oversized_output_is_refused_without_reading_it(
    published: dict[str, Path], tmp_path: Path, captured_logs: list[dict[str, Any]]
) -> None:
    """Over the configured byte cap (the dashboard's too): invalid, not read into memory."""
    config = tmp_path / "kpi.toml"
    config.write_text("max_input_bytes = 4096\n")
    with (published["out"] / "kpis_v7.json").open("r+b") as handle:
        handle.truncate(4097)
    assert check(published, "--now", str(NOW), "--config", str(config)) == 6
    reason = by_file(captured_logs)["kpis_v7.json"]["reason"]
    assert reason == "cannot read: file is 4097 bytes, over the 4096-byte cap"


@pytest.mark.parametrize(("ahead_s", "code"), [(0.0, 0), (30.0, 0), (60.0, 0), (61.0, 5)])
def test_generated_at_ahead_of_the_clock_is_fresh_only_within_the_skew(
    published: dict[str, Path], ahead_s: float, code: int
) -> None:
    """Up to 60 s ahead is clock skew (age 0); further ahead is no valid timestamp: stale."""
    assert check(published, "--now", str(NOW - ahead_s)) == code


def test_generated_at_an_hour_ahead_is_stale_and_says_why(
    published: dict[str, Path], captured_logs: list[dict[str, Any]]
) -> None:
    assert check(published, "--now", str(NOW - 3600), "--max-age-s", "1e9") == 5
    kpis = by_file(captured_logs)["kpis_v7.json"]
    assert kpis["status"] == "stale"
    assert kpis["age_s"] is None
    assert kpis["reason"] == "generated_at 3600.0 s ahead of the clock (skew limit 60 s)"


def test_max_age_zero_is_honoured_not_replaced_by_the_default(
    published: dict[str, Path], captured_logs: list[dict[str, Any]]
) -> None:
    """0 means "stamped now": half a second old is stale (the default would have said ok)."""
    assert check(published, "--now", str(NOW), "--max-age-s", "0") == 0
    assert check(published, "--now", str(NOW + 0.5), "--max-age-s", "0") == 5
    stale = [e for e in captured_logs if e["event"] == "check_file" and e["status"] == "stale"]
    assert stale[0]["reason"] == "0.5 s old, limit 0.0 s"
    assert summary(captured_logs)["max_age_s"] == 0.0


@pytest.mark.parametrize(
    "args",
    [
        ("--max-age-s", "-1"),
        ("--max-age-s", "nan"),
        ("--max-age-s", "inf"),
        ("--max-age-s", "-inf"),
        ("--max-age-s", "soon"),
        ("--now", "nan"),
        ("--now", "inf"),
    ],
)
def test_unusable_numbers_are_usage_errors_exit_2(
    published: dict[str, Path], args: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    assert check(published, *args) == 2
    assert f"argument {args[0]}" in capsys.readouterr().err


def test_negative_max_age_exit_2_reaches_the_shell(published: dict[str, Path]) -> None:
    result = run_check_process(published, "--max-age-s", "-5")
    assert result.returncode == 2
    assert b"must be >= 0" in result.stderr
    assert b"Traceback" not in result.stderr


def _republish(out: Path, generated_at: float, files: tuple[str, ...] = OUTPUT_FILES) -> None:
    """Publish the documents in `out` again, stamped `generated_at`, with real renames."""
    docs = {name: orjson.loads((out / name).read_bytes()) for name in OUTPUT_FILES}
    for doc in docs.values():
        doc.update(generated_at=generated_at, updated_at=iso_utc(generated_at))
    docs[KPIS_FILE]["ts"] = generated_at
    if files == OUTPUT_FILES:
        publish.publish(Outputs(docs[KPIS_FILE], docs[POSITIONS_FILE]), out, fsync=False)
    else:
        for name in files:
            fs.write_atomic(out / name, orjson.dumps(docs[name]), fsync=False)


def test_a_publish_between_the_two_reads_is_read_again(
    published: dict[str, Path],
    captured_logs: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A publish that lands between the reads of the two files makes them differ; `check`
    reads both again and judges the one publish it then sees."""
    real_read = fs.read_bytes
    raced: list[Path] = []

    def read_then_publish(path: Path, **kwargs: Any) -> Any:
        got = real_read(path, **kwargs)
        if not raced:
            raced.append(path)
            _republish(published["out"], NOW + 1)
        return got

    monkeypatch.setattr(fs, "read_bytes", read_then_publish)
    assert check(published, "--now", str(NOW + 2)) == 0
    assert raced
    assert [e for e in captured_logs if e["event"] == "check_pair"] == []
    assert {name: e["age_s"] for name, e in by_file(captured_logs).items()} == {
        KPIS_FILE: 1.0,
        POSITIONS_FILE: 1.0,
    }


def test_files_of_two_publishes_are_invalid_exit_6(
    published: dict[str, Path], captured_logs: list[dict[str, Any]]
) -> None:
    """Still apart when read again (a publisher stopped between its renames, another writer),
    the two files are no snapshot: exit 6, and the reason names both stamps."""
    _republish(published["out"], NOW + 1, files=(POSITIONS_FILE,))
    assert check(published, "--now", str(NOW + 2)) == 6
    (pair,) = [e for e in captured_logs if e["event"] == "check_pair"]
    assert pair["status"] == "invalid"
    assert f"generated_at {NOW!r} and {NOW + 1!r}" in pair["reason"]
    assert summary(captured_logs)["status"] == "invalid"


def test_a_writer_racing_the_reader_never_yields_a_mixed_pair(published: dict[str, Path]) -> None:
    """Against a real process publishing back to back, every verdict is of one publish (both
    files stamped alike) or says that the files are of two publishes; never a silent mix."""
    out = published["out"]
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, pathlib, tests.test_check as t\n"
            "out = pathlib.Path(sys.argv[1])\n"
            "for i in range(1, 10**9): t._republish(out, t.NOW + i)\n",
            str(out),
        ],
        cwd=Path(__file__).resolve().parent.parent,
    )
    try:
        while orjson.loads((out / KPIS_FILE).read_bytes())["generated_at"] == NOW:
            assert writer.poll() is None
        seen: set[float | None] = set()
        for _ in range(300):
            results = {
                r.file: r for r in check_module.check_outputs(out, NOW, 1e9, max_bytes=10**7)
            }
            if PAIR not in results:
                assert results[KPIS_FILE].generated_at == results[POSITIONS_FILE].generated_at
            seen.add(results[KPIS_FILE].generated_at)
        assert writer.poll() is None
        assert len(seen) > 1  # the writer published while the reader read
    finally:
        writer.kill()
        writer.wait()
