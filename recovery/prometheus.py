"""Prometheus metrics of a recovery manager and of every breaker (``prometheus`` extra).

::

    from prometheus_client import start_http_server
    from prometheus_client.core import REGISTRY
    from recovery.prometheus import RecoveryCollector

    REGISTRY.register(RecoveryCollector(rm))   # or RecoveryCollector() without a manager
    start_http_server(9100)

Bare breakers: with ``breakers=True`` (the default) the collector also exports
every other live breaker of the process (:func:`recovery.breakers`), with its
breaker metrics only (state, counters, window failure ratio) and its registry key
as the ``plugin`` label. A manager's plugin breakers are exported once, as
plugins; a bare breaker whose key is a plugin's name gets the next free
``name#N``, as do later breakers of one name, so every breaker is visible and no
two series collide.

:class:`RecoveryCollector` is a custom collector: every scrape reads
``rm.status()`` once, so the numbers of one scrape are consistent
and nothing is counted twice or on the call path. Plugins registered after the
collector show up at the next scrape. Metric names follow the Prometheus naming
rules: a ``recovery_`` prefix, ``_total`` on counters, base units (seconds), one
label ``plugin`` (plus ``state``, ``action``, ``result`` where said):

=============================================  ======  ====================================
metric                                         type    value
=============================================  ======  ====================================
recovery_circuit_breaker_state{state}          gauge   1 for the breaker's current state,
                                                       0 for the other three ("closed",
                                                       "open", "half_open", "repairing"):
                                                       ``max by (plugin)`` is never lost,
                                                       and a state is a plain selector
recovery_requests_total                        counter calls the breaker let through
recovery_successes_total                       counter of those, the ones that succeeded
recovery_failures_total                        counter of those, the ones that failed
recovery_slow_calls_total                      counter calls at least slow_call_duration
recovery_rejections_total                      counter calls the breaker turned away
recovery_circuit_open_seconds_total            counter time spent open or repairing
recovery_window_failure_ratio                  gauge   failures/outcomes in the window
recovery_call_duration_seconds                 histo-  call durations (``_bucket`` with
                                               gram    ``le``, ``_sum``, ``_count``): only
                                                       breakers with record_latency=True
recovery_attempts_total{action,result}         counter strategy runs; result is
                                                       "success" or "failure"
recovery_episodes_total{outcome}               counter finished episodes: "recovered",
                                                       "held", "unverified",
                                                       "exhausted", "interrupted"
recovery_in_progress                           gauge   1 while a recovery episode runs
recovery_degraded                              gauge   1 while the fallback is served
recovery_fallbacks_served_total                counter calls the plugin's fallback answered
                                                       (while degraded, or for a call the
                                                       breaker rejected: that call counts
                                                       in both)
recovery_failed                                gauge   1 while out of service (in a crash
                                                       loop, or failed until reset)
recovery_crash_loop                            gauge   1 while in a crash loop (retried
                                                       after a growing delay)
recovery_health_check_healthy                  gauge   last health check: 1 healthy,
                                                       0 not (absent before the first)
recovery_health_check_consecutive_failures     gauge   failed checks in a row
recovery_health_check_stuck                    gauge   1 while the plugin's check hangs
recovery_early_warning{kind}                   gauge   1 while an early warning of that
                                                       kind ("failure_rate", "latency")
                                                       is up, 0 if not: only with
                                                       RecoveryConfig(early_warning=True)
recovery_early_warnings_total{kind}            counter early warnings raised (so one that
                                                       came and went between two scrapes
                                                       still counts)
recovery_stuck_health_check_threads            gauge   abandoned check threads still alive
recovery_stuck_strategies                      gauge   strategy runs abandoned, still alive
recovery_manager_running                       gauge   1 between start() and stop()
recovery_cluster_connected                     gauge   1 while the manager's cluster is
                                                       connected to Redis (with a cluster)
recovery_cluster_events_total{direction,kind}  counter cluster events "published" or
                                                       "received", of kind "open"/"close"
recovery_cluster_events_dropped_total          counter messages refused (malformed,
                                                       foreign, oversized, unsigned, badly
                                                       signed) or handovers lost to a full
                                                       queue
recovery_incidents_open                        gauge   open incidents (recovery.incidents)
recovery_incident_members{incident,root}       gauge   members of each open incident
recovery_incident_held                         gauge   1 while the plugin is held by its
                                                       incident (its root is repaired)
=============================================  ======  ====================================

Counters restart from zero with the process, as Prometheus expects of counters.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, cast

try:
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
        Metric,
    )
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "recovery.prometheus needs prometheus-client, which the 'prometheus' extra installs: "
        "pip install 'recovery[prometheus]'"
    ) from exc


from recovery import _registry, _validate
from recovery._labels import label as _label
from recovery.breaker import BreakerMixin, CircuitBreakerMetrics, cumulative_buckets
from recovery.state import CircuitBreakerState
from recovery.status import ClusterStatus, PluginStatus, StatusSource

__all__ = ["RecoveryCollector"]

# The families every per-series helper adds to; the one histogram is cast where it is used.
_Family = CounterMetricFamily | GaugeMetricFamily

_PLUGIN = ("plugin",)

# name, help, type, labels. Counter names carry ``_total`` here; prometheus-client
# keeps it on the samples and drops it from the family name, as the format wants.
# Public: the fleet dashboard's /metrics names and documents its families from this table.
FAMILIES: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("recovery_circuit_breaker_state",
     "Circuit breaker state: 1 for the current state, 0 for the others.",
     "gauge", ("plugin", "state")),
    ("recovery_requests_total", "Calls the circuit breaker let through.", "counter", _PLUGIN),
    ("recovery_successes_total", "Calls through the breaker that succeeded.", "counter",
     _PLUGIN),
    ("recovery_failures_total", "Calls through the breaker that failed.", "counter", _PLUGIN),
    ("recovery_slow_calls_total", "Calls that took at least slow_call_duration.", "counter",
     _PLUGIN),
    ("recovery_rejections_total", "Calls the circuit breaker rejected.", "counter", _PLUGIN),
    ("recovery_circuit_open_seconds_total", "Seconds the breaker spent open or repairing.",
     "counter", _PLUGIN),
    ("recovery_window_failure_ratio",
     "Failures over outcomes in the breaker's sliding window.", "gauge", _PLUGIN),
    ("recovery_call_duration_seconds",
     "Duration of the calls through the breaker (breakers with record_latency=True).",
     "histogram", _PLUGIN),
    ("recovery_attempts_total", "Recovery strategy runs, by strategy and result.", "counter",
     ("plugin", "action", "result")),
    ("recovery_episodes_total", "Finished recovery episodes, by outcome.", "counter",
     ("plugin", "outcome")),
    ("recovery_in_progress", "1 while a recovery episode of the plugin runs.", "gauge",
     _PLUGIN),
    ("recovery_degraded", "1 while the plugin is degraded and its fallback is served.",
     "gauge", _PLUGIN),
    ("recovery_fallbacks_served_total", "Calls the plugin's fallback answered.", "counter",
     _PLUGIN),
    ("recovery_failed",
     "1 while the plugin is out of service (crash loop, or failed until reset_plugin()).",
     "gauge", _PLUGIN),
    ("recovery_crash_loop",
     "1 while the plugin is in a crash loop: held open, retried after a growing delay.",
     "gauge", _PLUGIN),
    ("recovery_health_check_healthy", "Result of the last health check: 1 healthy, 0 not.",
     "gauge", _PLUGIN),
    ("recovery_health_check_consecutive_failures", "Failed health checks in a row.", "gauge",
     _PLUGIN),
    ("recovery_health_check_stuck", "1 while the plugin's health check hangs.", "gauge",
     _PLUGIN),
    ("recovery_early_warning",
     "1 while an early warning of the kind is up: the breaker is heading for a trip.",
     "gauge", ("plugin", "kind")),
    ("recovery_early_warnings_total", "Early warnings raised, by kind.", "counter",
     ("plugin", "kind")),
    ("recovery_stuck_health_check_threads",
     "Abandoned health-check threads (hung checks) still running.", "gauge", ()),
    ("recovery_stuck_strategies", "Abandoned recovery strategy runs still running.", "gauge",
     ()),
    ("recovery_manager_running", "1 between start() and stop() of the recovery manager.",
     "gauge", ()),
    ("recovery_cluster_connected", "1 while the cluster is connected to Redis.", "gauge", ()),
    ("recovery_cluster_events_total", "Cluster events published or received, by kind.",
     "counter", ("direction", "kind")),
    ("recovery_cluster_events_dropped_total",
     "Cluster messages refused or local events lost to a full queue.", "counter", ()),
    ("recovery_incidents_open", "Open incidents (one cause, grouped trips).", "gauge", ()),
    ("recovery_incident_members", "Members of each open incident.", "gauge",
     ("incident", "root")),
    ("recovery_incident_held",
     "1 while the plugin is held by its incident: not repaired while its root is.", "gauge",
     _PLUGIN),
)

def _families() -> dict[str, _Family]:
    families: dict[str, _Family] = {}
    kinds: dict[str, Callable[..., Any]] = {
        "counter": CounterMetricFamily, "gauge": GaugeMetricFamily,
        "histogram": HistogramMetricFamily,
    }
    for name, documentation, kind, labels in FAMILIES:
        families[name] = kinds[kind](name, documentation, labels=labels)
    return families


class RecoveryCollector:
    """Exposes a :class:`~recovery.RecoveryManager`'s breakers, recoveries and health checks,
    and (``breakers=True``) every other live breaker of the process.

    Register it once per registry (``registry.register(RecoveryCollector(rm))``);
    :meth:`describe` lets the registry refuse a second collector with the same names,
    which is also what keeps a breaker from being exported twice. ``rm=None`` exports
    the breakers alone; ``breakers=False`` the manager's plugins alone.
    """

    def __init__(self, rm: StatusSource | None = None, breakers: bool = True) -> None:
        if rm is not None and not isinstance(rm, StatusSource):
            raise TypeError(
                f"rm must be a RecoveryManager (status() and breaker(name)) or None, got {rm!r}")
        _validate.check(_validate.boolean, "breakers", breakers)
        if rm is None and not breakers:
            raise ValueError("rm=None with breakers=False: nothing to collect")
        self._rm = rm
        self._breakers = breakers

    def describe(self) -> Iterator[Metric]:
        """The metric families, without samples (what a registry checks for clashes)."""
        yield from _families().values()

    def collect(self) -> Iterator[Metric]:
        families = _families()
        plugins: list[str] = []
        cluster = None
        if self._rm is not None:
            status = self._rm.status()
            plugins = list(status.plugins)
            for plugin in status.plugins.values():
                _add_plugin(families, plugin)
            families["recovery_stuck_health_check_threads"].add_metric(
                [], status.stuck_health_checks
            )
            families["recovery_stuck_strategies"].add_metric([], len(status.stuck_strategies))
            families["recovery_manager_running"].add_metric([], float(status.running))
            families["recovery_incidents_open"].add_metric([], len(status.incidents))
            for incident in status.incidents:
                families["recovery_incident_members"].add_metric(
                    [incident["id"], _label(incident["root"])], len(incident["members"]))
            cluster = status.cluster
        if self._breakers:
            _add_bare_breakers(families, self._rm, plugins)
        if cluster is not None:
            _add_cluster(families, cluster)
        else:  # no cluster, no cluster metrics (rather than empty families)
            for name in _CLUSTER_FAMILIES:
                del families[name]
        yield from families.values()


_CLUSTER_FAMILIES = (
    "recovery_cluster_connected", "recovery_cluster_events_total",
    "recovery_cluster_events_dropped_total",
)


def _add_cluster(families: dict[str, _Family], cluster: ClusterStatus) -> None:
    """From the cluster's own view (``Cluster.status()``)."""
    families["recovery_cluster_connected"].add_metric([], float(cluster["connected"]))
    for direction, kinds in cluster["events"].items():
        for kind, count in kinds.items():
            families["recovery_cluster_events_total"].add_metric([direction, kind], count)
    families["recovery_cluster_events_dropped_total"].add_metric([], cluster["events_dropped"])


