"""OpenTelemetry metrics of a recovery manager and of every breaker (``otel`` extra).

::

    from recovery.otel import instrument

    instrument(rm)        # the global meter provider; or instrument(rm, meter_provider=...)
    instrument(None)      # no manager: every live breaker of the process

The instruments mirror :class:`recovery.prometheus.RecoveryCollector`: the same
numbers, read from the same places when the SDK collects, nothing on the call
path. Like the collector, ``instrument(rm)`` covers the manager's plugins and
every other live breaker (:func:`recovery.breakers`) once each; ``plugin``
becomes the attribute ``recovery.plugin.name``. Names and units follow the
OpenTelemetry metric conventions: dot-separated lowercase namespaces, no unit or
``_total`` in the name, UCUM units (``s`` for seconds, ``1`` for ratios and state
flags, ``{request}``-style annotations for counts in the singular). Monotonic
counts are observable counters; a 0/1 flag that sums meaningfully over plugins
(how many breakers are open, how many plugins degraded) is an observable
up-down counter; a ratio or a run length is a gauge. Each entry of
:data:`INSTRUMENTS` names the collector metric it mirrors.

=============================================  =============  ===========
instrument                                     kind           unit
=============================================  =============  ===========
recovery.circuit_breaker.state                 updowncounter  1
recovery.requests                              counter        {request}
recovery.successes                             counter        {request}
recovery.failures                              counter        {request}
recovery.slow_calls                            counter        {request}
recovery.rejections                            counter        {request}
recovery.circuit_breaker.open_time             counter        s
recovery.circuit_breaker.window_failure_ratio  gauge          1
recovery.call.duration.bucket                  counter        {call}
recovery.call.duration.sum                     counter        s
recovery.call.duration.count                   counter        {call}
recovery.attempts                              counter        {attempt}
recovery.episodes                              counter        {episode}
recovery.episode.active                        updowncounter  {episode}
recovery.plugin.degraded                       updowncounter  {plugin}
recovery.plugin.fallbacks_served               counter        {request}
recovery.plugin.failed                         updowncounter  {plugin}
recovery.plugin.crash_loop                     updowncounter  {plugin}
recovery.health_check.healthy                  updowncounter  {plugin}
recovery.health_check.consecutive_failures     gauge          {check}
recovery.health_check.stuck                    updowncounter  {plugin}
recovery.plugin.early_warning                  updowncounter  {plugin}
recovery.plugin.early_warnings                 counter        {warning}
recovery.health_check.stuck_threads            updowncounter  {thread}
recovery.strategy.stuck_runs                   updowncounter  {run}
recovery.manager.running                       updowncounter  {manager}
recovery.cluster.connected                     updowncounter  {connection}
recovery.cluster.events                        counter        {event}
recovery.cluster.events_dropped                counter        {message}
recovery.incidents.open                        updowncounter  {incident}
recovery.incident.members                      updowncounter  {plugin}
recovery.plugin.incident_held                  updowncounter  {plugin}
=============================================  =============  ===========

Attributes: ``recovery.plugin.name`` on every per-breaker and per-plugin instrument;
``recovery.action`` and ``recovery.result`` (success, failure) on the attempts;
``recovery.early_warning.kind`` (failure_rate, latency) on the early warnings,
observed only with ``RecoveryConfig(early_warning=True)``. The breaker's state is one
instrument, ``recovery.circuit_breaker.state``, shaped as the conventions shape a
state metric (like ``hw.status``): 1 for the current value of its attribute of the
same name (closed, open, half_open, repairing) and 0 for the three others, so a sum
counts breakers by state.

Call latency (breakers with ``record_latency=True``): the OpenTelemetry API has no
observable histogram (a histogram is recorded call by call, which the breaker's
hot path will not pay for), so the window's histogram is observed as the
Prometheus histogram's three parts, each a monotonic counter:
``recovery.call.duration.bucket`` with the attribute ``recovery.call.duration.le``
(the bucket's upper bound in seconds, written as Prometheus writes ``le``:
``0.0001`` ... ``60.0``, ``+Inf``) counts the calls that took at most that long
(cumulative, so a backend's histogram-quantile over ``le`` works as on
Prometheus' ``_bucket``); ``recovery.call.duration.sum`` their seconds;
``recovery.call.duration.count`` the calls.

Each instrument reads the manager's status when the SDK calls it, so two
instruments of one collection may differ by the calls made in between (the
Prometheus collector reads once per scrape). The API cannot take callbacks back,
so :meth:`Instrumentation.close` makes them observe nothing; a meter provider
carries one instrumentation at a time (a second would count every breaker twice).
"""

