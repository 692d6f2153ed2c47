"""The recovery manager under hostile input and misbehaving callbacks.

Each test is the regression test of one finding of an adversarial review: an
overflowing back-off, a blocking ``can_handle``, ``stop()`` from an alert handler,
registration that accepted what a later step choked on, an alert that came late,
an exception that cannot be printed, a ``recover()`` that reported failure by
returning it. Time comes from a FakeClock; threads are joined with bounds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from recovery.alerts import Alert
from recovery.failures import FailureInfo
from recovery.manager import RecoveryConfig, RecoveryManager
from recovery.state import CircuitBreakerState
from recovery.strategies import CustomStrategy, RecoveryContext
from recovery.testing import FakeClock, RecordingAuditLogger
from tests.conftest import settle
from tests.test_manager import Plugins

OPEN = CircuitBreakerState.OPEN
REPAIRING = CircuitBreakerState.REPAIRING

Make = Callable[..., RecoveryManager]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make(clock: FakeClock, audit: RecordingAuditLogger) -> Iterator[Make]:
    managers: list[RecoveryManager] = []

    def build(plugins: Any = None, **config: Any) -> RecoveryManager:
        config.setdefault("enable_health_checking", False)
        rm = RecoveryManager(plugins if plugins is not None else Plugins("p", "q"), audit,
                             RecoveryConfig(**config), clock=clock)
        managers.append(rm)
        rm.start()
        return rm

    yield build
    for rm in managers:
        rm.stop(timeout=5.0)


def failing(name: str = "bad") -> CustomStrategy:
    def recover(plugin_name: str, failure: FailureInfo, ctx: RecoveryContext) -> None:
        raise RuntimeError(f"{name} cannot fix {plugin_name}")

    return CustomStrategy(name, 1, lambda f: True, recover)


# -- back-off overflow ----------------------------------------------------------------------


@pytest.mark.parametrize(("factor", "attempts"), [(1e200, 4), (2.0, 1100)])
def test_a_backoff_that_would_overflow_is_capped_and_the_episode_is_exhausted(
    make: Make, clock: FakeClock, audit: RecordingAuditLogger, factor: float, attempts: int
) -> None:
    alerts: list[Alert] = []
    rm = make(plugin_recovery_strategies={"p": "bad"}, max_recovery_attempts=attempts,
              recovery_backoff_factor=factor, max_recovery_backoff=60.0)
    rm.add_alert_handler(alerts.append)
    rm.register_strategy("bad", failing())
    rm.register_plugin("p")
    rm.record_failure("p", FailureInfo("error"))
    settle(rm, clock)
    assert len(audit.records) == attempts
    assert "recovery_exhausted" in [alert.kind for alert in alerts]
    assert rm.get_recovery_status()["plugins"]["p"]["recovery"]["failed_reason"] == "exhausted"


def test_backoff_is_capped_for_any_attempt() -> None:
    config = RecoveryConfig(recovery_backoff_factor=1e200, max_recovery_backoff=60.0)
    assert config.backoff(1) == 1.0
    assert config.backoff(2) == 60.0
    assert config.backoff(10**6) == 60.0
    assert RecoveryConfig().backoff(1100) == RecoveryConfig().max_recovery_backoff
