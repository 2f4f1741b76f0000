"""Safe defaults: no code execution from input, outputs 0644 through exclusive temp files, the
dashboard on loopback taking no file path from the browser, and the nginx front (TLS + basic
auth) in deploy/nginx.
"""

from __future__ import annotations

import ast
import base64
import http.client
import os
import shutil
import socket
import ssl
import stat
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TypedDict

import orjson
import pytest

from dashboard.serve import streamlit_command
from kpi_publisher import fs, publish
from kpi_publisher.cli import build_parser
from kpi_publisher.pipeline import Outputs
from kpi_publisher.sources import SourceReader

from .helpers import BIN, HEDGE_KPI, REPO, Layout, build_bytes, good_docs, wait_for

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
    """File reads happen in dashboard/data.py only, and only of the published names (the two
    outputs and the NAV history's file)."""
    readers = {}
    for path in _sources(["dashboard"]):
        text = path.read_text(encoding="utf-8")
        if any(call in text for call in ("fs.read_bytes(", "read_text(", "read_bytes(", "open(")):
            readers[path.name] = text
    readers.pop("serve.py", None)  # opener.open(url): the health probe of its own server
    assert set(readers) == {"data.py"}
    assert "KPIS_FILE" in readers["data.py"] and "POSITIONS_FILE" in readers["data.py"]
    assert "NAV_HISTORY_FILE" in readers["data.py"]


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


@pytest.mark.parametrize("reused", [False, True], ids=["one_shot", "daemon_writer"])
def test_temp_files_are_created_exclusively_and_private(
    layout: Layout, monkeypatch: pytest.MonkeyPatch, reused: bool
) -> None:
    """O_CREAT|O_EXCL (never O_TRUNC) with mode 0600: nobody can pre-create or read it. The
    daemon's writer makes its spare temps the same way (two publishes: two temps, then two
    spares after each)."""
    opened: list[tuple[str, int, int]] = []
    real_open = os.open

    def recording_open(path: str, flags: int, mode: int = 0o777, **kw: Any) -> int:
        opened.append((os.fspath(path), flags, mode))
        return real_open(path, flags, mode, **kw)

    writer = publish.Publisher() if reused else publish.publish
    monkeypatch.setattr(os, "open", recording_open)
    writer(_outputs(layout), layout.out, fsync=False)
    writer(_outputs(layout), layout.out, fsync=False)
    monkeypatch.undo()
    if isinstance(writer, publish.Publisher):
        writer.close()
    temps = [(p, f, m) for p, f, m in opened if fs.is_temp_name(Path(p).name)]
    assert len(temps) == (6 if reused else 4)
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


