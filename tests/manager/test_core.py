"""The recovery manager, driven by a FakeClock: no test waits on real time.

Episodes run on the manager's worker threads. Back-off waits between attempts and
strategy timeouts are on the manager's clock, so a test moves an episode along by
advancing the FakeClock (``settle``) and checks a timeout by advancing past it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import threading
import time
from typing import Any

import pytest

from recovery.alerts import Alert, AlertThresholds
from recovery.breaker import CircuitBreaker
from recovery.config import CircuitBreakerConfig
from recovery.errors import CircuitOpenError, CircuitRepairingError
from recovery.failures import FailureInfo, FailureType
from recovery.health import HealthCheckConfig
from recovery.manager import RecoveryConfig, RecoveryManager
from recovery.plugins import PluginRegistry
from recovery.state import CircuitBreakerState
from recovery.strategies import CustomStrategy, RecoveryContext
from recovery.testing import FakeClock, RecordingAuditLogger
from recovery.testing.plugins import FlakyPlugin
from tests.helpers import (
    MakeManager,
    StubPluginManager,
    eventually,
    failing_strategy,
    no_episode,
    recovery_threads,
    settle,
)

CLOSED = CircuitBreakerState.CLOSED
OPEN = CircuitBreakerState.OPEN
HALF_OPEN = CircuitBreakerState.HALF_OPEN
REPAIRING = CircuitBreakerState.REPAIRING


def spy(rm: RecoveryManager) -> list[FailureInfo]:
    """Register strategy "spy", which succeeds and keeps every failure it is given."""
    seen: list[FailureInfo] = []
    rm.register_strategy("spy", CustomStrategy("spy", 1, lambda f: True,
                                               lambda n, f, c: seen.append(f)))
    return seen


def fail(kind: str = "timeout", **kwargs: Any) -> FailureInfo:
    return FailureInfo(kind, **kwargs)


def succeeding(log: list[str], name: str) -> CustomStrategy:
    return CustomStrategy(name, 1, lambda f: True, lambda n, f, c: log.append(n))


def blocking(release: threading.Event, started: threading.Event) -> CustomStrategy:
    def recover(plugin_name: str, failure: FailureInfo, ctx: RecoveryContext) -> None:
        started.set()
        release.wait(30)

    return CustomStrategy("blocking", 1, lambda f: True, recover)


# -- the chain ------------------------------------------------------------------------------


def test_chain_falls_through_in_priority_order_audited_at_each_step(
    make_manager: MakeManager, clock: FakeClock, audit: RecordingAuditLogger
) -> None:
    plugins = StubPluginManager("p")
    plugins.plugins["p"].broken = True  # restart and reload (initialize) fail
    rm = make_manager(plugins)
    rm.register_plugin("p")
    rm.record_failure("p", fail("timeout", severity="warning"))
    settle(rm, clock)
    assert audit.records == [
        ("p", "timeout", "restart", False),
        ("p", "timeout", "reload", False),
        ("p", "timeout", "reset", True),
    ]
    assert rm.breaker("p").state is CLOSED  # reset closed it; the manager left it so
    recovery = rm.get_recovery_status()["plugins"]["p"]["recovery"]
    assert recovery["last_action"] == "reset"
    assert recovery["attempts"] == 1
    assert recovery["in_progress"] is False


def test_each_strategy_run_is_audited_before_the_next_starts(
    make_manager: MakeManager, clock: FakeClock, audit: RecordingAuditLogger
) -> None:
    seen_by_second: list[list[tuple[str, str, str, bool]]] = []

    def second(name: str, failure: FailureInfo, ctx: RecoveryContext) -> None:
        seen_by_second.append(list(audit.records))

    rm = make_manager()
    rm.register_strategy("first", CustomStrategy("first", 1000, lambda f: True,
                                                 failing_strategy().recover))
    rm.register_strategy("second", CustomStrategy("second", 900, lambda f: True, second))
    rm.register_plugin("p")
    rm.record_failure("p", fail("error"))
    settle(rm, clock)
    assert seen_by_second == [[("p", "error", "first", False)]]
    assert audit.records[-1] == ("p", "error", "second", True)


def test_custom_strategy_outranks_the_builtins(
    make_manager: MakeManager, clock: FakeClock, audit: RecordingAuditLogger
) -> None:
    log: list[str] = []
    rm = make_manager()
    rm.register_strategy("custom-recovery", CustomStrategy(
        "custom-recovery", 150, lambda f: f.type is FailureType.ERROR,
        lambda n, f, c: log.append(n)))
    rm.register_plugin("p")
    rm.record_failure("p", fail("error"))
    settle(rm, clock)
    assert log == ["p"]
    assert audit.records == [("p", "error", "custom-recovery", True)]


def test_priority_override_from_recovery_strategy_configs(
    make_manager: MakeManager, clock: FakeClock, audit: RecordingAuditLogger
) -> None:
    rm = make_manager(recovery_strategy_configs={"backoff": {"priority": 500, "jitter": 0.0}})
    rm.register_plugin("p")
    rm.record_failure("p", fail("error"))
    settle(rm, clock)
    assert audit.records == [("p", "error", "backoff", True)]
    assert rm.breaker("p").state is OPEN  # backoff holds it open; the manager left it so


def test_configured_strategy_is_used_alone(
    make_manager: MakeManager, clock: FakeClock, audit: RecordingAuditLogger
) -> None:
    rm = make_manager(plugin_recovery_strategies={"p": "bad"}, max_recovery_attempts=2)
    rm.register_strategy("bad", failing_strategy())
    rm.register_plugin("p")
    rm.register_plugin("q")
    rm.record_failure("p", fail("error"))
    settle(rm, clock)
    assert audit.records == [("p", "error", "bad", False), ("p", "error", "bad", False)]
    # q has no configured strategy: it gets the chain, which skips "bad"'s low priority
    # only because restart (priority 100) succeeds first.
    rm.record_failure("q", fail("error"))
    settle(rm, clock)
    assert [record for record in audit.records if record[0] == "q"] == [
        ("q", "error", "restart", True)
    ]


def test_default_recovery_strategy_applies_to_plugins_without_their_own(
    make_manager: MakeManager, clock: FakeClock, audit: RecordingAuditLogger
) -> None:
    log: list[str] = []
    rm = make_manager(default_recovery_strategy="mine", plugin_recovery_strategies={"q": "reset"})
    rm.register_strategy("mine", succeeding(log, "mine"))
    rm.register_plugin("p")
    rm.register_plugin("q")
    rm.record_failure("p", fail("error"))
    rm.record_failure("q", fail("error"))
    settle(rm, clock)
    assert sorted(audit.records) == [("p", "error", "mine", True), ("q", "error", "reset", True)]


def test_a_strategy_that_outlives_its_timeout_has_failed_and_is_reported(
    make_manager: MakeManager, clock: FakeClock, audit: RecordingAuditLogger
) -> None:
    release, started = threading.Event(), threading.Event()
    rm = make_manager(strategy_timeout=5.0)
    rm.register_strategy("hang", CustomStrategy("hang", 1000, lambda f: True,
                                                blocking(release, started).recover))
    rm.register_plugin("p")
    try:
        rm.record_failure("p", fail("error"))
        assert started.wait(5)
        assert clock.wait_for_waiters(1)
        clock.advance(4.9)
        assert not rm.wait_idle(0.05)  # not yet
        clock.advance(0.1)
        settle(rm, clock)  # restart's action is done; the verification waits for a trial
        assert audit.records == [("p", "error", "hang", False), ("p", "error", "restart", True)]
        stuck = rm.get_recovery_status()["stuck_strategies"]
        assert [entry["label"] for entry in stuck] == ["hang p"]
    finally:
        release.set()
    eventually(lambda: not rm.get_recovery_status()["stuck_strategies"], 5, interval=0.005)


# -- attempts, exhaustion, intensity ------------------------------------------------------------


def test_attempts_pause_on_the_clock_with_growing_backoff(
    make_manager: MakeManager, clock: FakeClock, audit: RecordingAuditLogger
) -> None:
    # On a FakeClock the back-off passes at once (its sleep advances it):
    # the attempts see the clock moved by base * factor**k between them.
    attempts: list[float] = []

    def recover(name: str, failure: FailureInfo, ctx: RecoveryContext) -> None:
        attempts.append(ctx.clock.monotonic())
        raise RuntimeError("still broken")

    rm = make_manager(plugin_recovery_strategies={"p": "s"}, recovery_backoff_base=2.0,
                      recovery_backoff_factor=3.0)
    rm.register_strategy("s", CustomStrategy("s", 1, lambda f: True, recover))
    rm.register_plugin("p")
    start = clock.monotonic()
    rm.record_failure("p", fail("error"))
    assert rm.wait_idle(5)
    assert [t - start for t in attempts] == [0.0, 2.0, 8.0]
    assert [record[3] for record in audit.records] == [False, False, False]


def test_exhausted_attempts_enter_a_crash_loop_retried_after_a_doubling_delay(
    make_manager: MakeManager, clock: FakeClock, audit: RecordingAuditLogger
) -> None:
    alerts: list[Alert] = []
    rm = make_manager(plugin_recovery_strategies={"p": "bad"}, max_recovery_attempts=3,
                      crash_loop_delay=5.0, crash_loop_max_delay=12.0)
    rm.add_alert_handler(alerts.append)
    rm.register_strategy("bad", failing_strategy())
    rm.register_plugin("p")
    rm.record_failure("p", fail("error"))
    settle(rm, clock)
    assert audit.records == [("p", "error", "bad", False)] * 3
    breaker = rm.breaker("p")
    assert breaker.state is OPEN
    status = rm.get_recovery_status()
    recovery = status["plugins"]["p"]["recovery"]
    assert (recovery["failed"], recovery["failed_reason"]) == (True, "exhausted")
    assert recovery["crash_loop"] is True
    assert isinstance(recovery["next_attempt"], str)
    assert [a.kind for a in alerts] == ["crash_loop"]
    json.dumps(status)

    # Held open while it waits: the deadline is on the clock, a failure is only counted.
    start = clock.monotonic()
    assert clock.wait_for_waiters(1)  # the crash-loop timer is parked on its deadline
    clock.advance(4.9)
    with pytest.raises(CircuitOpenError):
        breaker.call(lambda: None)
    rm.record_failure("p", fail("error"))
    assert no_episode(rm)
    assert len(audit.records) == 3

    # The delay ends: one attempt (a probe), which fails; the next delay doubles.
    clock.advance(start + 5.0 - clock.monotonic())
    eventually(lambda: len(audit.records) == 4)
    assert rm.wait_idle(5)
    eventually(lambda: rm.get_recovery_status()["plugins"]["p"]["recovery"]["next_attempt"]
               is not None)
    assert breaker.state is OPEN
    probe_end = clock.monotonic()
    clock.advance(9.9)
    assert len(audit.records) == 4
    clock.advance(probe_end + 10.0 - clock.monotonic())
    eventually(lambda: len(audit.records) == 5)
    assert rm.wait_idle(5)
    assert [a.kind for a in alerts] == ["crash_loop"]  # one alert for the whole loop

    rm.reset_plugin("p")
    assert breaker.state is CLOSED
    recovery = rm.get_recovery_status()["plugins"]["p"]["recovery"]
    assert (recovery["failed"], recovery["crash_loop"], recovery["next_attempt"]) == (
        False, False, None)
    assert breaker.call(lambda: 42) == 42


def test_a_crash_loop_probe_that_verifies_the_plugin_ends_the_loop(
    make_manager: MakeManager, clock: FakeClock, audit: RecordingAuditLogger
) -> None:
    alerts: list[Alert] = []
    healthy = threading.Event()
    rm = make_manager(plugin_recovery_strategies={"p": "restart"}, max_recovery_attempts=2,
                      crash_loop_delay=5.0)
    rm.add_alert_handler(alerts.append)
    # Health checking off in this fixture, but the check verifies the restart.
    rm._health_checks["p"] = (healthy.is_set, HealthCheckConfig())
    rm.register_plugin("p")
    rm.record_failure("p", fail("error"))
    settle(rm, clock)
    assert [record[3] for record in audit.records] == [False, False]  # restarted, not well
    assert rm.get_recovery_status()["plugins"]["p"]["recovery"]["crash_loop"] is True
    healthy.set()
    assert clock.wait_for_waiters(1)
    clock.advance(5.0)
    eventually(lambda: len(audit.records) == 3)
    assert rm.wait_idle(5)
    assert audit.records[-1] == ("p", "error", "restart", True)
    recovery = rm.get_recovery_status()["plugins"]["p"]["recovery"]
    assert (recovery["failed"], recovery["crash_loop"]) == (False, False)
    assert rm.breaker("p").state is HALF_OPEN  # verified; its trials close it
    assert [a.kind for a in alerts] == ["crash_loop", "crash_loop_ended"]


def test_give_up_after_episodes_in_a_row_leaves_it_failed_until_reset(
    make_manager: MakeManager, clock: FakeClock, audit: RecordingAuditLogger
) -> None:
    alerts: list[Alert] = []
    rm = make_manager(plugin_recovery_strategies={"p": "bad"}, max_recovery_attempts=1,
                      crash_loop_delay=5.0, give_up_after=2)
    rm.add_alert_handler(alerts.append)
    rm.register_strategy("bad", failing_strategy())
    rm.register_plugin("p")
    rm.record_failure("p", fail("error"))
    settle(rm, clock)
    assert clock.wait_for_waiters(1)
    clock.advance(5.0)
    eventually(lambda: len(audit.records) == 2)
    assert rm.wait_idle(5)
    eventually(lambda: rm.get_recovery_status()["plugins"]["p"]["recovery"]["failed_reason"]
               == "gave_up")
    recovery = rm.get_recovery_status()["plugins"]["p"]["recovery"]
    assert (recovery["crash_loop"], recovery["next_attempt"]) == (False, None)
    assert [a.kind for a in alerts] == ["crash_loop", "recovery_exhausted"]
    clock.advance(1e6)
    assert len(audit.records) == 2
    assert rm.breaker("p").state is OPEN
    rm.reset_plugin("p")
    assert rm.breaker("p").state is CLOSED


def test_restart_intensity_exceeded_enters_a_crash_loop_without_a_new_episode(
    make_manager: MakeManager, clock: FakeClock, audit: RecordingAuditLogger
) -> None:
    alerts: list[Alert] = []
    rm = make_manager(max_episodes_per_period=2, episode_period=100.0, stable_period=1000.0,
                      verify_timeout=1.0, strategy_order="priority")
    rm.add_alert_handler(alerts.append)
    rm.register_plugin("p")
    for _ in range(2):
        rm.record_failure("p", fail("error"))
        settle(rm, clock)
        clock.advance(10.0)
    assert [r[2] for r in audit.records] == ["restart", "restart"]
    rm.record_failure("p", fail("error"))
    assert no_episode(rm)  # no episode was started
    assert [r[2] for r in audit.records] == ["restart", "restart"]
    recovery = rm.get_recovery_status()["plugins"]["p"]["recovery"]
    assert (recovery["failed"], recovery["failed_reason"]) == (True, "restart_intensity")
    assert recovery["crash_loop"] is True
    assert rm.breaker("p").state is OPEN
    assert rm.wait_idle(5.0)
    assert [a.kind for a in alerts] == ["crash_loop"]


def test_episodes_older_than_the_period_do_not_count(make_manager: MakeManager, clock: FakeClock,
                                                     audit: RecordingAuditLogger) -> None:
    rm = make_manager(max_episodes_per_period=2, episode_period=100.0, stable_period=1000.0)
    rm.register_plugin("p")
    for _ in range(5):
        rm.record_failure("p", fail("error"))
        settle(rm, clock)
        clock.advance(60.0)
    assert len(audit.records) == 5
    assert rm.get_recovery_status()["plugins"]["p"]["recovery"]["failed"] is False


def test_stable_period_forgets_the_episode_history(make_manager: MakeManager, clock: FakeClock,
                                                   audit: RecordingAuditLogger) -> None:
    rm = make_manager(max_episodes_per_period=1, episode_period=1000.0, stable_period=30.0)
    rm.register_plugin("p")
    rm.record_failure("p", fail("error"))
    settle(rm, clock)
    clock.advance(30.0)  # healthy for the stable period
    rm.record_failure("p", fail("error"))
    settle(rm, clock)
    assert len(audit.records) == 2
    clock.advance(29.0)  # not long enough: intensity applies
    rm.record_failure("p", fail("error"))
    assert no_episode(rm)
    assert rm.get_recovery_status()["plugins"]["p"]["recovery"]["failed"] is True


def test_eight_threads_recording_at_once_start_exactly_one_episode(
    make_manager: MakeManager, clock: FakeClock, audit: RecordingAuditLogger
) -> None:
    release, started = threading.Event(), threading.Event()
    rm = make_manager(plugin_recovery_strategies={"p": "blocking"})
    rm.register_strategy("blocking", blocking(release, started))
    rm.register_plugin("p")
    barrier = threading.Barrier(8, timeout=5)

    def record() -> None:
        barrier.wait()
        rm.record_failure("p", fail("error"))

    threads = [threading.Thread(target=record) for _ in range(8)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(5)
        assert started.wait(5)
        recovery = rm.get_recovery_status()["plugins"]["p"]["recovery"]
        assert recovery["in_progress"] is True
        assert recovery["episode_failures"] == 8
        assert rm.get_recovery_status()["episodes_in_progress"] == 1
    finally:
        release.set()
    settle(rm, clock)
    assert audit.records == [("p", "error", "blocking", True)]


def test_failures_do_not_start_episodes_when_auto_recovery_is_off(
    make_manager: MakeManager, audit: RecordingAuditLogger
) -> None:
    rm = make_manager(enable_auto_recovery=False)
    rm.register_plugin("p")
    rm.record_failure("p", fail("error"))
    assert no_episode(rm)
    assert audit.records == []
    assert rm.breaker("p").state is CLOSED
    assert rm.get_recovery_status()["plugins"]["p"]["recovery"]["consecutive_failures"] == 1


def test_unrecoverable_failure_holds_the_breaker_open_until_reset(
    make_manager: MakeManager, clock: FakeClock, audit: RecordingAuditLogger
) -> None:
    alerts: list[Alert] = []
    rm = make_manager()
    rm.add_alert_handler(alerts.append)
    rm.register_plugin("p")
    rm.record_failure("p", fail("panic", recoverable=False, severity="critical"))
    rm.record_failure("p", fail("panic", recoverable=False, severity="critical"))
    assert no_episode(rm)
    assert audit.records == []
    breaker = rm.breaker("p")
    assert breaker.state is OPEN
    clock.advance(1e9)
    with pytest.raises(CircuitOpenError):
        breaker.call(lambda: None)
    assert rm.wait_idle(5.0)
    assert [a.kind for a in alerts] == ["unrecoverable"]
    recovery = rm.get_recovery_status()["plugins"]["p"]["recovery"]
    assert (recovery["failed"], recovery["failed_reason"]) == (True, "unrecoverable")
    rm.reset_plugin("p")
    assert breaker.state is CLOSED
    rm.record_failure("p", fail("panic", recoverable=False))
    assert rm.wait_idle(5.0)
    assert [a.kind for a in alerts] == ["unrecoverable", "unrecoverable"]


def test_unrecoverable_failure_during_an_episode_ends_it(
    make_manager: MakeManager, clock: FakeClock, audit: RecordingAuditLogger
) -> None:
    release, started = threading.Event(), threading.Event()
    rm = make_manager()
    rm.register_strategy("blocking", CustomStrategy("blocking", 1000, lambda f: True,
                                                    blocking(release, started).recover))
    rm.register_plugin("p")
    rm.record_failure("p", fail("error"))
    assert started.wait(5)
    rm.record_failure("p", fail("error", recoverable=False))
    release.set()
    assert rm.wait_idle(5)
    assert audit.records == [("p", "error", "blocking", True)]  # the chain went no further
    assert rm.breaker("p").state is OPEN
    assert rm.get_recovery_status()["plugins"]["p"]["recovery"]["failed"] is True


# -- the call path ------------------------------------------------------------------------------


def test_execute_with_recovery_returns_and_raises_like_the_call(make_manager: MakeManager) -> None:
    rm = make_manager()
    rm.register_plugin("p")
    assert rm.execute_with_recovery("p", lambda a, b=0: a + b, 1, b=2) == 3
    with pytest.raises(ValueError, match="boom"):
        rm.execute_with_recovery("p", _raise, ValueError("boom"))
    metrics = rm.breaker("p").metrics()
    assert (metrics.total_requests, metrics.total_failures) == (2, 1)


def _raise(exc: BaseException) -> None:
    raise exc


def test_rejected_while_repairing_or_served_by_the_fallback(
    make_manager: MakeManager, clock: FakeClock
) -> None:
    release, started = threading.Event(), threading.Event()
    rm = make_manager(plugin_recovery_strategies={"p": "blocking", "q": "blocking"})
    rm.register_strategy("blocking", blocking(release, started))
    rm.register_plugin("p")
    rm.register_plugin("q", fallback=lambda x, scale=1: f"cached {x * scale}")
    ran: list[str] = []
    try:
        rm.record_failure("p", fail("error"))
        rm.record_failure("q", fail("error"))
        assert started.wait(5)
        assert rm.breaker("p").state is REPAIRING
        assert rm.breaker("q").state is REPAIRING
        with pytest.raises(CircuitRepairingError):
            rm.execute_with_recovery("p", ran.append, "p")
        assert rm.execute_with_recovery("q", ran.append, 21, scale=2) == "cached 42"
        assert ran == []
    finally:
        release.set()
    settle(rm, clock)  # no call came to verify it: half-open, the next call is the trial
    assert rm.breaker("p").state is HALF_OPEN


def test_a_trip_inside_execute_with_recovery_records_the_classified_failure(
    make_manager: MakeManager, clock: FakeClock, audit: RecordingAuditLogger
) -> None:
    rm = make_manager(plugin_recovery_strategies={"p": "spy"})
    seen = spy(rm)
    rm.register_plugin("p", CircuitBreakerConfig(failure_threshold=2, minimum_requests=2))
    with pytest.raises(ValueError):
        rm.execute_with_recovery("p", _raise, ValueError("first"))
    assert rm.breaker("p").state is CLOSED
    with pytest.raises(TimeoutError, match="too slow"):
        rm.execute_with_recovery("p", _raise, TimeoutError("too slow"))
    settle(rm, clock)
    assert len(seen) == 1
    assert seen[0].type is FailureType.TIMEOUT
    assert seen[0].message == "too slow"
    assert audit.records == [("p", "timeout", "spy", True)]


def test_a_trip_uses_the_managers_classifier_and_with_blocks_count_too(
    clock: FakeClock, audit: RecordingAuditLogger
) -> None:
    def classifier(exc: BaseException) -> FailureInfo:
        return FailureInfo("resource_limit", message=f"mine: {exc}", severity="critical")

    rm = RecoveryManager(
        StubPluginManager("p"), audit,
        RecoveryConfig(enable_health_checking=False, plugin_recovery_strategies={"p": "reset"}),
        clock=clock, classifier=classifier,
    )
    with rm:
        breaker = rm.register_plugin(
            "p", CircuitBreakerConfig(failure_threshold=1, minimum_requests=1)
        )
        with pytest.raises(KeyError):
            rm.execute_with_recovery("p", _raise, KeyError("gone"))
        assert rm.wait_idle(5)
        assert audit.records == [("p", "resource_limit", "reset", True)]
        # A thread-pool worker using the breaker directly as a context manager.
        with pytest.raises(KeyError), breaker:
            raise KeyError("gone again")
        assert rm.wait_idle(5)
        assert audit.records[1:] == [("p", "resource_limit", "reset", True)]
        # Opening by hand is not a failure of the plugin.
        breaker.force_open()
        assert no_episode(rm)
        assert len(audit.records) == 2
        assert rm.get_recovery_status()["plugins"]["p"]["recovery"]["in_progress"] is False


def test_fallback_serves_while_open_and_errors_pass_through(make_manager: MakeManager) -> None:
    rm = make_manager(enable_auto_recovery=False)
    rm.register_plugin("p", CircuitBreakerConfig(failure_threshold=1, minimum_requests=1),
                       fallback=lambda: "fallback")
    with pytest.raises(OSError):
        rm.execute_with_recovery("p", _raise, OSError("down"))
    assert rm.breaker("p").state is OPEN
    assert rm.execute_with_recovery("p", lambda: "live") == "fallback"


def test_degraded_plugin_serves_its_fallback_until_the_hold_ends(
    make_manager: MakeManager, clock: FakeClock, audit: RecordingAuditLogger
) -> None:
    rm = make_manager(recovery_strategy_configs={"degrade": {"hold": 60.0}})
    rm.register_plugin("p", CircuitBreakerConfig(success_threshold=1), fallback=lambda: "lite")
    rm.record_failure("p", fail("resource_limit", severity="critical"))
    settle(rm, clock)
    assert audit.records == [("p", "resource_limit", "degrade", True)]
    assert rm.get_recovery_status()["plugins"]["p"]["recovery"]["degraded"] is True
    assert rm.execute_with_recovery("p", lambda: "full") == "lite"
    clock.advance(60.0)
    assert rm.execute_with_recovery("p", lambda: "full") == "full"
    assert rm.breaker("p").state is CLOSED
    assert rm.get_recovery_status()["plugins"]["p"]["recovery"]["degraded"] is False


def test_a_nested_breakers_rejection_is_not_served_by_this_plugins_fallback(
    make_manager: MakeManager
) -> None:
    rm = make_manager()
    rm.register_plugin("p", fallback=lambda: "fallback")
    inner = CircuitBreaker("inner")
    inner.force_open()
    with pytest.raises(CircuitOpenError) as info:
        rm.execute_with_recovery("p", inner.call, lambda: None)
    assert info.value.name == "inner"


# -- alerts ----------------------------------------------------------------------------------------


def test_consecutive_failures_alert_fires_once_and_rearms_after_recovery(
    make_manager: MakeManager
) -> None:
    alerts: list[Alert] = []
    rm = make_manager(enable_auto_recovery=False,
                      alert_thresholds=AlertThresholds(consecutive_failures=3))
    rm.add_alert_handler(alerts.append)
    rm.register_plugin("p")
    for _ in range(6):
        rm.record_failure("p", fail("error"))
    assert rm.wait_idle(5.0)  # alerts are delivered on the manager's own thread
    assert [(a.plugin_name, a.kind) for a in alerts] == [("p", "consecutive_failures")]
    assert "3 consecutive failures" in alerts[0].message
    rm.breaker("p").force_open()
    rm.breaker("p").reset()  # the plugin recovered: alerts re-armed, count restarted
    for _ in range(2):
        rm.record_failure("p", fail("error"))
    assert rm.wait_idle(5.0)
    assert len(alerts) == 1
    rm.record_failure("p", fail("error"))
    assert rm.wait_idle(5.0)
    assert len(alerts) == 2


def test_failure_rate_alert_uses_the_breakers_window(make_manager: MakeManager) -> None:
    alerts: list[Alert] = []
    rm = make_manager(alert_thresholds=AlertThresholds(failure_rate=0.5, consecutive_failures=None))
    rm.add_alert_handler(alerts.append)
    rm.register_plugin("p", CircuitBreakerConfig(
        minimum_requests=4, failure_threshold=10, failure_rate_threshold=None))
    outcomes = [True, False, True, False, False, False]
    for ok in outcomes[:3]:
        _call(rm, ok)
    assert rm.wait_idle(5.0)
    assert alerts == []  # 1 failure in 3: too few calls to judge, and below the rate
    _call(rm, outcomes[3])  # 2 of 4
    assert rm.wait_idle(5.0)
    assert [a.kind for a in alerts] == ["failure_rate"]
    for ok in outcomes[4:]:
        _call(rm, ok)
    assert rm.wait_idle(5.0)
    assert len(alerts) == 1


def _call(rm: RecoveryManager, ok: bool) -> None:
    with contextlib.suppress(OSError):
        rm.execute_with_recovery("p", lambda: None if ok else _raise(OSError("x")))


def test_recovery_time_alert_for_a_long_episode(
    make_manager: MakeManager, clock: FakeClock
) -> None:
    alerts: list[Alert] = []
    rm = make_manager(plugin_recovery_strategies={"p": "bad"}, recovery_backoff_base=10.0,
                      alert_thresholds=AlertThresholds(recovery_time=15.0))
    rm.add_alert_handler(alerts.append)
    rm.register_strategy("bad", failing_strategy())
    rm.register_plugin("p")
    rm.record_failure("p", fail("error"))
    settle(rm, clock, step=5.0)
    assert [a.kind for a in alerts] == ["recovery_time", "crash_loop"]


def test_a_raising_alert_handler_is_contained(
    make_manager: MakeManager, caplog: pytest.LogCaptureFixture
) -> None:
    alerts: list[Alert] = []

    def broken(alert: Alert) -> None:
        raise RuntimeError("pager down")

    rm = make_manager()
    rm.add_alert_handler(broken)
    rm.add_alert_handler(alerts.append)
    rm.register_plugin("p")
    with caplog.at_level(logging.WARNING):
        rm.record_failure("p", fail("error", recoverable=False))
        assert rm.wait_idle(5.0)
    assert [a.kind for a in alerts] == ["unrecoverable"]
    assert "pager down" in caplog.text
    assert "alert unrecoverable for plugin 'p'" in caplog.text


def test_alerting_off_sends_nothing(make_manager: MakeManager) -> None:
    alerts: list[Alert] = []
    rm = make_manager(enable_alerting=False)
    rm.add_alert_handler(alerts.append)
    rm.register_plugin("p")
    rm.record_failure("p", fail("error", recoverable=False))
    assert alerts == []


# -- status, lifecycle, errors ----------------------------------------------------------------


def test_status_is_json_serialisable_and_of_the_spec_shape(
    make_manager: MakeManager, clock: FakeClock
) -> None:
    rm = make_manager(enable_health_checking=True)
    rm.register_plugin("p", health_check=lambda: True)
    rm.register_plugin("q")
    rm.execute_with_recovery("p", lambda: None)
    rm.record_failure("q", fail("error", recoverable=False))  # breaker held open: inf retry
    status = json.loads(json.dumps(rm.get_recovery_status()))
    assert status["running"] is True
    assert status["auto_recovery"] is True
    assert status["health_checking"] is True
    assert status["stuck_strategies"] == []
    assert isinstance(status["stuck_health_checks"], int)
    p = status["plugins"]["p"]
    assert {"state", "total_requests", "total_failures", "failure_rate"} <= set(
        p["circuit_breaker"])
    assert p["circuit_breaker"]["state"] == "closed"
    assert p["circuit_breaker"]["total_requests"] == 1
    assert {"last_check", "last_result", "consecutive_fails"} <= set(p["health_check"])
    assert {"in_progress", "attempts", "last_action", "degraded", "failed"} <= set(p["recovery"])
    assert status["plugins"]["q"]["circuit_breaker"]["state"] == "open"
    assert status["plugins"]["q"]["health_check"] == {
        "last_check": None, "last_result": None, "consecutive_fails": 0, "stuck": False,
        "enabled": False,
    }
    rm.stop()
    assert rm.get_recovery_status()["running"] is False


def test_stop_with_an_episode_in_flight_returns_and_leaves_only_stuck_threads(
    clock: FakeClock, audit: RecordingAuditLogger
) -> None:
    before = recovery_threads()
    release, started = threading.Event(), threading.Event()
    rm = RecoveryManager(StubPluginManager("p", "q"), audit, RecoveryConfig(
        enable_health_checking=False, plugin_recovery_strategies={"p": "blocking"},
        strategy_timeout=1000.0, recovery_workers=3), clock=clock)
    rm.register_strategy("blocking", blocking(release, started))
    rm.start()
    rm.register_plugin("p")
    rm.register_plugin("q")
    try:
        rm.record_failure("p", fail("error"))
        assert started.wait(5)
        t0 = time.monotonic()
        rm.stop(timeout=5.0)
        assert time.monotonic() - t0 < 5.0
        status = rm.get_recovery_status()
        stuck = {entry["label"] for entry in status["stuck_strategies"]}
        assert stuck == {"blocking p"}
        assert {t.name for t in recovery_threads() - before} == {"recovery blocking p"}
        assert status["running"] is False
        assert rm.breaker("p").state is OPEN  # the episode ended unrecovered
        assert no_episode(rm)
        assert audit.records == [("p", "error", "blocking", False)]
        # Stopped: failures are counted, no episode starts.
        rm.record_failure("q", fail("error"))
        assert no_episode(rm)
    finally:
        release.set()
    for thread in recovery_threads() - before:
        thread.join(5)
    assert recovery_threads() - before == set()
    assert rm.get_recovery_status()["stuck_strategies"] == []


def test_stop_interrupts_a_real_backoff_and_the_manager_restarts() -> None:
    # On the real clock a back-off is a wait that stop() cuts short.
    audit = RecordingAuditLogger()
    rm = RecoveryManager(
        StubPluginManager("p"), audit,
        RecoveryConfig(enable_health_checking=False, plugin_recovery_strategies={"p": "bad"},
                       recovery_backoff_base=1000.0),
    )
    rm.register_strategy("bad", failing_strategy())
    rm.register_plugin("p")
    with rm:
        rm.record_failure("p", fail("error"))
        assert audit.wait_for_records(1)  # the first attempt failed: a 1000 s back-off begins
        started = time.monotonic()
        rm.stop(timeout=5.0)
        assert time.monotonic() - started < 2.0
        assert no_episode(rm)
        assert rm.breaker("p").state is OPEN
        rm.start()
        rm.reset_plugin("p")
        rm.record_failure("p", fail("error"))
        assert audit.wait_for_records(2)


def test_context_manager_starts_and_stops(clock: FakeClock, audit: RecordingAuditLogger) -> None:
    before = recovery_threads()
    with RecoveryManager(StubPluginManager("p"), audit,
                         RecoveryConfig(enable_health_checking=False), clock=clock) as rm:
        assert rm.get_recovery_status()["running"] is True
        # two workers, the crash-loop timer and the outbox (alerts, audit and logs)
        assert len(recovery_threads() - before) == 4
    assert rm.get_recovery_status()["running"] is False
    assert recovery_threads() - before == set()


def test_bad_input_gets_clear_errors(make_manager: MakeManager) -> None:
    rm = make_manager()
    rm.register_plugin("p")
    for call in (
        lambda: rm.execute_with_recovery("nope", lambda: None),
        lambda: rm.record_failure("nope", fail("error")),
        lambda: rm.breaker("nope"),
        lambda: rm.reset_plugin("nope"),
    ):
        with pytest.raises(KeyError, match="nope"):
            call()
    with pytest.raises(ValueError, match="'p' is already registered"):
        rm.register_plugin("p")
    with pytest.raises(ValueError, match="'restart' is already registered"):
        rm.register_strategy("restart", failing_strategy())
    with pytest.raises(TypeError, match="strategy must have"):
        rm.register_strategy("x", object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="FailureInfo"):
        rm.record_failure("p", "timeout")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="severity"):
        rm.record_failure("p", FailureInfo("timeout", severity="mild"))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"max_recovery_attempts": 0}, ValueError, "max_recovery_attempts"),
        ({"recovery_backoff_factor": 0.5}, ValueError, "recovery_backoff_factor"),
        ({"strategy_timeout": -1}, ValueError, "strategy_timeout"),
        ({"episode_period": math.inf}, ValueError, "episode_period"),
        ({"enable_auto_recovery": "yes"}, TypeError, "enable_auto_recovery"),
        ({"default_circuit_breaker": {}}, TypeError, "default_circuit_breaker"),
        ({"alert_thresholds": None}, TypeError, "alert_thresholds"),
        ({"plugin_recovery_strategies": {"p": ""}}, ValueError, "plugin_recovery_strategies"),
        ({"recovery_strategy_configs": {"backoff": {"priority": "hi"}}}, TypeError, "priority"),
        ({"recovery_strategy_configs": {"restart": {"bogus": 1}}}, ValueError, "bogus"),
        ({"recovery_strategy_configs": {"backoff": {"cap": 0}}}, ValueError, "cap"),
        ({"default_recovery_strategy": 3}, TypeError, "default_recovery_strategy"),
        ({"default_recovery_strategy": ""}, ValueError, "default_recovery_strategy"),
    ],
)
def test_recovery_config_validates(kwargs: dict[str, Any], error: type[Exception], match: str
                                   ) -> None:
    with pytest.raises(error, match=match):
        RecoveryConfig(**kwargs)


def test_recovery_config_defaults_and_timedelta() -> None:
    import datetime

    config = RecoveryConfig(episode_period=datetime.timedelta(minutes=2))
    assert config.episode_period == 120.0
    assert RecoveryConfig().max_recovery_attempts == 3
    assert RecoveryConfig(recovery_backoff_base=1.0, max_recovery_backoff=5.0).backoff(4) == 5.0
    assert RecoveryConfig().backoff(2) == 2.0
    with pytest.raises(AttributeError):
        config.max_recovery_attempts = 5  # type: ignore[misc]


def test_failure_severity_strings_in_record_failure(make_manager: MakeManager, clock: FakeClock,
                                                    audit: RecordingAuditLogger) -> None:
    rm = make_manager()
    rm.register_plugin("p")
    rm.record_failure("p", FailureInfo(type="timeout", recoverable=True, severity="critical"))
    settle(rm, clock)
    # critical timeout: reload, reset and degrade decline it; restart takes it.
    assert audit.records == [("p", "timeout", "restart", True)]


def free_elsewhere(lock: Any) -> bool:
    """Could another thread take ``lock`` now? Asked from a thread of its own, bounded."""
    answers: list[bool] = []

    def probe() -> None:
        taken = lock.acquire(blocking=False)
        if taken:
            lock.release()
        answers.append(taken)

    thread = threading.Thread(target=probe)
    thread.start()
    thread.join(5)
    return answers == [True]


def test_listeners_and_alert_handlers_run_with_the_manager_s_lock_free(
    make_manager: MakeManager, clock: FakeClock, audit: RecordingAuditLogger
) -> None:
    """A user's listener that calls the manager, or waits for a thread that does, must
    not deadlock it: the episode's move to REPAIRING (from record_failure and from a
    crash loop's probe) used to be made, and its listeners run, under the lock."""
    seen: list[tuple[object, bool]] = []
    rm = make_manager(plugin_recovery_strategies={"p": "bad"}, max_recovery_attempts=1,
              crash_loop_delay=5.0)
    rm.register_strategy("bad", failing_strategy())
    breaker = rm.register_plugin("p")
    breaker.add_listener(lambda b, old, new: seen.append((new, free_elsewhere(rm._lock))))
    rm.add_alert_handler(lambda alert: seen.append((alert.kind, free_elsewhere(rm._lock))))
    rm.record_failure("p", fail("error"))
    settle(rm, clock)  # one failed attempt: a crash loop, held open
    assert clock.wait_for_waiters(1)
    clock.advance(5.0)  # the probe
    eventually(lambda: len(audit.records) == 2)
    assert rm.wait_idle(5)
    assert [what for what, _ in seen].count(REPAIRING) == 2
    assert [what for what, free in seen if not free] == []


