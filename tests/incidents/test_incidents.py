"""Incidents on a FakeClock: grouping by links, by simultaneity, or alone; the root; holds
and their end; one set of alerts; the trials after the root recovers; threads; bad input."""

from __future__ import annotations

import threading
from collections import Counter

import pytest

from recovery.dependency_graph import DependencyGraph, Node
from recovery.incidents import (
    OPENED,
    RESOLVED,
    SIMULTANEOUS,
    UPDATED,
    IncidentEvent,
    IncidentTracker,
    Update,
)
from recovery.testing import FakeClock
from tests.helpers import run_threads

SHOP = [
    Node("db"), Node("api", ["db"]), Node("web", ["api"]), Node("jobs", ["db"]),
    Node("cache", tags={"host": "h1"}), Node("search", tags={"host": "h1"}),
    Node("mail"), Node("sms"), Node("push"), Node("ftp"),
]


@pytest.fixture
def tracker(clock: FakeClock) -> IncidentTracker:
    return IncidentTracker(DependencyGraph(SHOP), clock=clock)


def kinds(*updates: Update) -> list[str]:
    return [event.kind for update in updates for event in update.events]


def groups(tracker: IncidentTracker) -> list[tuple[str, ...]]:
    return sorted(tuple(sorted(i.members)) for i in tracker.incidents())


# -- grouping ------------------------------------------------------------------------------


def test_a_dependent_tripping_within_the_window_joins_its_roots_incident(
    tracker: IncidentTracker, clock: FakeClock
) -> None:
    first = tracker.onset("db")
    clock.advance(29.0)
    second = tracker.onset("web")
    assert second.incident is not None and first.incident is not None
    assert second.incident.id == first.incident.id
    assert second.incident.members == ("db", "web") and second.incident.root == "db"
    why = second.incident.why("web")
    assert (why.reason, why.via, why.linked_to) == ("depends_on", ("web", "api", "db"), "db")


def test_linked_onsets_further_apart_than_the_window_are_incidents_of_their_own(
    tracker: IncidentTracker, clock: FakeClock
) -> None:
    tracker.onset("db")
    clock.advance(30.5)
    tracker.onset("web")
    assert groups(tracker) == [("db",), ("web",)]


def test_the_window_runs_from_the_latest_onset_of_a_linked_member(
    tracker: IncidentTracker, clock: FakeClock
) -> None:
    tracker.onset("db")
    clock.advance(20.0)
    tracker.onset("api")
    clock.advance(20.0)  # 40 s after db, 20 s after api (which web uses)
    tracker.onset("web")
    assert groups(tracker) == [("api", "db", "web")]


def test_a_shared_tag_value_links_onsets(tracker: IncidentTracker, clock: FakeClock) -> None:
    tracker.onset("cache")
    clock.advance(10.0)
    update = tracker.onset("search")
    assert update.incident is not None and update.incident.members == ("cache", "search")
    assert update.incident.why("search").via == ("host", "h1")
    assert update.incident.cause_known


def test_two_unlinked_onsets_at_once_stay_apart(tracker: IncidentTracker,
                                                clock: FakeClock) -> None:
    tracker.onset("mail")
    tracker.onset("sms")
    clock.advance(SIMULTANEOUS)
    tracker.poll()
    assert groups(tracker) == [("mail",), ("sms",)]


def test_three_unlinked_onsets_within_two_seconds_are_one_incident_cause_unknown(
    tracker: IncidentTracker, clock: FakeClock
) -> None:
    updates = [tracker.onset("mail")]
    clock.advance(1.0)
    updates.append(tracker.onset("sms"))
    clock.advance(1.0)
    updates.append(tracker.onset("push"))  # 2 s after the first: still in its group
    clock.advance(3.0)
    updates.append(tracker.onset("ftp"))  # 5 s after the first: on its own
    assert groups(tracker) == [("ftp",), ("mail", "push", "sms")]
    grouped = next(i for i in tracker.incidents() if len(i.members) == 3)
    assert not grouped.cause_known and grouped.root == "mail"  # the earliest onset
    assert {e.reason for e in grouped.evidence} == {"simultaneity"}
    assert kinds(*updates) == [OPENED]  # the group's; ftp's is not due yet


