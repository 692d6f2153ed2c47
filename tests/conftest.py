"""Shared fixtures: every hot-path test runs against both outcome windows."""

from __future__ import annotations

import importlib
import time
from typing import Any

import pytest

from recovery import _window_py
from recovery.breaker import BreakerMixin, CircuitBreaker
from recovery.config import CircuitBreakerConfig
from recovery.manager import RecoveryManager
from recovery.testing import FakeClock, RecordingAuditLogger


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
    """Advance the clock in small steps until no episode runs (bounded in real time)."""
    deadline = time.monotonic() + limit
    while not rm.wait_idle(0.002):
        assert time.monotonic() < deadline, "episode did not finish"
        if clock.waiting:
            clock.advance(step)

from tests.redis_server import own_redis, redis_url  # noqa: E402, F401  (cluster fixtures)
