"""Circuit breaker behaviour on a fake clock, run against both windows (see conftest):
calls, the state cycle, the trip rules, what counts as a failure (classes and predicates),
observe-only, listeners, manual control, metrics and the config."""

from __future__ import annotations

import abc
import datetime
import json
import logging
import time
from typing import Any

import pytest

from recovery import (
    CircuitBreaker,
    CircuitBreakerConfig,
    CircuitBreakerState,
    CircuitOpenError,
    CircuitRepairingError,
)
from recovery.testing import FakeClock
from tests.helpers import WINDOWS, MakeBreaker, breaker_class

CLOSED, OPEN, HALF_OPEN, REPAIRING = (
    CircuitBreakerState.CLOSED,
    CircuitBreakerState.OPEN,
    CircuitBreakerState.HALF_OPEN,
    CircuitBreakerState.REPAIRING,
)


class Boom(Exception):
    pass


def ok() -> str:
    return "ok"


def boom() -> None:
    raise Boom("down")


def fail(cb: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        with pytest.raises(Boom):
            cb.call(boom)


def succeed(cb: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        assert cb.call(ok) == "ok"


def transitions(cb: CircuitBreaker) -> list[tuple[str, str]]:
    seen: list[tuple[str, str]] = []
    cb.add_listener(lambda b, old, new: seen.append((old.value, new.value)))
    return seen


# -- calls pass through unchanged -----------------------------------------------------------------


def test_call_returns_value_and_forwards_arguments(make_breaker: MakeBreaker) -> None:
    cb = make_breaker()
    assert cb.call(lambda a, b, *, c: (a, b, c), 1, 2, c=3) == (1, 2, 3)
    assert cb.call(dict, x=1) == {"x": 1}


def test_call_reraises_the_same_exception_object(make_breaker: MakeBreaker) -> None:
    cb = make_breaker()
    error = Boom("same")

    def raise_it() -> None:
        raise error

    with pytest.raises(Boom) as caught:
        cb.call(raise_it)
    assert caught.value is error
    assert caught.value.__traceback__ is not None


def test_call_without_a_function_is_a_type_error(make_breaker: MakeBreaker) -> None:
    with pytest.raises(TypeError):
        make_breaker().call()


def test_decorator_preserves_metadata_and_counts(make_breaker: MakeBreaker) -> None:
    cb = make_breaker()

    @cb
    def fetch(x: int) -> int:
        """Fetch x."""
        return x * 2

    assert fetch(21) == 42
    assert fetch.__name__ == "fetch"
    assert fetch.__doc__ == "Fetch x."
    assert cb.metrics().total_successes == 1


# -- the CLOSED -> OPEN -> HALF_OPEN -> CLOSED cycle ----------------------------------------------


def test_opens_only_once_minimum_requests_are_in_the_window(make_breaker: MakeBreaker) -> None:
    cb = make_breaker(failure_threshold=3, minimum_requests=5)
    fail(cb, 4)
    assert cb.state is CLOSED  # 4 failures but only 4 outcomes
    fail(cb)
    assert cb.state is OPEN


def test_open_rejects_with_retry_after_then_admits_a_trial(
    make_breaker: MakeBreaker, clock: FakeClock
) -> None:
    cb = make_breaker(failure_threshold=2, minimum_requests=2, timeout=10.0)
    seen = transitions(cb)
    fail(cb, 2)
    clock.advance(4.0)
    with pytest.raises(CircuitOpenError) as rejected:
        cb.call(ok)
    assert rejected.value.retry_after == pytest.approx(6.0)
    assert rejected.value.state is OPEN
    assert rejected.value.name == "dep"
    assert not isinstance(rejected.value, CircuitRepairingError)
    clock.advance(6.0)
    succeed(cb)
    assert cb.state is HALF_OPEN
    assert seen == [("closed", "open"), ("open", "half_open")]


def test_success_threshold_successes_close_and_clear(
    make_breaker: MakeBreaker, clock: FakeClock
) -> None:
    cb = make_breaker(failure_threshold=2, minimum_requests=2, success_threshold=3, timeout=1.0)
    fail(cb, 2)
    clock.advance(1.0)
    succeed(cb, 2)
    assert cb.state is HALF_OPEN
    succeed(cb)
    assert cb.state is CLOSED
    m = cb.metrics()
    assert m.window_failure_rate == 0.0
    assert (m.total_requests, m.total_failures, m.total_successes) == (5, 2, 3)


def test_failed_trial_reopens_with_growing_capped_backoff(
    make_breaker: MakeBreaker, clock: FakeClock
) -> None:
    cb = make_breaker(
        failure_threshold=1, minimum_requests=1, timeout=10.0,
        retry_backoff_factor=2.0, max_retry_interval=35.0,
    )
    fail(cb)
    periods = []
    for _ in range(4):
        periods.append(cb.retry_after)
        clock.advance(cb.retry_after)
        fail(cb)  # the trial fails: open again, longer
        assert cb.state is OPEN
    assert periods == [10.0, 20.0, 35.0, 35.0]


def test_backoff_resets_when_the_circuit_closes(
    make_breaker: MakeBreaker, clock: FakeClock
) -> None:
    cb = make_breaker(failure_threshold=1, minimum_requests=1, success_threshold=1, timeout=10.0,
                      retry_backoff_factor=2.0)
    fail(cb)
    clock.advance(10.0)
    fail(cb)
    assert cb.retry_after == 20.0
    clock.advance(20.0)
    succeed(cb)
    assert cb.state is CLOSED
    fail(cb)
    assert cb.retry_after == 10.0


def test_half_open_admits_only_max_calls_and_rejects_the_rest(
    make_breaker: MakeBreaker, clock: FakeClock
) -> None:
    cb = make_breaker(failure_threshold=1, minimum_requests=1, success_threshold=5,
                      half_open_max_calls=2, timeout=1.0)
    fail(cb)
    clock.advance(1.0)
    first = cb.try_admit()
    second = cb.try_admit()
    with pytest.raises(CircuitOpenError) as rejected:
        cb.try_admit()
    assert rejected.value.retry_after is None
    assert rejected.value.state is HALF_OPEN
    cb.record(first, failed=False)
    third = cb.try_admit()  # a finished trial frees its slot
    cb.release(second)      # an ignored outcome gives its slot back
    fourth = cb.try_admit()
    for token in (third, fourth):
        cb.record(token, failed=False)
    assert cb.state is HALF_OPEN
    assert cb.metrics().total_rejections == 1


def test_half_open_max_calls_defaults_to_success_threshold(
    make_breaker: MakeBreaker, clock: FakeClock
) -> None:
    cb = make_breaker(failure_threshold=1, minimum_requests=1, success_threshold=2, timeout=1.0)
    fail(cb)
    clock.advance(1.0)
    cb.try_admit()
    cb.try_admit()
    with pytest.raises(CircuitOpenError):
        cb.try_admit()


def test_lost_trial_reopens_after_max_half_open_wait(
    make_breaker: MakeBreaker, clock: FakeClock
) -> None:
    cb = make_breaker(failure_threshold=1, minimum_requests=1, success_threshold=1, timeout=5.0,
                      max_half_open_wait=30.0, retry_backoff_factor=2.0)
    fail(cb)
    clock.advance(5.0)
    cb.try_admit()  # a trial that never reports back
    clock.advance(29.0)
    with pytest.raises(CircuitOpenError):
        cb.call(ok)
    assert cb.state is HALF_OPEN
    clock.advance(1.0)
    with pytest.raises(CircuitOpenError) as rejected:
        cb.call(ok)
    assert cb.state is OPEN
    assert rejected.value.retry_after == 10.0  # a lost trial counts as a failed one
    clock.advance(10.0)
    succeed(cb)
    assert cb.state is CLOSED


def test_outcome_admitted_before_a_transition_counts_only_in_totals(
    make_breaker: MakeBreaker, clock: FakeClock
) -> None:
    cb = make_breaker(failure_threshold=2, minimum_requests=2, success_threshold=1, timeout=1.0)
    slow_caller = cb.try_admit()  # admitted while CLOSED
    fail(cb, 2)
    assert cb.state is OPEN
    clock.advance(1.0)
    trial = cb.try_admit()
    cb.record(slow_caller, failed=True)  # arrives late: must not reopen the circuit
    assert cb.state is HALF_OPEN
    cb.record(trial, failed=False)
    assert cb.state is CLOSED
    assert cb.metrics().total_failures == 3


# -- the window and the trip rules ----------------------------------------------------------------


def test_window_slides_old_failures_out(make_breaker: MakeBreaker) -> None:
    cb = make_breaker(failure_threshold=3, minimum_requests=1, sliding_window_size=4,
                      failure_rate_threshold=None)
    fail(cb, 2)
    succeed(cb, 4)  # the two failures have slid out
    fail(cb, 2)
    assert cb.state is CLOSED
    assert cb.metrics().window_failure_rate == 0.5
    fail(cb)
    assert cb.state is OPEN


def test_failure_rate_rule(make_breaker: MakeBreaker) -> None:
    cb = make_breaker(failure_threshold=10, minimum_requests=10, sliding_window_size=10,
                      failure_rate_threshold=0.3)
    succeed(cb, 7)
    fail(cb, 2)
    assert cb.state is CLOSED  # 9 outcomes < minimum_requests
    fail(cb)
    assert cb.state is OPEN  # 3/10 >= 0.3 exactly


def test_failure_rate_rule_below_threshold_stays_closed(make_breaker: MakeBreaker) -> None:
    cb = make_breaker(failure_threshold=10, minimum_requests=10, sliding_window_size=10,
                      failure_rate_threshold=0.3)
    succeed(cb, 8)
    fail(cb, 2)
    assert cb.state is CLOSED


def test_slow_calls_are_counted_and_trip_the_slow_rate_rule(
    make_breaker: MakeBreaker, clock: FakeClock
) -> None:
    cb = make_breaker(failure_threshold=10, minimum_requests=4, sliding_window_size=10,
                      slow_call_duration=2.0, slow_call_rate_threshold=0.5)

    def slow() -> str:
        clock.advance(2.0)
        return "late"

    succeed(cb, 2)
    assert cb.call(slow) == "late"
    assert cb.state is CLOSED
    cb.call(slow)
    assert cb.state is OPEN
    m = cb.metrics()
    assert (m.total_slow_calls, m.total_failures, m.total_successes) == (2, 0, 4)


def test_slow_call_duration_alone_only_counts(make_breaker: MakeBreaker, clock: FakeClock) -> None:
    cb = make_breaker(minimum_requests=1, failure_threshold=1, slow_call_duration=1.0)
    cb.call(lambda: clock.advance(1.5))
    cb.call(lambda: clock.advance(0.5))
    assert cb.state is CLOSED
    assert cb.metrics().total_slow_calls == 1


def test_slow_trial_reopens_when_the_slow_rule_is_on(
    make_breaker: MakeBreaker, clock: FakeClock
) -> None:
    cb = make_breaker(failure_threshold=1, minimum_requests=1, timeout=1.0,
                      slow_call_duration=1.0, slow_call_rate_threshold=1.0)
    fail(cb)
    clock.advance(1.0)
    cb.call(lambda: clock.advance(1.0))
    assert cb.state is OPEN


# -- what counts as a failure ---------------------------------------------------------------------


def test_exceptions_outside_record_exceptions_count_as_successes(make_breaker: MakeBreaker) -> None:
    cb = make_breaker(failure_threshold=1, minimum_requests=1, record_exceptions=(Boom,))
    with pytest.raises(KeyError):
        cb.call({}.__getitem__, "missing")
    assert cb.state is CLOSED
    assert cb.metrics().total_successes == 1
    fail(cb)
    assert cb.state is OPEN


def test_ignored_exceptions_pass_through_uncounted(make_breaker: MakeBreaker) -> None:
    cb = make_breaker(failure_threshold=1, minimum_requests=1, ignore_exceptions=(Boom,))
    fail(cb, 3)
    m = cb.metrics()
    assert cb.state is CLOSED
    assert (m.total_requests, m.total_failures, m.total_successes) == (0, 0, 0)


def test_ignore_is_checked_before_record(make_breaker: MakeBreaker) -> None:
    cb = make_breaker(failure_threshold=1, minimum_requests=1,
                      record_exceptions=(Exception,), ignore_exceptions=(LookupError,))
    with pytest.raises(KeyError):
        cb.call({}.__getitem__, "missing")
    assert cb.metrics().total_requests == 0


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit, GeneratorExit])
def test_base_exceptions_pass_through_uncounted(make_breaker: MakeBreaker, exc_type: type) -> None:
    cb = make_breaker(failure_threshold=1, minimum_requests=1, record_exceptions=(BaseException,))

    def interrupted() -> None:
        raise exc_type()

    with pytest.raises(exc_type):
        cb.call(interrupted)
    with pytest.raises(exc_type), cb:
        raise exc_type()
    assert cb.state is CLOSED
    assert cb.metrics().total_requests == 0