def test_is_quiescent_while_the_episode_waits_for_a_trial_not_while_its_strategy_runs(
    make_manager: MakeManager, clock: FakeClock, audit: RecordingAuditLogger
) -> None:
    release, started = threading.Event(), threading.Event()
    rm = make_manager(plugin_recovery_strategies={"p": "blocking"}, strategy_timeout=100.0)
    rm.register_strategy("blocking", blocking(release, started))
    rm.register_plugin("p")
    assert rm.is_quiescent()  # nothing to do at all
    rm.record_failure("p", fail("error"))
    assert started.wait(5)
    assert not rm.is_quiescent()  # a step now would be time the strategy took
    release.set()
    eventually(rm.is_quiescent, message="the verification never waited for a trial")
    assert rm.breaker("p").state is HALF_OPEN and not rm.wait_idle(0)
    assert clock.wait_for_waiters(1)
    clock.advance(RecoveryConfig().verify_timeout)  # no trial came: unverified
    assert rm.wait_idle(5)
    assert rm.is_quiescent()
    assert audit.records == [("p", "error", "blocking", True)]


def test_is_quiescent_not_while_a_health_check_runs(
    make_manager: MakeManager, clock: FakeClock
) -> None:
    entered, release = threading.Event(), threading.Event()

    def check() -> bool:
        entered.set()
        return release.wait(5)

    rm = make_manager(enable_health_checking=True)
    rm.register_plugin("p", health_check=check,
                       health_check_config=HealthCheckConfig(interval=10.0, timeout=5.0))
    assert clock.wait_for_waiters(1)  # the health scheduler
    assert rm.is_quiescent()
    clock.advance(10.0)
    assert entered.wait(5)
    assert not rm.is_quiescent()  # a step now could time the check out
    release.set()
    eventually(rm.is_quiescent, message="the finished check still counted")


