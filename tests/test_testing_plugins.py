"""FlakyPlugin: every scripted mode, its counters, and how the strategies see it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from recovery._clock import REAL_CLOCK
from recovery.breaker import CircuitBreaker
from recovery.failures import FailureInfo, FailureType, classify
from recovery.plugins import Plugin, PluginRegistry
from recovery.strategies import (
    GracefulDegradationStrategy,
    RecoveryContext,
    ReloadStrategy,
    RestartStrategy,
)
from recovery.testing.audit import AuditAttempt, RecordingAuditLogger
from recovery.testing.clock import FakeClock
from recovery.testing.plugins import (
    FlakyError,
    FlakyPlugin,
    InitializationCrash,
    PluginNotRunningError,
)


def outcomes(plugin: FlakyPlugin, count: int) -> list[bool]:
    """True for each call that succeeded, False for each that raised the scripted error."""
    results = []
    for _ in range(count):
        try:
            plugin.do_work()
            results.append(True)
        except FlakyError:
            results.append(False)
    return results


class Background:
    """Run ``fn`` on a thread; keep what it returned or raised."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self.thread.start()

    def _run(self, fn: Callable[[], Any]) -> None:
        try:
            self.result = fn()
        except BaseException as exc:
            self.error = exc

    def join(self) -> None:
        self.thread.join(10)
        assert not self.thread.is_alive(), "the background call did not finish"


def started(plugin: FlakyPlugin, config: Any = None) -> FlakyPlugin:
    plugin.initialize(config)
    return plugin


# --- the basic life cycle ---------------------------------------------------------------------


def test_it_is_a_plugin_that_serves_calls_once_initialized() -> None:
    plugin = FlakyPlugin("db")
    assert isinstance(plugin, Plugin)
    assert plugin.clock is REAL_CLOCK

    with pytest.raises(PluginNotRunningError, match="db"):
        plugin.do_work()
    assert not plugin.health_check()

    plugin.initialize({"dsn": "x"})
    assert plugin.running and plugin.config == {"dsn": "x"}
    assert plugin.do_work(1, 2) == "db"
    assert plugin() == "db"
    assert plugin.health_check()
    assert (plugin.calls, plugin.failures, plugin.initializations) == (3, 1, 1)
    assert plugin.health_checks == 2

    plugin.shutdown()
    assert not plugin.running and plugin.shutdowns == 1
    with pytest.raises(PluginNotRunningError):
        plugin.do_work()


@pytest.mark.parametrize(
    ("kwargs", "error", "field"),
    [
        ({"fail_rate": 1.5}, ValueError, "fail_rate"),
        ({"fail_rate": True}, TypeError, "fail_rate"),
        ({"latency": -1}, ValueError, "latency"),
        ({"latency": float("inf")}, ValueError, "latency"),
        ({"crash_on_initialize": -1}, ValueError, "crash_on_initialize"),
        ({"recover_after_restarts": 1.5}, TypeError, "recover_after_restarts"),
    ],
)
def test_bad_modes_name_the_field(
    kwargs: dict[str, Any], error: type[Exception], field: str
) -> None:
    with pytest.raises(error, match=field):
        FlakyPlugin("p", **kwargs)


def test_bad_name_is_refused() -> None:
    with pytest.raises(ValueError, match="name"):
        FlakyPlugin("")
    with pytest.raises(TypeError, match="name"):
        FlakyPlugin(5)  # type: ignore[arg-type]


# --- fail_rate ----------------------------------------------------------------------------------


def test_fail_rate_is_repeatable_with_a_seed() -> None:
    first = outcomes(started(FlakyPlugin("p", fail_rate=0.3, seed=11)), 1000)
    second = outcomes(started(FlakyPlugin("p", fail_rate=0.3, seed=11)), 1000)
    other = outcomes(started(FlakyPlugin("p", fail_rate=0.3, seed=12)), 1000)
    assert first == second
    assert first != other
    assert 230 <= first.count(False) <= 370


def test_fail_rate_extremes_and_changes_at_run_time() -> None:
    plugin = started(FlakyPlugin("p", seed=1))
    assert all(outcomes(plugin, 100))
    plugin.fail_rate = 1.0
    assert not any(outcomes(plugin, 100))
    assert not plugin.health_check()
    plugin.fail_rate = 0
    assert all(outcomes(plugin, 10))
    assert plugin.failures == 100
    with pytest.raises(ValueError, match="fail_rate"):
        plugin.fail_rate = -0.1


def test_the_error_can_be_chosen_and_is_classified_by_its_type() -> None:
    plugin = started(FlakyPlugin("p", fail_rate=1.0, error=TimeoutError))
    with pytest.raises(TimeoutError, match="scripted failure") as info:
        plugin.do_work()
    assert classify(info.value).type is FailureType.TIMEOUT


# --- latency --------------------------------------------------------------------------------------


