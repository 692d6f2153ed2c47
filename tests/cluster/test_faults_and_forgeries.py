"""The cluster under abuse: huge periods, a silent Redis, hostile names, forged and
replayed messages and records. Nothing dies, nothing is lost, nobody gets in.

Every test runs on a real redis-server (tests/redis_server.py); faults are made with
SIGSTOP/SIGCONT, kill and FLUSHALL, and every wait is bounded.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from typing import Any

import attrs
import pytest

from recovery import CircuitBreakerConfig
from recovery.cluster.codec import Event, Rejected, encode
from recovery.cluster.store import key_part
from recovery.cluster.summary import Publisher, channel, decode_summary
from tests.cluster.conftest import trip, until
from tests.cluster.helpers import cluster_threads
from tests.redis_server import RedisServer, drop_namespace

with contextlib.suppress(ImportError):  # without it the redis_url fixture skips or fails
    import redis

    from recovery.cluster import Cluster

def publish(url: str, channel: str, message: bytes) -> None:
    client = redis.Redis.from_url(url)
    try:
        client.publish(channel, message)
    finally:
        client.close()


# -- durations are capped; the threads never die -------------------------------------------


def test_a_huge_forced_period_propagates_and_the_threads_go_on(nodes: Any) -> None:
    (c1, b1), (c2, b2) = nodes(), nodes()
    b1.force_open(1e10)  # past threading.TIMEOUT_MAX: once killed both workers
    until(lambda: b2.state.value == "open")
    # The follower holds a remote period at its own cap (max_retry_interval, 300 s).
    assert b2.retry_after is not None and b2.retry_after <= 300 + 1.0
    b1.reset()  # both workers are still there to publish and to follow
    until(lambda: b2.state.value == "closed")
    assert b1.state.value == "closed"
    for cluster in (c1, c2):
        assert all(t.is_alive() for t in cluster_threads(cluster))


def test_a_huge_configured_period_propagates_and_the_threads_go_on(nodes: Any) -> None:
    config = CircuitBreakerConfig(failure_threshold=3, minimum_requests=3,
                                  sliding_window_size=10, timeout=1e10,
                                  max_retry_interval=1e10)
    (c1, b1), (c2, b2) = nodes(config=config), nodes(config=config)
    trip(b1)
    until(lambda: b2.state.value == "open")
    b2.reset()
    until(lambda: b1.state.value == "closed")
    for cluster in (c1, c2):
        assert all(t.is_alive() for t in cluster_threads(cluster))


def test_a_forged_huge_period_is_held_at_the_local_cap_only(
    nodes: Any, redis_url: str, namespace: str
) -> None:
    (c1, b1), (c2, b2) = nodes(), nodes()
    forged = Event("open", "db", 1, "mallory", 1e300, 0, "forged")  # no secret: accepted
    publish(redis_url, f"{namespace}:events", encode(forged, None))
    until(lambda: b1.state.value == "open" and b2.state.value == "open")
    for cb in (b1, b2):
        assert cb.retry_after is not None and cb.retry_after <= 300 + 1.0
    b1.reset()  # its worker lived through the forged period: it publishes the close
    until(lambda: c1.status()["events"]["published"]["close"] == 1)
    for cluster in (c1, c2):
        assert all(t.is_alive() for t in cluster_threads(cluster))


def test_an_exception_on_a_cluster_thread_is_counted_logged_and_survived(
    nodes: Any, caplog: pytest.LogCaptureFixture
) -> None:
    (_c1, b1), (c2, b2) = nodes(), nodes()
    raised: list[str] = []

    def once(_cb: Any, _old: Any, new: Any) -> None:
        if not raised:  # the follower's subscriber applies the open: it gets this
            raised.append(new.value)
            raise SystemExit("a listener that exits")

    b2.add_listener(once)
    with caplog.at_level(logging.ERROR, logger="recovery.cluster"):
        trip(b1)
        until(lambda: b2.state.value == "open")
        until(lambda: c2.status()["errors"] >= 1)
    assert "SystemExit" in (c2.status()["last_error"] or "")
    assert any("SystemExit" in (r.exc_text or "") for r in caplog.records)
    b1.reset()  # the subscriber lived on: the close still arrives
    until(lambda: b2.state.value == "closed")
    assert all(t.is_alive() for t in cluster_threads(c2))


# -- a silent Redis ---------------------------------------------------------------------------


def test_a_trip_made_while_redis_is_silent_is_published_once_it_answers(
    own_redis: RedisServer, breaker_cls: Any
) -> None:
    config = CircuitBreakerConfig(failure_threshold=3, minimum_requests=3,
                                  sliding_window_size=10, timeout=30.0)
    clusters = [Cluster(own_redis.url, namespace="silent") for _ in range(2)]
    breakers = [breaker_cls("db", config) for _ in range(2)]
    for cluster, breaker in zip(clusters, breakers, strict=True):
        cluster.attach(breaker)
        cluster.start()
    try:
        until(lambda: all(c.status()["connected"] for c in clusters))
        own_redis.pause()  # connected, but nothing answers
        try:
            trip(breakers[0])
            # The trip script times out on the tripping node: a fault, not a lost trip.
            until(lambda: not clusters[0].status()["connected"])
        finally:
            own_redis.resume()
        until(lambda: breakers[1].state.value == "open")
        assert breakers[1].metrics().opened_by == clusters[0].node_id
    finally:
        for cluster in clusters:
            cluster.stop()


# -- trust ---------------------------------------------------------------------------------


def test_start_without_a_secret_warns_and_with_one_does_not(
    redis_url: str, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    for secret, warned in ((None, True), ("s3cret", False)):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="recovery.cluster"), \
                Cluster(redis_url, namespace=namespace, secret=secret):
            pass
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING
                    and "secret" in r.getMessage()]
        assert bool(warnings) is warned, warnings
        if warned:
            assert "anyone who can publish on this Redis can open these breakers" in warnings[0]


# -- names and keys --------------------------------------------------------------------------

SURROGATE_NAME = os.fsdecode(b"caf\xe9")  # 'caf\udce9' on a UTF-8 file system


def test_a_name_with_a_lone_surrogate_works_on_every_cluster_path(
    nodes: Any, redis_url: str, namespace: str, breaker_cls: Any
) -> None:
    assert SURROGATE_NAME == "caf\udce9"
    (c1, b1), (_c2, b2) = nodes(name=SURROGATE_NAME), nodes(name=SURROGATE_NAME)
    assert c1.status()["connected"]  # the resync on connect read its records
    trip(b1)  # the trip script's keys, and the event
    until(lambda: b2.state.value == "open")
    (c3, b3) = nodes(name=SURROGATE_NAME)  # a late joiner reads the records
    until(lambda: b3.state.value == "open")
    assert c3.status()["breakers"][SURROGATE_NAME]["opened_by"] == c1.node_id
    # The summaries carry it too, and the dashboard's reader takes them.
    client = redis.Redis.from_url(redis_url)
    pubsub = client.pubsub()
    try:
        pubsub.subscribe(channel(namespace))
        names: list[str] = []

        def summary_read() -> bool:
            message = pubsub.get_message(timeout=0.2)
            if message is not None and message["type"] == "message":
                names.extend(e["name"] for e in decode_summary(message["data"], None)["breakers"])
            return SURROGATE_NAME in names

        until(summary_read)
    finally:
        pubsub.close()
        client.close()
    b2.reset()
    until(lambda: b1.state.value == "closed" and b3.state.value == "closed")


def test_no_namespace_and_breaker_pair_shares_keys_with_another(
    redis_url: str, namespace: str, breaker_cls: Any
) -> None:
    # Unescaped, namespace "x" with breaker "b:breaker:c" and namespace "x:breaker:b"
    # with breaker "c" both had the keys "x:breaker:b:breaker:c:...".
    first = Cluster(redis_url, namespace=namespace)
    second = Cluster(redis_url, namespace=f"{namespace}:breaker:b")
    one, other = breaker_cls("b:breaker:c"), breaker_cls("c")
    first.attach(one)
    second.attach(other)
    try:
        with first:
            until(lambda: first.status()["connected"])
            one.force_open(60)
            until(lambda: first.status()["events"]["published"]["open"] == 1)
            with second:  # it reads its records before it says connected
                until(lambda: second.status()["connected"])
                assert other.state.value == "closed"
                assert second.status()["breakers"]["c"]["fleet"] == "closed"
    finally:
        drop_namespace(redis_url, f"{namespace}:breaker:b")


def test_key_parts_are_escaped_one_way() -> None:
    assert key_part("db") == "db"
    assert key_part("a:b%c") == "a%3Ab%25c"
    assert key_part("caf\udce9") == "caf%ED%B3%A9"
    assert ":" not in key_part("x:breaker:y")
    names = ["a:b", "a%3Ab", "a%253Ab", "caf\udce9", "caf%ED%B3%A9", "café"]
    assert len({key_part(n) for n in names}) == len(names)


@pytest.mark.parametrize("field", ["namespace", "node_id"])
def test_a_namespace_or_node_id_with_a_lone_surrogate_is_refused(field: str) -> None:
    with pytest.raises(ValueError, match=f"{field} must be valid Unicode"):
        Cluster("redis://127.0.0.1:1/0", **{field: "caf\udce9"})


def test_with_a_secret_an_unsigned_or_badly_signed_record_is_ignored_and_counted(
    nodes: Any, redis_url: str, namespace: str
) -> None:
    client = redis.Redis.from_url(redis_url)
    prefix = f"{namespace}:breaker:db"
    forged = Event("open", "db", 1, "mallory", 60.0, 0, "forged")
    cases = {
        "record_unsigned": {},
        "record_bad_signature": {"event": encode(forged, b"wrong", namespace)},
        # Signed for this breaker, but the record was made to outlive the signed period.
        "record_mismatch": {"event": encode(attrs.evolve(forged, period=0.5), b"k",
                                            namespace)},
    }
    try:
        for reason, extra in cases.items():
            client.delete(f"{prefix}:open")
            client.hset(f"{prefix}:fleet", mapping={"epoch": 1, "level": 0})
            # No TTL: before, this was "open until reset" at the next read.
            client.hset(f"{prefix}:open", mapping={"epoch": 1, "level": 0,
                                                  "node": "mallory", "reason": "x", **extra})
            (cluster, cb) = nodes(secret="k")  # it read the records before "connected"
            assert cb.state.value == "closed"
            assert cluster.status()["dropped"] == {reason: 1}
            assert cluster.status()["breakers"]["db"]["fleet"] == "closed"
        # The nodes' own records are signed: a late joiner with the secret follows them.
        client.delete(f"{prefix}:open")
        (_, b1) = nodes(secret="k")
        b1.force_open(60)
        (late, b2) = nodes(secret="k")
        assert b2.state.value == "open" and late.status()["dropped"] == {}
        assert b2.metrics().opened_by is not None
    finally:
        client.close()


def test_a_message_signed_for_another_namespace_is_dropped(
    nodes: Any, redis_url: str, namespace: str
) -> None:
    (cluster, cb) = nodes(secret="shared")
    staging = Event("open", "db", 7, "staging-node", 60.0, 0, "closed->open")
    publish(redis_url, f"{namespace}:events", encode(staging, b"shared", "staging"))
    publish(redis_url, f"{namespace}:events", encode(staging, b"shared"))  # names none
    until(lambda: cluster.status()["events_dropped"] == 2)
    assert cluster.status()["dropped"] == {"foreign_namespace": 2}
    assert cb.state.value == "closed"


def test_an_old_signed_open_replayed_after_the_records_are_lost_is_dropped(
    own_redis: RedisServer, breaker_cls: Any
) -> None:
    clusters = [Cluster(own_redis.url, namespace="replay", secret="k") for _ in range(2)]
    breakers = [breaker_cls("db") for _ in range(2)]
    sniffer = redis.Redis.from_url(own_redis.url)
    pubsub = sniffer.pubsub()
    for cluster, breaker in zip(clusters, breakers, strict=True):
        cluster.attach(breaker)
        cluster.start()
    try:
        until(lambda: all(c.status()["connected"] for c in clusters))
        pubsub.subscribe("replay:events")
        until(lambda: (pubsub.get_message(timeout=0.1) or {}).get("type") == "subscribe")
        breakers[0].force_open(60)
        captured: list[bytes] = []

        def sniffed() -> bool:
            message = pubsub.get_message(timeout=0.1)
            if message is not None and message["type"] == "message":
                captured.append(message["data"])
            return bool(captured)

        until(sniffed)  # the signed open, epoch 1
        until(lambda: breakers[1].state.value == "open")
        breakers[0].reset()  # epoch 2
        until(lambda: breakers[1].state.value == "closed")
        pubsub.close()
        sniffer.close()
        errors = [c.status()["errors"] for c in clusters]
        own_redis.restart()  # every record lost; both nodes reconnect and read them again
        until(lambda: all(c.status()["connected"] and c.status()["errors"] > e
                          for c, e in zip(clusters, errors, strict=True)))
        publish(own_redis.url, "replay:events", captured[0])
        until(lambda: clusters[1].status()["events_stale"] >= 1)
        assert breakers[1].state.value == "closed"
        assert clusters[1].status()["events"]["received"]["open"] == 1  # the real one only
        # The fleet's next decision is still newer than anything the nodes saw.
        breakers[0].force_open(60)
        until(lambda: breakers[1].state.value == "open")
        assert clusters[1].status()["breakers"]["db"]["epoch"] == 3
    finally:
        for cluster in clusters:
            cluster.stop()


def test_a_summary_names_its_namespace_in_the_signed_body() -> None:
    cluster = Cluster("redis://127.0.0.1:1/0", namespace="prod", secret="k")
    message = Publisher(cluster, threading.Event()).message()
    assert decode_summary(message, b"k", "prod")["node"] == cluster.node_id
    assert decode_summary(message, b"k")["node"] == cluster.node_id  # the reader of old
    with pytest.raises(Rejected) as info:
        decode_summary(message, b"k", "staging")
    assert info.value.reason == "foreign_namespace"


# -- saying what is wrong ---------------------------------------------------------------------


def messages(caplog: pytest.LogCaptureFixture, level: int, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "recovery.cluster" and r.levelno == level and text in r.getMessage()]


def test_an_unreachable_redis_is_a_warning_at_most_once_a_minute(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cluster = Cluster("redis://user:pw@127.0.0.1:1/0?password=pw2", namespace="typo")
    with caplog.at_level(logging.INFO, logger="recovery.cluster"), cluster:
        until(lambda: cluster.status()["errors"] >= 4)
    warnings = messages(caplog, logging.WARNING, "cannot reach Redis")
    assert len(warnings) == 1, warnings
    assert "redis://127.0.0.1:1" in warnings[0] and "pw" not in warnings[0]
    assert "'typo'" in warnings[0]


def test_a_lost_redis_is_a_warning_and_its_return_is_info(
    own_redis: RedisServer, breaker_cls: Any, caplog: pytest.LogCaptureFixture
) -> None:
    cluster = Cluster(own_redis.url, namespace="flap", secret="k")
    cluster.attach(breaker_cls("db"))
    with caplog.at_level(logging.INFO, logger="recovery.cluster"), cluster:
        until(lambda: cluster.status()["connected"])
        assert len(messages(caplog, logging.INFO, "reached Redis")) == 1
        own_redis.kill()
        until(lambda: messages(caplog, logging.WARNING, "cannot reach Redis"))
        own_redis.start()
        until(lambda: messages(caplog, logging.INFO, "reconnected to Redis"))
        assert cluster.status()["connected"]


def test_a_breaker_that_fails_in_resync_does_not_keep_the_others_out(
    nodes: Any, breaker_cls: Any
) -> None:
    (c1, first) = nodes(name="a")
    (c2, second) = nodes(name="b")
    first.force_open(60)
    second.force_open(60)
    until(lambda: c1.status()["events_published"] == c2.status()["events_published"] == 1)
    late_cluster, late_a = nodes(name="a", start=False)
    late_b = breaker_cls("b")
    late_cluster.attach(late_b)

    def exits(_cb: Any, _old: Any, _new: Any) -> None:
        raise SystemExit("a listener that exits")

    late_a.add_listener(exits)
    late_cluster.start()  # the resync opens "a", whose listener exits: "b" still follows
    until(lambda: late_cluster.status()["connected"])
    assert late_b.state.value == "open"
    assert late_cluster.status()["errors"] >= 1