def _add_plugin(families: dict[str, _Family], plugin: PluginStatus) -> None:
    name, recovery, health = _label(plugin.name), plugin.recovery, plugin.health_check
    _add_breaker(families, name, plugin.circuit_breaker)
    for action, counts in recovery.actions.items():
        families["recovery_attempts_total"].add_metric([name, action, "success"], counts.success)
        families["recovery_attempts_total"].add_metric([name, action, "failure"], counts.failure)
    for outcome, count in recovery.episodes.to_dict().items():
        families["recovery_episodes_total"].add_metric([name, outcome], count)
    families["recovery_in_progress"].add_metric([name], float(recovery.in_progress))
    families["recovery_degraded"].add_metric([name], float(recovery.degraded))
    families["recovery_fallbacks_served_total"].add_metric([name], recovery.fallbacks_served)
    families["recovery_failed"].add_metric([name], float(recovery.failed))
    families["recovery_crash_loop"].add_metric([name], float(recovery.crash_loop))
    families["recovery_incident_held"].add_metric([name], float(plugin.held_until is not None))
    if health.enabled:
        if health.last_result is not None:
            families["recovery_health_check_healthy"].add_metric(
                [name], float(health.last_result.healthy)
            )
        families["recovery_health_check_consecutive_failures"].add_metric(
            [name], health.consecutive_fails
        )
        families["recovery_health_check_stuck"].add_metric([name], float(health.stuck))
    if plugin.warning is not None:
        for kind, warning in plugin.warning.kinds().items():
            families["recovery_early_warning"].add_metric([name, kind], float(warning.active))
            families["recovery_early_warnings_total"].add_metric([name, kind], warning.raised)


