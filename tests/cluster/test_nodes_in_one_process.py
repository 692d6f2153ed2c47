"""The cluster in one process: several nodes (each its own Cluster and breaker) on a real Redis.

Multi-process cases are in test_nodes_across_processes.py.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import math
from typing import Any

import pytest

from recovery import CircuitBreakerConfig, CircuitOpenError
from recovery.breaker import CircuitBreaker
from recovery.cluster.codec import Event, Rejected, decode, encode
from tests.cluster.conftest import BOUND, trip, until
from tests.cluster.helpers import cluster_threads
from tests.redis_server import RedisServer

try:
    import redis

    from recovery.cluster import Cluster
except ImportError:  # the redis_url fixture skips (or fails) with the reason
    pass

def test_a_trip_opens_every_node_for_the_remaining_period(nodes: Any) -> None:
    (c1, b1), (c2, b2), (c3, b3) = nodes(), nodes(), nodes()
    seen: list[tuple[str, str]] = []
    b2.add_listener(lambda _b, old, new: seen.append((old.value, new.value)))
    trip(b1)
    until(lambda: b2.state.value == "open" and b3.state.value == "open")
    assert seen == [("closed", "open")]
    with pytest.raises(CircuitOpenError) as info:
        b2.call(lambda: None)
    assert info.value.retry_after is not None and 25 < info.value.retry_after <= 31.0
    assert b2.metrics().opened_by == c1.node_id
    assert b1.metrics().opened_by is None
    assert c2.status()["breakers"]["db"]["opened_by"] == c1.node_id
    # The tripping node counts its publish after Redis took it: maybe after b2 opened.
    until(lambda: c1.status()["events"]["published"]["open"] == 1)
    until(lambda: c3.status()["events"]["received"]["open"] == 1)


def test_a_trip_by_a_node_behind_the_fleets_epoch_still_reaches_everyone(
    nodes: Any, redis_url: str, namespace: str
) -> None:
    # The trip script publishes the event it was given only if the fleet is where the
    # node last saw it; otherwise the node publishes it again with the real epoch.
    (c1, b1), (c2, b2) = nodes(), nodes()
    client = redis.Redis.from_url(redis_url)
    try:
        client.hincrby(f"{namespace}:breaker:db:fleet", "epoch", 5)  # behind both nodes' back
    finally:
        client.close()
    trip(b1)
    until(lambda: b2.state.value == "open")
    assert c2.status()["breakers"]["db"]["epoch"] == 6 == c1.status()["breakers"]["db"]["epoch"]
    until(lambda: c1.status()["events"]["published"]["open"] == 1)


@pytest.mark.parametrize("repair", ["running", "ended"])
def test_a_trip_that_a_repair_follows_at_once_still_opens_the_fleet(
    nodes: Any, repair: str
) -> None:
    # A manager begins the repair on the trip itself: by the time the cluster's
    # thread looks, the breaker is REPAIRING, or already half-open after a quick
    # repair, and the trip must still be published. (Node 1 starts after the moves,
    # so that its thread surely sees them late.)
    (c1, b1), (_, b2) = nodes(start=False), nodes()
    trip(b1)
    b1.begin_repair()
    if repair == "ended":
        b1.end_repair(True)
    c1.start()
    until(lambda: b2.state.value == "open")
    assert b2.metrics().opened_by == c1.node_id
    if repair == "running":
        assert b1.state.value == "repairing"  # the repair stays local
    else:  # the repaired breaker is back under the fleet's decision: open
        until(lambda: b1.state.value == "open")


def test_reset_and_force_open_propagate(nodes: Any) -> None:
    (_, b1), (_, b2) = nodes(), nodes()
    b1.force_open(60)
    until(lambda: b2.state.value == "open")
    b2.reset()
    until(lambda: b1.state.value == "closed")
    assert b2.state.value == "closed"


def test_held_until_reset_propagates(nodes: Any) -> None:
    (_, b1), (_, b2) = nodes(), nodes()
    b1.force_open(math.inf)
    until(lambda: b2.state.value == "open")
    assert b2.metrics().next_retry_time is None  # held until reset everywhere


def test_repairing_stays_local(nodes: Any) -> None:
    (_, b1), (_, b2) = nodes(), nodes()
    b1.begin_repair()
    trip(b2)
    until(lambda: b2.state.value == "open")
    (_c3, b3) = nodes()  # a third node proves the open event went out
    until(lambda: b3.state.value == "open")
    assert b1.state.value == "repairing"  # a fleet decision never interrupts a repair
    b1.end_repair(False)
    assert b1.state.value == "open"


def test_a_reset_that_ends_a_repair_stays_local(nodes: Any) -> None:
    (c1, b1), (_, b2) = nodes(), nodes()
    b1.begin_repair()
    trip(b2)
    until(lambda: c1.status()["breakers"]["db"]["fleet"] == "open")
    b1.reset()  # what the reset strategy does at the end of this process's repair
    until(lambda: b1.state.value == "open")  # back under the fleet's decision
    assert b2.state.value == "open"
    assert c1.status()["events_published"] == 0


def test_half_open_trial_success_closes_everyone(nodes: Any) -> None:
    config = CircuitBreakerConfig(failure_threshold=3, minimum_requests=3,
                                  sliding_window_size=10, timeout=0.3, success_threshold=1)
    (_c1, b1), (_c2, b2) = nodes(config=config), nodes(config=config)
    trip(b1)
    until(lambda: b2.state.value == "open")
    # One node wins the lease and goes half-open; the other keeps rejecting.
    until(lambda: "half_open" in (b1.state.value, b2.state.value))
    holder, other = (b1, b2) if b1.state.value == "half_open" else (b2, b1)
    assert other.state.value == "open"
    with pytest.raises(CircuitOpenError) as info:
        other.call(lambda: None)
    assert info.value.retry_after is not None and info.value.retry_after > 0
    holder.call(lambda: None)
    until(lambda: other.state.value == "closed")


def test_a_lease_holder_that_gets_no_calls_leaves_the_trial_to_a_node_that_does(
    nodes: Any,
) -> None:
    # gunicorn --preload: the parent follows the fleet but serves no calls. Holding
    # the lease, it renewed it for ever while half-open: no trial ever ran, and the
    # fleet stayed open after the dependency was back.
    from recovery.cluster.fleet import LEASE_TTL

    config = CircuitBreakerConfig(failure_threshold=3, minimum_requests=3,
                                  sliding_window_size=10, timeout=0.3, success_threshold=1)
    (_c1, b1), (_c2, b2) = nodes(config=config), nodes(config=config)
    trip(b1)
    until(lambda: "half_open" in (b1.state.value, b2.state.value))
    holder, other = (b1, b2) if b1.state.value == "half_open" else (b2, b1)

    def served() -> bool:  # only the other node gets calls
        with contextlib.suppress(CircuitOpenError):
            other.call(lambda: None)
        return other.state.value == "closed"

    until(served, timeout=2 * LEASE_TTL + BOUND)  # it keeps it LEASE_TTL unused
    until(lambda: holder.state.value == "closed")


def test_half_open_trial_failure_reopens_everyone_for_longer(nodes: Any) -> None:
    config = CircuitBreakerConfig(failure_threshold=3, minimum_requests=3,
                                  sliding_window_size=10, timeout=0.3,
                                  retry_backoff_factor=100.0, success_threshold=1)
    (c1, b1), (c2, b2) = nodes(config=config), nodes(config=config)
    trip(b1)
    until(lambda: "half_open" in (b1.state.value, b2.state.value))
    holder, _other = (b1, b2) if b1.state.value == "half_open" else (b2, b1)
    epoch = c1.status()["breakers"]["db"]["epoch"]
    with pytest.raises(ConnectionError):
        holder.call(trip_error)
    until(lambda: c2.status()["breakers"]["db"]["epoch"] > epoch
          and c1.status()["breakers"]["db"]["epoch"] > epoch)
    for cb in (b1, b2):  # 0.3 s x 100, the next period (the epoch moves just before)
        until(lambda cb=cb: cb.state.value == "open" and (cb.retry_after or 0) > 20)


def trip_error() -> None:
    raise ConnectionError("still down")


def test_quorum_two_opens_the_fleet_on_the_second_node(
    nodes: Any, redis_url: str, namespace: str
) -> None:
    (_, b1), (_, b2), (_, b3) = (nodes(quorum=2) for _ in range(3))
    trip(b1)
    # Only the voter is open: once its vote is in (the same script would have opened
    # the fleet), the others are still closed.
    client = redis.Redis.from_url(redis_url)
    until(lambda: client.zcard(f"{namespace}:breaker:db:votes") == 1)
    client.close()
    assert (b1.state.value, b2.state.value, b3.state.value) == ("open", "closed", "closed")
    trip(b2)
    until(lambda: b3.state.value == "open")


def test_late_joiner_starts_open(nodes: Any) -> None:
    (_, b1) = nodes()
    trip(b1)
    (c2, b2) = nodes(start=False)
    c2.start()
    until(lambda: b2.state.value == "open")
    retry = b2.retry_after
    assert retry is not None and 25 < retry <= 31.0


def test_attach_after_start_reads_the_records(nodes: Any, breaker_cls: Any) -> None:
    (_, b1) = nodes()
    trip(b1)
    (c2, _) = nodes(name="other")
    late = breaker_cls("db", CircuitBreakerConfig())
    c2.attach(late)
    until(lambda: late.state.value == "open")
    c2.detach(late)
    assert "db" not in c2.status()["breakers"]


def test_attach_checks_its_argument(nodes: Any, breaker_cls: Any) -> None:
    (c1, _b1) = nodes(start=False)
    with pytest.raises(TypeError, match="breaker"):
        c1.attach(object())
    with pytest.raises(ValueError, match="'db'"):
        c1.attach(breaker_cls("db"))
    with pytest.raises(ValueError, match="at most 1024"):
        c1.attach(breaker_cls("x" * 1025))
    with pytest.raises(ValueError, match="not attached"):
        c1.detach(breaker_cls("db"))


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"url": 5}, TypeError, "url"),
        ({"url": "http://x"}, ValueError, "url"),
        ({"namespace": ""}, ValueError, "namespace"),
        ({"namespace": "a b"}, ValueError, "namespace"),
        ({"node_id": 3}, TypeError, "node_id"),
        ({"quorum": 0}, ValueError, "quorum"),
        ({"quorum": True}, TypeError, "quorum"),
        ({"quorum_window": -1}, ValueError, "quorum_window"),
        ({"secret": 5}, TypeError, "secret"),
        ({"secret": b""}, ValueError, "secret"),
    ],
)
def test_bad_options_are_refused(
    redis_url: str, options: dict[str, Any], error: type, match: str
) -> None:
    kwargs = {"url": "redis://127.0.0.1:1/0", **options}
    with pytest.raises(error, match=match):
        Cluster(**kwargs)


def signed(body: bytes, key: bytes) -> bytes:
    return b"R1 " + hmac.new(key, body, hashlib.sha256).hexdigest().encode() + b" " + body


def test_codec_round_trip_and_rejections() -> None:
    event = Event("open", "db", 3, "n1", 1.5, 2, "closed->open")
    assert decode(encode(event, b"k"), b"k") == event
    assert decode(encode(event, None), None) == event
    cases = {
        "bad_signature": encode(event, b"other"),
        "unsigned": encode(event, None),
        "foreign_version": b"R9 - {}",
        "oversized": b"R1 - " + b" " * 5000,
        "malformed": signed(b"not json", b"k"),
    }
    for reason, message in cases.items():
        with pytest.raises(Rejected) as info:
            decode(message, b"k")
        assert info.value.reason == reason
    for body in (b'{"kind":"open"}', b'[1]', b"[" * 3000,
                 b'{"kind":"x","name":"db","epoch":1,"node":"n"}',
                 b'{"kind":"open","name":"db","epoch":0,"node":"n","level":0,"reason":""}',
                 b'{"kind":"open","name":"db","epoch":1,"node":"n","period":-1,"level":0,'
                 b'"reason":""}'):
        with pytest.raises(Rejected, match="malformed"):
            decode(b"R1 - " + body, None)


def test_forged_malformed_oversized_and_badly_signed_messages_are_dropped(
    nodes: Any, namespace: str, redis_url: str
) -> None:
    (c1, b1) = nodes(secret="s3cret")
    client = redis.Redis.from_url(redis_url)
    channel = f"{namespace}:events"
    forged = Event("open", "db", 99, "mallory", 60.0, 0, "forged")
    messages = [
        encode(forged, None),  # unsigned
        encode(forged, b"wrong"),  # badly signed
        signed(b"{not json", b"s3cret"),  # malformed
        signed(b"[" * 3000, b"s3cret"),  # malformed: nested past the JSON parser's limit
        b"R2 - {}",  # foreign version
        b"R1 - " + b"x" * 10_000,  # oversized
    ]
    for message in messages:
        client.publish(channel, message)
    until(lambda: c1.status()["events_dropped"] >= len(messages))
    status = c1.status()
    assert status["dropped"] == {"unsigned": 1, "bad_signature": 1, "malformed": 2,
                                 "foreign_version": 1, "oversized": 1}
    assert status["events_received"] == 0
    assert b1.state.value == "closed"
    client.publish(channel, encode(forged, b"s3cret", namespace))  # the real secret: obeyed
    until(lambda: b1.state.value == "open")
    client.close()


def test_signed_nodes_talk(nodes: Any) -> None:
    (_, b1), (_, b2) = nodes(secret=b"k"), nodes(secret=b"k")
    trip(b1)
    until(lambda: b2.state.value == "open")


def test_redis_unreachable_at_start(nodes: Any) -> None:
    # Nothing listens on port 1: the cluster retries in the background.
    (c1, b1) = nodes(start=False, url="redis://127.0.0.1:1/0")
    c1.start()
    until(lambda: c1.status()["errors"] > 0)
    status = c1.status()
    assert status["connected"] is False
    assert "Error" in status["last_error"]
    trip(b1)  # breaking goes on locally, and no cluster error reaches the caller
    assert b1.state.value == "open"
    b1.reset()
    assert b1.call(lambda: 7) == 7


def test_redis_killed_mid_run_and_restarted(
    own_redis: RedisServer, namespace: str, breaker_cls: Any
) -> None:
    config = CircuitBreakerConfig(failure_threshold=3, minimum_requests=3,
                                  sliding_window_size=10, timeout=30.0)
    clusters = [Cluster(own_redis.url, namespace=namespace) for _ in range(2)]
    breakers = [breaker_cls("db", config) for _ in range(2)]
    for cluster, breaker in zip(clusters, breakers, strict=True):
        cluster.attach(breaker)
        cluster.start()
    try:
        until(lambda: all(c.status()["connected"] for c in clusters))
        own_redis.kill()
        until(lambda: not any(c.status()["connected"] for c in clusters))
        assert clusters[0].status()["last_error"]
        # Callers see their own functions' results and errors only; local breaking goes on.
        assert breakers[0].call(lambda: 1) == 1
        trip(breakers[0])
        assert breakers[0].state.value == "open"
        assert breakers[1].state.value == "closed"
        own_redis.start()
        # Resync on reconnect: the trip made while Redis was away reaches the other node.
        until(lambda: all(c.status()["connected"] for c in clusters))
        until(lambda: breakers[1].state.value == "open")
        # And a reset made while Redis is away is published once it is back.
        own_redis.kill()
        until(lambda: not any(c.status()["connected"] for c in clusters))
        breakers[1].reset()
        assert breakers[0].state.value == "open"
        own_redis.start()
        until(lambda: breakers[0].state.value == "closed")
    finally:
        for cluster in clusters:
            cluster.stop()


def test_a_hold_runs_out_by_itself_when_redis_is_gone(
    own_redis: RedisServer, namespace: str, breaker_cls: Any
) -> None:
    config = CircuitBreakerConfig(failure_threshold=3, minimum_requests=3,
                                  sliding_window_size=10, timeout=0.2, success_threshold=1)
    clusters = [Cluster(own_redis.url, namespace=namespace) for _ in range(2)]
    breakers = [breaker_cls("db", config) for _ in range(2)]
    for cluster, breaker in zip(clusters, breakers, strict=True):
        cluster.attach(breaker)
        cluster.start()
    try:
        until(lambda: all(c.status()["connected"] for c in clusters))
        breakers[0].force_open(1.0)
        until(lambda: breakers[1].state.value == "open")
        own_redis.kill()
        until(lambda: not clusters[1].status()["connected"])

        def answered() -> bool:
            try:
                return breakers[1].call(lambda: True)  # type: ignore[no-any-return]
            except CircuitOpenError:
                return False

        # With Redis gone, the hold (the fleet's 1 s + 1 s, taken when the open arrived)
        # runs out by itself, and then the breaker probes alone.
        until(answered)
        assert breakers[1].state.value == "closed"
    finally:
        for cluster in clusters:
            cluster.stop()


def test_a_full_hand_over_queue_drops_and_counts(
    nodes: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import recovery.cluster.core

    monkeypatch.setattr(recovery.cluster.core, "QUEUE_LIMIT", 3)
    (c1, b1) = nodes(start=False)  # nobody drains the queue
    for _ in range(5):
        b1.force_open(60)
        b1.reset()
    status = c1.status()
    assert status["events_dropped"] == 7
    assert status["dropped"] == {"queue_full": 7}


def test_stop_joins_threads_and_is_idempotent(nodes: Any) -> None:
    (c1, _) = nodes()
    threads = cluster_threads(c1)
    assert len(threads) == 3 and all(t.is_alive() for t in threads)  # and the summaries
    c1.stop()
    c1.stop()
    assert not any(t.is_alive() for t in threads)
    assert c1.status()["connected"] is False


def test_manager_attaches_every_plugin_and_reports_the_cluster(
    redis_url: str, namespace: str
) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from recovery import RecoveryManager
    from recovery.plugins import PluginRegistry
    from recovery.prometheus import RecoveryCollector
    from recovery.testing import RecordingAuditLogger

    config = CircuitBreakerConfig(failure_threshold=3, minimum_requests=3,
                                  sliding_window_size=10, timeout=30.0)
    cluster = Cluster(redis_url, namespace=namespace)
    other = Cluster(redis_url, namespace=namespace)
    rm = RecoveryManager(PluginRegistry(), RecordingAuditLogger(), cluster=cluster)
    cb = rm.register_dependency("db", breaker_config=config)
    peer = CircuitBreaker("db", config)
    other.attach(peer)
    # Attached before the clusters start, so each connection reads the breakers' records
    # before it reports "connected", and the trip below reaches cb as an event. Attached
    # to a running cluster, the worker may read the record only after the trip: cb opens
    # all the same, but the event then counts as stale, not received.
    with cluster, other:
        until(lambda: cluster.status()["connected"] and other.status()["connected"])
        trip(peer)
        until(lambda: cb.state.value == "open")
        until(lambda: cluster.status()["events_received"] == 1)  # counted after applying
        status = rm.get_recovery_status()
        assert status["cluster"]["breakers"]["db"]["opened_by"] == other.node_id
        assert status["plugins"]["db"]["circuit_breaker"]["opened_by"] == other.node_id
        registry = CollectorRegistry()
        registry.register(RecoveryCollector(rm))
        text = generate_latest(registry).decode()
        assert "recovery_cluster_connected 1.0" in text
        assert 'recovery_cluster_events_total{direction="received",kind="open"} 1.0' in text
        assert "recovery_cluster_events_dropped_total 0.0" in text


def test_manager_refuses_a_non_cluster() -> None:
    from recovery import RecoveryManager
    from recovery.plugins import PluginRegistry
    from recovery.testing import RecordingAuditLogger

    with pytest.raises(TypeError, match="cluster"):
        RecoveryManager(PluginRegistry(), RecordingAuditLogger(), cluster=object())


def test_snapshot_is_what_the_summaries_are_made_of(breaker_cls: Any) -> None:
    from recovery import RecoveryManager
    from recovery.cluster import ClusterSnapshot
    from recovery.plugins import PluginRegistry
    from recovery.testing import RecordingAuditLogger

    cluster = Cluster("redis://127.0.0.1:1/0", namespace="snap", node_id="n1")
    cb = breaker_cls("db")
    cluster.attach(cb)
    rm = RecoveryManager(PluginRegistry(), RecordingAuditLogger(), cluster=cluster)
    snapshot = cluster.snapshot()
    assert isinstance(snapshot, ClusterSnapshot)
    assert (snapshot.node_id, snapshot.namespace) == ("n1", "snap")
    assert snapshot.breakers == (cb,) and snapshot.managers == (rm,)
    assert snapshot.serving and cluster.serving()
    cluster._forked = True  # private: what a fork does in the parent (no call yet, not serving)
    assert not cluster.snapshot().serving
    cb.call(lambda: None)
    assert cluster.snapshot().serving
