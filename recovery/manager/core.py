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
  every strategy that can handle the failure until one succeeds, in the order its
  own audit history says works best (``strategy_order="learned"``; with no history
  the priority order) or in priority order (``"priority"``);
  every strategy run is audited, and a strategy that raises or outlives
  ``strategy_timeout`` has failed (a stuck one is abandoned and reported);
- an action is not a recovery: the attempt succeeds only once the plugin is
  *verified*, by its health check run once, or without one by its breaker's
  half-open trials within ``verify_timeout`` (a deadline: the episode is parked
  and holds no worker meanwhile);
- up to ``max_recovery_attempts`` attempts, ``recovery_backoff_base *
  recovery_backoff_factor**k`` seconds apart on the manager's clock;
- exhausted, or restart intensity exceeded (as in OTP supervisors: more than
  ``max_episodes_per_period`` episodes within ``episode_period``): a *crash loop*,
  as Kubernetes' CrashLoopBackOff. The breaker is held OPEN, the plugin is failed
  (out of service), and a new episode of one attempt (a probe) starts after
  ``crash_loop_delay``, doubling each time up to ``crash_loop_max_delay``; a
  passing health check starts it at once. A probe that verifies the plugin ends
  the crash loop. ``stable_period`` seconds without a failure forget the back-off
  state. Alerts "crash_loop" and "crash_loop_ended" mark its two ends.

Only a non-recoverable failure, or ``give_up_after`` failed episodes in a row,
leaves a plugin failed (breaker held open) until :meth:`reset_plugin`.

A *dependency* (:meth:`RecoveryManager.register_dependency`: an upstream nothing
here can restart) is recovered by probes instead of restarts, in its own words.
User callbacks (alert handlers, audit and log records) are delivered on the
manager's own thread, each bounded (:mod:`recovery.manager.outbox`).

The parts live in modules of one concern each: the episode runner
(:mod:`recovery.manager.episodes`, given what it needs and returning how the episode
ended), and, mixed into the manager, the worker threads that run episodes and
settle their outcomes (:mod:`recovery.manager.workers`), the crash loop and its timer
(:mod:`recovery.manager.crash_loop`), the link to the health monitor
(:mod:`recovery.manager.health_link`), dependencies (:mod:`recovery.manager.dependencies`) and
the status view (:mod:`recovery.manager.status_view`), early warning
(:mod:`recovery.manager.early_warning`), the learned strategy order
(:mod:`recovery.manager.learning_link`); the bookkeeping records are in
:mod:`recovery.manager.supervised`.

