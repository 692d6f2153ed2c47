"""The manager's status as typed values, and the dict ``get_recovery_status()`` makes of it.

The dict is a published shape (the demo's --json, the dashboard feed, scripts): the
frozen expected dict below was taken from the manager before the status became typed,
and must stay exactly as it is.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import attrs
import pytest

import recovery
from recovery.config import CircuitBreakerConfig
from recovery.failures import FailureInfo
from recovery.health import HealthCheckConfig
from recovery.manager import EPISODE_OUTCOMES, RecoveryConfig, RecoveryManager
from recovery.state import CircuitBreakerState
from recovery.status import (
    ActionCounts,
    EpisodeCounts,
    HealthCheckStatus,
    LastHealthCheck,
    PluginRecovery,
    PluginStatus,
    RecoveryStatus,
    StuckStrategy,
)
from recovery.strategies import CustomStrategy, RecoveryContext
from recovery.testing import FakeClock, RecordingAuditLogger
from tests.helpers import StubPluginManager, eventually, settle

WALL = "<wall>"
_ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def _walls(data: Any) -> Any:
    """``data`` with every wall-clock timestamp (ISO-8601 UTC) written as ``WALL``."""
    if isinstance(data, dict):
        return {key: _walls(value) for key, value in data.items()}
    if isinstance(data, list):
        return [_walls(value) for value in data]
    if isinstance(data, str) and _ISO.match(data):
        return WALL
    return data


def _failing(plugin_name: str, failure: FailureInfo, ctx: RecoveryContext) -> None:
    raise RuntimeError(f"cannot fix {plugin_name}")


@pytest.fixture
def known() -> Iterator[RecoveryManager]:
    """A started manager with four plugins in four states.

    steady: healthy, checked, one call. broken: an unrecoverable failure, failed
    until reset, its breaker held open. looping: its strategy fails twice, so it is
    in a crash loop. degraded: degraded by its strategy (its breaker left half-open for
    a trial), its fallback served once.
    """
    clock = FakeClock()
    rm = RecoveryManager(
        StubPluginManager("steady", "broken", "looping", "degraded"),
        RecordingAuditLogger(),
        RecoveryConfig(
            enable_health_checking=True,
            plugin_recovery_strategies={"looping": "bad", "degraded": "degrade"},
            recovery_strategy_configs={"degrade": {"hold": 600.0}},
            max_recovery_attempts=2,
            crash_loop_delay=30.0,
        ),
        clock=clock,
    )
    rm.register_strategy("bad", CustomStrategy("bad", 1, lambda f: True, _failing))
    rm.start()
    try:
        rm.register_plugin("steady", health_check=lambda: True,
                           health_check_config=HealthCheckConfig(interval=10.0))
        clock.advance(10.0)  # the first check is planned within the first interval
        eventually(lambda: rm.get_recovery_status()["plugins"]["steady"]["health_check"][
            "last_result"] is not None)
        rm.register_plugin("broken")
        rm.register_plugin("looping")
        rm.register_plugin("degraded", CircuitBreakerConfig(success_threshold=1),
                           fallback=lambda: "lite")
        rm.execute_with_recovery("steady", lambda: None)
        # In this order, so that no settle() moves the clock under an open breaker
        # other than the one it settles.
        rm.record_failure("degraded", FailureInfo("resource_limit", severity="critical"))
        settle(rm, clock)
        assert rm.execute_with_recovery("degraded", lambda: "full") == "lite"
        rm.record_failure("looping", FailureInfo("error"))
        settle(rm, clock)
        rm.record_failure("broken", FailureInfo("error", recoverable=False))
        yield rm
    finally:
        rm.stop(timeout=5.0)


def _breaker(name: str, state: str, **fields: Any) -> dict[str, Any]:
    return {
        "name": name, "state": state, "total_requests": 0, "total_failures": 0,
        "total_successes": 0, "total_rejections": 0, "total_slow_calls": 0,
        "failure_rate": 0.0, "window_failure_rate": 0.0, "last_failure": None,
        "last_success": None, "state_change_time": None, "circuit_open_time": 0.0,
        "health_check_success": None, "next_retry_time": None, "opened_by": None,
        "latency": None, **fields,
    }


_UNCHECKED = {"last_check": None, "last_result": None, "consecutive_fails": 0, "stuck": False,
              "enabled": False}


def _recovery(**fields: Any) -> dict[str, Any]:
    return {
        "in_progress": False, "attempts": 0, "last_action": None, "last_action_success": None,
        "degraded": False, "fallbacks_served": 0, "failed": False, "failed_reason": None,
        "crash_loop": False, "next_attempt": None, "failed_episodes_in_a_row": 0,
        "consecutive_failures": 0, "episode_failures": 0, "episode_started": None,
        "recent_episodes": 0, "abandoned_threads": 0, "refused_runs": 0, "down_since": None,
        "actions": {},
        "episodes": {"recovered": 0, "held": 0, "unverified": 0, "exhausted": 0,
                     "interrupted": 0},
        "strategy_order": {},
        **fields,
    }


EXPECTED: dict[str, Any] = {
    "running": True,
    "auto_recovery": True,
    "health_checking": True,
    "alerting": True,
    "episodes_in_progress": 0,
    "stuck_strategies": [],
    "stuck_health_checks": 0,
    "callback_timeouts": 0,
    "callback_errors": 0,
    "incidents": [],
    "plugins": {
        "steady": {
            "kind": "plugin", "depends_on": [], "tags": {},
            "circuit_breaker": _breaker(
                "steady", "closed", total_requests=1, total_successes=1, last_success=WALL,
                state_change_time=WALL, health_check_success=True),
            "health_check": {
                "last_check": WALL,
                "last_result": {"healthy": True, "duration": "0us", "message": ""},
                "consecutive_fails": 0, "stuck": False, "enabled": True,
            },
            "recovery": _recovery(),
            "warning": None,  # early warning is off
        },
        "broken": {
            "kind": "plugin", "depends_on": [], "tags": {},
            "circuit_breaker": _breaker("broken", "open", state_change_time=WALL),
            "health_check": _UNCHECKED,
            "recovery": _recovery(failed=True, failed_reason="unrecoverable",
                                  consecutive_failures=1),
            "warning": None,
        },
        "looping": {
            "kind": "plugin", "depends_on": [], "tags": {},
            "circuit_breaker": _breaker("looping", "open", state_change_time=WALL,
                                        circuit_open_time=1.0),
            "health_check": _UNCHECKED,
            "recovery": _recovery(
                attempts=2, last_action="bad", last_action_success=False, failed=True,
                failed_reason="exhausted", crash_loop=True, next_attempt=WALL, down_since=WALL,
                failed_episodes_in_a_row=1, consecutive_failures=1, recent_episodes=1,
                actions={"bad": {"success": 0, "failure": 2}},
                episodes={"recovered": 0, "held": 0, "unverified": 0, "exhausted": 1,
                          "interrupted": 0},
                strategy_order={"error": {"mode": "configured", "order": ["bad"], "strategies": {
                    "bad": {"attempts": 2, "successes": 0, "median_time": None,
                            "verification_window": 10.0}}}}),
            "warning": None,
        },
        "degraded": {
            "kind": "plugin", "depends_on": [], "tags": {},
            "circuit_breaker": _breaker("degraded", "half_open", state_change_time=WALL),
            "health_check": _UNCHECKED,
            "recovery": _recovery(
                attempts=1, last_action="degrade", last_action_success=True, degraded=True,
                fallbacks_served=1, failed_episodes_in_a_row=1, consecutive_failures=1,
                recent_episodes=1, down_since=WALL,
                actions={"degrade": {"success": 1, "failure": 0}},
                episodes={"recovered": 0, "held": 1, "unverified": 0, "exhausted": 0,
                          "interrupted": 0},
                strategy_order={"resource_limit": {
                    "mode": "configured", "order": ["degrade"], "strategies": {
                        "degrade": {"attempts": 1, "successes": 0, "median_time": None,
                                    "verification_window": 10.0}}}}),
            "warning": None,
        },
    },
}


for _plugin in EXPECTED["plugins"].values():  # in no incident: none is linked or grouped
    _plugin.update(incident=None, held_until=None)


def test_get_recovery_status_keeps_its_shape_and_values(known: RecoveryManager) -> None:
    status = known.get_recovery_status()
    assert json.loads(json.dumps(status)) == status
    assert _walls(status) == EXPECTED
    # Key order too: the demo's --json and the dashboard print it as it comes.
    assert json.dumps(_walls(status)) == json.dumps(EXPECTED)



def test_status_gives_the_same_reading_as_typed_values(known: RecoveryManager) -> None:
    status = known.status()
    assert isinstance(status, RecoveryStatus)
    assert (status.running, status.episodes_in_progress, status.stuck_strategies) == (
        True, 0, ())
    assert list(status.plugins) == ["steady", "broken", "looping", "degraded"]
    assert all(isinstance(plugin, PluginStatus) and plugin.name == name
               for name, plugin in status.plugins.items())
    steady, broken, looping, degraded = status.plugins.values()
    assert steady.circuit_breaker.state is CircuitBreakerState.CLOSED
    assert steady.health_check.enabled is True
    assert steady.health_check.last_result == LastHealthCheck(True, "0us", "")
    assert broken.health_check == HealthCheckStatus()
    # Held open until reset_plugin(): no retry time, as in the dict.
    assert broken.circuit_breaker.state is CircuitBreakerState.OPEN
    assert broken.circuit_breaker.next_retry_time is None
    assert (broken.recovery.failed, broken.recovery.failed_reason) == (True, "unrecoverable")
    assert looping.recovery.crash_loop is True
    assert isinstance(looping.recovery.next_attempt, float)
    assert looping.recovery.actions == {"bad": ActionCounts(success=0, failure=2)}
    assert looping.recovery.episodes == EpisodeCounts(exhausted=1)
    assert degraded.recovery.degraded is True
    assert degraded.recovery.episodes == EpisodeCounts(held=1)
    assert _walls(status.to_dict()) == EXPECTED


def test_episode_counts_has_a_field_per_outcome_in_the_managers_order() -> None:
    assert tuple(field.name for field in attrs.fields(EpisodeCounts)) == EPISODE_OUTCOMES
    assert tuple(EpisodeCounts().to_dict()) == EPISODE_OUTCOMES


def test_the_typed_values_are_frozen_and_exported() -> None:
    values = (ActionCounts(), EpisodeCounts(), HealthCheckStatus(), PluginRecovery(),
              StuckStrategy("restart p", 0.0))
    for value in values:
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            value.__setattr__(attrs.fields(type(value))[0].name, None)
    for name in ("RecoveryStatus", "PluginStatus", "PluginRecovery", "HealthCheckStatus",
                 "LastHealthCheck", "EpisodeCounts", "ActionCounts", "StuckStrategy"):
        assert getattr(recovery, name) is getattr(recovery.status, name)
        assert name in recovery.__all__


def test_timestamps_are_wall_clock_floats_and_iso_strings_in_the_dict() -> None:
    view = PluginRecovery(crash_loop=True, next_attempt=1_700_000_012.9,
                          episode_started=1_700_000_000.0)
    assert (view.to_dict()["next_attempt"], view.to_dict()["episode_started"]) == (
        "2023-11-14T22:13:32Z", "2023-11-14T22:13:20Z")
    assert StuckStrategy("restart p", 1_700_000_000.0).to_dict() == {
        "label": "restart p", "since": "2023-11-14T22:13:20Z"}


def test_a_breakers_dict_has_its_latency_histogram_as_lists(make_breaker: Any) -> None:
    """The status dict carries each breaker's ``metrics().to_dict()``: nested values too."""
    breaker = make_breaker(record_latency=True)
    breaker.call(lambda: None)
    metrics = breaker.metrics()
    assert metrics.latency is not None
    data = metrics.to_dict()
    assert data["latency"] == {"bounds": metrics.latency.bounds,
                               "counts": metrics.latency.counts, "sum": metrics.latency.sum}
    assert data["state"] == "closed" and isinstance(data["last_success"], str)
    assert json.loads(json.dumps(data))["latency"]["counts"] == list(metrics.latency.counts)


def test_a_clusters_status_has_the_keys_its_type_declares_in_order() -> None:
    """``Cluster.status()`` is typed (``ClusterStatus``) for the readers mypy checks; the
    dict it returns has exactly those keys, in the order scripts have seen them."""
    pytest.importorskip("redis")
    from recovery.cluster import Cluster
    from recovery.status import ClusterBreaker, ClusterStatus

    cluster = Cluster("redis://127.0.0.1:1/0", namespace="typed-status")  # never started
    cluster.attach(recovery.CircuitBreaker("typed"))
    status = cluster.status()
    assert list(status) == list(ClusterStatus.__annotations__) == [
        "connected", "node_id", "namespace", "quorum", "events_published", "events_received",
        "events_dropped", "events_stale", "errors", "last_error", "events", "dropped",
        "breakers"]
    assert list(status["breakers"]["typed"]) == list(ClusterBreaker.__annotations__)
    assert status["events"] == {"published": {"open": 0, "close": 0},
                                "received": {"open": 0, "close": 0}}
