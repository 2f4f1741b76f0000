"""Slow clients on `--metrics-port` get REQUEST_TIMEOUT_S from their accept, whatever they trickle.

A socket timeout bounds each recv, not the request: MAX_CLIENTS clients that each sent a
request line and then one header line every few seconds held every slot for as long as they
kept trickling, and every scrape was closed unanswered. Each connection now has one deadline
for its one request (request line, headers, the response sent), then it is closed and its
slot freed. Real sockets, with REQUEST_TIMEOUT_S patched small.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from kpi_publisher import metrics_server, pipeline
from kpi_publisher.metrics_server import MetricsServer
from kpi_publisher.prom import PublisherHealth
from kpi_publisher.sources import SourceReader

from .helpers import NOW, Layout

TIMEOUT_S = 1.0  # REQUEST_TIMEOUT_S in these tests
MARGIN_S = 1.5  # a loaded CI box: thread start, accept, the scrape itself


@pytest.fixture
def server(layout: Layout, monkeypatch: pytest.MonkeyPatch) -> Iterator[MetricsServer]:
    """A started MetricsServer serving the outputs of the good documents."""
    monkeypatch.setattr(metrics_server, "REQUEST_TIMEOUT_S", TIMEOUT_S)
    settings = layout.settings()
    outputs = pipeline.build(SourceReader(settings).read_all(), NOW, settings)
    srv = MetricsServer(0, host="h", account="a")
    srv.start()
    srv.update(outputs, PublisherHealth())
    try:
        yield srv
    finally:
        srv.stop()


def scrape(port: int, path: str = "/metrics") -> str | None:
    """The body of one GET, or None when the server closed the connection unanswered."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return str(resp.read().decode())
    except OSError:  # RemoteDisconnected, ConnectionResetError, URLError
        return None


def scrape_until(port: int, until: float, path: str = "/metrics") -> str | None:
    """Scrape every 50 ms until one is answered or time.monotonic() passes `until`."""
    while time.monotonic() < until:
        body = scrape(port, path)
        if body is not None:
            return body
        time.sleep(0.05)
    return None


def closed_by(client: socket.socket, until: float) -> bool:
    """The server closes this connection (EOF or reset) before time.monotonic() is `until`."""
    client.settimeout(max(until - time.monotonic(), 0.01))
    try:
        return client.recv(1) == b""
    except TimeoutError:
        return False
    except OSError:
        return True


def read_to_eof(client: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    chunks = []
    while chunk := client.recv(65_536):
        chunks.append(chunk)
    return b"".join(chunks)


@contextlib.contextmanager
def trickling(port: int, count: int, every_s: float) -> Iterator[list[socket.socket]]:
    """`count` clients that send `GET /metrics HTTP/1.1` and then one header line every
    `every_s` for as long as the block runs, never the blank line that ends the headers."""
    clients = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(count)]
    stop = threading.Event()

    def trickle() -> None:
        for client in clients:
            with contextlib.suppress(OSError):
                client.sendall(b"GET /metrics HTTP/1.1\r\n")
        while not stop.wait(every_s):
            for client in clients:
                with contextlib.suppress(OSError):  # the server closed it: keep the others going
                    client.sendall(b"X-Trickle: 1\r\n")

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    try:
        yield clients
    finally:
        stop.set()
        thread.join(timeout=5)
        for client in clients:
            client.close()


@pytest.mark.timeout(30)
def test_trickling_clients_are_closed_at_the_deadline_and_a_scrape_gets_through(
    server: MetricsServer,
):
    """MAX_CLIENTS clients each sending a header line every 0.3 s (well inside any per-recv
    timeout) hold every slot only until REQUEST_TIMEOUT_S after their accept: then each is
    closed and a scrape is answered, while they still trickle."""
    with trickling(server.port, metrics_server.MAX_CLIENTS, every_s=0.3) as clients:
        connected_at = time.monotonic()
        time.sleep(0.2)
        assert scrape(server.port) is None, "the tricklers do not hold every slot"
        until = connected_at + TIMEOUT_S + MARGIN_S
        body = scrape_until(server.port, until)
        assert body is not None, "no scrape answered while the clients kept trickling"
        assert "hedge_kpi_nav_usd" in body
        assert all(closed_by(client, until) for client in clients)


@pytest.mark.timeout(30)
def test_a_request_sent_in_pieces_within_the_deadline_is_answered(server: MetricsServer):
    """The deadline bounds a request, it does not refuse a slow one: a request line and headers
    sent over half of REQUEST_TIMEOUT_S get the full exposition."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as client:
        for line in (b"GET /metrics HTTP/1.1\r\n", b"Host: 127.0.0.1\r\n", b"X-A: 1\r\n", b"\r\n"):
            client.sendall(line)
            time.sleep(TIMEOUT_S / 8)
        response = read_to_eof(client)
    assert response.startswith(b"HTTP/1.0 200 OK\r\n")
    assert b"hedge_kpi_nav_usd" in response


@pytest.mark.timeout(30)
def test_keep_alive_gets_one_response_then_the_connection_is_closed(server: MetricsServer):
    """Two pipelined keep-alive requests on one connection: one response, then the server
    closes it at once, so keep-alive cannot hold a slot either."""
    request = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as client:
        started = time.monotonic()
        client.sendall(request * 2)
        response = read_to_eof(client)
        assert time.monotonic() - started < TIMEOUT_S
    assert response.count(b"HTTP/1.0 200 OK\r\n") == 1


@pytest.mark.timeout(30)
def test_a_client_reading_the_response_slowly_is_cut_at_the_deadline(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
):
    """Sending the response counts too: a client reading a large response 16 KiB every 50 ms
    (each send of 8 KiB finishing long before any per-send timeout) is cut REQUEST_TIMEOUT_S
    after its accept, its one slot is free for a scrape, and no traceback is printed."""
    monkeypatch.setattr(metrics_server, "REQUEST_TIMEOUT_S", TIMEOUT_S)
    monkeypatch.setattr(metrics_server, "MAX_CLIENTS", 1)

    def app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        if environ["PATH_INFO"] == "/large":
            yield from (b"x" * 8192 for _ in range(100_000))  # 800 MB at 320 KB/s
        else:
            yield b"ok\n"

    httpd = metrics_server._server(0, app)
    serving = threading.Thread(target=httpd.serve_forever, daemon=True)
    serving.start()
    port = int(httpd.server_port)
    stop = threading.Event()

    def read_slowly(client: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while not stop.wait(0.05) and client.recv(16_384):
                pass

    reader = socket.socket()
    reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    reader.settimeout(5)
    reader.connect(("127.0.0.1", port))
    reading = threading.Thread(target=read_slowly, args=(reader,), daemon=True)
    try:
        connected_at = time.monotonic()
        reader.sendall(b"GET /large HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        reading.start()
        time.sleep(0.2)
        assert scrape(port, "/small") is None, "the slow reader does not hold the slot"
        body = scrape_until(port, connected_at + TIMEOUT_S + MARGIN_S, "/small")
        assert body == "ok\n", "the slow reader kept the only slot past the deadline"
    finally:
        stop.set()
        if reading.is_alive():
            reading.join(timeout=5)
        reader.close()
        httpd.shutdown()
        httpd.server_close()
    assert "Traceback" not in capfd.readouterr().err
