"""execute_with_recovery's hot path (Dispatcher, Route) and failure listeners, both windows."""

from __future__ import annotations

import importlib
from typing import Any

import pytest

from recovery import CircuitBreakerConfig, CircuitOpenError, CircuitRepairingError, _window_py
from recovery.testing import FakeClock
from tests.helpers import WINDOWS, MakeBreaker, StubPlugin, StubPluginManager, breaker_class

MODULES = {"compiled": WINDOWS["compiled"] and importlib.import_module("recovery._window"),
           "python": _window_py}


class Boom(Exception):
    pass


def boom() -> None:
    raise Boom("down")


@pytest.fixture(params=sorted(MODULES))
def module(request: pytest.FixtureRequest) -> Any:
    if MODULES[request.param] is None:
        pytest.skip("the compiled window is not built (CI fails the build instead)")
    return MODULES[request.param]


@pytest.fixture
def setup(module: Any) -> Any:
    """A dispatcher subclass that records diverted calls, and a breaker factory."""

    class Recorder(module.Dispatcher):
        def __init__(self) -> None:
            super().__init__()
            self.diverted: list[Any] = []

        def _diverted_call(self, plugin_name: str, fn: Any, args: Any, kwargs: Any) -> Any:
            self.diverted.append((plugin_name, fn, args, kwargs))
            return "diverted"

    breaker_cls = breaker_class(module.Window)
    clock = FakeClock()

    def breaker(**fields: Any) -> Any:
        return breaker_cls("p", CircuitBreakerConfig(**fields), clock=clock)

    return Recorder(), breaker, module.Route


def test_routes_to_the_breaker_and_forwards_arguments(setup: Any) -> None:
    dispatcher, breaker, Route = setup
    cb = breaker()
    dispatcher._add_route("p", Route(cb))  # private: the manager's entry, under test
    assert dispatcher.execute_with_recovery("p", lambda a, *, b: (a, b), 1, b=2) == (1, 2)
    assert cb.metrics().total_successes == 1


def test_unknown_plugin_is_a_key_error_naming_it(setup: Any) -> None:
    dispatcher, _, _ = setup
    with pytest.raises(KeyError, match="nope"):
        dispatcher.execute_with_recovery("nope", int)


def test_too_few_arguments_is_a_type_error(setup: Any) -> None:
    dispatcher, _, _ = setup
    with pytest.raises(TypeError):
        dispatcher.execute_with_recovery("p")


def test_exception_passes_through_unchanged(setup: Any) -> None:
    dispatcher, breaker, Route = setup
    cb = breaker(failure_threshold=5, minimum_requests=5)
    dispatcher._add_route("p", Route(cb))  # private: the manager's entry, under test
    with pytest.raises(Boom, match="down"):
        dispatcher.execute_with_recovery("p", boom)
    assert cb.metrics().total_failures == 1


def test_rejection_is_answered_by_the_fallback_and_counted(setup: Any) -> None:
    dispatcher, breaker, Route = setup
    cb = breaker(timeout=60.0)
    route = Route(cb, lambda *a, **k: ("fallback", a, k))
    dispatcher._add_route("p", route)  # private: the manager's entry, under test
    cb.force_open()
    assert dispatcher.execute_with_recovery("p", boom, 1, x=2) == ("fallback", (1,), {"x": 2})
    cb.begin_repair()
    assert dispatcher.execute_with_recovery("p", boom)[0] == "fallback"
    assert route.fallbacks_served == 2
    assert cb.metrics().total_rejections == 2


def test_rejection_without_fallback_raises(setup: Any) -> None:
    dispatcher, breaker, Route = setup
    cb = breaker()
    dispatcher._add_route("p", Route(cb))  # private: the manager's entry, under test
    cb.begin_repair()
    with pytest.raises(CircuitRepairingError):
        dispatcher.execute_with_recovery("p", int)
    cb.end_repair(False)
    with pytest.raises(CircuitOpenError):
        dispatcher.execute_with_recovery("p", int)