def test_ignored_trial_gives_its_slot_back(make_breaker: MakeBreaker, clock: FakeClock) -> None:
    cb = make_breaker(failure_threshold=1, minimum_requests=1, success_threshold=1,
                      half_open_max_calls=1, timeout=1.0, ignore_exceptions=(KeyError,))
    fail(cb)
    clock.advance(1.0)
    with pytest.raises(KeyError):
        cb.call({}.__getitem__, "x")
    assert cb.state is HALF_OPEN
    succeed(cb)  # the slot is free again
    assert cb.state is CLOSED


class AbstractFailure(Exception, metaclass=abc.ABCMeta):
    """An exception class whose metaclass answers isinstance for registered classes."""


class Registered(Exception):
    pass


AbstractFailure.register(Registered)


def test_exception_classes_with_a_metaclass_are_honoured(make_breaker: MakeBreaker) -> None:
    cb = make_breaker(failure_threshold=1, minimum_requests=1, record_exceptions=(AbstractFailure,))

    def raise_registered() -> None:
        raise Registered()

    fail(cb)  # Boom is not an AbstractFailure: a success
    assert cb.state is CLOSED
    with pytest.raises(Registered):
        cb.call(raise_registered)
    assert cb.state is OPEN


def test_metaclass_exceptions_in_ignore_list(make_breaker: MakeBreaker) -> None:
    cb = make_breaker(failure_threshold=1, minimum_requests=1, ignore_exceptions=(AbstractFailure,))
    with pytest.raises(Registered):
        cb.call(lambda: (_ for _ in ()).throw(Registered()))
    assert cb.metrics().total_requests == 0


