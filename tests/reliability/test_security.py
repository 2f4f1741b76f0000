"""Safe defaults: no code execution from input, outputs 0644 through exclusive temp files, the
dashboard on loopback taking no file path from the browser, and the nginx front (TLS + basic
auth) in deploy/nginx.
"""

from __future__ import annotations

import ast
import os
import socket
import stat
import subprocess
import time
import urllib.request
from collections.abc import Iterable, Iterator
from pathlib import Path

import orjson
import pytest

from dashboard.serve import streamlit_command
from kpi_publisher import fs, publish
from kpi_publisher.cli import build_parser
from kpi_publisher.pipeline import Outputs
from kpi_publisher.sources import SourceReader

from .helpers import HEDGE_KPI, REPO, Layout, build_bytes, good_docs, wait_for

CODE_DIRS = ("kpi_publisher", "execution", "dashboard")
BANNED_CALLS = {"eval", "exec", "compile", "__import__", "input"}
BANNED_MODULES = {"pickle", "cPickle", "_pickle", "marshal", "shelve", "dill", "jsonpickle", "yaml"}
BANNED_ATTR_CALLS = {("os", "system"), ("os", "popen"), ("subprocess", "getoutput")}
# Streamlit widgets through which a browser could hand the app a path, a file or free text.
BROWSER_INPUTS = {
    "text_input",
    "text_area",
    "file_uploader",
    "chat_input",
    "camera_input",
    "query_params",
    "experimental_get_query_params",
    "experimental_set_query_params",
}


def _violations(tree: ast.AST) -> Iterator[str]:
    """Dangerous constructs in one module: eval/exec, unpickling modules, shell=True, ..."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in BANNED_MODULES:
                    yield f"line {node.lineno}: import {alias.name}"
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] in BANNED_MODULES:
                yield f"line {node.lineno}: from {node.module} import ..."
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id in BANNED_CALLS:
                yield f"line {node.lineno}: {func.id}()"
            if (
                isinstance(func, ast.Attribute)
                and isinstance(func.value, ast.Name)
                and (func.value.id, func.attr) in BANNED_ATTR_CALLS
            ):
                yield f"line {node.lineno}: {func.value.id}.{func.attr}()"
            for kw in node.keywords:
                if kw.arg == "shell" and not (
                    isinstance(kw.value, ast.Constant) and kw.value.value is False
                ):
                    yield f"line {node.lineno}: shell=True"
                if kw.arg == "unsafe_allow_html" and not (
                    isinstance(kw.value, ast.Constant) and kw.value.value is False
                ):
                    yield f"line {node.lineno}: unsafe_allow_html"


def _browser_inputs(tree: ast.AST) -> Iterator[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in BROWSER_INPUTS:
            yield f"line {node.lineno}: .{node.attr}"


def _sources(dirs: Iterable[str]) -> list[Path]:
    files = [p for d in dirs for p in sorted((REPO / d).rglob("*.py"))]
    assert files, f"no Python files under {dirs}"
    return files


def test_the_scanner_catches_every_banned_construct() -> None:
    """The checks below can fail: each banned construct in a snippet is reported."""
    snippet = """
import pickle
from yaml import load
import marshal
eval("1")
exec("x = 1")
os.system("ls")
subprocess.run("ls", shell=True)
st.markdown(text, unsafe_allow_html=True)
value = st.text_input("path")
upload = st.file_uploader("file")
"""
    tree = ast.parse(snippet)
    assert len(list(_violations(tree))) == 8
    assert len(list(_browser_inputs(tree))) == 2


@pytest.mark.parametrize("path", _sources(CODE_DIRS), ids=lambda p: str(p.relative_to(REPO)))
def test_no_eval_pickle_yaml_or_shell_in_the_code(path: Path) -> None:
    """No input can become code: no eval/exec, no pickle/marshal/yaml, no shell, no raw HTML."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    assert list(_violations(tree)) == []


