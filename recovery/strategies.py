"""Recovery strategies: the actions the manager may take on a failing plugin.

A strategy has a ``name``, a ``priority`` (higher is tried first), decides with
``can_handle(failure)`` whether it applies, and acts with
``recover(plugin_name, failure, ctx)``, which returns None on success and raises
on failure (any other return value but True is a failure too). The manager runs
one strategy at a time per plugin, on its own worker thread and under a timeout,
so a strategy may block.

The built-ins, from most to least drastic for the plugin (docs/design.md, "Strategies"):

========================  ========  =============================================
strategy                  priority  handles
========================  ========  =============================================
RestartStrategy           100       timeout, error, panic, health_check, initialization
ReloadStrategy            80        timeout, error, health_check; not critical
ResetStrategy             60        health_check; timeout at warning
GracefulDegradation...    40        resource_limit; timeout not critical
BackoffStrategy           20        any recoverable failure (the last resort)
========================  ========  =============================================

Their knobs (and priority) are constructor keywords, which the manager fills from
``RecoveryConfig.recovery_strategy_configs[name]``.

A strategy that returns has done its action, not proven the plugin well: the
manager verifies the plugin afterwards (its health check, or its breaker's
half-open trials). Backoff (a hold) and degradation (a fallback) claim no fix and
are not verified; the breaker's next trial after them is the test.
"""

from __future__ import annotations

import logging
import math
import random
import threading
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Protocol, runtime_checkable

import attrs

from recovery import _validate as v
from recovery._backoff import Backoff
from recovery._bounded import BoundedRunner as BoundedRunner  # re-exported: public here
from recovery._bounded import run_inline as run_inline  # re-exported: public here
from recovery._clock import Clock
from recovery.breaker import CircuitBreaker
from recovery.config import STRATEGY_KNOBS, check_strategy_options
from recovery.failures import FailureInfo, FailureType, Severity
from recovery.plugins import PluginManager
from recovery.state import CircuitBreakerState

_logger = logging.getLogger("recovery.strategies")

_MAX_LEVEL = 64
"""The backoff strategy's hold grows no further past this level: its uncapped power stays finite."""


@attrs.define(kw_only=True)
class RecoveryContext:
    """What a strategy may use while it works on one plugin.

    - ``plugin_manager``: the :class:`~recovery.plugins.PluginManager` holding it.
    - ``breaker``: the plugin's breaker (REPAIRING while the episode runs; a strategy
      may move it, e.g. reset or hold it open, and the manager then leaves it so).
    - ``clock`` and ``logger``: the manager's.
    - ``config``: this strategy's entry of ``RecoveryConfig.recovery_strategy_configs``.
    - ``plugin_config``: the plugin's own configuration, passed to ``initialize``,
      ``reload`` and ``load_plugin``.
    - ``run_bounded``: run a step that may hang (a plugin's shutdown) with a timeout.

    A strategy that leaves the plugin serving a fallback calls :meth:`mark_degraded`.
    """

    plugin_manager: PluginManager
    breaker: CircuitBreaker
    clock: Clock
    logger: logging.Logger = _logger
    config: Mapping[str, Any] = attrs.field(factory=dict)
    plugin_config: Any = None
    run_bounded: BoundedRunner = run_inline
    degraded: bool = attrs.field(default=False, init=False)
    degraded_for: float | None = attrs.field(default=None, init=False)

    def mark_degraded(self, hold: float | None = None) -> None:
        """Serve the plugin's fallback for ``hold`` seconds (None: until healthy or reset)."""
        self.degraded = True
        self.degraded_for = hold

    def plugin(self, plugin_name: str) -> Any:
        """The loaded plugin, or LookupError: a strategy cannot act on a missing plugin."""
        plugin = self.plugin_manager.get_plugin(plugin_name)
        if plugin is None:
            raise LookupError(f"plugin {plugin_name!r} is not loaded")
        return plugin


@runtime_checkable
class RecoveryStrategy(Protocol):
    """What the manager needs from a strategy."""

    @property
    def name(self) -> str: ...

    @property
    def priority(self) -> int: ...

    def can_handle(self, failure: FailureInfo) -> bool: ...

    def recover(self, plugin_name: str, failure: FailureInfo, ctx: RecoveryContext) -> object:
        """Act on the plugin: return None when done, raise when it failed.

        A return value other than None or True (``False``, ``"failed"``) is taken
        as a failed attempt too, with a warning: a strategy that reports failure
        by returning it must not be audited as a success.
        """
        ...


_PRIORITY = v.integer()
_NAME = v.name()
_CALLABLE = v.callable_()


