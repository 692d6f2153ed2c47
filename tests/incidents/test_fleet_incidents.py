"""Incidents across services: two real managers, each with its own Cluster in one
namespace on a real Redis, share their onsets and form one incident.

Service A registers the database ``db``; service B registers ``payments``, which
depends on ``db`` (which B does not register). Each manager runs on a FakeClock of
its own; only the cluster's threads run on real time (bounded waits, no sleeps).
Run on both windows (the suite runs again with ``RECOVERY_NO_EXTENSIONS=1``).
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from recovery.alerts import Alert
from recovery.config import CircuitBreakerConfig
from recovery.incidents import Incident
from recovery.manager import RecoveryConfig, RecoveryManager
from recovery.testing import FakeClock, RecordingAuditLogger
from tests.helpers import StubPluginManager, eventually, fresh_namespace

redis = pytest.importorskip("redis")
from recovery.cluster import Cluster  # noqa: E402
from recovery.cluster.onsets import (  # noqa: E402
    MAX_ONSET_BYTES,
    Onset,
    channel,
    decode,
    encode,
)
from recovery.incidents_remote import incident_id  # noqa: E402

TRIPS_AT_ONCE = CircuitBreakerConfig(failure_threshold=1)
BOUND = 10.0  # seconds a cross-node effect may take here (it takes milliseconds)


class Outage:
    def __init__(self) -> None:
        self.down = True

    def healthy(self) -> bool:
        return not self.down


class Service:
    """One service: a manager on its own FakeClock with its own Cluster node."""

    def __init__(self, redis_url: str, namespace: str, node_id: str, plugins: tuple[str, ...],
                 secret: str | None) -> None:
        self.clock = FakeClock()
        self.audit = RecordingAuditLogger()
        self.alerts: list[Alert] = []
        self.cluster = Cluster(redis_url, namespace=namespace, node_id=node_id, secret=secret)
        self.rm = RecoveryManager(
            StubPluginManager(*plugins), self.audit,
            RecoveryConfig(enable_health_checking=False, max_recovery_attempts=1,
                           crash_loop_delay=5.0),
            clock=self.clock, cluster=self.cluster)
        self.rm.add_alert_handler(self.alerts.append)

    def start(self) -> None:
        self.rm.start()
        self.cluster.start()
        soon(lambda: self.onsets()["connected"], "the onset channel subscribed")

    def stop(self) -> None:
        self.cluster.stop()
        self.rm.stop(timeout=5.0)

    def onsets(self) -> dict[str, Any]:
        return self.rm.get_recovery_status()["cluster"]["onsets"]  # type: ignore[no-any-return]

    def open_incident(self) -> Incident | None:
        found = self.rm.incidents(active_only=True)
        return found[0] if len(found) == 1 else None

    def actions(self, name: str) -> list[str]:
        return [action for plugin, _, action, _ in self.audit.records if plugin == name]

    def incident_alerts(self) -> list[str]:
        return [alert.kind.value for alert in self.alerts if alert.kind.startswith("incident_")]


def soon(predicate: Callable[[], Any], what: str) -> Any:
    return eventually(predicate, BOUND, f"not in time: {what}")


def quiet(rm: RecoveryManager) -> None:
    soon(lambda: rm.wait_idle(0.01) and rm.is_quiescent(), "the manager settled")


def fail() -> None:
    raise ConnectionError("db is down")


def trip(service: Service, name: str) -> None:
    with pytest.raises(ConnectionError):
        service.rm.execute_with_recovery(name, fail)


@pytest.fixture
def namespace(redis_url: str) -> Iterator[str]:
    yield from fresh_namespace(redis_url, "inc")


@pytest.fixture
def services(redis_url: str, namespace: str) -> Iterator[Callable[..., Service]]:
    made: list[Service] = []

    def build(node_id: str, *plugins: str, secret: str | None = None,
              space: str | None = None) -> Service:
        service = Service(redis_url, space or namespace, node_id, plugins, secret)
        made.append(service)
        return service

    yield build
    for service in made:
        service.stop()


def two_services(services: Callable[..., Service], outage: Outage,
                 secret: str | None = None) -> tuple[Service, Service]:
    a = services("node-a", secret=secret)
    a.rm.register_dependency("db", health_check=outage.healthy, breaker_config=TRIPS_AT_ONCE)
    b = services("node-b", "payments", secret=secret)
    # B does not register db: with a cluster, depends_on may name another service's.
    b.rm.register_plugin("payments", TRIPS_AT_ONCE, health_check=lambda: True,
                         fallback=lambda: "cached", depends_on=("db",))
    a.start()
    b.start()
    return a, b


def test_a_database_down_on_one_service_is_one_incident_on_both_with_its_dependent_held(
    services: Callable[..., Service],
) -> None:
    outage = Outage()
    a, b = two_services(services, outage)
    trip(a, "db")
    quiet(a.rm)  # its first probe failed at once: the next is due 5 s later
    on_b = soon(b.open_incident, "db's onset reached node-b")
    assert (on_b.root, on_b.members) == ("db", ("db",))
    trip(b, "payments")
    quiet(b.rm)
    on_a = soon(lambda: (i := a.open_incident()) and len(i.members) == 2 and i, "payments on a")
    on_b = b.open_incident()
    assert on_b is not None
    # One incident, named alike on both nodes, root db (which only A registers).
    assert on_a.id == on_b.id and on_a.id.startswith("inc-")
    assert (on_a.root, set(on_a.members)) == (on_b.root, set(on_b.members)) == (
        "db", {"db", "payments"})
    # B's payments is held while db is down: no restart, its fallback served.
    status = b.rm.get_recovery_status()["plugins"]["payments"]
    assert status["incident"] == on_b.id and status["held_until"] is not None
    assert b.rm.execute_with_recovery("payments", fail) == "cached"
    b.clock.advance(30.0)
    quiet(b.rm)
    assert b.actions("payments") == []
    a.clock.advance(2.0)  # A's incident has gathered: A, whose root db is, pages it once
    quiet(a.rm)
    soon(lambda: a.incident_alerts() == ["incident_opened"], "A paged the incident")

    outage.down = False
    a.clock.advance(3.0)  # db's next probe finds it back; B hears of it: payments' trial
    quiet(a.rm)
    soon(lambda: not b.rm.incidents(active_only=True), "resolved on node-b")
    soon(lambda: not a.rm.incidents(active_only=True), "resolved on node-a")
    quiet(b.rm)
    assert b.actions("payments") == ["trial"]  # never restarted
    assert a.actions("db") == ["probe", "probe"]
    (ended_a,), (ended_b,) = a.rm.incidents(), b.rm.incidents()
    assert ended_a.id == ended_b.id == on_a.id
    soon(lambda: a.incident_alerts() == ["incident_opened", "incident_resolved"],
         "A said it was resolved")
    assert b.incident_alerts() == []  # its root is A's: paged there, once
    # Each heard the other's onset and recovery; its own came back and was ignored.
    assert a.onsets()["received"] == b.onsets()["received"] == 2
    assert a.onsets()["dropped"] == b.onsets()["dropped"] == {}


def test_a_dependent_that_trips_first_is_renamed_after_the_root_when_it_is_heard_of(
    services: Callable[..., Service],
) -> None:
    outage = Outage()
    a, b = two_services(services, outage)
    trip(b, "payments")
    first = soon(b.open_incident, "payments' incident on node-b")
    assert first.root == "payments"
    trip(a, "db")
    renamed = soon(lambda: (i := b.open_incident()) and i.root == "db" and i, "root db")
    on_a = soon(lambda: (i := a.open_incident()) and len(i.members) == 2 and i, "payments on a")
    assert renamed.id == on_a.id != first.id


def test_forged_unsigned_and_foreign_onsets_are_refused_and_counted(
    services: Callable[..., Service], redis_url: str, namespace: str,
) -> None:
    outage = Outage()
    a, b = two_services(services, outage, secret="right")
    stranger = services("node-c", space=namespace + "x", secret="right")
    stranger.rm.register_dependency("db", breaker_config=TRIPS_AT_ONCE)
    stranger.start()
    forged = Onset("trip", "db", 1.0, "node-x", "forger/1")
    body = json.dumps({"kind": "trip", "name": "db", "at": "soon", "node": "x",
                       "sender": "y", "depends_on": [], "tags": {}, "ns": namespace}).encode()
    forgeries = {
        "unsigned": encode(forged, None, namespace),
        "bad_signature": encode(forged, b"guess", namespace),
        "foreign_namespace": encode(forged, b"right", namespace + "x"),
        "malformed": b"R1 " + hmac.new(b"right", body, "sha256").hexdigest().encode()
                     + b" " + body,
        "oversized": b"R1 - " + b" " * MAX_ONSET_BYTES,
    }
    client = redis.Redis.from_url(redis_url)
    try:
        for message in forgeries.values():
            client.publish(channel(namespace), message)
    finally:
        client.close()
    trip(stranger, "db")  # another namespace's db outage: not ours
    soon(lambda: b.onsets()["dropped"] == dict.fromkeys(forgeries, 1), "all five counted")
    assert b.onsets()["received"] == 0 and b.rm.incidents() == []
    # The honest onset of our namespace still gets through.
    trip(a, "db")
    assert soon(b.open_incident, "db's signed onset").root == "db"


def test_onset_messages_are_checked_field_by_field() -> None:
    onset = Onset("early_warning", "db", 12.5, "node-a", "node-a/1", ("disk",),
                  {"host": "db1"})
    assert decode(encode(onset, b"k", "shop"), b"k", "shop") == onset
    assert decode(encode(onset, None, "shop"), None, "shop") == onset
    for field, value in [("kind", "closed"), ("at", -1), ("name", ""), ("depends_on", "db"),
                         ("depends_on", ["x"] * 101), ("tags", {"host": 1})]:
        data = json.loads(encode(onset, None, "shop").split(b" ", 2)[2])
        data[field] = value
        message = b"R1 - " + json.dumps(data).encode()
        with pytest.raises(ValueError, match="malformed"):
            decode(message, None, "shop")
    unnamed = b"R1 - " + json.dumps({"kind": "trip"}).encode()
    with pytest.raises(ValueError, match="foreign_namespace"):
        decode(unnamed, None, "shop")


def test_the_id_is_the_roots_name_and_first_onset() -> None:
    assert incident_id("db", 1700000000.1234) == incident_id("db", 1700000000.1231)
    assert incident_id("db", 1700000000.1234) != incident_id("db", 1700000000.125)
    assert incident_id("db", 1.0) != incident_id("dc", 1.0)
    assert incident_id("\ud800", 1.0).startswith("inc-")  # any str, lone surrogates too


def test_an_incident_paged_then_renamed_by_its_new_root_is_opened_once(
    services: Callable[..., Service],
) -> None:
    a = services("node-a", "orders", "checkout")
    a.rm.register_dependency("db", breaker_config=TRIPS_AT_ONCE)
    a.rm.register_plugin("orders", TRIPS_AT_ONCE, health_check=lambda: False,
                         depends_on=("db",))
    a.rm.register_plugin("checkout", TRIPS_AT_ONCE, health_check=lambda: False,
                         depends_on=("orders",))
    a.start()
    trip(a, "checkout")
    trip(a, "orders")
    quiet(a.rm)
    a.clock.advance(2.0)
    quiet(a.rm)
    soon(lambda: a.incident_alerts() == ["incident_opened"], "opened, root orders")
    first = a.open_incident()
    assert first is not None and first.root == "orders"
    trip(a, "db")
    quiet(a.rm)
    renamed = a.open_incident()
    assert renamed is not None and (renamed.root, len(renamed.members)) == ("db", 3)
    assert renamed.id != first.id
    soon(lambda: a.incident_alerts() == ["incident_opened", "incident_updated"],
         "updated, not opened again")
    (updated,) = [alert for alert in a.alerts if alert.kind == "incident_updated"]
    assert f"was incident {first.id}" in updated.message


# -- bounds, fed directly (no Redis needed: the channel is never started) ----------------


@pytest.fixture
def offline(clock: FakeClock) -> Iterator[RecoveryManager]:
    cluster = Cluster("redis://127.0.0.1:1/0", namespace="offline", node_id="here")
    rm = RecoveryManager(StubPluginManager("payments"), RecordingAuditLogger(),
                         RecoveryConfig(enable_health_checking=False,
                                        incident_hold_timeout=10.0),
                         clock=clock, cluster=cluster)
    rm.register_plugin("payments", TRIPS_AT_ONCE, depends_on=("db",))
    yield rm


def heard(rm: RecoveryManager, name: str, kind: str = "trip", *needs: str) -> None:
    assert rm._fleet_incidents is not None
    rm._fleet_incidents._received(Onset(kind, name, 1000.0, "there", "there/1", needs))


def remote(rm: RecoveryManager) -> dict[str, int]:
    return rm.get_recovery_status()["cluster"]["onsets"]["remote"]  # type: ignore[no-any-return]


def test_remote_names_are_bounded_the_least_recently_heard_of_forgotten_as_recovered(
    offline: RecoveryManager, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("recovery.incidents_remote.MAX_REMOTE", 3)
    for name in ("r1", "r2", "r3"):
        heard(offline, name)
    heard(offline, "r1")  # heard of again: the least recent is now r2
    heard(offline, "r4")
    heard(offline, "r5")
    assert remote(offline) | {"names": 3, "forgotten": 2} == remote(offline)
    open_ = {incident.root for incident in offline.incidents(active_only=True)}
    assert open_ == {"r1", "r4", "r5"}  # r2 and r3 forgotten: their incidents resolved


def test_a_remote_member_without_news_expires_as_recovered(
    offline: RecoveryManager, clock: FakeClock,
) -> None:
    heard(offline, "db")
    assert offline.incidents(active_only=True)[0].root == "db"
    assert offline._fleet_incidents is not None
    clock.advance(20.0)  # twice the hold timeout: not yet
    offline._fleet_incidents._expire()
    assert offline.incidents(active_only=True)
    clock.advance(0.5)
    offline._fleet_incidents._expire()
    assert offline.incidents(active_only=True) == []
    assert remote(offline)["expired"] == 1


def test_remote_names_registered_here_or_contradicting_our_declarations_are_counted(
    offline: RecoveryManager,
) -> None:
    offline.start()
    try:
        heard(offline, "payments")  # ours: its own breaker speaks for it
        assert offline.incidents() == []
        heard(offline, "db", "trip", "payments")  # db -> payments -> db: a cycle
        assert offline.incidents(active_only=True)[0].root == "db"  # kept, without it
        assert (remote(offline)["ignored"], remote(offline)["conflicting"]) == (1, 1)
    finally:
        offline.stop()


def test_without_a_cluster_depends_on_must_still_name_a_registration() -> None:
    rm = RecoveryManager(StubPluginManager("payments"))
    rm.register_plugin("payments", depends_on=("db",))
    with pytest.raises(KeyError, match="'payments' depends on 'db', which is not registered"):
        rm.start()
