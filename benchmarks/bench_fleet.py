"""What a node's status summary costs its cluster's summary thread, once a second, and
what the fleet dashboard pays to take summaries in and to serve the fleet's /metrics.

    python benchmarks/bench_fleet.py

Builds the summary of 10, 100 and 1,000 attached breakers (read every breaker's
``metrics()``, the rates, the recovery view when a manager owns it, the bounded
encoding) and prints the time per summary and its size: the share of one core
the thread uses is that time per second. No Redis is needed (nothing is sent).
The call path is not measured here: no caller touches this thread, and
``benchmarks/bench_cluster.py`` measures ``cb.call`` attached to a running
cluster (which runs this thread) against an unattached breaker.

The fleet dashboard's side: checking and taking in one summary of 20 breakers
(the dashboard's thread does it for every node once a second), and rendering
``/metrics`` for 10, 100 and 1,000 nodes of 20 breakers each (one scrape).

Collected by pytest too (``pytest benchmarks --benchmark-disable``) so it cannot rot.
"""

from __future__ import annotations

import json
import threading
import timeit
from typing import Any

import pytest

from recovery import CircuitBreaker
from tests.dashboard.helpers import receive

try:
    from recovery.cluster import Cluster
    from recovery.cluster.summary import MAX_SUMMARY_BYTES, Publisher, encode_summary
    from recovery.dashboard.fleet import FleetFeed
    from recovery.dashboard.fleet_metrics import renderer
    from recovery.dashboard.hub import Hub
except ImportError:  # pragma: no cover - without redis-py or prometheus-client
    Cluster = None

BREAKERS_PER_NODE = 20


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


def node_summary(node: int, seq: int, entries: list[dict[str, Any]]) -> bytes:
    head = {"node": f"worker-{node:04d}", "host": "bench", "pid": node, "time": float(seq),
            "seq": seq}
    return encode_summary(head, entries, None)


def entries() -> list[dict[str, Any]]:
    built = publisher(BREAKERS_PER_NODE)
    return json.loads(built.message().split(b" ", 2)[2])["breakers"]  # type: ignore[no-any-return]


def fleet(nodes: int) -> Any:
    """A fleet dashboard's feed (never dialled) holding ``nodes`` nodes' summaries."""
    feed = FleetFeed("redis://127.0.0.1:1/0", "bench", None, Hub(), max_nodes=max(nodes, 1))
    sample = entries()
    for node in range(nodes):
        receive(feed, node_summary(node, 1, sample))
    return feed


@pytest.mark.skipif(Cluster is None, reason="needs redis-py and prometheus-client")
def test_fleet_metrics_of_100_nodes(benchmark: Any) -> None:
    feed = fleet(100)
    render = renderer(feed.nodes)
    body, _ = benchmark(render)
    assert body.count(b"recovery_requests_total{") == 100 * BREAKERS_PER_NODE
    feed.stop(1.0)


def main() -> None:
    for breakers in (10, 100, 1000):
        built = publisher(breakers)
        seconds = min(timeit.repeat(built.message, number=20, repeat=5)) / 20
        print(f"{breakers:5d} breakers: {seconds * 1e3:6.2f} ms per summary "
              f"({seconds * 100:.2f} % of a core at one a second), "
              f"{len(built.message()):,} bytes")
    feed = fleet(1)
    sample = entries()
    messages = [node_summary(0, seq, sample) for seq in range(2, 2002)]
    taken = iter(messages)
    seconds = min(timeit.repeat(lambda: receive(feed, next(taken)), number=200, repeat=5)) / 200
    print(f"fleet page, one summary of {BREAKERS_PER_NODE} breakers taken in: "
          f"{seconds * 1e6:6.1f} us (checked, ordered, diffed)")
    feed.stop(1.0)
    for nodes in (10, 100, 1000):
        feed = fleet(nodes)
        render = renderer(feed.nodes)
        seconds = min(timeit.repeat(render, number=3, repeat=3)) / 3
        print(f"fleet /metrics, {nodes:5d} nodes x {BREAKERS_PER_NODE} breakers: "
              f"{seconds * 1e3:7.1f} ms per scrape, {len(render()[0]):,} bytes")
        feed.stop(1.0)


if __name__ == "__main__":
    main()
