"""The cluster's costs and speeds on loopback Redis.

Run as a script for the full numbers (starts its own redis-server unless ``--url``)::

    python benchmarks/bench_cluster.py [--url redis://127.0.0.1:6379/0] [--trips 1000]
        [--tripping-calls 1000] [--events 50000]    (--trips 0 / --events 0: skip those)

- propagation: a trip in one process until the breaker is OPEN in 3 other
  processes, p50/p99 over ``--trips`` trips (each followed by a reset that closes
  everyone before the next). Goal: p99 <= 5 ms.
- per-call overhead: ``cb.call(noop)`` attached to a running cluster vs not
  attached, same process, same run, taking turns round by round (best of 15 each).
  Goal: the same within noise (<= 5 ns apart).
- the tripping call: one failing call that opens the breaker, attached to a running
  cluster vs not attached, median over ``--trips`` trips each, taking turns in blocks.
  Each trip is timed alone, as it happens in a service: the cluster's worker is asleep
  when it comes, so the call pays for waking it (the hand-off), and the Redis work runs
  after, on the worker. Every trip, attached or not, comes 2 ms after the same cluster
  work (see ``tripping_call``). Goal: <= +5 us. Printed with the floor the machine
  sets: the same trips with a listener that does nothing but wake a thread waiting on
  a queue.
- subscriber throughput: open/close events one process applies per second
  (breaker transitions included). Goal: >= 10,000/s.

Collected by pytest too (``pytest benchmarks --benchmark-disable``): the per-call
cases as pytest-benchmark tests and a few trips and events, so the script cannot
rot. Skips cleanly without a Redis, like the cluster tests.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import queue
import statistics
import sys
import threading
import time
import timeit
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from recovery import CircuitBreaker, CircuitBreakerConfig
from recovery.state import CircuitBreakerState

BREAKER = "payments"
_SPAWN = multiprocessing.get_context("spawn")


def _noop() -> None:
    return None


def _wait(predicate: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(0.0002)


# -- propagation: one tripping process, three receivers -------------------------------


def _receiver(url: str, namespace: str, index: int, trips: int, seen: Any, ready: Any,
              opened: Any, closed: Any, done: Any) -> None:
    from recovery.cluster import Cluster

    cb = CircuitBreaker(BREAKER, CircuitBreakerConfig(timeout=60.0))

    # Each receiver writes only its own slots, and nobody takes a lock: a lock shared
    # by the processes would time its holder's scheduling too (a sender polling it,
    # descheduled while holding it, held up every receiver's listener).
    def on_transition(_cb: Any, _old: Any, new: CircuitBreakerState) -> None:
        if new is CircuitBreakerState.OPEN:
            seen[index * trips + opened[index]] = time.monotonic()
            opened[index] += 1
        elif new is CircuitBreakerState.CLOSED:
            closed[index] += 1

    cb.add_listener(on_transition)
    with Cluster(url, namespace=namespace) as cluster:
        cluster.attach(cb)
        _wait(lambda: cluster.status()["connected"])
        ready[index] = 1
        done.wait(600)


def propagation(url: str, trips: int, namespace: str) -> list[float]:
    """Seconds from each trip to the OPEN in each of 3 receivers (CLOCK_MONOTONIC is
    one clock for every process on a Linux host)."""
    from recovery.cluster import Cluster

    seen = _SPAWN.RawArray("d", 3 * trips)
    ready, opened, closed = (_SPAWN.RawArray("i", 3) for _ in range(3))
    done = _SPAWN.Event()
    receivers = [
        _SPAWN.Process(target=_receiver, daemon=True,
                       args=(url, namespace, i, trips, seen, ready, opened, closed, done))
        for i in range(3)
    ]
    for process in receivers:
        process.start()
    cb = CircuitBreaker(BREAKER, CircuitBreakerConfig(timeout=60.0))
    started: list[float] = []
    try:
        with Cluster(url, namespace=namespace) as cluster:
            cluster.attach(cb)
            _wait(lambda: cluster.status()["connected"] and all(ready))
            for trip in range(trips):
                started.append(time.monotonic())
                cb.force_open(60.0)  # the same path as a tripping call's transition
                _wait(lambda trip=trip: min(opened) == trip + 1)
                cb.reset()
                _wait(lambda trip=trip: min(closed) == trip + 1)
    finally:
        done.set()
        for process in receivers:
            process.join(10)
            if process.is_alive():
                process.kill()
    return [seen[r * trips + i] - started[i] for r in range(3) for i in range(trips)]


# -- per-call overhead and hand-over --------------------------------------------------


def _per_call(breakers: dict[str, CircuitBreaker], number: int = 100_000,
              rounds: int = 15) -> dict[str, float]:
    """Seconds per ``cb.call(noop)``, the best of ``rounds``, the breakers taking turns
    round by round so that a busy moment of the machine hits them alike."""
    best = dict.fromkeys(breakers, float("inf"))
    for _ in range(rounds):
        for label, cb in breakers.items():
            call = cb.call
            seconds = timeit.timeit(lambda call=call: call(_noop), number=number)
            best[label] = min(best[label], seconds / number)
    return best


def overhead(url: str, namespace: str) -> dict[str, float]:
    from recovery.cluster import Cluster

    plain = CircuitBreaker("plain", CircuitBreakerConfig())
    attached = CircuitBreaker(BREAKER, CircuitBreakerConfig())
    with Cluster(url, namespace=namespace) as cluster:
        cluster.attach(attached)
        _wait(lambda: cluster.status()["connected"])
        return _per_call({"not_attached": plain, "attached": attached})


def _fail() -> None:
    raise ConnectionError("down")


def _idle(seconds: float) -> None:
    """Let the other threads run for ``seconds`` (the GIL is given up all along)."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        time.sleep(0)


