"""Nothing a user supplies, and no value a config holds, stalls or kills the manager.

Each test is the regression test of one finding of an adversarial review of the
manager: a delay past what a timer holds, a timer that slept past a deadline the
clock had reached, alert handlers on the caller's thread, a BaseException from
an audit logger or an alert handler, a blocking audit logger, threads abandoned
without bound, and verification holding a worker for its whole timeout. Time is
a FakeClock's (the overflow, which only a real timer shows, excepted); threads
are joined with bounds.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest

from recovery._clock import MonotonicClock
from recovery.alerts import Alert, AlertThresholds
from recovery.failures import FailureInfo
from recovery.manager import RecoveryConfig, RecoveryManager
from recovery.state import CircuitBreakerState
from recovery.strategies import CustomStrategy
from recovery.testing import FakeClock, RecordingAuditLogger
from tests.helpers import (
    MakeManager,
    StubPlugin,
    StubPluginManager,
    eventually,
    failing_strategy,
    no_episode,
    recovery_threads,
    settle,
)

OPEN = CircuitBreakerState.OPEN
HALF_OPEN = CircuitBreakerState.HALF_OPEN
TIMER = "recovery-crash-loop-timer"


def _crash_looping(rm: RecoveryManager, *names: str) -> None:
    """Give every plugin named a strategy that always fails ("bad")."""
    rm.register_strategy("bad", failing_strategy())
    for name in names:
        rm.register_plugin(name)


def _workers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("recovery-worker")]


# -- durations past what a timer holds ------------------------------------------------------------


class _TimerWaits(MonotonicClock):
    """The real clock, remembering how long the crash-loop timer asked to wait."""

    def __init__(self) -> None:
        self.timer_waits: list[float] = []

    def wait(self, event: threading.Event, timeout: float) -> bool:
        if threading.current_thread().name == TIMER:
            self.timer_waits.append(timeout)
        return super().wait(event, timeout)


def test_a_crash_loop_delay_past_what_a_timer_holds_leaves_the_timer_alive(
    audit: RecordingAuditLogger,
) -> None:
    clock = _TimerWaits()
    config = RecoveryConfig(
        enable_health_checking=False, plugin_recovery_strategies={"p": "bad"},
        max_recovery_attempts=1, crash_loop_delay=1e10, crash_loop_max_delay=1e10)
    with RecoveryManager(StubPluginManager("p"), audit, config, clock=clock) as rm:
        _crash_looping(rm, "p")
        rm.record_failure("p", FailureInfo("error"))
        assert rm.wait_idle(5.0)
        assert rm.get_recovery_status()["plugins"]["p"]["recovery"]["crash_loop"] is True
        eventually(lambda: clock.timer_waits, message="the timer never waited")
        # 1e10 s is more than threading can wait for (OverflowError killed the timer).
        assert max(clock.timer_waits) <= threading.TIMEOUT_MAX
        assert any(t.name == TIMER for t in threading.enumerate())


# -- a deadline reached before the timer waits for it ---------------------------------------------


class _StepBeforeTimerWaits(FakeClock):
    """A test's step landing between the timer's reading of the clock and its wait."""

    step: float | None = None

    def wait(self, event: threading.Event, timeout: float) -> bool:
        if self.step is not None and threading.current_thread().name == TIMER:
            step, self.step = self.step, None
            self.advance(step)
        return super().wait(event, timeout)


def test_a_probe_due_before_the_timer_waits_starts_while_the_test_steps_when_quiescent(
    audit: RecordingAuditLogger,
) -> None:
    clock = _StepBeforeTimerWaits(1000.0)
    config = RecoveryConfig(
        enable_health_checking=False, plugin_recovery_strategies={"p": "bad"},
        max_recovery_attempts=1, crash_loop_delay=5.0, crash_loop_max_delay=5.0)
    with RecoveryManager(StubPluginManager("p", "q"), audit, config, clock=clock) as rm:
        _crash_looping(rm, "p", "q")
        rm.record_failure("p", FailureInfo("error"))
        assert rm.wait_idle(5.0) and clock.wait_for_waiters(1)  # the timer waits for 1005
        clock.step = 5.0  # at its next wait, the probe is due as it starts to wait
        rm.reset_plugin("q")  # any change of a deadline wakes the timer to read the clock
        deadline = time.monotonic() + 5.0
        while len(audit.records) < 2:  # the README's loop: step only while quiescent
            assert time.monotonic() < deadline, "the due probe never started"
            if rm.is_quiescent():
                clock.advance(1.0)
            time.sleep(0.002)  # poll-until-deadline
        assert rm.wait_idle(5.0)


# -- alert handlers run on the manager's thread ---------------------------------------------------


def test_alert_handlers_run_on_the_managers_thread_never_the_callers(
    make_manager: MakeManager,
) -> None:
    release, finished = threading.Event(), threading.Event()
    ran_on: list[str] = []

    def slow(alert: Alert) -> None:
        ran_on.append(threading.current_thread().name)
        release.wait(5.0)
        finished.set()

    def interrupting(alert: Alert) -> None:
        raise KeyboardInterrupt

    rm = make_manager(enable_auto_recovery=False,
                      alert_thresholds=AlertThresholds(consecutive_failures=1))
    rm.add_alert_handler(slow)
    rm.add_alert_handler(interrupting)
    rm.register_plugin("p")
    rm.record_failure("p", FailureInfo("error"))  # returns at once, and raises nothing
    assert not finished.is_set()
    release.set()
    assert rm.wait_idle(5.0)
    assert ran_on and ran_on[0] != threading.current_thread().name
    assert rm.get_recovery_status()["callback_errors"] == 1


def test_a_call_through_the_manager_does_not_wait_for_an_alert_handler(
    make_manager: MakeManager,
) -> None:
    release, finished = threading.Event(), threading.Event()

    def slow(alert: Alert) -> None:
        release.wait(5.0)
        finished.set()

    rm = make_manager(enable_auto_recovery=False,
                      alert_thresholds=AlertThresholds(consecutive_failures=1))
    rm.add_alert_handler(slow)
    rm.register_plugin("p")

    def boom() -> None:
        raise ConnectionError("down")

    for _ in range(rm.breaker("p").config.minimum_requests):
        with pytest.raises(ConnectionError):
            rm.execute_with_recovery("p", boom)
    assert rm.breaker("p").state is OPEN  # tripped, alerted, and the call came back
    assert not finished.is_set()
    release.set()
    assert rm.wait_idle(5.0)


# -- a BaseException from the user's code is contained --------------------------------------------


class _RaisingAudit:
    def __init__(self, exc: type[BaseException]) -> None:
        self.exc = exc

    def log_failure_recovery(self, *args: Any) -> None:
        raise self.exc("audit down")


@pytest.mark.parametrize("exc", [SystemExit, KeyboardInterrupt])
def test_a_base_exception_from_the_audit_logger_is_contained_and_episodes_close(
    make_manager: MakeManager, clock: FakeClock, exc: type[BaseException]
) -> None:
    rm = make_manager(audit_logger=_RaisingAudit(exc), max_recovery_attempts=1,
                      plugin_recovery_strategies={"p": "bad", "q": "bad"})
    _crash_looping(rm, "p", "q")
    for name in ("p", "q", "p", "q"):  # more episodes than workers
        rm.reset_plugin(name)
        rm.record_failure(name, FailureInfo("error"))
        settle(rm, clock)
        assert rm.breaker(name).state is OPEN  # exhausted: a crash loop, not REPAIRING
    assert len(_workers()) == 2
    assert rm.get_recovery_status()["callback_errors"] == 4


@pytest.mark.parametrize("exc", [SystemExit, KeyboardInterrupt])
def test_a_base_exception_from_a_crash_loop_alert_handler_is_contained(
    make_manager: MakeManager, clock: FakeClock, exc: type[BaseException]
) -> None:
    def handler(alert: Alert) -> None:
        if alert.kind == "crash_loop":
            raise exc("pager down")

    rm = make_manager(max_recovery_attempts=1,
                      plugin_recovery_strategies={"p": "bad", "q": "bad"})
    rm.add_alert_handler(handler)
    _crash_looping(rm, "p", "q")
    for name in ("p", "q", "p", "q"):
        rm.reset_plugin(name)
        rm.record_failure(name, FailureInfo("error"))
        settle(rm, clock)
        assert rm.breaker(name).state is OPEN
    assert len(_workers()) == 2
    assert rm.get_recovery_status()["running"] is True
    assert rm.get_recovery_status()["callback_errors"] == 4


# -- a blocking audit logger or log handler is bounded --------------------------------------------


class _BlockingAudit(RecordingAuditLogger):
    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def _add(self, attempt: Any) -> None:
        self.entered.set()
        self.release.wait(10.0)
        super()._add(attempt)


def test_a_blocking_audit_logger_is_bounded_and_its_late_record_still_lands(
    make_manager: MakeManager, clock: FakeClock
) -> None:
    audit = _BlockingAudit()
    rm = make_manager(audit_logger=audit, max_recovery_attempts=1,
                      plugin_recovery_strategies={"p": "bad"})
    _crash_looping(rm, "p")
    try:
        rm.record_failure("p", FailureInfo("error"))
        assert audit.entered.wait(5.0)
        assert clock.wait_for_waiters(1)  # the episode waits for the record on the clock
        clock.advance(RecoveryConfig().callback_timeout)
        eventually(lambda: no_episode(rm), message="the episode waited for the audit logger")
        assert rm.breaker("p").state is OPEN
        assert rm.get_recovery_status()["callback_timeouts"] == 1
    finally:
        audit.release.set()
    assert audit.wait_for_records(1)  # nothing recorded is lost


class _BlockingHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.gate.wait(10.0)


def test_a_blocking_log_handler_holds_no_worker(
    make_manager: MakeManager, clock: FakeClock, audit: RecordingAuditLogger
) -> None:
    handler = _BlockingHandler()
    logger = logging.getLogger("recovery.manager")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        rm = make_manager(max_recovery_attempts=1, plugin_recovery_strategies={"p": "bad"})
        _crash_looping(rm, "p")
        rm.record_failure("p", FailureInfo("error"))
        eventually(lambda: no_episode(rm) and audit.records,
                   message="the episode waited for a log handler")
        assert rm.breaker("p").state is OPEN
    finally:
        handler.gate.set()
        logger.removeHandler(handler)
        logger.setLevel(level)


# -- abandoned threads are bounded per plugin -----------------------------------------------------


def test_a_strategy_that_always_hangs_leaves_a_bounded_number_of_threads(
    make_manager: MakeManager, clock: FakeClock
) -> None:
    hang = threading.Event()
    rm = make_manager(plugin_recovery_strategies={"p": "hang"}, strategy_timeout=1.0,
                      max_recovery_attempts=1, crash_loop_delay=1.0, crash_loop_max_delay=1.0)
    rm.register_strategy("hang", CustomStrategy("hang", 1, lambda f: True,
                                                lambda n, f, c: hang.wait(30.0)))
    rm.register_plugin("p")
    try:
        rm.record_failure("p", FailureInfo("error"))
        deadline = time.monotonic() + 20.0
        while rm.status().plugins["p"].recovery.actions.get("hang") is None or (
                rm.status().plugins["p"].recovery.actions["hang"].failure < 12):
            assert time.monotonic() < deadline, "the crash loop stopped probing"
            if clock.waiting:  # a strategy's timeout or the crash loop's delay
                clock.advance(0.5)
            time.sleep(0.001)  # poll-until-deadline
        hung = [t for t in recovery_threads() if t.name == "recovery hang p"]
        assert len(hung) <= 4  # max_abandoned_threads, by default
        limit = RecoveryConfig().max_abandoned_threads
        recovery = rm.get_recovery_status()["plugins"]["p"]["recovery"]
        assert recovery["abandoned_threads"] == limit
        assert recovery["refused_runs"] >= 1
    finally:
        hang.set()


# -- verification is a deadline, not a held worker ------------------------------------------------


def test_verification_waiting_for_trials_holds_no_worker(
    clock: FakeClock, audit: RecordingAuditLogger
) -> None:
    """100 idle plugins fail at once on 2 workers: every one is out of REPAIRING
    (half-open, its next call the trial) before the clock moves at all."""
    names = [f"p{i}" for i in range(100)]
    config = RecoveryConfig(enable_health_checking=False, default_recovery_strategy="act",
                            verify_timeout=1.0, recovery_workers=2)
    with RecoveryManager(StubPluginManager(*names), audit, config, clock=clock) as rm:
        rm.register_strategy("act", CustomStrategy("act", 1, lambda f: True,
                                                   lambda n, f, c: None))
        for name in names:
            rm.register_plugin(name)
        for name in names:
            rm.record_failure(name, FailureInfo("error"))
        eventually(lambda: all(rm.breaker(n).state is HALF_OPEN for n in names),
                   timeout=20.0, message="verification held the workers")
        settle(rm, clock, limit=20.0)
        assert len(audit.records) == len(names)
        assert all(rm.breaker(n).state is HALF_OPEN for n in names)


class _CheckedPlugin(StubPlugin):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.checks = 0

    def health_check(self) -> bool:
        self.checks += 1
        return True


def test_with_health_checking_off_a_plugins_own_check_still_verifies_it_once(
    make_manager: MakeManager, clock: FakeClock, audit: RecordingAuditLogger
) -> None:
    plugin = _CheckedPlugin("p")
    rm = make_manager(plugin_manager=StubPluginManager(plugin))  # health checking off
    rm.register_plugin("p")
    rm.record_failure("p", FailureInfo("error"))
    settle(rm, clock)
    assert audit.records == [("p", "error", "restart", True)]
    assert audit.attempts[0].verified is True  # by its check, not left to a trial
    assert plugin.checks == 1