# -- bare breakers: every live breaker the manager does not own --------------------------


def _add_bare_breakers(
    families: dict[str, _Family], rm: StatusSource | None, plugins: list[str]
) -> None:
    """Add the registry's breakers that are not ``rm``'s plugins (those are already in)."""
    owned: list[BreakerMixin] = []
    if rm is not None:
        owned = [rm.breaker(plugin) for plugin in plugins]
    for key, breaker in _registry.unowned(plugins, owned):
        _add_breaker(families, _label(key), breaker.metrics())


def _add_breaker(families: dict[str, _Family], label: str, metrics: CircuitBreakerMetrics
                 ) -> None:
    """A breaker's own metrics."""
    for state in CircuitBreakerState:
        families["recovery_circuit_breaker_state"].add_metric(
            [label, state.value], float(metrics.state is state)
        )
    families["recovery_requests_total"].add_metric([label], metrics.total_requests)
    families["recovery_successes_total"].add_metric([label], metrics.total_successes)
    families["recovery_failures_total"].add_metric([label], metrics.total_failures)
    families["recovery_slow_calls_total"].add_metric([label], metrics.total_slow_calls)
    families["recovery_rejections_total"].add_metric([label], metrics.total_rejections)
    families["recovery_circuit_open_seconds_total"].add_metric(
        [label], metrics.circuit_open_time
    )
    families["recovery_window_failure_ratio"].add_metric([label], metrics.window_failure_rate)
    latency = metrics.latency
    if latency is not None:
        histogram = cast(HistogramMetricFamily, families["recovery_call_duration_seconds"])
        histogram.add_metric([label], cumulative_buckets(latency), latency.sum)