def test_streamlit_agent_api_is_off(dashboard_server: int) -> None:
    """Streamlit's HTTP/MCP agent API (another way to drive the app) is not served."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{dashboard_server}/_stcore/agent/interact",
        data=b"{}",
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=10)  # noqa: S310
    assert caught.value.code == 403
    caught.value.close()


# -- deploy/nginx: TLS + basic auth in front of the loopback dashboard ------------------------

NGINX_CONF = REPO / "deploy" / "nginx" / "hedge-kpi.conf"
NGINX_WRAPPER = """\
{user}
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log {dir}/access.log;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    include {dir}/hedge-kpi.conf;
}}
"""


def test_nginx_front_has_tls_basic_auth_websocket_and_loopback_upstream() -> None:
    """What the front must do, read from the shipped file (runs even where nginx is absent)."""
    conf = NGINX_CONF.read_text()
    assert "listen 443 ssl;" in conf
    assert "ssl_certificate " in conf and "ssl_certificate_key " in conf
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in conf
    assert "return 301 https://$host$request_uri;" in conf
    assert 'auth_basic "hedge:kpi";' in conf and "auth_basic_user_file " in conf
    assert "server 127.0.0.1:8501;" in conf
    stream = conf[conf.index("location /_stcore/stream") :]
    stream = stream[: stream.index("}")]
    assert "proxy_set_header Upgrade $http_upgrade;" in stream
    assert "proxy_http_version 1.1;" in stream
    assert "autoindex" not in conf


def _nginx_site(work: Path, http_port: int, https_port: int, upstream_port: int) -> str:
    """The shipped server blocks, moved to test ports, certificate and password file."""
    site = NGINX_CONF.read_text()
    replacements = {
        "listen 80;": f"listen 127.0.0.1:{http_port};",
        "listen 443 ssl;": f"listen 127.0.0.1:{https_port} ssl;",
        "listen [::]:80;": "",
        "listen [::]:443 ssl;": "",
        "/etc/ssl/hedge-kpi/fullchain.pem": str(work / "cert.pem"),
        "/etc/ssl/hedge-kpi/privkey.pem": str(work / "key.pem"),
        "/etc/nginx/hedge-kpi.htpasswd": str(work / "htpasswd"),
        "server 127.0.0.1:8501;": f"server 127.0.0.1:{upstream_port};",
    }
    for old, new in replacements.items():
        assert old in site, old
        site = site.replace(old, new)
    return site


class NginxFront(TypedDict):
    """The running front: its plain and TLS ports, and a context trusting its certificate."""

    http: int
    https: int
    ctx: ssl.SSLContext


@pytest.fixture
def nginx_front(dashboard_server: int, tmp_path: Path) -> Iterator[NginxFront]:
    """Real nginx running deploy/nginx/hedge-kpi.conf in front of the real dashboard."""
    candidates = [BIN.parent / "nginx-bin" / "nginx", Path("/usr/sbin/nginx")]
    nginx = shutil.which("nginx") or next((str(p) for p in candidates if p.exists()), None)
    if nginx is None:
        pytest.skip("nginx is not installed (`make nginx` unpacks it); the static checks still ran")
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed: cannot make a test certificate")
    work = tmp_path
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", work / "key.pem", "-out", work / "cert.pem", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    hashed = subprocess.run(
        [openssl, "passwd", "-6", "s3cret-desk"], check=True, capture_output=True, text=True
    ).stdout.strip()
    (work / "htpasswd").write_text(f"desk:{hashed}\n")
    http_port, https_port = _free_port(), _free_port()
    (work / "hedge-kpi.conf").write_text(_nginx_site(work, http_port, https_port, dashboard_server))
    (work / "nginx.conf").write_text(
        NGINX_WRAPPER.format(dir=work, user="user root;" if os.geteuid() == 0 else "")
    )
    # -e: the error log before the config is read (the compiled-in /var/log/nginx may not exist)
    base: list[str | Path] = [
        nginx, "-p", work, "-e", work / "error.log", "-c", work / "nginx.conf"
    ]  # fmt: skip
    check = subprocess.run([*base, "-t"], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stderr
    proc = subprocess.Popen(
        [*base, "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: _listeners(https_port), 10)
        ctx = ssl.create_default_context(cafile=str(work / "cert.pem"))
        yield {"http": http_port, "https": https_port, "ctx": ctx}
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _get(front: NginxFront, path: str, auth: str | None = None) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPSConnection(
        "127.0.0.1",
        int(front["https"]),
        context=front["ctx"],
        timeout=30,
    )
    headers = {"Authorization": "Basic " + base64.b64encode(auth.encode()).decode()} if auth else {}
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


@pytest.mark.timeout(120)
def test_nginx_front_end_to_end(nginx_front: NginxFront) -> None:
    """Through the shipped config: plain HTTP redirects to HTTPS; the TLS certificate verifies;
    no login or a wrong password gets 401; the desk login gets the dashboard; the Streamlit
    websocket upgrades (101) through the proxy; the agent API is closed at the front."""
    plain = http.client.HTTPConnection("127.0.0.1", int(nginx_front["http"]), timeout=30)
    plain.request("GET", "/anything")
    redirect = plain.getresponse()
    assert redirect.status == 301
    assert redirect.getheader("Location", "").startswith("https://")
    plain.close()

    status, headers, _ = _get(nginx_front, "/")
    assert status == 401
    assert headers["WWW-Authenticate"] == 'Basic realm="hedge:kpi"'
    assert _get(nginx_front, "/", auth="desk:wrong")[0] == 401
    status, headers, body = _get(nginx_front, "/", auth="desk:s3cret-desk")
    assert status == 200
    assert b'<div id="root">' in body
    assert headers["Strict-Transport-Security"].startswith("max-age=")
    assert _get(nginx_front, "/_stcore/health")[0] == 200  # local monitor, no login
    assert _get(nginx_front, "/_stcore/agent/openapi.json", auth="desk:s3cret-desk")[0] == 404

    with socket.create_connection(("127.0.0.1", int(nginx_front["https"])), timeout=30) as raw:
        ctx: ssl.SSLContext = nginx_front["ctx"]
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            key = base64.b64encode(os.urandom(16)).decode()
            login = base64.b64encode(b"desk:s3cret-desk").decode()
            tls.sendall(
                (
                    "GET /_stcore/stream HTTP/1.1\r\n"
                    "Host: kpi.example.internal\r\n"
                    "Origin: https://kpi.example.internal\r\n"
                    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                    f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                    f"Authorization: Basic {login}\r\n\r\n"
                ).encode()
            )
            head = tls.recv(4096).decode("latin-1")
    assert head.startswith("HTTP/1.1 101 Switching Protocols"), head
