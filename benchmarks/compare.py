"""The breaker against its peers, form by form, in one process.

    python benchmarks/compare.py            # full run (a few minutes)
    python benchmarks/compare.py --quick    # a smoke run, not a measurement

Each form of guarding a call is measured for recovery and for every peer that has
the same form: ``call`` against ``call``, decorator against decorator, ``with``
against ``with``, ``await call_async`` against ``await call_async``, decorated
``async def`` against decorated ``async def``, ``async with`` against ``async with``,
and a rejection while open against each peer's own rejection. A peer without the
form is left out of that row, and one that is not installed is skipped with a line
that says so. The cases run in interleaved rounds (every case once a round, round
after round), so a noisy moment on a shared machine touches all of them alike, and
are timed in CPU time (a wait for a core is not charged); a
case's number is the median of its rounds less the median of the same bare call
(``work()``, ``await async_work()``; for a rejection, an empty statement). Then the
memory each library holds per breaker (10,000 breakers, default settings, measured
with tracemalloc), and thread scaling.

What the interpreter alone costs is measured in the same rounds and printed as floors:
raising and catching a fresh exception in one frame (no rejection can cost less), and a
plain method's 1 -> 2 thread scaling (no breaker can scale better under the GIL).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import importlib.metadata
import logging
import statistics
import sys
import threading
import time
import timeit
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import recovery
from recovery import CircuitBreaker, CircuitBreakerConfig


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


# The failure case resets its breaker before each timing batch and keeps the
# batch shorter than the window, so the circuit never opens while it is timed.
FAILURE_WINDOW = 1_000
FAILURE_BATCH = 900

NEVER = 10**9  # a peer's failure threshold that is never reached


def never_opening(size: int = 100, **fields: Any) -> CircuitBreaker:
    """A breaker whose rules cannot fire, so every case measures the closed path."""
    return CircuitBreaker(
        "bench", CircuitBreakerConfig(failure_threshold=size, minimum_requests=size,
                                      sliding_window_size=size, **fields),
    )


# -- the cases ------------------------------------------------------------------------------

FORMS = {
    # form: (bare statement, what it measures)
    "call": ("work()", "cb.call(f)"),
    "call, record_latency": ("work()", "cb.call(f), timing every call (recovery only)"),
    "decorator": ("work()", "@cb def f; f()"),
    "with": ("work()", "with cb: f()"),
    "rejection": ("pass", "a call rejected while open (absolute ns)"),
    "call_async": ("await async_work()", "await cb.call_async(f)"),
    "async def": ("await async_work()", "@cb async def f; await f()"),
    "async with": ("await async_work()", "async with cb: await f()"),
}
ASYNC_FORMS = {"call_async", "async def", "async with"}
LIBRARIES = ("recovery", "pybreaker", "circuitbreaker", "aiobreaker", "aiocircuitbreaker",
             "purgatory", "lasier")


# Cases are timed in this thread's CPU time, not wall time: on a shared machine a
# process waiting for a core would otherwise be charged for the wait.
CPU_TIME = time.thread_time


class Case:
    """One statement of one form, timed as ``number`` runs (async: batches of awaits)."""

    def __init__(self, statement: str, namespace: dict[str, Any], is_async: bool) -> None:
        self.is_async = is_async
        if is_async:
            # Compiled into a coroutine that awaits the statement ASYNC_BATCH times, run
            # to completion on a loop of its own.
            body = statement.replace("\n", "\n        ")
            source = f"async def batch(n):\n    for _ in range(n):\n        {body}\n"
            exec(compile(source, "<case>", "exec"), namespace)
            batch = namespace.pop("batch")
            run = namespace["run"]
            self.timer = timeit.Timer(lambda: run(batch(ASYNC_BATCH)), timer=CPU_TIME)
        else:
            self.timer = timeit.Timer(statement, globals=namespace, timer=CPU_TIME)

    def ns(self, number: int) -> float:
        if self.is_async:
            runs = max(number // ASYNC_BATCH, 1)
            return self.timer.timeit(runs) / (runs * ASYNC_BATCH) * 1e9
        return self.timer.timeit(number) / number * 1e9


class _Cache:
    """An in-process cache with the django/redis calls lasier makes (it needs one)."""

    def __init__(self) -> None:
        self.data: dict[str, int] = {}

    def get(self, key: str) -> Any:
        return self.data.get(key)

    def set(self, key: str, value: int, timeout: Any = None) -> None:
        self.data[key] = value

    def add(self, key: str, value: int, timeout: Any = None) -> None:
        self.data.setdefault(key, value)

    def incr(self, key: str) -> int:
        self.data[key] = self.data.get(key, 0) + 1
        return self.data[key]

    def expire(self, key: str, timeout: Any) -> None:
        pass

    def delete(self, key: str) -> None:
        self.data.pop(key, None)


class _AsyncCache(_Cache):
    async def get(self, key: str) -> Any:  # type: ignore[override]
        return self.data.get(key)

    async def set(self, key: str, value: int, timeout: Any = None) -> None:  # type: ignore[override]
        self.data[key] = value

    async def add(self, key: str, value: int, timeout: Any = None) -> None:  # type: ignore[override]
        self.data.setdefault(key, value)

    async def incr(self, key: str) -> int:  # type: ignore[override]
        return super().incr(key)

    async def expire(self, key: str, timeout: Any) -> None:  # type: ignore[override]
        pass

    async def delete(self, key: str) -> None:  # type: ignore[override]
        self.data.pop(key, None)


def _recovery_cases(ns: dict[str, Any]) -> dict[str, str]:
    cb = never_opening()
    opened = CircuitBreaker("open", CircuitBreakerConfig(timeout=1e6))
    opened.force_open()
    ns.update(cb=cb, opened=opened, timed=never_opening(record_latency=True),
              CircuitOpenError=recovery.CircuitOpenError, guarded=cb(work),
              async_guarded=cb(async_work))
    return {
        "call": "cb.call(work)",
        "call, record_latency": "timed.call(work)",
        "decorator": "guarded()",
        "with": "with cb:\n    work()",
        "rejection": "try:\n    opened.call(work)\nexcept CircuitOpenError:\n    pass",
        "call_async": "await cb.call_async(async_work)",
        "async def": "await async_guarded()",
        "async with": "async with cb:\n    await async_work()",
    }


def _pybreaker_cases(ns: dict[str, Any]) -> dict[str, str]:
    import pybreaker

    pyb = pybreaker.CircuitBreaker(fail_max=NEVER)
    opened = pybreaker.CircuitBreaker(reset_timeout=10**6)
    opened.open()
    ns.update(pyb=pyb, pyb_open=opened, pyb_guarded=pyb(work),
              PyBreakerError=pybreaker.CircuitBreakerError)
    # Its call_async needs tornado, and its decorator runs an async def unawaited.
    return {
        "call": "pyb.call(work)",
        "decorator": "pyb_guarded()",
        "with": "with pyb.calling():\n    work()",
        "rejection": "try:\n    pyb_open.call(work)\nexcept PyBreakerError:\n    pass",
    }


def _circuitbreaker_cases(ns: dict[str, Any]) -> dict[str, str]:
    import circuitbreaker

    cbk = circuitbreaker.CircuitBreaker(failure_threshold=NEVER, name="bench")
    opened = circuitbreaker.CircuitBreaker(failure_threshold=1, recovery_timeout=10**6)
    opened_guarded = opened(work)
    try:
        opened(fail)()
    except Boom:
        pass
    ns.update(cbk=cbk, cbk_guarded=cbk(work), cbk_async=cbk(async_work),
              cbk_open=opened_guarded, CbkError=circuitbreaker.CircuitBreakerError)
    # Its call() and `with` never reject (only its decorator checks the state), so its
    # rejection is timed through the decorator.
    return {
        "call": "cbk.call(work)",
        "decorator": "cbk_guarded()",
        "with": "with cbk:\n    work()",
        "rejection": "try:\n    cbk_open()\nexcept CbkError:\n    pass",
        "call_async": "await cbk.call_async(async_work)",
        "async def": "await cbk_async()",
    }


def _aiobreaker_cases(ns: dict[str, Any]) -> dict[str, str]:
    import aiobreaker

    aio = aiobreaker.CircuitBreaker(fail_max=NEVER)
    opened = aiobreaker.CircuitBreaker()
    opened.open()
    ns.update(aio=aio, aio_open=opened, aio_guarded=aio(work), aio_async=aio(async_work),
              AioError=aiobreaker.CircuitBreakerError)
    return {
        "call": "aio.call(work)",
        "decorator": "aio_guarded()",
        "rejection": "try:\n    aio_open.call(work)\nexcept AioError:\n    pass",
        "call_async": "await aio.call_async(async_work)",
        "async def": "await aio_async()",
    }


def _aiocircuitbreaker_cases(ns: dict[str, Any]) -> dict[str, str]:
    import aiocircuitbreaker

    acb = aiocircuitbreaker.CircuitBreaker(failure_threshold=NEVER)
    ns.update(acb=acb, acb_async=acb(async_work))
    # Async only: its `with` is a no-op kept for its own use, and it has no sync call.
    return {
        "call_async": "await acb.call(async_work)",
        "async def": "await acb_async()",
    }


def _purgatory_cases(ns: dict[str, Any]) -> dict[str, str]:
    import purgatory

    sync = purgatory.SyncCircuitBreakerFactory(default_threshold=NEVER)
    opened_factory = purgatory.SyncCircuitBreakerFactory(default_threshold=1, default_ttl=10**6)
    opened = opened_factory.get_breaker("open")
    try:
        with opened:
            fail()
    except Boom:
        pass
    factory = purgatory.AsyncCircuitBreakerFactory(default_threshold=NEVER)
    # Its breakers are looked up by name; the `with` rows look theirs up once, up front.
    ns.update(pg_sync=sync(circuit="bench")(work), pg_with=sync.get_breaker("bench"),
              pg_open=opened, PgError=purgatory.domain.model.OpenedState,
              pg_async=factory(circuit="bench")(async_work),
              pg_async_with=ns["run"](factory.get_breaker("bench")))
    return {
        "decorator": "pg_sync()",
        "with": "with pg_with:\n    work()",
        "rejection": "try:\n    with pg_open:\n        work()\nexcept PgError:\n    pass",
        "async def": "await pg_async()",
        "async with": "async with pg_async_with:\n    await async_work()",
    }


def _lasier_cases(ns: dict[str, Any]) -> dict[str, str]:
    from lasier.circuit_breaker.asyncio import CircuitBreaker as AsyncLasier
    from lasier.circuit_breaker.rules import MaxFailuresRule
    from lasier.circuit_breaker.sync import CircuitBreaker as Lasier

    class LasierOpen(Exception):
        pass


    logging.getLogger("lasier").setLevel(logging.CRITICAL + 1)  # it logs each opening

    def build(cls: Any, cache: Any, key: str) -> Any:
        return cls(rule=MaxFailuresRule(max_failures=NEVER, failure_cache_key=key),
                   cache=cache, failure_exception=LasierOpen)

    sync = build(Lasier, _Cache(), "bench")
    opened = build(Lasier, _Cache(), "open")
    opened.open_circuit()
    aio = build(AsyncLasier, _AsyncCache(), "bench")
    ns.update(ls=sync, ls_guarded=sync(work), ls_open=opened, LasierOpen=LasierOpen,
              ls_async=aio, ls_async_guarded=aio(async_work))
    return {
        "decorator": "ls_guarded()",
        "with": "with ls:\n    work()",
        "rejection": "try:\n    with ls_open:\n        work()\nexcept LasierOpen:\n    pass",
        "async def": "await ls_async_guarded()",
        "async with": "async with ls_async:\n    await async_work()",
    }


BUILDERS: dict[str, Callable[[dict[str, Any]], dict[str, str]]] = {
    "recovery": _recovery_cases,
    "pybreaker": _pybreaker_cases,
    "circuitbreaker": _circuitbreaker_cases,
    "aiobreaker": _aiobreaker_cases,
    "aiocircuitbreaker": _aiocircuitbreaker_cases,
    "purgatory": _purgatory_cases,
    "lasier": _lasier_cases,
}


def installed(library: str) -> bool:
    try:
        importlib.import_module(library)
    except ImportError:
        print(f"{library}: not installed, skipped (pip install -e '.[bench]')")
        return False
    return True


# The floor of the rejection row, timed with it: the interpreter raising a fresh
# exception and catching it in the same frame, with no call and no breaker.
RAISE_AND_CATCH = 'try:\n    raise Boom("open")\nexcept Boom:\n    pass'


def build_cases(libraries: list[str]) -> dict[tuple[str, str], Case]:
    """(form, library) -> its case; the bare call of each form is the library "bare",
    the rejection's floor ``("rejection", "floor")``."""
    loop = asyncio.new_event_loop()
    ns: dict[str, Any] = {"work": work, "async_work": async_work, "Boom": Boom,
                          "run": loop.run_until_complete}
    cases: dict[tuple[str, str], Case] = {}
    for form, (bare, _) in FORMS.items():
        cases[form, "bare"] = Case(bare, ns, form in ASYNC_FORMS)
    cases["rejection", "floor"] = Case(RAISE_AND_CATCH, ns, False)
    for library in libraries:
        for form, statement in BUILDERS[library](ns).items():
            cases[form, library] = Case(statement, ns, form in ASYNC_FORMS)
    return cases


