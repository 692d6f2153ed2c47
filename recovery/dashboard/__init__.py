"""A live web page of a recovery manager: breakers, recoveries and alerts as they happen.

::

    from recovery.dashboard import serve

    with serve(rm, port=8321) as board:
        print("dashboard:", board.url)
        ...

One tile per plugin (and per extra breaker given in ``breakers``), a timeline of
transitions, recovery actions and alerts, and the manager's own state, updated
by Server-Sent Events at least once a second. Routes: ``/`` the page,
``/status.json`` the snapshot, ``/events`` the stream, ``/metrics`` the
Prometheus exposition (when prometheus-client is installed), and, only with
``allow_control=True`` and a ``token``, the POST routes ``/control/reset``,
``/control/force-open`` and ``/control/end-crash-loop``.

:func:`serve_fleet` serves the page of a whole fleet instead: the status summary
that every node with a started :class:`~recovery.cluster.Cluster` publishes once a
second, node by node and breaker by breaker, and at ``/metrics`` all of them,
labelled by node (same server, routes and safety rules; always read-only).

It runs on threads of its own (the standard library's threaded HTTP server and
one thread that reads the manager once a second) and reaches the manager only
through its public API: serving it costs the call path nothing.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from collections.abc import Callable, Iterable
from importlib import resources
from typing import Any

from recovery import _validate as v
from recovery.breaker import CircuitBreaker
from recovery.dashboard.feed import Feed
from recovery.dashboard.hub import Hub
from recovery.dashboard.server import STATIC, Control, DashboardServer, Source
from recovery.manager import RecoveryManager

__all__ = ["Dashboard", "serve", "serve_fleet"]

_logger = logging.getLogger("recovery.dashboard")
_TOKEN = v.optional(v.name())
_BREAKER = v.instance_of(CircuitBreaker)
_PORT = v.integer(ge=0, le=65535)

MAX_CLIENTS = 64  # open /events streams; more get 503
CLIENT_QUEUE = 64  # messages a client may fall behind before it is cut off (it reconnects)


class Dashboard:
    """A running dashboard: ``url``, ``stop()``, and a context manager that stops it."""

    def __init__(self, server: DashboardServer, feed: Source, hub: Hub, url: str) -> None:
        self._server, self._feed, self._hub = server, feed, hub
        self.url = url
        host, port = server.server_address[:2]
        self.address: tuple[str, int] = (str(host), int(port))
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1},
            name="recovery-dashboard-http", daemon=True,
        )
        self._stopped = False
        self._lock = threading.Lock()

    def _start(self) -> None:
        self._feed.start()
        self._thread.start()

    @property
    def clients(self) -> int:
        """Open ``/events`` streams."""
        return self._hub.clients

    @property
    def dropped_clients(self) -> int:
        """Streams cut off because their client fell too far behind."""
        return self._hub.dropped

    def snapshot(self) -> dict[str, Any]:
        """What ``/status.json`` serves: the latest view and the timeline."""
        return self._feed.snapshot()

    @property
    def connections(self) -> dict[str, int]:
        """Connections ``open`` now; ``refused`` at the cap, cut as too ``slow`` to send
        their request, and ``reset`` by their client, since the start."""
        return self._server.counts()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving and join every thread the dashboard started. Idempotent."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        self._feed.stop(timeout)
        self._hub.close()  # every stream ends
        self._server.shutdown()  # no more connections accepted
        self._server.close_connections()  # reads and writes still blocked fail now
        self._server.server_close()  # joins the connection threads
        self._thread.join(timeout)

    def __enter__(self) -> Dashboard:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<Dashboard {self.address[0]}:{self.address[1]}>"


def serve(
    rm: RecoveryManager,
    host: str = "127.0.0.1",
    port: int = 0,
    token: str | None = None,
    allow_control: bool = False,
    breakers: Iterable[CircuitBreaker] = (),
) -> Dashboard:
    """Serve the dashboard of ``rm`` on ``host``:``port`` (0: a free port) and return it.

    Read-only unless ``allow_control`` is true; controls then need ``token``,
    which every control request must carry (the page reads it from the URL's
    fragment: ``board.url`` includes it, and the fragment never reaches a
    server or a log). ``allow_control`` without a token is a ValueError rather
    than a silently read-only page. ``breakers`` adds tiles for breakers that
    are not plugins of ``rm`` (their names must differ from each other).
    """
    if not callable(getattr(rm, "status", None)):
        raise TypeError(f"rm must be a RecoveryManager, got {rm!r}")
    _check_address(host, port)
    v.check(_TOKEN, "token", token)
    v.check(v.boolean, "allow_control", allow_control)
    if allow_control and token is None:
        raise ValueError("allow_control=True needs a token")
    extra: dict[str, CircuitBreaker] = {}
    for index, breaker in enumerate(breakers):
        v.check(_BREAKER, f"breakers[{index}]", breaker)
        if breaker.name in extra:
            raise ValueError(f"breakers has two breakers named {breaker.name!r}")
        extra[breaker.name] = breaker

    loopback = _is_loopback(host)
    if not loopback:
        _logger.warning("dashboard: serving on %r, reachable beyond this machine", host)
    hub = Hub(limit=CLIENT_QUEUE, max_clients=MAX_CLIENTS)
    feed = Feed(rm, tuple(extra.values()), hub, control=allow_control)
    static = {
        name: (resources.files(__name__) / "static" / name).read_bytes()
        for name, _ in STATIC.values()
    }
    control = Control(rm, extra, token, feed) if allow_control and token else None
    return _start(host, port, feed, hub, static, _metrics(rm), control, loopback,
                  fragment=f"#token={token}" if control is not None else "")


def serve_fleet(
    url: str,
    namespace: str = "recovery",
    host: str = "127.0.0.1",
    port: int = 0,
    secret: str | bytes | None = None,
    *,
    fade_after: float = 5.0,
    forget_after: float = 60.0,
) -> Dashboard:
    """Serve the page of a whole fleet: every node of ``namespace`` on the Redis at ``url``.

    Each node whose :class:`~recovery.cluster.Cluster` is started publishes a
    summary once a second; this page shows them node by node and breaker by
    breaker. ``secret`` must be the cluster's (summaries not signed with it are
    dropped and counted). A node unheard for ``fade_after`` seconds is shown as
    silent, and dropped after ``forget_after``. Always read-only; Redis down (at
    start or later) shows on the page and is retried, never raised. ``/metrics``
    (with prometheus-client) exports every node's breakers with a ``node`` label:
    one scrape target for the whole fleet (:mod:`recovery.dashboard.fleet_metrics`).
    """
    from recovery.cluster import ClusterConfig  # needs redis-py: the 'redis' extra
    from recovery.dashboard.fleet import FleetFeed

    config = ClusterConfig(url, namespace, None, 1, 10.0, secret)  # the same checks
    _check_address(host, port)
    for name, value in (("fade_after", fade_after), ("forget_after", forget_after)):
        v.check(v.positive_seconds, name, value)
    if forget_after <= fade_after:
        raise ValueError(
            f"forget_after must be longer than fade_after, got {forget_after!r} <= {fade_after!r}")
    loopback = _is_loopback(host)
    if not loopback:
        _logger.warning("dashboard: serving on %r, reachable beyond this machine", host)
    hub = Hub(limit=CLIENT_QUEUE, max_clients=MAX_CLIENTS)
    feed = FleetFeed(config.url, config.namespace, config.secret, hub,
                     fade_after=float(fade_after), forget_after=float(forget_after))
    files = resources.files(__name__) / "static"
    static = {"index.html": (files / "fleet.html").read_bytes(),
              "common.js": (files / "common.js").read_bytes(),
              "app.js": (files / "fleet.js").read_bytes(),
              "style.css": (files / "style.css").read_bytes()}
    try:
        from recovery.dashboard.fleet_metrics import renderer
    except ImportError:  # no prometheus-client: /metrics is a 404 that says so
        metrics = None
    else:
        metrics = renderer(feed.nodes)
    return _start(host, port, feed, hub, static, metrics, None, loopback, fragment="")


def _check_address(host: str, port: int) -> None:
    v.check(v.text, "host", host)
    v.check(_PORT, "port", port)


def _start(
    host: str, port: int, feed: Source, hub: Hub, static: dict[str, bytes],
    metrics: Callable[[], tuple[bytes, str]] | None, control: Control | None,
    loopback: bool, fragment: str,
) -> Dashboard:
    """Bind the server (stopping ``feed`` if that fails), then start serving."""
    try:
        server = DashboardServer(
            (host, port), feed=feed, hub=hub, static=static, metrics=metrics,
            control=control, loopback=loopback,
        )
    except BaseException:
        feed.stop(0.0)
        raise
    bound_host, bound_port = server.server_address[:2]
    url = f"http://{_url_host(str(bound_host))}:{bound_port}/" + fragment
    board = Dashboard(server, feed, hub, url)
    board._start()
    return board


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _url_host(host: str) -> str:
    """How a browser on this machine reaches ``host`` (a wildcard: through loopback)."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def _metrics(rm: RecoveryManager) -> Callable[[], tuple[bytes, str]] | None:
    """The Prometheus exposition of ``rm`` on a private registry, or None without the client."""
    try:
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        from recovery.prometheus import RecoveryCollector
    except ImportError:
        return None
    registry = CollectorRegistry()
    registry.register(RecoveryCollector(rm))

    def render() -> tuple[bytes, str]:
        return generate_latest(registry), CONTENT_TYPE_LATEST

    return render
