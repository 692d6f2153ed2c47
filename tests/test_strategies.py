"""The built-in recovery strategies and CustomStrategy (docs/design.md, "Strategies")."""

from __future__ import annotations

import logging
import math
import threading
from typing import Any

import pytest

from recovery.breaker import CircuitBreaker
from recovery.config import CircuitBreakerConfig
from recovery.failures import FailureInfo, FailureType, Severity
from recovery.state import CircuitBreakerState
from recovery.strategies import (
    BUILTIN_STRATEGIES,
    BackoffStrategy,
    CustomStrategy,
    GracefulDegradationStrategy,
    RecoveryContext,
    RecoveryStrategy,
    ReloadStrategy,
    ResetStrategy,
    RestartStrategy,
    builtin_strategy,
)
from recovery.testing import FakeClock
from tests.helpers import StubPluginManager


class Plugin:
    """Records what strategies do to it."""

    def __init__(self, name: str = "p") -> None:
        self.name = name
        self.calls: list[str] = []

    def initialize(self, config: Any) -> None:
        self.calls.append(f"initialize {config}")

    def shutdown(self) -> None:
        self.calls.append("shutdown")


class ReloadablePlugin(Plugin):
    def reload(self, config: Any) -> None:
        self.calls.append(f"reload {config}")

    def degrade(self, failure: FailureInfo) -> None:
        self.calls.append(f"degrade {failure.type.value}")


def context(plugins: StubPluginManager, breaker: CircuitBreaker | None = None, **kwargs: Any
            ) -> RecoveryContext:
    clock = FakeClock()
    if breaker is None:
        breaker = CircuitBreaker("p", clock=clock)
    return RecoveryContext(
        plugin_manager=plugins, breaker=breaker, clock=clock, plugin_config={"v": 1}, **kwargs
    )


def failure(kind: str, severity: str = "warning", recoverable: bool = True) -> FailureInfo:
    return FailureInfo(kind, severity=severity, recoverable=recoverable)


ALL = [(kind.value, severity.value) for kind in FailureType for severity in Severity]


@pytest.mark.parametrize(
    ("strategy", "handled"),
    [
        # Restart also handles "initialization" (see its docstring).
        (RestartStrategy(), {(k, s) for k, s in ALL
                             if k in ("timeout", "error", "panic", "health_check",
                                      "initialization")}),
        (ReloadStrategy(), {(k, s) for k, s in ALL
                            if k in ("timeout", "error", "health_check") and s != "critical"}),
        (ResetStrategy(), {(k, s) for k, s in ALL
                           if k == "health_check" or (k, s) == ("timeout", "warning")}),
        (GracefulDegradationStrategy(), {(k, s) for k, s in ALL
                                         if k == "resource_limit"
                                         or (k == "timeout" and s != "critical")}),
        (BackoffStrategy(), set(ALL)),
    ],
    ids=lambda value: getattr(value, "name", ""),
)
def test_what_each_builtin_handles(strategy: RecoveryStrategy, handled: set[tuple[str, str]]
                                   ) -> None:
    assert {(k, s) for k, s in ALL if strategy.can_handle(failure(k, s))} == handled


def test_backoff_declines_unrecoverable_failures() -> None:
    assert not BackoffStrategy().can_handle(failure("error", recoverable=False))


def test_names_and_priorities() -> None:
    assert {name: cls().priority for name, cls in BUILTIN_STRATEGIES.items()} == {
        "restart": 100, "reload": 80, "reset": 60, "degrade": 40, "backoff": 20,
    }
    for name, cls in BUILTIN_STRATEGIES.items():
        assert cls.name == name
        assert isinstance(cls(), RecoveryStrategy)


def test_restart_shuts_down_then_loads_with_the_plugins_config() -> None:
    plugin = Plugin()
    plugins = StubPluginManager(plugin)
    RestartStrategy().recover("p", failure("error"), context(plugins))
    assert plugin.calls == ["shutdown", "initialize {'v': 1}"]
    assert plugins.loaded == [("p", {"v": 1})]


