"""The fleet dashboard: each node's summary, and the page that shows them all.

The wire format (bound, signature, field checks) is tested without Redis; the
rest against a real redis-server (tests/redis_server.py: skipped without one,
a failure under RECOVERY_REQUIRE_REDIS=1) with nodes that are real spawned
processes (tests/cluster/node_process.py). Every wait polls until a deadline.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import os
import select
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from recovery import FailureInfo, RecoveryConfig, RecoveryManager
from recovery.breaker import CircuitBreaker
from recovery.cluster.codec import Rejected
from recovery.cluster.summary import (
    MAX_INCIDENTS,
    MAX_MEMBERS,
    MAX_SUMMARY_BYTES,
    breaker_entry,
    channel,
    decode_summary,
    encode_summary,
    incident_entry,
)
from recovery.status import PluginRecovery
from recovery.testing import FakeClock, RecordingAuditLogger
from tests.cluster.test_nodes_across_processes import Node
from tests.helpers import (
    StubPluginManager,
    closed_after,
    eventually,
    failing_strategy,
    fresh_namespace,
    hears_ctrl_c,
    node_processes,
)

try:
    import redis

    from recovery.cluster import Cluster
    from recovery.dashboard import Dashboard, serve_fleet
except ImportError:  # the redis_url fixture skips (or fails) with the reason
    pass

BOUND = 15.0  # seconds for anything that takes one or two summaries (a second each)
HEAD = {"node": "n1", "host": "h", "pid": 1, "time": 1.0, "seq": 1}


def entry(name: str, state: str = "closed", plugin: PluginRecovery | None = None,
          incident: str | None = None) -> dict[str, Any]:
    metrics = CircuitBreaker(name).metrics().to_dict()
    metrics["state"] = state
    return breaker_entry(metrics, (1.5, 0.25), plugin, incident)


def incident(id_: str, root: str, *members: str, cause_known: bool = True) -> dict[str, Any]:
    """An open incident as a summary carries it (from the shape of Incident.to_dict())."""
    return incident_entry({"id": id_, "root": root, "members": [root, *members],
                           "cause_known": cause_known, "evidence": [], "started": 1.0})


def soon(probe: Callable[[], Any], what: str, bound: float = BOUND) -> Any:
    """Poll ``probe`` until it returns something true; its value (the summaries come once
    a second, so every 50 ms is often enough)."""
    return eventually(probe, bound, f"not within {bound}s: {what}", interval=0.05)


def status(board: Dashboard) -> dict[str, Any]:
    with urllib.request.urlopen(board.url + "status.json", timeout=5) as response:
        return json.load(response)  # type: ignore[no-any-return]


def node_view(board: Dashboard, node_id: str) -> dict[str, Any] | None:
    return next((n for n in status(board)["nodes"] if n["id"] == node_id), None)


# -- the wire format, no Redis ------------------------------------------------------------


def test_a_small_summary_carries_every_breaker_and_round_trips() -> None:
    plugin = {"failed": True, "crash_loop": False, "degraded": False,
              "last_action": "restart", "last_action_success": False}
    recovery = PluginRecovery(failed=True, last_action="restart", last_action_success=False)
    message = encode_summary(HEAD, [entry("a"), entry("b", "open", recovery)], b"k")
    summary = decode_summary(message, b"k")
    assert summary["omitted"] == 0 and summary["breakers_total"] == 2
    assert [b["name"] for b in summary["breakers"]] == ["b", "a"]  # trouble first
    assert summary["breakers"][0]["plugin"] == plugin
    assert summary["breakers"][0]["rate"] == [1.5, 0.25]


@pytest.mark.parametrize("secret", [None, b"secret"])
def test_a_node_with_many_breakers_truncates_with_a_count_and_never_exceeds_the_bound(
    secret: bytes | None,
) -> None:
    entries = [entry(f"service-{i:04d}-" + "x" * 80) for i in range(500)]
    entries += [entry("zz-open", "open"), entry("zz-half", "half_open")]
    message = encode_summary(HEAD, entries, secret)
    assert len(message) <= MAX_SUMMARY_BYTES
    summary = decode_summary(message, secret)
    assert summary["breakers_total"] == 502
    assert summary["omitted"] == 502 - len(summary["breakers"]) > 0
    # What is in trouble goes first, so the fleet page never misses an open breaker.
    assert [b["name"] for b in summary["breakers"][:2]] == ["zz-open", "zz-half"]
    # Nearly full: less than one entry and a signature's room is left unused.
    assert len(message) > MAX_SUMMARY_BYTES - 400


def test_one_huge_breaker_name_still_fits() -> None:
    message = encode_summary(HEAD, [entry("n" * 1024, "open")] * 20, None)
    assert len(message) <= MAX_SUMMARY_BYTES
    assert decode_summary(message, None)["omitted"] > 0


def _forge(body: dict[str, Any] | bytes, signature: bytes = b"-",
           version: bytes = b"R1") -> bytes:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return b" ".join((version, signature, raw))


GOOD = json.loads(encode_summary(HEAD, [entry("a")], None).split(b" ", 2)[2])


@pytest.mark.parametrize(("message", "reason"), [
    (encode_summary(HEAD, [entry("a")], None), "unsigned"),
    (encode_summary(HEAD, [entry("a")], b"wrong"), "bad_signature"),
    (_forge(GOOD, b"0" * 64), "bad_signature"),
    (_forge(GOOD, version=b"R9"), "foreign_version"),
    (b"x" * (MAX_SUMMARY_BYTES + 1), "oversized"),
    (b"R1 -", "malformed"),
    (_forge(b"{", hmac.new(b"right", b"{", hashlib.sha256).hexdigest().encode()), "malformed"),
])
def test_with_a_secret_unsigned_forged_and_foreign_summaries_are_refused(
    message: bytes, reason: str
) -> None:
    with pytest.raises(Rejected) as refused:
        decode_summary(message, b"right")
    assert refused.value.reason == reason


@pytest.mark.parametrize("change", [
    {"kind": "open"}, {"node": ""}, {"pid": -1}, {"time": "now"}, {"seq": 1.5},
    {"breakers": {}}, {"breakers": [{"name": "a"}]}, {"omitted": -1},
    {"breakers": [{**GOOD["breakers"][0], "state": "<b>"}]},
    {"breakers": [{**GOOD["breakers"][0], "requests": -3}]},
    {"breakers": [{**GOOD["breakers"][0], "rate": [1, float("inf")]}]},
    {"breakers": [{**GOOD["breakers"][0], "plugin": {"failed": "yes"}}]},
    {"breakers": [{**GOOD["breakers"][0], "name": 7}]},
])
def test_a_summary_with_a_malformed_field_is_refused_whole(change: dict[str, Any]) -> None:
    assert decode_summary(_forge(GOOD), None)["node"] == "n1"
    with pytest.raises(Rejected) as refused:
        decode_summary(_forge({**GOOD, **change}), None)
    assert refused.value.reason == "malformed"


def test_open_incidents_and_each_breakers_incident_round_trip() -> None:
    incidents = [incident("inc-a-1", "db", "payments", "orders"),
                 incident("inc-a-2", "cache", cause_known=False)]
    message = encode_summary(
        HEAD, [entry("db", "open", incident="inc-a-1"), entry("mail")], b"k", incidents)
    summary = decode_summary(message, b"k")
    assert summary["incidents"] == incidents and summary["incidents_total"] == 2
    assert summary["incidents"][0] == {"id": "inc-a-1", "root": "db",
                                       "members": ["db", "payments", "orders"],
                                       "members_total": 3, "cause_known": True}
    by_name = {b["name"]: b["incident"] for b in summary["breakers"]}
    assert by_name == {"db": "inc-a-1", "mail": None}
    # Without incidents the summary carries no incident field at all (old readers).
    quiet = encode_summary(HEAD, [entry("mail")], None)
    assert b"incident" not in quiet
    assert decode_summary(quiet, None)["incidents"] == []


def test_an_incident_lists_its_root_first_and_bounds_its_members() -> None:
    many = incident_entry({"id": "i", "root": "r", "cause_known": True,
                           "members": [f"m{i}" for i in range(150)] + ["r"]})
    assert many["members"][0] == "r" and len(many["members"]) == MAX_MEMBERS
    assert many["members_total"] == 151


def test_many_incidents_stay_within_the_bound_oldest_first_and_counted() -> None:
    big = [incident(f"inc-{i}", f"root-{i}-" + "x" * 900, "y" * 1000) for i in range(30)]
    message = encode_summary(HEAD, [entry("a", "open")], None, big)
    assert len(message) <= MAX_SUMMARY_BYTES
    summary = decode_summary(message, None)
    kept = summary["incidents"]
    assert 0 < len(kept) < MAX_INCIDENTS and summary["incidents_total"] == 30
    assert [i["id"] for i in kept] == [f"inc-{i}" for i in range(len(kept))]
    assert summary["breakers"][0]["name"] == "a"  # the breakers still fit


GOOD_INCIDENT = incident("inc-a-1", "db", "payments")


@pytest.mark.parametrize("change", [
    {"incidents": {}}, {"incidents": [GOOD_INCIDENT] * (MAX_INCIDENTS + 1),
                        "incidents_total": MAX_INCIDENTS + 1},
    {"incidents": [GOOD_INCIDENT], "incidents_total": 0},
    {"incidents": [GOOD_INCIDENT]},  # no total
    {"incidents": [{**GOOD_INCIDENT, "members": []}], "incidents_total": 1},
    {"incidents": [{**GOOD_INCIDENT, "members": ["payments", "db"]}], "incidents_total": 1},
    {"incidents": [{**GOOD_INCIDENT, "members": ["db", 7]}], "incidents_total": 1},
    {"incidents": [{**GOOD_INCIDENT, "members": ["db"] * (MAX_MEMBERS + 1)}],
     "incidents_total": 1},
    {"incidents": [{**GOOD_INCIDENT, "id": "i" * 65}], "incidents_total": 1},
    {"incidents": [{**GOOD_INCIDENT, "cause_known": 1}], "incidents_total": 1},
    {"incidents": [{**GOOD_INCIDENT, "members_total": 1}], "incidents_total": 1},
    {"breakers": [{**GOOD["breakers"][0], "incident": ""}]},
    {"breakers": [{**GOOD["breakers"][0], "incident": "i" * 65}]},
])
def test_a_summary_with_a_malformed_incident_is_refused_whole(change: dict[str, Any]) -> None:
    fine = {**GOOD, "incidents": [GOOD_INCIDENT], "incidents_total": 1}
    assert decode_summary(_forge(fine), None)["incidents"] == [GOOD_INCIDENT]
    with pytest.raises(Rejected) as refused:
        decode_summary(_forge({**GOOD, **change}), None)
    assert refused.value.reason == "malformed"


def test_a_fleet_shows_an_incident_once_with_each_members_node_count(
    redis_url: str,
) -> None:
    from recovery.dashboard.fleet import FleetFeed
    from recovery.dashboard.hub import Hub

    feed = FleetFeed(redis_url, "unused", None, Hub())  # not started: fed directly
    summaries = {  # three nodes, each manager with its own ids for the same outage
        "n1": [incident("inc-1-1", "db", "payments", "orders")],
        "n2": [incident("inc-2-4", "db", "payments")],
        # db did not trip on n3: its manager saw payments first, and orders with it.
        "n3": [incident("inc-3-9", "payments", "orders"),
               incident("inc-3-10", "mail", cause_known=False)],
        "n4": [],
    }
    for node, incidents in summaries.items():
        feed._receive(encode_summary({**HEAD, "node": node}, [entry("db")], None, incidents))
    feed._tick()
    shown = feed.snapshot()["incidents"]
    assert [i["root"] for i in shown] == ["db", "mail"]
    outage, mail = shown
    assert outage["cause_known"] is True and mail["cause_known"] is False
    assert (outage["nodes_affected"], outage["live_nodes"]) == (3, 4)
    assert [(m["name"], m["open_on"], m["nodes"]) for m in outage["members"]] == [
        ("db", 2, ["n1", "n2"]), ("payments", 3, ["n1", "n2", "n3"]),
        ("orders", 2, ["n1", "n3"])]
    assert outage["local"] == [{"node": "n1", "id": "inc-1-1", "root": "db"},
                               {"node": "n2", "id": "inc-2-4", "root": "db"},
                               {"node": "n3", "id": "inc-3-9", "root": "payments"}]
    assert [(m["name"], m["open_on"]) for m in mail["members"]] == [("mail", 1)]
    feed.stop(1.0)


def test_unknown_fields_are_not_passed_on() -> None:
    body = {**GOOD, "script": "<img src=x onerror=alert(1)>",
            "breakers": [{**GOOD["breakers"][0], "html": "<b>x</b>"}]}
    summary = decode_summary(_forge(body), None)
    assert "script" not in summary and "html" not in summary["breakers"][0]


# -- against a real Redis ------------------------------------------------------------------


@pytest.fixture
def namespace(redis_url: str) -> Iterator[str]:
    yield from fresh_namespace(redis_url, "f")


@pytest.fixture
def boards() -> Iterator[Callable[..., Dashboard]]:
    yield from closed_after(serve_fleet, lambda board: board.stop())


@pytest.fixture
def nodes(redis_url: str, namespace: str) -> Iterator[Callable[..., list[Node]]]:
    """``nodes(n, **cluster_options)``: n spawned processes, each a started cluster node."""
    yield from node_processes(redis_url, namespace)


def test_two_processes_show_node_by_node_and_breaker_by_breaker(
    redis_url: str, namespace: str, boards: Any, nodes: Any
) -> None:
    board = boards(redis_url, namespace)
    first, second = nodes(2, quorum=2)  # a quorum of 2: one trip opens only that node
    ids = [first.ask("node_id"), second.ask("node_id")]
    soon(lambda: all(node_view(board, i) for i in ids), "both nodes listed")
    first.ask("trip")

    def payments() -> dict[str, str] | None:
        view = status(board)
        breaker = next((b for b in view["breakers"] if b["name"] == "payments"), None)
        states = {n["node"]: n["state"] for n in breaker["nodes"]} if breaker else {}
        return states if states == {ids[0]: "open", ids[1]: "closed"} else None

    soon(payments, "payments open on the first node only")
    view = status(board)
    assert view["breakers"][0]["counts"] == {"open": 1, "closed": 1}
    one = node_view(board, ids[0])
    assert one is not None
    assert one["pid"] == first.process.pid and one["omitted"] == 0
    assert one["breakers"][0]["requests"] >= 3 and one["breakers"][0]["failures"] >= 3
    texts = [e["text"] for e in view["timeline"]]
    assert f"closed \u2192 open on {ids[0]}" in texts
    # Once a second: within a few seconds, each node has sent several.
    received = view["redis"]["received"]
    soon(lambda: status(board)["redis"]["received"] >= received + 4, "more summaries")


def test_a_breaker_attached_later_already_open_is_on_the_timeline(
    redis_url: str, namespace: str, boards: Any
) -> None:
    board = boards(redis_url, namespace)
    with Cluster(redis_url, namespace=namespace, node_id="late") as cluster:
        soon(lambda: node_view(board, "late"), "the node listed, without breakers")
        breaker = CircuitBreaker("attached-later")
        breaker.force_open()
        cluster.attach(breaker)
        soon(lambda: any(e["name"] == "attached-later" and e["text"] == "open on late"
                               for e in status(board)["timeline"]), "its open on the timeline")


def test_a_remote_open_says_which_node_opened_it(
    redis_url: str, namespace: str, boards: Any, nodes: Any
) -> None:
    board = boards(redis_url, namespace)
    first, second = nodes(2)  # quorum 1: a trip opens the fleet
    ids = [first.ask("node_id"), second.ask("node_id")]
    first.ask("trip")

    def opened_by() -> str | None:
        view = node_view(board, ids[1])
        return view["breakers"][0]["opened_by"] if view else None

    assert soon(opened_by, "the second node's breaker opened by the first") == ids[0]


def test_a_managers_plugins_carry_their_recovery_flags(
    redis_url: str, namespace: str
) -> None:
    cluster = Cluster(redis_url, namespace=namespace, node_id="mgr")
    rm = RecoveryManager(
        StubPluginManager("p", "q"), RecordingAuditLogger(),
        RecoveryConfig(enable_health_checking=False, default_recovery_strategy="bad"),
        clock=FakeClock(), cluster=cluster,
    )
    rm.register_strategy("bad", failing_strategy())
    rm.register_plugin("p")
    rm.register_plugin("q")
    extra = CircuitBreaker("plain")
    cluster.attach(extra)
    client = redis.Redis.from_url(redis_url)
    pubsub = client.pubsub()
    pubsub.subscribe(channel(namespace))
    try:
        rm.start()
        rm.record_failure("p", FailureInfo("error"))  # strategy "bad" runs and fails
        rm.record_failure("q", FailureInfo("error", recoverable=False))  # marked failed
        assert rm.wait_idle(10)
        cluster.start()

        def latest() -> dict[str, Any] | None:
            message = pubsub.get_message(timeout=0.5)
            if message is None or message["type"] != "message":
                return None
            summary = decode_summary(message["data"], None)
            plugins = {b["name"]: b["plugin"] for b in summary["breakers"]}
            return plugins if plugins["p"] and plugins["p"]["last_action"] else None

        plugins = soon(latest, "a summary with p's last action")
        assert plugins["plain"] is None  # not a plugin
        assert plugins["p"]["last_action"] == "bad"
        assert plugins["p"]["last_action_success"] is False
        assert plugins["q"]["failed"] is True
        assert plugins["p"]["crash_loop"] is True  # the failing strategy ran three times
        for name, view in rm.get_recovery_status()["plugins"].items():
            for flag in ("failed", "crash_loop", "degraded"):
                assert plugins[name][flag] is view["recovery"][flag]
    finally:
        cluster.stop()
        rm.stop(timeout=5.0)
        pubsub.close()
        client.close()


def test_two_managers_sharing_an_outage_show_one_incident_on_the_fleet_page(
    redis_url: str, namespace: str, boards: Callable[..., Dashboard]
) -> None:
    """Each node's manager opens its own incident (its own id) for db and payments,
    which depends on it; the fleet page shows one, root db, open on 2 of 2 nodes."""
    from recovery.config import CircuitBreakerConfig

    trips_at_once = CircuitBreakerConfig(failure_threshold=1)
    managers: list[RecoveryManager] = []
    clusters: list[Cluster] = []
    board = boards(redis_url, namespace)
    try:
        for node_id in ("node-a", "node-b"):
            # A quorum of 2: each node's trips stay its own until both voted, so each
            # manager sees the outage first-hand (as each process of a fleet does).
            cluster = Cluster(redis_url, namespace=namespace, node_id=node_id, quorum=2)
            rm = RecoveryManager(
                StubPluginManager("payments"), RecordingAuditLogger(),
                RecoveryConfig(enable_health_checking=False), clock=FakeClock(),
                cluster=cluster)
            rm.register_dependency("db", breaker_config=trips_at_once)
            rm.register_plugin("payments", trips_at_once, depends_on=("db",))
            clusters.append(cluster)
            managers.append(rm)
            rm.start()
            cluster.start()
        for rm in managers:
            for name in ("db", "payments"):
                with pytest.raises(ConnectionError):
                    rm.execute_with_recovery(name, _db_down)
        local = {node_id: rm.incidents(active_only=True)
                 for node_id, rm in zip(("node-a", "node-b"), managers, strict=True)}
        assert all(len(found) == 1 for found in local.values()), local

        def one_incident() -> dict[str, Any] | None:
            shown = status(board).get("incidents") or []
            if len(shown) == 1 and len(shown[0]["local"]) == 2:
                return shown[0]  # type: ignore[no-any-return]
            return None

        shown = soon(one_incident, "one incident from both nodes")
        assert shown["root"] == "db" and shown["cause_known"] is True
        assert [(m["name"], m["open_on"]) for m in shown["members"]] == [
            ("db", 2), ("payments", 2)]
        assert (shown["nodes_affected"], shown["live_nodes"]) == (2, 2)
        assert {(item["node"], item["id"]) for item in shown["local"]} == {
            (node, found[0].id) for node, found in local.items()}
        breakers = {b["name"]: b["incident"] for b in node_view(board, "node-a")["breakers"]}
        assert breakers == {"db": local["node-a"][0].id, "payments": local["node-a"][0].id}
    finally:
        for cluster in clusters:
            cluster.stop()
        for rm in managers:
            rm.stop(timeout=5.0)


def _db_down() -> None:
    raise ConnectionError("db is down")


def test_forged_unsigned_and_malformed_summaries_are_dropped_and_counted(
    redis_url: str, namespace: str, boards: Any
) -> None:
    board = boards(redis_url, namespace, secret="right")
    cluster = Cluster(redis_url, namespace=namespace, node_id="honest", secret="right")
    cluster.attach(CircuitBreaker("payments"))
    client = redis.Redis.from_url(redis_url)
    forged_head = {**HEAD, "node": "forger"}
    forgeries = {
        "unsigned": encode_summary(forged_head, [entry("payments", "open")], None),
        "bad_signature": encode_summary(forged_head, [entry("payments", "open")], b"guess"),
        "malformed": _forge(b"[1]", hmac.new(b"right", b"[1]", "sha256").hexdigest().encode()),
        "foreign_version": b"R0 - {}",
        "oversized": b"R1 - " + b" " * MAX_SUMMARY_BYTES,
    }
    try:
        with cluster:
            soon(lambda: node_view(board, "honest"), "the honest node listed")
            for message in forgeries.values():
                client.publish(channel(namespace), message)
            expected = dict.fromkeys(forgeries, 1)
            soon(lambda: status(board)["redis"]["dropped"] == expected,
                       "each forgery dropped and counted")
            view = status(board)
            assert [n["id"] for n in view["nodes"]] == ["honest"]
            assert view["breakers"][0]["counts"] == {"closed": 1}
    finally:
        client.close()


def test_a_node_that_stops_publishing_fades_then_is_dropped(
    redis_url: str, namespace: str, boards: Any, nodes: Any
) -> None:
    board = boards(redis_url, namespace, fade_after=1.5, forget_after=3.0)
    stays, goes = nodes(2)
    ids = [stays.ask("node_id"), goes.ask("node_id")]
    soon(lambda: all(node_view(board, i) for i in ids), "both nodes listed")
    goes.process.kill()  # no goodbye: the process is just gone
    goes.process.join(10)

    def silent() -> bool:
        view = node_view(board, ids[1])
        return bool(view and view["silent"])

    soon(silent, "the killed node shown as silent")
    breaker = status(board)["breakers"][0]
    assert {n["node"]: n["silent"] for n in breaker["nodes"]} == {ids[0]: False, ids[1]: True}
    assert breaker["counts"] == {"closed": 1}  # a silent node's state is not counted
    soon(lambda: node_view(board, ids[1]) is None, "the killed node dropped")
    view = status(board)
    assert [n["id"] for n in view["nodes"]] == [ids[0]]
    assert not view["nodes"][0]["silent"]
    texts = [(e["name"], e["text"].split(" ")[0]) for e in view["timeline"]]
    assert (ids[1], "silent") in texts and (ids[1], "dropped") in texts


def test_redis_unreachable_is_shown_on_the_page_not_raised(
    redis_url: str, boards: Any
) -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    board = boards(f"redis://127.0.0.1:{port}/0", "nowhere")
    view = soon(lambda: (v := status(board))["redis"]["last_error"] and v,
                      "the connection error shown")
    assert view["redis"]["connected"] is False
    assert view["nodes"] == []


def test_serve_fleet_checks_its_arguments(redis_url: str) -> None:
    with pytest.raises(ValueError, match="url"):
        serve_fleet("http://x")
    with pytest.raises(TypeError, match="port"):
        serve_fleet("redis://x", port="80")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="forget_after"):
        serve_fleet("redis://x", fade_after=5, forget_after=5)
    with pytest.raises(ValueError, match="fade_after"):
        serve_fleet("redis://x", fade_after=0)


def test_past_max_nodes_new_nodes_are_dropped_and_counted(redis_url: str) -> None:
    from recovery.dashboard.fleet import FleetFeed
    from recovery.dashboard.hub import Hub

    feed = FleetFeed(redis_url, "unused", None, Hub(), max_nodes=2)  # not started
    for node, seq in (("a", 1), ("b", 1), ("c", 1), ("a", 2)):
        feed._receive(encode_summary({**HEAD, "node": node, "seq": seq}, [entry("x")], None))
    feed._tick()
    view = feed.snapshot()
    assert [n["id"] for n in view["nodes"]] == ["a", "b"]
    assert view["redis"]["dropped"] == {"too_many_nodes": 1}
    assert view["redis"]["received"] == 3  # a's second summary is still taken
    feed.stop(1.0)


def test_the_fleet_page_loads_the_shared_script_before_its_own(
    redis_url: str, namespace: str, boards: Any
) -> None:
    board = boards(redis_url, namespace)
    with urllib.request.urlopen(board.url, timeout=5) as response:
        page = response.read().decode()
    assert page.index('src="/common.js"') < page.index('src="/app.js"')
    with urllib.request.urlopen(board.url + "common.js", timeout=5) as response:
        assert response.headers["Content-Type"].startswith("text/javascript")
        script = response.read().decode()
    assert "RecoveryDashboard" in script and "innerHTML" not in script


def test_the_page_is_the_fleet_page_read_only_with_the_same_safety_headers(
    redis_url: str, namespace: str, boards: Any
) -> None:
    board = boards(redis_url, namespace)
    with urllib.request.urlopen(board.url, timeout=5) as response:
        page = response.read().decode()
        assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    assert "recovery fleet" in page and 'src="/app.js"' in page
    with urllib.request.urlopen(board.url + "app.js", timeout=5) as response:
        script = response.read().decode()
    assert "innerHTML" not in script and "insertAdjacentHTML" not in script
    request = urllib.request.Request(board.url + "control/reset", data=b"{}", method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=5)
    assert refused.value.code == 403
    assert board.address[0] == "127.0.0.1"


def test_the_command_serves_the_fleet_until_ctrl_c(redis_url: str, namespace: str) -> None:
    # PYTHONFAULTHANDLER: a process that outlives its bound dumps every thread's stack.
    env = {**os.environ, "FLEET_SECRET": "s3cret", "PYTHONFAULTHANDLER": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "recovery", "dashboard", "--cluster", redis_url,
         "--namespace", namespace, "--secret-env", "FLEET_SECRET"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        preexec_fn=hears_ctrl_c,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # the process prints the URL once it serves
        assert f"namespace {namespace!r}" in line, line
        url = line.rsplit(" ", 1)[1].strip()
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url + "status.json", timeout=5) as response:
            assert json.load(response)["namespace"] == namespace
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(BOUND)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)
            _, stderr = proc.communicate(timeout=10)
            pytest.fail(f"still running {BOUND:g} s after Ctrl-C:\n{stderr}")
        assert code == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


# The dashboard command, with SIGINT raised in one of its own threads once the main
# thread sleeps in its wait: how the kernel may deliver a Ctrl-C sent to the process.
CTRL_C_ON_ANOTHER_THREAD = """
import argparse, signal, sys, threading, time
from recovery.dashboard import cli