class HttpError(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def raise_status(status: int) -> None:
    raise HttpError(status)


def test_predicates_and_classes_mix(make_breaker: MakeBreaker) -> None:
    cb = make_breaker(failure_threshold=2, minimum_requests=2, failure_rate_threshold=None,
                      record_exceptions=(OSError, lambda e: getattr(e, "status", 0) >= 500),
                      ignore_exceptions=(lambda e: getattr(e, "status", 0) == 404,))
    for status in (404, 400):
        with pytest.raises(HttpError):
            cb.call(raise_status, status)
    m = cb.metrics()
    # 404 ignored, 400 a success
    assert (m.total_requests, m.total_failures, m.total_successes) == (1, 0, 1)
    with pytest.raises(HttpError):
        cb.call(raise_status, 503)
    with pytest.raises(OSError), cb:
        raise OSError()
    assert cb.state is OPEN


def test_raising_predicate_is_logged_and_the_call_counts_as_failed(
    make_breaker: MakeBreaker, caplog: pytest.LogCaptureFixture
) -> None:
    cb = make_breaker(failure_threshold=5, minimum_requests=5,
                      record_exceptions=(lambda e: e.status >= 500,),
                      ignore_exceptions=(lambda e: e.status == 404,))
    with pytest.raises(Boom):
        cb.call(lambda: (_ for _ in ()).throw(Boom()))  # Boom has no .status
    m = cb.metrics()
    assert (m.total_requests, m.total_failures, m.total_successes) == (1, 1, 0)
    assert "predicate" in caplog.text


@pytest.mark.parametrize("field", ["record_exceptions", "ignore_exceptions"])
@pytest.mark.parametrize("bad", [int, (ValueError, dict), (ValueError, 3), "nope"])
def test_non_exception_classes_and_non_callables_are_refused(field: str, bad: Any) -> None:
    with pytest.raises(TypeError, match=field) as refused:
        CircuitBreakerConfig(**{field: bad})
    assert repr(bad) in str(refused.value)


def test_single_predicate_is_accepted() -> None:
    def server_error(e: BaseException) -> bool:
        return False

    assert CircuitBreakerConfig(record_exceptions=server_error).record_exceptions == (
        server_error,
    )


# -- observe-only, context manager, listeners -----------------------------------------------------


def test_observe_only_changes_state_but_never_rejects(
    make_breaker: MakeBreaker, clock: FakeClock
) -> None:
    cb = make_breaker(failure_threshold=2, minimum_requests=2, success_threshold=1, timeout=5.0,
                      enable_fast_fail=False)
    seen = transitions(cb)
    fail(cb, 2)
    assert cb.state is OPEN
    succeed(cb, 3)  # still called while open
    fail(cb)
    assert cb.state is OPEN
    clock.advance(5.0)
    succeed(cb)
    assert cb.state is CLOSED
    m = cb.metrics()
    assert m.total_rejections == 0
    assert m.total_requests == 7
    assert seen == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]