def test_restart_loads_even_when_shutdown_raises_or_hangs(caplog: pytest.LogCaptureFixture
                                                          ) -> None:
    plugin = Plugin()
    plugins = StubPluginManager(plugin)
    def broken_shutdown() -> None:
        raise OSError("cannot shut down")

    plugin.shutdown = broken_shutdown  # type: ignore[method-assign]
    with caplog.at_level(logging.WARNING):
        RestartStrategy().recover("p", failure("error"), context(plugins))
    assert plugins.loaded == [("p", {"v": 1})]
    assert "shutdown of plugin 'p' failed" in caplog.text

    waits: list[tuple[float, str]] = []

    def never_finishes(fn: Any, timeout: float, label: str) -> bool:
        waits.append((timeout, label))
        return False

    caplog.clear()
    with caplog.at_level(logging.WARNING):
        RestartStrategy(shutdown_timeout=2.5).recover(
            "p", failure("error"), context(plugins, run_bounded=never_finishes)
        )
    assert waits == [(2.5, "shutdown p")]
    assert len(plugins.loaded) == 2
    assert "still running after 2.5s" in caplog.text


def test_restart_fails_when_the_plugin_is_missing_or_load_fails() -> None:
    with pytest.raises(LookupError, match="'p' is not loaded"):
        RestartStrategy().recover("p", failure("error"), context(StubPluginManager()))
    plugin = Plugin()
    plugin.initialize = lambda config: 1 / 0  # type: ignore[assignment,method-assign]
    with pytest.raises(ZeroDivisionError):
        RestartStrategy().recover("p", failure("error"), context(StubPluginManager(plugin)))


def test_reload_prefers_reload_and_never_shuts_down() -> None:
    plugin = ReloadablePlugin()
    ReloadStrategy().recover("p", failure("error"), context(StubPluginManager(plugin)))
    assert plugin.calls == ["reload {'v': 1}"]
    plain = Plugin()
    ReloadStrategy().recover("p", failure("error"), context(StubPluginManager(plain)))
    assert plain.calls == ["initialize {'v': 1}"]


def test_reset_closes_the_breaker() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("p", clock=clock)
    breaker.force_open()
    ResetStrategy().recover("p", failure("health_check"), context(StubPluginManager(), breaker))
    assert breaker.state is CircuitBreakerState.CLOSED


def test_degrade_calls_degrade_and_marks_the_context() -> None:
    plugin = ReloadablePlugin()
    ctx = context(StubPluginManager(plugin))
    GracefulDegradationStrategy(hold=7.0).recover("p", failure("resource_limit"), ctx)
    assert plugin.calls == ["degrade resource_limit"]
    assert (ctx.degraded, ctx.degraded_for) == (True, 7.0)
    # A plugin without degrade() is still marked: the fallback serves it.
    ctx = context(StubPluginManager(Plugin()))
    GracefulDegradationStrategy(hold=None).recover("p", failure("resource_limit"), ctx)
    assert (ctx.degraded, ctx.degraded_for) == (True, None)


def test_backoff_holds_the_breaker_open_doubling_until_it_closes() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("p", CircuitBreakerConfig(timeout=1000.0), clock=clock)
    backoff = BackoffStrategy(base=2.0, cap=10.0, jitter=0.0)
    holds = []
    for _ in range(4):
        breaker.begin_repair()
        backoff.recover("p", failure("error"), context(StubPluginManager(), breaker))
        assert breaker.state is CircuitBreakerState.OPEN
        holds.append(breaker.retry_after)
    assert holds == [2.0, 4.0, 8.0, 10.0]
    assert backoff.level("p") == 4
    breaker.reset()
    assert backoff.level("p") == 0
    breaker.begin_repair()
    backoff.recover("p", failure("error"), context(StubPluginManager(), breaker))
    assert breaker.retry_after == 2.0