@pytest.mark.parametrize("path", _sources(["dashboard"]), ids=lambda p: p.name)
def test_dashboard_takes_no_text_file_or_query_input_from_the_browser(path: Path) -> None:
    """The browser can click and select, never hand the app a path, a file or a query string."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    assert list(_browser_inputs(tree)) == []


def test_dashboard_reads_only_through_its_data_module() -> None:
    """File reads happen in dashboard/data.py only, and only of the two published names."""
    readers = {}
    for path in _sources(["dashboard"]):
        text = path.read_text(encoding="utf-8")
        if any(call in text for call in ("fs.read_bytes(", "read_text(", "read_bytes(", "open(")):
            readers[path.name] = text
    readers.pop("serve.py", None)  # opener.open(url): the health probe of its own server
    assert set(readers) == {"data.py"}
    assert "KPIS_FILE" in readers["data.py"] and "POSITIONS_FILE" in readers["data.py"]


# -- outputs: 0644, created exclusively -------------------------------------------------------


def _outputs(layout: Layout) -> Outputs:
    settings = layout.settings()
    kpis, positions = build_bytes(SourceReader(settings), settings)
    return Outputs(kpis=orjson.loads(kpis), positions=orjson.loads(positions))


@pytest.mark.parametrize("umask", [0o077, 0o022, 0o000])
def test_outputs_are_0644_whatever_the_umask(layout: Layout, umask: int) -> None:
    """Readable by a dashboard running as another user, writable by the publisher alone."""
    previous = os.umask(umask)
    try:
        publish.publish(_outputs(layout), layout.out, fsync=False)
    finally:
        os.umask(previous)
    for name in ("kpis_v7.json", "positions_v7.json"):
        assert stat.S_IMODE((layout.out / name).stat().st_mode) == 0o644


def test_temp_files_are_created_exclusively_and_private(
    layout: Layout, monkeypatch: pytest.MonkeyPatch
) -> None:
    """O_CREAT|O_EXCL (never O_TRUNC) with mode 0600: nobody can pre-create or read it."""
    opened: list[tuple[str, int, int]] = []
    real_open = os.open

    def recording_open(path: str, flags: int, mode: int = 0o777, **kw: object) -> int:
        opened.append((os.fspath(path), flags, mode))
        return real_open(path, flags, mode, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(fs.os, "open", recording_open)
    publish.publish(_outputs(layout), layout.out, fsync=False)
    monkeypatch.undo()
    temps = [(p, f, m) for p, f, m in opened if fs.is_temp_name(Path(p).name)]
    assert len(temps) == 2
    for path, flags, mode in temps:
        assert Path(path).parent == layout.out  # same filesystem: the rename is atomic
        assert flags & os.O_CREAT and flags & os.O_EXCL
        assert not flags & os.O_TRUNC
        assert mode == 0o600


def test_planted_symlink_at_the_temp_name_is_not_followed(
    layout: Layout, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If someone guesses the temp name and plants a symlink there, the write fails instead of
    writing through it, and the victim file is untouched."""
    victim = layout.root / "victim.txt"
    victim.write_text("precious")
    trap = layout.out / ".kpis_v7.json.1.trap.tmp"
    trap.symlink_to(victim)
    monkeypatch.setattr(fs, "temp_name", lambda target: trap)
    with pytest.raises(FileExistsError):
        fs.write_atomic(layout.out / "kpis_v7.json", b"{}", fsync=False)
    assert victim.read_text() == "precious"
    assert trap.is_symlink()


def test_once_publishes_0644_under_a_strict_umask(layout: Layout) -> None:
    """The real CLI under umask 077 (a hardened service account) still publishes 0644."""
    done = subprocess.run(
        [HEDGE_KPI, "once", *layout.cli_args()],
        capture_output=True,
        timeout=60,
        preexec_fn=lambda: os.umask(0o077),
    )
    assert done.returncode == 0, done.stderr
    for name in ("kpis_v7.json", "positions_v7.json"):
        assert stat.S_IMODE((layout.out / name).stat().st_mode) == 0o644


# -- the dashboard binds loopback -------------------------------------------------------------


def test_dashboard_command_line_binds_loopback_by_default() -> None:
    """`hedge-kpi dashboard` and the Streamlit argv it execs both default to 127.0.0.1."""
    argv = streamlit_command(Path("/srv/out"), port=8501)
    assert argv[argv.index("--server.address") + 1] == "127.0.0.1"
    args = build_parser().parse_args(["dashboard", "--out-dir", "/srv/out"])
    assert args.address == "127.0.0.1"


def _listeners(port: int) -> set[str]:
    """Local addresses (hex, as in /proc/net/tcp*) of LISTEN sockets on `port`."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            address, hex_port = fields[1].rsplit(":", 1)
            if fields[3] == "0A" and int(hex_port, 16) == port:
                found.add(address)
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _healthy(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - fixed loopback URL
        return bool(response.status == 200)


@pytest.fixture(scope="module")
def dashboard_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """The real `hedge-kpi dashboard` (Streamlit) on a free port with default settings."""
    layout = Layout(tmp_path_factory.mktemp("dash")).make()
    layout.write_all(good_docs(now=time.time()))
    subprocess.run([HEDGE_KPI, "once", *layout.cli_args()], check=True, timeout=60)
    port = _free_port()
    proc = subprocess.Popen(
        [HEDGE_KPI, "dashboard", "--out-dir", str(layout.out), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for(lambda: _healthy(f"http://127.0.0.1:{port}/_stcore/health"), 60, 0.2)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.mark.timeout(120)
def test_real_dashboard_listens_on_loopback_only(dashboard_server: int) -> None:
    """The kernel's socket table: every listener on the dashboard port is 127.0.0.1."""
    assert _listeners(dashboard_server) == {"0100007F"}
