"""The cluster's costs and speeds on loopback Redis.

Run as a script for the full numbers (starts its own redis-server unless ``--url``)::

    python benchmarks/bench_cluster.py [--url redis://127.0.0.1:6379/0] [--trips 1000]

- propagation: a trip in one process until the breaker is OPEN in 3 other
  processes, p50/p99 over ``--trips`` trips (each followed by a reset that closes
  everyone before the next). Goal: p99 <= 5 ms.
- per-call overhead: ``cb.call(noop)`` attached to a running cluster vs not
  attached, same process, same run, taking turns round by round (best of 15 each).
  Goal: the same within noise (<= 5 ns apart).
- hand-over: what the tripping call pays for handing its transition to the
  cluster (the listener: a put on the worker's queue). Goal: <= 2 us.
- subscriber throughput: open/close events one process applies per second
  (breaker transitions included). Goal: >= 10,000/s.

Collected by pytest too (``pytest benchmarks --benchmark-disable``): the per-call
cases as pytest-benchmark tests and a few trips and events, so the script cannot
rot. Skips cleanly without a Redis, like the cluster tests.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
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
        results = _per_call({"not_attached": plain, "attached": attached})
        results["hand_over"] = _hand_over(cluster, attached)
    return results


def _hand_over(cluster: Any, cb: CircuitBreaker, batch: int = 1000, rounds: int = 20) -> float:
    """The tripping call's extra cost: the cluster's listener, which queues the event.

    Called directly with a CLOSED->OPEN that the worker then finds stale (the breaker
    is closed), so the worker does no Redis work and the queue drains between rounds.
    """
    listener = cluster._tracked[cb.name].listener
    closed, opened = CircuitBreakerState.CLOSED, CircuitBreakerState.OPEN
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(batch):
            listener(cb, closed, opened)
        best = min(best, (time.perf_counter() - start) / batch)
        _wait(lambda: cluster._inbox.qsize() == 0)
    return best


# -- subscriber throughput ------------------------------------------------------------


def throughput(url: str, events: int, namespace: str) -> float:
    """Events a second one process applies: alternating open/close of one breaker."""
    import redis

    from recovery._cluster_codec import Event, encode
    from recovery.cluster import Cluster

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


def test_hand_over(benchmark: Any, attached_cluster: Any) -> None:
    cluster, cb = attached_cluster
    listener = cluster._tracked[cb.name].listener
    benchmark(listener, cb, CircuitBreakerState.CLOSED, CircuitBreakerState.OPEN)
    _wait(lambda: cluster._inbox.qsize() == 0)


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
    parser.add_argument("--trips", type=int, default=1000)
    parser.add_argument("--events", type=int, default=50_000)
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
        print(f"hand-over of a trip      {costs['hand_over'] * 1e6:8.2f} us   goal <= 2 us")
        delays = propagation(url, args.trips, _namespace())
        print(f"propagation to 3 procs   p50 {_percentile(delays, 0.5) * 1e3:.2f} ms"
              f"  p99 {_percentile(delays, 0.99) * 1e3:.2f} ms"
              f"  max {max(delays) * 1e3:.2f} ms  mean {statistics.fmean(delays) * 1e3:.2f} ms"
              f"  ({len(delays)} adoptions)   goal p99 <= 5 ms")
        rate = throughput(url, args.events, _namespace())
        print(f"subscriber throughput    {rate:,.0f} events/s   goal >= 10,000/s")
    finally:
        if server is not None:
            server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
