"""The episode runner on its own: given what an episode needs (no manager), it runs the
attempts and returns how the episode ended.

Everything it can reach of the manager is in its ``EpisodeHooks``: these tests give
plain functions and read the outcome it returns, on a FakeClock.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import pytest

from recovery import CircuitBreakerState, FailureInfo, FailureType, RecoveryConfig
from recovery._bounded import ThreadRunner  # the runner's collaborators, built as the manager does
from recovery._impl import Route
from recovery.alerts import AlertDispatcher
from recovery.breaker import CircuitBreaker
from recovery.health import HealthCheckConfig
from recovery.manager.episodes import EpisodeHooks, EpisodeRunner
from recovery.manager.outbox import Outbox
from recovery.manager.supervised import Episode, Outcome, Supervised, Verification
from recovery.strategies import CustomStrategy, RecoveryContext, RecoveryStrategy
from recovery.testing import FakeClock, RecordingAuditLogger
from tests.helpers import StubPluginManager, failing_strategy

LOGGER = logging.getLogger("tests.episode_runner")


def fixing_strategy(name: str = "fix") -> CustomStrategy:
    def recover(plugin_name: str, failure: FailureInfo, ctx: RecoveryContext) -> None:
        return None

    return CustomStrategy(name, 1, lambda failure: True, recover)


def build(
    clock: FakeClock, audit: RecordingAuditLogger, strategies: dict[str, RecoveryStrategy], *,
    healthy: bool | None = None, held: bool = False,
    parked: list[Verification] | None = None, **config: Any,
) -> tuple[EpisodeRunner, Supervised]:
    """A runner and one plugin in an episode, its breaker REPAIRING as the manager leaves
    it. ``healthy``: the plugin's health check answers so (None: it has none)."""
    recovery_config = RecoveryConfig(**config)
    runner = ThreadRunner(clock, lambda: None, recovery_config.max_abandoned_threads)
    outbox = Outbox(ThreadRunner(clock, lambda: None, 2), 1.0, LOGGER)
    check = None if healthy is None else (
        lambda: healthy, HealthCheckConfig(interval=1.0, timeout=1.0))

    def park(plugin: Supervised, verification: Verification, stopping: threading.Event) -> bool:
        if parked is None:
            return False
        parked.append(verification)
        return True

    def control(action: Callable[[], object]) -> None:
        action()

    hooks = EpisodeHooks(
        move_breaker=control, park=park, strategies=lambda: dict(strategies),
        health_check=lambda name: check, held_by_incident=lambda plugin: held,
        incident_id=lambda name: None, note_configured=lambda plugin, episode, name: None,
        ordered=lambda plugin, episode, candidates: candidates,
        verify_window=lambda plugin, episode, action: recovery_config.verify_timeout,
        learn=lambda plugin, failure, action, success, verified, duration: None,
    )
    episodes = EpisodeRunner(
        recovery_config, clock, LOGGER, StubPluginManager("p"), audit, threading.RLock(),
        runner, outbox, AlertDispatcher(LOGGER), hooks)
    breaker = CircuitBreaker("p", clock=clock)
    breaker.begin_repair()
    plugin = Supervised("p", breaker, Route(breaker, None))
    plugin.episode = Episode(FailureInfo(FailureType.ERROR), clock.monotonic(), None, False)
    return episodes, plugin


def test_a_verified_action_is_recovered_and_audited_once(
    clock: FakeClock, audit: RecordingAuditLogger
) -> None:
    episodes, plugin = build(clock, audit, {"fix": fixing_strategy()}, healthy=True)
    assert episodes.run(plugin, threading.Event()) is Outcome.RECOVERED
    assert audit.records == [("p", "error", "fix", True)]
    assert plugin.breaker.state is CircuitBreakerState.HALF_OPEN  # out of REPAIRING


def test_attempts_that_all_fail_are_exhausted_after_the_configured_number(
    clock: FakeClock, audit: RecordingAuditLogger
) -> None:
    episodes, plugin = build(clock, audit, {"bad": failing_strategy()},
                             max_recovery_attempts=3)
    assert episodes.run(plugin, threading.Event()) is Outcome.EXHAUSTED
    assert plugin.episode is not None and plugin.episode.attempts == 3
    assert audit.records == [("p", "error", "bad", False)] * 3


def test_a_failing_health_check_after_the_action_is_a_failed_attempt(
    clock: FakeClock, audit: RecordingAuditLogger
) -> None:
    episodes, plugin = build(clock, audit, {"fix": fixing_strategy()}, healthy=False,
                             max_recovery_attempts=2)
    assert episodes.run(plugin, threading.Event()) is Outcome.EXHAUSTED
    assert audit.records == [("p", "error", "fix", False)] * 2


def test_an_attempt_held_by_its_incident_runs_no_strategy(
    clock: FakeClock, audit: RecordingAuditLogger
) -> None:
    episodes, plugin = build(clock, audit, {"fix": fixing_strategy()}, healthy=True, held=True)
    assert episodes.run(plugin, threading.Event()) is Outcome.HELD_BY_INCIDENT
    assert audit.records == []


def test_without_a_health_check_it_parks_for_the_trials_and_returns_no_outcome(
    clock: FakeClock, audit: RecordingAuditLogger
) -> None:
    parked: list[Verification] = []
    episodes, plugin = build(clock, audit, {"fix": fixing_strategy()}, parked=parked)
    assert episodes.run(plugin, threading.Event()) is None  # parked: the verdict comes later
    assert [verification.action for verification in parked] == ["fix"]
    assert plugin.breaker.state is CircuitBreakerState.HALF_OPEN
    assert audit.records == []  # audited with its verdict


@pytest.mark.parametrize("outcome", list(Outcome))
def test_outcomes_are_the_strings_status_and_logs_show(outcome: Outcome) -> None:
    assert str(outcome) == outcome.value == f"{outcome}"