def test_unlinked_onsets_spread_over_more_than_two_seconds_are_not_grouped(
    tracker: IncidentTracker, clock: FakeClock
) -> None:
    for name in ("mail", "sms", "push"):
        tracker.onset(name)
        clock.advance(1.5)
    clock.advance(5.0)
    tracker.poll()
    assert groups(tracker) == [("mail",), ("push",), ("sms",)]


def test_min_group_is_the_size_of_a_simultaneous_group(clock: FakeClock) -> None:
    tracker = IncidentTracker(DependencyGraph(SHOP), min_group=2, clock=clock)
    tracker.onset("mail")
    tracker.onset("sms")
    clock.advance(SIMULTANEOUS)
    tracker.poll()
    assert groups(tracker) == [("mail", "sms")]


def test_siblings_whose_root_trips_a_moment_later_are_its_incident_not_a_cause_unknown_group(
    tracker: IncidentTracker, clock: FakeClock
) -> None:
    tracker.onset("web")  # web and jobs share no path; their root db trips a second later
    tracker.onset("jobs")
    tracker.onset("mail")
    clock.advance(1.0)
    tracker.onset("db")
    clock.advance(SIMULTANEOUS)
    update = tracker.poll()
    assert groups(tracker) == [("db", "jobs", "web"), ("mail",)]
    assert kinds(update) == [OPENED, OPENED]
    opened = {e.incident.root: e.incident for e in update.events}
    assert opened["db"].members == ("web", "jobs", "db") and opened["db"].cause_known


def test_an_onset_linked_to_two_open_incidents_joins_them_keeping_the_older_id(
    tracker: IncidentTracker, clock: FakeClock
) -> None:
    web = tracker.onset("web").incident
    clock.advance(5.0)
    jobs = tracker.onset("jobs").incident
    clock.advance(5.0)
    assert kinds(tracker.poll()) == [OPENED]  # jobs'; jobs' onset announced web's
    update = tracker.onset("db")
    assert web is not None and jobs is not None and update.incident is not None
    assert update.incident.id == web.id and update.incident.root == "db"
    assert [i.id for i in tracker.incidents()] == [web.id]
    assert kinds(update) == [RESOLVED, UPDATED]  # both were announced: jobs' merged away
    assert f"merged into incident {web.id}" in update.events[0].message
    assert "root now db (was web)" in update.events[1].message


def test_an_early_warning_is_an_onset_and_its_kind_is_kept(
    tracker: IncidentTracker, clock: FakeClock
) -> None:
    tracker.onset("db", "early_warning")
    clock.advance(12.0)
    update = tracker.onset("api")
    assert update.incident is not None
    assert update.incident.why("db").kind == "early_warning"
    assert update.incident.why("api").kind == "trip"


# -- the root ------------------------------------------------------------------------------


def test_the_root_is_the_upstream_most_member_even_when_it_trips_last(
    tracker: IncidentTracker, clock: FakeClock
) -> None:
    tracker.onset("web")
    clock.advance(3.0)
    tracker.onset("api")
    clock.advance(3.0)
    update = tracker.onset("db")
    assert update.incident is not None and update.incident.root == "db"


def test_among_members_none_depends_on_the_one_the_most_depend_on_then_the_earliest(
    clock: FakeClock
) -> None:
    graph = DependencyGraph([Node("a", tags={"rack": "r1"}), Node("b", tags={"rack": "r1"}),
                             Node("c", ["b"])])
    tracker = IncidentTracker(graph, clock=clock)
    tracker.onset("a")
    clock.advance(1.0)
    assert (tracker.onset("b").incident or pytest.fail()).root == "a"  # equals: earliest
    clock.advance(1.0)
    assert (tracker.onset("c").incident or pytest.fail()).root == "b"  # c depends on b


# -- holds and trials -----------------------------------------------------------------------


def test_members_that_depend_on_the_root_are_held_and_the_root_and_tag_links_are_not(
    clock: FakeClock
) -> None:
    graph = DependencyGraph([Node("db", tags={"host": "h"}), Node("api", ["db"]),
                             Node("disk", tags={"host": "h"})])
    tracker = IncidentTracker(graph, clock=clock)
    incident = tracker.onset("db").incident
    clock.advance(5.0)
    tracker.onset("api")
    tracker.onset("disk")
    hold = tracker.hold("api")
    assert hold is not None and incident is not None
    assert (hold.incident, hold.root, hold.until) == (incident.id, "db", 1005.0 + 120.0)
    assert tracker.hold("db") is None and tracker.hold("disk") is None
    assert tracker.hold("nobody") is None


