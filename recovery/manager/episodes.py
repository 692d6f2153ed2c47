"""The episode runner: what one episode does, and how it ended.

An episode is the recovery of one plugin, from the failure that started it to
its end (docs/design.md, "Episodes"). A worker (:mod:`recovery.manager.workers`)
has the runner run its attempts and settles the plugin by the :class:`Outcome` it
returns. Each attempt runs the plugin's strategy chain, every step of which is
user code bounded on a thread of its own (:mod:`recovery._bounded`), and the
action it did is verified. Verification by a health check is run once, bounded.
Verification by the breaker's half-open trials is a *deadline*, not a held
worker: the episode is parked, its worker freed for other plugins, and the
timer (:mod:`recovery.manager.crash_loop`) or the trial's transition hands it back to
a worker with its verdict. (Held for ``verify_timeout``, two workers took
83 minutes to get 1,000 idle plugins out of REPAIRING.)

Every strategy run is audited before the episode moves on, through the outbox
(:mod:`recovery.manager.outbox`): bounded by ``callback_timeout``, a BaseException or a
block of the audit logger is counted and logged, and the episode goes on. The
runner's own log records go through the outbox too, so a log handler that
blocks holds no worker.
"""

from __future__ import annotations

import enum
import functools
import logging
import math
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

from recovery import _clock, _deadline
from recovery._bounded import ThreadRunner
from recovery.alerts import AlertDispatcher, AlertKind
from recovery.audit import AuditLogger, record_attempt
from recovery.failures import FailureInfo, safe_repr
from recovery.health import HealthCheckConfig, HealthCheckResult
from recovery.manager.dependencies import DEPENDENCY, PLUGIN_ACTIONS, PROBE, label
from recovery.manager.incident_link import TRIAL
from recovery.manager.outbox import Outbox
from recovery.manager.supervised import (
    CLOSED,
    OPEN,
    Episode,
    Outcome,
    Supervised,
    Verification,
)
from recovery.plugins import PluginManager
from recovery.state import CircuitBreakerState
from recovery.strategies import (
    BUILTIN_STRATEGIES,
    RecoveryContext,
    RecoveryStrategy,
)

if TYPE_CHECKING:
    from recovery.config import RecoveryConfig

BUILTIN_TYPES = frozenset(BUILTIN_STRATEGIES.values())


class _Park(enum.Enum):
    PARKED = enum.auto()


PARKED = _Park.PARKED
"""What an attempt returns when its verification waits off the workers."""

Strategies = list[tuple[str, RecoveryStrategy]]
"""Strategies by name, in the order to try them."""


@attrs.frozen
class EpisodeHooks:
    """What an episode needs of the rest of the manager, as callables: the runner reads
    no manager state of its own, so this list is all an episode can reach."""

    move_breaker: Callable[[Callable[[], object]], None]
    """Move a breaker on the manager's behalf (its listener ignores the move)."""
    park: Callable[[Supervised, Verification, threading.Event], bool]
    """Park the episode until its verification has a verdict or reaches its deadline,
    holding no worker; False if it cannot (stopping, or the verdict came already)."""
    strategies: Callable[[], dict[str, RecoveryStrategy]]
    """The strategies registered now, by name."""
    health_check: Callable[[str], tuple[Callable[[], Any], HealthCheckConfig] | None]
    """The plugin's health check and its config, if it has one."""
    held_by_incident: Callable[[Supervised], bool]
    """Is the plugin held by its incident now (its attempt must not run)?"""
    incident_id: Callable[[str], str | None]
    """The id of the plugin's open incident, for its audit records."""
    note_configured: Callable[[Supervised, Episode, str], None]
    """The plugin's configured strategy is its order this attempt."""
    ordered: Callable[[Supervised, Episode, Strategies], Strategies]
    """The strategies that can handle the failure, in the order to try them."""
    verify_window: Callable[[Supervised, Episode, str], float]
    """How long the breaker's trials have to verify an action."""
    learn: Callable[[Supervised, FailureInfo, str, bool, bool | None, float], str | None]
    """Count one audited run; the order it was picked in, for its audit record."""


