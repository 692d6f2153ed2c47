"""The manager's episodes on its worker threads: an episode is opened for a failure and
queued; a worker takes it from the queue, has the
:class:`~recovery.manager.episodes.EpisodeRunner` run it, and settles the plugin by
the outcome it returns (serving, held, in a crash loop, or given up).

An episode whose verification waits for the breaker's half-open trials is *parked*
(no worker held) until a trial tells or its deadline passes, then queued again.
"""

from __future__ import annotations

import collections
import logging
import math
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from recovery._clock import Clock
from recovery.alerts import AlertDispatcher, AlertKind
from recovery.failures import FailureInfo
from recovery.manager.dependencies import DEPENDENCY, label
from recovery.manager.episodes import EpisodeRunner
from recovery.manager.outbox import Outbox
from recovery.manager.supervised import (
    Episode,
    FailedReason,
    Outcome,
    Supervised,
    Verification,
)

if TYPE_CHECKING:
    from recovery.config import RecoveryConfig


class Workers:
    """The worker part of :class:`recovery.RecoveryManager` (a mixin)."""

    config: RecoveryConfig
    clock: Clock
    _lock: threading.RLock
    _idle: threading.Condition
    _work_ready: threading.Condition
    _queue: collections.deque[Supervised]
    _parked: dict[str, Supervised]  # by name, in the order they parked
    _free_workers: int
    _open_episodes: int
    _running: bool
    _stopping: threading.Event
    _timer_wake: threading.Event
    _episodes: EpisodeRunner
    _outbox: Outbox
    _alerts: AlertDispatcher

    if TYPE_CHECKING:
        def _own_thread(self) -> None: ...
        def _move_breaker(self, action: Callable[[], object]) -> None: ...
        def _enter_crash_loop(self, plugin: Supervised, reason: FailedReason, now: float,
                              wait: float | None = None) -> bool: ...
        def _hold_in_crash_loop(self, plugin: Supervised) -> None: ...
        def _leave_crash_loop(self, plugin: Supervised,
                              failed_reason: FailedReason | None = None) -> None: ...
        def _crash_loop_started(self, plugin: Supervised, why: str) -> None: ...
        def _crash_loop_ended(self, plugin: Supervised) -> None: ...
        def _wait_again(self, plugin: Supervised, now: float,
                        wait: float | None = None) -> None: ...
        def _hold_open(self, plugin: Supervised) -> None: ...
        def _incident_recovered(self, name: str) -> None: ...

    def _open_episode(
        self, plugin: Supervised, failure: FailureInfo, now: float, *, probe: bool
    ) -> None:
        """Under the lock: the plugin has an episode from now on (later failures are
        counted in it, ``wait_idle`` waits for it); :meth:`_queue_episode` starts it."""
        limit = self.config.alert_thresholds.recovery_time
        plugin.episode = Episode(failure, now, None if limit is None else now + limit, probe)
        if plugin.down_since is None:
            plugin.down_since = plugin.episode.wall_started
        plugin.attempts = 0
        self._open_episodes += 1

    def _queue_episode(self, plugin: Supervised) -> None:
        """Outside the lock, as the breaker's listeners run: move the breaker to
        REPAIRING, then hand the episode to a worker.

        REPAIRING comes first so that no worker acts on a plugin whose calls still go
        through. A stop() that came in between drained the queue without it: the
        episode is dropped here instead (breaker OPEN), as stop() would have.
        """
        self._move_breaker(plugin.breaker.begin_repair)
        with self._lock:
            if self._running:
                self._queue.append(plugin)
                self._work_ready.notify()
                return
        self._drop_episode(plugin)

    def _drop_episode(self, plugin: Supervised) -> None:
        """End a queued episode that never ran (stop()): breaker OPEN, no callbacks.

        A crash loop's probe is put back to wait its delay again.
        """
        breaker = plugin.breaker
        with self._lock:
            in_crash_loop = plugin.crash_loop
            if in_crash_loop:
                self._wait_again(plugin, self.clock.monotonic())
        if in_crash_loop or plugin.failed_for_good:
            self._move_breaker(lambda: breaker.force_open(math.inf))
        else:
            self._move_breaker(lambda: breaker.end_repair(False))
        with self._lock:
            plugin.episode = None
            self._open_episodes -= 1
            self._idle.notify_all()

    def _work(self) -> None:
        self._own_thread()
        stopping = self._stopping
        while True:
            with self._lock:
                while not self._queue and not stopping.is_set():
                    self._free_workers += 1
                    try:
                        self._work_ready.wait()
                    finally:
                        self._free_workers -= 1
                if not self._queue:
                    return
                plugin = self._queue.popleft()
            episode = plugin.episode
            assert episode is not None
            outcome: Outcome | None = Outcome.INTERRUPTED  # if it raised past the runner
            try:
                outcome = self._episodes.run(plugin, stopping)  # None: parked
            finally:
                if outcome is not None:
                    self._finish_episode(plugin, episode, outcome)

    def _park(self, plugin: Supervised, verification: Verification,
              stopping: threading.Event) -> bool:
        """Park the plugin's episode until ``verification`` has its verdict or its
        deadline (the timer's); False if the verdict came already or the manager stops."""
        with self._lock:
            episode = plugin.episode
            if episode is None or verification.verdict is not None or not (
                    self._running and not stopping.is_set()):
                return False
            episode.parked = verification
            self._parked[plugin.name] = plugin
            self._timer_wake.set()
            return True

    def _resume(self, plugin: Supervised, verification: Verification) -> None:
        """A parked verification has its verdict, or its deadline passed: hand the
        episode back to a worker."""
        with self._lock:
            episode = plugin.episode
            if (self._parked.get(plugin.name) is not plugin or episode is None
                    or episode.parked is not verification):
                return
            del self._parked[plugin.name]
            plugin.verification = None
            self._queue.append(plugin)
            self._work_ready.notify()
        self._timer_wake.set()  # its deadline is no longer one to wait for

    def _finish_episode(self, plugin: Supervised, episode: Episode, outcome: Outcome) -> None:
        """Settle the plugin after an episode: serving, held, in (or on in) a crash
        loop, or given up; then the episode is over and ``wait_idle`` may return."""
        breaker = plugin.breaker
        config = self.config
        now = self.clock.monotonic()
        crash_started = crash_ended = gave_up = False
        with self._lock:
            plugin.episodes[outcome] += 1
            if plugin.failed_for_good:
                pass  # a non-recoverable failure arrived meanwhile: it has acted
            elif outcome is Outcome.RECOVERED:
                plugin.failed_episodes_in_a_row = 0
                crash_ended = plugin.crash_loop
                if crash_ended:
                    self._leave_crash_loop(plugin)
            elif outcome in (Outcome.INTERRUPTED, Outcome.HELD_BY_INCIDENT):
                if plugin.crash_loop:  # stopped during a probe: wait the same delay again
                    self._wait_again(plugin, now)
            else:  # exhausted, held or unverified: not known to be back in service
                plugin.failed_episodes_in_a_row += 1
                if config.give_up_after is not None and (
                    plugin.failed_episodes_in_a_row >= config.give_up_after
                ):
                    self._leave_crash_loop(plugin, failed_reason=FailedReason.GAVE_UP)
                    gave_up = True
                elif outcome is Outcome.EXHAUSTED or plugin.crash_loop:
                    crash_started = self._enter_crash_loop(plugin, FailedReason.EXHAUSTED, now)
            in_crash_loop = plugin.crash_loop
            for_good = plugin.failed_for_good
        if for_good:
            self._move_breaker(lambda: breaker.force_open(math.inf))
        elif in_crash_loop:
            self._hold_in_crash_loop(plugin)
        elif outcome is Outcome.HELD_BY_INCIDENT:
            self._hold_open(plugin)
        elif outcome in (Outcome.RECOVERED, Outcome.HELD, Outcome.UNVERIFIED):
            self._move_breaker(lambda: breaker.end_repair(True))  # only if still REPAIRING
        else:
            self._move_breaker(lambda: breaker.end_repair(False))
        self._episodes.check_recovery_time(plugin, episode)
        self._outbox.log(
            logging.INFO, "%s of %s %s after %d attempt(s) (%d failure(s) counted)",
            "probe" if plugin.kind == DEPENDENCY else
            "crash-loop probe" if episode.probe else "recovery episode",
            label(plugin), outcome.value, episode.attempts, episode.failures,
        )
        if crash_started:
            self._crash_loop_started(plugin, f"{episode.attempts} probe(s) failed"
                                     if plugin.kind == DEPENDENCY else
                                     f"{episode.attempts} recovery attempt(s) failed for "
                                     f"{episode.failure.type.value} failure")
        if crash_ended:
            self._crash_loop_ended(plugin)
        if gave_up:
            self._alerts.fire_once(
                plugin.name,
                AlertKind.RECOVERY_EXHAUSTED,
                f"{plugin.failed_episodes_in_a_row} recovery episodes in a row failed "
                f"(give_up_after={config.give_up_after}); breaker held open until "
                "reset_plugin()",
            )
        with self._lock:
            plugin.episode = None
            plugin.last_trouble = self.clock.monotonic()
            self._open_episodes -= 1
            self._idle.notify_all()
        self._timer_wake.set()
        if outcome is Outcome.RECOVERED:
            self._incident_recovered(plugin.name)

