"""Prometheus metrics of a recovery manager (needs the ``prometheus`` extra).

::

    from prometheus_client import start_http_server
    from prometheus_client.core import REGISTRY
    from recovery.prometheus import RecoveryCollector

    REGISTRY.register(RecoveryCollector(rm))
    start_http_server(9100)

:class:`RecoveryCollector` is a custom collector: every scrape reads
``rm.get_recovery_status()`` once, so the numbers of one scrape are consistent
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
recovery_attempts_total{action,result}         counter strategy runs; result is
                                                       "success" or "failure"
recovery_in_progress                           gauge   1 while a recovery episode runs
recovery_degraded                              gauge   1 while the fallback is served
recovery_failed                                gauge   1 once marked failed (until reset)
recovery_health_check_healthy                  gauge   last health check: 1 healthy,
                                                       0 not (absent before the first)
recovery_health_check_consecutive_failures     gauge   failed checks in a row
recovery_health_check_stuck                    gauge   1 while the plugin's check hangs
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
=============================================  ======  ====================================

Counters restart from zero with the process, as Prometheus expects of counters.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

try:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "recovery.prometheus needs prometheus-client, which the 'prometheus' extra installs: "
        "pip install 'recovery[prometheus]'"
    ) from exc

from recovery.manager import RecoveryManager
from recovery.state import CircuitBreakerState

__all__ = ["RecoveryCollector"]

_Family = CounterMetricFamily | GaugeMetricFamily

_PLUGIN = ("plugin",)

# name, help, type, labels. Counter names carry ``_total`` here; prometheus-client
# keeps it on the samples and drops it from the family name, as the format wants.
_FAMILIES: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
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
    ("recovery_attempts_total", "Recovery strategy runs, by strategy and result.", "counter",
     ("plugin", "action", "result")),
    ("recovery_in_progress", "1 while a recovery episode of the plugin runs.", "gauge",
     _PLUGIN),
    ("recovery_degraded", "1 while the plugin is degraded and its fallback is served.",
     "gauge", _PLUGIN),
    ("recovery_failed", "1 once the plugin is marked failed, until reset_plugin().", "gauge",
     _PLUGIN),
    ("recovery_health_check_healthy", "Result of the last health check: 1 healthy, 0 not.",
     "gauge", _PLUGIN),
    ("recovery_health_check_consecutive_failures", "Failed health checks in a row.", "gauge",
     _PLUGIN),
    ("recovery_health_check_stuck", "1 while the plugin's health check hangs.", "gauge",
     _PLUGIN),
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
)

_COUNTERS = (
    ("recovery_requests_total", "total_requests"),
    ("recovery_successes_total", "total_successes"),
    ("recovery_failures_total", "total_failures"),
    ("recovery_slow_calls_total", "total_slow_calls"),
    ("recovery_rejections_total", "total_rejections"),
    ("recovery_circuit_open_seconds_total", "circuit_open_time"),
)
_FLAGS = (
    ("recovery_in_progress", "in_progress"),
    ("recovery_degraded", "degraded"),
    ("recovery_failed", "failed"),
)


def _families() -> dict[str, _Family]:
    families: dict[str, _Family] = {}
    for name, documentation, kind, labels in _FAMILIES:
        family_type = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
        families[name] = family_type(name, documentation, labels=labels)
    return families


class RecoveryCollector:
    """Exposes a :class:`~recovery.RecoveryManager`'s breakers, recoveries and health checks.

    Register it once per registry (``registry.register(RecoveryCollector(rm))``);
    :meth:`describe` lets the registry refuse a second collector with the same names.
    """

    def __init__(self, rm: RecoveryManager) -> None:
        if not callable(getattr(rm, "get_recovery_status", None)):
            raise TypeError(f"rm must be a RecoveryManager, got {rm!r}")
        self._rm = rm

    def describe(self) -> Iterator[Metric]:
        """The metric families, without samples (what a registry checks for clashes)."""
        yield from _families().values()

    def collect(self) -> Iterator[Metric]:
        status = self._rm.get_recovery_status()
        families = _families()
        for plugin, view in status["plugins"].items():
            _add_plugin(families, plugin, view)
        families["recovery_stuck_health_check_threads"].add_metric(
            [], status["stuck_health_checks"]
        )
        families["recovery_stuck_strategies"].add_metric([], len(status["stuck_strategies"]))
        families["recovery_manager_running"].add_metric([], float(status["running"]))
        cluster = status.get("cluster")
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


def _add_cluster(families: dict[str, _Family], cluster: dict[str, Any]) -> None:
    families["recovery_cluster_connected"].add_metric([], float(cluster["connected"]))
    for direction, kinds in cluster["events"].items():
        for kind, count in kinds.items():
            families["recovery_cluster_events_total"].add_metric([direction, kind], count)
    families["recovery_cluster_events_dropped_total"].add_metric([], cluster["events_dropped"])


def _add_plugin(families: dict[str, _Family], plugin: str, view: dict[str, Any]) -> None:
    breaker, recovery, health = view["circuit_breaker"], view["recovery"], view["health_check"]
    for state in CircuitBreakerState:
        families["recovery_circuit_breaker_state"].add_metric(
            [plugin, state.value], float(breaker["state"] == state.value)
        )
    for name, key in _COUNTERS:
        families[name].add_metric([plugin], breaker[key])
    families["recovery_window_failure_ratio"].add_metric([plugin], breaker["window_failure_rate"])
    for action, results in sorted(recovery.get("actions", {}).items()):
        for result in ("success", "failure"):
            families["recovery_attempts_total"].add_metric(
                [plugin, action, result], results.get(result, 0)
            )
    for name, key in _FLAGS:
        families[name].add_metric([plugin], float(recovery[key]))
    if health["enabled"]:
        last = health["last_result"]
        if last is not None:
            families["recovery_health_check_healthy"].add_metric(
                [plugin], float(last["healthy"])
            )
        families["recovery_health_check_consecutive_failures"].add_metric(
            [plugin], health["consecutive_fails"]
        )
        families["recovery_health_check_stuck"].add_metric([plugin], float(health["stuck"]))
