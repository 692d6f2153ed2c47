"""The dashboard under abuse: hostile names, too many or too slow connections, resets,
deeply nested control bodies. Each promise is bounded: nothing here waits longer than
a socket timeout or a deadline of a few seconds.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable

from recovery.breaker import CircuitBreaker
from recovery.dashboard import Dashboard
from tests.test_dashboard import TOKEN, Stream, failing_manager, post, request, tile

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