def test_an_episode_waiting_for_a_trial_holds_no_worker(
    make_manager: MakeManager, clock: FakeClock, audit: RecordingAuditLogger
) -> None:
    """An episode whose verification waits for a trial is parked: the one worker
    takes the next plugin's episode at once, and both wait for time."""
    rm = make_manager(recovery_workers=1, default_recovery_strategy="spy")
    spy(rm)
    rm.register_plugin("p")
    rm.register_plugin("q")
    rm.record_failure("p", fail("error"))
    eventually(lambda: rm.breaker("p").state is HALF_OPEN and rm.is_quiescent())
    rm.record_failure("q", fail("error"))
    eventually(lambda: rm.breaker("q").state is HALF_OPEN and rm.is_quiescent())
    settle(rm, clock)
    assert audit.records == [("p", "error", "spy", True), ("q", "error", "spy", True)]


# -- with the real plugin registry, FlakyPlugin and the health monitor -------------------------


def test_flaky_plugin_tripping_is_restarted_and_closes_again(
    make_manager: MakeManager, clock: FakeClock, audit: RecordingAuditLogger
) -> None:
    registry = PluginRegistry()
    plugin = FlakyPlugin("p", recover_after_restarts=1, error=TimeoutError, clock=clock)
    registry.register(plugin, {"pool": 4})
    alerts: list[Alert] = []
    rm = make_manager(registry, alert_thresholds=AlertThresholds(consecutive_failures=1))
    rm.add_alert_handler(alerts.append)
    breaker = rm.register_plugin(
        "p", CircuitBreakerConfig(failure_threshold=2, minimum_requests=2, success_threshold=2)
    )
    for _ in range(2):
        with pytest.raises(TimeoutError):
            rm.execute_with_recovery("p", plugin.do_work)
    settle(rm, clock)
    # A critical-free timeout: restart (priority 100) is tried first and works.
    assert audit.records == [("p", "timeout", "restart", True)]
    assert (plugin.shutdowns, plugin.restarts, plugin.config) == (1, 1, {"pool": 4})
    assert breaker.state is HALF_OPEN
    assert [a.kind for a in alerts] == ["consecutive_failures"]
    assert rm.execute_with_recovery("p", plugin.do_work) == "p"
    assert rm.execute_with_recovery("p", plugin.do_work) == "p"
    assert breaker.state is CLOSED
    # Recovered: the alert is armed again.
    rm.record_failure("p", fail("error"))
    settle(rm, clock)
    assert [a.kind for a in alerts] == ["consecutive_failures", "consecutive_failures"]


