"""The forecaster: warnings raised before a breaker opens, ended when it recovers or opens,
listeners, the thread, and bad arguments. Both windows, on the fake clock."""

from __future__ import annotations

import logging
import math
import threading

import pytest

from recovery.forecast import Forecaster, Warning
from recovery.state import CircuitBreakerState
from recovery.testing import FakeClock
from tests.forecast.drive import drive
from tests.helpers import MakeBreaker, eventually


@pytest.fixture
def forecaster(clock: FakeClock) -> Forecaster:
    return Forecaster(clock=clock)


def test_a_rising_failure_rate_is_warned_of_before_the_breaker_opens(
    make_breaker: MakeBreaker, clock: FakeClock, forecaster: Forecaster
) -> None:
    breaker = make_breaker()
    forecaster.watch(breaker)
    heard: list[Warning] = []
    forecaster.add_listener(heard.append)
    assert drive(breaker, forecaster, clock, 300, error_rate=0.01) == []
    # Geometric ramp: 1 % to 100 % over 60 s.
    drive(breaker, forecaster, clock, 60, error_rate=lambda s: 0.01 * 100 ** (s / 60))
    assert breaker.state is CircuitBreakerState.OPEN
    raised, ended = heard[0], heard[-1]
    assert raised.kind == "failure_rate" and raised.ended is None
    assert raised.breaker == breaker.name
    assert 0.005 < raised.baseline < 0.02 < raised.current
    assert raised.expected_trip_in is not None and math.isfinite(raised.expected_trip_in)
    opened_at = breaker.metrics().state_change_time
    assert opened_at is not None
    # Ended when the breaker opened, and raised well before that.
    assert ended.since == raised.since and ended.ended is not None
    assert ended.ended - raised.since >= 5.0
    assert forecaster.warnings() == []


def test_steady_failures_and_traffic_changes_raise_nothing(
    make_breaker: MakeBreaker, clock: FakeClock, forecaster: Forecaster
) -> None:
    breaker = make_breaker()
    forecaster.watch(breaker)
    assert drive(breaker, forecaster, clock, 600, rate=50, error_rate=0.05) == []
    assert drive(breaker, forecaster, clock, 300, rate=100, error_rate=0.05) == []
    assert drive(breaker, forecaster, clock, 300, rate=25, error_rate=0.05) == []


def test_the_same_rate_is_news_only_when_it_is_new(
    make_breaker: MakeBreaker, clock: FakeClock, forecaster: Forecaster
) -> None:
    """4 % all day is normal; 4 % after 0.1 % is a warning."""
    steady, jumping = make_breaker("steady"), make_breaker("jumping")
    forecaster.watch(steady)
    assert drive(steady, forecaster, clock, 600, error_rate=0.04) == []
    forecaster.unwatch(steady)
    forecaster.watch(jumping)
    drive(jumping, forecaster, clock, 300, error_rate=0.001)
    changes = drive(jumping, forecaster, clock, 30, error_rate=0.04)
    assert [warning.breaker for warning in changes][:1] == ["jumping"]
    assert jumping.state is CircuitBreakerState.CLOSED


def test_a_warning_ends_soon_after_a_blip_is_over(
    make_breaker: MakeBreaker, clock: FakeClock, forecaster: Forecaster
) -> None:
    breaker = make_breaker(failure_threshold=100, failure_rate_threshold=None)  # never opens
    forecaster.watch(breaker)
    drive(breaker, forecaster, clock, 300, rate=20, error_rate=0.02)
    raised = drive(breaker, forecaster, clock, 1, rate=20, error_rate=1.0)
    assert [warning.ended for warning in raised] == [None]
    blip_over = clock.monotonic()
    after = drive(breaker, forecaster, clock, 60, rate=20, error_rate=0.02)
    assert len(after) == 1 and after[0].ended is not None
    assert after[0].ended - blip_over <= 2.0
    assert forecaster.warnings() == []


def test_latency_creep_is_warned_of_before_the_slow_call_rule_opens(
    make_breaker: MakeBreaker, clock: FakeClock, forecaster: Forecaster
) -> None:
    breaker = make_breaker(
        record_latency=True, slow_call_duration=0.04, slow_call_rate_threshold=0.3
    )
    forecaster.watch(breaker)
    assert drive(breaker, forecaster, clock, 300, rate=50, error_rate=0.0) == []
    changes = drive(
        breaker, forecaster, clock, 120, rate=50, error_rate=0.0,
        latency=lambda s: 0.02 * 2 ** (s / 60),
    )
    assert breaker.state is CircuitBreakerState.OPEN
    raised = changes[0]
    assert raised.kind == "latency"
    assert 0.015 < raised.baseline < raised.current < 0.04
    assert raised.expected_trip_in is not None
    assert changes[-1].ended is not None  # the breaker opened: over


def test_without_record_latency_there_is_no_latency_warning(
    make_breaker: MakeBreaker, clock: FakeClock, forecaster: Forecaster
) -> None:
    breaker = make_breaker(slow_call_duration=10.0, slow_call_rate_threshold=1.0)
    forecaster.watch(breaker)
    drive(breaker, forecaster, clock, 300, rate=50, error_rate=0.0)
    assert drive(breaker, forecaster, clock, 120, rate=50, error_rate=0.0,
                 latency=lambda s: 0.02 * 2 ** (s / 30)) == []


