"""Structured events in logs: one record per transition, recovery action and alert, its
fields in ``extra`` (attributes of the record), on a logger under ``recovery``."""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

import pytest

from recovery import _events
from recovery.alerts import AlertThresholds
from recovery.config import CircuitBreakerConfig
from recovery.manager import RecoveryManager
from recovery.plugins import PluginRegistry
from recovery.testing import FakeClock, FlakyError, FlakyPlugin
from tests.helpers import MakeBreaker, MakeManager, manager_lock, settle

# Every attribute a LogRecord has of its own: what is not one of these came in ``extra``.
STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in STANDARD}


def events(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [fields(r) for r in caplog.records if hasattr(r, "event")]


def test_a_transition_is_one_record_with_its_fields(
    make_breaker: MakeBreaker, caplog: pytest.LogCaptureFixture
) -> None:
    breaker = make_breaker("db", failure_threshold=2, minimum_requests=2)
    with caplog.at_level(logging.INFO, logger="recovery"):
        for _ in range(2):
            with pytest.raises(ZeroDivisionError):
                breaker.call(lambda: 1 / 0)
        breaker.reset()
    assert events(caplog) == [
        {"event": "transition", "plugin": "db", "old_state": "closed", "new_state": "open"},
        {"event": "transition", "plugin": "db", "old_state": "open", "new_state": "closed"},
    ]
    record = next(r for r in caplog.records if hasattr(r, "event"))
    assert record.name == "recovery.breaker" and record.levelno == logging.INFO
    assert record.getMessage() == "breaker 'db': closed -> open"


def test_a_json_formatter_ships_the_fields_as_they_are(
    make_breaker: MakeBreaker, caplog: pytest.LogCaptureFixture
) -> None:
    breaker = make_breaker("db")
    with caplog.at_level(logging.INFO, logger="recovery"):
        breaker.force_open()
    (record,) = [r for r in caplog.records if hasattr(r, "event")]
    shipped = json.loads(json.dumps({"message": record.getMessage(), **fields(record)}))
    assert shipped == {"message": "breaker 'db': closed -> open", "event": "transition",
                       "plugin": "db", "old_state": "closed", "new_state": "open"}


def test_nothing_is_built_when_the_level_is_disabled(
    make_breaker: MakeBreaker, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: Any) -> None:
        raise AssertionError("an event was built for a disabled level")

    monkeypatch.setattr(_events, "emit", refuse)
    breaker = make_breaker("db")
    with caplog.at_level(logging.WARNING, logger="recovery"):
        breaker.force_open()
        breaker.reset()
    assert events(caplog) == []


@pytest.fixture
def flaky_manager(make_manager: MakeManager) -> tuple[RecoveryManager, FlakyPlugin]:
    plugins = PluginRegistry()
    plugin = FlakyPlugin("svc")
    plugins.register(plugin)
    rm = make_manager(
        plugins, enable_health_checking=True,
        plugin_recovery_strategies={"svc": "restart"},
        alert_thresholds=AlertThresholds(consecutive_failures=1),
    )
    return rm, plugin


def trip_and_recover(rm: RecoveryManager, plugin: FlakyPlugin, clock: FakeClock) -> None:
    """Two failures trip the breaker; the first restart crashes, the second recovers."""
    rm.register_plugin("svc", CircuitBreakerConfig(failure_threshold=2, minimum_requests=2),
                       health_check=plugin.health_check)
    plugin.fail_until_restarted(1)
    plugin.crash_next_initializations(1)
    for _ in range(2):
        with pytest.raises(FlakyError):
            rm.execute_with_recovery("svc", plugin.do_work)
    settle(rm, clock, step=0.5)


def test_recovery_actions_and_alerts_are_one_record_each(
    flaky_manager: tuple[RecoveryManager, FlakyPlugin], clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    rm, plugin = flaky_manager
    with caplog.at_level(logging.INFO, logger="recovery"):
        trip_and_recover(rm, plugin, clock)
    found = events(caplog)
    actions = [e for e in found if e["event"] == "recovery_action"]
    for action in actions:
        assert isinstance(action.pop("duration"), float)
    assert actions == [
        {"event": "recovery_action", "plugin": "svc", "action": "restart", "result": "failure",
         "failure_type": "error", "action_succeeded": False, "verified": None},
        {"event": "recovery_action", "plugin": "svc", "action": "restart", "result": "success",
         "failure_type": "error", "action_succeeded": True, "verified": True},
    ]
    alerts = [e for e in found if e["event"] == "alert"]
    assert alerts == [{
        "event": "alert", "plugin": "svc", "alert": "consecutive_failures",
        "detail": "1 consecutive failures (threshold 1); last: error: svc: failing until "
                  "restarted 1 more time(s)",
    }]
    transitions = [(e["old_state"], e["new_state"]) for e in found if e["event"] == "transition"]
    # Tripped, repaired, and (the health check passed) half-open for the next call's trial.
    assert transitions == [("closed", "open"), ("open", "repairing"), ("repairing", "half_open")]
    levels = {r.levelno for r in caplog.records if getattr(r, "event", None) == "recovery_action"}
    assert levels == {logging.INFO, logging.WARNING}  # a failed action is a warning


def test_the_duration_is_the_run_s_on_the_manager_s_clock(
    flaky_manager: tuple[RecoveryManager, FlakyPlugin], clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    rm, plugin = flaky_manager
    with caplog.at_level(logging.INFO, logger="recovery"):
        trip_and_recover(rm, plugin, clock)
    durations = [e["duration"] for e in events(caplog) if e["event"] == "recovery_action"]
    assert durations and all(0 <= d <= 10.0 for d in durations)


class OwnerCheck(logging.Handler):
    """Notes, for every event record, whether its thread held the manager's lock."""

    def __init__(self, lock: Any) -> None:
        super().__init__(logging.DEBUG)
        self.manager_lock = lock
        self.seen: list[tuple[str, bool]] = []
        self.guard = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        if hasattr(record, "event"):
            owned = self.manager_lock._is_owned()  # private: an RLock says only so if we hold it
            with self.guard:
                self.seen.append((record.event, owned))


def test_no_event_is_logged_under_the_manager_s_lock(
    flaky_manager: tuple[RecoveryManager, FlakyPlugin], clock: FakeClock,
) -> None:
    rm, plugin = flaky_manager
    handler = OwnerCheck(manager_lock(rm))
    root = logging.getLogger("recovery")
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        trip_and_recover(rm, plugin, clock)
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    assert {event for event, _ in handler.seen} == {"transition", "recovery_action", "alert"}
    # Including the move to repairing that an episode's start makes.
    assert ("transition", False) in handler.seen
    assert [seen for seen in handler.seen if seen[1]] == []
