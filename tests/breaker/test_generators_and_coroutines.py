"""Generators, coroutines, async generators and async with, both windows.

A breaker must never count a call that has not run: each kind is admitted when
it starts and recorded when it ends. Async tests drive their own loop with
``asyncio.run`` (no pytest plugin).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import inspect
import types
import warnings
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from recovery import CircuitBreakerState, CircuitOpenError
from recovery.testing import FakeClock
from tests.helpers import MakeBreaker

CLOSED, OPEN, HALF_OPEN = (
    CircuitBreakerState.CLOSED,
    CircuitBreakerState.OPEN,
    CircuitBreakerState.HALF_OPEN,
)


class Boom(Exception):
    pass


def totals(cb: Any) -> tuple[int, int, int]:
    m = cb.metrics()
    return m.total_requests, m.total_failures, m.total_successes


def trip_to_half_open(cb: Any, clock: FakeClock) -> None:
    with pytest.raises(Boom), cb:
        raise Boom()
    assert cb.state is OPEN
    clock.advance(cb.retry_after)


# -- generators -----------------------------------------------------------------------------------


def test_failing_stream_counts_its_failure_and_trips(make_breaker: MakeBreaker) -> None:
    # An exception raised mid-stream must count.
    cb = make_breaker(failure_threshold=1, minimum_requests=1)

    @cb
    def rows() -> Iterator[int]:
        yield 1
        raise OSError("connection lost mid-stream")

    assert inspect.isgeneratorfunction(rows)
    with pytest.raises(OSError, match="mid-stream"):
        list(rows())
    assert totals(cb) == (1, 1, 0)
    assert cb.state is OPEN
    with pytest.raises(CircuitOpenError):
        next(rows())


def test_generator_is_admitted_at_first_next_and_recorded_at_the_end(
    make_breaker: MakeBreaker
) -> None:
    cb = make_breaker()

    @cb
    def rows(n: int) -> Iterator[int]:
        """Some rows."""
        received = yield 0
        yield from range(1, n)
        return received

    gen = rows(3)
    assert totals(cb) == (0, 0, 0)  # created, not started: nothing admitted
    assert next(gen) == 0
    assert gen.send("hello") == 1
    assert totals(cb) == (0, 0, 0)  # running: not recorded yet
    assert next(gen) == 2
    with pytest.raises(StopIteration) as stop:
        next(gen)
    assert stop.value.value == "hello"  # the return value passes through
    assert totals(cb) == (1, 0, 1)
    assert rows.__name__ == "rows" and rows.__doc__ == "Some rows."


def test_generator_closed_early_is_a_success(make_breaker: MakeBreaker) -> None:
    cb = make_breaker()
    cleaned = []

    @cb
    def rows() -> Iterator[int]:
        try:
            yield from range(10)
        finally:
            cleaned.append(True)

    gen = rows()
    next(gen)
    gen.close()
    assert cleaned == [True]
    assert totals(cb) == (1, 0, 1)
    gen = rows()
    next(gen)
    del gen  # collected: closed, counted once
    gc.collect()
    assert totals(cb) == (2, 0, 2)


def test_exception_thrown_into_a_generator_counts(make_breaker: MakeBreaker) -> None:
    cb = make_breaker()

    @cb
    def rows() -> Iterator[int]:
        while True:
            yield 1

    gen = rows()
    next(gen)
    with pytest.raises(Boom):
        gen.throw(Boom())
    assert totals(cb) == (1, 1, 0)


def test_early_closed_trial_closes_the_circuit(make_breaker: MakeBreaker, clock: FakeClock) -> None:
    cb = make_breaker(failure_threshold=1, minimum_requests=1, success_threshold=1, timeout=1.0)
    trip_to_half_open(cb, clock)

    @cb
    def rows() -> Iterator[int]:
        yield from range(5)

    gen = rows()
    next(gen)
    gen.close()
    assert cb.state is CLOSED


# -- coroutines -----------------------------------------------------------------------------------


def test_async_def_stays_a_coroutine_function_and_counts_at_its_end(
    make_breaker: MakeBreaker
) -> None:
    cb = make_breaker(failure_threshold=1, minimum_requests=1)

    @cb
    async def fetch(x: int) -> int:
        await asyncio.sleep(0)
        if x < 0:
            raise Boom("negative")
        return x * 2

    assert inspect.iscoroutinefunction(fetch)
    coro = fetch(1)
    assert totals(cb) == (0, 0, 0)  # not awaited yet: not admitted
    assert asyncio.run(coro) == 2
    assert totals(cb) == (1, 0, 1)
    with pytest.raises(Boom):
        asyncio.run(fetch(-1))
    assert totals(cb) == (2, 1, 1)
    assert cb.state is OPEN


class Client:
    """Methods guarded by a breaker: the decorator binds as a function does."""

    def __init__(self, cb: Any) -> None:
        self.base = 10

        @cb
        def get(self: Client, x: int, *, plus: int = 0) -> int:
            """Add to the base."""
            return self.base + x + plus

        @cb
        async def fetch(self: Client, x: int) -> int:
            await asyncio.sleep(0)
            return self.base + x

        type(self).get = get  # type: ignore[attr-defined]
        type(self).fetch = fetch  # type: ignore[attr-defined]


def test_decorated_functions_keep_their_face_and_bind_as_methods(
    make_breaker: MakeBreaker
) -> None:
    cb = make_breaker()

    def add(a: int, b: int = 2, *, c: int = 0) -> int:
        """Add them."""
        return a + b + c

    guarded = cb(add)
    assert (guarded.__name__, guarded.__doc__, guarded.__wrapped__) == (  # type: ignore[attr-defined]
        "add", "Add them.", add)
    assert inspect.signature(guarded) == inspect.signature(add)
    assert not inspect.iscoroutinefunction(guarded)
    assert guarded(1) == 3 and guarded(1, 5, c=1) == 7
    client = Client(cb)
    assert client.get(1, plus=2) == 13  # type: ignore[attr-defined]
    assert Client.get(client, 1) == 11  # type: ignore[attr-defined]
    assert asyncio.run(client.fetch(5)) == 15  # type: ignore[attr-defined]
    assert inspect.iscoroutinefunction(Client.fetch)  # type: ignore[attr-defined]
    assert totals(cb) == (5, 0, 5)


def test_guarded_coroutines_are_coroutines_to_asyncio(make_breaker: MakeBreaker) -> None:
    cb = make_breaker(failure_threshold=5, minimum_requests=5)

    @cb
    async def double(x: int) -> int:
        await asyncio.sleep(0)
        return 2 * x

    async def main() -> list[int]:
        task = asyncio.create_task(double(1))
        direct = asyncio.create_task(cb.call_async(double.__wrapped__, 2))  # type: ignore[attr-defined]
        return [await task, await direct, *await asyncio.gather(double(3), double(4))]

    assert asyncio.iscoroutinefunction(double)
    assert asyncio.run(main()) == [2, 4, 6, 8]
    assert asyncio.run(double(5)) == 10
    assert totals(cb) == (5, 0, 5)


def test_with_methods_work_by_hand_and_through_exit_stack(make_breaker: MakeBreaker) -> None:
    cb = make_breaker(failure_threshold=5, minimum_requests=5)
    assert cb.__enter__() is cb
    cb.__exit__(None, None, None)
    assert type(cb).__enter__(cb) is cb  # called on the class, the breaker first
    type(cb).__exit__(cb, Boom, Boom(), None)
    with contextlib.ExitStack() as stack:  # looks both up on the type, binds __exit__
        assert stack.enter_context(cb) is cb
    with pytest.raises(TypeError):
        cb.__exit__(None)
    assert totals(cb) == (3, 1, 2)


def test_a_guarded_partial_of_a_coroutine_function_stays_one(make_breaker: MakeBreaker) -> None:
    cb = make_breaker()

    async def scale(factor: int, x: int) -> int:
        await asyncio.sleep(0)
        return factor * x

    triple = cb(functools.partial(scale, 3))  # no code object of its own
    assert inspect.iscoroutinefunction(triple)
    assert asyncio.run(triple(2)) == 6
    assert totals(cb) == (1, 0, 1)


def test_an_awaited_call_cannot_be_awaited_again(make_breaker: MakeBreaker) -> None:
    cb = make_breaker()

    async def main() -> None:
        call = cb.call_async(asyncio.sleep, 0, 7)
        assert await call == 7
        with pytest.raises(RuntimeError, match="await"):
            await call

    asyncio.run(main())
    assert totals(cb) == (1, 0, 1)


def test_an_error_thrown_into_an_awaited_call_passes_through_and_counts(
    make_breaker: MakeBreaker
) -> None:
    cb = make_breaker(failure_threshold=5, minimum_requests=5)
    caught: list[BaseException] = []

    @types.coroutine
    def pause() -> Iterator[None]:
        yield  # suspends without a loop: the test drives the call by hand

    async def catches() -> str:
        try:
            await pause()
        except Boom as error:
            caught.append(error)
            return "handled"
        return "slept"

    async def fails() -> None:
        await pause()

    for fn, outcome in ((catches, (1, 0, 1)), (fails, (2, 1, 1))):
        call = cb.call_async(fn)
        call.send(None)  # type: ignore[attr-defined]  # admitted, now waiting
        with pytest.raises((StopIteration, Boom)) as raised:
            call.throw(Boom("thrown"))  # type: ignore[attr-defined]
        if fn is catches:
            assert raised.value.args == ("handled",) and len(caught) == 1
        assert totals(cb) == outcome


def test_call_async_is_the_coroutine_twin_of_call(make_breaker: MakeBreaker) -> None:
    cb = make_breaker(failure_threshold=2, minimum_requests=2, failure_rate_threshold=None)

    async def work(a: int, *, b: int) -> tuple[int, int]:
        await asyncio.sleep(0)
        return a, b

    async def failing() -> None:
        raise Boom()

    async def main() -> None:
        assert await cb.call_async(work, 1, b=2) == (1, 2)
        for _ in range(2):
            with pytest.raises(Boom):
                await cb.call_async(failing)
        with pytest.raises(CircuitOpenError):
            await cb.call_async(work, 1, b=2)

    asyncio.run(main())
    assert totals(cb) == (3, 2, 1)


def test_call_async_refuses_a_plain_function_without_counting(make_breaker: MakeBreaker) -> None:
    cb = make_breaker(failure_threshold=1, minimum_requests=1, success_threshold=1,
                      half_open_max_calls=1, timeout=1.0)

    async def main() -> None:
        with pytest.raises(TypeError, match="call"):
            await cb.call_async(lambda: 3)

    asyncio.run(main())
    assert totals(cb) == (0, 0, 0)


def test_cancelled_coroutine_gives_its_trial_slot_back(
    make_breaker: MakeBreaker, clock: FakeClock
) -> None:
    cb = make_breaker(failure_threshold=1, minimum_requests=1, success_threshold=1,
                      half_open_max_calls=1, timeout=1.0)
    trip_to_half_open(cb, clock)

    @cb
    async def hang() -> None:
        await asyncio.Event().wait()

    async def main() -> None:
        task = asyncio.create_task(hang())
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await cb.call_async(asyncio.sleep, 0)  # the slot is free again

    asyncio.run(main())
    assert cb.state is CLOSED


def test_async_with_counts_like_with(make_breaker: MakeBreaker) -> None:
    cb = make_breaker(failure_threshold=2, minimum_requests=2)

    async def one(fail: bool) -> None:
        async with cb:
            await asyncio.sleep(0)
            if fail:
                raise Boom()

    async def main() -> None:
        # Interleaved blocks of several tasks on one thread each record their own call.
        results = await asyncio.gather(one(False), one(True), one(False),
                                       return_exceptions=True)
        assert [type(r) for r in results] == [type(None), Boom, type(None)]

    asyncio.run(main())
    assert totals(cb) == (3, 1, 2)


def test_async_with_trials_keep_their_own_admission(
    make_breaker: MakeBreaker, clock: FakeClock
) -> None:
    cb = make_breaker(failure_threshold=1, minimum_requests=1, success_threshold=2,
                      half_open_max_calls=2, timeout=1.0)
    trip_to_half_open(cb, clock)

    async def trial() -> None:
        async with cb:
            await asyncio.sleep(0)

    async def main() -> None:
        await asyncio.gather(trial(), trial())

    asyncio.run(main())
    assert cb.state is CLOSED


def test_async_with_exited_in_another_task_is_a_clear_error(make_breaker: MakeBreaker) -> None:
    cb = make_breaker()

    async def enter() -> None:
        await cb.__aenter__()

    async def leave() -> None:
        await cb.__aexit__(None, None, None)

    asyncio.run(enter())  # each run's task has its own context
    with pytest.raises(RuntimeError, match="another thread or task"):
        asyncio.run(leave())


def test_with_in_coroutines_records_each_block_against_its_own_admission(
    make_breaker: MakeBreaker, clock: FakeClock
) -> None:
    """A plain ``with`` inside ``async def``, across an await, is kept per task: task A's
    block, admitted while closed, ends first and must not take the half-open trial
    that task B's block was admitted as (that would close the circuit on A's success
    and lose B's failure)."""
    cb = make_breaker(failure_threshold=1, minimum_requests=1, success_threshold=1,
                      timeout=1.0)

    async def main() -> None:
        a_may_end, b_may_end = asyncio.Event(), asyncio.Event()

        async def closed_call() -> None:
            with cb:
                await a_may_end.wait()

        async def failing_trial() -> None:
            with cb:
                await b_may_end.wait()
                raise Boom()

        a = asyncio.create_task(closed_call())
        await asyncio.sleep(0)  # A is inside its block
        cb.force_open(1.0)
        clock.advance(1.0)
        b = asyncio.create_task(failing_trial())
        await asyncio.sleep(0)  # B is inside its block, as the half-open trial
        assert cb.state is HALF_OPEN
        a_may_end.set()
        await a
        b_may_end.set()
        with pytest.raises(Boom):
            await b

    asyncio.run(main())
    assert cb.state is OPEN  # B's trial failed; A's success counted in the totals only
    assert totals(cb) == (2, 1, 1)