def waits_for_ctrl_c(frame):
    # Condition.wait in Event.wait, called from the command itself (cli.py)
    callers = [frame, frame and frame.f_back, frame and frame.f_back and frame.f_back.f_back]
    return None not in callers and callers[2].f_code.co_filename.endswith("cli.py") and all(
        f.f_code.co_name == "wait" for f in callers[:2])

def interrupt_once_the_main_thread_waits():
    main = threading.main_thread().ident
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not waits_for_ctrl_c(sys._current_frames().get(main)):
        time.sleep(0.01)
    signal.pthread_kill(threading.get_ident(), signal.SIGINT)

threading.Thread(target=interrupt_once_the_main_thread_waits, daemon=True).start()
parser = argparse.ArgumentParser()
cli.add_arguments(parser)
sys.exit(cli.run(parser.parse_args(sys.argv[1:])))
"""


def test_the_command_stops_on_a_ctrl_c_that_lands_on_another_thread() -> None:
    """A SIGINT handled by a thread other than the main one only flags the signal:
    the main thread must wake to raise KeyboardInterrupt (it once slept for ever)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", CTRL_C_ON_ANOTHER_THREAD, "--cluster", "redis://127.0.0.1:1/0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=hears_ctrl_c,
    )
    try:
        _, stderr = proc.communicate(timeout=BOUND)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail(f"the dashboard ignored a Ctrl-C for {BOUND:g} s")
    assert proc.returncode == 0, stderr
    assert "recovery dashboard: stopped" in stderr