class EpisodeRunner:
    """Runs one episode's attempts on a worker and says how it ended (an :class:`Outcome`).

    It takes what it needs at construction (the manager's collaborators and lock,
    and :class:`EpisodeHooks`); what the episode's end means for the plugin (the crash
    loop, giving up, the breaker) is the manager's to decide.
    """

    def __init__(
        self, config: RecoveryConfig, clock: _clock.Clock, logger: logging.Logger,
        plugin_manager: PluginManager, audit_logger: AuditLogger, lock: threading.RLock,
        runner: ThreadRunner, outbox: Outbox, alerts: AlertDispatcher, hooks: EpisodeHooks,
    ) -> None:
        self.config = config
        self.clock = clock
        self.logger = logger
        self.plugin_manager = plugin_manager
        self.audit_logger = audit_logger
        self.lock = lock
        self.runner = runner
        self.outbox = outbox
        self.alerts = alerts
        self.hooks = hooks

    def after_fork(self, lock: threading.RLock) -> None:
        """In a forked child: the manager's new lock (the parent's may be held for ever)."""
        self.lock = lock

    def run(self, plugin: Supervised, stopping: threading.Event) -> Outcome | None:
        """Run the episode's attempts, from where it stands, until it ends (its
        outcome) or parks (None: its verification waits off the workers, and the
        episode comes back here with the verdict).

        A parked episode's verdict settles that attempt first, then the next ones run.
        """
        episode = plugin.episode
        assert episode is not None
        config = self.config
        attempts = 1 if episode.probe else config.max_recovery_attempts
        outcome = Outcome.INTERRUPTED
        try:
            verification, episode.parked = episode.parked, None
            result: Outcome | _Park | None = None
            if verification is not None:
                result = self._settle_verification(plugin, episode, verification, stopping)
            while result is None:
                attempt = episode.attempts
                if attempt >= 1 and (stopping.is_set() or plugin.failed_for_good):
                    break
                if attempt >= attempts:
                    outcome = Outcome.EXHAUSTED
                    break
                if attempt >= 1 and self._pause(plugin, episode, stopping,
                                                config.backoff(attempt)):
                    break
                if stopping.is_set() or plugin.failed_for_good:
                    break
                trial = episode.trial_next
                if not trial and self.hooks.held_by_incident(plugin):
                    outcome = Outcome.HELD_BY_INCIDENT
                    break
                with self.lock:
                    episode.attempts = plugin.attempts = attempt + 1
                if attempt >= 1:  # a failed verification reopened it: REPAIRING again
                    self.hooks.move_breaker(plugin.breaker.begin_repair)
                result = (self._verified(plugin, episode, TRIAL, self.clock.monotonic(),
                                         stopping)
                          if trial else self._attempt(plugin, episode, stopping))
            if result is PARKED:
                return None
            if result is not None:
                outcome = result
        except Exception as exc:
            self.outbox.log(logging.ERROR, "recovery episode of %s failed", label(plugin),
                            exc_info=exc)
        return outcome

    def _pause(
        self, plugin: Supervised, episode: Episode, stopping: threading.Event, seconds: float
    ) -> bool:
        """The back-off between attempts; True if stop() cut it short. The
        "recovery_time" alert fires at its deadline, within the pause if due there."""
        end = self.clock.monotonic() + seconds
        alarm = episode.alarm
        if alarm is not None and alarm < end:
            if _deadline.pause(self.clock, stopping, max(alarm - self.clock.monotonic(), 0.0)):
                return True
            self.check_recovery_time(plugin, episode)
        return _deadline.pause(self.clock, stopping, max(end - self.clock.monotonic(), 0.0))

    def _episode_wait(
        self, plugin: Supervised, episode: Episode, event: threading.Event, timeout: float
    ) -> bool:
        """Wait for ``event`` on the manager's clock, at most ``timeout`` seconds,
        firing the "recovery_time" alert when its deadline falls within the wait:
        a hung strategy is exactly when that alert is needed."""
        end = self.clock.monotonic() + timeout
        while True:
            alarm = episode.alarm
            until = end if alarm is None else min(end, alarm)
            if _deadline.wait_until(self.clock, event, until):
                return True
            if alarm is not None and self.clock.monotonic() >= alarm:
                self.check_recovery_time(plugin, episode)
            if self.clock.monotonic() >= end:
                return event.is_set()

    def check_recovery_time(self, plugin: Supervised, episode: Episode) -> None:
        """Fire the "recovery_time" alert if the episode's deadline for it has passed."""
        alarm = episode.alarm
        if alarm is None or self.clock.monotonic() < alarm:
            return
        episode.alarm = None
        elapsed = self.clock.monotonic() - episode.started
        threshold = self.config.alert_thresholds.recovery_time
        self.alerts.fire_once(
            plugin.name,
            AlertKind.RECOVERY_TIME,
            f"recovery running for {elapsed:.3g}s (threshold {threshold:g}s)",
        )

    def _chain(
        self, plugin: Supervised, episode: Episode
    ) -> list[tuple[str, RecoveryStrategy]]:
        """The strategies to try, in order, for one attempt."""
        config = self.config
        name = plugin.name
        strategies = self.hooks.strategies()
        chosen = config.plugin_recovery_strategies.get(name, config.default_recovery_strategy)
        if plugin.kind == DEPENDENCY and (chosen is None or chosen in PLUGIN_ACTIONS):
            return [("probe", PROBE)]  # nothing to restart or reload: probe it
        if chosen is not None:
            self.hooks.note_configured(plugin, episode, chosen)
            strategy = strategies.get(chosen)
            if strategy is None:
                self.outbox.log(logging.ERROR,
                                 "recovery strategy %r of plugin %r is not registered",
                                 chosen, name)
                return []
            return [(chosen, strategy)]
        ranked = sorted(
            strategies.items(),
            key=lambda item: -config.recovery_strategy_configs.get(item[0], {}).get(
                "priority", item[1].priority
            ),
        )
        return self.hooks.ordered(plugin, episode, [
            (strategy_name, strategy)
            for strategy_name, strategy in ranked
            if self._handles(plugin, episode, strategy_name, strategy)
        ])

    def _handles(
        self, plugin: Supervised, episode: Episode, name: str, strategy: RecoveryStrategy
    ) -> bool:
        """``strategy.can_handle(failure)``, bounded like ``recover``: a user's
        ``can_handle`` that blocks must not hold a worker (the built-ins' are pure
        and run inline). One that raises, hangs or answers oddly declines."""
        failure = episode.failure
        if type(strategy) in BUILTIN_TYPES:
            return strategy.can_handle(failure)
        run = self.runner.run(
            functools.partial(strategy.can_handle, failure), self.config.strategy_timeout,
            f"can_handle {name} {plugin.name}",
            functools.partial(self._episode_wait, plugin, episode), key=plugin.name,
        )
        if run.refused:
            self._refused(plugin, f"can_handle of strategy {name!r}")
            return False
        if not run.finished:
            self.outbox.log(logging.ERROR,
                             "can_handle of strategy %r still running after %.3gs; abandoned",
                             name, self.config.strategy_timeout)
            return False
        if run.error is not None:
            self.outbox.log(logging.ERROR, "can_handle of strategy %r failed", name,
                             exc_info=run.error)
            return False
        if not isinstance(run.value, bool):
            self.outbox.log(logging.ERROR,
                             "can_handle of strategy %r returned %s, not a bool; declined",
                             name, safe_repr(run.value))
            return False
        return run.value

    def _attempt(
        self, plugin: Supervised, episode: Episode, stopping: threading.Event
    ) -> Outcome | _Park | None:
        """Run the chain once: "recovered", "held", "unverified", PARKED (its
        verification waits off the workers), or None when the
        attempt failed.

        Strategies are tried in order until one's action is done; that one's
        verification is the attempt's verdict. A strategy that leaves the breaker
        held open (backoff) or the plugin degraded (degrade) claims no fix, only
        time or a fallback: it is not verified, and ends the episode "held". An
        action nothing could verify ends it "unverified". Either way the
        breaker's own next trial is the verification (a failed trial is a new
        failure). Each run is audited: ``success`` is False when the action or
        its verification failed.
        """
        failure = episode.failure
        chain = self._chain(plugin, episode)
        if not chain:
            self.outbox.log(logging.WARNING,
                             "no recovery strategy handles %s failure of plugin %r",
                             failure.type.value, plugin.name)
        plugin_config = self._plugin_config(plugin.name)
        for strategy_name, strategy in chain:
            if stopping.is_set() or plugin.failed_for_good:
                return None
            ctx = RecoveryContext(
                plugin_manager=self.plugin_manager,
                breaker=plugin.breaker,
                clock=self.clock,
                logger=self.logger,
                config=self.config.recovery_strategy_configs.get(strategy_name, {}),
                plugin_config=plugin_config,
                run_bounded=functools.partial(self.runner.run_or_raise, key=plugin.name),
            )
            started = self.clock.monotonic()
            if not self._act(plugin, episode, strategy_name, strategy, ctx):
                self.record_run(plugin, failure, strategy_name, False, False, None, started)
                continue
            retry_in = plugin.breaker.retry_after
            if ctx.degraded or plugin.breaker.state is OPEN:
                now = self.clock.monotonic()
                with self.lock:
                    if ctx.degraded:
                        plugin.degraded = True
                        plugin.degraded_until = (
                            None if ctx.degraded_for is None else now + ctx.degraded_for
                        )
                    if retry_in is not None and math.isfinite(retry_in):
                        plugin.hold_until = now + retry_in
                held = retry_in if retry_in is not None and math.isfinite(retry_in) else 0.0
                self.record_run(plugin, failure, strategy_name, True, True, None, started,
                                 held)
                return Outcome.HELD
            return self._verified(plugin, episode, strategy_name, started, stopping)
        return None

    def _verified(
        self, plugin: Supervised, episode: Episode, action: str, started: float,
        stopping: threading.Event,
    ) -> Outcome | _Park | None:
        """Verify ``action`` (done from ``started``) and audit it: the attempt's result."""
        verified = self._verify(plugin, episode, action, started, stopping)
        if verified is PARKED:
            return PARKED
        self.record_run(plugin, episode.failure, action, verified is not False, True,
                         verified, started)
        if verified is None:
            return Outcome.UNVERIFIED
        return Outcome.RECOVERED if verified else None

    def _act(
        self, plugin: Supervised, episode: Episode, name: str, strategy: RecoveryStrategy,
        ctx: RecoveryContext,
    ) -> bool:
        """Run ``strategy.recover`` under ``strategy_timeout``; True if its action was done.

        ``recover`` returns None on success and raises on failure. A strategy that
        reports failure by returning it (``False``, ``"failed"``, anything but None
        or True) has failed too, with a warning saying how to report it.
        """
        timeout = self.config.strategy_timeout
        run = self.runner.run(
            functools.partial(strategy.recover, plugin.name, episode.failure, ctx), timeout,
            f"{name} {plugin.name}", functools.partial(self._episode_wait, plugin, episode),
            key=plugin.name,
        )
        if run.refused:
            self._refused(plugin, f"recovery strategy {name!r}")
            return False
        if not run.finished:
            self.outbox.log(
                logging.ERROR,
                "recovery strategy %r for plugin %r still running after %.3gs; abandoned",
                name, plugin.name, timeout,
            )
            return False
        if run.error is not None:
            self.outbox.log(logging.WARNING, "recovery strategy %r failed for plugin %r", name,
                             plugin.name, exc_info=run.error)
            return False
        if run.value is None or run.value is True:
            return True
        self.outbox.log(
            logging.WARNING,
            "recovery strategy %r returned %s for plugin %r: taken as a failed attempt "
            "(recover() returns None when done and raises when it fails)",
            name, safe_repr(run.value), plugin.name,
        )
        return False

    def _verify(
        self, plugin: Supervised, episode: Episode, action: str, started: float,
        stopping: threading.Event,
    ) -> bool | _Park | None:
        """Is the plugin well after ``action`` (run from ``started``)? True, False,
        None when nothing could tell, or PARKED: the verdict comes later.

        A health check (registered, or the plugin's own, even with periodic health
        checking off), run once under its timeout, decides while the breaker stays
        REPAIRING, so a probe of a dependency still down costs no call. Without one
        the breaker is moved to HALF_OPEN and its trials decide: closing is a pass,
        reopening (a failed trial) a fail. Waiting for them holds no worker: the
        episode is *parked* until a trial tells or ``verify_timeout`` passes (the
        timer's deadline), then handed back to a worker. At the deadline a trial
        that succeeded is a pass, and none at all is no verdict: the breaker stays
        half-open and its next call is the trial. A strategy that closed the
        breaker itself (reset) has no trials to wait for: no verdict.
        """
        breaker = plugin.breaker
        registered = self.hooks.health_check(plugin.name)
        if registered is not None:
            check, check_config = registered
            run = self.runner.run(
                functools.partial(check_once, check, check_config), check_config.timeout,
                f"verify {plugin.name}", functools.partial(self._episode_wait, plugin, episode),
                key=plugin.name,
            )
            healthy = run.finished and run.error is None and run.value is True
            breaker.record_health_check(healthy)
            if healthy:
                self.hooks.move_breaker(lambda: breaker.end_repair(True))
            return healthy
        verification = Verification(action, started, breaker.metrics().total_successes,
                                    self.clock.monotonic()
                                    + self.hooks.verify_window(plugin, episode, action))
        with self.lock:
            plugin.verification = verification
        self.hooks.move_breaker(lambda: breaker.end_repair(True))
        state = breaker.state
        if state is CircuitBreakerState.HALF_OPEN and self.hooks.park(plugin, verification,
                                                                     stopping):
            return PARKED
        with self.lock:
            plugin.verification = None
        if state is CLOSED:
            return None
        if state is not CircuitBreakerState.HALF_OPEN:
            return False
        return verification.verdict  # a trial told before the episode could park

    def _settle_verification(
        self, plugin: Supervised, episode: Episode, verification: Verification,
        stopping: threading.Event,
    ) -> Outcome | None:
        """The verdict of a parked verification (at its deadline: a trial that
        succeeded is a pass, none is no verdict), audited; the attempt's result."""
        verified = verification.verdict
        if verified is None and not stopping.is_set() and (
                plugin.breaker.metrics().total_successes > verification.successes):
            verified = True
        self.record_run(plugin, episode.failure, verification.action, verified is not False,
                         True, verified, verification.started)
        if verified is None:
            return Outcome.UNVERIFIED
        return Outcome.RECOVERED if verified else None

    def record_run(
        self, plugin: Supervised, failure: FailureInfo, action: str, success: bool,
        action_succeeded: bool, verified: bool | None, started: float, held: float = 0.0,
    ) -> None:
        """Audit and log one strategy run (begun at ``started`` on the clock), and count it
        for status and the learned order. Its duration runs to its verdict; for a run
        that holds the breaker open, to the end of the hold (``held`` seconds more),
        when its trial can tell: a hold buys time, it is not free."""
        duration = self.clock.monotonic() - started + held
        order = self.hooks.learn(plugin, failure, action, success, verified, duration)
        self._audit(plugin.name, failure, action, success, action_succeeded, verified,
                    order, duration)
        level = logging.INFO if success else logging.WARNING
        if self.logger.isEnabledFor(level):
            self.outbox.log(level, "recovery action %s of %s: %s",
                             action, label(plugin), "success" if success else "failure", extra={
                "event": "recovery_action", "plugin": plugin.name, "action": action,
                "result": "success" if success else "failure",
                "duration": duration,
                "failure_type": failure.type.value, "action_succeeded": action_succeeded,
                "verified": verified,
            })
        with self.lock:
            plugin.last_action = action
            plugin.last_action_success = success
            plugin.actions[action, success] += 1

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

    def _audit(
        self, name: str, failure: FailureInfo, action: str, success: bool,
        action_succeeded: bool, verified: bool | None, order: str | None, duration: float,
    ) -> None:
        """One record per strategy run. A logger with ``log_recovery_attempt`` gets
        the action's own result and the verification's too (and the order and the
        run's duration, when it takes them), through that method only; a
        four-argument logger gets ``success``, the attempt's verdict."""
        self.outbox.deliver(
            f"audit logger (record of {action} of plugin {name!r})", name,
            functools.partial(record_attempt, self.audit_logger, name, failure.type.value,
                              action, success, action_succeeded=action_succeeded,
                              verified=verified, incident=self.hooks.incident_id(name),
                              order=order, duration=duration))

    def _refused(self, plugin: Supervised, what: str) -> None:
        """A run not started: the plugin has as many stuck threads as allowed."""
        with self.lock:
            plugin.refused_runs += 1
        self.outbox.log(
            logging.ERROR, "%s for plugin %r not run: %d of its threads are stuck (the most "
            "allowed); it fails at once until one returns", what, plugin.name,
            self.config.max_abandoned_threads)


def check_once(check: Callable[[], Any], config: HealthCheckConfig) -> bool:
    """Run a plugin's health check (and its custom checks) once: True if all pass.

    What counts as a pass is what the health monitor counts: True, or a
    HealthCheckResult that is healthy. A check that raises fails (the caller sees
    the exception).
    """
    for one in (check, *config.custom_checks):
        result = one()
        healthy = result.healthy if isinstance(result, HealthCheckResult) else result
        if healthy is not True:
            return False
    return True

