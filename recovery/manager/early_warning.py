"""The manager's early warning: one forecaster over every plugin's and dependency's breaker.

With ``RecoveryConfig(early_warning=True)`` the manager runs a
:class:`recovery.forecast.Forecaster` on its own clock from ``start()`` to
``stop()``, watching each registered breaker (a fresh one at each start, as the
health monitor: what it learned of a breaker is learned again). A warning
raised is an "early_warning" alert, once per warning, delivered on the
manager's alert thread like every alert; when it ends, the next one alerts
again. Each plugin's status shows its warnings by kind
(:class:`recovery.status.PluginWarning`), from which the exporters and the
dashboard read them. A raised warning is also an onset of an incident
(:mod:`recovery.incidents`), and one that ends without a trip says the breaker is
well again. A mixin of :class:`recovery.RecoveryManager`.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from recovery import _clock
from recovery.alerts import AlertDispatcher, AlertKind
from recovery.breaker import CircuitBreaker
from recovery.config import RecoveryConfig
from recovery.forecast.forecaster import Forecaster
from recovery.forecast.forecaster import Warning as ForecastWarning
from recovery.manager.supervised import Supervised
from recovery.state import CircuitBreakerState
from recovery.status import EarlyWarning, PluginWarning

WARNING_KINDS = ("failure_rate", "latency")

Latest = Mapping[tuple[str, str], ForecastWarning]
"""The forecaster's active warnings by (breaker name, kind), as of its last sample."""


class EarlyWarnings:
    """The early-warning part of :class:`recovery.RecoveryManager` (a mixin)."""

    config: RecoveryConfig
    clock: _clock.Clock
    _lock: threading.RLock
    _plugins: dict[str, Supervised]
    _alerts: AlertDispatcher
    _forecaster: Forecaster | None

    if TYPE_CHECKING:
        def _on_early_warning(self, name: str) -> None: ...
        def _on_early_warning_ended(self, name: str, tripped: bool) -> None: ...

    def _new_forecaster(self) -> Forecaster | None:
        """Under the lock, at ``start()``: a forecaster watching every breaker (not
        started yet), or None with early warning off."""
        if not self.config.early_warning:
            return None
        forecaster = Forecaster(clock=self.clock)
        for plugin in self._plugins.values():
            forecaster.watch(plugin.breaker)
        forecaster.add_listener(functools.partial(self._on_warning, forecaster))
        self._forecaster = forecaster
        return forecaster

    def _forget_forecaster(self) -> Forecaster | None:
        """Under the lock, at ``stop()``: the forecaster to stop. Its warnings go with
        it (nothing watches any more); their counts stay."""
        forecaster, self._forecaster = self._forecaster, None
        for plugin in self._plugins.values():
            plugin.warnings.clear()
        return forecaster

    def _watch_for_warnings(self, breaker: CircuitBreaker) -> None:
        """Under the lock: a breaker registered while the manager runs is watched too."""
        if self._forecaster is not None:
            self._forecaster.watch(breaker)

    def _on_warning(self, forecaster: Forecaster, warning: ForecastWarning) -> None:
        """Forecaster listener, on its thread: keep the plugin's warnings; a raise alerts.

        Alerting is through the dispatcher's ``fire`` (not ``fire_once``): each warning
        is raised once and ends once, so once per warning is the forecaster's doing.
        """
        with self._lock:
            plugin = self._plugins.get(warning.breaker)
            if forecaster is not self._forecaster or plugin is None:
                return  # a poll that ended after stop(), or a breaker not registered here
            held = plugin.warnings.get(warning.kind)
            if warning.ended is not None:
                if held is None or held[0].since != warning.since:
                    return
                del plugin.warnings[warning.kind]
            elif held is not None:
                return
            else:
                since = time.time() - max(self.clock.monotonic() - warning.since, 0.0)
                plugin.warnings[warning.kind] = (warning, since)
                plugin.warnings_raised[warning.kind] += 1
        if warning.ended is not None:
            tripped = plugin.breaker.state is not CircuitBreakerState.CLOSED
            self._on_early_warning_ended(plugin.name, tripped)
            return
        self._on_early_warning(plugin.name)
        self._alerts.fire(plugin.name, AlertKind.EARLY_WARNING, warning_message(
            warning.kind, warning.current, warning.baseline, warning.expected_trip_in))

    def _latest_warnings(self) -> tuple[bool, Latest]:
        """Outside the lock, for ``status()``: whether the manager watches, and the
        forecaster's active warnings with their latest numbers."""
        forecaster = self._forecaster
        if forecaster is None:
            return False, {}
        return True, {(warning.breaker, warning.kind): warning
                      for warning in forecaster.warnings()}

    def _warning_view(self, plugin: Supervised, latest: Latest) -> PluginWarning:
        """Under the lock: the plugin's warnings by kind, with the latest numbers."""
        return PluginWarning(*(_kind_view(plugin, kind, latest) for kind in WARNING_KINDS))


def _kind_view(plugin: Supervised, kind: str, latest: Latest) -> EarlyWarning:
    raised = plugin.warnings_raised[kind]
    held = plugin.warnings.get(kind)
    if held is None:
        return EarlyWarning(raised=raised) if raised else _QUIET
    warning, since = held
    fresh = latest.get((plugin.name, kind))
    if fresh is not None and fresh.since == warning.since:
        warning = fresh
    return EarlyWarning(True, since, warning.baseline, warning.current,
                        warning.expected_trip_in, raised)


_QUIET = EarlyWarning()


def warning_message(
    kind: str, current: float, baseline: float, expected_trip_in: float | None
) -> str:
    """An early warning in words: what moved, from what, and when the breaker would open."""
    if kind == "failure_rate":
        text = f"failure rate {current:.1%}, usually {baseline:.1%}"
    else:
        text = f"typical call {current * 1000:.0f}ms, usually {baseline * 1000:.0f}ms"
    if expected_trip_in is None:
        return text + "; its breaker is still closed"
    if expected_trip_in < 1.0:
        return text + "; at this trend its breaker opens any moment now"
    return text + f"; at this trend its breaker opens in about {expected_trip_in:.0f}s"