def test_the_command_refuses_a_missing_secret_variable_in_one_line() -> None:
    env = {k: v for k, v in os.environ.items() if k != "NO_SUCH_SECRET_VAR"}
    done = subprocess.run(
        [sys.executable, "-m", "recovery", "dashboard", "--cluster", "redis://127.0.0.1:1/0",
         "--secret-env", "NO_SUCH_SECRET_VAR"],
        capture_output=True, text=True, env=env, timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "NO_SUCH_SECRET_VAR" in done.stderr


def fleet_view(connected: bool, last_error: str | None = None, received: int = 0,
               dropped: dict[str, int] | None = None, nodes: int = 0) -> dict[str, Any]:
    return {"redis": {"connected": connected, "last_error": last_error, "received": received,
                      "dropped": dropped or {}},
            "nodes": [{"id": f"n{i}"} for i in range(nodes)]}


def test_the_command_says_once_when_redis_is_out_of_reach_and_when_it_answers() -> None:
    from recovery.dashboard.cli import Watch

    out = io.StringIO()
    watch = Watch("shop", out)
    watch(fleet_view(False), 0.0)  # still connecting: nothing to say yet
    for now in (1.0, 1.5, 2.0):
        watch(fleet_view(False, "ConnectionError: Error 111 connecting"), now)
    watch(fleet_view(True, "ConnectionError: Error 111 connecting", nodes=1), 3.0)
    lines = out.getvalue().splitlines()
    assert lines == [
        "recovery dashboard: warning: cannot reach Redis (ConnectionError: Error 111 "
        "connecting); retrying, and no node can show until it answers",
        "recovery dashboard: Redis answers again",
    ]


@pytest.mark.parametrize(("dropped", "says"), [
    ({}, "no node has published in namespace 'shop' for 5s; it must be the namespace of "
         "the nodes' Cluster (Cluster(url, namespace=...)): pick it with --namespace NS"),
    ({"unsigned": 4}, "4 summaries arrived in namespace 'shop' but none was accepted "
                      "(unsigned 4); a secret must be the cluster's (--secret-env VAR)"),
])
def test_the_command_says_once_when_nobody_publishes_in_the_namespace(
    dropped: dict[str, int], says: str
) -> None:
    from recovery.dashboard.cli import QUIET_AFTER, Watch

    out = io.StringIO()
    watch = Watch("shop", out)
    watch(fleet_view(False), 0.0)
    watch(fleet_view(True), 10.0)  # the wait starts once Redis answers
    watch(fleet_view(True, dropped=dropped), 10.0 + QUIET_AFTER - 0.5)
    assert out.getvalue() == ""
    for now in (10.0 + QUIET_AFTER, 20.0, 30.0):
        watch(fleet_view(True, dropped=dropped), now)
    assert out.getvalue() == f"recovery dashboard: warning: {says}\n"
    watch(fleet_view(True, nodes=1), 40.0)  # a node at last: nothing more to say


def test_a_fleet_with_nodes_gets_no_warning() -> None:
    from recovery.dashboard.cli import Watch

    out = io.StringIO()
    watch = Watch("shop", out)
    for now in range(0, 30):
        watch(fleet_view(True, received=now, nodes=2), float(now))
    assert out.getvalue() == ""


def test_the_command_warns_in_one_line_when_redis_is_out_of_reach() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "recovery", "dashboard", "--cluster", "redis://127.0.0.1:1/0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=hears_ctrl_c,
    )
    try:
        assert proc.stderr is not None
        ready, _, _ = select.select([proc.stderr], [], [], BOUND)
        assert ready, "silent: the URL printed, and then nothing"
        line = proc.stderr.readline()
        assert line.startswith("recovery dashboard: warning: cannot reach Redis ("), line
        assert "retrying" in line
        proc.send_signal(signal.SIGINT)
        _, rest = proc.communicate(timeout=BOUND)
        assert rest == "recovery dashboard: stopped\n"  # said once, not once a retry
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_a_summary_signed_for_another_namespace_is_dropped_as_foreign(redis_url: str) -> None:
    from recovery.dashboard.fleet import FleetFeed
    from recovery.dashboard.hub import Hub

    feed = FleetFeed(redis_url, "prod", b"shared", Hub())  # not started
    feed._receive(encode_summary({**HEAD, "ns": "staging"}, [entry("x")], b"shared"))
    feed._receive(encode_summary({**HEAD, "ns": "prod", "node": "p"}, [entry("x")], b"shared"))
    feed._tick()
    view = feed.snapshot()
    assert [n["id"] for n in view["nodes"]] == ["p"]
    assert view["redis"]["dropped"] == {"foreign_namespace": 1}
    feed.stop(1.0)
