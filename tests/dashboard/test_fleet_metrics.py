"""The fleet dashboard's /metrics: every node's breakers in one scrape, labelled by node.

The exposition is parsed back with prometheus-client's own parser (and checked by
promtool when it is installed), so what is tested is what Prometheus would read.
The rendering is tested on a feed given summaries directly; one test scrapes a
real fleet of three spawned worker processes through Redis.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from recovery.cluster.summary import encode_summary
from recovery.status import PluginRecovery
from recovery.testing import FakeClock
from tests.dashboard.test_fleet import entry, incident, node_view, soon
from tests.helpers import closed_after, fresh_namespace, node_processes

try:
    from recovery.dashboard import serve_fleet
    from recovery.dashboard.fleet import FleetFeed
    from recovery.dashboard.fleet_metrics import renderer
    from recovery.dashboard.hub import Hub
    from recovery.prometheus import RecoveryCollector
except ImportError:  # without redis-py: the fixtures skip (or fail) with the reason
    pass

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> tuple[dict[str, Any], Samples]:
    families = {f.name: f for f in text_string_to_metric_families(text)}
    samples = {(s.name, frozenset(s.labels.items())): s.value
               for family in families.values() for s in family.samples}
    return families, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[name, frozenset(labels.items())]


@pytest.fixture
def feed(clock: FakeClock) -> Iterator[Any]:
    pytest.importorskip("redis")
    built = FleetFeed("redis://127.0.0.1:1/0", "metrics", None, Hub(), clock=clock,
                      fade_after=5.0, forget_after=60.0)  # never started nor dialled
    yield built
    built.stop(1.0)


def summary(node: str, entries: list[dict[str, Any]], seq: int = 1,
            incidents: list[dict[str, Any]] | None = None, **head: Any) -> bytes:
    return encode_summary({"node": node, "host": "h", "pid": 1, "time": float(seq),
                           "seq": seq, **head}, entries, None, incidents)


def promtool_check(text: str) -> None:
    """The exposition as Prometheus' own linter reads it (when promtool is installed)."""
    promtool = shutil.which("promtool")
    if promtool is not None:
        checked = subprocess.run([promtool, "check", "metrics"], input=text, text=True,
                                 capture_output=True, timeout=60, check=False)
        assert (checked.returncode, checked.stdout + checked.stderr) == (0, ""), checked


def counted(name: str, state: str = "closed", plugin: PluginRecovery | None = None,
            **counts: int) -> dict[str, Any]:
    built = entry(name, state, plugin)
    built.update(counts)
    return built


def test_every_node_s_breakers_are_exported_with_a_node_label(
    feed: Any, clock: FakeClock
) -> None:
    degraded = PluginRecovery(degraded=True)
    feed._receive(summary("w1", [counted("payments", requests=10, failures=2, rejections=1,
                                         slow=3)]))
    feed._receive(summary("w2", [counted("payments", "open", rejections=7),
                                 counted("search", plugin=degraded)]))
    feed._receive(summary("w2", [], seq=10**9))  # a forgery: dropped, and counted
    families, samples = parse(renderer(feed.nodes)()[0].decode())
    assert value(samples, "recovery_requests_total", node="w1", plugin="payments") == 10
    assert value(samples, "recovery_failures_total", node="w1", plugin="payments") == 2
    assert value(samples, "recovery_slow_calls_total", node="w1", plugin="payments") == 3
    assert value(samples, "recovery_rejections_total", node="w2", plugin="payments") == 7
    assert value(samples, "recovery_circuit_breaker_state",
                 node="w2", plugin="payments", state="open") == 1
    assert value(samples, "recovery_circuit_breaker_state",
                 node="w1", plugin="payments", state="open") == 0
    assert value(samples, "recovery_degraded", node="w2", plugin="search") == 1
    assert value(samples, "recovery_failed", node="w2", plugin="search") == 0
    assert ("recovery_degraded", frozenset({("node", "w1"), ("plugin", "payments")})) \
        not in samples  # a bare breaker has no plugin flags
    assert value(samples, "recovery_fleet_node_live", node="w1") == 1
    assert value(samples, "recovery_fleet_summaries_received_total") == 2
    assert value(samples, "recovery_fleet_summaries_dropped_total", reason="seq_jump") == 1
    assert value(samples, "recovery_fleet_redis_connected") == 0
    # The collector's names, types and help: dashboards and alerts read both alike.
    collector = {f.name: (f.type, f.documentation) for f in RecoveryCollector(None).describe()}
    for name, family in families.items():
        assert re.fullmatch(r"recovery_[a-z0-9_]+", name)
        if not name.startswith("recovery_fleet_"):
            assert (family.type, family.documentation) == collector[name], name
    clock.advance(6.0)  # past the fade: silent, last values kept until forgotten
    feed._tick()
    _, samples = parse(renderer(feed.nodes)()[0].decode())
    assert value(samples, "recovery_fleet_node_live", node="w1") == 0
    assert value(samples, "recovery_requests_total", node="w1", plugin="payments") == 10