def measure(cases: dict[tuple[str, str], Case], number: int, rounds: int) -> dict[
        tuple[str, str], float]:
    """Median ns of each case over ``rounds`` interleaved rounds."""
    times: dict[tuple[str, str], list[float]] = {key: [] for key in cases}
    for _ in range(rounds):
        for key, case in cases.items():
            times[key].append(case.ns(number))
    return {key: statistics.median(values) for key, values in times.items()}


# -- memory per breaker ---------------------------------------------------------------------

BREAKERS = 10_000


def _memory_factories() -> dict[str, Callable[[str], Any]]:
    """library -> make one breaker of default settings, named."""
    factories: dict[str, Callable[[str], Any]] = {"recovery": CircuitBreaker}
    try:
        import pybreaker

        factories["pybreaker"] = lambda name: pybreaker.CircuitBreaker(name=name)
    except ImportError:
        pass
    try:
        import circuitbreaker

        factories["circuitbreaker"] = lambda name: circuitbreaker.CircuitBreaker(name=name)
    except ImportError:
        pass
    try:
        import aiobreaker

        factories["aiobreaker"] = lambda name: aiobreaker.CircuitBreaker(name=name)
    except ImportError:
        pass
    try:
        import aiocircuitbreaker

        factories["aiocircuitbreaker"] = (
            lambda name: aiocircuitbreaker.CircuitBreaker(name=name))
    except ImportError:
        pass
    try:
        import purgatory

        # Its breakers live in the factory's repository: one factory, many breakers.
        factory = purgatory.SyncCircuitBreakerFactory()
        factories["purgatory"] = factory.get_breaker
    except ImportError:
        pass
    try:
        from lasier.circuit_breaker.rules import MaxFailuresRule
        from lasier.circuit_breaker.sync import CircuitBreaker as Lasier

        cache = _Cache()
        factories["lasier"] = lambda name: Lasier(
            rule=MaxFailuresRule(max_failures=5, failure_cache_key=name), cache=cache,
            failure_exception=RuntimeError)
    except ImportError:
        pass
    return factories


