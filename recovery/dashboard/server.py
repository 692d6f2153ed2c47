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

Bounded under abuse: at most :data:`MAX_CONNECTIONS` connections at once (each
holds a thread; one more is answered 503 and closed at once, without a thread),
a request must arrive whole (request line, headers and body) within
:data:`REQUEST_DEADLINE` seconds however slowly it trickles in, a client that
resets its connection costs a counted line at DEBUG (never a traceback), and a
control body is parsed only when it is at most :data:`MAX_BODY` bytes nested at
most :data:`MAX_DEPTH` deep (else 413 or 400). :meth:`DashboardServer.counts`
says how many connections were refused, cut for being slow, or reset.
"""

from __future__ import annotations

import collections
import contextlib
import hmac
import io
import json
import logging
import socket
import sys
import threading
import time
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
MAX_DEPTH = 4  # nesting of a control request's JSON; {"plugin": NAME} needs 1
MAX_CONNECTIONS = 128  # open connections (threads) at once, /events streams included
REQUEST_DEADLINE = 10.0  # seconds for a whole request to arrive, however it trickles in
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
    ) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.feed, self.hub, self.static = feed, hub, static
        self.metrics, self.control, self.loopback = metrics, control, loopback
        self.max_connections = MAX_CONNECTIONS
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()  # guards the two above and below
        self._counts: collections.Counter[str] = collections.Counter()
        super().__init__(address, Handler)

    def count(self, what: str) -> None:
        with self._connections_lock:
            self._counts[what] += 1

    def counts(self) -> dict[str, int]:
        """Connections open now, and those refused (at the cap), cut (too slow) and reset."""
        with self._connections_lock:
            return {"open": len(self._connections), "refused": self._counts["refused"],
                    "slow": self._counts["slow"], "reset": self._counts["reset"]}

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that reset its connection is one counted line; anything else a bug, logged."""
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError):  # reset, aborted, broken pipe
            self.count("reset")
            _logger.debug("dashboard: %s ended its connection abruptly: %s",
                          client_address[0], error)
        else:
            _logger.error("dashboard: a request from %s failed", client_address[0],
                          exc_info=error)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        """Refuse a connection past :data:`MAX_CONNECTIONS` with a 503, before any thread."""
        with self._connections_lock:
            if len(self._connections) < self.max_connections:
                return True
            self._counts["refused"] += 1
        with contextlib.suppress(OSError):  # a fresh socket: this small write cannot block
            request.setblocking(False)
            request.send(_BUSY)
        return False  # the server then closes it

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

    def setup(self) -> None:
        super().setup()
        self.rfile.close()  # read through the deadline instead
        self.rfile = io.BufferedReader(
            _Deadline(self.connection, time.monotonic() + REQUEST_DEADLINE, self.server))

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
            data = self.server.feed.snapshot()
            data["server"] = {**data.get("server", {}), "connections": self.server.counts()}
            self._send_json(HTTPStatus.OK, data)
        elif path == "/events":
            self._stream()
        elif path == "/metrics" and self.server.metrics is not None:
            body, content_type = self.server.metrics()
            self._send(HTTPStatus.OK, body, content_type)
        elif path == "/metrics":
            self._send_json(HTTPStatus.NOT_FOUND, {"error": NO_METRICS})
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
                report = control.act(CONTROL[path], parse_control(body))
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


_BUSY = (
    b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Retry-After: 1\r\nConnection: close\r\nContent-Length: 33\r\n\r\n"
    b'{"error": "too many connections"}'
)


class _Deadline(io.RawIOBase):
    """A connection's reading side that gives up at ``deadline`` (monotonic seconds).

    The socket's own timeout bounds one read; a sender that trickles a byte just
    inside it would hold the connection's thread for ever. Each read here waits
    at most until the deadline, so the whole request has that long to arrive.
    """

    def __init__(self, connection: socket.socket, deadline: float,
                 server: DashboardServer) -> None:
        super().__init__()
        self._connection, self._deadline, self._server = connection, deadline, server

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        left = self._deadline - time.monotonic()
        try:
            if left <= 0:
                raise TimeoutError(f"the request did not arrive whole in {REQUEST_DEADLINE}s")
            self._connection.settimeout(min(left, SOCKET_TIMEOUT))
            try:
                return self._connection.recv_into(buffer)
            finally:
                self._connection.settimeout(SOCKET_TIMEOUT)  # for the writes that follow
        except TimeoutError:
            self._server.count("slow")
            raise


def parse_control(body: bytes) -> Any:
    """A control request's JSON, refused (ValueError) past :data:`MAX_DEPTH` levels.

    The depth is measured before parsing, so no body can make the parser recurse
    deep (``"[" * 4000`` used to raise RecursionError and get no answer at all).
    """
    depth, deepest, in_string, escaped = 0, 0, False, False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
            if deepest > MAX_DEPTH:
                raise ValueError(f"the body is nested deeper than {MAX_DEPTH} levels")
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return json.loads(body or b"null")