def test_observe_only_admits_while_repairing(make_breaker: MakeBreaker) -> None:
    cb = make_breaker(enable_fast_fail=False)
    cb.begin_repair()
    succeed(cb)
    assert cb.state is REPAIRING


def test_with_block_counts_and_rejects_while_open(
    make_breaker: MakeBreaker, clock: FakeClock
) -> None:
    cb = make_breaker(failure_threshold=2, minimum_requests=2, timeout=3.0)
    ran = []
    for _ in range(2):
        with pytest.raises(Boom), cb:
            raise Boom()
    assert cb.state is OPEN
    with pytest.raises(CircuitOpenError), cb:
        ran.append("body")
    assert ran == []
    clock.advance(3.0)
    with cb:
        ran.append("trial")
    assert ran == ["trial"]
    assert cb.state is HALF_OPEN


def test_with_blocks_nest(make_breaker: MakeBreaker) -> None:
    cb = make_breaker(failure_threshold=5, minimum_requests=5)
    with cb, pytest.raises(Boom), cb:
        raise Boom()
    m = cb.metrics()
    assert (m.total_successes, m.total_failures) == (1, 1)


def test_with_block_times_slow_calls(make_breaker: MakeBreaker, clock: FakeClock) -> None:
    cb = make_breaker(slow_call_duration=1.0)
    with cb:
        clock.advance(1.0)
    assert cb.metrics().total_slow_calls == 1