def bytes_per_breaker(make: Callable[[str], Any], count: int = BREAKERS) -> float:
    """The memory ``count`` live breakers hold, each, less the list that holds them.

    The names exist before the count starts: a name is the caller's, not the breaker's.
    """
    names = [f"breaker-{i}" for i in range(count)]
    held: list[Any] = [None] * count
    make("warm-up")  # module-level caches and first-use allocations are not per breaker
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i, name in enumerate(names):
            held[i] = make(name)
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return (after - before) / count


# -- thread scaling -------------------------------------------------------------------------


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


def thread_scaling(targets: dict[str, Any], seconds: float, runs: int) -> dict[
        str, tuple[float, float, float]]:
    """label -> (calls/s with 1 thread, with 2, the median of the 2/1 ratios): a CPU-bound
    fn, the targets interleaved run after run and each ratio taken from one run's two
    measurements, so a change of load on a shared machine touches them alike."""
    rates: dict[str, list[tuple[float, float]]] = {label: [] for label in targets}
    for _ in range(runs):
        for label, target in targets.items():
            rates[label].append((calls_per_second(target, work, 1, seconds),
                                 calls_per_second(target, work, 2, seconds)))
    return {
        label: (statistics.median(one for one, _ in pairs),
                statistics.median(two for _, two in pairs),
                statistics.median(two / one for one, two in pairs))
        for label, pairs in rates.items()
    }


