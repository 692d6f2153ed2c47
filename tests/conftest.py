"""Shared fixtures: every hot-path test runs against both outcome windows."""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from recovery import _window_py
from recovery.breaker import BreakerMixin, CircuitBreaker
from recovery.config import CircuitBreakerConfig
from recovery.manager import RecoveryManager
from recovery.testing import FakeClock, RecordingAuditLogger
from tests.helpers import closed_after


def _compiled_window() -> Any:
    try:
        return importlib.import_module("recovery._window").Window
    except ImportError:
        return None


WINDOWS = {"compiled": _compiled_window(), "python": _window_py.Window}


def breaker_class(window: Any) -> type[CircuitBreaker]:
    """The public breaker, built on the given window class."""
    return type("CircuitBreaker", (BreakerMixin, window), {"__doc__": CircuitBreaker.__doc__})


@pytest.fixture(params=sorted(WINDOWS))
def breaker_cls(request: pytest.FixtureRequest) -> type[CircuitBreaker]:
    window = WINDOWS[request.param]
    if window is None:
        pytest.skip("the compiled window is not built (CI fails the build instead)")
    return breaker_class(window)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1000.0)


@pytest.fixture
def audit() -> RecordingAuditLogger:
    return RecordingAuditLogger()


@pytest.fixture
def make(breaker_cls: type[CircuitBreaker], clock: FakeClock) -> Any:
    """``make(**config_fields)`` -> a breaker of the parametrised window on the fake clock."""

    def build(name: str = "dep", **fields: Any) -> CircuitBreaker:
        return breaker_cls(name, CircuitBreakerConfig(**fields), clock=clock)

    return build


def settle(
    rm: RecoveryManager, clock: FakeClock, step: float = 1.0, limit: float = 10.0
) -> None:
    """Advance the clock in small steps until no episode runs (bounded in real time).

    The clock moves only while the manager is quiescent (``rm.is_quiescent()``):
    every episode waits for time itself to pass, as a verification waiting for a
    half-open trial that no call will make. While a strategy, a ``can_handle`` or a
    verifying health check runs on its thread, the episode waits for that thread,
    not for time, and a step would be read as time the run took: five 1 s steps
    (10 ms of real time) abandon a 5 s strategy that a loaded machine has not
    finished yet, and the steps run the health monitor's checks in the middle of
    the episode. A test that wants a run to time out advances the clock itself.
    """
    deadline = time.monotonic() + limit
    while not rm.wait_idle(0.002):
        assert time.monotonic() < deadline, "episode did not finish"
        if clock.waiting and rm.is_quiescent():
            clock.advance(step)


@pytest.fixture
def boards() -> Iterator[Callable[..., Any]]:
    """``boards(rm, **serve_kwargs)`` serves a manager's dashboard, stopped after the test
    (tests/test_dashboard_fleet.py has its own, serving the fleet's)."""
    from recovery.dashboard import serve

    yield from closed_after(serve, lambda board: board.stop())


from tests.redis_server import own_redis, redis_url  # noqa: E402, F401  (cluster fixtures)
