"""The hand-off of a local transition from the caller's thread to the cluster's worker.

The caller only queues the transition (the worker does every Redis step after), so a
caller never waits for the worker, a transition queued while the worker is busy is
still published, and the cluster tells its own moves from the callers' by its
threads' identities, which a restart renews.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from recovery import CircuitBreakerConfig
from tests.cluster.conftest import BOUND, trip, until
from tests.cluster.helpers import cluster_threads


def test_a_trip_made_while_the_worker_is_busy_is_queued_then_published(
    nodes: Any, breaker_cls: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    (c1, b1), (_, b2) = nodes(), nodes()
    other = breaker_cls("other", b1.config)
    c1.attach(other)
    (_, follower) = nodes(name="other")
    busy, release = threading.Event(), threading.Event()
    local = c1._fleet.local  # private: the worker's Redis step, held busy to test the hand-off

    def slow_local(*args: Any) -> None:  # the worker, busy with the first trip's Redis work
        busy.set()
        assert release.wait(BOUND)
        local(*args)

    monkeypatch.setattr(c1._fleet, "local", slow_local)  # private: as above
    trip(b1)
    assert busy.wait(BOUND)
    tripped = threading.Event()

    def caller() -> None:
        trip(other)  # while the worker is held: the hand-off must not wait for it
        tripped.set()

    thread = threading.Thread(target=caller)
    thread.start()
    try:
        assert tripped.wait(BOUND), "a tripping call waited for the busy worker"
        assert other.state.value == "open" and follower.state.value == "closed"
    finally:
        release.set()
        thread.join(BOUND)
    until(lambda: b2.state.value == "open" and follower.state.value == "open")
    until(lambda: c1.status()["events"]["published"]["open"] == 2)
    assert c1.status()["events_dropped"] == 0


def test_after_a_restart_callers_moves_are_news_and_the_clusters_own_are_not(
    nodes: Any,
) -> None:
    # The cluster's threads are new after stop() and start(): the moves of the new
    # ones (applying the fleet's decisions) must not be taken for local transitions,
    # and any other thread's must.
    (c1, b1), (c2, b2) = nodes(), nodes()
    for _ in range(2):
        c1.stop()
        c1.start()
        until(lambda: c1.status()["connected"])
    b2.force_open(60)  # applied on c1 by its new subscriber: not published again by c1
    until(lambda: b1.state.value == "open")
    b1.reset()  # a caller's move: published
    until(lambda: b2.state.value == "closed")
    trip(b1)  # and a trip from another thread than the first one
    until(lambda: b2.state.value == "open")
    until(lambda: c1.status()["events"]["published"] == {"open": 1, "close": 1})
    assert c2.status()["events"]["published"] == {"open": 1, "close": 0}


def test_stop_wakes_and_joins_a_worker_parked_on_a_far_deadline(
    nodes: Any,
) -> None:
    # Held open until reset: no fleet deadline, so the worker sleeps its longest wait.
    config = CircuitBreakerConfig(timeout=1e6, max_retry_interval=1e6)
    (c1, b1) = nodes(config=config)
    b1.force_open(float("inf"))
    until(lambda: c1.status()["events"]["published"]["open"] == 1)
    threads = cluster_threads(c1)
    c1.stop(timeout=BOUND)
    assert not any(thread.is_alive() for thread in threads)