def test_diverted_route_goes_to_the_slow_path(setup: Any) -> None:
    dispatcher, breaker, Route = setup
    cb = breaker()
    route = Route(cb, lambda: "fallback")
    dispatcher._add_route("p", route)  # private: the manager's entry, under test
    route.diverted = True
    assert dispatcher.execute_with_recovery("p", int, "7", base=8) == "diverted"
    assert dispatcher.diverted == [("p", int, ("7",), {"base": 8})]
    assert cb.metrics().total_requests == 0
    route.diverted = False
    assert dispatcher.execute_with_recovery("p", int, "7", base=8) == 7


def test_serve_fallback_counts(setup: Any) -> None:
    _, breaker, Route = setup
    route = Route(breaker(), lambda x: x + 1)
    assert route.serve_fallback((1,), {}) == 2
    assert route.fallbacks_served == 1


def test_failure_listener_sees_the_exception_and_the_trip(make_breaker: MakeBreaker) -> None:
    cb = make_breaker(failure_threshold=2, minimum_requests=2)
    seen: list[tuple[Any, bool]] = []
    cb.add_failure_listener(lambda b, exc, tripped: seen.append((exc, tripped)))
    errors = [Boom("one"), Boom("two")]
    for error in errors:
        def raise_it(error: Exception = error) -> None:
            raise error
        with pytest.raises(Boom):
            cb.call(raise_it)
    assert seen == [(errors[0], False), (errors[1], True)]
    cb.reset()
    token = cb.try_admit()
    cb.record(token, failed=True)
    assert seen[-1] == (None, False)


def test_failure_listener_errors_are_contained(
    make_breaker: MakeBreaker, caplog: pytest.LogCaptureFixture
) -> None:
    cb = make_breaker()

    def bad(b: Any, exc: Any, tripped: bool) -> None:
        raise RuntimeError("listener bug")

    cb.add_failure_listener(bad)
    with pytest.raises(Boom):
        cb.call(boom)
    assert "listener bug" in caplog.text


def test_failure_listener_hears_a_slow_call_that_trips(
    make_breaker: MakeBreaker, clock: FakeClock
) -> None:
    cb = make_breaker(minimum_requests=2, slow_call_duration=1.0, slow_call_rate_threshold=1.0)
    seen: list[tuple[Any, bool]] = []
    cb.add_failure_listener(lambda b, exc, tripped: seen.append((exc, tripped)))
    cb.call(clock.advance, 1.0)
    assert seen == []  # a slow success that does not trip is not a failure
    cb.call(clock.advance, 1.0)
    assert seen == [(None, True)]


def test_a_result_passed_for_a_function_is_refused_before_routing(setup: Any) -> None:
    dispatcher, breaker, Route = setup
    route = Route(breaker())
    route.diverted = True
    dispatcher._add_route("p", route)  # private: the manager's entry, under test
    with pytest.raises(TypeError, match="fn must be callable"):
        dispatcher.execute_with_recovery("p", "a result")
    assert dispatcher.diverted == []


def test_manager_refuses_a_result_passed_for_a_function_without_counting() -> None:
    from recovery import RecoveryConfig, RecoveryManager
    from recovery.testing import RecordingAuditLogger

    class Plugin(StubPlugin):
        def do_work(self) -> str:
            return "done"

    plugin = Plugin("db")
    plugins = StubPluginManager(plugin)
    rm = RecoveryManager(plugins, RecordingAuditLogger(),
                         RecoveryConfig(enable_health_checking=False), clock=FakeClock())
    cb = rm.register_plugin("db", CircuitBreakerConfig(failure_threshold=1, minimum_requests=1))
    for _ in range(10):
        with pytest.raises(TypeError, match=r"fn must be callable, got 'done'"):
            rm.execute_with_recovery("db", plugin.do_work())
    assert cb.metrics().total_requests == 0
    assert cb.state.value == "closed"
    assert plugins.loaded == []  # not restarted
    assert rm.execute_with_recovery("db", plugin.do_work) == "done"
