"""The recovery manager: turns a failing plugin into a recovered one without a person.

Each registered plugin gets a circuit breaker (and, optionally, an active health
check and a fallback). Failures reach the manager three ways: a call through
:meth:`RecoveryManager.execute_with_recovery` (or straight through the plugin's
breaker) that trips the breaker open, a health check that fails
``max_failures`` times in a row, or :meth:`RecoveryManager.record_failure`.
A recoverable failure starts a recovery *episode* on one of the manager's worker
threads:

- one episode per plugin at a time; failures that arrive meanwhile are counted in it;
- the breaker is REPAIRING for the episode, so callers are rejected (or served the
  fallback) instead of hitting a plugin that is being restarted;
- each attempt runs the plugin's configured strategy alone, if it has one, else
  every strategy that can handle the failure in priority order until one succeeds;
  every strategy run is audited, and a strategy that raises or outlives
  ``strategy_timeout`` has failed (a stuck one is abandoned and reported);
- up to ``max_recovery_attempts`` attempts, ``recovery_backoff_base *
  recovery_backoff_factor**k`` seconds apart on the manager's clock;
- exhausted: breaker held OPEN, plugin marked failed, one "recovery_exhausted" alert;
- restart intensity, as in OTP supervisors: more than ``max_episodes_per_period``
  episodes within ``episode_period`` marks the plugin failed instead of starting
  another; ``stable_period`` seconds without a failure forget the history.

A failed plugin stays failed (breaker held open) until :meth:`reset_plugin`.

Time: everything runs on the manager's clock. The back-off between attempts is
a pause (:func:`recovery._clock.pause`): on the real clock ``stop()`` interrupts
it; a :class:`recovery.testing.FakeClock` is advanced through it at once, so an
episode of several attempts completes without the test moving the clock (it
sees the clock moved by the back-offs). A strategy's timeout is a wait for the
strategy to finish: on a FakeClock it passes only when the clock is advanced
past it (``clock.wait_for_waiters(1)`` tells when an episode is parked on one).
"""

from __future__ import annotations

import collections
import contextlib
import functools
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import attrs

from recovery import _clock
from recovery import _validate as v
from recovery._impl import Dispatcher, Route
from recovery.alerts import AlertDispatcher, AlertHandler, AlertKind, AlertThresholds
from recovery.audit import AuditLogger
from recovery.breaker import CircuitBreaker
from recovery.config import CircuitBreakerConfig
from recovery.failures import Classifier, FailureInfo, FailureType, classify
from recovery.health import HealthCheckConfig, HealthCheckResult, HealthMonitor
from recovery.plugins import PluginManager
from recovery.state import CircuitBreakerState
from recovery.strategies import (
    BUILTIN_STRATEGIES,
    RecoveryContext,
    RecoveryStrategy,
    builtin_strategy,
)

_logger = logging.getLogger("recovery.manager")
R = TypeVar("R")
_OPEN = CircuitBreakerState.OPEN
_CLOSED = CircuitBreakerState.CLOSED
_REJECTING = (CircuitBreakerState.OPEN, CircuitBreakerState.REPAIRING)