class _BuiltinStrategy:
    """Shared by the built-ins: a name and a validated priority."""

    name: ClassVar[str]
    default_priority: ClassVar[int]
    # Its keywords' validators, from the table a RecoveryConfig is checked by; a
    # subclass registered under another name keeps its parent's.
    _knobs: ClassVar[Mapping[str, v.Validator]]

    def __init__(self, *, priority: int | None = None) -> None:
        self.priority: int = (
            self.default_priority if priority is None else self._knob("priority", priority)
        )

    def _knob(self, knob: str, value: Any) -> Any:
        """``value``, checked as the same knob in a ``RecoveryConfig`` is."""
        return v.check(self._knobs[knob], knob, value)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(priority={self.priority})"


class RestartStrategy(_BuiltinStrategy):
    """Shut the plugin down (waiting at most ``shutdown_timeout`` seconds), then load it again.

    A shutdown that raises or hangs does not stop the restart: a plugin that cannot
    shut down cleanly is the usual reason to restart it. Loading is the step that
    must succeed.

    It also handles ``initialization``: a plugin whose
    ``initialize`` failed is not running, and loading it again is the only
    built-in action that can bring it back (backoff alone would wait forever).
    """

    name = "restart"
    _knobs = STRATEGY_KNOBS[name]
    default_priority = 100
    _handles = frozenset(
        {
            FailureType.TIMEOUT,
            FailureType.ERROR,
            FailureType.PANIC,
            FailureType.HEALTH_CHECK,
            FailureType.INITIALIZATION,
        }
    )

    def __init__(self, *, priority: int | None = None, shutdown_timeout: float = 5.0) -> None:
        super().__init__(priority=priority)
        self.shutdown_timeout = float(self._knob("shutdown_timeout", shutdown_timeout))

    def can_handle(self, failure: FailureInfo) -> bool:
        return failure.type in self._handles

    def recover(self, plugin_name: str, failure: FailureInfo, ctx: RecoveryContext) -> None:
        plugin = ctx.plugin(plugin_name)
        try:
            finished = ctx.run_bounded(
                plugin.shutdown, self.shutdown_timeout, f"shutdown {plugin_name}"
            )
        except Exception:
            ctx.logger.warning("shutdown of plugin %r failed; loading it anyway", plugin_name,
                               exc_info=True)
        else:
            if not finished:
                ctx.logger.warning(
                    "shutdown of plugin %r still running after %.3gs; loading it anyway",
                    plugin_name, self.shutdown_timeout,
                )
        ctx.plugin_manager.load_plugin(plugin, ctx.plugin_config)


class ReloadStrategy(_BuiltinStrategy):
    """Reload the plugin in place: ``plugin.reload(config)``, else ``plugin.initialize(config)``.

    Cheaper than a restart (no shutdown), so it is not trusted with critical failures.
    """

    name = "reload"
    _knobs = STRATEGY_KNOBS[name]
    default_priority = 80
    _handles = frozenset({FailureType.TIMEOUT, FailureType.ERROR, FailureType.HEALTH_CHECK})

    def can_handle(self, failure: FailureInfo) -> bool:
        return failure.type in self._handles and failure.severity is not Severity.CRITICAL

    def recover(self, plugin_name: str, failure: FailureInfo, ctx: RecoveryContext) -> None:
        plugin = ctx.plugin(plugin_name)
        reload = getattr(plugin, "reload", None)
        if callable(reload):
            reload(ctx.plugin_config)
        else:
            plugin.initialize(ctx.plugin_config)


class ResetStrategy(_BuiltinStrategy):
    """Close the breaker: the plugin is believed fine and the failures were transient."""

    name = "reset"
    _knobs = STRATEGY_KNOBS[name]
    default_priority = 60

    def can_handle(self, failure: FailureInfo) -> bool:
        return failure.type is FailureType.HEALTH_CHECK or (
            failure.type is FailureType.TIMEOUT and failure.severity is Severity.WARNING
        )

    def recover(self, plugin_name: str, failure: FailureInfo, ctx: RecoveryContext) -> None:
        ctx.breaker.reset()


class GracefulDegradationStrategy(_BuiltinStrategy):
    """Let the plugin shed load (``plugin.degrade(failure)`` if it has one) and serve its fallback.

    The plugin stays degraded for ``hold`` seconds of the manager's clock (None: until
    a healthy health check or ``reset_plugin``); then calls go to it again, through
    the breaker's half-open trials.
    """

    name = "degrade"
    _knobs = STRATEGY_KNOBS[name]
    default_priority = 40

    def __init__(self, *, priority: int | None = None, hold: float | None = 60.0) -> None:
        super().__init__(priority=priority)
        self.hold = None if hold is None else float(self._knob("hold", hold))

    def can_handle(self, failure: FailureInfo) -> bool:
        return failure.type is FailureType.RESOURCE_LIMIT or (
            failure.type is FailureType.TIMEOUT and failure.severity is not Severity.CRITICAL
        )

    def recover(self, plugin_name: str, failure: FailureInfo, ctx: RecoveryContext) -> None:
        plugin = ctx.plugin_manager.get_plugin(plugin_name)
        degrade = getattr(plugin, "degrade", None)
        if callable(degrade):
            degrade(failure)
        ctx.mark_degraded(self.hold)


