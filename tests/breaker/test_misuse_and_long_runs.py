"""Misuse and long runs must give a Python exception or the right state: never a crash,
never a wedged breaker, never an overflow. Both windows; crash repros run in a subprocess
so that a segfault fails the test instead of killing pytest."""

from __future__ import annotations

import inspect
import json
import math
import os
import subprocess
import sys
import textwrap
import threading
import traceback
from collections.abc import Iterator
from typing import Any

import pytest

from recovery import CircuitBreaker, CircuitBreakerConfig, CircuitBreakerState, CircuitOpenError
from recovery.testing import FakeClock
from tests.helpers import WINDOWS, MakeBreaker

CLOSED, OPEN, HALF_OPEN = (
    CircuitBreakerState.CLOSED,
    CircuitBreakerState.OPEN,
    CircuitBreakerState.HALF_OPEN,
)
WAIT = 10.0


class Boom(Exception):
    pass


def boom() -> None:
    raise Boom()


def fail(cb: Any) -> None:
    with pytest.raises(Boom):
        cb.call(boom)


@pytest.fixture(params=sorted(WINDOWS))
def no_extensions(request: pytest.FixtureRequest) -> str:
    """The RECOVERY_NO_EXTENSIONS value that selects each window in a subprocess."""
    if WINDOWS[request.param] is None:
        pytest.skip("the compiled window is not built (CI fails the build instead)")
    return "0" if request.param == "compiled" else "1"


def run_python(code: str, no_extensions: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RECOVERY_NO_EXTENSIONS": no_extensions}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True,
        text=True, timeout=60,
    )


# -- crashes --------------------------------------------------------------------------------------


def test_with_blocks_closed_on_another_thread_do_not_crash(no_extensions: str) -> None:
    result = run_python(
        """
        import threading, recovery
        cb = recovery.CircuitBreaker("db")
        def stream():
            with cb:
                yield 1
        gens = [stream(), stream()]
        for g in gens:
            next(g)
        errors = []
        def close_all():
            for g in gens:
                try:
                    g.close()
                except RuntimeError as exc:
                    errors.append(exc)
        t = threading.Thread(target=close_all)
        t.start()
        t.join()
        assert len(errors) == 2 and "another thread" in str(errors[0]), errors
        with cb:
            pass
        assert cb.metrics().total_requests == 1, cb.metrics()
        print("ok")
        """,
        no_extensions,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_subclass_without_super_init_raises_instead_of_crashing(no_extensions: str) -> None:
    result = run_python(
        """
        import recovery
        class Mine(recovery.CircuitBreaker):
            def __init__(self):
                pass  # forgot super().__init__()
        for use in (lambda b: b.call(int), lambda b: b.record(0, True),
                    lambda b: b.release(1), lambda b: b.reset(), lambda b: b.__enter__()):
            try:
                use(Mine())
            except (RuntimeError, AttributeError) as exc:
                print(type(exc).__name__)
            else:
                raise SystemExit("no error")
        """,
        no_extensions,
    )
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.split()) == 5


def test_foreign_exit_raises_and_leaves_no_wedged_trial(
    make_breaker: MakeBreaker, clock: FakeClock
) -> None:
    cb = make_breaker(failure_threshold=1, minimum_requests=1, success_threshold=1,
                      half_open_max_calls=1, timeout=1.0)
    fail(cb)
    clock.advance(1.0)

    def stream() -> Iterator[int]:
        with cb:  # the trial: its slot is held while the generator is suspended
            yield 1

    gen = stream()
    next(gen)
    errors: list[BaseException] = []

    def close() -> None:
        try:
            gen.close()
        except RuntimeError as exc:
            errors.append(exc)

    thread = threading.Thread(target=close)
    thread.start()
    thread.join(WAIT)
    assert len(errors) == 1 and "another thread" in str(errors[0])
    # The lost trial cannot wedge half-open: the circuit reopened, as for a lost trial.
    assert cb.state is OPEN
    clock.advance(cb.retry_after)
    assert cb.call(int) == 0
    assert cb.state is CLOSED
    with cb:  # this thread's own blocks still pair
        pass
    assert cb.metrics().total_successes == 2


# -- wedged or broken state -----------------------------------------------------------------------


def test_listener_interrupt_on_half_open_does_not_wedge(
    make_breaker: MakeBreaker, clock: FakeClock
) -> None:
    cb = make_breaker(failure_threshold=1, minimum_requests=1, success_threshold=1,
                      half_open_max_calls=1, timeout=1.0)
    interrupt = [True]

    def listener(b: Any, old: Any, new: Any) -> None:
        if new is HALF_OPEN and interrupt.pop():
            raise KeyboardInterrupt()

    cb.add_listener(listener)
    fail(cb)
    clock.advance(1.0)
    with pytest.raises(KeyboardInterrupt):
        cb.call(int)
    assert cb.state is HALF_OPEN
    assert cb.call(int) == 0  # the trial slot was given back
    assert cb.state is CLOSED