from __future__ import annotations

import importlib.metadata
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import attrs

try:
    from opentelemetry.metrics import (
        CallbackOptions,
        Meter,
        MeterProvider,
        Observation,
        get_meter_provider,
    )
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "recovery.otel needs opentelemetry-api, which the 'otel' extra installs: "
        "pip install 'recovery[otel]'"
    ) from exc

from recovery import _registry
from recovery._labels import label as _label
from recovery.breaker import BreakerMixin, CircuitBreakerMetrics, cumulative_buckets
from recovery.state import CircuitBreakerState
from recovery.status import (
    ClusterStatus,
    EarlyWarning,
    HealthCheckStatus,
    PluginRecovery,
    PluginStatus,
    RecoveryStatus,
    StatusSource,
)

__all__ = ["INSTRUMENTS", "InstrumentSpec", "Instrumentation", "instrument"]

PLUGIN = "recovery.plugin.name"
STATE = "recovery.circuit_breaker.state"
ACTION = "recovery.action"
RESULT = "recovery.result"
OUTCOME = "recovery.episode.outcome"
DIRECTION = "recovery.cluster.direction"
KIND = "recovery.cluster.event.kind"
LE = "recovery.call.duration.le"
WARNING_KIND = "recovery.early_warning.kind"
INCIDENT = "recovery.incident.id"
ROOT = "recovery.incident.root"


@attrs.frozen
class _Snapshot:
    """What one callback reads: the manager's status (if any) and every breaker's metrics."""

    status: RecoveryStatus | None
    breakers: list[tuple[str, CircuitBreakerMetrics]]

    def plugins(self) -> Iterator[PluginStatus]:
        if self.status is not None:
            yield from self.status.plugins.values()


Observe = Callable[[_Snapshot], Iterator[Observation]]


@attrs.frozen
class InstrumentSpec:
    """One instrument: its OpenTelemetry name, kind, unit, and the collector metric it mirrors."""

    name: str
    kind: str = attrs.field(validator=attrs.validators.in_(("counter", "updowncounter", "gauge")))
    unit: str
    description: str
    prometheus: str
    observe: Observe = attrs.field(repr=False)


def _states(snapshot: _Snapshot) -> Iterator[Observation]:
    for label, metrics in snapshot.breakers:
        for state in CircuitBreakerState:
            current = int(metrics.state is state)
            yield Observation(current, {PLUGIN: label, STATE: state.value})


def _breaker(read: Callable[[CircuitBreakerMetrics], float]) -> Observe:
    def observe(snapshot: _Snapshot) -> Iterator[Observation]:
        for label, metrics in snapshot.breakers:
            yield Observation(read(metrics), {PLUGIN: label})

    return observe


def _latency(part: str) -> Observe:
    """One part ("bucket", "sum", "count") of each recording breaker's latency histogram."""

    def observe(snapshot: _Snapshot) -> Iterator[Observation]:
        for label, metrics in snapshot.breakers:
            latency = metrics.latency
            if latency is None:
                continue
            if part == "sum":
                yield Observation(latency.sum, {PLUGIN: label})
            elif part == "count":
                yield Observation(latency.count, {PLUGIN: label})
            else:
                for le, count in cumulative_buckets(latency):
                    yield Observation(count, {PLUGIN: label, LE: le})

    return observe


def _attempts(snapshot: _Snapshot) -> Iterator[Observation]:
    for plugin in snapshot.plugins():
        for action, counts in plugin.recovery.actions.items():
            for result, count in (("success", counts.success), ("failure", counts.failure)):
                attributes = {PLUGIN: _label(plugin.name), ACTION: action, RESULT: result}
                yield Observation(count, attributes)


def _episodes(snapshot: _Snapshot) -> Iterator[Observation]:
    for plugin in snapshot.plugins():
        for outcome, count in plugin.recovery.episodes.to_dict().items():
            yield Observation(count, {PLUGIN: _label(plugin.name), OUTCOME: outcome})


def _recovery(read: Callable[[PluginRecovery], int]) -> Observe:
    """A number of each plugin's recovery: a count, or a flag as 0 or 1."""

    def observe(snapshot: _Snapshot) -> Iterator[Observation]:
        for plugin in snapshot.plugins():
            yield Observation(int(read(plugin.recovery)), {PLUGIN: _label(plugin.name)})

    return observe


