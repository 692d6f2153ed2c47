"""Incidents in a real RecoveryManager on a FakeClock: one cause, one alert, one recovery.

A database (a dependency with a health check) that five plugins depend on goes
down: all six trip; the manager repairs the database alone, holds the five
(breakers open, fallbacks served, no restart), gives each one trial once the
database is verified, and pages once. Run on both windows (the suite runs
again with ``RECOVERY_NO_EXTENSIONS=1``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from recovery.alerts import Alert
from recovery.audit import MemoryAuditLogger
from recovery.config import CircuitBreakerConfig
from recovery.dependency_graph import DependencyCycleError
from recovery.manager import RecoveryConfig, RecoveryManager
from recovery.state import CircuitBreakerState
from recovery.testing import FakeClock, RecordingAuditLogger
from tests.helpers import StubPluginManager, eventually

OPEN = CircuitBreakerState.OPEN
CLOSED = CircuitBreakerState.CLOSED
DEPENDENTS = ("a", "b", "c", "d", "e")
TRIPS_AT_ONCE = CircuitBreakerConfig(failure_threshold=1)


class Outage:
    """The database: down while ``down``; what its dependents' calls and checks see."""

    def __init__(self) -> None:
        self.down = True

    def healthy(self) -> bool:
        return not self.down

    def call(self) -> str:
        if self.down:
            raise ConnectionError("db is down")
        return "rows"


@pytest.fixture
def outage() -> Outage:
    return Outage()


@pytest.fixture
def alerts() -> list[Alert]:
    return []


@pytest.fixture
def manager(clock: FakeClock, audit: RecordingAuditLogger, outage: Outage,
            alerts: list[Alert]) -> Iterator[Any]:
    """``manager(**config)``: db and its five dependents (plus "x", linked to nothing)
    registered on a manager on the fake clock, stopped at the end.

    One attempt per episode, so no back-off pause moves the clock: it moves only
    when the test advances it. The dependents' own checks pass (they are well;
    only their database is not).
    """
    made: list[RecoveryManager] = []

    def build(**config: Any) -> RecoveryManager:
        config.setdefault("enable_health_checking", False)
        config.setdefault("max_recovery_attempts", 1)
        config.setdefault("crash_loop_delay", 5.0)
        rm = RecoveryManager(StubPluginManager(*DEPENDENTS, "x"), audit,
                             RecoveryConfig(**config), clock=clock)
        rm.add_alert_handler(alerts.append)
        rm.register_dependency("db", health_check=outage.healthy, breaker_config=TRIPS_AT_ONCE)
        for name in DEPENDENTS:
            rm.register_plugin(name, TRIPS_AT_ONCE, health_check=lambda: True,
                               fallback=lambda: "cached", depends_on=("db",))
        rm.register_plugin("x", TRIPS_AT_ONCE, health_check=lambda: True)
        made.append(rm)
        return rm

    yield build
    for rm in made:
        rm.stop()


def quiet(rm: RecoveryManager) -> None:
    """Until the manager has done all it can without the clock moving (the timer acted
    on what fell due: an announcement, a hold's end, a probe)."""
    eventually(lambda: rm.wait_idle(0.01) and rm.is_quiescent(),
               message="the manager did not settle")


def trip(rm: RecoveryManager, *names: str) -> None:
    for name in names:
        with pytest.raises(ConnectionError):
            rm.execute_with_recovery(name, _fail)
        assert rm.breaker(name).state is not CLOSED


def _fail() -> None:
    raise ConnectionError("down")


def actions(audit: RecordingAuditLogger, name: str) -> list[str]:
    return [action for plugin, _, action, _ in audit.records if plugin == name]


def incident_alerts(alerts: list[Alert]) -> list[tuple[str, str]]:
    return [(a.kind.value, a.plugin_name) for a in alerts if a.kind.startswith("incident_")]