@pytest.mark.parametrize(("factor", "trials"), [(2.0, 1_100), (1e200, 5)])
def test_long_outage_caps_the_backoff_without_overflow(
    make_breaker: MakeBreaker, clock: FakeClock, factor: float, trials: int
) -> None:
    cb = make_breaker(failure_threshold=1, minimum_requests=1, timeout=1.0,
                      retry_backoff_factor=factor, max_retry_interval=300.0)
    fail(cb)
    for _ in range(trials):
        clock.advance(cb.retry_after)
        fail(cb)  # the trial fails with the function's own error, never OverflowError
        assert cb.state is OPEN
    assert cb.retry_after == 300.0


def test_tokens_are_single_use(make_breaker: MakeBreaker, clock: FakeClock) -> None:
    cb = make_breaker(failure_threshold=1, minimum_requests=1, success_threshold=2,
                      half_open_max_calls=1, timeout=1.0)
    fail(cb)
    clock.advance(1.0)
    token = cb.try_admit()
    cb.release(token)
    cb.release(token)  # spent: frees nothing more
    second = cb.try_admit()
    with pytest.raises(CircuitOpenError):
        cb.try_admit()  # one slot, held by the second trial
    cb.record(second, failed=False)
    cb.record(second, failed=False)  # spent: not a second trial success, not counted
    assert cb.state is HALF_OPEN
    assert cb.metrics().total_successes == 1
    third = cb.try_admit()
    cb.record(third, failed=False)
    assert cb.state is CLOSED


def test_a_spent_token_cannot_speak_for_the_trial_that_took_its_slot_since(
    make_breaker: MakeBreaker, clock: FakeClock
) -> None:
    # Found by the model test: a released trial token, used after a later trial took the
    # same slot, was counted as that trial's outcome and reopened the circuit.
    cb = make_breaker(failure_threshold=1, minimum_requests=1, success_threshold=1,
                      half_open_max_calls=1, timeout=1.0)
    fail(cb)
    clock.advance(1.0)
    first = cb.try_admit()
    cb.release(first)  # an ignored outcome: the slot is given back
    second = cb.try_admit()  # the same slot, taken again
    cb.record(first, failed=True)  # spent: not the second trial's failure
    cb.release(first)  # nor its release
    assert cb.state is HALF_OPEN
    with pytest.raises(CircuitOpenError):
        cb.try_admit()  # the second trial still holds the only slot
    cb.record(second, failed=False)
    assert cb.state is CLOSED
    assert cb.metrics().total_failures == 1  # the trip's failure only


def test_name_is_read_only(make_breaker: MakeBreaker) -> None:
    cb = make_breaker()
    with pytest.raises(AttributeError):
        cb.name = "other"
    assert cb.name == "dep"


def test_held_open_until_reset_has_no_retry_time(
    make_breaker: MakeBreaker, clock: FakeClock
) -> None:
    cb = make_breaker()
    cb.force_open(math.inf)
    with pytest.raises(CircuitOpenError) as rejected:
        cb.call(int)
    assert rejected.value.retry_after is None
    assert "retry after unknown" in str(rejected.value)
    assert cb.retry_after is None
    data = cb.metrics().to_dict()
    assert data["next_retry_time"] is None
    json.dumps(data, allow_nan=False)
    assert CircuitOpenError("x", OPEN, math.inf).retry_after is None


def _rejected(cb: Any) -> CircuitOpenError:
    try:
        cb.call(int)
    except CircuitOpenError as error:
        return error
    raise AssertionError("not rejected")


@pytest.mark.parametrize("keep", ["error", "args", "retry_after"])
def test_what_a_caller_keeps_of_a_rejection_is_never_changed_by_a_later_one(
    make_breaker: MakeBreaker, clock: FakeClock, keep: str
) -> None:
    # The compiled window refills the args of its last rejection's error in place once
    # nothing else refers to them: an error, its args or its retry_after that a caller
    # still holds must keep their values.
    cb = make_breaker(timeout=10.0)
    cb.force_open()
    _rejected(cb)  # the args a later rejection may refill
    clock.advance(1.0)
    first = _rejected(cb)
    kept = {"error": first, "args": first.args, "retry_after": first.retry_after}[keep]
    del first
    for _ in range(2):
        clock.advance(1.0)
        later = _rejected(cb)
    cb.begin_repair()
    repairing = _rejected(cb)
    expected = {"error": ("dep", OPEN, 9.0), "args": ("dep", OPEN, 9.0), "retry_after": 9.0}
    assert (kept.args if keep == "error" else kept) == expected[keep]
    assert later.args == ("dep", OPEN, 7.0)
    assert repairing.args == ("dep", CircuitBreakerState.REPAIRING, None)
    assert cb.metrics().total_rejections == 5


