"""The dashboard under abuse: hostile names, too many or too slow connections, resets,
deeply nested control bodies. Each promise is bounded: nothing here waits longer than
a socket timeout or a deadline of a few seconds.
"""

from __future__ import annotations

import json
import logging
import os
import select
import socket
import struct
import threading
import time
from collections.abc import Callable

import pytest

from recovery.breaker import CircuitBreaker
from recovery.dashboard import Dashboard, server
from tests.dashboard.test_http_and_stream import (
    TOKEN,
    WAIT,
    Stream,
    failing_manager,
    post,
    request,
    tile,
)
from tests.helpers import eventually

SURROGATE = os.fsdecode(b"plugin-\xff")  # "plugin-\udcff": a name from a file name


def test_a_name_with_a_lone_surrogate_is_served_on_every_route(
    boards: Callable[..., Dashboard],
) -> None:
    rm = failing_manager(SURROGATE, "p")
    extra = CircuitBreaker("breaker-\udcfe")
    try:
        board = boards(rm, token=TOKEN, allow_control=True, breakers=[extra])
        rm.execute_with_recovery(SURROGATE, lambda: None)
        status, _, body = request(board, "GET", "/metrics")
        assert status == 200  # was a 500 (UnicodeEncodeError), an empty scrape for all
        text = body.decode("utf-8")
        assert 'recovery_requests_total{plugin="plugin-\\\\udcff"} 1.0' in text
        assert 'recovery_requests_total{plugin="p"} 0.0' in text
        status, _, body = request(board, "GET", "/status.json")
        data = json.loads(body)
        assert status == 200 and tile(data, f"plugin:{SURROGATE}")["name"] == SURROGATE
        assert tile(data, "breaker:breaker-\udcfe")["name"] == "breaker-\udcfe"
        stream = Stream(board)
        try:
            event, snapshot = stream.next()
            assert event == "snapshot"
            assert tile(snapshot, f"plugin:{SURROGATE}")["name"] == SURROGATE
        finally:
            stream.close()
        assert post(board, "/control/force-open", {"plugin": SURROGATE})[0] == 200
        assert rm.breaker(SURROGATE).state.value == "open"
        assert post(board, "/control/force-open", {"breaker": "breaker-\udcfe"})[0] == 200
        assert extra.state.value == "open"
    finally:
        rm.stop(timeout=5.0)


# -- connections: capped, and a request must arrive whole in time ------------------------


def connection_threads() -> int:
    return sum(t.name == "recovery-dashboard-connection" for t in threading.enumerate())


def half_sent(board: Dashboard) -> socket.socket:
    """A connection that sends the start of a request and then nothing."""
    sock = socket.create_connection(board.address, timeout=WAIT)
    sock.sendall(b"GET /status.json HTTP/1.0\r\nHost: 127.0.0.1\r\n")
    return sock


def answer(sock: socket.socket) -> bytes:
    """What the server sent before it closed the connection (b"" if it reset it)."""
    chunks = []
    try:
        while chunk := sock.recv(4096):
            chunks.append(chunk)
    except ConnectionResetError:
        pass
    return b"".join(chunks)


def test_connections_past_the_cap_are_refused_at_once_without_a_thread(
    boards: Callable[..., Dashboard], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(server, "MAX_CONNECTIONS", 8, raising=False)
    rm = failing_manager("p")
    try:
        board = boards(rm)
        held = [half_sent(board) for _ in range(8)]
        eventually(lambda: connection_threads() == 8, WAIT, "the first 8 each hold a thread")
        refused = [half_sent(board) for _ in range(22)]
        for sock in refused:  # answered and closed at once, not after the request deadline
            reply = answer(sock)
            assert reply == b"" or reply.startswith(b"HTTP/1.0 503"), reply
        assert connection_threads() == 8  # was one thread per connection: 30 here
        assert board.connections == {"open": 8, "refused": 22, "slow": 0, "reset": 0}
        for sock in held + refused:
            sock.close()
        eventually(lambda: board.connections["open"] == 0, WAIT, "the held ones closed")
        assert request(board, "GET", "/status.json")[0] == 200
    finally:
        rm.stop(timeout=5.0)


def test_a_request_that_trickles_in_is_cut_at_the_deadline(
    boards: Callable[..., Dashboard], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(server, "REQUEST_DEADLINE", 1.0, raising=False)
    rm = failing_manager("p")
    try:
        board = boards(rm)
        sock = half_sent(board)
        started = time.monotonic()
        cut = None
        # A byte every 0.2 s: each read is far inside the socket's 10 s timeout.
        while time.monotonic() - started < 6.0:
            try:
                sock.sendall(b"X")
            except OSError:
                cut = time.monotonic() - started
                break
            readable, _, _ = select.select([sock], [], [], 0.2)
            if readable and answer(sock) == b"":
                cut = time.monotonic() - started
                break
        sock.close()
        assert cut is not None, "the trickling sender was never cut"
        assert cut < 4.0
        assert board.connections["slow"] == 1
    finally:
        rm.stop(timeout=5.0)


# -- a reset costs a counted line, a deep body a 400 ----------------------------------------


def test_clients_that_reset_their_connection_cost_no_traceback(
    boards: Callable[..., Dashboard], capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    rm = failing_manager("p")
    try:
        board = boards(rm)
        caplog.set_level(logging.DEBUG, logger="recovery.dashboard")
        for _ in range(20):
            sock = half_sent(board)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()  # with linger 0: a reset, not a goodbye
        # Taken in order: once a later request is answered, the server has taken all 20.
        assert request(board, "GET", "/status.json")[0] == 200
        eventually(lambda: connection_threads() == 0, WAIT, "every reset connection ended")
        assert "Traceback" not in capfd.readouterr().err  # was 27 lines a reset
        assert board.connections == {"open": 0, "refused": 0, "slow": 0, "reset": 20}
        lines = [r for r in caplog.records  # all but the one request's access line
                 if r.name == "recovery.dashboard" and r.funcName != "log_message"]
        assert len(lines) <= 20
        assert not [r for r in lines if r.exc_info or r.levelno > logging.DEBUG]
    finally:
        rm.stop(timeout=5.0)


@pytest.mark.parametrize(("body", "status", "says"), [
    (b"[" * 4000, 400, "nested deeper than"),
    (b'{"plugin": ' + b"[" * 3 + b"]" * 3 + b"}", 400, "the body must be"),
    (b'{"plugin": "' + b"[" * 100 + b'"}', 404, "unknown plugin"),  # brackets in a string
    (b'{"plugin": "\\"[[[[[[[[["}', 404, "unknown plugin"),
    (b"\xff\xfe", 400, ""),
])
def test_control_bodies_are_parsed_with_bounded_depth(
    boards: Callable[..., Dashboard], body: bytes, status: int, says: str,
) -> None:
    rm = failing_manager("p")
    try:
        board = boards(rm, token=TOKEN, allow_control=True)
        host, port = board.address
        headers = {"Origin": f"http://{host}:{port}", "X-Recovery-Token": TOKEN}
        got, _, reply = request(board, "POST", "/control/reset", body, headers)
        assert got == status  # "[" * 4000 was a RecursionError: no answer at all
        assert says in json.loads(reply)["error"]
    finally:
        rm.stop(timeout=5.0)