def test_backoff_jitter_only_shortens_the_hold() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("p", clock=clock)
    backoff = BackoffStrategy(base=10.0, cap=100.0, jitter=0.5)
    seen = set()
    for _ in range(20):
        backoff.recover("p", failure("error"), context(StubPluginManager(), breaker))
        retry = breaker.retry_after
        assert retry is not None
        assert 5.0 <= retry <= 10.0
        seen.add(retry)
        breaker.reset()  # back to level 0
    assert len(seen) > 1


@pytest.mark.parametrize(
    ("cls", "kwargs", "error", "match"),
    [
        (RestartStrategy, {"shutdown_timeout": 0}, ValueError, "shutdown_timeout"),
        (BackoffStrategy, {"base": -1}, ValueError, "base"),
        (BackoffStrategy, {"cap": math.inf}, ValueError, "cap"),
        (BackoffStrategy, {"jitter": 1.0}, ValueError, "jitter"),
        (BackoffStrategy, {"jitter": "none"}, TypeError, "jitter"),
        (GracefulDegradationStrategy, {"hold": "long"}, TypeError, "hold"),
    ],
)
def test_bad_knobs_name_themselves(
    cls: Any, kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        cls(**kwargs)


def test_priority_must_be_an_int() -> None:
    with pytest.raises(TypeError, match="priority"):
        RestartStrategy(priority=1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="priority"):
        CustomStrategy("c", "high", lambda f: True, lambda n, f, c: None)  # type: ignore[arg-type]


def test_builtin_strategy_from_config_options() -> None:
    restart = builtin_strategy("restart", {"priority": 5, "shutdown_timeout": 1.0})
    assert isinstance(restart, RestartStrategy)
    assert (restart.priority, restart.shutdown_timeout) == (5, 1.0)
    with pytest.raises(ValueError, match=r"unknown option\(s\) bogus; 'backoff' takes"):
        builtin_strategy("backoff", {"bogus": 1})


def test_custom_strategy_delegates_and_contains_a_raising_can_handle(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[tuple[str, FailureType]] = []
    custom = CustomStrategy(
        "mine", 500, lambda f: f.type is FailureType.ERROR,
        lambda name, f, ctx: seen.append((name, f.type)),
    )
    assert isinstance(custom, RecoveryStrategy)
    assert (custom.name, custom.priority) == ("mine", 500)
    assert custom.can_handle(failure("error"))
    assert not custom.can_handle(failure("timeout"))
    custom.recover("p", failure("error"), context(StubPluginManager()))
    assert seen == [("p", FailureType.ERROR)]

    def broken_can_handle(f: FailureInfo) -> bool:
        raise ZeroDivisionError

    broken = CustomStrategy("broken", 1, broken_can_handle, lambda n, f, c: None)
    with caplog.at_level(logging.ERROR, logger="recovery.strategies"):
        assert broken.can_handle(failure("error")) is False
    assert "can_handle of strategy 'broken' failed" in caplog.text


def test_custom_strategy_recover_raising_is_a_failure() -> None:
    def recover(name: str, f: FailureInfo, ctx: RecoveryContext) -> None:
        raise RuntimeError("cannot")

    with pytest.raises(RuntimeError, match="cannot"):
        CustomStrategy("c", 1, lambda f: True, recover).recover(
            "p", failure("error"), context(StubPluginManager())
        )


def test_backoff_is_thread_safe_per_plugin() -> None:
    clock = FakeClock()
    breakers = [CircuitBreaker(f"p{i}", clock=clock) for i in range(4)]
    backoff = BackoffStrategy(jitter=0.0)
    barrier = threading.Barrier(4, timeout=5)

    def hammer(breaker: CircuitBreaker) -> None:
        barrier.wait()
        for _ in range(50):
            backoff.recover(breaker.name, failure("error"), context(StubPluginManager(), breaker))

    threads = [threading.Thread(target=hammer, args=(b,)) for b in breakers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert [backoff.level(b.name) for b in breakers] == [50, 50, 50, 50]