def test_initialize_crash_during_restart_falls_through_the_chain(
    make_manager: MakeManager, clock: FakeClock, audit: RecordingAuditLogger
) -> None:
    registry = PluginRegistry()
    plugin = FlakyPlugin("p", clock=clock)
    registry.register(plugin, None)
    plugin.crash_next_initializations(1)
    rm = make_manager(registry)
    rm.register_plugin("p")
    rm.record_failure("p", fail("error"))
    settle(rm, clock)
    # restart's load crashed in initialize; reload (in place) found it not running
    # and failed; backoff, the last resort, held the breaker open.
    assert audit.records == [
        ("p", "error", "restart", False),
        ("p", "error", "reload", False),
        ("p", "error", "backoff", True),
    ]
    assert rm.breaker("p").state is OPEN


def test_failing_health_checks_start_an_episode_and_a_healthy_one_allows_a_trial(
    make_manager: MakeManager, clock: FakeClock, audit: RecordingAuditLogger
) -> None:
    registry = PluginRegistry()
    plugin = FlakyPlugin("p", clock=clock)
    registry.register(plugin, None)
    plugin.fail_until_restarted(1)  # its health check fails until a restart
    rm = make_manager(registry, enable_health_checking=True, enable_auto_recovery=True)
    breaker = rm.register_plugin(
        "p", health_check_config=HealthCheckConfig(interval=10.0, timeout=5.0, max_failures=2)
    )

    def fails() -> int:
        return int(rm.get_recovery_status()["plugins"]["p"]["health_check"]["consecutive_fails"])

    clock.advance(10.0)
    eventually(lambda: fails() == 1)
    assert audit.records == []
    clock.advance(10.0)
    eventually(lambda: len(audit.records) == 1)
    assert rm.wait_idle(5)
    assert audit.records == [("p", "health_check", "restart", True)]
    assert plugin.restarts == 1
    assert breaker.state is HALF_OPEN

    # An OPEN breaker is moved to HALF_OPEN by the next healthy check.
    breaker.force_open()
    checks = plugin.health_checks
    clock.advance(10.0)
    eventually(lambda: plugin.health_checks > checks and breaker.state is HALF_OPEN)
    assert breaker.metrics().health_check_success is True


