"""The dashboard in the words of each kind, over plain HTTP: a dependency is down and probed
(never in a crash loop of restarts), and an early warning is raised and over.

Real managers on fake clocks; the dashboard reads them once a second in real time, so the
waits are the stream's bounded deadlines (tests/dashboard/test_http_and_stream.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from recovery import CircuitBreakerConfig, RecoveryConfig, RecoveryManager
from recovery.dashboard import Dashboard
from recovery.testing import FakeClock
from tests.dashboard.test_http_and_stream import Stream, request, tile, timeline_event
from tests.helpers import settle
from tests.manager.test_early_warning import ParkingClock, Upstream


def entries_of(board: Dashboard, name: str) -> list[dict[str, Any]]:
    timeline = json.loads(request(board, "GET", "/status.json")[2])["timeline"]
    return [entry for entry in timeline if entry["name"] == name]


@pytest.fixture
def stream_of() -> Iterator[Callable[[Dashboard], Stream]]:
    streams: list[Stream] = []

    def make(board: Dashboard) -> Stream:
        streams.append(Stream(board))
        return streams[-1]

    yield make
    for stream in streams:
        stream.close()


def test_a_dependency_is_down_and_probed_never_in_a_crash_loop_of_restarts(
    boards: Callable[..., Dashboard], stream_of: Callable[[Dashboard], Stream],
) -> None:
    clock = FakeClock(1000.0)
    healthy = False
    with RecoveryManager(config=RecoveryConfig(enable_health_checking=False),
                         clock=clock) as rm:
        rm.register_dependency(
            "payments", health_check=lambda: healthy,
            breaker_config=CircuitBreakerConfig(failure_threshold=2, minimum_requests=2))
        board = boards(rm)
        stream = stream_of(board)
        stream.next()  # the snapshot: the readings from here on are compared with it

        def fail() -> None:
            raise ConnectionError("payments said no")

        for _ in range(2):
            with pytest.raises(ConnectionError):
                rm.call("payments", fail)
        settle(rm, clock, step=0.5)
        assert rm.status().plugins["payments"].recovery.crash_loop  # out of service
        _, down = stream.until(timeline_event("recovery", "payments", "down since "))
        assert re.fullmatch(r"down since \d\d:\d\d:\d\d UTC, next probe in \ds", down["text"])
        _, tick = stream.until(lambda event, data: event == "tick" and tile(
            data, "plugin:payments")["recovery"]["crash_loop"])
        view = tile(tick, "plugin:payments")
        assert view["kind"] == "dependency"
        assert view["recovery"]["down_since"] is not None

        healthy = True
        clock.advance(rm.config.crash_loop_delay)  # the next probe passes
        settle(rm, clock, step=0.5)
        stream.until(timeline_event("recovery", "payments", "up again"))
        texts = [entry["text"] for entry in entries_of(board, "payments")]
    assert any(text.startswith("dependency_down: down since ") for text in texts), texts
    assert any(text.startswith("dependency_up: ") for text in texts), texts
    assert "probe failed" in " ".join(texts)
    for word in ("crash loop", "crash_loop", "restart", "marked failed"):
        assert not [text for text in texts if word in text], (word, texts)


def test_an_early_warning_is_raised_on_the_tile_and_the_timeline_and_is_over_there(
    boards: Callable[..., Dashboard], stream_of: Callable[[Dashboard], Stream],
) -> None:
    clock = ParkingClock()
    config = RecoveryConfig(early_warning=True, enable_health_checking=False)
    with RecoveryManager(config=config, clock=clock) as rm:
        rm.register_dependency("payments")
        assert clock.wait_for_waiters(1)
        board = boards(rm)
        stream = stream_of(board)
        stream.next()
        upstream = Upstream(rm, clock, "payments")

        def warned() -> bool:
            warning = rm.status().plugins["payments"].warning
            return warning is not None and warning.active

        upstream.run(240, 0.01)
        assert upstream.run(60, 0.06, until=warned) < 60
        _, raised = stream.until(timeline_event("warning", "payments", "early warning: "))
        assert raised["level"] == "warn"
        assert "failure rate" in raised["text"] and "usually" in raised["text"]
        _, tick = stream.until(lambda event, data: event == "tick" and bool((tile(
            data, "plugin:payments")["warning"] or {}).get("active")))
        warning = tile(tick, "plugin:payments")["warning"]
        assert warning["failure_rate"]["active"] and warning["failure_rate"]["raised"] == 1
        assert not warning["latency"]["active"]

        assert upstream.run(120, 0.01, until=lambda: not warned()) < 120
        _, over = stream.until(timeline_event("warning", "payments", "early warning over"))
        assert over["text"] == "early warning over: failure rate"
        texts = [entry["text"] for entry in entries_of(board, "payments")]
    # Once each: the alert is not on the timeline a second time.
    assert [text for text in texts if "early" in text] == [raised["text"], over["text"]]
