"""The recovery manager's status as typed values: what scrapes, dashboards and scripts read.

:meth:`RecoveryManager.status() <recovery.RecoveryManager.status>` returns a
:class:`RecoveryStatus`; :meth:`RecoveryManager.get_recovery_status()
<recovery.RecoveryManager.get_recovery_status>` is its :meth:`~RecoveryStatus.to_dict`,
the JSON-ready dict. The Prometheus collector, the OpenTelemetry instruments, the
demo and the dashboard read the attributes, so a field renamed or dropped is a type
error where it is read rather than a ``KeyError`` at the next scrape, and a scrape
pays for no JSON it does not send.

Timestamps are wall-clock seconds (``time.time()``) in the attributes and ISO-8601
UTC strings in the dicts, as :class:`~recovery.CircuitBreakerMetrics` has them;
the health check's, which the health monitor reports already written, are strings
in both. The manager builds these values, so they carry no validators (a scrape
builds hundreds of them); the defaults are a plugin nothing has happened to yet.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, TypedDict, runtime_checkable

import attrs

from recovery._clock import iso_utc
from recovery.breaker import CircuitBreaker, CircuitBreakerMetrics

__all__ = [
    "ActionCounts",
    "ClusterBreaker",
    "ClusterStatus",
    "EarlyWarning",
    "EpisodeCounts",
    "HealthCheckStatus",
    "LastHealthCheck",
    "PluginRecovery",
    "PluginStatus",
    "PluginWarning",
    "RecoveryStatus",
    "StatusSource",
    "StrategyOrder",
    "StrategyRecord",
    "StuckStrategy",
]


@attrs.frozen
class ActionCounts:
    """Runs of one recovery strategy on one plugin, by result."""

    success: int = 0
    failure: int = 0

    def to_dict(self) -> dict[str, int]:
        return {"success": self.success, "failure": self.failure}


@attrs.frozen
class EpisodeCounts:
    """Finished recovery episodes of one plugin, by outcome.

    ``recovered``: the action worked and the plugin was verified; ``held``: the
    strategy left it degraded or its breaker open for a while; ``unverified``: the
    action worked and no verification gave a verdict; ``exhausted``: every attempt
    failed; ``interrupted``: the manager stopped, the plugin failed for good, or the
    episode itself raised.
    """

    recovered: int = 0
    held: int = 0
    unverified: int = 0
    exhausted: int = 0
    interrupted: int = 0

    def to_dict(self) -> dict[str, int]:
        """Every outcome, zeros included, in the order above."""
        return {"recovered": self.recovered, "held": self.held, "unverified": self.unverified,
                "exhausted": self.exhausted, "interrupted": self.interrupted}


@attrs.frozen
class LastHealthCheck:
    """The result of a plugin's last health check, as the health monitor reports it."""

    healthy: bool
    duration: str  # human-readable ("50ms"), as the monitor writes it
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"healthy": self.healthy, "duration": self.duration, "message": self.message}


@attrs.frozen
class HealthCheckStatus:
    """The health monitor's view of one plugin; ``enabled`` False (and the rest empty)
    while it is not checked: no check, health checking off, or the manager stopped."""

    last_check: str | None = None  # ISO-8601 UTC, as the monitor writes it
    last_result: LastHealthCheck | None = None
    consecutive_fails: int = 0
    stuck: bool = False
    enabled: bool = False

    @classmethod
    def checked(cls, view: Mapping[str, Any]) -> HealthCheckStatus:
        """From ``HealthMonitor.status(name)`` of a plugin the monitor checks."""
        last = view["last_result"]
        return cls(
            last_check=view["last_check"],
            last_result=None if last is None else LastHealthCheck(
                last["healthy"], last["duration"], last["message"]),
            consecutive_fails=view["consecutive_fails"],
            stuck=view["stuck"],
            enabled=True,
        )

    def to_dict(self) -> dict[str, Any]:
        last = self.last_result
        return {
            "last_check": self.last_check,
            "last_result": None if last is None else last.to_dict(),
            "consecutive_fails": self.consecutive_fails,
            "stuck": self.stuck,
            "enabled": self.enabled,
        }


@attrs.frozen
class StrategyRecord:
    """What one strategy did for one plugin and failure type: verified ``successes``
    of ``attempts``, the median time to a verified recovery (None before the first)
    and how long its verification by half-open trials waits."""

    attempts: int
    successes: int
    median_time: float | None
    verification_window: float

    def to_dict(self) -> dict[str, Any]:
        return {"attempts": self.attempts, "successes": self.successes,
                "median_time": self.median_time,
                "verification_window": self.verification_window}


