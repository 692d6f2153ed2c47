"""The manager orders its strategies by what its audit trail says works.

A real manager on the fake clock, with a plugin that a restart never fixes (it
restarts, still wedged) but a reload always does. Under ``strategy_order="learned"``
it is reloaded first after a few episodes; under ``"priority"`` it is restarted
first for ever; a configured strategy is used as configured. What was learned
survives a restart of the manager (rebuilt from the audit log at ``start()``),
each audit record names the order used and the run's duration, and the status
shows the order and why.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from recovery.audit import (
    JsonlAuditLogger,
    MemoryAuditLogger,
    SqliteAuditLogger,
    record_attempt,
)
from recovery.config import RecoveryConfig
from recovery.failures import FailureInfo
from recovery.learning import StrategyLearner
from recovery.manager import RecoveryManager
from recovery.state import CircuitBreakerState
from recovery.testing import FakeClock
from tests.helpers import MakeManager, StubPluginManager, eventually, settle
from tests.incidents.test_manager_incidents import Outage, db_and_dependent, quiet, trip

RESTART_TIME = 2.0
RELOAD_TIME = 1.0


class Wedged:
    """A plugin a restart does not fix (it comes back up, still wedged) and a reload does.

    Each action takes its time on the fake clock, as a real one takes real time.
    """

    def __init__(self, clock: FakeClock, name: str = "p") -> None:
        self.name = name
        self.clock = clock
        self.wedged = False

    def initialize(self, config: Any) -> None:
        self.clock.advance(RESTART_TIME)

    def shutdown(self) -> None:
        pass

    def reload(self, config: Any) -> None:
        self.clock.advance(RELOAD_TIME)
        self.wedged = False

    def healthy(self) -> bool:
        return not self.wedged


def _records(audit: Any) -> list[dict[str, Any]]:
    if isinstance(audit, JsonlAuditLogger):
        return list(JsonlAuditLogger.read(audit.path))
    return audit.query()  # type: ignore[no-any-return]


def _episodes(rm: RecoveryManager, plugin: Wedged, clock: FakeClock, audit: Any,
              count: int) -> list[list[str]]:
    """Wedge the plugin ``count`` times; the actions each episode ran, in order."""
    runs: list[list[str]] = []
    for _ in range(count):
        seen = len(_records(audit))
        plugin.wedged = True
        rm.record_failure(plugin.name, FailureInfo("error"))
        settle(rm, clock)
        assert rm.wait_idle(5)
        runs.append([record["action"] for record in _records(audit)[seen:]])
        if rm.status().plugins[plugin.name].recovery.failed:
            rm.reset_plugin(plugin.name)  # exhausted (restart only): start afresh
        clock.advance(1.0)
    return runs


@pytest.fixture
def manager(clock: FakeClock) -> Any:
    """``manager(audit, **config)`` -> (a started manager of one Wedged plugin, the plugin)."""
    made: list[RecoveryManager] = []

    def build(audit: Any, **config: Any) -> tuple[RecoveryManager, Wedged]:
        plugin = Wedged(clock)
        config.setdefault("enable_health_checking", False)
        config.setdefault("max_episodes_per_period", 1000)
        config.setdefault("random_seed", 7)
        config.setdefault("strategy_order", "learned")  # opt-in: what this module tests
        rm = RecoveryManager(StubPluginManager(plugin), audit, RecoveryConfig(**config),
                             clock=clock)
        made.append(rm)
        rm.register_plugin(plugin.name, health_check=plugin.healthy)
        rm.start()
        return rm, plugin

    yield build
    for rm in made:
        rm.stop(timeout=5.0)


def test_learned_reloads_first_once_restarts_never_helped(
    manager: Any, clock: FakeClock
) -> None:
    audit = MemoryAuditLogger()
    rm, plugin = manager(audit, strategy_order="learned")
    runs = _episodes(rm, plugin, clock, audit, 12)
    # With no history, the priority order: restart, which fails its verification;
    # the next attempt of the episode tries what has not failed yet (seed 7: reload).
    assert runs[0] == ["restart", "reload"]
    assert runs[-6:] == [["reload"]] * 6  # then reload alone, first time, every time
    episodes = rm.status().plugins["p"].recovery.episodes
    assert episodes.exhausted == 0
    assert episodes.recovered == sum(run[-1] == "reload" for run in runs) >= 6


@pytest.mark.parametrize("seed", range(12))
def test_whatever_the_seed_reload_comes_first_in_the_end(
    manager: Any, clock: FakeClock, seed: int
) -> None:
    audit = MemoryAuditLogger()
    rm, plugin = manager(audit, strategy_order="learned", random_seed=seed)
    runs = _episodes(rm, plugin, clock, audit, 15)
    assert runs[0][0] == "restart"  # no history: the priority order
    # Thompson sampling still tries another now and then: not always, mostly.
    assert sum(run == ["reload"] for run in runs[-10:]) >= 8


def test_priority_keeps_restarting_first(manager: Any, clock: FakeClock) -> None:
    audit = MemoryAuditLogger()
    rm, plugin = manager(audit, strategy_order="priority", max_recovery_attempts=2)
    runs = _episodes(rm, plugin, clock, audit, 6)
    assert runs == [["restart", "restart"]] * 6  # restart's action is done every time
    assert {record["order"] for record in audit.query()} == {"priority"}
    view = rm.status().plugins["p"].recovery.strategy_order["error"]
    assert (view.mode, view.order) == ("priority", ("restart", "reload", "backoff"))
    assert (view.strategies["restart"].attempts, view.strategies["restart"].successes) == (12, 0)


def test_a_configured_strategy_is_used_as_configured(manager: Any, clock: FakeClock) -> None:
    audit = MemoryAuditLogger()
    rm, plugin = manager(audit, strategy_order="learned", max_recovery_attempts=2,
                         plugin_recovery_strategies={"p": "restart"})
    runs = _episodes(rm, plugin, clock, audit, 6)
    assert runs == [["restart", "restart"]] * 6
    assert {record["order"] for record in audit.query()} == {"configured"}
    view = rm.status().plugins["p"].recovery.strategy_order["error"]
    assert (view.mode, view.order) == ("configured", ("restart",))


def test_audit_records_carry_the_order_and_the_runs_duration(
    manager: Any, clock: FakeClock
) -> None:
    audit = MemoryAuditLogger()
    rm, plugin = manager(audit)  # the fixture's order: learned
    _episodes(rm, plugin, clock, audit, 1)  # seed 7: restart, then reload
    assert [(r["action"], r["success"], r["order"], r["duration"]) for r in audit.query()] == [
        ("restart", False, "learned", RESTART_TIME), ("reload", True, "learned", RELOAD_TIME)]


def test_a_hold_is_timed_to_its_end(manager: Any, clock: FakeClock) -> None:
    """A backoff returns at once but keeps the plugin out for its hold: that is its cost."""
    audit = MemoryAuditLogger()
    rm, plugin = manager(audit, plugin_recovery_strategies={"p": "backoff"},
                         recovery_strategy_configs={"backoff": {"base": 4.0, "jitter": 0.0}})
    _episodes(rm, plugin, clock, audit, 1)
    assert [(r["action"], r["order"], r["duration"]) for r in audit.query()] == [
        ("backoff", "configured", 4.0)]


def test_status_shows_the_order_in_force_and_why(manager: Any, clock: FakeClock) -> None:
    audit = MemoryAuditLogger()
    rm, plugin = manager(audit, strategy_order="learned")
    runs = _episodes(rm, plugin, clock, audit, 8)
    view = rm.status().plugins["p"].recovery.strategy_order["error"]
    assert view.mode == "learned"
    assert view.order is not None and view.order[0] == runs[-1][0] == "reload"
    restart, reload = view.strategies["restart"], view.strategies["reload"]
    restarts = sum(run.count("restart") for run in runs)
    reloads = sum(run.count("reload") for run in runs)
    assert (restart.attempts, restart.successes, restart.median_time) == (restarts, 0, None)
    assert (reload.attempts, reload.successes, reload.median_time) == (
        reloads, reloads, RELOAD_TIME)
    assert reloads >= 5
    assert reload.verification_window == 1.5  # 1.5 x p95 of 1 s, from 5 times on
    as_dict = rm.get_recovery_status()["plugins"]["p"]["recovery"]["strategy_order"]
    assert as_dict["error"]["strategies"]["reload"] == {
        "attempts": reloads, "successes": reloads, "median_time": RELOAD_TIME,
        "verification_window": 1.5}
    assert as_dict["error"]["order"] == list(view.order)


AUDIT_LOGGERS: dict[str, Callable[[Path], Any]] = {
    "jsonl": lambda tmp: JsonlAuditLogger(tmp / "audit.jsonl"),
    "sqlite": lambda tmp: SqliteAuditLogger(tmp / "audit.db"),
}


@pytest.mark.parametrize("kind", ["jsonl", "sqlite", "memory"])
def test_a_restarted_manager_keeps_what_was_learned(
    manager: Any, clock: FakeClock, tmp_path: Path, kind: str
) -> None:
    """A new process opens the same file (a memory logger: the same object given to a
    new manager); its first start() rebuilds what the last one learned."""
    shared = MemoryAuditLogger()

    def open_log() -> Any:
        return shared if kind == "memory" else AUDIT_LOGGERS[kind](tmp_path)

    first = open_log()
    rm, plugin = manager(first, strategy_order="learned")
    runs = _episodes(rm, plugin, clock, first, 8)
    before = rm.status().plugins["p"].recovery.strategy_order["error"].strategies
    assert before["reload"].successes == sum(run.count("reload") for run in runs)
    rm.stop(timeout=5.0)
    with contextlib.suppress(AttributeError):
        first.close()

    again = open_log()
    rm, plugin = manager(again, strategy_order="learned")
    rebuilt = rm.status().plugins["p"].recovery.strategy_order["error"]
    assert rebuilt.mode is None  # nothing tried yet in this process
    assert rebuilt.strategies == before  # the same counts, times and windows
    assert _episodes(rm, plugin, clock, again, 1) == [["reload"]] == runs[-1:]
    with contextlib.suppress(AttributeError):
        again.close()


def test_a_later_start_keeps_what_was_learned_live(make_manager: MakeManager,
                                                    clock: FakeClock) -> None:
    """Only the first start() rebuilds: a logger that keeps nothing readable (here a
    four-argument one) must not wipe what this manager learned before a stop()."""

    class Plain:
        def log_failure_recovery(self, *args: Any) -> None:
            pass

    plugin = Wedged(clock)
    rm = make_manager(StubPluginManager(plugin), Plain(), random_seed=1, strategy_order="learned")
    rm.register_plugin("p", health_check=plugin.healthy)
    plugin.wedged = True
    rm.record_failure("p", FailureInfo("error"))
    settle(rm, clock)
    learned = rm.status().plugins["p"].recovery.strategy_order["error"].strategies
    assert learned["restart"].attempts == 1
    rm.stop(timeout=5.0)
    rm.start()
    assert rm.status().plugins["p"].recovery.strategy_order["error"].strategies == learned


def test_the_learned_window_bounds_a_verification_by_trials(
    make_manager: MakeManager, clock: FakeClock
) -> None:
    """Five recoveries verified 2 s after the action: the sixth waits 1.5 x 2 s, not 10 s."""
    rm = make_manager(StubPluginManager("p"), MemoryAuditLogger(), verify_timeout=10.0,
                      max_episodes_per_period=100,
                      plugin_recovery_strategies={"p": "restart"})
    breaker = rm.register_plugin("p")
    for _ in range(5):
        rm.record_failure("p", FailureInfo("error"))
        eventually(lambda: breaker.state is CircuitBreakerState.HALF_OPEN)
        assert clock.wait_for_waiters(1)
        clock.advance(2.0)
        for _ in range(breaker.config.success_threshold):
            breaker.call(lambda: None)
        assert rm.wait_idle(5)
        assert breaker.state is CircuitBreakerState.CLOSED
    view = rm.status().plugins["p"].recovery.strategy_order["error"].strategies["restart"]
    assert (view.successes, view.median_time, view.verification_window) == (5, 2.0, 3.0)
    rm.record_failure("p", FailureInfo("error"))  # and no call comes to try it
    eventually(lambda: breaker.state is CircuitBreakerState.HALF_OPEN)
    assert clock.wait_for_waiters(1)
    clock.advance(2.9)
    assert not rm.wait_idle(0.05)
    clock.advance(0.1)
    assert rm.wait_idle(5)  # ended unverified at 3 s, where verify_timeout said 10
    assert rm.status().plugins["p"].recovery.episodes.unverified == 1


def test_only_a_logger_that_takes_them_is_given_the_order_and_the_duration() -> None:
    seen: list[dict[str, Any]] = []

    class Six:  # written against the six-argument call: never sees the new keywords
        def log_failure_recovery(self, *args: Any) -> None:
            raise AssertionError("the detailed path only")

        def log_recovery_attempt(self, plugin_name: str, failure_type: str,
                                 recovery_action: str, success: bool, *,
                                 action_succeeded: bool, verified: bool | None) -> None:
            seen.append({"verified": verified})

    class Open(Six):
        def log_recovery_attempt(self, *args: Any, **fields: Any) -> None:  # type: ignore[override]
            seen.append(fields)

    for logger in (Six(), Open()):
        record_attempt(logger, "p", "error", "reload", True, action_succeeded=True,
                       verified=True, order="learned", duration=1.5)
    assert seen == [{"verified": True}, {"action_succeeded": True, "verified": True,
                                         "order": "learned", "duration": 1.5}]


PREVIOUS_SCHEMA = """
CREATE TABLE recovery_audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, plugin TEXT NOT NULL,
    failure_type TEXT NOT NULL, action TEXT NOT NULL, success INTEGER NOT NULL,
    action_succeeded INTEGER, verified INTEGER
);
INSERT INTO recovery_audit (ts, plugin, failure_type, action, success, action_succeeded,
    verified) VALUES (1.5, 'db', 'error', 'restart', 1, 1, 1);
