"""What a node's status summary costs its cluster's summary thread, once a second.

    python benchmarks/bench_fleet.py

Builds the summary of 10, 100 and 1,000 attached breakers (read every breaker's
``metrics()``, the rates, the recovery view when a manager owns it, the bounded
encoding) and prints the time per summary and its size: the share of one core
the thread uses is that time per second. No Redis is needed (nothing is sent).
The call path is not measured here: no caller touches this thread, and
``benchmarks/bench_cluster.py`` measures ``cb.call`` attached to a running
cluster (which runs this thread) against an unattached breaker.

Collected by pytest too (``pytest benchmarks --benchmark-disable``) so it cannot rot.
"""

from __future__ import annotations

import threading
import timeit
from typing import Any

import pytest

from recovery import CircuitBreaker

try:
    from recovery._cluster_summary import MAX_SUMMARY_BYTES, Publisher
    from recovery.cluster import Cluster
except ImportError:  # pragma: no cover - without redis-py
    Cluster = None


def publisher(breakers: int) -> Any:
    cluster = Cluster("redis://127.0.0.1:1/0", namespace="bench", node_id="n")  # never dialled
    for i in range(breakers):
        cluster.attach(CircuitBreaker(f"service-{i:04d}"))
    return Publisher(cluster, threading.Event())


@pytest.mark.skipif(Cluster is None, reason="needs redis-py (the 'redis' extra)")
def test_summary_of_100_breakers(benchmark: Any) -> None:
    built = publisher(100)
    message = benchmark(built.message)
    assert len(message) <= MAX_SUMMARY_BYTES


def main() -> None:
    for breakers in (10, 100, 1000):
        built = publisher(breakers)
        seconds = min(timeit.repeat(built.message, number=20, repeat=5)) / 20
        print(f"{breakers:5d} breakers: {seconds * 1e3:6.2f} ms per summary "
              f"({seconds * 100:.2f} % of a core at one a second), "
              f"{len(built.message()):,} bytes")


if __name__ == "__main__":
    main()