def test_raising_listener_is_logged_and_harmless(
    make_breaker: MakeBreaker, caplog: pytest.LogCaptureFixture
) -> None:
    cb = make_breaker(failure_threshold=1, minimum_requests=1)
    after: list[str] = []

    def bad_listener(b: CircuitBreaker, old: Any, new: Any) -> None:
        raise RuntimeError("listener bug")

    cb.add_listener(bad_listener)
    cb.add_listener(lambda b, old, new: after.append(new.value))
    with caplog.at_level(logging.ERROR, logger="recovery.breaker"):
        fail(cb)  # the caller sees its own Boom, not the listener's error
    assert cb.state is OPEN
    assert after == ["open"]
    assert "listener bug" in caplog.text
    cb.remove_listener(bad_listener)
    cb.reset()
    assert after == ["open", "closed"]


def test_listener_gets_the_breaker(make_breaker: MakeBreaker) -> None:
    cb = make_breaker(failure_threshold=1, minimum_requests=1)
    got: list[Any] = []
    cb.add_listener(lambda b, old, new: got.append(b))
    fail(cb)
    assert got == [cb]


def test_add_listener_rejects_non_callables(make_breaker: MakeBreaker) -> None:
    with pytest.raises(TypeError, match="listener"):
        make_breaker().add_listener(42)


