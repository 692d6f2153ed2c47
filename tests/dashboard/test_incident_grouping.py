"""The dashboard groups an incident: a database and the three plugins that use it trip.

A real RecoveryManager on a fake clock (incidents as in
tests/incidents/test_manager_incidents.py); the dashboard reads it once a second in
real time, so the waits are the stream's bounded deadlines
(tests/dashboard/test_http_and_stream.py).
One of the members is named like markup: the feed sends names as data.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest

from recovery import CircuitBreakerConfig, RecoveryConfig, RecoveryManager
from recovery.dashboard import Dashboard
from recovery.testing import FakeClock, RecordingAuditLogger
from tests.dashboard.test_http_and_stream import XSS, Stream, request, tile, timeline_event
from tests.helpers import StubPluginManager
from tests.incidents.test_manager_incidents import Outage, quiet, trip

MEMBERS = ("orders", XSS, "search")
TRIPS_AT_ONCE = CircuitBreakerConfig(failure_threshold=1)


def incident_manager(clock: FakeClock, outage: Outage) -> RecoveryManager:
    """db (a dependency with a health check) and three plugins that depend on it; one
    attempt per episode and a 5 s crash-loop delay, so only the test moves the clock."""
    rm = RecoveryManager(StubPluginManager(*MEMBERS), RecordingAuditLogger(),
                         RecoveryConfig(enable_health_checking=False, max_recovery_attempts=1,
                                        crash_loop_delay=5.0), clock=clock)
    rm.register_dependency("db", health_check=outage.healthy, breaker_config=TRIPS_AT_ONCE)
    for name in MEMBERS:
        rm.register_plugin(name, TRIPS_AT_ONCE, health_check=lambda: True,
                           fallback=lambda: "cached", depends_on=("db",))
    return rm


Watch = Callable[[RecoveryManager], tuple[Dashboard, Stream]]


@pytest.fixture
def watch(boards: Callable[..., Dashboard]) -> Iterator[Watch]:
    """``watch(rm)``: ``rm``'s dashboard and a stream of it past its snapshot (the
    baseline the readings from here on are compared with); closed after the test."""
    streams: list[Stream] = []

    def make(rm: RecoveryManager) -> tuple[Dashboard, Stream]:
        board = boards(rm)
        streams.append(Stream(board))
        streams[-1].next()
        return board, streams[-1]

    yield make
    for stream in streams:
        stream.close()


def incident_entries(board: Dashboard) -> list[str]:
    timeline = json.loads(request(board, "GET", "/status.json")[2])["timeline"]
    return [entry["text"] for entry in timeline if "incident" in entry["text"]]


def test_an_incident_is_one_group_with_its_root_first_and_opened_then_resolved(
    watch: Watch) -> None:
    clock, outage = FakeClock(1000.0), Outage()
    with incident_manager(clock, outage) as rm:
        board, stream = watch(rm)
        trip(rm, "db", *MEMBERS)
        quiet(rm)
        (incident,) = rm.incidents()
        _, tick = stream.until(lambda event, data: event == "tick" and data["incidents"]
                               and len(data["incidents"][0]["members"]) == 4)
        (view,) = tick["incidents"]
        assert view["id"] == incident.id and view["root"] == "db"
        assert view["members"] == list(incident.members)
        assert view["cause_known"] is True and view["links"] == ["depends_on"]
        assert view["started"].endswith("Z")
        root = tile(tick, "plugin:db")
        assert (root["incident"], root["held_until"]) == (incident.id, None)
        for name in MEMBERS:  # held while the root is repaired, and shown so
            member = tile(tick, "plugin:" + name)
            assert member["incident"] == incident.id
            assert member["held_until"] is not None
        opened = [text for text in incident_entries(board) if "opened" in text]
        assert len(opened) == 1 and opened[0].startswith("incident opened: root db, with ")
        said = " ".join(incident_entries(board))
        assert all(name in said for name in MEMBERS), said  # opened with, or joined

        outage.down = False
        clock.advance(5.0)  # the announcement, then db's probe finds it back: trials
        quiet(rm)
        _, resolved = stream.until(
            timeline_event("incident", "db", "incident resolved: root db, 4 members"))
        assert resolved["tile"] == "plugin:db" and resolved["level"] == "good"
        _, tick = stream.until(lambda event, data: event == "tick" and not data["incidents"])
        assert all(tile(tick, "plugin:" + name)["incident"] is None for name in MEMBERS)
        texts = incident_entries(board)
    # One opened and one resolved from the readings; the manager's incident alerts
    # are not on the timeline a second time.
    assert [text.split(":")[0] for text in texts if "updated" not in text] == [
        "incident opened", "incident resolved"], texts


def test_a_lone_failure_is_no_group(
    watch: Watch) -> None:
    clock, outage = FakeClock(1000.0), Outage()
    with incident_manager(clock, outage) as rm:
        board, stream = watch(rm)
        trip(rm, "orders")
        quiet(rm)
        assert [incident.members for incident in rm.incidents()] == [("orders",)]
        _, tick = stream.until(lambda event, data: event == "tick" and tile(
            data, "plugin:orders")["circuit_breaker"]["state"] != "closed")
        assert tick["incidents"] == [] and tile(tick, "plugin:orders")["incident"] is None
        assert incident_entries(board) == []


def test_unlinked_failures_at_once_are_a_group_whose_cause_is_unknown(watch: Watch) -> None:
    clock = FakeClock(1000.0)
    names = ("p", "q", "r")  # nothing declared between them
    with RecoveryManager(StubPluginManager(*names), RecordingAuditLogger(),
                         RecoveryConfig(enable_health_checking=False, max_recovery_attempts=1,
                                        crash_loop_delay=5.0), clock=clock) as rm:
        for name in names:
            rm.register_plugin(name, TRIPS_AT_ONCE, health_check=lambda: False)
        board, stream = watch(rm)
        trip(rm, *names)
        quiet(rm)
        clock.advance(2.0)  # the gathering time: then three lone onsets are one group
        quiet(rm)
        _, tick = stream.until(lambda event, data: event == "tick" and data["incidents"]
                               and len(data["incidents"][0]["members"]) == 3)
        (view,) = tick["incidents"]
        assert (view["root"], view["cause_known"], view["links"]) == ("p", False, [])
        assert incident_entries(board) == ["incident opened: root p, with q, r, cause unknown"]