def test_async_generator_keeps_its_kind_and_counts(make_breaker: MakeBreaker) -> None:
    cb = make_breaker(failure_threshold=5, minimum_requests=5)

    @cb
    async def rows(fail: bool) -> AsyncIterator[int]:
        yield 1
        received = yield 2
        assert received == "x"
        if fail:
            raise Boom()
        yield 3

    assert inspect.isasyncgenfunction(rows)

    async def main() -> None:
        gen = rows(False)
        assert totals(cb) == (0, 0, 0)
        assert await gen.__anext__() == 1
        assert await gen.__anext__() == 2
        assert await gen.asend("x") == 3
        with pytest.raises(StopAsyncIteration):
            await gen.__anext__()
        assert totals(cb) == (1, 0, 1)
        gen = rows(True)
        await gen.__anext__()
        await gen.__anext__()
        with pytest.raises(Boom):
            await gen.asend("x")
        assert totals(cb) == (2, 1, 1)
        gen = rows(False)
        await gen.__anext__()
        await gen.aclose()  # closed early: a success
        assert totals(cb) == (3, 1, 2)

    asyncio.run(main())


# -- call() never counts an un-run call -----------------------------------------------------------


def test_call_refuses_a_coroutine_without_counting_or_warning(make_breaker: MakeBreaker) -> None:
    cb = make_breaker(failure_threshold=1, minimum_requests=1, success_threshold=1,
                      half_open_max_calls=1, timeout=1.0)

    async def fetch() -> int:
        return 1

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a "never awaited" warning would fail here
        with pytest.raises(TypeError, match="call_async"):
            cb.call(fetch)
        gc.collect()
    assert totals(cb) == (0, 0, 0)


@pytest.mark.parametrize("kind", ["generator", "async generator"])
def test_call_refuses_generators_naming_the_decorator(make_breaker: MakeBreaker, kind: str) -> None:
    cb = make_breaker()

    def rows() -> Iterator[int]:
        yield 1

    async def arows() -> AsyncIterator[int]:
        yield 1

    with pytest.raises(TypeError, match="decorate"):
        cb.call(rows if kind == "generator" else arows)
    assert totals(cb) == (0, 0, 0)


def test_refused_call_gives_a_trial_slot_back(make_breaker: MakeBreaker, clock: FakeClock) -> None:
    cb = make_breaker(failure_threshold=1, minimum_requests=1, success_threshold=1,
                      half_open_max_calls=1, timeout=1.0, slow_call_duration=5.0)
    trip_to_half_open(cb, clock)

    async def fetch() -> int:
        return 1

    with pytest.raises(TypeError):
        cb.call(fetch)
    assert cb.state is HALF_OPEN
    assert cb.call(int) == 0  # the trial slot was released, not spent
    assert cb.state is CLOSED