class BackoffStrategy(_BuiltinStrategy):
    """Hold the breaker open for ``base * 2**n`` seconds (jittered down, capped at ``cap``).

    ``n`` counts this plugin's back-offs since its breaker last closed, so a plugin
    that keeps failing is left alone longer each time, and one that recovers starts
    again from ``base``. ``jitter`` is the fraction by which a hold may be shortened
    at random, so plugins that failed together do not all come back at once.
    """

    name = "backoff"
    _knobs = STRATEGY_KNOBS[name]
    default_priority = 20

    def __init__(
        self,
        *,
        priority: int | None = None,
        base: float = 1.0,
        cap: float = 300.0,
        jitter: float = 0.1,
    ) -> None:
        super().__init__(priority=priority)
        self.base = float(self._knob("base", base))
        self.cap = float(self._knob("cap", cap))
        self.jitter = float(self._knob("jitter", jitter))
        # Uncapped: the jitter shortens the grown hold, and the cap applies after it.
        self._growth = Backoff(self.base, 2.0, math.inf)
        self._levels: dict[str, int] = {}
        self._watched: set[int] = set()
        self._lock = threading.Lock()

    def can_handle(self, failure: FailureInfo) -> bool:
        return failure.recoverable

    def level(self, plugin_name: str) -> int:
        """How many back-offs this plugin has had since its breaker last closed."""
        with self._lock:
            return self._levels.get(plugin_name, 0)

    def _on_transition(
        self, breaker: CircuitBreaker, old: CircuitBreakerState, new: CircuitBreakerState
    ) -> None:
        if new is CircuitBreakerState.CLOSED:
            with self._lock:
                self._levels.pop(breaker.name, None)

    def recover(self, plugin_name: str, failure: FailureInfo, ctx: RecoveryContext) -> None:
        breaker = ctx.breaker
        with self._lock:
            level = self._levels.get(plugin_name, 0)
            self._levels[plugin_name] = level + 1
            watch = id(breaker) not in self._watched
            self._watched.add(id(breaker))
        if watch:
            breaker.add_listener(self._on_transition)
        hold = self._growth.delay(min(level, _MAX_LEVEL))
        hold *= 1.0 - self.jitter * random.random()
        hold = min(hold, self.cap)
        ctx.logger.info("holding plugin %r open for %.3gs (back-off %d)", plugin_name, hold,
                        level + 1)
        breaker.force_open(hold)


class CustomStrategy:
    """A strategy from two functions: ``can_handle(failure)`` and ``recover(name, failure, ctx)``.

    A ``can_handle`` that raises is logged (to ``logger``) and taken as False.
    """

    def __init__(
        self,
        name: str,
        priority: int,
        can_handle: Callable[[FailureInfo], bool],
        recover: Callable[[str, FailureInfo, RecoveryContext], object],
        logger: logging.Logger | None = None,
    ) -> None:
        self.name = v.check(_NAME, "name", name)
        self.priority = v.check(_PRIORITY, "priority", priority)
        self._can_handle = v.check(_CALLABLE, "can_handle", can_handle)
        self._recover = v.check(_CALLABLE, "recover", recover)
        self._logger = logger if logger is not None else _logger

    def can_handle(self, failure: FailureInfo) -> bool:
        try:
            return bool(self._can_handle(failure))
        except Exception:
            self._logger.exception("can_handle of strategy %r failed on %r", self.name, failure)
            return False

    def recover(self, plugin_name: str, failure: FailureInfo, ctx: RecoveryContext) -> object:
        return self._recover(plugin_name, failure, ctx)

    def __repr__(self) -> str:
        return f"CustomStrategy({self.name!r}, priority={self.priority})"


Builtin = (
    RestartStrategy
    | ReloadStrategy
    | ResetStrategy
    | GracefulDegradationStrategy
    | BackoffStrategy
)
BUILTIN_STRATEGIES: Mapping[str, type[Builtin]] = {
    cls.name: cls
    for cls in (
        RestartStrategy,
        ReloadStrategy,
        ResetStrategy,
        GracefulDegradationStrategy,
        BackoffStrategy,
    )
}
"""The built-ins by the name they are registered (and audited) under."""


def builtin_strategy(name: str, options: Mapping[str, Any]) -> Builtin:
    """Build the built-in ``name`` with its knobs from ``options`` (a strategy config entry).

    An unknown knob raises ``ValueError`` naming the strategy, the knob and the knobs
    it has.
    """
    check_strategy_options(name, options)
    return BUILTIN_STRATEGIES[name](**options)