@attrs.frozen
class StrategyOrder:
    """The order a plugin's strategies are tried in for one failure type, and why.

    ``mode``: "learned", "priority" or "configured" (None before any attempt);
    ``order``: the strategy names as last tried (None before any attempt);
    ``strategies``: each strategy's record, by name, sorted.
    """

    mode: str | None
    order: tuple[str, ...] | None
    strategies: Mapping[str, StrategyRecord] = attrs.field(factory=dict)

    @classmethod
    def from_reasons(cls, view: Mapping[str, Any]) -> StrategyOrder:
        """From one failure type of ``StrategyLearner.reasons(plugin)``."""
        order = view["order"]
        return cls(view["mode"], None if order is None else tuple(order),
                   {name: StrategyRecord(**record)
                    for name, record in view["strategies"].items()})

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "order": None if self.order is None else list(self.order),
                "strategies": {name: record.to_dict()
                               for name, record in self.strategies.items()}}


@attrs.frozen
class PluginRecovery:
    """What the manager is doing, and has done, to keep one plugin up.

    ``failed``: out of service, in a crash loop (``crash_loop``, retried at
    ``next_attempt``) or until ``reset_plugin()``; ``failed_reason`` says which.
    ``episode_failures`` and ``episode_started`` describe the episode in progress
    (0 and None without one); ``recent_episodes`` counts those within the
    restart-intensity period. ``abandoned_threads``: its steps (strategies,
    checks, callbacks) abandoned at their timeout whose threads still run, at
    most ``max_abandoned_threads``; ``refused_runs``: steps not started because
    that bound was reached.
    """

    in_progress: bool = False
    attempts: int = 0
    last_action: str | None = None
    last_action_success: bool | None = None
    degraded: bool = False
    fallbacks_served: int = 0
    failed: bool = False
    failed_reason: str | None = None
    crash_loop: bool = False
    next_attempt: float | None = None  # wall clock
    failed_episodes_in_a_row: int = 0
    consecutive_failures: int = 0
    episode_failures: int = 0
    episode_started: float | None = None  # wall clock
    recent_episodes: int = 0
    abandoned_threads: int = 0
    refused_runs: int = 0
    down_since: float | None = None  # wall clock: when its current trouble began
    actions: Mapping[str, ActionCounts] = attrs.field(factory=dict)  # by strategy, sorted
    episodes: EpisodeCounts = EpisodeCounts()
    # By failure type: the strategy order in force and why (recovery.learning).
    strategy_order: Mapping[str, StrategyOrder] = attrs.field(factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "in_progress": self.in_progress,
            "attempts": self.attempts,
            "last_action": self.last_action,
            "last_action_success": self.last_action_success,
            "degraded": self.degraded,
            "fallbacks_served": self.fallbacks_served,
            "failed": self.failed,
            "failed_reason": self.failed_reason,
            "crash_loop": self.crash_loop,
            "next_attempt": iso_utc(self.next_attempt),
            "failed_episodes_in_a_row": self.failed_episodes_in_a_row,
            "consecutive_failures": self.consecutive_failures,
            "episode_failures": self.episode_failures,
            "episode_started": iso_utc(self.episode_started),
            "recent_episodes": self.recent_episodes,
            "abandoned_threads": self.abandoned_threads,
            "refused_runs": self.refused_runs,
            "down_since": iso_utc(self.down_since),
            "actions": {action: counts.to_dict() for action, counts in self.actions.items()},
            "episodes": self.episodes.to_dict(),
            "strategy_order": {kind: order.to_dict()
                               for kind, order in self.strategy_order.items()},
        }


@attrs.frozen
class EarlyWarning:
    """One kind of early warning of one plugin (``RecoveryConfig(early_warning=True)``).

    ``active`` while the forecaster sees the signal off its baseline; then ``since``
    (wall clock: when it was raised), ``baseline`` and ``current`` (a failure rate
    0-1, or a typical latency in seconds) and ``expected_trip_in`` (seconds until the
    breaker would open at the present trend, or None) describe it. ``raised``: such
    warnings raised since the manager first watched the plugin (so ``raised -
    active`` have ended): a reader that polls sees every warning, even one that
    came and went between two readings.
    """

    active: bool = False
    since: float | None = None
    baseline: float | None = None
    current: float | None = None
    expected_trip_in: float | None = None
    raised: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"active": self.active, "since": iso_utc(self.since), "baseline": self.baseline,
                "current": self.current, "expected_trip_in": self.expected_trip_in,
                "raised": self.raised}


@attrs.frozen
class PluginWarning:
    """A plugin's early warnings, one entry per kind the forecaster tests."""

    failure_rate: EarlyWarning = EarlyWarning()
    latency: EarlyWarning = EarlyWarning()

    @property
    def active(self) -> bool:
        """Some warning is up now."""
        return self.failure_rate.active or self.latency.active

    def kinds(self) -> dict[str, EarlyWarning]:
        """By kind ("failure_rate", "latency"), in that order."""
        return {"failure_rate": self.failure_rate, "latency": self.latency}

    def to_dict(self) -> dict[str, Any]:
        return {"active": self.active,
                **{kind: warning.to_dict() for kind, warning in self.kinds().items()}}


