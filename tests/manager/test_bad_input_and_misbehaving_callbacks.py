"""The recovery manager under hostile input and misbehaving callbacks.

Each test is the regression test of one finding of an adversarial review: an
overflowing back-off, a blocking ``can_handle``, ``stop()`` from an alert handler,
registration that accepted what a later step choked on, an alert that came late,
an exception that cannot be printed, a ``recover()`` that reported failure by
returning it. Time comes from a FakeClock; threads are joined with bounds.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest

from recovery.alerts import Alert, AlertThresholds
from recovery.failures import FailureInfo
from recovery.manager import RecoveryConfig, RecoveryManager
from recovery.state import CircuitBreakerState
from recovery.strategies import CustomStrategy, RecoveryContext
from recovery.testing import FakeClock, RecordingAuditLogger
from tests.helpers import (
    MakeManager,
    StubPluginManager,
    eventually,
    failing_strategy,
    recovery_threads,
    settle,
)

OPEN = CircuitBreakerState.OPEN
REPAIRING = CircuitBreakerState.REPAIRING

# -- back-off overflow ----------------------------------------------------------------------


@pytest.mark.parametrize(("factor", "attempts"), [(1e200, 4), (2.0, 1100)])
def test_a_backoff_that_would_overflow_is_capped_and_the_episode_is_exhausted(
    make_manager: MakeManager, clock: FakeClock, audit: RecordingAuditLogger, factor: float,
    attempts: int,
) -> None:
    alerts: list[Alert] = []
    rm = make_manager(plugin_recovery_strategies={"p": "bad"}, max_recovery_attempts=attempts,
                      recovery_backoff_factor=factor, max_recovery_backoff=60.0)
    rm.add_alert_handler(alerts.append)
    rm.register_strategy("bad", failing_strategy())
    rm.register_plugin("p")
    rm.record_failure("p", FailureInfo("error"))
    settle(rm, clock)
    assert len(audit.records) == attempts
    assert "crash_loop" in [alert.kind for alert in alerts]  # exhausted: a crash loop
    recovery = rm.get_recovery_status()["plugins"]["p"]["recovery"]
    assert (recovery["failed_reason"], recovery["crash_loop"]) == ("exhausted", True)


def test_backoff_is_capped_for_any_attempt() -> None:
    config = RecoveryConfig(recovery_backoff_factor=1e200, max_recovery_backoff=60.0)
    assert config.backoff(1) == 1.0
    assert config.backoff(2) == 60.0
    assert config.backoff(10**6) == 60.0
    assert RecoveryConfig().backoff(1100) == RecoveryConfig().max_recovery_backoff


# -- bad input is refused where it is given ------------------------------------------------


@pytest.mark.parametrize(
    "field",
    ["health_check_interval", "health_check_timeout", "recovery_backoff_base",
     "max_recovery_backoff", "strategy_timeout"],
)
def test_interval_fields_have_a_10_ms_floor(field: str) -> None:
    with pytest.raises(ValueError, match=rf"{field} must be .* >= 0.01, got 1e-07"):
        RecoveryConfig(**{field: 1e-7})
    assert getattr(RecoveryConfig(**{field: 0.01}), field) == 0.01


@pytest.mark.parametrize(
    ("plugin_manager", "audit_logger", "field"),
    [(5, RecordingAuditLogger(), "plugin_manager"),
     (StubPluginManager("p"), 5, "audit_logger")],
)
def test_manager_refuses_wrong_collaborators(
    plugin_manager: Any, audit_logger: Any, field: str
) -> None:
    with pytest.raises(TypeError, match=field):
        RecoveryManager(plugin_manager, audit_logger)


def test_register_strategy_checks_the_strategy_at_registration(make_manager: MakeManager) -> None:
    rm = make_manager()
    strategy = failing_strategy("odd")
    strategy.priority = "high"  # type: ignore[assignment]
    with pytest.raises(TypeError, match="priority of strategy 'odd' must be an int, got 'high'"):
        rm.register_strategy("odd", strategy)
    with pytest.raises(TypeError, match="strategy name must be a str"):
        rm.register_strategy(5, failing_strategy())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="strategy name must not be empty"):
        rm.register_strategy(" ", failing_strategy())
    # Nothing half-registered: the name is free and episodes still run the chain.
    rm.register_strategy("odd", failing_strategy("odd"))


def test_register_plugin_checks_the_health_check_config_at_registration(
    make_manager: MakeManager
) -> None:
    rm = make_manager()
    with pytest.raises(TypeError, match="health_check_config must be a HealthCheckConfig"):
        rm.register_plugin("p", health_check=lambda: True,
                           health_check_config={"interval": 1})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="plugin name must be a str"):
        rm.register_plugin(5)  # type: ignore[arg-type]
    rm.register_plugin("p")  # the name was not taken by the refused call


def _wait_for_no_threads_but(before: set[threading.Thread]) -> None:
    for thread in recovery_threads() - before:
        thread.join(5)
    assert recovery_threads() - before == set()


def test_start_is_all_or_nothing(
    clock: FakeClock, audit: RecordingAuditLogger, monkeypatch: pytest.MonkeyPatch
) -> None:
    from recovery import health

    before = recovery_threads()
    rm = RecoveryManager(StubPluginManager("p"), audit, RecoveryConfig(), clock=clock)
    rm.register_plugin("p", health_check=lambda: True)

    def broken_start(self: health.HealthMonitor) -> None:
        raise RuntimeError("can't start new thread")

    with monkeypatch.context() as patch:
        patch.setattr(health.HealthMonitor, "start", broken_start)
        with pytest.raises(RuntimeError, match="can't start"):
            rm.start()
    assert rm.get_recovery_status()["running"] is False
    _wait_for_no_threads_but(before)
    rm.start()  # not a no-op: it really starts
    try:
        assert rm.get_recovery_status()["running"] is True
        assert rm.get_recovery_status()["plugins"]["p"]["health_check"]["enabled"] is True
    finally:
        rm.stop()
    _wait_for_no_threads_but(before)


# -- hangs ---------------------------------------------------------------------------------


def test_a_blocking_can_handle_is_bounded_and_stop_leaves_no_breaker_repairing(
    make_manager: MakeManager, clock: FakeClock, audit: RecordingAuditLogger
) -> None:
    release, entered = threading.Event(), threading.Event()

    def can_handle(failure: FailureInfo) -> bool:
        if failure.message == "hang":
            entered.set()
            release.wait(30)
        return False

    rm = make_manager(recovery_workers=1, strategy_timeout=5.0)
    rm.register_strategy("sticky", CustomStrategy("sticky", 1000, can_handle,
                                                  lambda n, f, c: None))
    rm.register_plugin("p")
    rm.register_plugin("q")
    try:
        rm.record_failure("p", FailureInfo("error", message="hang"))
        rm.record_failure("q", FailureInfo("error"))
        assert entered.wait(5)
        assert clock.wait_for_waiters(1)
        clock.advance(5.0)  # can_handle abandoned: p's chain goes on, then q's episode runs
        settle(rm, clock)
        assert rm.breaker("p").state is not REPAIRING
        assert rm.breaker("q").state is not REPAIRING
        assert ("q", "error", "restart", True) in audit.records

        # The same hang with stop(): stop keeps its time and opens what it gives up on.
        entered.clear()
        rm.record_failure("p", FailureInfo("error", message="hang"))
        rm.record_failure("q", FailureInfo("error"))
        assert entered.wait(5)
        started = time.monotonic()
        rm.stop(timeout=2.0)
        assert time.monotonic() - started < 3.0
        assert rm.breaker("p").state is OPEN
        assert rm.breaker("q").state is OPEN
    finally:
        release.set()


def test_stop_from_an_alert_handler_stops_every_thread(
    clock: FakeClock, audit: RecordingAuditLogger, caplog: pytest.LogCaptureFixture
) -> None:
    before = recovery_threads()
    rm = RecoveryManager(
        StubPluginManager("p"), audit,
        RecoveryConfig(plugin_recovery_strategies={"p": "bad"}, max_recovery_attempts=1),
        clock=clock,
    )
    rm.register_strategy("bad", failing_strategy())
    rm.register_plugin("p", health_check=lambda: True)
    stopped = threading.Event()

    def handler(alert: Alert) -> None:
        rm.stop(timeout=5.0)  # on the worker thread that ran the episode
        stopped.set()

    rm.add_alert_handler(handler)
    rm.start()
    assert any(t.name == "recovery-health-scheduler" for t in recovery_threads() - before)
    rm.record_failure("p", FailureInfo("error"))
    assert stopped.wait(5)
    _wait_for_no_threads_but(before)
    assert "cannot join current thread" not in caplog.text
    assert rm.get_recovery_status()["running"] is False
    rm.stop()  # a second stop is harmless


# -- wrong results -------------------------------------------------------------------------


def test_recovery_time_alert_fires_at_the_threshold_not_when_the_strategy_returns(
    make_manager: MakeManager, clock: FakeClock
) -> None:
    release, started = threading.Event(), threading.Event()

    def recover(name: str, failure: FailureInfo, ctx: RecoveryContext) -> None:
        started.set()
        release.wait(30)

    alerts: list[Alert] = []
    rm = make_manager(plugin_recovery_strategies={"p": "slow"}, strategy_timeout=30.0,
                      alert_thresholds=AlertThresholds(recovery_time=0.2))
    rm.add_alert_handler(alerts.append)
    rm.register_strategy("slow", CustomStrategy("slow", 1, lambda f: True, recover))
    rm.register_plugin("p")
    try:
        rm.record_failure("p", FailureInfo("error"))
        assert started.wait(5)
        assert clock.wait_for_waiters(1)
        clock.advance(0.1)
        assert alerts == []
        clock.advance(0.1)
        eventually(lambda: alerts, 5, "no recovery_time alert while the strategy hangs")
        assert [a.kind for a in alerts] == ["recovery_time"]
        assert "0.2s" in alerts[0].message
    finally:
        release.set()
    settle(rm, clock)
    assert [a.kind for a in alerts] == ["recovery_time"]


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no str for you")


@pytest.mark.parametrize("classifier", ["default", "str-calling"])
def test_an_exception_whose_str_raises_still_starts_an_episode(
    clock: FakeClock, audit: RecordingAuditLogger, classifier: str
) -> None:
    from recovery.config import CircuitBreakerConfig

    def by_str(exc: BaseException) -> FailureInfo:
        return FailureInfo("error", message=str(exc))

    kwargs: dict[str, Any] = {} if classifier == "default" else {"classifier": by_str}
    rm = RecoveryManager(StubPluginManager("p"), audit,
                         RecoveryConfig(enable_health_checking=False,
                                        plugin_recovery_strategies={"p": "reset"}),
                         clock=clock, **kwargs)
    with rm:
        rm.register_plugin("p", CircuitBreakerConfig(failure_threshold=1, minimum_requests=1))
        with pytest.raises(Unprintable):
            rm.execute_with_recovery("p", _raise, Unprintable())
        settle(rm, clock)
        assert [record[2] for record in audit.records] == ["reset"]


def _raise(exc: BaseException) -> None:
    raise exc


@pytest.mark.parametrize("result", [False, "failed", 0])
def test_recover_returning_a_failure_is_a_failed_attempt(
    make_manager: MakeManager, clock: FakeClock, audit: RecordingAuditLogger, result: object,
    caplog: pytest.LogCaptureFixture,
) -> None:
    rm = make_manager()
    rm.register_strategy("liar", CustomStrategy("liar", 1000, lambda f: True,
                                                lambda n, f, c: result))
    rm.register_plugin("p")
    with caplog.at_level(logging.WARNING):
        rm.record_failure("p", FailureInfo("error"))
        settle(rm, clock)
    assert audit.records[:2] == [("p", "error", "liar", False), ("p", "error", "restart", True)]
    assert "taken as a failed attempt" in caplog.text


def test_recover_returning_none_or_true_is_done(
    make_manager: MakeManager, clock: FakeClock, audit: RecordingAuditLogger
) -> None:
    rm = make_manager()
    rm.register_strategy("yes", CustomStrategy("yes", 1000, lambda f: True,
                                               lambda n, f, c: True))
    rm.register_plugin("p")
    rm.record_failure("p", FailureInfo("error"))
    settle(rm, clock)
    assert audit.records == [("p", "error", "yes", True)]