def test_each_rejection_is_a_new_error_with_its_own_values(
    make_breaker: MakeBreaker, clock: FakeClock
) -> None:
    cb = make_breaker(timeout=10.0, half_open_max_calls=1)
    cb.force_open()
    seen = []
    for _ in range(4):
        error = _rejected(cb)
        seen.append((error.state, error.retry_after, error.__traceback__ is not None))
        del error
        clock.advance(2.5)
    token = cb.try_admit()  # the one trial: half-open now
    error = _rejected(cb)
    seen.append((error.state, error.retry_after, error.__traceback__ is not None))
    cb.release(token)
    assert seen == [
        (OPEN, 10.0, True), (OPEN, 7.5, True), (OPEN, 5.0, True), (OPEN, 2.5, True),
        (HALF_OPEN, None, True),
    ]


def test_a_rejection_while_handling_an_exception_is_chained_to_it(
    make_breaker: MakeBreaker,
) -> None:
    cb = make_breaker()
    cb.force_open()
    try:
        raise KeyError("first")
    except KeyError as first:
        handled = first
        error = _rejected(cb)
    assert error.__context__ is handled
    assert _rejected(cb).__context__ is None


def _enter_rejected(cb: Any) -> None:
    with cb:
        pass


@pytest.mark.parametrize("use", [lambda cb: cb.call(int), _enter_rejected])
def test_a_rejection_carries_no_frame_of_the_compiled_window(
    make_breaker: MakeBreaker, use: Any
) -> None:
    # Raised from C, as a bare raise would be: no traceback entry for the window's
    # Cython functions (each one costs about the rejection itself, and reads as noise).
    cb = make_breaker()
    cb.force_open()
    with pytest.raises(CircuitOpenError) as rejected:
        use(cb)
    files = [frame.filename for frame in traceback.extract_tb(rejected.value.__traceback__)]
    assert files[0] == __file__
    assert not [name for name in files if name.endswith((".pyx", ".pxi"))]


# -- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field", ["success_threshold", "half_open_max_calls", "sliding_window_size"]
)
def test_counts_have_upper_bounds_named_in_the_error(field: str) -> None:
    with pytest.raises(ValueError, match=rf"{field} must be <= \d+, got {10**30}"):
        CircuitBreakerConfig(**{field: 10**30})


def test_largest_bounds_are_usable(breaker_cls: Any, clock: FakeClock) -> None:
    config = CircuitBreakerConfig(success_threshold=1_000, half_open_max_calls=1_000,
                                  sliding_window_size=100_000)
    cb = breaker_cls("big", config, clock=clock)
    cb.force_open(0.0)
    tokens = [cb.try_admit() for _ in range(1_000)]
    with pytest.raises(CircuitOpenError):
        cb.try_admit()
    for token in tokens:
        cb.record(token, failed=False)
    assert cb.state is CLOSED


@pytest.mark.parametrize(("name", "error"), [("", ValueError), ("  ", ValueError),
                                             (5, TypeError), (None, TypeError)])
def test_bad_breaker_names(breaker_cls: Any, name: Any, error: type) -> None:
    with pytest.raises(error, match="name"):
        breaker_cls(name)


def test_a_breaker_without_a_name_says_that_it_needs_one(breaker_cls: Any) -> None:
    # Not Python's "__init__() missing 1 required positional argument" naming a mixin.
    for built in (lambda: breaker_cls(failure_threshold=5), lambda: breaker_cls()):
        with pytest.raises(TypeError, match=r"needs a name.*CircuitBreaker\("):
            built()
    assert "<required>" in str(inspect.signature(CircuitBreaker))


@pytest.mark.parametrize("field", ["health_check_interval", "health_check_timeout"])
def test_health_check_periods_have_a_floor(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        CircuitBreakerConfig(**{field: 1e-7})
    assert getattr(CircuitBreakerConfig(**{field: 0.01}), field) == 0.01


def test_public_breaker_takes_keywords() -> None:
    assert CircuitBreaker("db", failure_threshold=3).config.failure_threshold == 3


class FlakyClock(FakeClock):
    """A user clock that raises while ``broken`` is set."""

    broken = False

    def monotonic(self) -> float:
        if self.broken:
            raise OSError("clock unavailable")
        return super().monotonic()


@pytest.mark.parametrize("how", ["call", "with", "decorator"])
def test_clock_failing_at_the_start_gives_the_trial_slot_back(
    breaker_cls: Any, how: str
) -> None:
    clock = FlakyClock()
    cb = breaker_cls("dep", CircuitBreakerConfig(
        failure_threshold=1, minimum_requests=1, success_threshold=1, half_open_max_calls=1,
        timeout=1.0, slow_call_duration=10.0), clock=clock)
    fail(cb)
    clock.advance(1.0)
    cb.allow_trial()
    clock.broken = True

    @cb
    def rows() -> Iterator[int]:
        yield 1

    with pytest.raises(OSError, match="clock"):
        if how == "call":
            cb.call(int)
        elif how == "with":
            with cb:
                pass
        else:
            next(rows())
    clock.broken = False
    assert cb.call(int) == 0  # the slot taken before the clock failed was given back
    assert cb.state is CLOSED