# -- manual control -------------------------------------------------------------------------------


def test_reset_closes_clears_window_and_backoff(
    make_breaker: MakeBreaker, clock: FakeClock
) -> None:
    cb = make_breaker(failure_threshold=2, minimum_requests=2, timeout=10.0,
                      retry_backoff_factor=2.0)
    fail(cb, 2)
    clock.advance(10.0)
    fail(cb)
    assert cb.retry_after == 20.0
    cb.reset()
    assert cb.state is CLOSED
    fail(cb)
    assert cb.state is CLOSED  # the window was cleared: 1 outcome only
    fail(cb)
    assert cb.retry_after == 10.0  # backoff was reset


def test_force_open_for_a_duration_or_until_reset(
    make_breaker: MakeBreaker, clock: FakeClock
) -> None:
    cb = make_breaker(timeout=10.0)
    cb.force_open()
    assert cb.state is OPEN and cb.retry_after == 10.0
    cb.force_open(2.5)
    assert cb.retry_after == 2.5
    cb.force_open(float("inf"))
    clock.advance(1e9)
    with pytest.raises(CircuitOpenError):
        cb.call(ok)
    cb.reset()
    succeed(cb)
    with pytest.raises(ValueError, match="duration"):
        cb.force_open(-1.0)


def test_repair_rejects_with_repairing_error_then_half_opens(make_breaker: MakeBreaker) -> None:
    cb = make_breaker(success_threshold=1)
    seen = transitions(cb)
    cb.begin_repair()
    with pytest.raises(CircuitRepairingError) as rejected:
        cb.call(ok)
    assert rejected.value.state is REPAIRING and rejected.value.retry_after is None
    assert cb.end_repair(True)
    assert cb.state is HALF_OPEN
    succeed(cb)
    assert seen == [("closed", "repairing"), ("repairing", "half_open"), ("half_open", "closed")]
    assert not cb.end_repair(True)  # not repairing: nothing to end


def test_failed_repair_opens(make_breaker: MakeBreaker, clock: FakeClock) -> None:
    cb = make_breaker(timeout=7.0)
    cb.begin_repair()
    cb.end_repair(False)
    assert cb.state is OPEN and cb.retry_after == 7.0


def test_allow_trial_moves_open_to_half_open_only(make_breaker: MakeBreaker) -> None:
    cb = make_breaker(timeout=100.0)
    assert not cb.allow_trial()
    cb.force_open()
    assert cb.allow_trial()
    assert cb.state is HALF_OPEN
    succeed(cb)


# -- metrics --------------------------------------------------------------------------------------


def test_metrics_are_json_ready_and_track_open_time(
    make_breaker: MakeBreaker, clock: FakeClock
) -> None:
    cb = make_breaker(failure_threshold=1, minimum_requests=1, success_threshold=1, timeout=4.0)
    succeed(cb)
    fail(cb)
    with pytest.raises(CircuitOpenError):
        cb.call(ok)
    m = cb.metrics()
    assert m.state is OPEN
    assert m.failure_rate == 0.5
    assert m.last_failure is not None and m.last_success is not None
    assert m.next_retry_time is not None
    clock.advance(4.0)
    succeed(cb)
    m = cb.metrics()
    assert m.circuit_open_time == 4.0
    assert m.total_rejections == 1
    assert m.health_check_success is None
    cb.record_health_check(True)
    data = cb.metrics().to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["state"] == "closed"
    assert data["health_check_success"] is True
    assert data["last_failure"].endswith("Z")