def _trips(cb: CircuitBreaker, trips: int, settle: Any) -> list[float]:
    """Seconds of each of ``trips`` tripping calls; ``settle(kind)`` after each trip
    and each reset waits until the cluster (if any) has done its part, untimed."""
    times = []
    for _ in range(trips):
        start = time.perf_counter()
        try:
            cb.call(_fail)
        except ConnectionError:
            pass
        times.append(time.perf_counter() - start)
        settle("open")
        cb.reset()
        settle("close")
    return times


def tripping_call(url: str, namespace: str, trips: int = 300,
                  block: int = 10) -> dict[str, list[float]]:
    """Seconds of isolated tripping calls, attached and not (see the module doc).

    Every timed trip has the same past, whichever breaker it is: the cluster published
    an open and a close (its worker ran its Redis scripts and the subscriber read them
    back) a little over 2 ms before. For the attached breaker that work is its own; for
    the others it is a ``sidekick`` breaker's, attached to the same cluster and never
    timed. Without it only the attached breaker's trips came right after the cluster's
    threads (and Redis) ran, while the others came after 2 ms with nothing else
    running: the attached trips found a cold cache. On a quiet moment that alone cost
    up to 12 us: an attached breaker whose listener queued nothing during the timed
    call (its transition handed over after it) was 12 us slower than an unattached one.
    """
    from recovery.cluster import Cluster

    config = CircuitBreakerConfig(failure_threshold=1, minimum_requests=1,
                                  sliding_window_size=10, timeout=60.0)
    plain = CircuitBreaker("plain", config)
    attached = CircuitBreaker(BREAKER, config)
    sidekick = CircuitBreaker("sidekick", config)
    # The floor: a listener that does nothing but wake a thread waiting on a queue,
    # a thread of the same kind as the cluster's worker (SCHED_BATCH where the OS has
    # it, so that its wake-up never preempts the caller; an ordinary thread's does on a
    # busy machine, and the floor then rose to +10-18 us).
    woken = CircuitBreaker("woken", config)
    inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def hand_off(_cb: Any, old: CircuitBreakerState, new: CircuitBreakerState) -> None:
        inbox.put((old, new))

    woken.add_listener(hand_off)
    def drain() -> None:
        if hasattr(os, "SCHED_BATCH"):
            os.sched_setscheduler(threading.get_native_id(), os.SCHED_BATCH,
                                  os.sched_param(0))
        while inbox.get() is not None:
            pass

    sleeper = threading.Thread(target=drain, daemon=True)
    sleeper.start()
    times: dict[str, list[float]] = {"not_attached": [], "attached": [], "bare_wake": []}
    with Cluster(url, namespace=namespace) as cluster:
        cluster.attach(attached)
        cluster.attach(sidekick)
        _wait(lambda: cluster.status()["connected"])
        published = {"open": 0, "close": 0}

        def cluster_round(breaker: CircuitBreaker, kind: str) -> None:
            """Wait until the cluster has published ``breaker``'s ``kind``, then 2 ms."""
            _wait(lambda: cluster.status()["events"]["published"][kind]
                  == published[kind] + 1)
            published[kind] += 1
            _wait(lambda: breaker.state.value == ("open" if kind == "open" else "closed"))
            _idle(0.002)

        def own_work(kind: str) -> None:
            cluster_round(attached, kind)

        def sidekick_work(kind: str) -> None:  # the same cluster work, for another breaker
            if kind == "open":
                sidekick.force_open(60.0)  # the same path as a trip's transition
            else:
                sidekick.reset()
            cluster_round(sidekick, kind)

        for _ in range(0, trips, block):
            times["not_attached"] += _trips(plain, block, sidekick_work)
            times["attached"] += _trips(attached, block, own_work)
            times["bare_wake"] += _trips(woken, block, sidekick_work)
    inbox.put(None)
    sleeper.join(10)
    return times


# -- subscriber throughput ------------------------------------------------------------