@attrs.frozen
class PluginStatus:
    """One plugin: its breaker, its health check, its recovery.

    The breaker's ``next_retry_time`` is None while the manager holds it open until
    ``reset_plugin()`` (there is no retry time to show). ``warning`` is None while the
    manager does not watch for early warnings (``early_warning`` off, or stopped).
    """

    name: str
    circuit_breaker: CircuitBreakerMetrics
    health_check: HealthCheckStatus
    recovery: PluginRecovery
    kind: str = "plugin"  # or "dependency" (registered with register_dependency())
    depends_on: tuple[str, ...] = ()
    tags: Mapping[str, str] = attrs.field(factory=dict)
    warning: PluginWarning | None = None
    # The open incident it is a member of, and (wall clock) when its hold by it ends.
    incident: str | None = None
    held_until: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The sections by name (the plugin's own name is the key it is filed under)."""
        return {
            "kind": self.kind,
            "depends_on": list(self.depends_on),
            "tags": dict(self.tags),
            "circuit_breaker": self.circuit_breaker.to_dict(),
            "health_check": self.health_check.to_dict(),
            "recovery": self.recovery.to_dict(),
            "warning": None if self.warning is None else self.warning.to_dict(),
            "incident": self.incident,
            "held_until": iso_utc(self.held_until),
        }


@attrs.frozen
class StuckStrategy:
    """A strategy run abandoned at its timeout whose thread still runs."""

    label: str  # "<strategy> <plugin>"
    since: float  # wall clock: when it started

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "since": iso_utc(self.since)}


class ClusterBreaker(TypedDict):
    """One attached breaker in :class:`ClusterStatus`: its local state and the fleet's view."""

    state: str  # the local breaker's state
    fleet: str  # "closed", "open" or "trial" (a trial lease is out)
    epoch: int
    opened_by: str | None  # the node whose trip opened the fleet, once known
    trial_lease: bool  # this process holds the fleet's trial lease


class ClusterStatus(TypedDict):
    """:meth:`recovery.cluster.Cluster.status`: the node's connection, its message
    counters and every attached breaker. A dict (the JSON-ready shape scripts read)
    whose keys the type checker knows, so a reader of a renamed key is a type error."""

    connected: bool
    node_id: str
    namespace: str
    quorum: int
    events_published: int
    events_received: int
    events_dropped: int
    events_stale: int
    errors: int
    last_error: str | None
    events: dict[str, dict[str, int]]  # "published"/"received" -> "open"/"close" -> count
    dropped: dict[str, int]  # by reason
    breakers: dict[str, ClusterBreaker]  # by name


@attrs.frozen
class RecoveryStatus:
    """The whole manager: its switches, what is stuck, every plugin in registration order,
    and its cluster's own view (``Cluster.status()``) when it has one."""

    running: bool
    auto_recovery: bool
    health_checking: bool
    alerting: bool
    episodes_in_progress: int
    stuck_strategies: tuple[StuckStrategy, ...]  # oldest first
    stuck_health_checks: int  # abandoned health-check threads still alive
    plugins: Mapping[str, PluginStatus]
    cluster: ClusterStatus | None = None
    # Alert handlers, audit and log records past callback_timeout, or that raised.
    callback_timeouts: int = 0
    callback_errors: int = 0
    incidents: tuple[Mapping[str, Any], ...] = ()  # open ones, Incident.to_dict(), oldest first
    # With a cluster: the incident onsets the manager shares through it (counters; in
    # to_dict() under "cluster" as "onsets"). See recovery.incidents_remote.
    onsets: Mapping[str, Any] | None = None

    def to_dict(self, *, plugins: bool = True) -> dict[str, Any]:
        """JSON-ready; ``plugins=False`` leaves the plugins out (the dashboard sends each
        as a tile of its own)."""
        data: dict[str, Any] = {
            "running": self.running,
            "auto_recovery": self.auto_recovery,
            "health_checking": self.health_checking,
            "alerting": self.alerting,
            "episodes_in_progress": self.episodes_in_progress,
            "stuck_strategies": [stuck.to_dict() for stuck in self.stuck_strategies],
            "stuck_health_checks": self.stuck_health_checks,
            "callback_timeouts": self.callback_timeouts,
            "callback_errors": self.callback_errors,
            "incidents": [dict(incident) for incident in self.incidents],
        }
        if plugins:
            data["plugins"] = {name: plugin.to_dict() for name, plugin in self.plugins.items()}
        if self.cluster is not None:
            data["cluster"] = self.cluster if self.onsets is None else {
                **self.cluster, "onsets": dict(self.onsets)}
        return data


@runtime_checkable
class StatusSource(Protocol):
    """What the readers of a recovery manager need of it: its status, and each plugin's
    breaker (so the process's other breakers are told from the manager's, and none is
    counted twice). :class:`recovery.RecoveryManager` is one.

    The Prometheus collector, the OpenTelemetry instruments and the dashboard's feed
    depend on this, not on the manager: anything that answers both may be exported.
    """

    def status(self) -> RecoveryStatus: ...

    def breaker(self, name: str) -> CircuitBreaker: ...