"""


def test_a_sqlite_database_without_order_and_duration_gains_them(tmp_path: Path) -> None:
    path = tmp_path / "previous.db"
    with contextlib.closing(sqlite3.connect(path)) as previous:
        previous.executescript(PREVIOUS_SCHEMA)
    with SqliteAuditLogger(path) as audit:
        audit.log_recovery_attempt("db", "error", "reload", True, action_succeeded=True,
                                   verified=True, order="learned", duration=0.25)
        records = audit.query()
    assert [(r["action"], r["order"], r["duration"]) for r in records] == [
        ("restart", None, None), ("reload", "learned", 0.25)]


@pytest.mark.parametrize(("field", "value", "error"), [
    ("strategy_order", "fastest", ValueError),
    ("strategy_order", None, TypeError),
    ("random_seed", "7", TypeError),
    ("random_seed", 1.5, TypeError),
])
def test_bad_settings_name_the_field(field: str, value: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match=field):
        RecoveryConfig(**{field: value})


def test_the_defaults() -> None:
    config = RecoveryConfig()
    assert (config.strategy_order, config.random_seed) == ("priority", None)


def test_a_strategy_that_returns_at_once_and_never_verifies_does_not_stay_first() -> None:
    """A reset returns in no time and proves nothing: at a cost of 0 it would score 0,
    first for ever; no attempt costs less than a second."""
    learner = StrategyLearner(verify_timeout=10.0, random_seed=3)
    for _ in range(20):
        learner.observe("p", "health_check", "reset", verified=False, duration=0.0)
        learner.observe("p", "health_check", "reload", verified=True, duration=1.0)
    candidates = [("reload", 80), ("reset", 60)]
    firsts = [learner.order("p", "health_check", candidates)[0] for _ in range(100)]
    assert firsts.count("reload") >= 95


def test_an_incidents_trial_is_no_strategy_and_nothing_is_learned_from_it(
    clock: FakeClock,
) -> None:
    """A dependent held by its database's incident gets one trial once the database is
    back: no order picked it, so its record names none, and it is not a strategy."""
    outage = Outage()
    audit = MemoryAuditLogger()
    rm = db_and_dependent(clock, audit, outage, crash_loop_delay=5.0)
    with rm:
        trip(rm, "db", "a")
        quiet(rm)
        outage.down = False
        clock.advance(5.0)  # db's next probe finds it back: a's trial
        quiet(rm)
    assert [(r["plugin"], r["action"], r["order"]) for r in audit.query()] == [
        ("db", "probe", "configured"), ("db", "probe", "configured"), ("a", "trial", None)]
    assert rm.status().plugins["a"].recovery.strategy_order == {}
