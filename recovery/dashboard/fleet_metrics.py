"""``/metrics`` of the fleet page: every node's breakers in one exposition, by node.

A fleet of worker processes (gunicorn, uWSGI, Celery) is one scrape target this
way: the fleet dashboard already receives each node's summary once a second,
and this renders the latest of each as Prometheus metrics, with the same names
and help as :class:`recovery.prometheus.RecoveryCollector` plus a ``node``
label, so the Grafana dashboard and the alerts in ``contrib/`` read them alike.

A summary carries a breaker's state, its request, failure, rejection and slow
call counts, its window failure ratio, and a plugin's failed, crash-loop and
degraded flags, and its open incidents: those are exported. Each node's incidents
come under the collector's names (``recovery_incidents_open``,
``recovery_incident_members``) with a ``node`` label; the fleet's, each outage
counted once however many nodes it reached (as the fleet page shows them), as
``recovery_fleet_incidents_open`` and, by root, ``recovery_fleet_incident_members``
and ``recovery_fleet_incident_nodes``. The rest of the collector's metrics
(recovery attempts, episodes, health checks, latency, fallbacks served) stay in
each process's own ``/metrics``. A node with more breakers than fit one summary
leaves some out (trouble first); ``recovery_fleet_breakers_omitted`` says how
many. Counters are each process's totals: a restarted node starts again from
zero, as Prometheus expects of counters. A node shown as silent keeps its last
values (with ``recovery_fleet_node_live`` 0) until the page forgets it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from recovery._labels import label
from recovery.cluster.summary import STATES
from recovery.dashboard.fleet import by_incident
from recovery.prometheus import FAMILIES

_Family = CounterMetricFamily | GaugeMetricFamily
_BY_NODE = ("node", "plugin")
_HELP = {name: (documentation, kind) for name, documentation, kind, _ in FAMILIES}

# The collector's metrics a summary carries: name -> the summary entry's field.
_COUNTS = {
    "recovery_requests_total": "requests",
    "recovery_failures_total": "failures",
    "recovery_rejections_total": "rejections",
    "recovery_slow_calls_total": "slow",
}
_FLAGS = {"recovery_degraded": "degraded", "recovery_failed": "failed",
          "recovery_crash_loop": "crash_loop"}

Nodes = list[tuple[str, bool, dict[str, Any]]]  # (node id, silent, latest summary)


class FleetCollector:
    """Reads ``source()`` (the fleet feed's nodes and counts) at every scrape."""

    def __init__(self, source: Callable[[], tuple[Nodes, dict[str, Any]]]) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        nodes, redis = self._source()
        families = _families()
        for node_id, silent, summary in nodes:
            node = label(node_id)
            families["recovery_fleet_node_live"].add_metric([node], float(not silent))
            families["recovery_fleet_breakers_omitted"].add_metric([node], summary["omitted"])
            _add_incidents(families, node, summary)
            seen: set[str] = set()
            for entry in summary["breakers"]:
                name = label(entry["name"])
                if name in seen:  # one series each, whatever a summary says
                    continue
                seen.add(name)
                _add_breaker(families, [node, name], entry)
        _add_fleet_incidents(families, nodes)
        families["recovery_fleet_redis_connected"].add_metric([], float(redis["connected"]))
        families["recovery_fleet_summaries_received_total"].add_metric([], redis["received"])
        for reason, count in sorted(redis["dropped"].items()):
            families["recovery_fleet_summaries_dropped_total"].add_metric([reason], count)
        yield from families.values()


def _families() -> dict[str, _Family]:
    families: dict[str, _Family] = {}

    def add(name: str, kind: str, documentation: str, labels: tuple[str, ...]) -> None:
        family = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
        families[name] = family(name, documentation, labels=labels)

    add("recovery_circuit_breaker_state", "gauge",
        _HELP["recovery_circuit_breaker_state"][0], (*_BY_NODE, "state"))
    for name in (*_COUNTS, "recovery_window_failure_ratio", *_FLAGS):
        documentation, kind = _HELP[name]
        add(name, kind, documentation, _BY_NODE)
    for name, labels in (("recovery_incidents_open", ("node",)),
                         ("recovery_incident_members", ("node", "incident", "root"))):
        documentation, kind = _HELP[name]
        add(name, kind, documentation, labels)
    add("recovery_fleet_incidents_open", "gauge",
        "Open incidents across the live nodes, each counted once however many nodes it "
        "reached.", ())
    add("recovery_fleet_incident_members", "gauge",
        "Members of each open fleet incident (names, across its nodes).", ("root",))
    add("recovery_fleet_incident_nodes", "gauge",
        "Live nodes on which each open fleet incident is open.", ("root",))
    add("recovery_fleet_node_live", "gauge",
        "1 while the node publishes its summary, 0 once it is silent (until forgotten).",
        ("node",))
    add("recovery_fleet_breakers_omitted", "gauge",
        "Breakers of the node left out of its summary (size bound; trouble is sent first).",
        ("node",))
    add("recovery_fleet_redis_connected", "gauge",
        "1 while the fleet dashboard is connected to the cluster's Redis.", ())
    add("recovery_fleet_summaries_received_total", "counter",
        "Node summaries accepted by the fleet dashboard.", ())
    add("recovery_fleet_summaries_dropped_total", "counter",
        "Node summaries dropped by the fleet dashboard, by reason.", ("reason",))
    return families


def _add_breaker(families: dict[str, _Family], labels: list[str], entry: dict[str, Any]
                 ) -> None:
    for state in STATES:
        families["recovery_circuit_breaker_state"].add_metric(
            [*labels, state], float(entry["state"] == state))
    for name, field in _COUNTS.items():
        families[name].add_metric(labels, entry[field])
    families["recovery_window_failure_ratio"].add_metric(labels, entry["window_failure_rate"])
    plugin = entry["plugin"]
    if plugin is not None:
        for name, flag in _FLAGS.items():
            families[name].add_metric(labels, float(plugin[flag]))


def _add_incidents(families: dict[str, _Family], node: str, summary: dict[str, Any]) -> None:
    """The node's own incidents, as its own ``/metrics`` says them, with its label."""
    families["recovery_incidents_open"].add_metric([node], summary["incidents_total"])
    seen: set[str] = set()
    for incident in summary["incidents"]:
        key = label(incident["id"])
        if key not in seen:  # one series each, whatever a summary says
            seen.add(key)
            families["recovery_incident_members"].add_metric(
                [node, key, label(incident["root"])], incident["members_total"])


def _add_fleet_incidents(families: dict[str, _Family], nodes: Nodes) -> None:
    """The fleet's incidents, as the fleet page groups them (live nodes only)."""
    shown = by_incident([{"id": node_id, "silent": silent, "incidents": summary["incidents"]}
                         for node_id, silent, summary in nodes])
    families["recovery_fleet_incidents_open"].add_metric([], len(shown))
    for incident in shown:
        root = [label(incident["root"])]
        families["recovery_fleet_incident_members"].add_metric(root, len(incident["members"]))
        families["recovery_fleet_incident_nodes"].add_metric(root, incident["nodes_affected"])


def renderer(source: Callable[[], tuple[Nodes, dict[str, Any]]]
             ) -> Callable[[], tuple[bytes, str]]:
    """What the server calls for ``/metrics``: the exposition and its content type."""
    registry = CollectorRegistry()
    registry.register(FleetCollector(source))

    def render() -> tuple[bytes, str]:
        return generate_latest(registry), CONTENT_TYPE_LATEST

    return render
