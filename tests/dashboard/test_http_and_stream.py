"""The dashboard over plain HTTP: routes, the event stream, safety answers, many clients.

The dashboard reads the manager once a second in real time (it is a view for
people); the waits here are bounded by socket timeouts and deadlines, and each
is for something the dashboard promises within a second or two.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import attrs
import pytest

from recovery import (
    CircuitBreaker,
    FailureInfo,
    RecoveryConfig,
    RecoveryManager,
    RecoveryStatus,
)
from recovery.dashboard import Dashboard, serve
from recovery.dashboard.history import RateHistory
from recovery.dashboard.hub import Hub
from recovery.testing import FakeClock, RecordingAuditLogger
from tests.helpers import StubPlugin, StubPluginManager, failing_strategy

XSS = "<img src=x onerror=alert(1)>"
TOKEN = "s3cret-token"
WAIT = 5.0  # seconds: the most any promised update may take here


def failing_manager(*names: str) -> RecoveryManager:
    """A started manager on a fake clock (episodes wait on it) with a failing strategy "bad"."""
    rm = RecoveryManager(
        StubPluginManager(*names), RecordingAuditLogger(),
        RecoveryConfig(enable_health_checking=False, default_recovery_strategy="bad"),
        clock=FakeClock(),
    )
    rm.register_strategy("bad", failing_strategy())
    for name in names:
        rm.register_plugin(name)
    rm.start()
    return rm


def register_loaded(rm: RecoveryManager, name: str, **options: Any) -> None:
    """Register plugin ``name`` after loading it into the manager's stub plugin manager
    (a plugin the plugin manager lacks is refused at registration)."""
    rm.plugin_manager.plugins[name] = StubPlugin(name)
    rm.register_plugin(name, **options)


@pytest.fixture
def rm() -> Iterator[RecoveryManager]:
    manager = failing_manager("p", "q", XSS)
    yield manager
    manager.stop(timeout=5.0)


@pytest.fixture
def board(rm: RecoveryManager, boards: Callable[..., Dashboard]) -> Dashboard:
    return boards(rm)


# -- HTTP helpers ------------------------------------------------------------------------------


def request(
    board: Dashboard, method: str, path: str, body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    host, port = board.address
    connection = http.client.HTTPConnection(host, port, timeout=WAIT)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def post(board: Dashboard, path: str, data: Any, *, token: str | None = TOKEN,
         origin: str | None = "same") -> tuple[int, Any]:
    host, port = board.address
    headers = {"Content-Type": "application/json"}
    if origin == "same":
        origin = f"http://{host}:{port}"
    if origin is not None:
        headers["Origin"] = origin
    if token is not None:
        headers["X-Recovery-Token"] = token
    status, _, body = request(board, "POST", path, json.dumps(data).encode(), headers)
    return status, json.loads(body)


class Stream:
    """A client of /events that parses the Server-Sent Events it reads."""

    def __init__(self, board: Dashboard) -> None:
        host, port = board.address
        self.connection = http.client.HTTPConnection(host, port, timeout=WAIT)
        self.connection.request("GET", "/events")
        self.response = self.connection.getresponse()
        self.retry: str | None = None

    def next(self) -> tuple[str, Any]:
        """The next event as (name, parsed data); checks the framing on the way."""
        event, data = "message", []
        while True:
            line = self.response.readline()
            assert line.endswith(b"\n"), f"stream ended: {line!r}"
            text = line.decode().rstrip("\n")
            if text == "":
                if data:
                    assert len(data) == 1, "one data line per event"
                    return event, json.loads(data[0])
                continue
            field, _, value = text.partition(": ")
            if field == "event":
                event = value
            elif field == "data":
                data.append(value)
            elif field == "retry":
                self.retry = value
            else:
                assert text.startswith(":"), f"unexpected line {text!r}"

    def until(self, predicate: Callable[[str, Any], bool]) -> tuple[str, Any]:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            event, data = self.next()
            if predicate(event, data):
                return event, data
        raise AssertionError("no such event in time")

    def close(self) -> None:
        self.connection.close()


def tile(data: dict[str, Any], tile_id: str) -> dict[str, Any]:
    return next(tile for tile in data["tiles"] if tile["id"] == tile_id)


def timeline_event(kind: str, name: str, text: str) -> Callable[[str, Any], bool]:
    return lambda event, data: (
        event == "event" and data["kind"] == kind and data["name"] == name
        and text in data["text"]
    )


# -- routes ----------------------------------------------------------------------------------


def test_the_page_and_its_assets_are_served_with_a_strict_policy(board: Dashboard) -> None:
    status, headers, body = request(board, "GET", "/")
    assert status == 200
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert b'<script src="/app.js"' in body
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    for path, kind in (("/app.js", "text/javascript"), ("/style.css", "text/css")):
        status, headers, body = request(board, "GET", path)
        assert (status, headers["Content-Type"].split(";")[0]) == (200, kind)
        assert body
    assert request(board, "GET", "/?refresh=1")[0] == 200


def test_the_shared_script_is_served_and_loaded_before_the_page_s_own(board: Dashboard) -> None:
    body = request(board, "GET", "/")[2]
    assert body.index(b'<script src="/common.js" defer>') < body.index(b'<script src="/app.js"')
    status, headers, script = request(board, "GET", "/common.js")
    assert (status, headers["Content-Type"].split(";")[0]) == (200, "text/javascript")
    assert b"RecoveryDashboard" in script and b"innerHTML" not in script


@pytest.mark.parametrize("path", [
    "/nope", "/index.html", "/static/app.js", "/../manager.py", "/%2e%2e/manager.py",
    "//etc/passwd", "/events/x", "/control",
])
def test_unknown_paths_are_404(board: Dashboard, path: str) -> None:
    assert request(board, "GET", path)[0] == 404


def test_status_json_is_the_snapshot(board: Dashboard) -> None:
    status, headers, body = request(board, "GET", "/status.json")
    assert (status, headers["Content-Type"]) == (200, "application/json")
    data = json.loads(body)
    assert [t["name"] for t in data["tiles"]] == ["p", "q", XSS]
    assert tile(data, "plugin:p")["circuit_breaker"]["state"] == "closed"
    assert data["manager"]["running"] is True
    assert data["control"] is False
    assert set(data["history"]) == {"plugin:p", "plugin:q", f"plugin:{XSS}"}
    assert data["timeline"] == []


def test_metrics_is_the_prometheus_exposition(board: Dashboard, rm: RecoveryManager) -> None:
    rm.execute_with_recovery("p", lambda: None)
    status, headers, body = request(board, "GET", "/metrics")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain")
    assert 'recovery_requests_total{plugin="p"} 1.0' in body.decode()


def test_metrics_without_prometheus_client_is_404_saying_why(
    rm: RecoveryManager, boards: Callable[..., Dashboard], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # import fails
    board = boards(rm)
    status, _, body = request(board, "GET", "/metrics")
    assert status == 404
    assert "prometheus-client" in json.loads(body)["error"]


def test_a_loopback_dashboard_refuses_foreign_host_names(board: Dashboard) -> None:
    # A DNS-rebinding page reaches 127.0.0.1 under its own name: it must read nothing.
    status, _, _ = request(board, "GET", "/status.json", headers={"Host": "evil.example:80"})
    assert status == 403
    assert request(board, "GET", "/", headers={"Host": "localhost"})[0] == 200


# -- the event stream ---------------------------------------------------------------------------


def test_a_stream_starts_with_a_snapshot_then_ticks_every_second(board: Dashboard) -> None:
    stream = Stream(board)
    try:
        assert stream.response.getheader("Content-Type") == "text/event-stream; charset=utf-8"
        event, data = stream.next()
        assert stream.retry == "1000"
        assert event == "snapshot"
        assert {"tiles", "manager", "history", "timeline", "control"} <= set(data)
        started = time.monotonic()
        ticks = [stream.until(lambda e, d: e == "tick") for _ in range(2)]
        # two ticks, a second apart (bounded loosely: a loaded machine is slow)
        assert time.monotonic() - started < 3.5
        assert all(len(tile(d, "plugin:p")["rate"]) == 2 for _, d in ticks)
    finally:
        stream.close()


def test_a_transition_is_sent_as_it_happens(board: Dashboard, rm: RecoveryManager) -> None:
    stream = Stream(board)
    try:
        stream.next()  # the snapshot
        rm.breaker("q").force_open()
        _, entry = stream.until(timeline_event("transition", "q", "closed \u2192 open"))
        assert entry["level"] == "bad" and entry["tile"] == "plugin:q"
        _, data = stream.until(lambda e, d: e == "tick")
        assert tile(data, "plugin:q")["circuit_breaker"]["state"] == "open"
    finally:
        stream.close()


def test_recovery_actions_and_alerts_reach_the_timeline(
    board: Dashboard, rm: RecoveryManager
) -> None:
    stream = Stream(board)
    try:
        stream.next()
        rm.record_failure("p", FailureInfo("error"))  # strategy "bad" runs and fails
        stream.until(timeline_event("recovery", "p", "bad failed"))
        rm.record_failure("q", FailureInfo("error", recoverable=False))
        stream.until(timeline_event("alert", "q", "unrecoverable"))
        stream.until(timeline_event("recovery", "q", "marked failed"))
    finally:
        stream.close()


def with_crash_loop(rm: RecoveryManager, name: str, next_attempt: Callable[[], float | None]
                    ) -> Callable[[], RecoveryStatus]:
    """``rm.status``, with plugin ``name`` in a crash loop (retried at ``next_attempt()``,
    wall clock) while that is not None."""
    real_status = rm.status

    def status() -> RecoveryStatus:
        view = real_status()
        plugin = view.plugins[name]
        when = next_attempt()
        recovery = attrs.evolve(plugin.recovery, crash_loop=when is not None, next_attempt=when)
        plugins = {**view.plugins, name: attrs.evolve(plugin, recovery=recovery)}
        return attrs.evolve(view, plugins=plugins)

    return status


def test_crash_loops_reach_the_timeline(
    rm: RecoveryManager, boards: Callable[..., Dashboard], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A crash loop on demand: the manager's status, with "p" looping while the event is set.
    looping = threading.Event()
    status = with_crash_loop(rm, "p", lambda: 1_893_456_000.0 if looping.is_set() else None)
    monkeypatch.setattr(rm, "status", status)
    stream = Stream(boards(rm))
    try:
        stream.next()
        looping.set()
        stream.until(timeline_event(
            "recovery", "p", "in a crash loop, next attempt 2030-01-01T00:00:00Z"))
        looping.clear()
        stream.until(timeline_event("recovery", "p", "crash loop ended"))
    finally:
        stream.close()


def test_a_reconnecting_client_gets_a_fresh_snapshot_with_the_timeline(
    board: Dashboard, rm: RecoveryManager
) -> None:
    first = Stream(board)
    first.next()
    rm.breaker("p").force_open()
    first.until(timeline_event("transition", "p", "open"))
    first.close()
    second = Stream(board)
    try:
        event, data = second.next()
        assert event == "snapshot"
        assert tile(data, "plugin:p")["circuit_breaker"]["state"] == "open"
        assert [e["text"] for e in data["timeline"]] == ["closed \u2192 open"]
    finally:
        second.close()


def test_extra_breakers_have_tiles_and_transitions(
    rm: RecoveryManager, boards: Callable[..., Dashboard]
) -> None:
    extra = CircuitBreaker("cache")
    board = boards(rm, breakers=[extra])
    stream = Stream(board)
    try:
        _, data = stream.next()
        view = tile(data, "breaker:cache")
        assert (view["kind"], view["recovery"], view["health_check"]) == ("breaker", None, None)
        extra.force_open()
        stream.until(timeline_event("transition", "cache", "closed \u2192 open"))
    finally:
        stream.close()


def test_many_clients_at_once_all_get_every_update(
    board: Dashboard, rm: RecoveryManager
) -> None:
    streams = [Stream(board) for _ in range(30)]
    try:
        for stream in streams:
            assert stream.next()[0] == "snapshot"
        assert board.clients == 30
        rm.breaker("p").force_open()
        for stream in streams:
            stream.until(timeline_event("transition", "p", "open"))
    finally:
        for stream in streams:
            stream.close()


def test_a_vanished_client_is_forgotten_and_blocks_no_one(
    board: Dashboard, rm: RecoveryManager
) -> None:
    gone = socket.create_connection(board.address, timeout=WAIT)
    gone.sendall(b"GET /events HTTP/1.0\r\n\r\n")
    assert gone.recv(100).startswith(b"HTTP/1.0 200")
    gone.close()
    stream = Stream(board)
    try:
        stream.next()
        deadline = time.monotonic() + WAIT
        while board.clients > 1:  # noticed at its next write, within a tick
            assert time.monotonic() < deadline, "the vanished client is still counted"
            stream.until(lambda e, d: e == "tick")
        rm.breaker("p").force_open()
        stream.until(timeline_event("transition", "p", "open"))
    finally:
        stream.close()


def test_stop_ends_streams_and_joins_its_threads_even_with_a_client_not_reading(
    rm: RecoveryManager,
) -> None:
    before = set(threading.enumerate())
    board = serve(rm)
    reading = Stream(board)
    reading.next()
    stalled = socket.create_connection(board.address, timeout=WAIT)
    stalled.sendall(b"GET /events HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")  # and never reads
    idle = socket.create_connection(board.address, timeout=WAIT)  # sends no request at all
    try:
        started = time.monotonic()
        board.stop()
        assert time.monotonic() - started < WAIT
        assert set(threading.enumerate()) - before == set()
        with pytest.raises(AssertionError, match="stream ended"):
            reading.until(lambda e, d: False)
    finally:
        for closable in (reading, stalled, idle):
            closable.close()
    board.stop()  # idempotent


# -- control and its refusals --------------------------------------------------------------------


def test_a_read_only_dashboard_refuses_every_control_request(board: Dashboard) -> None:
    for path in ("/control/reset", "/control/force-open", "/control/end-crash-loop"):
        assert post(board, path, {"plugin": "p"})[0] == 403


def test_control_needs_the_token_and_the_same_origin(
    rm: RecoveryManager, boards: Callable[..., Dashboard]
) -> None:
    board = boards(rm, token=TOKEN, allow_control=True)
    assert board.url.endswith(f"/#token={TOKEN}")
    assert post(board, "/control/force-open", {"plugin": "p"}, token=None)[0] == 403
    assert post(board, "/control/force-open", {"plugin": "p"}, token="wrong")[0] == 403
    assert post(board, "/control/force-open", {"plugin": "p"}, origin=None)[0] == 403
    assert post(board, "/control/force-open", {"plugin": "p"},
                origin="http://evil.example")[0] == 403
    assert rm.breaker("p").state.value == "closed"

    status, answer = post(board, "/control/force-open", {"plugin": "p"})
    assert (status, answer["ok"]) == (200, True)
    assert rm.breaker("p").state.value == "open"
    assert post(board, "/control/reset", {"plugin": "p"})[0] == 200
    assert rm.breaker("p").state.value == "closed"


def test_end_crash_loop_resets_the_plugin(
    rm: RecoveryManager, boards: Callable[..., Dashboard]
) -> None:
    board = boards(rm, token=TOKEN, allow_control=True)
    rm.record_failure("q", FailureInfo("error", recoverable=False))  # failed, held open
    assert rm.get_recovery_status()["plugins"]["q"]["recovery"]["failed"]
    assert post(board, "/control/end-crash-loop", {"plugin": "q"})[0] == 200
    view = rm.get_recovery_status()["plugins"]["q"]
    assert view["recovery"]["failed"] is False
    assert view["circuit_breaker"]["state"] == "closed"


def test_control_of_extra_breakers(rm: RecoveryManager, boards: Callable[..., Dashboard]) -> None:
    extra = CircuitBreaker("cache")
    board = boards(rm, token=TOKEN, allow_control=True, breakers=[extra])
    assert post(board, "/control/force-open", {"breaker": "cache"})[0] == 200
    assert extra.state.value == "open"
    assert post(board, "/control/reset", {"breaker": "cache"})[0] == 200
    assert extra.state.value == "closed"
    assert post(board, "/control/end-crash-loop", {"breaker": "cache"})[0] == 400


@pytest.mark.parametrize(("body", "status"), [
    ({"plugin": "nobody"}, 404),
    ({"breaker": "nobody"}, 404),
    ({"plugin": 3}, 400),
    ({"plugin": "p", "breaker": "x"}, 400),
    (["p"], 400),
    ({}, 400),
])
def test_bad_control_requests(
    rm: RecoveryManager, boards: Callable[..., Dashboard], body: Any, status: int
) -> None:
    board = boards(rm, token=TOKEN, allow_control=True)
    assert post(board, "/control/reset", body)[0] == status


def test_wrong_methods_and_bodies(rm: RecoveryManager, boards: Callable[..., Dashboard]) -> None:
    board = boards(rm, token=TOKEN, allow_control=True)
    host, port = board.address
    same = {"Origin": f"http://{host}:{port}", "X-Recovery-Token": TOKEN}
    assert request(board, "GET", "/control/reset")[0] == 405
    assert request(board, "POST", "/status.json", b"{}", same)[0] == 405
    assert request(board, "POST", "/elsewhere", b"{}", same)[0] == 404
    big = b"x" * 10_000
    assert request(board, "POST", "/control/reset", big, same)[0] == 413
    assert request(board, "POST", "/control/reset", b"{not json", same)[0] == 400
    assert request(board, "PUT", "/control/reset", b"{}", same)[0] == 501


# -- serve()'s arguments -------------------------------------------------------------------------


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"host": 1}, TypeError, "host"),
    ({"port": "80"}, TypeError, "port"),
    ({"port": True}, TypeError, "port"),
    ({"port": 70000}, ValueError, "port"),
    ({"token": 5}, TypeError, "token"),
    ({"token": ""}, ValueError, "token"),
    ({"allow_control": 1}, TypeError, "allow_control"),
    ({"allow_control": True}, ValueError, "token"),
    ({"breakers": ["x"]}, TypeError, "breakers"),
    ({"breakers": [CircuitBreaker("a"), CircuitBreaker("a")]}, ValueError, "'a'"),
])
def test_serve_rejects_bad_arguments(
    rm: RecoveryManager, kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        serve(rm, **kwargs)


def test_serve_rejects_what_is_not_a_manager() -> None:
    with pytest.raises(TypeError, match="rm"):
        serve(object())  # type: ignore[arg-type]


def test_a_port_in_use_is_an_oserror_and_leaves_nothing_running(
    rm: RecoveryManager, board: Dashboard
) -> None:
    before = set(threading.enumerate())
    with pytest.raises(OSError):
        serve(rm, port=board.address[1])
    assert set(threading.enumerate()) - before == set()


def test_a_dashboard_is_a_context_manager(rm: RecoveryManager) -> None:
    with serve(rm) as board:
        assert request(board, "GET", "/")[0] == 200
        host, port = board.address
        assert board.url == f"http://{host}:{port}/"
    with pytest.raises(OSError):
        socket.create_connection((host, port), timeout=WAIT).close()


# -- the parts --------------------------------------------------------------------------------


def test_rate_history_is_differences_over_time_and_bounded() -> None:
    history = RateHistory(3)
    assert history.sample(10.0, 50, 5) == (0.0, 0.0)  # nothing to compare with yet
    assert history.sample(12.0, 70, 9) == (10.0, 2.0)
    assert history.sample(13.0, 0, 0) == (0.0, 0.0)  # totals went down: no negatives
    history.sample(14.0, 5, 1)
    assert history.to_dict() == {"requests": [10.0, 0.0, 5.0], "failures": [2.0, 0.0, 1.0]}


def test_a_lagging_subscriber_is_cut_off_and_counted_without_holding_up_the_rest() -> None:
    hub = Hub(limit=3, max_clients=2)
    slow = hub.subscribe(b"first")
    fast = hub.subscribe(b"first")
    assert slow is not None and fast is not None
    assert hub.subscribe(b"first") is None and hub.refused == 1
    for index in range(5):
        hub.publish(b"%d" % index)
        assert fast.get(1.0) in (b"first", b"%d" % (index - 1), b"%d" % index)
    assert slow.closed and slow.get(0.0) is None
    assert (hub.dropped, hub.clients) == (1, 1)
    hub.close()
    assert fast.get(1.0) is None


def test_the_demo_serves_its_manager_while_it_runs_and_prints_the_url(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from recovery import dashboard, demo
    from recovery.__main__ import main

    snapshots: list[Any] = []
    real_serve = dashboard.serve

    def serve_and_look(manager: RecoveryManager, **kwargs: Any) -> Dashboard:
        board = real_serve(manager, **kwargs)
        snapshots.append(json.loads(request(board, "GET", "/status.json")[2]))
        return board

    monkeypatch.setattr(dashboard, "serve", serve_and_look)
    assert main(["demo", "--duration", "1", "--seed", "1", "--dashboard"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^dashboard: http://127\.0\.0\.1:\d+/$", out, re.MULTILINE)
    assert [view["name"] for view in snapshots[0]["tiles"]] == list(demo.PLUGINS)
    assert out.rstrip().endswith("threads left: 0")  # the dashboard's threads too


def test_a_tile_carries_rejections_fallbacks_served_and_what_its_window_is(
    boards: Callable[..., Dashboard],
) -> None:
    rm = failing_manager("p")
    try:
        register_loaded(rm, "cached", fallback=lambda: "from cache")
        rm.breaker("cached").force_open()
        for _ in range(3):
            assert rm.execute_with_recovery("cached", lambda: "live") == "from cache"
        data = json.loads(request(boards(rm), "GET", "/status.json")[2])
        cached = tile(data, "plugin:cached")
        assert cached["circuit_breaker"]["total_rejections"] == 3
        assert cached["recovery"]["fallbacks_served"] == 3
        assert cached["circuit_breaker"]["window_size"] == 100  # "failed, last 100 calls"
    finally:
        rm.stop(timeout=5.0)
