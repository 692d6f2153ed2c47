"""The fleet's parts: which node each fault hits, what counts as a trip or as following,
and the one line a trip or a fleet's close makes."""

from __future__ import annotations

import pytest

from recovery._flaky import FlakyPlugin
from recovery.demo.cli import DEFAULT_PROCESSES
from recovery.demo.fleet_node import FAULT_NODES, faults_of, opening
from recovery.demo.fleet_view import FOLLOW_SPAN, FleetView
from recovery.demo.scenario import PLUGINS, timeline
from tests.demo.doubles import RecordedEvents


def test_each_fault_hits_one_node_and_every_fault_is_somewhere() -> None:
    plugins = {name: FlakyPlugin(name) for name in PLUGINS}
    faults = timeline(plugins, 10.0)
    assert len(faults) == len(FAULT_NODES)
    for processes in (1, 2, 3, DEFAULT_PROCESSES, 16):
        hits = [faults_of(node, processes, faults) for node in range(1, processes + 1)]
        assert sorted(f.at for node in hits for f in node) == [f.at for f in faults]
    # slow's end is on the node where slow began, so that it ends there.
    slow = [node for node in range(1, 4)
            if any(f.plugin == "slow" for f in faults_of(node, 3, faults))]
    assert slow == [3]


def test_a_trip_is_one_line_once_every_node_followed_or_after_a_second() -> None:
    said = RecordedEvents()
    view = FleetView(3, said)
    view.take(("move", 2, "flaky", "closed", "open", False, 10.0), 0.0)
    view.take(("move", 1, "flaky", "closed", "open", True, 10.002), 0.0)
    view.expire(10.5)
    assert said.lines == []  # node 3 has not followed yet
    view.take(("move", 3, "flaky", "closed", "open", True, 10.003), 0.0)
    assert said.lines == [
        "flaky: node 2 tripped -> open on 3/3 nodes (the others followed within 3.0 ms)"]
    # The fleet's close: node 2's trial passed, the cluster closed the two others.
    view.take(("move", 1, "flaky", "open", "closed", True, 11.0), 0.0)
    view.take(("move", 2, "flaky", "half_open", "closed", False, 11.0), 0.0)
    assert len(said.lines) == 1  # node 3 is still open
    view.take(("move", 3, "flaky", "open", "closed", True, 11.0), 0.0)
    assert said.lines[1:] == ["flaky: closed on 3/3 nodes (node 2's trial passed)"]
    # A node repairing does not follow: the line comes after FOLLOW_SPAN, saying so.
    view.take(("move", 2, "slow", "closed", "repairing", False, 19.0), 0.0)
    view.take(("move", 3, "slow", "closed", "open", False, 20.0), 0.0)
    view.take(("move", 1, "slow", "closed", "open", True, 20.002), 0.0)
    view.expire(20.0 + FOLLOW_SPAN / 2)
    assert len(said.lines) == 2
    view.expire(20.0 + FOLLOW_SPAN)
    assert said.lines[2:] == [
        "slow: node 3 tripped -> open on 2/3 nodes (followed within 2.0 ms; node 2 repairing)"]
    assert view.trips == {"flaky": 1, "slow": 1}
    assert view.followed == {"flaky": 2, "slow": 1}


@pytest.mark.parametrize(
    ("old", "by_cluster", "kind"),
    [("closed", False, "trip"), ("half_open", False, "trip"), ("closed", True, "follow"),
     ("half_open", True, None), ("repairing", False, None), ("repairing", True, None)],
)
def test_what_counts_as_a_trip_and_as_following(
    old: str, by_cluster: bool, kind: str | None
) -> None:
    assert opening(old, "open", by_cluster) == kind
    assert opening(old, "closed", by_cluster) is None