def test_latency_is_slept_on_the_given_clock() -> None:
    clock = FakeClock()
    plugin = started(FlakyPlugin("p", latency=0.25, clock=clock))
    for _ in range(4):
        plugin.do_work()
    assert clock.monotonic() == pytest.approx(1.0)
    assert plugin.health_check()
    assert clock.monotonic() == pytest.approx(1.25)

    plugin.latency = 2.0
    plugin.do_work()
    assert clock.monotonic() == pytest.approx(3.25)
    plugin.latency = 0
    plugin.do_work()
    assert clock.monotonic() == pytest.approx(3.25)
    with pytest.raises(ValueError, match="latency"):
        plugin.latency = -1


# --- hangs --------------------------------------------------------------------------------------


def test_a_hung_call_blocks_until_released_then_completes() -> None:
    plugin = started(FlakyPlugin("p", hang=True))
    assert plugin.hanging
    call = Background(plugin.do_work)
    assert plugin.wait_for_blocked(1, timeout=10)
    assert call.thread.is_alive()
    assert not plugin.health_check()  # a plugin whose calls hang is unhealthy

    plugin.release()
    call.join()
    assert call.result == "p" and call.error is None
    assert plugin.blocked == 0 and not plugin.hanging
    assert plugin.do_work() == "p"


def test_hang_can_start_later_and_a_shutdown_fails_the_hung_calls() -> None:
    plugin = started(FlakyPlugin("p"))
    plugin.hang()
    calls = [Background(plugin.do_work) for _ in range(3)]
    assert plugin.wait_for_blocked(3, timeout=10)

    plugin.shutdown()
    for call in calls:
        call.join()
        assert isinstance(call.error, PluginNotRunningError)
    assert plugin.failures == 3
    # The restart that follows finds it working: a shutdown ends the hang.
    plugin.initialize()
    assert plugin.do_work() == "p" and plugin.restarts == 1


def test_a_hung_health_check_blocks_while_calls_still_work() -> None:
    plugin = started(FlakyPlugin("p", health_check_hangs=True))
    check = Background(plugin.health_check)
    assert plugin.wait_for_blocked(1, timeout=10)
    assert plugin.do_work() == "p"
    assert check.thread.is_alive()

    plugin.release()
    check.join()
    assert check.result is True


def test_a_shutdown_makes_a_hung_health_check_report_unhealthy() -> None:
    plugin = started(FlakyPlugin("p"))
    plugin.hang_health_checks()
    check = Background(plugin.health_check)
    assert plugin.wait_for_blocked(1, timeout=10)
    plugin.shutdown()
    check.join()
    assert check.result is False and check.error is None


def test_wait_for_blocked_times_out_when_nothing_hangs() -> None:
    plugin = started(FlakyPlugin("p"))
    assert not plugin.wait_for_blocked(1, timeout=0.01)


# --- initialize crashes and restarts --------------------------------------------------------------


def test_crash_on_initialize_n_times_then_start() -> None:
    plugin = FlakyPlugin("p", crash_on_initialize=2)
    for remaining in (1, 0):
        with pytest.raises(InitializationCrash, match=f"{remaining} more") as info:
            plugin.initialize("cfg")
        assert classify(info.value).type is FailureType.INITIALIZATION
        assert not plugin.running
    plugin.initialize("cfg")
    assert plugin.running and plugin.initializations == 3 and plugin.config == "cfg"

    plugin.crash_next_initializations(1)
    plugin.shutdown()
    with pytest.raises(InitializationCrash):
        plugin.initialize()
    plugin.initialize()
    assert plugin.running and plugin.restarts == 1  # one restart, however many tries it took


def test_recover_after_restarts_counts_only_shutdown_then_initialize() -> None:
    plugin = started(FlakyPlugin("p", recover_after_restarts=2))
    assert not any(outcomes(plugin, 5))
    assert not plugin.health_check()

    plugin.initialize()  # no shutdown before it: not a restart
    plugin.reload({})  # nor is a reload
    assert plugin.restarts == 0 and not any(outcomes(plugin, 1))

    plugin.shutdown()
    plugin.initialize()
    assert plugin.restarts == 1 and plugin.restarts_needed == 1
    assert not any(outcomes(plugin, 1))

    plugin.shutdown()
    plugin.initialize()
    assert plugin.restarts_needed == 0
    assert all(outcomes(plugin, 5)) and plugin.health_check()

    plugin.fail_until_restarted(1)
    assert not any(outcomes(plugin, 1))
    plugin.shutdown()
    plugin.initialize()
    assert all(outcomes(plugin, 1))


# --- reload and degrade -------------------------------------------------------------------------


def test_reload_takes_the_new_config_only_while_running() -> None:
    plugin = FlakyPlugin("p")
    with pytest.raises(PluginNotRunningError):
        plugin.reload({"v": 1})
    plugin.initialize({"v": 0})
    plugin.reload({"v": 2})
    assert plugin.config == {"v": 2} and plugin.reloads == 2


