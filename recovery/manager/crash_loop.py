"""The crash loop, and the one timer thread that keeps the manager's deadlines.

A plugin whose episodes keep failing (or come too often: restart intensity, as
in OTP supervisors) is put in a *crash loop*, as Kubernetes' CrashLoopBackOff:
its breaker is held open, it is failed (out of service), and a new episode of
one attempt (a probe) starts after a delay that doubles each time up to
``crash_loop_max_delay``. A passing health check starts the probe at once.

The timer thread starts each probe when its time comes, and also ends the wait
of a verification parked off the workers (its ``verify_timeout``) and fires a
parked episode's "recovery_time" alert. It waits for the soonest deadline on the
manager's clock (:func:`recovery._deadline.wait_until`: capped, so no deadline
a config can set overflows it) and re-reads every deadline against the clock
each time it wakes: :meth:`RecoveryManager.is_quiescent` wakes it when it sees one
due, so a FakeClock advanced between the timer's reading and its wait does not
leave a due probe waiting for a later time.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from recovery import _clock, _deadline
from recovery._backoff import Backoff
from recovery.alerts import AlertDispatcher, AlertKind
from recovery.config import RecoveryConfig
from recovery.failures import FailureInfo, FailureType
from recovery.manager.dependencies import DEPENDENCY, PLUGIN
from recovery.manager.supervised import Episode, FailedReason, Supervised, Verification

if TYPE_CHECKING:
    from recovery.manager.episodes import EpisodeRunner

MAX_LEVEL = 64  # past this, a doubling delay is at its cap for any sane config

# The alerts at the two ends of a crash loop, by kind of registration.
_LOOP_ALERTS = {
    PLUGIN: (AlertKind.CRASH_LOOP, AlertKind.CRASH_LOOP_ENDED),
    DEPENDENCY: (AlertKind.DEPENDENCY_DOWN, AlertKind.DEPENDENCY_UP),
}


class CrashLoops:
    """The crash-loop part of :class:`recovery.RecoveryManager` (a mixin)."""

    clock: _clock.Clock
    config: RecoveryConfig
    _lock: threading.RLock
    _plugins: dict[str, Supervised]
    _parked: dict[str, Supervised]  # by name, in the order they parked
    _running: bool
    _timer_wake: threading.Event
    _crash_backoff: Backoff
    _alerts: AlertDispatcher
    _episodes: EpisodeRunner

    if TYPE_CHECKING:
        def _move_breaker(self, action: Callable[[], object]) -> None: ...
        def _own_thread(self) -> None: ...
        def _open_episode(self, plugin: Supervised, failure: FailureInfo, now: float, *,
                          probe: bool) -> None: ...
        def _queue_episode(self, plugin: Supervised) -> None: ...
        def _resume(self, plugin: Supervised, verification: Verification) -> None: ...
        def _poll_incidents(self, now: float) -> bool: ...
        def _incident_due(self) -> float | None: ...

    def _enter_crash_loop(self, plugin: Supervised, reason: FailedReason, now: float,
                          wait: float | None = None) -> bool:
        """Under the lock: plan the next attempt after a delay that doubles each time
        (``wait`` from ``now`` instead, when given); True if the crash loop starts here.

        The plugin is failed while it waits, with ``reason``. Once the lock is
        released the caller calls :meth:`_crash_loop_started` if it started, else
        :meth:`_hold_in_crash_loop`. Every way into a crash loop goes through these.
        """
        plugin.crash_delay = self._crash_backoff.delay(plugin.crash_level)
        plugin.crash_level = min(plugin.crash_level + 1, MAX_LEVEL)
        self._wait_again(plugin, now, wait)
        started = not plugin.crash_loop
        if started:
            plugin.crash_loop = True
            plugin.failed_reason = reason
        return started

    def _wait_again(self, plugin: Supervised, now: float, wait: float | None = None) -> None:
        """Under the lock: the next attempt of a crash loop is its delay (or ``wait``)
        from ``now`` (a probe that never ran, cut short by stop(), waits the same
        delay again)."""
        wait = plugin.crash_delay if wait is None else wait
        plugin.next_attempt = now + wait
        plugin.next_attempt_wall = time.time() + wait

    def _too_many_episodes(self, plugin: Supervised, now: float,
                           quiet_since: float | None) -> bool:
        """Under the lock, for a failure that would start an episode at ``now``: is the
        restart intensity exceeded (more than ``max_episodes_per_period`` episodes
        within ``episode_period``)? If not, the episode is counted in the history.

        ``stable_period`` without trouble (since ``quiet_since``) forgets the
        back-off state first: the history, the crash-loop delay, the failed
        episodes in a row.
        """
        config = self.config
        history = plugin.history
        if quiet_since is not None and now - quiet_since >= config.stable_period:
            history.clear()
            plugin.crash_level = 0
            plugin.failed_episodes_in_a_row = 0
        while history and now - history[0] >= config.episode_period:
            history.popleft()
        if len(history) >= config.max_episodes_per_period:
            return True
        history.append(now)
        return False

    def _hold_in_crash_loop(self, plugin: Supervised) -> None:
        """Outside the lock: hold the breaker open until the next attempt, which the
        timer is woken to wait for."""
        self._move_breaker(lambda: plugin.breaker.force_open(math.inf))
        self._timer_wake.set()

    def _crash_loop_started(self, plugin: Supervised, why: str) -> None:
        """Outside the lock: hold the breaker open, wake the timer, alert once.

        In a dependency's words: it is down since its trouble began, and probed next
        after the delay (nothing is restarted)."""
        self._hold_in_crash_loop(plugin)
        started, ended = _LOOP_ALERTS[plugin.kind]
        self._alerts.rearm(plugin.name, ended)
        if plugin.kind == DEPENDENCY:
            message = (f"down since {_clock.iso_utc(plugin.down_since)}, next probe in "
                       f"{plugin.crash_delay:g}s ({why}); breaker held open")
        else:
            message = (f"{why}; crash loop: breaker held open, next attempt in "
                       f"{plugin.crash_delay:g}s")
        self._alerts.fire_once(plugin.name, started, message)

    def _leave_crash_loop(self, plugin: Supervised,
                          failed_reason: FailedReason | None = None) -> None:
        """Under the lock: no next attempt; failed with ``failed_reason`` (None: serving)."""
        plugin.crash_loop = False
        plugin.next_attempt = None
        plugin.next_attempt_wall = None
        plugin.failed_reason = failed_reason
        if failed_reason is None:
            plugin.down_since = None

    def _crash_loop_ended(self, plugin: Supervised) -> None:
        started, ended = _LOOP_ALERTS[plugin.kind]
        self._alerts.rearm(plugin.name, started)
        self._alerts.fire_once(plugin.name, ended, "up again; probes ended"
                               if plugin.kind == DEPENDENCY else "recovered; crash loop ended")

    def _probe(self, plugin: Supervised) -> None:
        """End a crash loop's wait: start its next episode (one attempt) now."""
        now = self.clock.monotonic()
        with self._lock:
            if not (plugin.crash_loop and plugin.episode is None and self._running):
                return
            plugin.next_attempt = None
            plugin.next_attempt_wall = None
            failure = plugin.last_failure or FailureInfo(
                FailureType.ERROR, message="crash loop retry"
            )
            self._open_episode(plugin, failure, now, probe=True)
        self._queue_episode(plugin)

    def _time_deadlines(self, stopping: threading.Event, wake: threading.Event) -> None:
        """The timer thread: start each crash loop's probe when its time comes, end
        each parked verification at its deadline, fire parked episodes' alarms.

        Every wake re-reads the deadlines against the clock. It parks on the
        manager's clock only while some deadline is planned (on a FakeClock it
        comes when the test advances to it); otherwise on ``wake``, which every
        change of a deadline sets.
        """
        self._own_thread()
        while not stopping.is_set():
            wake.clear()
            if self._run_due(self.clock.monotonic()):
                continue
            soonest = self._soonest_deadline()
            if soonest is None:
                wake.wait()
            else:
                _deadline.wait_until(self.clock, wake, soonest)

    def _soonest_deadline(self) -> float | None:
        with self._lock:
            planned = [plugin.next_attempt for plugin in self._plugins.values()
                       if plugin.next_attempt is not None]
            for plugin in self._parked.values():
                episode = plugin.episode
                if episode is not None and episode.parked is not None:
                    planned.append(episode.parked.deadline)
                    if episode.alarm is not None:
                        planned.append(episode.alarm)
        incident_due = self._incident_due()
        if incident_due is not None:
            planned.append(incident_due)
        return min(planned, default=None)

    def _due(self, now: float) -> bool:
        """Under the lock: is some deadline of the timer's due at ``now``?"""
        if any(plugin.next_attempt is not None and plugin.next_attempt <= now
               for plugin in self._plugins.values()):
            return True
        for plugin in self._parked.values():
            episode = plugin.episode
            if episode is not None and episode.parked is not None and (
                    episode.parked.deadline <= now
                    or (episode.alarm is not None and episode.alarm <= now)):
                return True
        incident_due = self._incident_due()
        return incident_due is not None and incident_due <= now

    def _run_due(self, now: float) -> bool:
        """Act on every deadline due at ``now``; True if there was one."""
        with self._lock:
            probes = [plugin for plugin in self._plugins.values()
                      if plugin.next_attempt is not None and plugin.next_attempt <= now]
            ended: list[tuple[Supervised, Verification]] = []
            alarms: list[tuple[Supervised, Episode]] = []
            for plugin in self._parked.values():
                episode = plugin.episode
                if episode is None or episode.parked is None:
                    continue
                if episode.alarm is not None and episode.alarm <= now:
                    alarms.append((plugin, episode))
                if episode.parked.deadline <= now:
                    ended.append((plugin, episode.parked))
        for plugin in probes:
            self._probe(plugin)
        for plugin, episode in alarms:
            self._episodes.check_recovery_time(plugin, episode)
        for plugin, verification in ended:
            self._resume(plugin, verification)
        incidents = self._poll_incidents(now)
        return bool(probes or alarms or ended or incidents)