def test_a_member_becomes_held_when_its_root_joins_after_it(
    tracker: IncidentTracker, clock: FakeClock
) -> None:
    tracker.onset("api")
    assert tracker.hold("api") is None  # its own root for now: repaired as usual
    clock.advance(4.0)
    tracker.onset("db")
    hold = tracker.hold("api")
    assert hold is not None and hold.root == "db" and hold.until == 1004.0 + 120.0


def test_a_hold_ends_after_the_hold_timeout_regardless(clock: FakeClock) -> None:
    tracker = IncidentTracker(DependencyGraph(SHOP), hold_timeout=60.0, clock=clock)
    tracker.onset("db")
    tracker.onset("api")
    clock.advance(59.0)
    assert tracker.hold("api") is not None and tracker.poll().released == ()
    assert tracker.next_due() == 1060.0
    clock.advance(1.0)
    assert tracker.hold("api") is None
    assert tracker.poll().released == ("api",)
    assert tracker.poll().released == ()  # said once
    assert tracker.next_due() is None
    assert tracker.recovered("db").trials == ()  # its hold is over: no trial


def test_when_the_root_is_verified_each_held_member_gets_one_trial(
    tracker: IncidentTracker, clock: FakeClock
) -> None:
    tracker.onset("db")
    clock.advance(2.0)
    tracker.onset("api")
    tracker.onset("web")
    clock.advance(30.0)
    update = tracker.recovered("db")
    assert sorted(update.trials) == ["api", "web"]
    assert tracker.hold("api") is None and tracker.hold("web") is None
    assert kinds(update) == []  # the incident lasts until its members recover
    assert tracker.recovered("api").trials == ()
    update = tracker.recovered("web")
    assert kinds(update) == [RESOLVED]
    assert tracker.incidents(active_only=True) == []
    ended = tracker.incidents()[0]
    assert ended.ended == 1032.0 and not ended.active


def test_a_failed_trial_leaves_the_member_to_recover_on_its_own_in_the_incident(
    tracker: IncidentTracker, clock: FakeClock
) -> None:
    tracker.onset("db")
    tracker.onset("api")
    clock.advance(10.0)
    assert tracker.recovered("db").trials == ("api",)
    update = tracker.onset("api")  # its trial failed: the breaker opened again
    assert update.trials == () and tracker.hold("api") is None
    assert update.incident is not None and update.incident.members == ("db", "api")
    assert kinds(tracker.recovered("api")) == [RESOLVED]


def test_the_root_tripping_again_before_the_incident_ends_holds_its_dependents_again(
    tracker: IncidentTracker, clock: FakeClock
) -> None:
    tracker.onset("db")
    tracker.onset("api")
    tracker.onset("web")
    clock.advance(10.0)
    tracker.recovered("db")
    tracker.recovered("web")
    tracker.onset("db")
    hold = tracker.hold("api")
    assert hold is not None and hold.until == 1120.0  # what was left of its hold
    assert tracker.hold("web") is None  # recovered
    assert tracker.recovered("db").trials == ("api",)


# -- alerts --------------------------------------------------------------------------------


def test_one_set_of_alerts_per_incident(tracker: IncidentTracker, clock: FakeClock) -> None:
    events: list[IncidentEvent] = []
    events += tracker.onset("db").events
    events += tracker.onset("api").events
    clock.advance(1.0)
    events += tracker.poll().events
    assert events == []  # gathering: onsets of the same instant are one page
    clock.advance(1.0)
    events += tracker.poll().events
    events += tracker.poll().events
    clock.advance(5.0)
    events += tracker.onset("web").events
    events += tracker.onset("web").events  # tripping again changes nothing
    events += tracker.recovered("db").events
    events += tracker.recovered("api").events
    events += tracker.recovered("web").events
    events += tracker.recovered("web").events
    assert [e.kind for e in events] == [OPENED, UPDATED, RESOLVED]
    opened, updated, resolved = events
    assert opened.incident.root == "db" and opened.joined == ("db", "api")
    assert opened.message.endswith("root db, with api")
    assert updated.joined == ("web",) and "web joined" in updated.message
    assert resolved.incident.ended == 1007.0


