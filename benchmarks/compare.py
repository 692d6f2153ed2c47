"""Per-call cost of the breaker against a bare call and against its peers, in one process.

    python benchmarks/compare.py            # full run (about a minute)
    python benchmarks/compare.py --quick    # a smoke run

Prints the median ns per call of each case, the overhead over the matching bare
case, and the ratio to pybreaker and circuitbreaker; then thread scaling. All
numbers come from this one process, so they are comparable with each other.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import threading
import time
import timeit
from collections.abc import Callable, Iterator
from typing import Any

import circuitbreaker
import pybreaker

import recovery
from recovery import CircuitBreaker, CircuitBreakerConfig, CircuitOpenError


class Boom(Exception):
    pass


def work() -> int:
    return 1


def fail() -> None:
    raise Boom()


def rows() -> Iterator[int]:
    """A small generator: ten items a run."""
    yield from range(10)


async def async_work() -> int:
    return 1


# Awaits are timed in batches inside one running loop, so the loop's own cost per
# batch is shared; each batch's time is divided by ASYNC_BATCH.
ASYNC_BATCH = 100


async def await_bare(n: int) -> None:
    for _ in range(n):
        await async_work()


async def await_breaker(cb: CircuitBreaker, n: int) -> None:
    call_async = cb.call_async
    for _ in range(n):
        await call_async(async_work)


def median_ns(stmt: str, namespace: dict[str, Any], number: int, repeat: int,
              setup: str = "pass") -> float:
    times = timeit.repeat(stmt, setup, globals=namespace, number=number, repeat=repeat)
    return statistics.median(times) / number * 1e9


# The failure case resets its breaker before each timing batch and keeps the
# batch shorter than the window, so the circuit never opens while it is timed.
FAILURE_WINDOW = 1_000
FAILURE_BATCH = 900


def never_opening(size: int = 100, **fields: Any) -> CircuitBreaker:
    """A breaker whose rules cannot fire, so every case measures the closed path."""
    return CircuitBreaker(
        "bench", CircuitBreakerConfig(failure_threshold=size, minimum_requests=size,
                                      sliding_window_size=size, **fields),
    )


def cases() -> dict[str, tuple[str, str, dict[str, Any]]]:
    """name -> (statement, bare statement it is compared with, namespace)."""
    failing = never_opening(FAILURE_WINDOW)
    open_breaker = CircuitBreaker("open", CircuitBreakerConfig(timeout=1e6))
    open_breaker.force_open()
    py_breaker = pybreaker.CircuitBreaker(fail_max=10**9)
    cb_decorated = circuitbreaker.circuit(failure_threshold=10**9)(work)
    cb = never_opening()
    ns: dict[str, Any] = {
        "work": work, "fail": fail, "Boom": Boom, "CircuitOpenError": CircuitOpenError,
        "cb": cb, "timed": never_opening(record_latency=True), "small": never_opening(10),
        "large": never_opening(10_000),
        "opened": open_breaker, "failing": failing, "pyb": py_breaker, "cbd": cb_decorated,
        "rows": rows, "guarded_rows": cb(rows), "run": asyncio.new_event_loop().run_until_complete,
        "await_bare": await_bare, "await_breaker": await_breaker, "B": ASYNC_BATCH,
    }
    catch_fail = "try:\n    {}\nexcept Boom:\n    pass"
    return {
        "bare call": ("work()", "work()", ns),
        "breaker.call (success)": ("cb.call(work)", "work()", ns),
        # Its "over bare" less breaker.call's is what record_latency adds per call.
        "breaker.call, record_latency": ("timed.call(work)", "work()", ns),
        "breaker.call, window 10": ("small.call(work)", "work()", ns),
        "breaker.call, window 10,000": ("large.call(work)", "work()", ns),
        "with breaker: (success)": ("with cb:\n    work()", "work()", ns),
        "breaker.call (failure)": (
            catch_fail.format("failing.call(fail)"), catch_fail.format("fail()"), ns),
        "rejection while open": (
            "try:\n    opened.call(work)\nexcept CircuitOpenError:\n    pass", "pass", ns),
        "pybreaker.call (success)": ("pyb.call(work)", "work()", ns),
        "circuitbreaker (success)": ("cbd()", "work()", ns),
        "decorated generator (a run)": ("sum(guarded_rows())", "sum(rows())", ns),
        "await cb.call_async(f)": ("run(await_breaker(cb, B))", "run(await_bare(B))", ns),
    }


# Cases timed as a batch of calls: name -> calls a statement makes.
BATCHED = {"await cb.call_async(f)": ASYNC_BATCH}


def calls_per_second(breaker: Any, fn: Callable[[], object], threads: int,
                     seconds: float) -> float:
    stop = threading.Event()
    counts = [0] * threads
    start = threading.Barrier(threads + 1)

    def worker(index: int) -> None:
        call = breaker.call
        start.wait()
        n = 0
        while not stop.is_set():
            for _ in range(100):
                call(fn)
            n += 100
        counts[index] = n

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    start.wait()
    began = time.perf_counter()
    stop.wait(seconds)
    stop.set()
    for thread in pool:
        thread.join()
    return sum(counts) / (time.perf_counter() - began)


class Plain:
    """A method that just calls ``fn``: the baseline for thread scaling."""

    def call(self, fn: Callable[[], object]) -> object:
        return fn()


def median_rate(target: Any, fn: Callable[[], object], threads: int, seconds: float,
                runs: int) -> float:
    return statistics.median(calls_per_second(target, fn, threads, seconds) for _ in range(runs))


def io_wait() -> None:
    time.sleep(0.0005)  # releases the GIL, as a blocking socket or driver call does


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a smoke run, not a measurement")
    args = parser.parse_args()
    number, repeat, seconds = (2_000, 3, 0.05) if args.quick else (300_000, 15, 1.0)

    print(f"recovery compiled window: {recovery.EXTENSION_ACTIVE}")
    results: dict[str, float] = {}
    bare: dict[str, float] = {}
    for name, (stmt, bare_stmt, ns) in cases().items():
        per = BATCHED.get(name, 1)
        if "failing" in stmt:
            batches = max(number // FAILURE_BATCH, 1) * repeat
            results[name] = median_ns(stmt, ns, FAILURE_BATCH, batches, setup="failing.reset()")
        else:
            results[name] = median_ns(stmt, ns, max(number // per, 1), repeat) / per
        bare[name] = median_ns(bare_stmt, ns, max(number // per, 1), repeat) / per
    print(f"{'case':32} {'ns/call':>9} {'over bare':>10}")
    for name, value in results.items():
        print(f"{name:32} {value:9.1f} {value - bare[name]:10.1f}")
    ours = results["breaker.call (success)"] - bare["breaker.call (success)"]
    for peer in ("pybreaker.call (success)", "circuitbreaker (success)"):
        theirs = results[peer] - bare[peer]
        print(f"overhead ratio {peer.split()[0]}/recovery: {theirs / ours:.1f}x")
    # Against the fastest of the untimed closed-path rows (one path, three windows): on a
    # shared machine one row alone can catch a noisy moment.
    plain = min(results[name] for name in (
        "breaker.call (success)", "breaker.call, window 10", "breaker.call, window 10,000"))
    timed = results["breaker.call, record_latency"] - plain
    print(f"record_latency adds {timed:.1f} ns a call")

    # Thread scaling is noisy on a shared VM: medians of several runs, and the same
    # measurement on a plain method shows what the interpreter alone does.
    runs = 1 if args.quick else 5
    for label, target in (("plain method", Plain()), ("breaker", never_opening())):
        one = median_rate(target, work, 1, seconds, runs)
        two = median_rate(target, work, 2, seconds, runs)
        print(f"{label:12} CPU-bound fn, 1 -> 2 threads: {one:,.0f}/s -> {two:,.0f}/s "
              f"({two / one:.2f}x)")
    cb = never_opening()
    one = median_rate(cb, io_wait, 1, seconds, runs)
    four = median_rate(cb, io_wait, 4, seconds, runs)
    print(f"breaker      GIL-releasing fn, 1 -> 4 threads: {one:,.0f}/s -> {four:,.0f}/s "
          f"({four / one:.2f}x)")

if __name__ == "__main__":
    main()
