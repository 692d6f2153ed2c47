"""The HTTP side of the dashboard: fixed routes on the standard library's threaded server.

Every connection gets its own thread (``ThreadingHTTPServer``), so an
``/events`` stream that never ends, or a client that stops reading, ties up
only its own thread; the socket timeout and :meth:`DashboardServer.close_connections`
make sure none of them outlives ``stop()``. HTTP/1.0 (one request per
connection) keeps idle keep-alive connections from holding threads.

Safety is decided here: fixed routes only (no path from a request ever reaches
the file system), bounded request bodies, a loopback server answers only to
loopback host names (a DNS-rebinding page cannot read it), and control
requests need controls switched on, the same origin and the token.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import socket
import threading
from collections.abc import Callable, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import urlsplit

from recovery.breaker import CircuitBreaker
from recovery.dashboard.feed import Feed, dumps
from recovery.dashboard.hub import Hub, Subscriber
from recovery.manager import RecoveryManager

_logger = logging.getLogger("recovery.dashboard")

MAX_BODY = 4096  # bytes of a control request: a name and an action need far less
DRAIN = 65536  # bytes of an oversized body read and dropped so the 413 reaches the client
SOCKET_TIMEOUT = 10.0  # seconds a read or write may block before the connection is dropped
KEEPALIVE = 15.0  # seconds of an idle stream before a comment line tests the connection
TOKEN_HEADER = "X-Recovery-Token"

STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/common.js": ("common.js", "text/javascript; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}
CONTROL = {
    "/control/reset": "reset",
    "/control/force-open": "force_open",
    "/control/end-crash-loop": "end_crash_loop",
}
NO_METRICS = "/metrics needs prometheus-client: pip install 'recovery[prometheus]'"
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})

_HEADERS = {
    # No inline script or style anywhere, so injected markup could not run even if
    # some name were ever rendered as HTML.
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class Source(Protocol):
    """What the server serves: a process's :class:`Feed`, or the fleet's view."""

    def snapshot(self) -> dict[str, Any]: ...

    def subscribe(self) -> Subscriber | None: ...

    def start(self) -> None: ...

    def stop(self, timeout: float) -> None: ...


class Control:
    """The control actions, and the token that allows them."""

    def __init__(
        self, rm: RecoveryManager, breakers: Mapping[str, CircuitBreaker], token: str,
        feed: Feed,
    ) -> None:
        self._rm = rm
        self._breakers = breakers
        self._token = token.encode()
        self._feed = feed

    def allows(self, token: str | None) -> bool:
        """Whether ``token`` is the token, compared in constant time."""
        return token is not None and hmac.compare_digest(token.encode(), self._token)

    def act(self, action: str, request: Any) -> str:
        """Do ``action`` on the plugin or breaker the request names; a short report.

        ``request`` is ``{"plugin": name}`` or ``{"breaker": name}`` (an extra
        breaker). Unknown names are a KeyError, malformed requests a ValueError.
        """
        if not isinstance(request, dict) or len(request) != 1:
            raise ValueError('the body must be {"plugin": NAME} or {"breaker": NAME}')
        (kind, name), = request.items()
        if kind not in ("plugin", "breaker") or not isinstance(name, str):
            raise ValueError('the body must be {"plugin": NAME} or {"breaker": NAME}')
        if kind == "plugin":
            breaker = self._rm.breaker(name)  # KeyError for an unknown plugin
        elif name in self._breakers:
            breaker = self._breakers[name]
        else:
            raise KeyError(f"unknown breaker {name!r}")
        if kind == "breaker" and action == "end_crash_loop":
            raise ValueError(f"breaker {name!r} has no crash loop to end")
        # Noted before it is done, so the timeline reads cause, then effect.
        report = action.replace("_", " ") + " requested from the dashboard"
        _logger.warning("dashboard: %s %r: %s", kind, name, report)
        self._feed.note("control", name, report, "info", key=f"{kind}:{name}")
        if action == "force_open":
            breaker.force_open()
        elif kind == "breaker":
            breaker.reset()
        else:
            # The manager has no way to end only a crash loop: a reset ends it, and
            # clears the failed mark and closes the breaker too.
            self._rm.reset_plugin(name)
        return report


class DashboardServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer that knows its connections, to close them all on stop."""

    daemon_threads = False
    block_on_close = True  # server_close() joins every connection's thread
    # The listen backlog: every open page reconnects at once after a restart, and a
    # connection beyond the backlog waits a second for its SYN to be retried.
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        *,
        feed: Source,
        hub: Hub,
        static: Mapping[str, bytes],
        metrics: Callable[[], tuple[bytes, str]] | None,
        control: Control | None,
        loopback: bool,
        no_metrics: str = NO_METRICS,
    ) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.no_metrics = no_metrics  # why /metrics is a 404 when ``metrics`` is None
        self.feed, self.hub, self.static = feed, hub, static
        self.metrics, self.control, self.loopback = metrics, control, loopback
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        # Named so a thread dump (or the benchmark's CPU account) tells them apart.
        threading.current_thread().name = "recovery-dashboard-connection"
        super().process_request_thread(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Unblock every connection's thread: its reads and writes fail at once."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # already gone
                connection.shutdown(socket.SHUT_RDWR)


class Handler(BaseHTTPRequestHandler):
    """One request. GET: the page, its two assets, the snapshot, the stream, the metrics."""

    server: DashboardServer
    server_version = "recovery-dashboard"
    sys_version = ""
    timeout = SOCKET_TIMEOUT

    def log_message(self, format: str, *args: Any) -> None:
        _logger.debug("dashboard %s: " + format, self.client_address[0], *args)

    # -- routes ------------------------------------------------------------------------

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if not self._host_allowed():
            return
        if path in STATIC:
            name, content_type = STATIC[path]
            self._send(HTTPStatus.OK, self.server.static[name], content_type)
        elif path == "/status.json":
            self._send_json(HTTPStatus.OK, self.server.feed.snapshot())
        elif path == "/events":
            self._stream()
        elif path == "/metrics" and self.server.metrics is not None:
            body, content_type = self.server.metrics()
            self._send(HTTPStatus.OK, body, content_type)
        elif path == "/metrics":
            self._send_json(HTTPStatus.NOT_FOUND, {"error": self.server.no_metrics})
        elif path in CONTROL:
            self._send_json(HTTPStatus.METHOD_NOT_ALLOWED, {"error": "use POST"},
                            {"Allow": "POST"})
        else:
            self._send_json(HTTPStatus.NOT_FOUND, {"error": "not found"})

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        if not self._host_allowed():
            return
        if path not in CONTROL:
            status = HTTPStatus.METHOD_NOT_ALLOWED if self._is_get_route(path) \
                else HTTPStatus.NOT_FOUND
            self._send_json(status, {"error": status.phrase.lower()})
            return
        control = self.server.control
        if control is None:
            self._send_json(HTTPStatus.FORBIDDEN, {"error": "this dashboard is read-only"})
            return
        body = self._body()
        if body is None:
            return
        if not self._same_origin():
            self._send_json(HTTPStatus.FORBIDDEN, {"error": "cross-origin request refused"})
        elif not control.allows(self.headers.get(TOKEN_HEADER)):
            self._send_json(HTTPStatus.FORBIDDEN, {"error": "missing or wrong token"})
        else:
            try:
                report = control.act(CONTROL[path], json.loads(body or b"null"))
            except KeyError as exc:
                self._send_json(HTTPStatus.NOT_FOUND, {"error": str(exc.args[0])})
            except ValueError as exc:  # json.JSONDecodeError is one
                self._send_json(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
            else:
                self._send_json(HTTPStatus.OK, {"ok": True, "message": report})

    # -- the event stream --------------------------------------------------------------------

    def _stream(self) -> None:
        subscriber = self.server.feed.subscribe()
        if subscriber is None:
            self._send_json(HTTPStatus.SERVICE_UNAVAILABLE, {"error": "too many clients"})
            return
        try:
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "text/event-stream; charset=utf-8")
            self._common_headers()
            self.end_headers()
            # A browser reconnects a second after losing the stream.
            self.wfile.write(b"retry: 1000\n\n")
            while (message := subscriber.get(KEEPALIVE)) is not None:
                self.wfile.write(message or b": keep-alive\n\n")
        except OSError:
            pass  # the client went away, or stop() closed the connection
        finally:
            self.server.hub.unsubscribe(subscriber)

    # -- checks ------------------------------------------------------------------------------

    def _host_allowed(self) -> bool:
        """A loopback server answers only to loopback names (DNS rebinding stops here)."""
        host = self.headers.get("Host")
        if not self.server.loopback or host is None:
            return True
        try:
            name = urlsplit("//" + host).hostname
        except ValueError:
            name = None
        if name in LOOPBACK_NAMES:
            return True
        self._send_json(HTTPStatus.FORBIDDEN, {"error": "unexpected Host header"})
        return False

    def _same_origin(self) -> bool:
        origin, host = self.headers.get("Origin"), self.headers.get("Host")
        if origin is None or host is None:
            return False
        parts = urlsplit(origin)
        return parts.scheme == "http" and parts.netloc.lower() == host.lower()

    def _body(self) -> bytes | None:
        """The request body, or None once an error has been answered (400, 413)."""
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self._send_json(HTTPStatus.BAD_REQUEST, {"error": "bad Content-Length"})
            return None
        if length > MAX_BODY:
            self.rfile.read(min(length, DRAIN))
            self._send_json(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                            {"error": f"request body over {MAX_BODY} bytes"})
            return None
        return self.rfile.read(length)

    @staticmethod
    def _is_get_route(path: str) -> bool:
        return path in STATIC or path in ("/status.json", "/events", "/metrics")

    # -- responses ---------------------------------------------------------------------------

    def _common_headers(self) -> None:
        for name, value in _HEADERS.items():
            self.send_header(name, value)

    def _send(self, status: HTTPStatus, body: bytes, content_type: str,
              headers: Mapping[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self._common_headers()
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _send_json(self, status: HTTPStatus, data: Any,
                   headers: Mapping[str, str] | None = None) -> None:
        body = dumps(data).encode()
        self._send(status, body, "application/json", headers)
