"""Verified recovery, holds and the crash loop's early end, on a FakeClock.

An action is not a recovery: the manager verifies the plugin after it (health
check once, or the breaker's half-open trials), audits the verdict, and writes
the action's own result and the verification's through the detailed audit path
when the logger has it. A strategy's hold is a hold: health checks during it do
not let a trial through.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from recovery.config import CircuitBreakerConfig
from recovery.failures import FailureInfo
from recovery.health import HealthCheckConfig
from recovery.manager import RecoveryConfig, RecoveryManager
from recovery.state import CircuitBreakerState
from recovery.testing import FakeClock
from tests.helpers import MakeManager, StubPluginManager, eventually, settle

CLOSED = CircuitBreakerState.CLOSED
OPEN = CircuitBreakerState.OPEN
HALF_OPEN = CircuitBreakerState.HALF_OPEN


class DetailedAudit:
    """An audit logger with the detailed path: the manager must call only that."""

    def __init__(self) -> None:
        self.attempts: list[tuple[str, str, str, bool, bool, bool | None]] = []
        self.plain: list[tuple[str, str, str, bool]] = []
        self._lock = threading.Lock()

    def log_failure_recovery(self, plugin_name: str, failure_type: str, recovery_action: str,
                             success: bool) -> None:
        with self._lock:
            self.plain.append((plugin_name, failure_type, recovery_action, success))

    def log_recovery_attempt(self, plugin_name: str, failure_type: str, recovery_action: str,
                             success: bool, *, action_succeeded: bool,
                             verified: bool | None) -> None:
        with self._lock:
            self.attempts.append((plugin_name, failure_type, recovery_action, success,
                                  action_succeeded, verified))


class PlainAudit:
    """A user's four-argument logger."""

    def __init__(self) -> None:
        self.records: list[tuple[str, str, str, bool]] = []

    def log_failure_recovery(self, plugin_name: str, failure_type: str, recovery_action: str,
                             success: bool) -> None:
        self.records.append((plugin_name, failure_type, recovery_action, success))


@pytest.fixture
def audit() -> DetailedAudit:
    """Here every manager ``make_manager`` builds audits through the detailed path."""
    return DetailedAudit()


@pytest.fixture
def plugins() -> StubPluginManager:
    return StubPluginManager("p")


def recovery_of(rm: RecoveryManager) -> dict[str, Any]:
    return rm.get_recovery_status()["plugins"]["p"]["recovery"]  # type: ignore[no-any-return]


def test_a_health_check_verifies_each_action_and_the_audit_tells_both(
    make_manager: MakeManager, clock: FakeClock, audit: DetailedAudit
) -> None:
    answers = iter([False, True])
    rm = make_manager(enable_health_checking=True, plugin_recovery_strategies={"p": "restart"})
    breaker = rm.register_plugin("p", health_check=lambda: next(answers))
    rm.record_failure("p", FailureInfo("error"))
    settle(rm, clock)
    assert audit.attempts == [
        ("p", "error", "restart", False, True, False),  # restarted, still not well
        ("p", "error", "restart", True, True, True),
    ]
    assert audit.plain == []  # the detailed path only
    assert breaker.state is HALF_OPEN
    assert recovery_of(rm)["failed"] is False


def test_without_a_health_check_the_half_open_trials_verify(
    make_manager: MakeManager, clock: FakeClock, audit: DetailedAudit
) -> None:
    rm = make_manager(plugin_recovery_strategies={"p": "restart"}, enable_health_checking=False)
    breaker = rm.register_plugin("p")
    rm.record_failure("p", FailureInfo("error"))
    eventually(lambda: breaker.state is HALF_OPEN)
    with pytest.raises(ConnectionError):  # the first trial fails: reopened
        breaker.call(_raise, ConnectionError("still down"))
    # The back-off passes at once on a FakeClock; the next attempt: half-open again.
    eventually(lambda: recovery_of(rm)["attempts"] == 2 and breaker.state is HALF_OPEN)
    for _ in range(breaker.config.success_threshold):
        breaker.call(lambda: None)
    assert rm.wait_idle(5)
    assert breaker.state is CLOSED
    assert audit.attempts == [
        ("p", "error", "restart", False, True, False),
        ("p", "error", "restart", True, True, True),
    ]


def _raise(exc: BaseException) -> None:
    raise exc


def test_no_call_within_verify_timeout_leaves_it_half_open_unverified(
    make_manager: MakeManager, clock: FakeClock, audit: DetailedAudit
) -> None:
    rm = make_manager(plugin_recovery_strategies={"p": "restart"}, enable_health_checking=False,
                      verify_timeout=2.0)
    breaker = rm.register_plugin("p")
    rm.record_failure("p", FailureInfo("error"))
    eventually(lambda: breaker.state is HALF_OPEN)
    assert clock.wait_for_waiters(1)
    clock.advance(1.9)
    assert not rm.wait_idle(0.02)
    clock.advance(0.1)
    assert rm.wait_idle(5)
    assert audit.attempts == [("p", "error", "restart", True, True, None)]
    assert breaker.state is HALF_OPEN  # the next call is the trial
    assert (recovery_of(rm)["failed"], recovery_of(rm)["crash_loop"]) == (False, False)