def test_a_health_check_registered_while_stopped_is_watched_from_the_next_start(
    make_manager: MakeManager,
) -> None:
    rm = make_manager(enable_health_checking=True)
    rm.stop()
    rm.register_plugin("p", health_check=lambda: True)
    assert rm.get_recovery_status()["plugins"]["p"]["health_check"]["enabled"] is False
    rm.start()
    health = rm.get_recovery_status()["plugins"]["p"]["health_check"]
    assert health["enabled"] is True
    assert health["consecutive_fails"] == 0


def test_slow_calls_that_open_the_breaker_start_a_timeout_episode(
    make_manager: MakeManager, clock: FakeClock, audit: RecordingAuditLogger
) -> None:
    rm = make_manager(plugin_recovery_strategies={"p": "spy"})
    seen = spy(rm)
    rm.register_plugin("p", CircuitBreakerConfig(
        minimum_requests=2, slow_call_duration=1.0, slow_call_rate_threshold=0.5))
    for _ in range(2):
        assert rm.execute_with_recovery("p", clock.advance, 2.0) == clock.monotonic()
    settle(rm, clock)
    assert [failure.type for failure in seen] == [FailureType.TIMEOUT]
    assert audit.records == [("p", "timeout", "spy", True)]


def test_failures_recorded_by_token_are_errors_even_with_the_slow_call_rule_on(
    make_manager: MakeManager, clock: FakeClock, audit: RecordingAuditLogger
) -> None:
    """The breaker says why it opened: with the slow-call rule merely configured, two
    fast calls recorded as failed are an ERROR episode, not a guessed TIMEOUT."""
    rm = make_manager(plugin_recovery_strategies={"p": "spy"})
    seen = spy(rm)
    breaker = rm.register_plugin("p", CircuitBreakerConfig(
        failure_threshold=2, minimum_requests=2, slow_call_duration=1.0,
        slow_call_rate_threshold=0.5))
    for _ in range(2):
        breaker.record(breaker.try_admit(), failed=True)
    settle(rm, clock)
    assert [failure.type for failure in seen] == [FailureType.ERROR]
    assert audit.records == [("p", "error", "spy", True)]


def test_an_open_breaker_is_checked_at_its_own_health_check_interval(
    clock: FakeClock, audit: RecordingAuditLogger
) -> None:
    checked = threading.Event()
    half_open = threading.Event()

    def check() -> bool:
        checked.set()
        return True

    rm = RecoveryManager(
        StubPluginManager("p"), audit,
        RecoveryConfig(health_check_interval=30.0, enable_auto_recovery=False),
        clock=clock,
    )
    with rm:
        breaker = rm.register_plugin(
            "p", CircuitBreakerConfig(timeout=1000.0, health_check_interval=1.0),
            health_check=check,
        )
        breaker.add_listener(
            lambda b, old, new: half_open.set() if new is CircuitBreakerState.HALF_OPEN else None
        )
        breaker.force_open()
        clock.advance(1.0)  # far less than the 30 s pace of a closed breaker
        assert checked.wait(5)
        assert half_open.wait(5)  # the healthy check let a trial through
