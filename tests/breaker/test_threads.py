"""Exactness under threads, against both windows. Every wait is bounded."""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import pytest

from recovery import CircuitBreakerState, CircuitOpenError
from recovery.testing import FakeClock
from tests.helpers import MakeBreaker, run_threads

WAIT = 10.0  # seconds; a hang fails the test instead of CI


class Boom(Exception):
    pass


def test_mixed_calls_from_8_threads_give_exact_totals(make_breaker: MakeBreaker) -> None:
    # Thresholds no mix can reach: the circuit stays closed, every call is counted.
    cb = make_breaker(failure_threshold=100, minimum_requests=100, sliding_window_size=100)
    calls = 5_000
    start = threading.Barrier(8, timeout=WAIT)

    def worker(index: int) -> None:
        start.wait()
        for i in range(calls):
            if (i + index) % 50 == 0:
                with contextlib.suppress(Boom):
                    cb.call(_raise)
            elif i % 2:
                cb.call(int)
            else:
                with cb:
                    pass

    run_threads(8, worker, WAIT)
    m = cb.metrics()
    failures_per_thread = [sum(1 for i in range(calls) if (i + t) % 50 == 0) for t in range(8)]
    assert m.total_requests == 8 * calls
    assert m.total_failures == sum(failures_per_thread)
    assert m.total_successes == 8 * calls - sum(failures_per_thread)
    assert m.total_rejections == 0
    assert m.state is CircuitBreakerState.CLOSED


def _raise() -> None:
    raise Boom()


def test_trip_under_8_failing_threads_is_one_transition(make_breaker: MakeBreaker) -> None:
    cb = make_breaker(failure_threshold=20, minimum_requests=20, timeout=60.0)
    opened: list[Any] = []
    cb.add_listener(lambda b, old, new: opened.append((old, new)))
    start = threading.Barrier(8, timeout=WAIT)
    outcomes = {"failed": 0, "rejected": 0}
    lock = threading.Lock()

    def worker(index: int) -> None:
        start.wait()
        for _ in range(200):
            try:
                cb.call(_raise)
            except Boom:
                key = "failed"
            except CircuitOpenError:
                key = "rejected"
            with lock:
                outcomes[key] += 1

    run_threads(8, worker, WAIT)
    assert opened == [(CircuitBreakerState.CLOSED, CircuitBreakerState.OPEN)]
    m = cb.metrics()
    assert m.total_failures == outcomes["failed"] >= 20
    assert m.total_rejections == outcomes["rejected"]
    assert outcomes["failed"] + outcomes["rejected"] == 1600


def test_half_open_admits_at_most_max_trials_concurrently(
    make_breaker: MakeBreaker, clock: FakeClock
) -> None:
    cb = make_breaker(failure_threshold=1, minimum_requests=1, success_threshold=10,
                      half_open_max_calls=3, timeout=1.0)
    with pytest.raises(Boom):
        cb.call(_raise)
    clock.advance(1.0)
    inside = threading.Barrier(4, timeout=WAIT)  # 3 trials + the test thread
    release = threading.Event()
    admitted = []
    rejected = []
    changed = threading.Condition()
    start = threading.Barrier(8, timeout=WAIT)

    def trial() -> None:
        with changed:
            admitted.append(1)
        inside.wait()
        assert release.wait(WAIT)

    def worker(index: int) -> None:
        start.wait()
        try:
            cb.call(trial)
        except CircuitOpenError:
            with changed:
                rejected.append(index)
                changed.notify_all()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    inside.wait()  # exactly three trials are inside user code now
    with changed:  # ... and the other five are rejected while those still run
        assert changed.wait_for(lambda: len(rejected) == 5, WAIT)
    release.set()
    for thread in threads:
        thread.join(WAIT)
        assert not thread.is_alive()
    assert len(admitted) == 3
    assert len(rejected) == 5
    assert cb.state is CircuitBreakerState.HALF_OPEN
    assert cb.metrics().total_successes == 3


def test_two_threads_can_be_inside_user_code_at_once(make_breaker: MakeBreaker) -> None:
    cb = make_breaker()
    both_inside = threading.Barrier(2, timeout=WAIT)

    def meet() -> str:
        both_inside.wait()  # would time out if the breaker held a lock around fn
        return "met"

    results: list[str] = []
    run_threads(2, lambda i: results.append(cb.call(meet)), WAIT)
    assert results == ["met", "met"]


def test_with_blocks_from_threads_keep_their_own_admission(
    make_breaker: MakeBreaker, clock: FakeClock
) -> None:
    # A thread that entered as a half-open trial must release that trial, not another's.
    cb = make_breaker(failure_threshold=1, minimum_requests=1, success_threshold=2,
                      half_open_max_calls=2, timeout=1.0)
    with pytest.raises(Boom):
        cb.call(_raise)
    clock.advance(1.0)
    both_inside = threading.Barrier(2, timeout=WAIT)

    def worker(index: int) -> None:
        with cb:
            both_inside.wait()

    run_threads(2, worker, WAIT)
    assert cb.state is CircuitBreakerState.CLOSED


def test_with_blocks_interleaved_across_thread_lifetimes(
    make_breaker: MakeBreaker, clock: FakeClock
) -> None:
    # Threads come and go (their idents may be reused) while others enter and exit:
    # each exit must pair with its own thread's entry (here: its start time).
    cb = make_breaker(failure_threshold=5, minimum_requests=5, slow_call_duration=1.0)
    errors: list[BaseException] = []

    def one_block() -> None:
        with cb:
            pass

    first = threading.Thread(target=one_block)
    first.start()
    first.join(WAIT)
    inside, leave = threading.Event(), threading.Event()

    def slow_block() -> None:
        try:
            with pytest.raises(Boom), cb:
                inside.set()
                assert leave.wait(WAIT)
                clock.advance(2.0)
                raise Boom()
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    second = threading.Thread(target=slow_block)
    second.start()
    assert inside.wait(WAIT)
    with cb:  # the main thread enters and exits while the second is inside
        pass
    leave.set()
    second.join(WAIT)
    assert not second.is_alive() and errors == []
    m = cb.metrics()
    assert (m.total_successes, m.total_failures, m.total_slow_calls) == (2, 1, 1)