def _health(read: Callable[[HealthCheckStatus], int]) -> Observe:
    """A number of each plugin's health check, for the plugins that are checked."""

    def observe(snapshot: _Snapshot) -> Iterator[Observation]:
        for plugin in snapshot.plugins():
            if plugin.health_check.enabled:
                yield Observation(int(read(plugin.health_check)), {PLUGIN: _label(plugin.name)})

    return observe


def _healthy(snapshot: _Snapshot) -> Iterator[Observation]:
    for plugin in snapshot.plugins():
        health = plugin.health_check
        if health.enabled and health.last_result is not None:
            yield Observation(int(health.last_result.healthy), {PLUGIN: _label(plugin.name)})


def _warnings(read: Callable[[EarlyWarning], int]) -> Observe:
    """A number of each kind of early warning of each plugin the manager watches."""

    def observe(snapshot: _Snapshot) -> Iterator[Observation]:
        for plugin in snapshot.plugins():
            if plugin.warning is not None:
                for kind, warning in plugin.warning.kinds().items():
                    yield Observation(int(read(warning)),
                                      {PLUGIN: _label(plugin.name), WARNING_KIND: kind})

    return observe


def _cluster(read: Callable[[ClusterStatus], int]) -> Observe:
    """A number of the manager's cluster view (``Cluster.status()``); nothing without one."""

    def observe(snapshot: _Snapshot) -> Iterator[Observation]:
        cluster = snapshot.status.cluster if snapshot.status is not None else None
        if cluster is not None:
            yield Observation(read(cluster))

    return observe


def _cluster_events(snapshot: _Snapshot) -> Iterator[Observation]:
    cluster = snapshot.status.cluster if snapshot.status is not None else None
    if cluster is not None:
        for direction, kinds in cluster["events"].items():
            for kind, count in kinds.items():
                yield Observation(count, {DIRECTION: direction, KIND: kind})


def _manager(read: Callable[[RecoveryStatus], int]) -> Observe:
    def observe(snapshot: _Snapshot) -> Iterator[Observation]:
        if snapshot.status is not None:
            yield Observation(read(snapshot.status))

    return observe


def _incident_members(snapshot: _Snapshot) -> Iterator[Observation]:
    if snapshot.status is not None:
        for incident in snapshot.status.incidents:
            yield Observation(len(incident["members"]),
                              {INCIDENT: incident["id"], ROOT: _label(incident["root"])})


def _held(snapshot: _Snapshot) -> Iterator[Observation]:
    for plugin in snapshot.plugins():
        yield Observation(int(plugin.held_until is not None), {PLUGIN: _label(plugin.name)})


