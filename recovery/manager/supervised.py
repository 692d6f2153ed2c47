"""The recovery manager's bookkeeping: one record per supervised plugin, its episode,
and a verification parked until a trial or its deadline tells.

Plain records, guarded by the manager's lock; the manager, its episode runner and
its crash-loop timer all read and write them.
"""

from __future__ import annotations

import collections
import threading
import time

import attrs

from recovery._enum import StrEnum
from recovery._impl import Route
from recovery.breaker import CircuitBreaker
from recovery.failures import FailureInfo
from recovery.forecast.forecaster import Warning as ForecastWarning
from recovery.state import CircuitBreakerState

CLOSED = CircuitBreakerState.CLOSED
OPEN = CircuitBreakerState.OPEN
REJECTING = (CircuitBreakerState.OPEN, CircuitBreakerState.REPAIRING)


@attrs.define(eq=False)
class Verification:
    """After an action on a plugin without a health check: its breaker is half-open,
    and the episode is parked (no worker held) until a trial tells or ``deadline``
    (``verify_timeout`` after the action, on the manager's clock) passes.

    ``action`` and ``started`` are the strategy run being verified, audited when the
    verdict comes; ``successes`` the breaker's successes before it, so a trial that
    succeeded without closing the breaker still counts as a pass at the deadline.
    """

    action: str
    started: float
    successes: int
    deadline: float
    event: threading.Event = attrs.field(factory=threading.Event)
    verdict: bool | None = None

    def observe(self, new: CircuitBreakerState) -> bool:
        """A transition of the plugin's breaker: closed is a pass, open a fail.
        True when this transition gave the verdict."""
        if self.verdict is not None:
            return False
        if new is CLOSED:
            self.verdict = True
        elif new in REJECTING:
            self.verdict = False
        else:
            return False
        self.event.set()
        return True


@attrs.define(eq=False)
class Episode:
    """One recovery of one plugin, from the failure that started it to its end.

    A *probe* is the episode a crash loop starts when its delay ends: one attempt.
    ``parked`` is its verification while the episode waits for one off the workers.
    """

    failure: FailureInfo
    started: float
    # When the "recovery_time" alert is due (manager clock); None once fired or if off.
    alarm: float | None
    probe: bool
    wall_started: float = attrs.field(factory=time.time)
    failures: int = 1
    attempts: int = 0
    parked: Verification | None = None
    trial: bool = False  # a held member's: its first attempt is a verification alone
    # Strategies whose run failed this episode: a learned order tries them last.
    failed_actions: set[str] = attrs.field(factory=set)

    @property
    def trial_next(self) -> bool:
        """Is the next attempt a held member's trial (a verification alone)?"""
        return self.trial and self.attempts == 0


class FailedReason(StrEnum):
    """Why a plugin is failed (out of service), as status shows it (``failed_reason``).

    The first two are crash loops (retried after a growing delay); the last two last
    until ``reset_plugin()``.
    """

    EXHAUSTED = "exhausted"  # an episode's attempts all failed
    INTENSITY = "restart_intensity"  # too many episodes within episode_period
    UNRECOVERABLE = "unrecoverable"  # a failure that is not recoverable
    GAVE_UP = "gave_up"  # give_up_after episodes in a row did not bring it back


FOR_GOOD = frozenset({FailedReason.UNRECOVERABLE, FailedReason.GAVE_UP})


class Outcome(StrEnum):
    """How an episode ended, as status counts it (``episodes``) and the log says it."""

    RECOVERED = "recovered"  # an action was verified: the plugin is back
    HELD = "held"  # a strategy held the breaker open or degraded the plugin: no fix claimed
    UNVERIFIED = "unverified"  # an action was done, and nothing could tell
    EXHAUSTED = "exhausted"  # every attempt failed
    INTERRUPTED = "interrupted"  # stop(), or a non-recoverable failure, cut it short
    # Its attempt fell due while its incident held it (no strategy ran); not counted
    # in status.
    HELD_BY_INCIDENT = "held_by_incident"


EPISODE_OUTCOMES: tuple[str, ...] = tuple(
    outcome.value for outcome in Outcome if outcome is not Outcome.HELD_BY_INCIDENT)
"""The outcomes status counts, in its order (the fields of ``EpisodeCounts``)."""


@attrs.define(eq=False)
class Supervised:
    """The manager's bookkeeping for one plugin; guarded by the manager's lock."""

    name: str
    breaker: CircuitBreaker
    route: Route
    kind: str = "plugin"  # or "dependency": an upstream nothing here can restart
    depends_on: tuple[str, ...] = ()
    tags: dict[str, str] = attrs.field(factory=dict)
    # Strategy runs by (action, success), for status and the Prometheus collector.
    actions: collections.Counter[tuple[str, bool]] = attrs.field(factory=collections.Counter)
    # Finished episodes by outcome, likewise.
    episodes: collections.Counter[Outcome] = attrs.field(factory=collections.Counter)
    _degraded: bool = attrs.field(default=False, init=False)
    degraded_until: float | None = None
    failed_reason: FailedReason | None = None
    episode: Episode | None = None
    history: collections.deque[float] = attrs.field(factory=collections.deque)
    consecutive_failures: int = 0
    last_trouble: float | None = None
    last_failure: FailureInfo | None = None
    last_action: str | None = None
    last_action_success: bool | None = None
    attempts: int = 0
    # Crash loop: retried at next_attempt (manager clock; wall clock for status)
    # after crash_delay, which doubles with crash_level until stable_period passes.
    crash_loop: bool = False
    crash_level: int = 0
    crash_delay: float = 0.0
    next_attempt: float | None = None
    next_attempt_wall: float | None = None
    failed_episodes_in_a_row: int = 0  # episodes in a row that did not bring it back
    hold_until: float | None = None  # a strategy holds the breaker open until then
    verification: Verification | None = None
    refused_runs: int = 0  # steps not started: as many of its threads stuck as allowed
    down_since: float | None = None  # wall clock: when its current trouble began
    # Early warnings up now, by kind, each with its wall-clock start; and how many
    # of each kind were raised (recovery.manager.early_warning).
    warnings: dict[str, tuple[ForecastWarning, float]] = attrs.field(factory=dict)
    warnings_raised: collections.Counter[str] = attrs.field(factory=collections.Counter)

    @property
    def failed(self) -> bool:
        """Out of service: in a crash loop, or for good."""
        return self.failed_reason is not None

    @property
    def failed_for_good(self) -> bool:
        """Failed until reset_plugin(): nothing the manager does brings it back."""
        return self.failed_reason in FOR_GOOD

    @property
    def degraded(self) -> bool:
        return self._degraded

    @degraded.setter
    def degraded(self, value: bool) -> None:
        # A degraded plugin with a fallback has its calls diverted off the C path to
        # _diverted_call, which serves the fallback while the degradation lasts.
        self._degraded = value
        self.route.diverted = value and self.route.fallback is not None