def test_degrade_is_recorded_and_cleared_by_reload_or_initialize() -> None:
    plugin = started(FlakyPlugin("p"))
    failure = FailureInfo(type="resource_limit")
    plugin.degrade(failure)
    assert plugin.degraded and plugin.degrades == 1 and plugin.last_degrade_failure is failure
    plugin.reload(None)
    assert not plugin.degraded
    plugin.degrade(failure)
    plugin.initialize()
    assert not plugin.degraded and plugin.degrades == 2


# --- threads ------------------------------------------------------------------------------------


def test_counters_are_exact_under_threads() -> None:
    plugin = started(FlakyPlugin("p", fail_rate=0.5, seed=3))
    barrier = threading.Barrier(8)
    raised = [0] * 8

    def hammer(index: int) -> None:
        barrier.wait(10)
        for _ in range(500):
            try:
                plugin.do_work()
            except FlakyError:
                raised[index] += 1
            plugin.health_check()

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert not any(thread.is_alive() for thread in threads)
    assert plugin.calls == 4000 and plugin.health_checks == 4000
    assert plugin.failures == sum(raised)
    assert 1700 <= plugin.failures <= 2300


# --- as the built-in strategies see it ----------------------------------------------------------


def context(registry: PluginRegistry, plugin_config: Any = None) -> RecoveryContext:
    clock = FakeClock()
    return RecoveryContext(
        plugin_manager=registry,
        breaker=CircuitBreaker("p", clock=clock),
        clock=clock,
        plugin_config=plugin_config,
    )


def test_the_restart_strategy_brings_back_a_plugin_that_needs_a_restart() -> None:
    registry = PluginRegistry()
    plugin = FlakyPlugin("p", recover_after_restarts=1)
    registry.register(plugin, {"v": 1})
    with pytest.raises(FlakyError):
        plugin.do_work()

    RestartStrategy().recover("p", FailureInfo(type="error"), context(registry, {"v": 1}))

    assert (plugin.shutdowns, plugin.initializations, plugin.restarts) == (1, 2, 1)
    assert plugin.do_work() == "p" and plugin.config == {"v": 1}


def test_a_restart_fails_while_initialize_crashes_and_works_after() -> None:
    registry = PluginRegistry()
    plugin = FlakyPlugin("p")
    registry.register(plugin)
    plugin.crash_next_initializations(1)
    restart, ctx = RestartStrategy(), context(registry)

    with pytest.raises(InitializationCrash):
        restart.recover("p", FailureInfo(type="error"), ctx)
    assert registry.get_plugin("p") is plugin and not plugin.running
    restart.recover("p", FailureInfo(type="error"), ctx)
    assert plugin.running and plugin.do_work() == "p"


def test_the_reload_and_degrade_strategies_use_the_plugin_hooks() -> None:
    registry = PluginRegistry()
    plugin = FlakyPlugin("p")
    registry.register(plugin)
    ReloadStrategy().recover("p", FailureInfo(type="timeout"), context(registry, "new"))
    assert plugin.reloads == 1 and plugin.config == "new" and plugin.initializations == 1

    ctx = context(registry)
    failure = FailureInfo(type="resource_limit")
    GracefulDegradationStrategy().recover("p", failure, ctx)
    assert plugin.degraded and plugin.last_degrade_failure is failure and ctx.degraded


# -- RecordingAuditLogger ----------------------------------------------------------------------


def test_recording_audit_logger_keeps_both_audit_paths_in_order() -> None:
    audit = RecordingAuditLogger()
    audit.log_failure_recovery("db", FailureType.TIMEOUT, "restart", True)
    audit.log_recovery_attempt("db", FailureType.ERROR, "restart", False,
                               action_succeeded=True, verified=False)
    audit.log_recovery_attempt("db", "error", "reload", False,
                               action_succeeded=False, verified=None)
    assert audit.records == [
        ("db", "timeout", "restart", True),
        ("db", "error", "restart", False),
        ("db", "error", "reload", False),
    ]
    assert audit.attempts == [
        ("db", "timeout", "restart", True, None, None),
        ("db", "error", "restart", False, True, False),
        ("db", "error", "reload", False, False, None),
    ]
    assert audit.attempts[1] == AuditAttempt(
        plugin="db", failure_type="error", action="restart", success=False,
        action_succeeded=True, verified=False,
    )
    assert audit.wait_for_records(3, timeout=0)


def test_recording_audit_logger_wakes_a_waiter_on_either_path() -> None:
    audit = RecordingAuditLogger()
    waiting = threading.Event()
    woke: list[bool] = []

    def waiter() -> None:
        waiting.set()
        woke.append(audit.wait_for_records(2, timeout=10.0))

    thread = threading.Thread(target=waiter)
    thread.start()
    assert waiting.wait(10.0)
    audit.log_failure_recovery("db", "error", "restart", False)
    audit.log_recovery_attempt("db", "error", "restart", True,
                               action_succeeded=True, verified=True)
    thread.join(10.0)
    assert woke == [True]