def test_open_incidents_are_exported_by_node_and_once_for_the_fleet(
    feed: Any, clock: FakeClock
) -> None:
    outage = [incident("inc-7", "db", "payments", "orders")]  # the same id on every node
    feed._receive(summary("w1", [counted("db")], incidents=outage))
    feed._receive(summary("w2", [counted("payments")], incidents=[
        incident("inc-7", "db", "payments"), incident("inc-9", "mail", cause_known=False)]))
    feed._receive(summary("w3", [counted("search")]))
    text = renderer(feed.nodes)()[0].decode()
    families, samples = parse(text)
    # Each node's own, under the names (and help) of its own /metrics, with its label.
    assert [value(samples, "recovery_incidents_open", node=n) for n in ("w1", "w2", "w3")] \
        == [1, 2, 0]
    assert value(samples, "recovery_incident_members", node="w1", incident="inc-7",
                 root="db") == 3
    assert value(samples, "recovery_incident_members", node="w2", incident="inc-7",
                 root="db") == 2
    assert value(samples, "recovery_incident_members", node="w2", incident="inc-9",
                 root="mail") == 1
    collector = {f.name: (f.type, f.documentation) for f in RecoveryCollector(None).describe()}
    for name in ("recovery_incidents_open", "recovery_incident_members"):
        assert (families[name].type, families[name].documentation) == collector[name]
    # The fleet's: one outage, counted once, on 2 of the 3 nodes; mail on one.
    assert value(samples, "recovery_fleet_incidents_open") == 2
    assert value(samples, "recovery_fleet_incident_members", root="db") == 3
    assert value(samples, "recovery_fleet_incident_nodes", root="db") == 2
    assert value(samples, "recovery_fleet_incident_nodes", root="mail") == 1
    promtool_check(text)
    clock.advance(6.0)  # w2 falls silent: its incidents leave the fleet's count
    feed._receive(summary("w1", [counted("db")], seq=2, incidents=outage))
    feed._receive(summary("w3", [counted("search")], seq=2))
    feed._tick()
    _, samples = parse(renderer(feed.nodes)()[0].decode())
    assert value(samples, "recovery_fleet_incidents_open") == 1
    assert value(samples, "recovery_fleet_incident_nodes", root="db") == 1
    assert value(samples, "recovery_incidents_open", node="w2") == 2  # its last word


def test_hostile_names_cannot_break_the_scrape(feed: Any) -> None:
    feed._receive(summary("node-\udcff", [counted("pay-\udcfe", requests=1),
                                          counted("pay-\udcfe", requests=2),  # twice
                                          counted('q"}\n#', requests=3)],
                          incidents=[incident('inc-"}\n#', "pay-\udcfe")]))
    text = renderer(feed.nodes)()[0].decode("utf-8")
    _, samples = parse(text)
    assert value(samples, "recovery_incident_members", node="node-\\udcff",
                 incident='inc-"}\n#', root="pay-\\udcfe") == 1
    assert value(samples, "recovery_fleet_incident_nodes", root="pay-\\udcfe") == 1
    assert value(samples, "recovery_requests_total",
                 node="node-\\udcff", plugin="pay-\\udcfe") == 1  # one series, the first
    assert value(samples, "recovery_requests_total", node="node-\\udcff", plugin='q"}\n#') == 3