def _strategy_names(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    for plugin, strategy in value.items():
        if not isinstance(plugin, str) or not isinstance(strategy, str) or not strategy:
            raise ValueError(
                f"{attribute.name} must map plugin names to strategy names, "
                f"got {plugin!r}: {strategy!r}"
            )


def _strategy_configs(value: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(value, Mapping):
        raise TypeError(f"recovery_strategy_configs must be a mapping, got {value!r}")
    configs: dict[str, dict[str, Any]] = {}
    for name, options in value.items():
        if not isinstance(name, str) or not isinstance(options, Mapping):
            raise TypeError(
                "recovery_strategy_configs must map strategy names to option mappings, "
                f"got {name!r}: {options!r}"
            )
        priority = options.get("priority")
        if priority is not None and (isinstance(priority, bool) or not isinstance(priority, int)):
            raise TypeError(
                f"recovery_strategy_configs[{name!r}]['priority'] must be an int, got {priority!r}"
            )
        configs[name] = dict(options)
    return configs


def _mapping(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise TypeError(f"plugin_recovery_strategies must be a mapping, got {value!r}")
    return dict(value)


def _instance_of(cls: type) -> Callable[[Any, attrs.Attribute[Any], Any], None]:
    def check(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if not isinstance(value, cls):
            raise TypeError(f"{attribute.name} must be a {cls.__name__}, got {value!r}")

    return check


def _optional_name(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and (not isinstance(value, str) or not value):
        raise ValueError(f"{attribute.name} must be a strategy name or None, got {value!r}")


@attrs.frozen(kw_only=True)
class RecoveryConfig:
    """How the manager recovers plugins. ``RecoveryConfig()`` is a sensible default.

    Durations are seconds (``timedelta`` accepted); bad values raise ``ValueError`` or
    ``TypeError`` naming the field and the value.

    - ``enable_auto_recovery`` (True): start episodes for recoverable failures; off,
      failures are only counted, alerted and (if unrecoverable) acted on.
    - ``health_check_interval`` (30.0), ``health_check_timeout`` (5.0): the default
      period and time limit of a plugin's active health check.
    - ``max_recovery_attempts`` (3): attempts per episode.
    - ``recovery_backoff_base`` (1.0), ``recovery_backoff_factor`` (2.0),
      ``max_recovery_backoff`` (60.0): the wait before attempt ``k + 2`` is
      ``min(base * factor**k, max_recovery_backoff)``.
    - ``default_circuit_breaker`` (``CircuitBreakerConfig()``): for plugins registered
      without one.
    - ``default_recovery_strategy`` (None): a strategy name used alone for every plugin
      without an entry in ``plugin_recovery_strategies``; None tries the chain.
    - ``plugin_recovery_strategies`` ({}): plugin name → the one strategy to use for it.
    - ``recovery_strategy_configs`` ({}): strategy name → options: ``priority`` for any
      strategy, and the built-ins' own knobs (restart: ``shutdown_timeout``; degrade:
      ``hold``; backoff: ``base``, ``cap``, ``jitter``). Custom strategies see their
      entry as ``ctx.config``.
    - ``enable_health_checking`` (True), ``health_check_concurrency`` (4): run the
      plugins' health checks on a pool of this many threads.
    - ``enable_alerting`` (True), ``alert_thresholds`` (``AlertThresholds()``).
    - ``max_episodes_per_period`` (5), ``episode_period`` (300.0): restart intensity.
    - ``stable_period`` (600.0): seconds without a failure after which a plugin's
      episode history is forgotten.
    - ``strategy_timeout`` (30.0): the most one strategy run may take.
    - ``recovery_workers`` (2): threads that run episodes (episodes of different
      plugins run in parallel up to this many).
    """

    enable_auto_recovery: bool = attrs.field(default=True, validator=v.boolean)
    health_check_interval: float = attrs.field(
        default=30.0, converter=v.seconds, validator=v.positive_seconds
    )
    max_recovery_attempts: int = attrs.field(default=3, validator=v.positive_int)
    recovery_backoff_factor: float = attrs.field(default=2.0, validator=v.factor)
    recovery_backoff_base: float = attrs.field(
        default=1.0, converter=v.seconds, validator=v.positive_seconds
    )
    max_recovery_backoff: float = attrs.field(
        default=60.0, converter=v.seconds, validator=v.positive_seconds
    )
    default_circuit_breaker: CircuitBreakerConfig = attrs.field(
        factory=CircuitBreakerConfig, validator=_instance_of(CircuitBreakerConfig)
    )
    default_recovery_strategy: str | None = attrs.field(default=None, validator=_optional_name)
    plugin_recovery_strategies: dict[str, str] = attrs.field(
        factory=dict, converter=_mapping, validator=_strategy_names
    )
    recovery_strategy_configs: dict[str, dict[str, Any]] = attrs.field(
        factory=dict, converter=_strategy_configs
    )
    enable_health_checking: bool = attrs.field(default=True, validator=v.boolean)
    health_check_timeout: float = attrs.field(
        default=5.0, converter=v.seconds, validator=v.positive_seconds
    )
    health_check_concurrency: int = attrs.field(default=4, validator=v.positive_int)
    enable_alerting: bool = attrs.field(default=True, validator=v.boolean)
    alert_thresholds: AlertThresholds = attrs.field(
        factory=AlertThresholds, validator=_instance_of(AlertThresholds)
    )
    max_episodes_per_period: int = attrs.field(default=5, validator=v.positive_int)
    episode_period: float = attrs.field(
        default=300.0, converter=v.seconds, validator=v.positive_seconds
    )
    stable_period: float = attrs.field(
        default=600.0, converter=v.seconds, validator=v.positive_seconds
    )
    strategy_timeout: float = attrs.field(
        default=30.0, converter=v.seconds, validator=v.positive_seconds
    )
    recovery_workers: int = attrs.field(default=2, validator=v.positive_int)

    def __attrs_post_init__(self) -> None:
        for name, options in self.recovery_strategy_configs.items():
            if name in BUILTIN_STRATEGIES:
                builtin_strategy(name, options)  # raises on an unknown or bad knob

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1-based) before the next."""
        delay = self.recovery_backoff_base * self.recovery_backoff_factor ** (attempt - 1)
        return min(delay, self.max_recovery_backoff)


class _Episode:
    """One recovery of one plugin, from the failure that started it to its end."""

    __slots__ = ("attempts", "failure", "failures", "started", "wall_started")

    def __init__(self, failure: FailureInfo, started: float) -> None:
        self.failure = failure
        self.started = started
        self.wall_started = time.time()
        self.failures = 1
        self.attempts = 0


class _Plugin:
    """The manager's bookkeeping for one plugin; guarded by the manager's lock."""

    __slots__ = (
        "_degraded",
        "actions",
        "attempts",
        "breaker",
        "consecutive_failures",
        "degraded_until",
        "episode",
        "failed",
        "failed_reason",
        "history",
        "last_action",
        "last_action_success",
        "last_trouble",
        "name",
        "route",
    )

    def __init__(
        self, name: str, breaker: CircuitBreaker, fallback: Callable[..., Any] | None
    ) -> None:
        self.name = name
        self.breaker = breaker
        self.route = Route(breaker, fallback)
        # Strategy runs by (action, success), for status and the Prometheus collector.
        self.actions: collections.Counter[tuple[str, bool]] = collections.Counter()
        self.degraded = False
        self.degraded_until: float | None = None
        self.failed = False
        self.failed_reason: str | None = None
        self.episode: _Episode | None = None
        self.history: collections.deque[float] = collections.deque()
        self.consecutive_failures = 0
        self.last_trouble: float | None = None
        self.last_action: str | None = None
        self.last_action_success: bool | None = None
        self.attempts = 0

    @property
    def degraded(self) -> bool:
        return self._degraded

    @degraded.setter
    def degraded(self, value: bool) -> None:
        # A degraded plugin with a fallback has its calls diverted off the C path to
        # _diverted_call, which serves the fallback while the degradation lasts.
        self._degraded = value
        self.route.diverted = value and self.route.fallback is not None


class _Run:
    """A strategy (or a step of one) running on its own thread under a timeout."""

    __slots__ = ("error", "finished", "label", "started", "wake")

    def __init__(self, label: str) -> None:
        self.label = label
        self.started = time.time()
        self.wake = threading.Event()  # set when it finishes, or by stop()
        self.finished = False
        self.error: BaseException | None = None


# What record_failure decided, acted on outside the lock.
_COUNTED, _START, _UNRECOVERABLE, _INTENSITY = range(4)


class RecoveryManager(Dispatcher):
    """Supervise plugins: breakers, health checks, recovery episodes, audit and alerts.

    ``execute_with_recovery(plugin_name, fn, *args, **kwargs)`` is inherited from
    the hot-path ``Dispatcher`` (compiled when the extension is built): it runs
    ``fn`` through the plugin's breaker and returns its value or re-raises its
    exception; while the breaker rejects (open, half-open full, repairing) or the
    plugin is degraded, the plugin's fallback answers instead, if it has one, else
    the ``CircuitOpenError`` is raised. A call that trips the breaker records the
    failure, classified from its exception, which may start an episode. An
    unknown plugin name is a ``KeyError``.

    ``plugin_manager`` holds the plugins (:class:`~recovery.plugins.PluginManager`);
    ``audit_logger`` receives every strategy run; ``logger`` (default
    ``logging.getLogger("recovery.manager")``) gets the manager's own messages and
    the alerts. ``clock`` (default: real) drives back-offs, strategy timeouts and
    health-check schedules; ``classifier`` (default :func:`~recovery.classify`) maps
    the exception that tripped a breaker to a failure.

    Use ``with RecoveryManager(...) as rm:`` or ``start()``/``stop()``. Episodes only
    start while the manager runs; before ``start()`` failures are counted only.

    ``cluster`` (a :class:`recovery.cluster.Cluster`) shares every plugin's breaker
    with the other processes of the fleet: each registered breaker is attached, and
    the status gains a ``cluster`` section. The cluster's own ``start()``/``stop()``
    stay with its owner, who may share it between managers.
    """

    def __init__(
        self,
        plugin_manager: PluginManager,
        audit_logger: AuditLogger,
        config: RecoveryConfig | None = None,
        logger: logging.Logger | None = None,
        *,
        clock: _clock.Clock | None = None,
        classifier: Classifier = classify,
        cluster: Any = None,
    ) -> None:
        if cluster is not None and not callable(getattr(cluster, "attach", None)):
            raise TypeError(f"cluster must be a recovery.cluster.Cluster, got {cluster!r}")
        if config is None:
            config = RecoveryConfig()
        elif not isinstance(config, RecoveryConfig):
            raise TypeError(f"config must be a RecoveryConfig, got {config!r}")
        if not callable(classifier):
            raise TypeError(f"classifier must be callable, got {classifier!r}")
        super().__init__()
        self.plugin_manager = plugin_manager
        self.audit_logger = audit_logger
        self.config = config
        self.logger = logger if logger is not None else _logger
        self._health_logger = logger  # None: the monitor logs to "recovery.health"
        self.clock: _clock.Clock = clock if clock is not None else _clock.REAL_CLOCK
        self._classifier = classifier
        self._cluster = cluster
        self._thresholds = config.alert_thresholds
        self._alerts = AlertDispatcher(self.logger, enabled=config.enable_alerting)

        # One lock for all bookkeeping. Re-entrant because a breaker transition made
        # while holding it (begin_repair) runs listeners, which may read status.
        self._lock = threading.RLock()
        self._idle = threading.Condition(self._lock)
        self._plugins: dict[str, _Plugin] = {}
        self._strategies: dict[str, RecoveryStrategy] = {}
        self._open_episodes = 0
        self._queue: collections.deque[_Plugin] = collections.deque()
        self._work_ready = threading.Condition(self._lock)
        self._workers: list[threading.Thread] = []
        self._runs: set[_Run] = set()
        self._stuck: set[_Run] = set()
        self._running = False
        self._stopping = threading.Event()
        self._local = threading.local()
        # A HealthMonitor starts once, so each start() gets a fresh one, which is given
        # every registered check.
        self._monitor: HealthMonitor | None = None
        self._health_checks: dict[str, tuple[Callable[[], Any], HealthCheckConfig]] = {}
        for name in BUILTIN_STRATEGIES:
            options = config.recovery_strategy_configs.get(name, {})
            self._strategies[name] = builtin_strategy(name, options)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Start the worker threads (and the health monitor). Idempotent."""
        with self._lock:
            if self._running:
                return
            self._running = True
            self._stopping = threading.Event()
            self._workers = [
                threading.Thread(
                    target=self._work, name=f"recovery-worker-{i}", daemon=True
                )
                for i in range(self.config.recovery_workers)
            ]
        for name in {*self.config.plugin_recovery_strategies.values(),
                     self.config.default_recovery_strategy} - {None, *self._strategies}:
            self.logger.warning("configured recovery strategy %r is not registered", name)
        for worker in self._workers:
            worker.start()
        if self.config.enable_health_checking:
            monitor = HealthMonitor(
                concurrency=self.config.health_check_concurrency,
                clock=self.clock,
                logger=self._health_logger,
            )
            with self._lock:
                self._monitor = monitor
                for name, (check, check_config) in self._health_checks.items():
                    self._watch(monitor, name, check, check_config)
            monitor.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop and join every thread the manager started; returns within about ``timeout``.

        Back-off waits and strategy waits are interrupted at once. An episode in
        flight ends unrecovered (breaker OPEN). A strategy still running is abandoned
        on its daemon thread and stays listed in ``status["stuck_strategies"]`` until
        it returns; queued episodes are dropped the same way.
        """
        deadline = time.monotonic() + timeout
        with self._lock:
            if not self._running:
                return
            self._running = False
            self._stopping.set()
            for run in self._runs:
                run.wake.set()
            workers = self._workers
            self._workers = []
            self._work_ready.notify_all()
        for worker in workers:
            worker.join(max(deadline - time.monotonic(), 0.0))
            if worker.is_alive():
                self.logger.error("recovery worker %s did not stop in %.3gs", worker.name,
                                  timeout)
        if self._monitor is not None:
            self._monitor.stop(max(deadline - time.monotonic(), 0.0))

    def __enter__(self) -> RecoveryManager:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- registration ----------------------------------------------------------------------

    def register_plugin(
        self,
        name: str,
        breaker_config: CircuitBreakerConfig | None = None,
        health_check: Callable[[], Any] | None = None,
        fallback: Callable[..., Any] | None = None,
        health_check_config: HealthCheckConfig | None = None,
    ) -> CircuitBreaker:
        """Put plugin ``name`` under supervision; returns its breaker.

        ``health_check`` (default: the plugin's own ``health_check()`` if it has one)
        is run on the health monitor with ``health_check_config`` (default: this
        config's interval and timeout, the breaker config's ``max_health_checks``).
        ``fallback(*args, **kwargs)`` serves ``execute_with_recovery`` while the plugin
        is degraded or its breaker rejects. A name registered twice is a ValueError.
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"plugin name must be a non-empty str, got {name!r}")
        if fallback is not None and not callable(fallback):
            raise TypeError(f"fallback must be callable, got {fallback!r}")
        if health_check is not None and not callable(health_check):
            raise TypeError(f"health_check must be callable, got {health_check!r}")
        if breaker_config is None:
            breaker_config = self.config.default_circuit_breaker
        with self._lock:
            if name in self._plugins:
                raise ValueError(f"plugin {name!r} is already registered")
            breaker = CircuitBreaker(name, breaker_config, clock=self.clock)
            plugin = _Plugin(name, breaker, fallback)
            self._plugins[name] = plugin
            self._add_route(name, plugin.route)
        breaker.add_listener(self._on_transition)
        breaker.add_failure_listener(self._on_failure)
        if self._cluster is not None:
            self._cluster.attach(breaker)
        check = health_check if health_check is not None else self._plugin_health_check(name)
        if self.config.enable_health_checking and check is not None:
            if health_check_config is None:
                health_check_config = HealthCheckConfig(
                    interval=self.config.health_check_interval,
                    timeout=self.config.health_check_timeout,
                    max_failures=breaker_config.max_health_checks,
                )
            with self._lock:
                self._health_checks[name] = (check, health_check_config)
                if self._running and self._monitor is not None:
                    self._watch(self._monitor, name, check, health_check_config)
        return breaker

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
        config's ``health_check_interval`` with its ``health_check_timeout`` (SPEC
        §4.1), so a dead dependency that comes back is found sooner than its open
        period would; otherwise at the registered config's interval and timeout.
        """
        if state not in _REJECTING:
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

    def register_strategy(self, name: str, strategy: RecoveryStrategy) -> None:
        """Add a strategy under ``name`` (the action written to the audit log).

        Its priority may be overridden by ``recovery_strategy_configs[name]["priority"]``.
        A name already registered (the built-ins included) is a ValueError.
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"strategy name must be a non-empty str, got {name!r}")
        if not isinstance(strategy, RecoveryStrategy):
            raise TypeError(
                f"strategy must have name, priority, can_handle() and recover(), got {strategy!r}"
            )
        with self._lock:
            if name in self._strategies:
                raise ValueError(f"strategy {name!r} is already registered")
            self._strategies[name] = strategy

    def add_alert_handler(self, handler: AlertHandler) -> None:
        """Call ``handler(alert)`` for every alert (on the thread that raised it)."""
        self._alerts.add_handler(handler)

    def breaker(self, name: str) -> CircuitBreaker:
        return self._plugin(name).breaker

    def _plugin(self, name: str) -> _Plugin:
        try:
            return self._plugins[name]
        except KeyError:
            raise KeyError(f"unknown plugin {name!r}") from None

    # -- the call path ----------------------------------------------------------------------

    def _diverted_call(
        self, plugin_name: str, fn: Callable[..., Any], args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        """A degraded plugin's call: its fallback answers while the degradation lasts."""
        plugin = self._plugins[plugin_name]
        if self._still_degraded(plugin):
            return plugin.route.serve_fallback(args, kwargs)
        return self.execute_with_recovery(plugin_name, fn, *args, **kwargs)

    def _on_failure(self, breaker: CircuitBreaker, exc: BaseException | None,
                    tripped: bool) -> None:
        """Failure listener of every breaker: a trip records a failure; check the rate.

        It runs on the failing thread before the caller sees the exception, so the
        failure that opened the breaker is classified from the very exception.
        """
        plugin = self._plugins[breaker.name]
        if tripped:
            if exc is not None:
                failure = self._classify(exc)
            elif breaker.config.slow_call_rate_threshold is not None:
                failure = FailureInfo(FailureType.TIMEOUT, message="slow calls opened the circuit")
            else:
                failure = FailureInfo(FailureType.ERROR, message="a call was recorded as failed")
            self.record_failure(plugin.name, failure)
        if self._thresholds.failure_rate is not None:
            self._check_failure_rate(plugin)

    def _classify(self, exc: BaseException) -> FailureInfo:
        try:
            return self._classifier(exc)
        except Exception:
            self.logger.exception("classifier failed on %r; recording an error", exc)
            return FailureInfo(FailureType.ERROR, message=str(exc) or type(exc).__name__)

    def _still_degraded(self, plugin: _Plugin) -> bool:
        until = plugin.degraded_until
        if until is None or self.clock.monotonic() < until:
            return True
        with self._lock:
            if plugin.degraded_until == until:
                plugin.degraded = False
                plugin.degraded_until = None
        return False

    def _check_failure_rate(self, plugin: _Plugin) -> None:
        """Alert when the breaker's window failure rate reaches the threshold.

        Checked after each failed call, once the window holds ``minimum_requests``
        outcomes (a rate over two calls says nothing). The breaker clears its window
        when it opens, so the rate is seen on the failures before a trip.
        """
        threshold = self._thresholds.failure_rate
        if threshold is None or self._alerts.is_fired(plugin.name, AlertKind.FAILURE_RATE):
            return
        raw = plugin.breaker._snapshot()
        count = raw["window_count"]
        if count < plugin.breaker.config.minimum_requests or count == 0:
            return
        rate = raw["window_failures"] / count
        if rate >= threshold:
            self._alerts.fire_once(
                plugin.name,
                AlertKind.FAILURE_RATE,
                f"window failure rate {rate:.0%} >= {threshold:.0%} over {count} calls",
            )

    def _on_transition(
        self, breaker: CircuitBreaker, old: CircuitBreakerState, new: CircuitBreakerState
    ) -> None:
        """Breaker listener: opening or closing switches the health-check pace; a close
        means the plugin recovered (trips are failures, seen by :meth:`_on_failure`;
        for that, transitions the manager makes are ignored)."""
        if (old in _REJECTING) != (new in _REJECTING):
            self._recheck_at_new_pace(breaker.name, new)
        if getattr(self._local, "controlling", False):
            return
        if new is _CLOSED:
            self._recovered(breaker.name)

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

    def _recovered(self, name: str) -> None:
        plugin = self._plugins[name]
        with self._lock:
            plugin.consecutive_failures = 0
        self._alerts.rearm(name)

    def _control(self, action: Callable[[], object]) -> None:
        """Move a breaker on the manager's behalf; the manager's listener ignores it."""
        self._local.controlling = True
        try:
            action()
        finally:
            self._local.controlling = False

    # -- failures ----------------------------------------------------------------------------

    def record_failure(self, plugin_name: str, failure: FailureInfo) -> None:
        """Count a failure of the plugin, and act on it; returns at once.

        Recoverable, auto-recovery on, manager running, no episode yet: an episode
        is queued for a worker and the breaker goes REPAIRING. During an episode the
        failure is counted in it. Not recoverable: the breaker is held open, the
        plugin marked failed until :meth:`reset_plugin`, and an "unrecoverable"
        alert raised.
        """
        plugin = self._plugin(plugin_name)
        if not isinstance(failure, FailureInfo):
            raise TypeError(f"failure must be a FailureInfo, got {failure!r}")
        now = self.clock.monotonic()
        config = self.config
        with self._lock:
            plugin.consecutive_failures += 1
            count = plugin.consecutive_failures
            quiet_since = plugin.last_trouble
            plugin.last_trouble = now
            action = _COUNTED
            if not failure.recoverable and not plugin.failed:
                plugin.failed = True
                plugin.failed_reason = "unrecoverable"
                action = _UNRECOVERABLE
            elif plugin.episode is not None:
                plugin.episode.failures += 1
            elif plugin.failed or not config.enable_auto_recovery or not self._running:
                pass
            else:
                history = plugin.history
                if quiet_since is not None and now - quiet_since >= config.stable_period:
                    history.clear()
                while history and now - history[0] >= config.episode_period:
                    history.popleft()
                if len(history) >= config.max_episodes_per_period:
                    plugin.failed = True
                    plugin.failed_reason = "restart_intensity"
                    action = _INTENSITY
                else:
                    history.append(now)
                    plugin.episode = _Episode(failure, now)
                    plugin.attempts = 0
                    self._open_episodes += 1
                    # Under the lock, so stop() cannot slip in between REPAIRING and
                    # the queueing: every REPAIRING plugin has its episode queued.
                    self._control(plugin.breaker.begin_repair)
                    self._queue.append(plugin)
                    self._work_ready.notify()
        limit = self._thresholds.consecutive_failures
        if limit is not None and count >= limit:
            self._alerts.fire_once(
                plugin_name,
                AlertKind.CONSECUTIVE_FAILURES,
                f"{count} consecutive failures (threshold {limit}); last: {failure.type.value}"
                f"{': ' + failure.message if failure.message else ''}",
            )
        if action is _UNRECOVERABLE:
            self._control(lambda: plugin.breaker.force_open(math.inf))
            self._alerts.fire_once(
                plugin_name,
                AlertKind.UNRECOVERABLE,
                f"unrecoverable {failure.type.value} failure: {failure.message}; "
                "breaker held open until reset_plugin()",
            )
        elif action is _INTENSITY:
            self._control(lambda: plugin.breaker.force_open(math.inf))
            self._alerts.fire_once(
                plugin_name,
                AlertKind.RECOVERY_EXHAUSTED,
                f"more than {config.max_episodes_per_period} recovery episodes within "
                f"{config.episode_period:g}s; breaker held open until reset_plugin()",
            )

    def reset_plugin(self, name: str) -> None:
        """Forget the plugin's failures: not failed, not degraded, breaker closed, alerts re-armed.

        An episode in flight is left to finish.
        """
        plugin = self._plugin(name)
        with self._lock:
            plugin.failed = False
            plugin.failed_reason = None
            plugin.degraded = False
            plugin.degraded_until = None
            plugin.consecutive_failures = 0
            plugin.history.clear()
            plugin.last_trouble = None
        self._control(plugin.breaker.reset)
        self._alerts.rearm(name)

    # -- health checks ------------------------------------------------------------------------

    def _on_health_failure_limit(self, name: str, result: HealthCheckResult) -> None:
        """``max_failures`` failed checks in a row: a HEALTH_CHECK failure of the plugin."""
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
        """A healthy check lets an OPEN breaker try a call now, and ends an open-ended
        degradation. A failed plugin stays failed: only reset_plugin() clears that."""
        plugin = self._plugins[name]
        plugin.breaker.record_health_check(True)
        with self._lock:
            if plugin.failed:
                return
            if plugin.degraded and plugin.degraded_until is None:
                plugin.degraded = False
        if plugin.breaker.state is _OPEN:
            self._control(plugin.breaker.allow_trial)

    # -- episodes -----------------------------------------------------------------------------

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block (real time) until no episode is running or queued; False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._open_episodes == 0, timeout)

    def _work(self) -> None:
        stopping = self._stopping
        while True:
            with self._lock:
                while not self._queue and not stopping.is_set():
                    self._work_ready.wait()
                if not self._queue:
                    return
                plugin = self._queue.popleft()
            self._run_episode(plugin, stopping)

    def _run_episode(self, plugin: _Plugin, stopping: threading.Event) -> None:
        episode = plugin.episode
        assert episode is not None
        config = self.config
        outcome = "interrupted"
        try:
            for attempt in range(1, config.max_recovery_attempts + 1):
                if stopping.is_set() or plugin.failed:
                    break
                with self._lock:
                    episode.attempts = plugin.attempts = attempt
                if self._attempt(plugin, episode.failure, stopping):
                    outcome = "recovered"
                    break
                self._check_recovery_time(plugin, episode)
                if attempt < config.max_recovery_attempts and _clock.pause(
                    self.clock, stopping, config.backoff(attempt)
                ):
                    break
            else:
                outcome = "exhausted"
        except Exception:
            self.logger.exception("recovery episode of plugin %r failed", plugin.name)
        finally:
            self._finish_episode(plugin, episode, outcome)

    def _finish_episode(self, plugin: _Plugin, episode: _Episode, outcome: str) -> None:
        breaker = plugin.breaker
        if outcome == "recovered":
            self._control(lambda: breaker.end_repair(True))
        elif outcome == "exhausted" and not plugin.failed:
            with self._lock:
                plugin.failed = True
                plugin.failed_reason = "exhausted"
            self._control(lambda: breaker.force_open(math.inf))
            self._alerts.fire_once(
                plugin.name,
                AlertKind.RECOVERY_EXHAUSTED,
                f"{episode.attempts} recovery attempts failed for {episode.failure.type.value} "
                "failure; breaker held open until reset_plugin()",
            )
        else:
            self._control(lambda: breaker.end_repair(False))
        self._check_recovery_time(plugin, episode)
        self.logger.info(
            "recovery episode of plugin %r %s after %d attempt(s) (%d failure(s) counted)",
            plugin.name, outcome, episode.attempts, episode.failures,
        )
        with self._lock:
            plugin.episode = None
            plugin.last_trouble = self.clock.monotonic()
            self._open_episodes -= 1
            self._idle.notify_all()

    def _check_recovery_time(self, plugin: _Plugin, episode: _Episode) -> None:
        limit = self._thresholds.recovery_time
        if limit is None:
            return
        elapsed = self.clock.monotonic() - episode.started
        if elapsed > limit:
            self._alerts.fire_once(
                plugin.name,
                AlertKind.RECOVERY_TIME,
                f"recovery running for {elapsed:.3g}s (threshold {limit:g}s)",
            )

    def _chain(self, name: str, failure: FailureInfo) -> list[tuple[str, RecoveryStrategy]]:
        """The strategies to try, in order, for one attempt."""
        config = self.config
        with self._lock:
            strategies = dict(self._strategies)
        chosen = config.plugin_recovery_strategies.get(name, config.default_recovery_strategy)
        if chosen is not None:
            strategy = strategies.get(chosen)
            if strategy is None:
                self.logger.error("recovery strategy %r of plugin %r is not registered",
                                  chosen, name)
                return []
            return [(chosen, strategy)]
        ranked = sorted(
            strategies.items(),
            key=lambda item: -config.recovery_strategy_configs.get(item[0], {}).get(
                "priority", item[1].priority
            ),
        )
        chain = []
        for strategy_name, strategy in ranked:
            try:
                handles = strategy.can_handle(failure)
            except Exception:
                self.logger.exception("can_handle of strategy %r failed", strategy_name)
                handles = False
            if handles:
                chain.append((strategy_name, strategy))
        return chain

    def _attempt(self, plugin: _Plugin, failure: FailureInfo, stopping: threading.Event) -> bool:
        """Run the chain once; True as soon as one strategy succeeds."""
        chain = self._chain(plugin.name, failure)
        if not chain:
            self.logger.warning("no recovery strategy handles %s failure of plugin %r",
                                failure.type.value, plugin.name)
        plugin_config = self._plugin_config(plugin.name)
        for strategy_name, strategy in chain:
            if stopping.is_set() or plugin.failed:
                return False
            ctx = RecoveryContext(
                plugin_manager=self.plugin_manager,
                breaker=plugin.breaker,
                clock=self.clock,
                logger=self.logger,
                config=self.config.recovery_strategy_configs.get(strategy_name, {}),
                plugin_config=plugin_config,
                run_bounded=self._run_bounded,
            )
            success = False
            try:
                success = self._run_bounded(
                    functools.partial(strategy.recover, plugin.name, failure, ctx),
                    self.config.strategy_timeout,
                    f"{strategy_name} {plugin.name}",
                )
                if not success:
                    self.logger.error(
                        "recovery strategy %r for plugin %r still running after %.3gs; "
                        "abandoned", strategy_name, plugin.name, self.config.strategy_timeout,
                    )
            except Exception:
                self.logger.warning("recovery strategy %r failed for plugin %r",
                                    strategy_name, plugin.name, exc_info=True)
            self._audit(plugin.name, failure, strategy_name, success)
            with self._lock:
                plugin.last_action = strategy_name
                plugin.last_action_success = success
                plugin.actions[strategy_name, success] += 1
                if success and ctx.degraded:
                    plugin.degraded = True
                    plugin.degraded_until = (
                        None if ctx.degraded_for is None
                        else self.clock.monotonic() + ctx.degraded_for
                    )
            if success:
                return True
        return False

    def _plugin_config(self, name: str) -> Any:
        """The config to load the plugin with: the plugin manager's ``config_of(name)``
        when it has one (PluginRegistry does), else None."""
        config_of = getattr(self.plugin_manager, "config_of", None)
        if not callable(config_of):
            return None
        try:
            return config_of(name)
        except KeyError:
            return None

    def _audit(self, name: str, failure: FailureInfo, action: str, success: bool) -> None:
        try:
            self.audit_logger.log_failure_recovery(name, failure.type.value, action, success)
        except Exception:
            self.logger.exception("audit logger failed to record %s of plugin %r", action, name)

    def _run_bounded(self, fn: Callable[[], object], timeout: float, label: str) -> bool:
        """Run ``fn`` on its own daemon thread; wait at most ``timeout`` seconds of the clock.

        True when it returned (its exception is re-raised here); False when it is
        still running: it is then abandoned and listed as stuck until it returns.
        ``stop()`` cuts the wait short.
        """
        run = _Run(label)

        def target() -> None:
            try:
                fn()
            except BaseException as exc:
                run.error = exc
            finally:
                with self._lock:
                    run.finished = True
                    self._stuck.discard(run)
                run.wake.set()

        thread = threading.Thread(target=target, name=f"recovery {label}", daemon=True)
        with self._lock:
            self._runs.add(run)
            if self._stopping.is_set():
                run.wake.set()
        thread.start()
        _clock.wait(self.clock, run.wake, timeout)
        with self._lock:
            self._runs.discard(run)
            if not run.finished:
                self._stuck.add(run)
                return False
        thread.join(1.0)  # it has finished; only its last bytecodes remain
        if run.error is not None:
            if isinstance(run.error, Exception):
                raise run.error
            raise RuntimeError(f"{label} raised {run.error!r}") from run.error
        return True

    # -- status ------------------------------------------------------------------------------

    def get_recovery_status(self) -> dict[str, Any]:
        """A JSON-serialisable view of the manager and every plugin (SPEC §7 shape)."""
        monitor = self._monitor
        with self._lock:
            plugins = list(self._plugins.values())
            stuck = sorted(self._stuck, key=lambda run: run.started)
            status: dict[str, Any] = {
                "running": self._running,
                "auto_recovery": self.config.enable_auto_recovery,
                "health_checking": self.config.enable_health_checking,
                "alerting": self.config.enable_alerting,
                "episodes_in_progress": self._open_episodes,
                "stuck_strategies": [
                    {"label": run.label, "since": _clock.iso_utc(run.started)} for run in stuck
                ],
                "stuck_health_checks": monitor.stuck_threads if monitor is not None else 0,
            }
            recovery = {plugin.name: self._recovery_view(plugin) for plugin in plugins}
            watched = set(self._health_checks)
        status["plugins"] = {
            plugin.name: {
                "circuit_breaker": _breaker_view(plugin.breaker),
                "health_check": _health_view(
                    monitor if plugin.name in watched else None, plugin.name
                ),
                "recovery": recovery[plugin.name],
            }
            for plugin in plugins
        }
        if self._cluster is not None:
            status["cluster"] = self._cluster.status()
        return status

    def _recovery_view(self, plugin: _Plugin) -> dict[str, Any]:
        episode = plugin.episode
        return {
            "in_progress": episode is not None,
            "attempts": plugin.attempts,
            "last_action": plugin.last_action,
            "last_action_success": plugin.last_action_success,
            "degraded": plugin.degraded,
            "fallbacks_served": plugin.route.fallbacks_served,
            "failed": plugin.failed,
            "failed_reason": plugin.failed_reason,
            "consecutive_failures": plugin.consecutive_failures,
            "episode_failures": episode.failures if episode is not None else 0,
            "episode_started": _clock.iso_utc(episode.wall_started if episode else None),
            "recent_episodes": len(plugin.history),
            "actions": {
                action: {"success": plugin.actions[action, True],
                         "failure": plugin.actions[action, False]}
                for action in sorted({action for action, _ in plugin.actions})
            },
        }


def _health_view(monitor: HealthMonitor | None, name: str) -> dict[str, Any]:
    """The monitor's view of the plugin (SPEC §7 shape), plus ``enabled``.

    A plugin that is not being checked (no check, health checking off, or the
    manager not started) shows the same keys, empty, with ``enabled`` False.
    """
    if monitor is not None:
        try:
            return {**monitor.status(name), "enabled": True}
        except KeyError:  # registered after the last stop(): watched from the next start()
            pass
    return {"last_check": None, "last_result": None, "consecutive_fails": 0, "stuck": False,
            "enabled": False}


def _breaker_view(breaker: CircuitBreaker) -> dict[str, Any]:
    metrics = breaker.metrics()
    retry = metrics.next_retry_time
    if retry is not None and not math.isfinite(retry):
        # Held open until reset: there is no retry time to show.
        metrics = attrs.evolve(metrics, next_retry_time=None)
    return metrics.to_dict()