INSTRUMENTS: tuple[InstrumentSpec, ...] = (
    InstrumentSpec("recovery.circuit_breaker.state", "updowncounter", "1",
                   "Circuit breaker state: 1 for the current state, 0 for the others.",
                   "recovery_circuit_breaker_state", _states),
    InstrumentSpec("recovery.requests", "counter", "{request}",
                   "Calls the circuit breaker let through.", "recovery_requests_total",
                   _breaker(lambda metrics: metrics.total_requests)),
    InstrumentSpec("recovery.successes", "counter", "{request}",
                   "Calls through the breaker that succeeded.", "recovery_successes_total",
                   _breaker(lambda metrics: metrics.total_successes)),
    InstrumentSpec("recovery.failures", "counter", "{request}",
                   "Calls through the breaker that failed.", "recovery_failures_total",
                   _breaker(lambda metrics: metrics.total_failures)),
    InstrumentSpec("recovery.slow_calls", "counter", "{request}",
                   "Calls that took at least slow_call_duration.", "recovery_slow_calls_total",
                   _breaker(lambda metrics: metrics.total_slow_calls)),
    InstrumentSpec("recovery.rejections", "counter", "{request}",
                   "Calls the circuit breaker rejected.", "recovery_rejections_total",
                   _breaker(lambda metrics: metrics.total_rejections)),
    InstrumentSpec("recovery.circuit_breaker.open_time", "counter", "s",
                   "Time the breaker spent open or repairing.",
                   "recovery_circuit_open_seconds_total",
                   _breaker(lambda metrics: metrics.circuit_open_time)),
    InstrumentSpec("recovery.circuit_breaker.window_failure_ratio", "gauge", "1",
                   "Failures over outcomes in the breaker's sliding window.",
                   "recovery_window_failure_ratio",
                   _breaker(lambda metrics: metrics.window_failure_rate)),
    InstrumentSpec("recovery.call.duration.bucket", "counter", "{call}",
                   "Calls through the breaker that took at most recovery.call.duration.le "
                   "seconds.", "recovery_call_duration_seconds_bucket", _latency("bucket")),
    InstrumentSpec("recovery.call.duration.sum", "counter", "s",
                   "Seconds spent in the calls through the breaker.",
                   "recovery_call_duration_seconds_sum", _latency("sum")),
    InstrumentSpec("recovery.call.duration.count", "counter", "{call}",
                   "Calls through the breaker that were timed.",
                   "recovery_call_duration_seconds_count", _latency("count")),
    InstrumentSpec("recovery.attempts", "counter", "{attempt}",
                   "Recovery strategy runs, by strategy and result.", "recovery_attempts_total",
                   _attempts),
    InstrumentSpec("recovery.episodes", "counter", "{episode}",
                   "Finished recovery episodes, by outcome.", "recovery_episodes_total",
                   _episodes),
    InstrumentSpec("recovery.episode.active", "updowncounter", "{episode}",
                   "Recovery episodes running (1 per plugin at most).", "recovery_in_progress",
                   _recovery(lambda recovery: recovery.in_progress)),
    InstrumentSpec("recovery.plugin.degraded", "updowncounter", "{plugin}",
                   "1 while the plugin is degraded and its fallback is served.",
                   "recovery_degraded", _recovery(lambda recovery: recovery.degraded)),
    InstrumentSpec("recovery.plugin.fallbacks_served", "counter", "{request}",
                   "Calls the plugin's fallback answered.", "recovery_fallbacks_served_total",
                   _recovery(lambda recovery: recovery.fallbacks_served)),
    InstrumentSpec("recovery.plugin.failed", "updowncounter", "{plugin}",
                   "1 once the plugin is marked failed, until reset_plugin().",
                   "recovery_failed", _recovery(lambda recovery: recovery.failed)),
    InstrumentSpec("recovery.plugin.crash_loop", "updowncounter", "{plugin}",
                   "1 while the plugin waits in a crash loop for its next attempt.",
                   "recovery_crash_loop", _recovery(lambda recovery: recovery.crash_loop)),
    InstrumentSpec("recovery.health_check.healthy", "updowncounter", "{plugin}",
                   "Result of the last health check: 1 healthy, 0 not.",
                   "recovery_health_check_healthy", _healthy),
    InstrumentSpec("recovery.health_check.consecutive_failures", "gauge", "{check}",
                   "Failed health checks in a row.",
                   "recovery_health_check_consecutive_failures",
                   _health(lambda health: health.consecutive_fails)),
    InstrumentSpec("recovery.health_check.stuck", "updowncounter", "{plugin}",
                   "1 while the plugin's health check hangs.", "recovery_health_check_stuck",
                   _health(lambda health: health.stuck)),
    InstrumentSpec("recovery.plugin.early_warning", "updowncounter", "{plugin}",
                   "1 while an early warning of the kind is up: the breaker is heading for "
                   "a trip.", "recovery_early_warning",
                   _warnings(lambda warning: warning.active)),
    InstrumentSpec("recovery.plugin.early_warnings", "counter", "{warning}",
                   "Early warnings raised, by kind.", "recovery_early_warnings_total",
                   _warnings(lambda warning: warning.raised)),
    InstrumentSpec("recovery.health_check.stuck_threads", "updowncounter", "{thread}",
                   "Abandoned health-check threads (hung checks) still running.",
                   "recovery_stuck_health_check_threads",
                   _manager(lambda status: status.stuck_health_checks)),
    InstrumentSpec("recovery.strategy.stuck_runs", "updowncounter", "{run}",
                   "Abandoned recovery strategy runs still running.",
                   "recovery_stuck_strategies",
                   _manager(lambda status: len(status.stuck_strategies))),
    InstrumentSpec("recovery.manager.running", "updowncounter", "{manager}",
                   "1 between start() and stop() of the recovery manager.",
                   "recovery_manager_running", _manager(lambda status: int(status.running))),
    InstrumentSpec("recovery.cluster.connected", "updowncounter", "{connection}",
                   "1 while the manager's cluster is connected to Redis.",
                   "recovery_cluster_connected",
                   _cluster(lambda cluster: int(cluster["connected"]))),
    InstrumentSpec("recovery.cluster.events", "counter", "{event}",
                   "Cluster events published or received, by kind.",
                   "recovery_cluster_events_total", _cluster_events),
    InstrumentSpec("recovery.cluster.events_dropped", "counter", "{message}",
                   "Cluster messages refused, or local events lost to a full queue.",
                   "recovery_cluster_events_dropped_total",
                   _cluster(lambda cluster: int(cluster["events_dropped"]))),
    InstrumentSpec("recovery.incidents.open", "updowncounter", "{incident}",
                   "Open incidents (one cause, grouped trips).", "recovery_incidents_open",
                   _manager(lambda status: len(status.incidents))),
    InstrumentSpec("recovery.incident.members", "updowncounter", "{plugin}",
                   "Members of each open incident.", "recovery_incident_members",
                   _incident_members),
    InstrumentSpec("recovery.plugin.incident_held", "updowncounter", "{plugin}",
                   "1 while the plugin is held by its incident: not repaired while its root "
                   "is.", "recovery_incident_held", _held),
)