def test_a_database_and_five_dependents_are_one_incident_repaired_at_its_root(
    manager: Any, clock: FakeClock, audit: RecordingAuditLogger, outage: Outage,
    alerts: list[Alert],
) -> None:
    rm = manager(alert_thresholds=_thresholds(consecutive_failures=1))
    with rm:
        trip(rm, "db", *DEPENDENTS)
        quiet(rm)
        (incident,) = rm.incidents()
        assert (incident.root, set(incident.members)) == ("db", {"db", *DEPENDENTS})
        status = rm.get_recovery_status()
        for name in DEPENDENTS:
            view = status["plugins"][name]
            assert view["incident"] == incident.id
            assert view["held_until"] is not None
            assert rm.breaker(name).state is OPEN
            assert rm.execute_with_recovery(name, outage.call) == "cached"
        assert status["plugins"]["db"]["held_until"] is None
        assert [i["id"] for i in status["incidents"]] == [incident.id]

        clock.advance(2.0)  # the incident has gathered its members: announced once
        quiet(rm)
        assert incident_alerts(alerts) == [("incident_opened", "db")]
        assert "root db" in alerts[-1].message
        clock.advance(2.0)  # db's probe is due at 5 s: still down
        quiet(rm)
        assert all(actions(audit, name) == [] for name in DEPENDENTS)

        outage.down = False
        clock.advance(1.0)  # db's next probe finds it back: one trial each
        quiet(rm)
        for name in DEPENDENTS:
            assert actions(audit, name) == ["trial"], name
            assert rm.execute_with_recovery(name, outage.call) == "rows"  # serving again
        assert actions(audit, "db") == ["probe", "probe"]
        assert incident_alerts(alerts) == [("incident_opened", "db"), ("incident_resolved", "db")]
        # The dependents' own threshold alerts were folded into the incident.
        assert not [a for a in alerts if a.plugin_name in DEPENDENTS]
        (ended,) = rm.incidents()
        assert ended.ended is not None and rm.incidents(active_only=True) == []
        assert ended.why("a").folded_alerts == ("consecutive_failures",)


def test_a_held_dependent_is_repaired_on_its_own_when_its_hold_times_out(
    manager: Any, clock: FakeClock, audit: RecordingAuditLogger,
) -> None:
    rm = manager(incident_hold_timeout=10.0)
    with rm:
        trip(rm, "db", *DEPENDENTS)
        quiet(rm)
        clock.advance(9.0)
        quiet(rm)
        assert all(actions(audit, name) == [] for name in DEPENDENTS)
        clock.advance(1.0)  # the hold is over; db is still down
        quiet(rm)
        # The hold counted as back-off: each is in its crash loop where its repairs
        # since the trip would be (waits of 5 s, then 10 s: the next slot is at 15 s).
        status = rm.get_recovery_status()["plugins"]
        for name in DEPENDENTS:
            assert status[name]["held_until"] is None
            assert status[name]["recovery"]["crash_loop"] is True
            assert actions(audit, name) == []
        clock.advance(4.0)
        quiet(rm)
        assert all(actions(audit, name) == [] for name in DEPENDENTS)
        clock.advance(1.0)
        quiet(rm)
        for name in DEPENDENTS:
            assert actions(audit, name) == ["restart"], name
            assert rm.breaker(name).state is not OPEN
        assert rm.breaker("db").state is OPEN


def test_an_unrelated_plugin_failing_meanwhile_is_an_incident_of_its_own(
    manager: Any, clock: FakeClock, audit: RecordingAuditLogger, alerts: list[Alert],
) -> None:
    rm = manager()
    with rm:
        trip(rm, "db", "a", "x", "b")
        quiet(rm)
        clock.advance(2.0)
        quiet(rm)
        by_root = {incident.root: set(incident.members) for incident in rm.incidents()}
        assert by_root == {"db": {"db", "a", "b"}, "x": {"x"}}
        assert actions(audit, "x") == ["restart"]  # not held: repaired as usual
        assert actions(audit, "a") == actions(audit, "b") == []
        # An incident of one is paged by its member's own alerts, not as an incident.
        assert incident_alerts(alerts) == [("incident_opened", "db")]