def test_a_node_that_left_breakers_out_says_how_many(feed: Any) -> None:
    many = [counted(f"service-{i:04d}-" + "x" * 80) for i in range(500)]
    feed._receive(summary("big", many))
    _, samples = parse(renderer(feed.nodes)()[0].decode())
    exported = [key for key in samples if key[0] == "recovery_requests_total"]
    assert value(samples, "recovery_fleet_breakers_omitted", node="big") == 500 - len(exported)
    assert 0 < len(exported) < 500


# -- a real fleet ----------------------------------------------------------------------------


@pytest.fixture
def namespace(redis_url: str) -> Iterator[str]:
    yield from fresh_namespace(redis_url, "m")


@pytest.fixture
def nodes(redis_url: str, namespace: str) -> Iterator[Any]:
    yield from node_processes(redis_url, namespace)


@pytest.fixture
def boards() -> Iterator[Any]:
    yield from closed_after(serve_fleet, lambda board: board.stop())


def test_one_scrape_target_for_a_fleet_of_worker_processes(
    redis_url: str, namespace: str, nodes: Any, boards: Any,
) -> None:
    board = boards(redis_url, namespace)
    workers = nodes(3, quorum=3)  # a quorum of 3: one trip opens one worker only
    ids = [worker.ask("node_id") for worker in workers]
    workers[0].ask("trip")

    def tripped_one_shown() -> bool:
        view = node_view(board, ids[0])
        return bool(view and view["breakers"][0]["state"] == "open"
                    and all(node_view(board, i) for i in ids))

    soon(tripped_one_shown, "all three workers listed, the first one open")
    with urllib.request.urlopen(board.url + "metrics", timeout=5) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    _, samples = parse(text)
    states = {node: value(samples, "recovery_circuit_breaker_state", node=node,
                          plugin="payments", state="open") for node in ids}
    assert states == {ids[0]: 1, ids[1]: 0, ids[2]: 0}
    assert value(samples, "recovery_failures_total", node=ids[0], plugin="payments") >= 3
    assert value(samples, "recovery_fleet_redis_connected") == 1
    assert value(samples, "recovery_fleet_summaries_received_total") >= 3
    promtool_check(text)


def test_one_outage_across_two_services_is_one_fleet_incident_in_the_scrape(
    redis_url: str, namespace: str, boards: Any,
) -> None:
    """Service A owns db; service B's payments depends on it. Their managers share
    their onsets, so each node's incident is the same one (one id): the scrape says so
    by node, and counts it once for the fleet, on 2 nodes."""
    from tests.incidents.test_fleet_incidents import TRIPS_AT_ONCE, Outage, Service, trip

    board = boards(redis_url, namespace)
    a = Service(redis_url, namespace, "node-a", (), None)
    a.rm.register_dependency("db", health_check=Outage().healthy, breaker_config=TRIPS_AT_ONCE)
    b = Service(redis_url, namespace, "node-b", ("payments",), None)
    b.rm.register_plugin("payments", TRIPS_AT_ONCE, depends_on=("db",))
    try:
        a.start()
        b.start()
        trip(a, "db")
        soon(b.open_incident, "db's onset on node-b")
        trip(b, "payments")

        def scraped() -> str | None:
            with urllib.request.urlopen(board.url + "metrics", timeout=5) as response:
                text: str = response.read().decode()
            samples = parse(text)[1]
            key = ("recovery_fleet_incident_nodes", frozenset({("root", "db")}))
            members = [v for (name, _), v in samples.items()
                       if name == "recovery_incident_members"]
            return text if samples.get(key) == 2 and members == [2, 2] else None

        text = soon(scraped, "one fleet incident on both nodes, with both members")
        _, samples = parse(text)
        assert value(samples, "recovery_fleet_incidents_open") == 1
        assert value(samples, "recovery_fleet_incident_members", root="db") == 2
        (incident,) = a.rm.incidents(active_only=True)
        for node in ("node-a", "node-b"):
            assert value(samples, "recovery_incidents_open", node=node) == 1
            assert value(samples, "recovery_incident_members", node=node,
                         incident=incident.id, root="db") == 2
        promtool_check(text)
    finally:
        a.stop()
        b.stop()