def test_a_four_argument_logger_gets_the_verdict(
    make_manager: MakeManager, clock: FakeClock
) -> None:
    plain = PlainAudit()
    answers = iter([False, True])
    rm = make_manager(audit_logger=plain, enable_health_checking=True,
                      plugin_recovery_strategies={"p": "restart"})
    rm.register_plugin("p", health_check=lambda: next(answers))
    rm.record_failure("p", FailureInfo("error"))
    settle(rm, clock)
    assert plain.records == [("p", "error", "restart", False), ("p", "error", "restart", True)]


def test_a_backoff_hold_is_a_hold(make_manager: MakeManager, clock: FakeClock,
                                  audit: DetailedAudit) -> None:
    checks: list[float] = []

    def check() -> bool:
        checks.append(clock.monotonic())
        return True

    rm = make_manager(enable_health_checking=True, plugin_recovery_strategies={"p": "backoff"},
                      recovery_strategy_configs={"backoff": {"base": 10.0, "jitter": 0.0}})
    breaker = rm.register_plugin(
        "p", CircuitBreakerConfig(timeout=100.0, health_check_interval=1.0),
        health_check=check,
    )
    rm.record_failure("p", FailureInfo("error"))
    assert rm.wait_idle(5)
    assert audit.attempts == [("p", "error", "backoff", True, True, None)]
    assert breaker.state is OPEN
    # Healthy checks during the hold are recorded; the breaker stays open.
    for _ in range(5):
        clock.advance(1.0)
        count = len(checks)
        eventually(lambda count=count: len(checks) > count)  # type: ignore[misc]
        eventually(lambda: rm.get_recovery_status()["plugins"]["p"]["health_check"][
            "consecutive_fails"] == 0 and breaker.metrics().health_check_success is True)
        assert breaker.state is OPEN
    clock.advance(10.0 - 5.0)  # the hold has ended: the next healthy check lets a trial in
    eventually(lambda: breaker.state is HALF_OPEN)


def test_a_passing_health_check_ends_a_crash_loop_wait_early(
    make_manager: MakeManager, clock: FakeClock, audit: DetailedAudit
) -> None:
    healthy = threading.Event()
    rm = make_manager(enable_health_checking=True, plugin_recovery_strategies={"p": "restart"},
                      max_recovery_attempts=1, crash_loop_delay=100.0)
    breaker = rm.register_plugin(
        "p", CircuitBreakerConfig(health_check_interval=1.0), health_check=healthy.is_set,
        health_check_config=HealthCheckConfig(interval=1.0, max_failures=1000),
    )
    rm.record_failure("p", FailureInfo("error"))
    settle(rm, clock)
    assert recovery_of(rm)["crash_loop"] is True
    assert audit.attempts == [("p", "error", "restart", False, True, False)]
    healthy.set()
    clock.advance(1.0)  # far less than the crash loop's 100 s delay
    eventually(lambda: len(audit.attempts) == 2)
    assert rm.wait_idle(5)
    assert audit.attempts[-1] == ("p", "error", "restart", True, True, True)
    assert (recovery_of(rm)["crash_loop"], recovery_of(rm)["failed"]) == (False, False)
    assert breaker.state is HALF_OPEN


def test_the_crash_loop_delay_grows_across_loops_until_a_stable_period(
    make_manager: MakeManager, clock: FakeClock
) -> None:
    from recovery.strategies import CustomStrategy

    outcomes = iter([False, None, False, None, False])
    rm = make_manager(enable_health_checking=True, plugin_recovery_strategies={"p": "fix"},
                      max_recovery_attempts=1, crash_loop_delay=5.0, stable_period=50.0)
    rm.register_strategy("fix", CustomStrategy("fix", 1, lambda f: True,
                                               lambda n, f, c: next(outcomes)))
    quiet = HealthCheckConfig(interval=1000.0)
    rm.register_plugin("p", CircuitBreakerConfig(health_check_interval=1000.0),
                       health_check=lambda: True, health_check_config=quiet)
    plugin = rm._plugins["p"]

    def loop_then_recover(expected_delay: float) -> None:
        rm.record_failure("p", FailureInfo("error"))  # the action fails: a crash loop
        settle(rm, clock)
        assert plugin.crash_loop and plugin.crash_delay == expected_delay
        assert clock.wait_for_waiters(1)
        clock.advance(expected_delay)  # the probe's action works and the check passes
        eventually(lambda: not plugin.crash_loop)
        assert rm.wait_idle(5)

    loop_then_recover(5.0)
    clock.advance(10.0)
    loop_then_recover(10.0)  # soon again: the delay doubled
    clock.advance(50.0)  # a stable period without trouble forgets it
    rm.record_failure("p", FailureInfo("error"))
    settle(rm, clock)
    assert plugin.crash_delay == 5.0


def test_stop_cuts_a_verification_short_without_a_verdict(audit: DetailedAudit) -> None:
    rm = RecoveryManager(StubPluginManager("p"), audit,
                         RecoveryConfig(enable_health_checking=False, verify_timeout=1000.0,
                                        plugin_recovery_strategies={"p": "restart"}))
    breaker = rm.register_plugin("p")
    rm.start()
    rm.record_failure("p", FailureInfo("error"))
    eventually(lambda: breaker.state is HALF_OPEN)  # the verification waits for a trial
    started = time.monotonic()
    rm.stop(timeout=5.0)
    assert time.monotonic() - started < 2.0
    assert audit.attempts == [("p", "error", "restart", True, True, None)]
