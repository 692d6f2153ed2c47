"""pytest-benchmark suites for the breaker's hot path, with the peers run in the same process.

    pytest benchmarks/bench_breaker.py                      # measure
    pytest benchmarks/bench_breaker.py --benchmark-disable  # run once, untimed (CI)

Compare a group's rows: each ``breaker`` row against its ``bare`` row. For one
table of overheads and ratios, run ``python benchmarks/compare.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import circuitbreaker
import pybreaker
import pytest

from benchmarks.compare import (
    FAILURE_BATCH,
    FAILURE_WINDOW,
    FORMS,
    LIBRARIES,
    Boom,
    await_bare,
    await_breaker,
    build_cases,
    bytes_per_breaker,
    calls_per_second,
    fail,
    installed,
    io_wait,
    measure,
    never_opening,
    rows,
    thread_scaling,
    work,
)
from recovery import CircuitBreaker, CircuitBreakerConfig, CircuitOpenError


@pytest.mark.benchmark(group="success")
def test_bare_call(benchmark: Any) -> None:
    assert benchmark(work) == 1


@pytest.mark.benchmark(group="success")
def test_breaker_call(benchmark: Any) -> None:
    cb = never_opening()
    assert benchmark(cb.call, work) == 1


@pytest.mark.benchmark(group="success")
def test_breaker_call_recording_latency(benchmark: Any) -> None:
    """record_latency=True: the two clock reads and the bucket increment on top."""
    cb = never_opening(record_latency=True)
    assert benchmark(cb.call, work) == 1
    latency = cb.metrics().latency
    assert latency is not None and latency.count == cb.metrics().total_requests


@pytest.mark.benchmark(group="success")
def test_pybreaker_call(benchmark: Any) -> None:
    breaker = pybreaker.CircuitBreaker(fail_max=10**9)
    assert benchmark(breaker.call, work) == 1


@pytest.mark.benchmark(group="success")
def test_circuitbreaker_call(benchmark: Any) -> None:
    guarded = circuitbreaker.circuit(failure_threshold=10**9)(work)
    assert benchmark(guarded) == 1


@pytest.mark.benchmark(group="window size")
@pytest.mark.parametrize("size", [10, 10_000])
def test_breaker_call_window_size(benchmark: Any, size: int) -> None:
    cb = never_opening(size)
    assert benchmark(cb.call, work) == 1


@pytest.mark.benchmark(group="with")
def test_bare_body(benchmark: Any) -> None:
    def body() -> None:
        work()

    benchmark(body)


@pytest.mark.benchmark(group="with")
def test_with_breaker(benchmark: Any) -> None:
    cb = never_opening()

    def body() -> None:
        with cb:
            work()

    benchmark(body)


@pytest.mark.benchmark(group="failure")
def test_bare_raise_and_catch(benchmark: Any) -> None:
    def body() -> None:
        try:
            fail()
        except Boom:
            pass

    benchmark(body)


@pytest.mark.benchmark(group="failure")
def test_breaker_failure(benchmark: Any) -> None:
    cb = never_opening(FAILURE_WINDOW)

    def body() -> None:
        for _ in range(FAILURE_BATCH):
            try:
                cb.call(fail)
            except Boom:
                pass

    # One round is a batch that cannot open the circuit; reset between rounds.
    benchmark.pedantic(body, setup=cb.reset, rounds=50)
    assert cb.state.value == "closed"


@pytest.mark.benchmark(group="rejection")
def test_rejection_while_open(benchmark: Any) -> None:
    cb = CircuitBreaker("open", CircuitBreakerConfig(timeout=1e6))
    cb.force_open()

    def body() -> None:
        try:
            cb.call(work)
        except CircuitOpenError:
            pass

    benchmark(body)
    assert cb.metrics().total_rejections > 0


# Async: one round awaits ASYNC_BATCH calls in one running loop, so the loop's own cost
# per round is shared; (breaker - bare) / ASYNC_BATCH is the cost of call_async a call.
ASYNC_BATCH = 1_000


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.mark.benchmark(group="async (1,000 awaits a round)")
def test_bare_await(benchmark: Any, loop: asyncio.AbstractEventLoop) -> None:
    benchmark(lambda: loop.run_until_complete(await_bare(ASYNC_BATCH)))


@pytest.mark.benchmark(group="async (1,000 awaits a round)")
def test_breaker_call_async(benchmark: Any, loop: asyncio.AbstractEventLoop) -> None:
    cb = never_opening()
    benchmark(lambda: loop.run_until_complete(await_breaker(cb, ASYNC_BATCH)))
    assert cb.metrics().total_requests >= ASYNC_BATCH


@pytest.mark.benchmark(group="generator (one run of 10 items)")
def test_bare_generator(benchmark: Any) -> None:
    benchmark(lambda: sum(rows()))


@pytest.mark.benchmark(group="generator (one run of 10 items)")
def test_decorated_generator(benchmark: Any) -> None:
    cb = never_opening()
    guarded = cb(rows)
    assert benchmark(lambda: sum(guarded())) == 45
    assert cb.metrics().total_successes >= 1


@pytest.mark.parametrize(("fn", "threads"), [(work, 2), (io_wait, 4)])
def test_thread_scaling_runs(fn: Any, threads: int) -> None:
    """Smoke-runs the scaling measurement of compare.py (its numbers come from that script)."""
    cb = never_opening()
    assert calls_per_second(cb, fn, threads, 0.05) > 0


def test_thread_scaling_is_measured_beside_its_floor() -> None:
    one, two, ratio = thread_scaling({"breaker": never_opening()}, 0.02, 1)["breaker"]
    assert one > 0 and two > 0 and ratio == two / one


def test_compare_runs_every_case_of_every_installed_peer() -> None:
    """Smoke-runs compare.py's cases once each, so none can rot (its numbers come from it)."""
    libraries = [lib for lib in LIBRARIES if lib == "recovery" or installed(lib)]
    results = measure(build_cases(libraries), number=ASYNC_BATCH, rounds=1)
    assert {form for form, library in results if library == "recovery"} == set(FORMS)
    assert ("rejection", "floor") in results
    assert all(ns > 0 for ns in results.values())
    assert bytes_per_breaker(CircuitBreaker, count=100) > 0
