"""Shared fixtures: every hot-path test runs against both outcome windows.

The vocabulary: ``clock`` (a FakeClock), ``audit`` (a recording audit logger),
``breaker_cls`` (the breaker on each window), ``make_breaker`` and ``make_manager``.
Plain helpers (``settle``, ``eventually``, ``run_threads``, the stub plugin manager,
the windows) are imported from tests/helpers.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from recovery.breaker import CircuitBreaker
from recovery.config import CircuitBreakerConfig
from recovery.manager import RecoveryConfig, RecoveryManager
from recovery.testing import FakeClock, RecordingAuditLogger
from tests.helpers import (
    WINDOWS,
    MakeBreaker,
    MakeManager,
    StubPluginManager,
    breaker_class,
    closed_after,
    started_managers,
)


@pytest.fixture(params=sorted(WINDOWS))
def breaker_cls(request: pytest.FixtureRequest) -> type[CircuitBreaker]:
    window = WINDOWS[request.param]
    if window is None:
        pytest.skip("the compiled window is not built (CI fails the build instead)")
    return breaker_class(window)


@pytest.fixture
def clock() -> FakeClock:
    """The one fake clock of a test; it starts at 1000, not 0, so code that mistakes a
    time of 0 for "never" fails here. A test that writes absolute times reads its start
    (``clock.monotonic()``) and writes times relative to it."""
    return FakeClock(1000.0)


@pytest.fixture
def audit() -> RecordingAuditLogger:
    return RecordingAuditLogger()


@pytest.fixture
def make_breaker(breaker_cls: type[CircuitBreaker], clock: FakeClock) -> MakeBreaker:
    """``make_breaker(name="dep", **config_fields)`` -> a breaker of the parametrised
    window on the fake clock."""

    def build(name: str = "dep", **fields: Any) -> CircuitBreaker:
        return breaker_cls(name, CircuitBreakerConfig(**fields), clock=clock)

    return build


@pytest.fixture
def plugins() -> Any:
    """The plugin manager ``make_manager`` uses unless given one: stub plugins "p" and "q"
    (a module overrides this fixture to serve other plugins to every manager it makes)."""
    return StubPluginManager("p", "q")


@pytest.fixture
def make_manager(clock: FakeClock, audit: Any, plugins: Any) -> Iterator[MakeManager]:
    """``make_manager(plugin_manager=None, audit_logger=None, **config)`` -> a started manager
    on the fake clock, stopped (bounded) at the end of the test; ``None`` means the ``plugins``
    and ``audit`` fixtures.

    Health checking is off unless the test asks for it: its scheduler would run checks
    whenever the test advances the clock, in the middle of what the test drives.
    """

    def build(
        plugin_manager: Any = None, audit_logger: Any = None, **config: Any
    ) -> RecoveryManager:
        config.setdefault("enable_health_checking", False)
        return RecoveryManager(
            plugins if plugin_manager is None else plugin_manager,
            audit if audit_logger is None else audit_logger,
            RecoveryConfig(**config),
            clock=clock,
        )

    yield from started_managers(build)


@pytest.fixture
def boards() -> Iterator[Callable[..., Any]]:
    """``boards(rm, **serve_kwargs)`` serves a manager's dashboard, stopped after the test
    (tests/dashboard/test_fleet.py has its own, serving the fleet's)."""
    from recovery.dashboard import serve

    yield from closed_after(serve, lambda board: board.stop())


from tests.redis_server import own_redis, redis_url  # noqa: E402, F401  (cluster fixtures)
