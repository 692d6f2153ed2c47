"""The cluster tests' fixtures: a fresh namespace on the suite's Redis and started nodes.

``redis_url`` (tests/redis_server.py) comes from tests/conftest.py: the dashboard and the
documentation examples use it too.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from recovery import CircuitBreakerConfig
from recovery.breaker import CircuitBreaker
from tests.helpers import eventually, fresh_namespace

with contextlib.suppress(ImportError):  # the redis_url fixture skips (or fails) with the reason
    from recovery.cluster import Cluster

BOUND = 10.0  # seconds any cross-node effect may take in these tests (it takes ms)


def until(predicate: Callable[[], Any], timeout: float = BOUND) -> Any:
    """Poll until ``predicate()`` is truthy; fail after ``timeout`` (never a fixed sleep)."""
    return eventually(predicate, timeout, "condition not met in time")


def trip(cb: CircuitBreaker) -> None:
    def fail() -> None:
        raise ConnectionError("down")

    while cb.state.value == "closed":
        with contextlib.suppress(ConnectionError):
            cb.call(fail)


@pytest.fixture
def namespace(redis_url: str) -> Iterator[str]:
    yield from fresh_namespace(redis_url, "t")


@pytest.fixture
def nodes(
    redis_url: str, namespace: str, breaker_cls: type[CircuitBreaker]
) -> Iterator[Callable[..., tuple[Cluster, CircuitBreaker]]]:
    """``nodes(**cluster_options)`` -> a started (cluster, breaker) pair; all stopped after."""
    made: list[Cluster] = []

    def node(name: str = "db", config: CircuitBreakerConfig | None = None,
             start: bool = True, url: str | None = None,
             **options: Any) -> tuple[Cluster, CircuitBreaker]:
        config = config or CircuitBreakerConfig(
            failure_threshold=3, minimum_requests=3, sliding_window_size=10, timeout=30.0
        )
        cluster = Cluster(url or redis_url, namespace=namespace, **options)
        breaker = breaker_cls(name, config)
        cluster.attach(breaker)
        made.append(cluster)
        if start:
            cluster.start()
            until(lambda: cluster.status()["connected"])
        return cluster, breaker

    yield node
    for cluster in made:
        cluster.stop()
    made.clear()
    gc.collect()  # a test's breakers (and their names) leave the process's registry with it