def test_a_dependency_cycle_is_refused_at_start_and_a_bad_late_registration_is_not_made(
    clock: FakeClock,
) -> None:
    rm = RecoveryManager(StubPluginManager("api", "web"), config=RecoveryConfig(
        enable_health_checking=False), clock=clock)
    rm.register_plugin("api", depends_on=("web",))
    rm.register_plugin("web", depends_on=("api",), tags={"host": "h1"})
    with pytest.raises(DependencyCycleError, match="api -> web -> api") as caught:
        rm.start()
    assert caught.value.cycle == ("api", "web", "api")
    assert not rm.get_recovery_status()["running"]

    ok = RecoveryManager(config=RecoveryConfig(enable_health_checking=False), clock=clock)
    ok.register_dependency("db")
    with ok:
        with pytest.raises(KeyError, match="'cache' depends on 'nowhere'"):
            ok.register_dependency("cache", depends_on=("nowhere",))
        assert "cache" not in ok.get_recovery_status()["plugins"]
        ok.register_dependency("cache", depends_on=("db",))
        assert ok.get_recovery_status()["plugins"]["cache"]["depends_on"] == ["db"]


def test_incident_settings_are_validated_like_the_rest() -> None:
    with pytest.raises(ValueError, match="incident_window"):
        RecoveryConfig(incident_window=0)
    with pytest.raises(ValueError, match="incident_min_group"):
        RecoveryConfig(incident_min_group=1)
    with pytest.raises(TypeError, match="incident_min_group"):
        RecoveryConfig(incident_min_group=2.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="incident_hold_timeout"):
        RecoveryConfig(incident_hold_timeout=-1)
    with pytest.raises(TypeError, match="depends_on"):
        RecoveryManager(StubPluginManager("p")).register_plugin("p", depends_on="db")


def _thresholds(**fields: Any) -> Any:
    from recovery.alerts import AlertThresholds

    return AlertThresholds(**fields)


def db_and_dependent(clock: FakeClock, audit: Any, outage: Outage,
                     **config: Any) -> RecoveryManager:
    """A manager on the fake clock of "db" (a dependency, down while ``outage`` is) and
    "a", which depends on it; one attempt per episode."""
    rm = RecoveryManager(StubPluginManager("a"), audit, RecoveryConfig(
        enable_health_checking=False, max_recovery_attempts=1, **config), clock=clock)
    rm.register_dependency("db", health_check=outage.healthy, breaker_config=TRIPS_AT_ONCE)
    rm.register_plugin("a", TRIPS_AT_ONCE, health_check=lambda: True, depends_on=("db",))
    return rm


def test_each_audit_record_carries_the_incident_id_where_the_logger_takes_it(
    clock: FakeClock, outage: Outage,
) -> None:
    memory = MemoryAuditLogger()
    rm = db_and_dependent(clock, memory, outage, incident_hold_timeout=1.0)
    with rm:
        trip(rm, "db", "a")
        quiet(rm)
        (incident,) = rm.incidents()
        clock.advance(1.0)  # a's hold times out: its crash loop's next slot is at 5 s
        quiet(rm)
        clock.advance(4.0)
        quiet(rm)
        records = memory.query()
        assert [r["action"] for r in records if r["plugin"] == "a"] == ["restart"]
        assert {r["plugin"] for r in records} == {"db", "a"}
        assert {r["incident"] for r in records} == {incident.id}


def test_prometheus_shows_open_incidents_their_members_and_who_is_held(
    manager: Any,
) -> None:
    pytest.importorskip("prometheus_client")
    from recovery.prometheus import RecoveryCollector

    rm = manager()
    with rm:
        trip(rm, "db", *DEPENDENTS)
        quiet(rm)
        (incident,) = rm.incidents()
        samples = {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
                   for family in RecoveryCollector(rm, breakers=False).collect()
                   for sample in family.samples if "incident" in sample.name}
    assert samples[("recovery_incidents_open", ())] == 1
    assert samples[("recovery_incident_members",
                    (("incident", incident.id), ("root", "db")))] == 6
    held = {dict(labels)["plugin"]: value for (name, labels), value in samples.items()
            if name == "recovery_incident_held"}
    assert held == {"db": 0, **dict.fromkeys(DEPENDENTS, 1), "x": 0}