def test_error_is_cheap_and_picklable() -> None:
    import pickle

    class State:
        """A state that counts how often the message reads it."""

        reads = 0

        @property
        def value(self) -> str:
            State.reads += 1
            return "open"

    # Cheap: the three values are its args and nothing else is stored; no message is
    # formatted, no traceback or frame is held, until str() asks.
    state = State()
    error = CircuitOpenError("dep", state, 1.5)
    assert error.args == ("dep", state, 1.5)
    assert error.__dict__ == {}
    assert (error.__traceback__, error.__context__, error.__cause__) == (None, None, None)
    assert State.reads == 0
    assert str(error) == "circuit 'dep' is open; retry after 1.500s"
    assert State.reads == 1
    # The compiled breaker builds it with BaseException.__new__ alone (no __init__).
    bare = BaseException.__new__(CircuitOpenError, "dep", OPEN, 1.5)
    assert (bare.name, bare.state, bare.retry_after) == ("dep", OPEN, 1.5)
    assert str(bare) == "circuit 'dep' is open; retry after 1.500s"
    assert bare.__dict__ == {}
    # What each window raises is built the same way.
    for window in filter(None, WINDOWS.values()):
        breaker = breaker_class(window)("dep", clock=FakeClock(1000.0))
        breaker.force_open(1.5)
        with pytest.raises(CircuitOpenError) as rejected:
            breaker.call(lambda: None)
        assert rejected.value.args == ("dep", OPEN, 1.5)
        assert rejected.value.__dict__ == {}

    error = CircuitOpenError("dep", OPEN, 1.5)
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.name, copy.state, copy.retry_after) == ("dep", OPEN, 1.5)
    assert str(copy) == "circuit 'dep' is open; retry after 1.500s"


# -- config validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "error", "words"),
    [
        ({"failure_threshold": 0}, ValueError, "failure_threshold"),
        ({"success_threshold": -1}, ValueError, "success_threshold"),
        ({"timeout": 0}, ValueError, "timeout"),
        ({"timeout": -3.0}, ValueError, "timeout"),
        ({"failure_threshold": 101}, ValueError, "failure_threshold"),
        ({"minimum_requests": 200}, ValueError, "minimum_requests"),
        ({"failure_rate_threshold": 0.0}, ValueError, "failure_rate_threshold"),
        ({"failure_rate_threshold": 1.01}, ValueError, "failure_rate_threshold"),
        ({"slow_call_rate_threshold": 2, "slow_call_duration": 1}, ValueError, "slow_call_rate"),
        ({"retry_backoff_factor": 0.5}, ValueError, "retry_backoff_factor"),
        ({"failure_threshold": "5"}, TypeError, "failure_threshold"),
        ({"failure_threshold": 2.5}, TypeError, "failure_threshold"),
        ({"enable_fast_fail": "yes"}, TypeError, "enable_fast_fail"),
        ({"timeout": "30"}, TypeError, "timeout"),
        ({"record_exceptions": (int,)}, TypeError, "record_exceptions"),
        ({"ignore_exceptions": 3}, TypeError, "ignore_exceptions"),
        ({"half_open_max_calls": 0}, ValueError, "half_open_max_calls"),
        ({"max_half_open_wait": -1}, ValueError, "max_half_open_wait"),
    ],
)
def test_bad_config_names_field_and_value(fields: dict[str, Any], error: type, words: str) -> None:
    with pytest.raises(error) as raised:
        CircuitBreakerConfig(**fields)
    message = str(raised.value)
    assert words in message
    assert repr(next(iter(fields.values()))) in message  # the bad value, never left out


def test_config_accepts_timedelta_and_single_exception_class() -> None:
    config = CircuitBreakerConfig(timeout=datetime.timedelta(minutes=1),
                                  slow_call_duration=datetime.timedelta(milliseconds=250),
                                  record_exceptions=OSError)
    assert config.timeout == 60.0
    assert config.slow_call_duration == 0.25
    assert config.record_exceptions == (OSError,)
    assert config.trial_calls == config.success_threshold


def test_breaker_rejects_bad_name_and_config() -> None:
    with pytest.raises(ValueError, match="name"):
        CircuitBreaker("")
    with pytest.raises(TypeError, match="config"):
        CircuitBreaker("x", {"timeout": 1})  # type: ignore[arg-type]


