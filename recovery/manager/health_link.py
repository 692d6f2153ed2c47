"""The manager's side of health checking: what it gives the health monitor, and
what it does with what the monitor finds.

Each registration with a check is watched at the pace its breaker's state calls
for (faster while it is open or repairing, so a dependency that comes back is
found sooner than its open period would); ``max_failures`` failed checks in a
row are a HEALTH_CHECK failure; a healthy check of an open breaker lets a call
try it, and ends a crash loop's wait. A mixin of :class:`recovery.RecoveryManager`.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

from recovery import _clock
from recovery.failures import FailureInfo, FailureType
from recovery.health import HealthCheckConfig, HealthCheckResult, HealthMonitor
from recovery.manager.supervised import OPEN, REJECTING, Supervised
from recovery.plugins import PluginManager
from recovery.state import CircuitBreakerState


class HealthLink:
    """The health-check part of :class:`recovery.RecoveryManager` (a mixin)."""

    clock: _clock.Clock
    plugin_manager: PluginManager
    _lock: threading.RLock
    _plugins: dict[str, Supervised]
    _monitor: HealthMonitor | None
    _health_checks: dict[str, tuple[Callable[[], Any], HealthCheckConfig]]

    if TYPE_CHECKING:
        def record_failure(self, plugin_name: str, failure: FailureInfo) -> None: ...
        def _probe(self, plugin: Supervised) -> None: ...
        def _move_breaker(self, action: Callable[[], object]) -> None: ...
        def _own_thread(self) -> None: ...

    def _watch(
        self, monitor: HealthMonitor, name: str, check: Callable[[], Any],
        config: HealthCheckConfig,
    ) -> None:
        monitor.watch(
            name,
            check,
            self._health_config(name, config, self._plugins[name].breaker.state),
            on_failure_limit=self._on_health_failure_limit,
            on_healthy=self._on_healthy,
        )

    def _health_config(
        self, name: str, config: HealthCheckConfig, state: CircuitBreakerState
    ) -> HealthCheckConfig:
        """The plugin's check config for a breaker state.

        While the breaker is open (or repairing) the check runs at the breaker
        config's ``health_check_interval`` with its ``health_check_timeout``, so a
        dead dependency that comes back is found sooner than its open period would;
        otherwise at the registered config's interval and timeout.
        """
        if state not in REJECTING:
            return config
        breaker_config = self._plugins[name].breaker.config
        return attrs.evolve(config, interval=breaker_config.health_check_interval,
                            timeout=breaker_config.health_check_timeout)

    def _plugin_health_check(self, name: str) -> Callable[[], Any] | None:
        """The plugin's own ``health_check``, looked up on every run (a restart may replace
        the plugin object), or None if the plugin has none now."""
        plugin = self.plugin_manager.get_plugin(name)
        if not callable(getattr(plugin, "health_check", None)):
            return None

        def check() -> Any:
            current = self.plugin_manager.get_plugin(name)
            if current is None:
                raise LookupError(f"plugin {name!r} is not loaded")
            return current.health_check()  # type: ignore[attr-defined]  # optional in Plugin

        return check

    def _recheck_at_new_pace(self, name: str, state: CircuitBreakerState) -> None:
        """The breaker started or stopped rejecting: switch its health-check config."""
        with self._lock:
            monitor = self._monitor
            registered = self._health_checks.get(name)
        if monitor is None or registered is None:
            return
        # KeyError: registered after the monitor stopped; watched from the next start().
        with contextlib.suppress(KeyError):
            monitor.reconfigure(name, self._health_config(name, registered[1], state))

    def _on_health_failure_limit(self, name: str, result: HealthCheckResult) -> None:
        """``max_failures`` failed checks in a row: a HEALTH_CHECK failure of the plugin."""
        self._own_thread()  # a monitor thread
        plugin = self._plugins[name]
        plugin.breaker.record_health_check(False)
        self.record_failure(
            name,
            FailureInfo(
                FailureType.HEALTH_CHECK,
                message=result.message or "health check failed",
                context={"check_type": result.check_type, "details": dict(result.details)},
            ),
        )

    def _on_healthy(self, name: str, result: HealthCheckResult) -> None:
        """A healthy check ends a crash loop's wait (its next episode starts now), lets
        an OPEN breaker try a call now (unless a strategy holds it open: a hold is a
        hold), and ends an open-ended degradation. During an episode the episode
        owns the breaker; a plugin failed for good stays so until reset_plugin()."""
        self._own_thread()  # a monitor thread
        plugin = self._plugins[name]
        plugin.breaker.record_health_check(True)
        now = self.clock.monotonic()
        with self._lock:
            if plugin.failed_for_good or plugin.episode is not None:
                return
            probe = plugin.crash_loop
            if plugin.degraded and plugin.degraded_until is None:
                plugin.degraded = False
            held = plugin.hold_until is not None and now < plugin.hold_until
        if probe:
            self._probe(plugin)
        elif not held and plugin.breaker.state is OPEN:
            self._move_breaker(plugin.breaker.allow_trial)
