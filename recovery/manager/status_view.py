"""The recovery manager's status: its bookkeeping, each breaker, the health monitor
and the cluster read into the typed values of :mod:`recovery.status`.

A mixin of :class:`recovery.RecoveryManager`, apart because reading is one
concern and supervising another.
"""

from __future__ import annotations

import collections
import math
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

from recovery._bounded import ThreadRunner
from recovery.breaker import CircuitBreaker, CircuitBreakerMetrics
from recovery.health import HealthCheckConfig, HealthMonitor
from recovery.incidents import IncidentTracker
from recovery.learning import StrategyLearner
from recovery.manager.early_warning import Latest
from recovery.manager.outbox import Outbox
from recovery.manager.supervised import EPISODE_OUTCOMES, Outcome, Supervised
from recovery.status import (
    ActionCounts,
    EpisodeCounts,
    HealthCheckStatus,
    PluginRecovery,
    PluginStatus,
    PluginWarning,
    RecoveryStatus,
    StrategyOrder,
    StuckStrategy,
)

if TYPE_CHECKING:
    from recovery.cluster.core import Cluster
    from recovery.config import RecoveryConfig
    from recovery.incidents_remote import FleetIncidents


class StatusView:
    """``status()`` and ``get_recovery_status()`` of :class:`recovery.RecoveryManager`."""

    config: RecoveryConfig
    _lock: threading.RLock
    _plugins: dict[str, Supervised]
    _running: bool
    _open_episodes: int
    _runner: ThreadRunner
    _outbox: Outbox
    _monitor: HealthMonitor | None
    _health_checks: dict[str, tuple[Callable[[], Any], HealthCheckConfig]]
    _cluster: Cluster | None
    _fleet_incidents: FleetIncidents | None
    _tracker: IncidentTracker

    if TYPE_CHECKING:
        def _incident_view(self, name: str) -> tuple[str | None, float | None]: ...

    if TYPE_CHECKING:
        def _latest_warnings(self) -> tuple[bool, Latest]: ...
        def _warning_view(self, plugin: Supervised, latest: Latest) -> PluginWarning: ...
    _learner: StrategyLearner

    def status(self) -> RecoveryStatus:
        """The manager and every plugin, as typed values (docs/design.md, "Status").

        The manager's own bookkeeping is read at once under its lock; each breaker,
        the health monitor and the cluster are then read once each.
        """
        monitor = self._monitor
        watching, latest = self._latest_warnings()
        learned = self._learner.all_reasons()
        with self._lock:
            plugins = list(self._plugins.values())
            running, in_progress = self._running, self._open_episodes
            stuck_runs = sorted([*self._runner.stuck(), *self._outbox.stuck()],
                                key=lambda run: run.started)
            stuck = tuple(StuckStrategy(run.label, run.started) for run in stuck_runs)
            abandoned = collections.Counter(run.key for run in stuck_runs)
            stuck_health_checks = monitor.stuck_threads if monitor is not None else 0
            recovery = {plugin.name: self._recovery_view(plugin, abandoned[plugin.name],
                                                         learned.get(plugin.name, {}))
                        for plugin in plugins}
            watched = set(self._health_checks)
            warnings = {plugin.name: self._warning_view(plugin, latest)
                        for plugin in plugins} if watching else {}
        incidents = {plugin.name: self._incident_view(plugin.name) for plugin in plugins}
        return RecoveryStatus(
            running=running,
            auto_recovery=self.config.enable_auto_recovery,
            health_checking=self.config.enable_health_checking,
            alerting=self.config.enable_alerting,
            episodes_in_progress=in_progress,
            stuck_strategies=stuck,
            stuck_health_checks=stuck_health_checks,
            callback_timeouts=self._outbox.timeouts,
            callback_errors=self._outbox.errors,
            plugins={
                plugin.name: PluginStatus(
                    plugin.name,
                    _breaker_view(plugin.breaker),
                    _health_view(monitor if plugin.name in watched else None, plugin.name),
                    recovery[plugin.name],
                    plugin.kind,
                    plugin.depends_on,
                    dict(plugin.tags),
                    warnings.get(plugin.name),
                    *incidents[plugin.name],
                )
                for plugin in plugins
            },
            cluster=self._cluster.status() if self._cluster is not None else None,
            onsets=None if self._fleet_incidents is None else self._fleet_incidents.status(),
            incidents=tuple(incident.to_dict()
                            for incident in self._tracker.incidents(active_only=True)),
        )

    def get_recovery_status(self) -> dict[str, Any]:
        """:meth:`status` as a JSON-serialisable dict (docs/design.md, "Status")."""
        return self.status().to_dict()

    def _recovery_view(
        self, plugin: Supervised, abandoned: int, learned: dict[str, Any]
    ) -> PluginRecovery:
        episode = plugin.episode
        actions = plugin.actions
        return PluginRecovery(
            in_progress=episode is not None,
            attempts=plugin.attempts,
            last_action=plugin.last_action,
            last_action_success=plugin.last_action_success,
            degraded=plugin.degraded,
            fallbacks_served=plugin.route.fallbacks_served,
            failed=plugin.failed,
            failed_reason=(None if plugin.failed_reason is None
                           else plugin.failed_reason.value),
            crash_loop=plugin.crash_loop,
            next_attempt=plugin.next_attempt_wall,
            failed_episodes_in_a_row=plugin.failed_episodes_in_a_row,
            consecutive_failures=plugin.consecutive_failures,
            episode_failures=episode.failures if episode is not None else 0,
            episode_started=episode.wall_started if episode is not None else None,
            recent_episodes=len(plugin.history),
            abandoned_threads=abandoned,
            down_since=plugin.down_since,
            refused_runs=plugin.refused_runs,
            actions={
                action: ActionCounts(actions[action, True], actions[action, False])
                for action in sorted({action for action, _ in actions})
            },
            episodes=EpisodeCounts(
                **{outcome: plugin.episodes[Outcome(outcome)] for outcome in EPISODE_OUTCOMES}
            ) if plugin.episodes else _NO_EPISODES,
            strategy_order={kind: StrategyOrder.from_reasons(view)
                            for kind, view in learned.items()},
        )


def _health_view(monitor: HealthMonitor | None, name: str) -> HealthCheckStatus:
    """The monitor's view of the plugin; not checked (``enabled`` False) without one.

    A plugin that is not being checked (no check, health checking off, or the
    manager not started) shows the same fields, empty, with ``enabled`` False.
    """
    if monitor is not None:
        try:
            view = monitor.status(name)
        except KeyError:  # registered after the last stop(): watched from the next start()
            pass
        else:
            return HealthCheckStatus.checked(view)
    return _NOT_CHECKED


# Shared by every plugin in that state: most are never checked, or never recovered.
_NOT_CHECKED = HealthCheckStatus()
_NO_EPISODES = EpisodeCounts()


def _breaker_view(breaker: CircuitBreaker) -> CircuitBreakerMetrics:
    metrics = breaker.metrics()
    retry = metrics.next_retry_time
    if retry is not None and not math.isfinite(retry):
        # Held open until reset: there is no retry time to show.
        metrics = attrs.evolve(metrics, next_retry_time=None)
    return metrics