def test_config_fields_as_keywords(breaker_cls: Any, clock: FakeClock) -> None:
    cb = breaker_cls("db", failure_threshold=3, minimum_requests=3, clock=clock)
    assert cb.config == CircuitBreakerConfig(failure_threshold=3, minimum_requests=3)
    with pytest.raises(TypeError, match="not both"):
        breaker_cls("db", CircuitBreakerConfig(), failure_threshold=3)
    with pytest.raises(TypeError):
        breaker_cls("db", no_such_field=1)
    with pytest.raises(ValueError, match="failure_threshold"):
        breaker_cls("db", failure_threshold=0)


def test_default_clock_is_real(breaker_cls: type[CircuitBreaker]) -> None:
    cb = breaker_cls("real", CircuitBreakerConfig(failure_threshold=1, minimum_requests=1))
    # Bracketed by the real clock, so a thread descheduled for a while cannot fail it.
    before = time.monotonic()
    fail(cb)
    left = cb.retry_after
    elapsed = time.monotonic() - before
    assert left is not None
    assert cb.config.timeout - elapsed - 1e-6 <= left <= cb.config.timeout
    assert cb.clock is None


def test_replay_matches_calls_on_a_fake_clock(make_breaker: MakeBreaker, clock: FakeClock) -> None:
    import random
    from array import array

    fields = dict(failure_threshold=3, minimum_requests=4, sliding_window_size=8, timeout=2.0,
                  success_threshold=2, slow_call_duration=0.5, slow_call_rate_threshold=0.75)
    rng = random.Random(7)
    t, oks, lats = array("d"), array("b"), array("d")
    now = 0.0
    for _ in range(500):
        now += rng.choice([0.6, 1.0, 2.5])
        t.append(now)
        oks.append(rng.random() > 0.4)
        lats.append(rng.choice([0.0, 0.1, 0.6]))
    admitted, states = make_breaker(**fields).replay(t, oks, lats)

    live = make_breaker(**fields)
    start = clock.monotonic()
    expected_admitted, expected_states = bytearray(), bytearray()
    for when, good, latency in zip(t, oks, lats, strict=True):
        clock.advance(start + when - clock.monotonic())

        def work(good: int = good, latency: float = latency) -> None:
            clock.advance(latency)
            if not good:
                raise Boom()

        try:
            live.call(work)
            expected_admitted.append(1)
        except Boom:
            expected_admitted.append(1)
        except CircuitOpenError:
            expected_admitted.append(0)
        expected_states.append(live.state_code)
    assert admitted == bytes(expected_admitted)
    assert states == bytes(expected_states)
    assert 0 < sum(admitted) < len(admitted)


def test_replay_rejects_unequal_lengths(make_breaker: MakeBreaker) -> None:
    from array import array

    with pytest.raises(ValueError, match="same length"):
        make_breaker().replay(array("d", [1.0]), array("b", [1, 1]), array("d", [0.0]))


def test_configs_and_errors_take_positional_or_keyword_arguments() -> None:
    from recovery import AlertThresholds

    assert CircuitBreakerConfig(7, 2).failure_threshold == 7
    assert AlertThresholds(3, 0.5, 10.0).recovery_time == 10.0
    error = CircuitOpenError(name="n", state=OPEN, retry_after=None)
    assert (error.name, error.state, error.retry_after) == ("n", OPEN, None)
    assert CircuitBreakerConfig(slow_call_rate_threshold=1.0).slow_call_duration is None


def test_set_opened_by_names_the_remote_node_while_open(make_breaker: MakeBreaker) -> None:
    cb = make_breaker()
    cb.set_opened_by("node-2")
    cb.force_open(60)
    assert cb.metrics().opened_by == "node-2"
    cb.reset()
    assert cb.metrics().opened_by is None  # a closed breaker is held open by no one
    with pytest.raises(TypeError, match="node_id"):
        cb.set_opened_by(2)  # type: ignore[arg-type]