class Instrumentation:
    """The instruments :func:`instrument` registered on one meter provider.

    Their callbacks read :attr:`source` at each collection; :meth:`close` clears
    it, after which they observe nothing and the provider may be instrumented again.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active = False
        self._source: StatusSource | None = None

    def close(self) -> None:
        """Stop observing (and drop the reference to the manager)."""
        with self._lock:
            self._active = False
            self._source = None

    @property
    def active(self) -> bool:
        return self._active

    def _bind(self, source: StatusSource | None) -> None:
        with self._lock:
            if self._active:
                raise ValueError(
                    "this meter provider is already instrumented (by an Instrumentation "
                    "not closed yet): a second would count every breaker twice"
                )
            self._active = True
            self._source = source

    def _callback(self, observe: Observe) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def callback(options: CallbackOptions) -> Iterable[Observation]:
            with self._lock:
                active, source = self._active, self._source
            if not active:
                return []
            return list(observe(_snapshot(source)))

        return callback


# One Instrumentation per meter provider: the SDK hands back an instrument already
# created under a name and drops the new callbacks, so the first callbacks stay and
# a later instrument() rebinds them.
_instrumented: weakref.WeakKeyDictionary[Any, Instrumentation] = weakref.WeakKeyDictionary()
_instrumented_lock = threading.Lock()


def instrument(
    source: StatusSource | None = None, meter_provider: MeterProvider | None = None
) -> Instrumentation:
    """Register observable instruments for ``source`` on ``meter_provider``.

    ``source``: a :class:`~recovery.RecoveryManager` (its plugins, plus every other
    live breaker), or None (every live breaker). ``meter_provider``: default the
    global one. A provider already instrumented and not closed is a ValueError.
    """
    if source is not None and not isinstance(source, StatusSource):
        raise TypeError(
            f"source must be a RecoveryManager (status() and breaker(name)) or None, "
            f"got {source!r}")
    if meter_provider is None:
        meter_provider = get_meter_provider()
    elif not callable(getattr(meter_provider, "get_meter", None)):
        raise TypeError(f"meter_provider must be a MeterProvider, got {meter_provider!r}")
    with _instrumented_lock:
        instrumentation = _instrumented.get(meter_provider)
        if instrumentation is None:
            instrumentation = Instrumentation()
            _create(meter_provider.get_meter("recovery", _version()), instrumentation)
            _instrumented[meter_provider] = instrumentation
        instrumentation._bind(source)
    return instrumentation


def _create(meter: Meter, instrumentation: Instrumentation) -> None:
    create = {
        "counter": meter.create_observable_counter,
        "updowncounter": meter.create_observable_up_down_counter,
        "gauge": meter.create_observable_gauge,
    }
    for spec in INSTRUMENTS:
        create[spec.kind](
            spec.name,
            callbacks=[instrumentation._callback(spec.observe)],
            unit=spec.unit,
            description=spec.description,
        )


def _snapshot(rm: StatusSource | None) -> _Snapshot:
    """The manager's status and every breaker's metrics, labelled as the collector labels them."""
    status = rm.status() if rm is not None else None
    breakers: list[tuple[str, CircuitBreakerMetrics]] = []
    owned: list[BreakerMixin] = []
    plugins: list[str] = []
    if rm is not None and status is not None:
        plugins = list(status.plugins)
        owned = [rm.breaker(plugin) for plugin in plugins]
        breakers = [(_label(plugin.name), plugin.circuit_breaker)
                    for plugin in status.plugins.values()]
    breakers += [(_label(key), breaker.metrics())
                 for key, breaker in _registry.unowned(plugins, owned)]
    return _Snapshot(status, breakers)


def _version() -> str | None:
    try:
        return importlib.metadata.version("recovery")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - run from a checkout
        return None
