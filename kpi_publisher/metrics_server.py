"""Optional loopback `/metrics` endpoint (`hedge-kpi run --metrics-port PORT`).

It serves exactly the families of `kpis.prom` (`prom.families`) for the latest outputs and
publisher health, through prometheus_client's HTTP server bound to 127.0.0.1 only: a
Prometheus (or agent) on the same host scrapes it; other hosts use the textfile route or a
local agent (docs/SCALING.md). prometheus_client is imported only when the server starts, so
the publisher runs without the `prom` extra when no port is set.
"""

from __future__ import annotations

import contextlib
import io
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

from kpi_publisher import prom
from kpi_publisher.config import Settings
from kpi_publisher.pipeline import Outputs

LOOPBACK = "127.0.0.1"
# A client is served by a thread of its own, one request per connection, and has
# REQUEST_TIMEOUT_S from its accept for all of it (request line, headers, the response sent):
# then it is closed, however slowly it still sends or reads. Beyond MAX_CLIENTS at once a
# connection is closed unanswered: no number of clients can take the descriptors and threads
# the publisher needs, nor keep a scrape out for longer than REQUEST_TIMEOUT_S.
REQUEST_TIMEOUT_S = 5.0
MAX_CLIENTS = 16


class MetricsUnavailable(RuntimeError):
    """The endpoint cannot start: prometheus_client is absent or the port is taken."""


class _Collector:
    """A prometheus_client collector over the latest (outputs, health) of a MetricsServer."""

    def __init__(self, server: MetricsServer) -> None:
        self._server = server

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        for fam in self._server.current_families():
            label_names = [k for k, _ in fam.samples[0][0]]
            metric: Any
            if fam.kind == "counter":
                metric = CounterMetricFamily(fam.name, fam.help, labels=label_names)
            else:
                metric = GaugeMetricFamily(fam.name, fam.help, labels=label_names)
            for labels, value in fam.samples:
                metric.add_metric([v for _, v in labels], value)
            yield metric


class MetricsServer:
    """Holds the latest outputs and health; serves them on http://127.0.0.1:PORT/metrics."""

    def __init__(self, port: int, *, host: str, account: str) -> None:
        self.port = port
        self.host_label = host
        self.account_label = account
        self._lock = threading.Lock()
        self._outputs: Outputs | None = None
        self._health: prom.PublisherHealth | None = None
        self._httpd: Any = None
        self._thread: threading.Thread | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> MetricsServer | None:
        """A server for `settings.metrics_port` with the configured labels; None when unset."""
        if settings.metrics_port is None:
            return None
        host, account = prom.host_account(settings)
        return cls(settings.metrics_port, host=host, account=account)

    def update(self, outputs: Outputs | None, health: prom.PublisherHealth | None) -> None:
        """Serve these from now on; `outputs=None` keeps the last outputs (a failed pass)."""
        with self._lock:
            if outputs is not None:
                self._outputs = outputs
            self._health = health

    def current_families(self) -> tuple[prom.Family, ...]:
        """What a scrape returns now: the last published figures and the publisher's health;
        before the first publish, the health alone (no publish yet, and the errors so far)."""
        with self._lock:
            outputs, health = self._outputs, self._health
        return prom.families(
            outputs,
            host=self.host_label,
            account=self.account_label,
            health=health if health is not None else prom.PublisherHealth(),
        )

    def start(self) -> int:
        """Bind 127.0.0.1:port (0 picks a free port) and serve; returns the bound port."""
        try:
            from prometheus_client import CollectorRegistry, make_wsgi_app
        except ImportError as exc:
            raise MetricsUnavailable(
                "--metrics-port needs prometheus-client: pip install 'hedge-kpi[prom]'"
            ) from exc
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Collector(self))
        try:
            httpd = _server(self.port, make_wsgi_app(registry))
        except (OSError, OverflowError) as exc:  # OverflowError: a port outside 0..65535
            reason = getattr(exc, "strerror", None) or exc
            raise MetricsUnavailable(f"cannot listen on {LOOPBACK}:{self.port}: {reason}") from exc
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, name="hedge-kpi-metrics", daemon=True
        )
        self._thread.start()
        self.port = int(httpd.server_port)
        return self.port

    @property
    def address(self) -> tuple[str, int] | None:
        """(ip, port) the server is bound to; None when not serving."""
        if self._httpd is None:
            return None
        ip, port = self._httpd.server_address[:2]
        return (str(ip), int(port))

    def stop(self) -> None:
        """Stop serving and close the socket; safe to call twice or before start."""
        httpd, thread = self._httpd, self._thread
        self._httpd, self._thread = None, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        if thread is not None:
            thread.join(timeout=5.0)


def _server(port: int, app: Any) -> Any:
    """A threading WSGI server on LOOPBACK:port for `app`, with the limits above."""
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    class Handler(WSGIRequestHandler):
        def setup(self) -> None:
            """Read and write the client through one deadline, REQUEST_TIMEOUT_S from now
            (from the accept: the accepting thread waits for this one to start)."""
            self.connection = self.request
            deadline = time.monotonic() + REQUEST_TIMEOUT_S
            self.rfile = io.BufferedReader(_DeadlineReader(self.connection, deadline))
            self.wfile = _DeadlineWriter(self.connection, deadline)

        def log_message(self, format: str, *args: Any) -> None:
            """Scrapes are not logged (one line per scrape would flood the publisher's log)."""

    class Server(ThreadingMixIn, WSGIServer):
        daemon_threads = True
        request_queue_size = 128  # a burst of connections waits to be accepted, not retried
        slots = threading.BoundedSemaphore(MAX_CLIENTS)

        def process_request(self, request: Any, client_address: Any) -> None:
            if not self.slots.acquire(blocking=False):
                self.shutdown_request(request)  # over the cap: closed unanswered
                return
            try:
                super().process_request(request, client_address)
            except BaseException:
                self.slots.release()
                raise

        def process_request_thread(self, request: Any, client_address: Any) -> None:
            try:
                super().process_request_thread(request, client_address)
            finally:
                self.slots.release()

        def handle_error(self, request: Any, client_address: Any) -> None:
            """A client that timed out or hung up is its own business: no traceback."""

    return make_server(LOOPBACK, port, app, Server, handler_class=Handler)


@contextlib.contextmanager
def _before(deadline: float, sock: socket.socket) -> Iterator[None]:
    """Give one recv or send on `sock` only the time left until `deadline` (time.monotonic()).

    A socket timeout alone bounds each call: a client trickling a byte just inside it kept
    its connection for ever. Past the deadline this raises ConnectionAbortedError, which
    wsgiref (while answering) and our server (while reading) drop without a traceback.
    """
    left_s = deadline - time.monotonic()
    if left_s <= 0:
        raise ConnectionAbortedError("request deadline passed")
    sock.settimeout(left_s)
    try:
        yield
    except TimeoutError as exc:
        raise ConnectionAbortedError("request deadline passed") from exc


class _DeadlineReader(io.RawIOBase):
    """The client's bytes, until `deadline`; wrapped in a BufferedReader for readline."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        super().__init__()
        self._sock, self._deadline = sock, deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        with _before(self._deadline, self._sock):
            return self._sock.recv_into(buffer)


class _DeadlineWriter(io.BufferedIOBase):
    """Unbuffered writes to the client, as the stdlib's: each one sent whole by `deadline`."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        super().__init__()
        self._sock, self._deadline = sock, deadline

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        with _before(self._deadline, self._sock):
            self._sock.sendall(data)  # its timeout bounds the whole send, not each chunk
        with memoryview(data) as view:
            return view.nbytes