def test_an_incident_over_before_it_was_announced_still_gets_its_one_set(
    tracker: IncidentTracker, clock: FakeClock
) -> None:
    tracker.onset("mail")
    clock.advance(0.5)
    assert kinds(tracker.recovered("mail")) == [OPENED, RESOLVED]
    clock.advance(5.0)
    assert kinds(tracker.poll()) == []


def test_a_members_own_alerts_are_folded_into_its_incident(
    tracker: IncidentTracker, clock: FakeClock
) -> None:
    assert tracker.fold("api", "consecutive_failures") is None  # in no incident: raise it
    tracker.onset("db")
    tracker.onset("api")
    incident = tracker.fold("api", "consecutive_failures")
    assert incident is not None and incident.why("api").folded_alerts == (
        "consecutive_failures",)
    assert tracker.incident_of("api") == incident
    assert tracker.incident_of("mail") is None


def test_incidents_lists_open_and_ended_oldest_first(tracker: IncidentTracker,
                                                      clock: FakeClock) -> None:
    tracker.onset("mail")
    clock.advance(40.0)
    tracker.onset("sms")
    tracker.recovered("mail")
    assert [i.members for i in tracker.incidents()] == [("mail",), ("sms",)]
    assert [i.members for i in tracker.incidents(active_only=True)] == [("sms",)]
    as_json = tracker.incidents()[0].to_dict()
    assert as_json["members"] == ["mail"] and as_json["active"] is False
    assert as_json["evidence"][0]["reason"] == "first"


def test_a_new_graph_links_onsets_from_then_on(clock: FakeClock) -> None:
    tracker = IncidentTracker(clock=clock)
    tracker.onset("a")
    tracker.onset("b")
    assert len(tracker.incidents()) == 2
    tracker.use_graph(DependencyGraph([Node("a"), Node("b", "a"), Node("c", "a")]))
    update = tracker.onset("c")
    assert update.incident is not None and update.incident.root == "a"


# -- threads --------------------------------------------------------------------------------


def test_concurrent_onsets_and_recoveries_keep_every_name_in_one_incident(
    clock: FakeClock
) -> None:
    nodes = [Node("root")] + [Node(f"d{i}", ["root"]) for i in range(1, 41)]
    tracker = IncidentTracker(DependencyGraph(nodes), clock=clock)
    events: list[IncidentEvent] = []
    lock = threading.Lock()

    def work(index: int) -> None:
        name = "root" if index == 0 else f"d{index}"
        got = list(tracker.onset(name).events)
        got += tracker.poll().events
        tracker.hold(name)
        tracker.fold(name, "consecutive_failures")
        got += tracker.onset(name, "early_warning").events
        tracker.incidents()
        with lock:
            events.extend(got)

    run_threads(41, work)
    clock.advance(SIMULTANEOUS)
    events.extend(tracker.poll().events)
    incidents = tracker.incidents()
    assert len(incidents) == 1 and len(incidents[0].members) == 41
    assert incidents[0].root == "root"
    assert Counter(e.kind for e in events) == {OPENED: 1}
    assert all(e.folded_alerts == ("consecutive_failures",) for e in incidents[0].evidence)
    update = tracker.recovered("root")
    assert sorted(update.trials) == sorted(f"d{i}" for i in range(1, 41))


# -- bad input ------------------------------------------------------------------------------


def test_bad_input_says_which_argument_and_value(tracker: IncidentTracker) -> None:
    with pytest.raises(ValueError, match="name must be a non-empty str, got ''"):
        tracker.onset("")
    with pytest.raises(TypeError, match="name must be a str, got 3"):
        tracker.recovered(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="kind must be one of trip, early_warning, got 'x'"):
        tracker.onset("db", "x")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="active_only must be a bool"):
        tracker.incidents(active_only=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="window must be a finite number of seconds > 0"):
        IncidentTracker(window=0)
    with pytest.raises(ValueError, match="min_group must be >= 2, got 1"):
        IncidentTracker(min_group=1)
    with pytest.raises(TypeError, match=r"min_group must be an int, got 2\.5"):
        IncidentTracker(min_group=2.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"hold_timeout must be .* got -1"):
        IncidentTracker(hold_timeout=-1)
    with pytest.raises(TypeError, match="graph must be a DependencyGraph"):
        IncidentTracker({"a": []})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="clock must be a clock"):
        IncidentTracker(clock=object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="graph must be a DependencyGraph"):
        tracker.use_graph(None)  # type: ignore[arg-type]