def throughput(url: str, events: int, namespace: str) -> float:
    """Events a second one process applies: alternating open/close of one breaker."""
    import redis

    from recovery.cluster import Cluster
    from recovery.cluster.codec import Event, encode

    cb = CircuitBreaker(BREAKER, CircuitBreakerConfig(timeout=60.0))
    client = redis.Redis.from_url(url)
    messages = [
        encode(Event("open" if i % 2 == 0 else "close", BREAKER, i + 1, "bench-sender",
                     60.0, 0, "bench"), None)
        for i in range(events)
    ]
    try:
        with Cluster(url, namespace=namespace) as cluster:
            cluster.attach(cb)
            _wait(lambda: cluster.status()["connected"])
            pipe = client.pipeline(transaction=False)
            for message in messages:
                pipe.publish(f"{namespace}:events", message)
            start = time.perf_counter()
            pipe.execute()
            _wait(lambda: cluster.status()["events_received"] >= events, timeout=120)
            elapsed = time.perf_counter() - start
    finally:
        client.close()
    return events / elapsed


# -- pytest ---------------------------------------------------------------------------


def _namespace() -> str:
    return f"bench{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def bench_redis_url() -> Iterator[str]:
    from tests.redis_server import serve_url

    yield from serve_url()


@pytest.fixture(scope="module")
def bench_namespace(bench_redis_url: str) -> Iterator[str]:
    from tests.redis_server import drop_namespace

    namespace = _namespace()
    yield namespace
    drop_namespace(bench_redis_url, namespace)


@pytest.fixture(scope="module")
def attached_cluster(
    bench_redis_url: str, bench_namespace: str
) -> Iterator[tuple[Any, CircuitBreaker]]:
    from recovery.cluster import Cluster

    cb = CircuitBreaker(BREAKER, CircuitBreakerConfig())
    with Cluster(bench_redis_url, namespace=bench_namespace) as cluster:
        cluster.attach(cb)
        _wait(lambda: cluster.status()["connected"])
        yield cluster, cb


def test_call_not_attached(benchmark: Any, attached_cluster: Any) -> None:
    cb = CircuitBreaker("plain", CircuitBreakerConfig())
    benchmark(cb.call, _noop)


def test_call_attached(benchmark: Any, attached_cluster: Any) -> None:
    _, cb = attached_cluster
    benchmark(cb.call, _noop)
    assert cb.state is CircuitBreakerState.CLOSED


def test_tripping_call_runs(bench_redis_url: str, bench_namespace: str) -> None:
    times = tripping_call(bench_redis_url, f"{bench_namespace}:trip", trips=4, block=2)
    assert len(times["attached"]) == len(times["not_attached"]) == 4


def test_propagation_and_throughput_run(bench_redis_url: str, bench_namespace: str) -> None:
    delays = propagation(bench_redis_url, 5, f"{bench_namespace}:p")
    assert len(delays) == 15 and all(d > 0 for d in delays)
    assert throughput(bench_redis_url, 200, f"{bench_namespace}:t") > 0


# -- script ---------------------------------------------------------------------------


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="an existing Redis (default: start a private one)")
    parser.add_argument("--trips", type=int, default=1000, help="propagation trips (0: skip)")
    parser.add_argument("--tripping-calls", type=int, default=1000)
    parser.add_argument("--events", type=int, default=50_000, help="throughput (0: skip)")
    args = parser.parse_args(argv)
    server = None
    url = args.url
    if url is None:
        import shutil

        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from tests.redis_server import RedisServer

        binary = shutil.which("redis-server")
        if binary is None:
            print("no redis-server on PATH; give --url", file=sys.stderr)
            return 2
        server = RedisServer(binary)
        server.start()
        url = server.url
    try:
        costs = overhead(url, _namespace())
        print(f"per call, not attached   {costs['not_attached'] * 1e9:8.1f} ns")
        print(f"per call, attached       {costs['attached'] * 1e9:8.1f} ns")
        tripping = tripping_call(url, _namespace(), args.tripping_calls)
        medians = {k: statistics.median(v) * 1e6 for k, v in tripping.items()}
        print(f"tripping call, not attached  median {medians['not_attached']:6.2f} us"
              f"  p90 {_percentile(tripping['not_attached'], 0.9) * 1e6:6.2f} us")
        print(f"tripping call, attached      median {medians['attached']:6.2f} us"
              f"  p90 {_percentile(tripping['attached'], 0.9) * 1e6:6.2f} us")
        print(f"tripping call, difference    {medians['attached'] - medians['not_attached']:+6.2f}"
              " us   goal <= +5 us")
        print(f"  the floor: a listener that only wakes a waiting thread  "
              f"{medians['bare_wake'] - medians['not_attached']:+6.2f} us")
        if args.trips:
            delays = propagation(url, args.trips, _namespace())
            print(f"propagation to 3 procs   p50 {_percentile(delays, 0.5) * 1e3:.2f} ms"
                  f"  p99 {_percentile(delays, 0.99) * 1e3:.2f} ms"
                  f"  max {max(delays) * 1e3:.2f} ms  mean {statistics.fmean(delays) * 1e3:.2f}"
                  f" ms  ({len(delays)} adoptions)   goal p99 <= 5 ms")
        if args.events:
            rate = throughput(url, args.events, _namespace())
            print(f"subscriber throughput    {rate:,.0f} events/s   goal >= 10,000/s")
    finally:
        if server is not None:
            server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