def io_wait() -> None:
    time.sleep(0.0005)  # releases the GIL, as a blocking socket or driver call does


# -- the report -----------------------------------------------------------------------------


def print_table(results: dict[tuple[str, str], float], libraries: list[str],
                memory: dict[str, float]) -> None:
    width = 18
    print(f"{'ns over the bare call':22}" + "".join(f"{lib:>{width}}" for lib in libraries))
    for form in FORMS:
        row = f"{form:22}"
        for library in libraries:
            value = results.get((form, library))
            row += f"{'-':>{width}}" if value is None else (
                f"{value - results[form, 'bare']:>{width}.0f}")
        print(row)
    row = f"{'bytes per breaker':22}"
    for library in libraries:
        value = memory.get(library)
        row += f"{'-':>{width}}" if value is None else f"{value:>{width}.0f}"
    print(row)
    print("bare calls (ns): " + ", ".join(
        f"{bare} {results[form, 'bare']:.0f}" for form, (bare, _) in FORMS.items()
        if form in ("call", "rejection", "call_async")))
    floor = results["rejection", "floor"] - results["rejection", "bare"]
    print(f"rejection floor (ns, same rounds): raise and catch a fresh exception in one "
          f"frame {floor:.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smoke run, not a measurement")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds")
    parser.add_argument("--only", nargs="+", choices=LIBRARIES, metavar="LIBRARY",
                        help="measure these libraries only (recovery is always measured)")
    args = parser.parse_args()
    number, rounds, seconds = (2_000, 3, 0.05) if args.quick else (100_000, 21, 1.0)
    rounds = args.rounds or rounds

    print(f"recovery {recovery.__name__} compiled window: {recovery.EXTENSION_ACTIVE}; "
          f"Python {sys.version.split()[0]}")
    libraries = [lib for lib in LIBRARIES if lib == "recovery" or (
        (args.only is None or lib in args.only) and installed(lib))]
    versions = []
    for lib in libraries[1:]:
        try:
            versions.append(f"{lib} {importlib.metadata.version(lib)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(lib)
    print("peers: " + ", ".join(versions))
    results = measure(build_cases(libraries), number, rounds)
    memory = {lib: bytes_per_breaker(make) for lib, make in _memory_factories().items()
              if lib in libraries}
    print(f"{rounds} interleaved rounds; forms: " + "; ".join(
        f"{form}: {what}" for form, (_, what) in FORMS.items()))
    print_table(results, libraries, memory)

    # Thread scaling is noisy on a shared VM: interleaved runs, medians, and the same
    # measurement on a plain method (the floor) shows what the interpreter alone does.
    runs = 1 if args.quick else 9
    scaling = thread_scaling({"plain method": Plain(), "breaker": never_opening()},
                             seconds, runs)
    for label, (one, two, ratio) in scaling.items():
        print(f"{label:12} CPU-bound fn, 1 -> 2 threads: {one:,.0f}/s -> {two:,.0f}/s "
              f"({ratio:.2f}x, median of {runs} interleaved runs)")
    runs = 1 if args.quick else 5
    cb = never_opening()
    one = median_rate(cb, io_wait, 1, seconds, runs)
    four = median_rate(cb, io_wait, 4, seconds, runs)
    print(f"breaker      GIL-releasing fn, 1 -> 4 threads: {one:,.0f}/s -> {four:,.0f}/s "
          f"({four / one:.2f}x)")


if __name__ == "__main__":
    main()