def test_a_failing_listener_is_logged_and_the_others_still_hear(
    make_breaker: MakeBreaker, clock: FakeClock, forecaster: Forecaster,
    caplog: pytest.LogCaptureFixture,
) -> None:
    breaker = make_breaker()
    forecaster.watch(breaker)

    def broken(warning: Warning) -> None:
        raise RuntimeError("listener bug")

    heard: list[Warning] = []
    forecaster.add_listener(broken)
    forecaster.add_listener(heard.append)
    drive(breaker, forecaster, clock, 300, error_rate=0.001)
    with caplog.at_level(logging.ERROR, logger="recovery.forecast"):
        drive(breaker, forecaster, clock, 10, error_rate=0.2)
    assert heard and heard[0].kind == "failure_rate"
    assert "listener bug" in caplog.text
    forecaster.remove_listener(broken)
    with pytest.raises(ValueError):
        forecaster.remove_listener(broken)


def test_unwatch_ends_the_breakers_warnings(
    make_breaker: MakeBreaker, clock: FakeClock, forecaster: Forecaster
) -> None:
    breaker = make_breaker(failure_threshold=100, failure_rate_threshold=None)
    forecaster.watch(breaker)
    forecaster.watch(breaker)  # twice: still one watch
    assert forecaster.watched() == [breaker]
    drive(breaker, forecaster, clock, 300, error_rate=0.001)
    drive(breaker, forecaster, clock, 5, error_rate=0.3)
    assert [warning.kind for warning in forecaster.warnings()] == ["failure_rate"]
    heard: list[Warning] = []
    forecaster.add_listener(heard.append)
    forecaster.unwatch(breaker)
    assert [warning.ended for warning in heard] == [clock.monotonic()]
    assert forecaster.warnings() == [] and forecaster.watched() == []
    with pytest.raises(KeyError, match="not watched"):
        forecaster.unwatch(breaker)


def test_the_thread_polls_every_interval_and_stop_joins_it(
    make_breaker: MakeBreaker, clock: FakeClock
) -> None:
    breaker = make_breaker()
    forecaster = Forecaster(interval=0.5, clock=clock)
    forecaster.watch(breaker)
    polled = threading.Event()
    seen: list[int] = []

    def count(warning: Warning) -> None:
        seen.append(1)

    forecaster.add_listener(count)
    real_poll = forecaster.poll

    def poll() -> list[Warning]:
        changes = real_poll()
        polled.set()
        return changes

    forecaster.poll = poll  # type: ignore[method-assign]
    with forecaster:
        assert polled.wait(5.0)  # the first poll comes at once
        polled.clear()
        assert clock.wait_for_waiters(1)
        breaker.call(lambda: None)
        clock.advance(0.5)
        assert polled.wait(5.0)  # and the next one after an interval of the clock
        thread = next(t for t in threading.enumerate() if t.name == "recovery-forecaster")
    assert not thread.is_alive()
    with pytest.raises(RuntimeError, match="only once"):
        forecaster.start()


def test_a_poll_that_fails_is_logged_and_the_thread_goes_on(
    make_breaker: MakeBreaker, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    forecaster = Forecaster(clock=clock)
    calls: list[int] = []

    def poll() -> list[Warning]:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("metrics broke")
        return []

    forecaster.poll = poll  # type: ignore[method-assign]
    with caplog.at_level(logging.ERROR, logger="recovery.forecast"), forecaster:
        eventually(lambda: calls, message="no first poll")
        assert clock.wait_for_waiters(1)
        clock.advance(0.25)
        eventually(lambda: len(calls) >= 2, message="the thread died with the poll")
    assert "metrics broke" in caplog.text


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"interval": 0}, ValueError, "interval"),
        ({"interval": 0.001}, ValueError, "interval"),
        ({"interval": "1"}, TypeError, "interval"),
        ({"interval": math.nan}, ValueError, "interval"),
        ({"clock": object()}, TypeError, "clock"),
    ],
)
def test_bad_arguments_are_refused_naming_them(
    kwargs: dict[str, object], error: type[Exception], words: str
) -> None:
    with pytest.raises(error, match=words):
        Forecaster(**kwargs)  # type: ignore[arg-type]


def test_watch_and_add_listener_refuse_the_wrong_things(forecaster: Forecaster) -> None:
    with pytest.raises(TypeError, match="breaker must be a CircuitBreaker"):
        forecaster.watch("db")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="listener"):
        forecaster.add_listener(42)  # type: ignore[arg-type]


def test_warning_is_a_plain_value() -> None:
    warning = Warning("db", "latency", 1.0, 0.02, 0.05, None)
    assert warning.active and warning.to_dict() == {
        "breaker": "db", "kind": "latency", "since": 1.0, "baseline": 0.02,
        "current": 0.05, "expected_trip_in": None, "ended": None,
    }


def test_calls_counted_across_an_open_and_a_reset_are_not_evidence(
    make_breaker: MakeBreaker, clock: FakeClock, forecaster: Forecaster
) -> None:
    """A sample in which the breaker left CLOSED and came back is dropped: its failures
    belong to an outage the breaker already saw."""
    breaker = make_breaker()
    forecaster.watch(breaker)
    drive(breaker, forecaster, clock, 300, error_rate=0.01)
    while breaker.state is CircuitBreakerState.CLOSED:
        breaker.record(breaker.try_admit(), True, 0.01)
    breaker.reset()
    clock.advance(0.25)
    assert forecaster.poll() == []
    assert drive(breaker, forecaster, clock, 60, error_rate=0.01) == []