Time: everything runs on the manager's clock. The back-off between attempts is
a pause (:func:`recovery._deadline.pause`): on the real clock ``stop()`` interrupts
it; a :class:`recovery.testing.FakeClock` is advanced through it at once, so an
episode of several attempts completes without the test moving the clock (it
sees the clock moved by the back-offs). A strategy's timeout, a verification's
``verify_timeout`` and a crash loop's delay are deadlines: on a FakeClock they
pass only when the clock is advanced past them (``clock.wait_for_waiters(n)``
tells when a thread is parked on one; the timer thread is parked on the clock
while some plugin waits in a crash loop or for a verification).
"""

from __future__ import annotations

import collections
import enum
import functools
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from recovery import _clock
from recovery import _validate as v
from recovery._backoff import Backoff
from recovery._bounded import ThreadRunner
from recovery._impl import Dispatcher, Route
from recovery.alerts import AlertDispatcher, AlertHandler, AlertKind
from recovery.audit import AuditLogger, MemoryAuditLogger
from recovery.breaker import CircuitBreaker
from recovery.config import CircuitBreakerConfig
from recovery.config import RecoveryConfig as RecoveryConfig  # re-exported: its old home
from recovery.failures import (
    Classifier,
    FailureInfo,
    FailureType,
    classify,
    exception_message,
    safe_repr,
)
from recovery.forecast.forecaster import Forecaster
from recovery.health import HealthCheckConfig, HealthMonitor
from recovery.learning import StrategyLearner
from recovery.manager.crash_loop import CrashLoops
from recovery.manager.dependencies import DEPENDENCY, PLUGIN, Dependencies, declared_needs, label
from recovery.manager.early_warning import EarlyWarnings
from recovery.manager.episodes import EpisodeHooks, EpisodeRunner
from recovery.manager.forked import ForkRenewal
from recovery.manager.health_link import HealthLink
from recovery.manager.incident_link import IncidentLink, new_tracker
from recovery.manager.learning_link import LearningLink
from recovery.manager.outbox import Outbox
from recovery.manager.status_view import StatusView
from recovery.manager.supervised import (
    CLOSED,
    REJECTING,
    FailedReason,
    Supervised,
)
from recovery.manager.supervised import EPISODE_OUTCOMES as EPISODE_OUTCOMES  # its old home
from recovery.manager.workers import Workers
from recovery.plugins import PluginManager, PluginRegistry
from recovery.state import CircuitBreakerState, TripReason
from recovery.strategies import BUILTIN_STRATEGIES, RecoveryStrategy, builtin_strategy

if TYPE_CHECKING:
    from recovery.cluster.core import Cluster  # needs the redis extra at run time

_logger = logging.getLogger("recovery.manager")
R = TypeVar("R")


class _FailureResponse(enum.Enum):
    """What record_failure decided under the lock, done once it is released (None:
    the failure is only counted)."""

    START_EPISODE = enum.auto()
    HOLD_UNRECOVERABLE = enum.auto()
    START_CRASH_LOOP = enum.auto()


class RecoveryManager(
    Dispatcher, Workers, CrashLoops, StatusView, Dependencies, HealthLink, EarlyWarnings,
    IncidentLink, LearningLink, ForkRenewal,
):
    """Supervise plugins: breakers, health checks, recovery episodes, audit and alerts.

    ``execute_with_recovery(plugin_name, fn, *args, **kwargs)`` is inherited from
    the hot-path ``Dispatcher`` (compiled when the extension is built): it runs
    ``fn`` through the plugin's breaker and returns its value or re-raises its
    exception; while the breaker rejects (open, half-open full, repairing) or the
    plugin is degraded, the plugin's fallback answers instead, if it has one, else
    the ``CircuitOpenError`` is raised. A call that trips the breaker records the
    failure, classified from its exception, which may start an episode. An
    unknown plugin name is a ``KeyError``.

    ``plugin_manager`` holds the plugins (:class:`~recovery.plugins.PluginManager`;
    default: an empty :class:`~recovery.PluginRegistry`, for a manager of
    dependencies only); ``audit_logger`` receives every strategy run (through
    ``log_recovery_attempt`` when it has one, else ``log_failure_recovery``;
    default: :class:`~recovery.MemoryAuditLogger` ``(maxlen=10_000)``, queryable,
    each record also logged on the ``recovery.audit`` logger).
    :meth:`register_plugin` puts a plugin of the plugin manager under supervision,
    :meth:`register_dependency` an upstream nothing here can restart. ``logger`` (default
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
        plugin_manager: PluginManager | None = None,
        audit_logger: AuditLogger | None = None,
        config: RecoveryConfig | None = None,
        logger: logging.Logger | None = None,
        *,
        clock: _clock.Clock | None = None,
        classifier: Classifier = classify,
        cluster: Cluster | None = None,
    ) -> None:
        if cluster is not None and not callable(getattr(cluster, "attach", None)):
            raise TypeError(f"cluster must be a recovery.cluster.Cluster, got {cluster!r}")
        if config is None:
            config = RecoveryConfig()
        elif not isinstance(config, RecoveryConfig):
            raise TypeError(f"config must be a RecoveryConfig, got {config!r}")
        if not callable(classifier):
            raise TypeError(f"classifier must be callable, got {classifier!r}")
        if plugin_manager is None:
            plugin_manager = PluginRegistry()
        if audit_logger is None:
            audit_logger = MemoryAuditLogger(maxlen=10_000)
        _check_collaborators(plugin_manager, audit_logger, logger, clock)
        super().__init__()
        self.plugin_manager = plugin_manager
        self.audit_logger = audit_logger
        self.config = config
        self.logger = logger if logger is not None else _logger
        self._health_logger = logger  # None: the monitor logs to "recovery.health"
        self.clock: _clock.Clock = clock if clock is not None else _clock.REAL_CLOCK
        self._classifier = classifier
        self._cluster = cluster
        if cluster is not None:
            cluster.report_for(self)
        self._thresholds = config.alert_thresholds
        # A crash loop's delay doubles with each entry, up to its cap.
        self._crash_backoff = Backoff(config.crash_loop_delay, 2.0, config.crash_loop_max_delay)
        # Steps that may hang (strategies, checks, user callbacks) run on threads of
        # their own; user callbacks are delivered on the manager's own thread.
        self._runner = ThreadRunner(self.clock, self._own_thread, config.max_abandoned_threads)
        self._outbox = Outbox(
            ThreadRunner(self.clock, self._own_thread, config.max_abandoned_threads),
            config.callback_timeout, self.logger)
        self._alerts = AlertDispatcher(self.logger, enabled=config.enable_alerting,
                                       post=self._outbox.post, describe=self._label,
                                       fold=self._fold_alert)
        self._fleet_incidents = None if cluster is None else self._fleet_share(cluster)
        self._tracker = new_tracker(config, self.clock, self._fleet_incidents)  # always on
        self._held_until: dict[str, float] = {}
        self._paged: set[str] = set()

        # One lock for all bookkeeping. Nothing user-supplied runs under it: breaker
        # moves (whose listeners are anyone's), alerts, audit records and log records
        # are decided under it and made after it is released, so a listener that
        # calls the manager, or waits for a thread that does, cannot deadlock it.
        # Re-entrant only so that a thread can ask whether it holds it (_is_owned).
        self._lock = threading.RLock()
        self._idle = threading.Condition(self._lock)
        self._plugins: dict[str, Supervised] = {}
        # Episodes whose verification waits for a trial off the workers, by plugin name.
        self._parked: dict[str, Supervised] = {}
        self._strategies: dict[str, RecoveryStrategy] = {}
        self._open_episodes = 0
        self._queue: collections.deque[Supervised] = collections.deque()
        self._work_ready = threading.Condition(self._lock)
        self._free_workers = 0  # workers waiting for an episode
        self._workers: list[threading.Thread] = []
        self._running = False
        self._stopping = threading.Event()
        self._timer_wake = threading.Event()  # a crash-loop deadline changed (or stop)
        self._local = threading.local()
        # A HealthMonitor starts once, so each start() gets a fresh one, which is given
        # every registered check.
        self._monitor: HealthMonitor | None = None
        self._health_checks: dict[str, tuple[Callable[[], Any], HealthCheckConfig]] = {}
        # Likewise a forecaster, with early_warning on: one per start().
        self._forecaster: Forecaster | None = None
        for name in BUILTIN_STRATEGIES:
            options = config.recovery_strategy_configs.get(name, {})
            self._strategies[name] = builtin_strategy(name, options)
        self._learner = StrategyLearner(verify_timeout=config.verify_timeout,
                                        random_seed=config.random_seed)
        self._history_read = False  # rebuilt from the audit log at the first start()
        self._episodes = EpisodeRunner(
            config, self.clock, self.logger, plugin_manager, audit_logger, self._lock,
            self._runner, self._outbox, self._alerts,
            EpisodeHooks(
                move_breaker=self._move_breaker, park=self._park, strategies=self._strategies_now,
                health_check=self._health_check_of, held_by_incident=self._held_by_incident,
                incident_id=self._incident_id, note_configured=self._note_configured,
                ordered=self._ordered, verify_window=self._verify_window, learn=self._learn,
            ))
        self._renew_after_fork()  # gunicorn --preload: a forked worker starts its own threads

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Start the worker threads (and the health monitor). Idempotent.

        All or nothing: the monitor is built and given every check before any
        thread starts, and a failure to start a thread stops what did start.
        """
        self._check_dependency_graph()
        self._read_history()
        with self._lock:
            if self._running:
                return
            monitor = None
            if self.config.enable_health_checking:
                monitor = HealthMonitor(
                    concurrency=self.config.health_check_concurrency,
                    clock=self.clock,
                    logger=self._health_logger,
                )
                for name, (check, check_config) in self._health_checks.items():
                    self._watch(monitor, name, check, check_config)
                self._monitor = monitor
            forecaster = self._new_forecaster()
            self._running = True
            self._stopping = stopping = threading.Event()
            self._runner.resume()
            self._timer_wake = wake = threading.Event()
            self._workers = [
                threading.Thread(
                    target=self._work, name=f"recovery-worker-{i}", daemon=True
                )
                for i in range(self.config.recovery_workers)
            ]
            self._workers.append(threading.Thread(
                target=self._time_deadlines, args=(stopping, wake),
                name="recovery-crash-loop-timer", daemon=True,
            ))
        for chosen in {*self.config.plugin_recovery_strategies.values(),
                       self.config.default_recovery_strategy} - {None, *self._strategies}:
            self.logger.warning("configured recovery strategy %r is not registered", chosen)
        try:
            self._outbox.start(self._own_thread)
            for worker in self._workers:
                worker.start()
            if monitor is not None:
                monitor.start()
            if forecaster is not None:
                forecaster.start()
            if self._fleet_incidents is not None:
                self._fleet_incidents.start()
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout: float = 10.0) -> None:
        """Stop and join every thread the manager started; returns within about ``timeout``.

        Back-off waits and strategy waits are interrupted at once. An episode in
        flight ends unrecovered (breaker OPEN); queued episodes are dropped the
        same way, and whatever still holds a breaker REPAIRING when the time is up
        is moved to OPEN: a stopped manager leaves no plugin REPAIRING. A strategy
        still running is abandoned on its daemon thread and stays listed in
        ``status["stuck_strategies"]`` until it returns.

        Called from one of the manager's own threads (an alert handler, a strategy,
        a health-check callback), which cannot join itself, ``stop()`` signals every
        thread to stop and returns at once; a short-lived thread joins them.
        """
        deadline = time.monotonic() + max(timeout, 0.0)
        with self._lock:
            if not self._running:
                return
            self._running = False
            self._stopping.set()
            self._runner.interrupt()
            workers = self._workers
            self._workers = []
            drained = list(self._queue)
            self._queue.clear()
            parked = [(plugin, plugin.episode) for plugin in self._parked.values()]
            self._parked.clear()
            self._work_ready.notify_all()
            monitor = self._monitor
            forecaster = self._forget_forecaster()
        self._timer_wake.set()
        if self._fleet_incidents is not None:
            self._fleet_incidents.stop()
        for plugin, episode in parked:  # audited as the unverified runs they are
            if episode is not None and episode.parked is not None:
                verification = episode.parked
                self._episodes.record_run(plugin, episode.failure, verification.action, True,
                                          True, None, verification.started)
            plugin.verification = None
            self._drop_episode(plugin)
        for plugin in drained:
            self._drop_episode(plugin)
        outbox = self._outbox.stop()
        if outbox is not None:
            workers = [*workers, outbox]
        if getattr(self._local, "owned", False):
            threading.Thread(
                target=self._join, args=(workers, monitor, forecaster, deadline),
                name="recovery-stopper",
                daemon=True,
            ).start()
            return
        self._join(workers, monitor, forecaster, deadline)

    def _own_thread(self) -> None:
        """Mark the calling thread as the manager's: a ``stop()`` made on it (from an
        alert handler, a strategy, a health-check callback) cannot join it, so it only
        signals and lets a helper thread join."""
        self._local.owned = True

    def _join(
        self, threads: list[threading.Thread], monitor: HealthMonitor | None,
        forecaster: Forecaster | None, deadline: float,
    ) -> None:
        me = threading.current_thread()
        for thread in threads:
            if thread is me or thread.ident is None:  # itself, or never started
                continue
            thread.join(max(deadline - time.monotonic(), 0.0))
            if thread.is_alive():
                self.logger.error("recovery thread %s did not stop in time; abandoned",
                                  thread.name)
        if monitor is not None:
            monitor.stop(max(deadline - time.monotonic(), 0.0))
        if forecaster is not None:
            forecaster.stop(max(deadline - time.monotonic(), 0.0))
        for plugin in list(self._plugins.values()):
            if plugin.breaker.state is CircuitBreakerState.REPAIRING:
                self._move_breaker(functools.partial(plugin.breaker.end_repair, False))

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
        depends_on: tuple[str, ...] = (),
        tags: Mapping[str, str] | None = None,
    ) -> CircuitBreaker:
        """Put plugin ``name`` under supervision; returns its breaker.

        ``health_check`` (default: the plugin's own ``health_check()`` if it has one)
        is run on the health monitor with ``health_check_config`` (default: this
        config's interval and timeout, the breaker config's ``max_health_checks``).
        ``fallback(*args, **kwargs)`` serves ``execute_with_recovery`` while the plugin
        is degraded or its breaker rejects. A name registered twice is a ValueError.
        ``depends_on`` (names of registrations it needs, checked at ``start()``) and
        ``tags`` (str to str) link it to others: their trips make one incident.
        """
        _check_name("plugin name", name)
        needs = declared_needs(depends_on, tags)
        if health_check_config is not None and not isinstance(
            health_check_config, HealthCheckConfig
        ):
            raise TypeError(
                f"health_check_config must be a HealthCheckConfig, got {health_check_config!r}"
            )
        if health_check is not None and not callable(health_check):
            raise TypeError(f"health_check must be callable, got {health_check!r}")
        if self.plugin_manager.get_plugin(name) is None:
            raise LookupError(
                f"plugin {name!r} is not in the plugin manager (it has: "
                f"{', '.join(map(repr, self.plugin_manager.list_plugins())) or 'none'}); "
                "an upstream you cannot restart is registered with register_dependency()")
        # Kept even with health checking off: a recovery is verified by it, once.
        check = health_check if health_check is not None else self._plugin_health_check(name)
        return self._supervise(name, PLUGIN, breaker_config, check, fallback, needs, tags,
                               health_check_config=health_check_config)

    def _supervise(
        self, name: str, kind: str, breaker_config: CircuitBreakerConfig | None,
        check: Callable[[], Any] | None, fallback: Callable[..., Any] | None,
        depends_on: tuple[str, ...] = (), tags: Mapping[str, str] | None = None,
        health_check_config: HealthCheckConfig | None = None,
    ) -> CircuitBreaker:
        """Register a plugin or a dependency: its breaker, route and health check."""
        _check_name(f"{kind} name", name)
        if breaker_config is not None and not isinstance(breaker_config, CircuitBreakerConfig):
            raise TypeError(
                f"breaker_config must be a CircuitBreakerConfig, got {breaker_config!r}"
            )
        if fallback is not None and not callable(fallback):
            raise TypeError(f"fallback must be callable, got {fallback!r}")
        if breaker_config is None:
            breaker_config = self.config.default_circuit_breaker
        if name not in self._plugins:
            self._declare(name, depends_on, tags)
        with self._lock:
            if name in self._plugins:
                raise ValueError(f"{name!r} is already registered")
            breaker = CircuitBreaker(name, breaker_config, clock=self.clock)
            plugin = Supervised(name, breaker, Route(breaker, fallback), kind, depends_on,
                                dict(tags or {}))
            self._plugins[name] = plugin
            self._add_route(name, plugin.route)
            self._watch_for_warnings(breaker)
        breaker.add_listener(self._on_transition)
        breaker.add_failure_listener(self._on_failure)
        if self._cluster is not None:
            self._cluster.attach(breaker)
        if check is not None:
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

    def call(self, name: str, fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
        """``fn(*args, **kwargs)`` through ``name``'s breaker, its fallback while it is
        down: the same as :meth:`execute_with_recovery`, named for dependencies."""
        return self.execute_with_recovery(name, fn, *args, **kwargs)  # type: ignore[no-any-return]

    def register_strategy(self, name: str, strategy: RecoveryStrategy) -> None:
        """Add a strategy under ``name`` (the action written to the audit log).

        Its priority may be overridden by ``recovery_strategy_configs[name]["priority"]``.
        Checked here, not at the first episode that would trip on it: ``name`` a
        non-empty str, ``can_handle`` and ``recover`` callable, ``priority`` an int.
        A name already registered (the built-ins included) is a ValueError.
        """
        _check_name("strategy name", name)
        if not isinstance(strategy, RecoveryStrategy):
            raise TypeError(
                f"strategy must have name, priority, can_handle() and recover(), got {strategy!r}"
            )
        for method in ("can_handle", "recover"):
            if not callable(getattr(strategy, method)):
                raise TypeError(f"{method} of strategy {name!r} must be callable")
        v.check(v.integer(), f"priority of strategy {name!r}", strategy.priority)
        with self._lock:
            if name in self._strategies:
                raise ValueError(f"strategy {name!r} is already registered")
            self._strategies[name] = strategy

    def add_alert_handler(self, handler: AlertHandler) -> None:
        """Call ``handler(alert)`` for every alert, on the manager's own thread.

        Never on the thread whose failure raised it: ``record_failure`` and calls
        through the manager return at once whatever a handler does. Handlers run
        one at a time, in order, each bounded by ``callback_timeout``; one that
        raises (anything) or blocks past it is counted in status and logged.
        """
        self._alerts.add_handler(handler)

    def _strategies_now(self) -> dict[str, RecoveryStrategy]:
        with self._lock:
            return dict(self._strategies)

    def _health_check_of(self, name: str) -> tuple[Callable[[], Any], HealthCheckConfig] | None:
        with self._lock:
            return self._health_checks.get(name)

    def _label(self, name: str) -> str:
        """A registration as messages name it: "plugin 'p'", "dependency 'payments'"."""
        plugin = self._plugins.get(name)
        return f"plugin {name!r}" if plugin is None else label(plugin)

    def breaker(self, name: str) -> CircuitBreaker:
        return self._plugin(name).breaker

    def _plugin(self, name: str) -> Supervised:
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
            elif breaker.trip_reason is TripReason.SLOW_CALLS:
                failure = FailureInfo(FailureType.TIMEOUT, message="slow calls opened the circuit")
            else:
                failure = FailureInfo(FailureType.ERROR, message="a call was recorded as failed")
            self._incident_onset(plugin.name)
            self.record_failure(plugin.name, failure)
        if self._thresholds.failure_rate is not None:
            self._check_failure_rate(plugin)

    def _classify(self, exc: BaseException) -> FailureInfo:
        """The classifier's verdict; a classifier that raises, or returns something
        else than a FailureInfo, gives an ERROR: the trip must start its episode."""
        try:
            failure = self._classifier(exc)
        except Exception:
            self.logger.exception("classifier failed on %s; recording an error",
                                  _message_of(exc))
        else:
            if isinstance(failure, FailureInfo):
                return failure
            self.logger.error("classifier returned %s for %s, not a FailureInfo; recording "
                              "an error", safe_repr(failure), _message_of(exc))
        return FailureInfo(FailureType.ERROR, message=_message_of(exc))

    def _still_degraded(self, plugin: Supervised) -> bool:
        until = plugin.degraded_until
        if until is None or self.clock.monotonic() < until:
            return True
        with self._lock:
            if plugin.degraded_until == until:
                plugin.degraded = False
                plugin.degraded_until = None
        return False

    def _check_failure_rate(self, plugin: Supervised) -> None:
        """Alert when the breaker's window failure rate reaches the threshold.

        Checked after each failed call, once the window holds ``minimum_requests``
        outcomes (a rate over two calls says nothing). The breaker clears its window
        when it opens, so the rate is seen on the failures before a trip.
        """
        threshold = self._thresholds.failure_rate
        if threshold is None or self._alerts.is_fired(plugin.name, AlertKind.FAILURE_RATE):
            return
        count, failures = plugin.breaker.window_counts()
        if count < plugin.breaker.config.minimum_requests or count == 0:
            return
        rate = failures / count
        if rate >= threshold:
            self._alerts.fire_once(
                plugin.name,
                AlertKind.FAILURE_RATE,
                f"window failure rate {rate:.0%} >= {threshold:.0%} over {count} calls",
            )

    def _on_transition(
        self, breaker: CircuitBreaker, old: CircuitBreakerState, new: CircuitBreakerState
    ) -> None:
        """Breaker listener: opening or closing switches the health-check pace; a
        transition may settle a verification in progress; a close means the plugin
        recovered (trips are failures, seen by :meth:`_on_failure`; for that,
        transitions the manager makes are ignored)."""
        if (old in REJECTING) != (new in REJECTING):
            self._recheck_at_new_pace(breaker.name, new)
        plugin = self._plugins[breaker.name]
        verification = plugin.verification
        if verification is not None and verification.observe(new):
            self._resume(plugin, verification)
        if getattr(self._local, "moving_breaker", False):
            return
        if new is CLOSED:
            self._recovered(plugin)

    def _recovered(self, plugin: Supervised) -> None:
        """The breaker closed on its own trials: the plugin serves again.

        A crash loop waiting for its next attempt ends too (someone closed the
        breaker by hand, or its trials passed).
        """
        with self._lock:
            plugin.consecutive_failures = 0
            plugin.failed_episodes_in_a_row = 0
            plugin.hold_until = None
            plugin.down_since = None
            ended = plugin.crash_loop and plugin.episode is None
            if ended:
                self._leave_crash_loop(plugin)
        self._alerts.rearm(plugin.name)
        if ended:
            self._crash_loop_ended(plugin)
        self._incident_recovered(plugin.name)

    def _move_breaker(self, action: Callable[[], object]) -> None:
        """Move a breaker on the manager's behalf; the manager's listener ignores it."""
        self._local.moving_breaker = True
        try:
            action()
        finally:
            self._local.moving_breaker = False

    # -- failures ----------------------------------------------------------------------------

    def record_failure(self, plugin_name: str, failure: FailureInfo) -> None:
        """Count a failure of the plugin, and act on it; returns at once.

        Recoverable, auto-recovery on, manager running, no episode yet: an episode
        is queued for a worker and the breaker goes REPAIRING, unless the plugin
        had ``max_episodes_per_period`` episodes within ``episode_period``: then it
        enters a crash loop instead. During an episode the failure is counted in
        it; in a crash loop it is only counted. Not recoverable: the breaker is
        held open, the plugin marked failed until :meth:`reset_plugin`, and an
        "unrecoverable" alert raised.
        """
        plugin = self._plugin(plugin_name)
        if not isinstance(failure, FailureInfo):
            raise TypeError(f"failure must be a FailureInfo, got {failure!r}")
        now = self.clock.monotonic()
        config = self.config
        response: _FailureResponse | None = None
        with self._lock:
            plugin.consecutive_failures += 1
            count = plugin.consecutive_failures
            quiet_since = plugin.last_trouble
            plugin.last_trouble = now
            plugin.last_failure = failure
            if not failure.recoverable and not plugin.failed_for_good:
                self._leave_crash_loop(plugin, failed_reason=FailedReason.UNRECOVERABLE)
                response = _FailureResponse.HOLD_UNRECOVERABLE
            elif plugin.episode is not None:
                plugin.episode.failures += 1
            elif plugin.failed or not config.enable_auto_recovery or not self._running:
                pass
            elif self._too_many_episodes(plugin, now, quiet_since):
                self._enter_crash_loop(plugin, FailedReason.INTENSITY, now)
                response = _FailureResponse.START_CRASH_LOOP
            else:
                self._open_episode(plugin, failure, now, probe=False)
                response = _FailureResponse.START_EPISODE
        if response is _FailureResponse.START_EPISODE:
            self._queue_episode(plugin)
        limit = self._thresholds.consecutive_failures
        if limit is not None and count >= limit:
            self._alerts.fire_once(
                plugin_name,
                AlertKind.CONSECUTIVE_FAILURES,
                f"{count} consecutive failures (threshold {limit}); last: {failure.type.value}"
                f"{': ' + failure.message if failure.message else ''}",
            )
        if response is _FailureResponse.HOLD_UNRECOVERABLE:
            self._move_breaker(lambda: plugin.breaker.force_open(math.inf))
            self._timer_wake.set()
            self._alerts.fire_once(
                plugin_name,
                AlertKind.UNRECOVERABLE,
                f"unrecoverable {failure.type.value} failure: {failure.message}; "
                "breaker held open until reset_plugin()",
            )
        elif response is _FailureResponse.START_CRASH_LOOP:
            self._crash_loop_started(
                plugin,
                f"more than {config.max_episodes_per_period} "
                f"{'failures' if plugin.kind == DEPENDENCY else 'recovery episodes'} within "
                f"{config.episode_period:g}s",
            )

    def reset_plugin(self, name: str) -> None:
        """Forget the plugin's failures: not failed, not in a crash loop, not degraded,
        breaker closed, back-off state cleared, alerts re-armed.

        An episode in flight is left to finish.
        """
        plugin = self._plugin(name)
        with self._lock:
            self._leave_crash_loop(plugin)
            plugin.crash_level = 0
            plugin.failed_episodes_in_a_row = 0
            plugin.hold_until = None
            plugin.degraded = False
            plugin.degraded_until = None
            plugin.consecutive_failures = 0
            plugin.history.clear()
            plugin.last_trouble = None
        self._move_breaker(plugin.breaker.reset)
        self._timer_wake.set()
        self._alerts.rearm(name)

    # -- episodes -----------------------------------------------------------------------------

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block (real time) until no episode is running or queued, and every alert,
        audit record and log record made so far is delivered; False on timeout.

        A plugin waiting in a crash loop for its next attempt is idle. A callback
        past ``callback_timeout`` counts as delivered (abandoned).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._idle:
            if not self._idle.wait_for(lambda: self._open_episodes == 0, timeout):
                return False
        left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
        return self._outbox.wait_idle(left)

    def is_quiescent(self) -> bool:
        """True when nothing the manager does can go on until its clock moves.

        That is: no strategy, ``can_handle``, verifying health check or user
        callback (alert handler, audit or log record) is running or waiting to be
        delivered; no health check is running or due; no episode waits for a free
        worker, and every episode in progress is parked, waiting for a half-open
        trial; no deadline of the timer (a crash loop's next attempt, a
        verification's end) is due: seeing one due wakes the timer to act on it.
        All that is left is time: a trial (or ``verify_timeout``), a breaker's open
        period or a strategy's hold, a crash loop's delay, the next health check.
        A back-off between attempts is not waiting: on a FakeClock the
        episode advances the clock through it itself.

        For tests that drive the manager with a :class:`recovery.testing.FakeClock`:
        advance the clock only while this is True. A step taken while a strategy runs
        is read as time the strategy took (a slow restart on a loaded machine is then
        abandoned as hung); a step taken while a health check runs may time it out::

            while not rm.wait_idle(0.002):
                if rm.is_quiescent():
                    clock.advance(1.0)

        A snapshot: a call or a transition made by another thread may end it at once.
        """
        monitor = self._monitor
        now = self.clock.monotonic()
        if not self._outbox.idle():
            return False
        with self._lock:
            if self._runner.running():
                return False
            queued = len(self._queue)
            if queued and self._free_workers:
                return False
            if self._open_episodes != len(self._parked) + queued:
                return False  # an episode is at work, or between a worker and its queue
            if self._due(now):
                self._timer_wake.set()  # it may have read the clock before it moved
                return False
        return monitor is None or not monitor.busy()


def _message_of(exc: BaseException) -> str:
    """``str(exc)`` (its class name when empty), even for an exception whose ``__str__`` raises."""
    return exception_message(exc) or type(exc).__name__


def _check_name(what: str, name: Any) -> None:
    if not isinstance(name, str):
        raise TypeError(f"{what} must be a str, got {name!r} ({type(name).__name__})")
    if not name.strip():
        raise ValueError(f"{what} must not be empty, got {name!r}")


def _check_collaborators(plugin_manager: Any, audit_logger: Any, logger: Any, clock: Any) -> None:
    """Refuse at construction what would fail at the first episode, or lose its records."""
    if not isinstance(plugin_manager, PluginManager):
        raise TypeError(
            "plugin_manager must be a PluginManager (get_plugin(), list_plugins(), "
            f"load_plugin()), got {plugin_manager!r}"
        )
    if not callable(getattr(audit_logger, "log_failure_recovery", None)):
        raise TypeError(
            "audit_logger must have log_failure_recovery(plugin_name, failure_type, "
            "recovery_action, success) (recovery.LoggingAuditLogger() logs the records), "
            f"got {audit_logger!r}"
        )
    if logger is not None and not isinstance(logger, logging.Logger):
        raise TypeError(f"logger must be a logging.Logger or None, got {logger!r}")
    if clock is not None and not (
        callable(getattr(clock, "monotonic", None)) and callable(getattr(clock, "sleep", None))
    ):
        raise TypeError(f"clock must have monotonic() and sleep(), got {clock!r}")
