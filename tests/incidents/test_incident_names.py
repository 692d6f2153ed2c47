"""Incident ids given by a namer (what the manager with a cluster uses, so that every
node names one outage alike): an incident is named after its root, and renamed when
an upstream member becomes its root."""

from __future__ import annotations

import pytest

from recovery.dependency_graph import DependencyGraph, Node
from recovery.incidents import IncidentTracker
from recovery.testing import FakeClock

GRAPH = DependencyGraph([Node("db"), Node("orders", depends_on=["db"])])


def test_a_namer_names_an_incident_after_its_root_and_renames_it_with_its_new_root(
    clock: FakeClock,
) -> None:
    tracker = IncidentTracker(GRAPH, clock=clock, namer=lambda root: f"id-{root}")
    tracker.onset("orders")
    clock.advance(2.0)
    (opened,) = tracker.poll().events
    assert opened.incident.id == "id-orders" and opened.renamed_from is None
    (updated,) = tracker.onset("db").events
    assert (updated.kind, updated.incident.id, updated.renamed_from) == (
        "incident_updated", "id-db", "id-orders")
    assert "root now db (was orders); was incident id-orders" in updated.message
    assert tracker.incident_of("orders").id == "id-db"  # type: ignore[union-attr]
    assert tracker.hold("orders").incident == "id-db"  # type: ignore[union-attr]
    tracker.recovered("db")
    (resolved,) = tracker.recovered("orders").events
    assert resolved.incident.id == "id-db"
    assert [incident.id for incident in tracker.incidents()] == ["id-db"]


def test_without_a_namer_an_incident_keeps_its_id_when_its_root_changes(
    clock: FakeClock,
) -> None:
    tracker = IncidentTracker(GRAPH, clock=clock)
    first = tracker.onset("orders").incident
    assert first is not None
    clock.advance(2.0)
    tracker.poll()
    (updated,) = tracker.onset("db").events
    assert updated.incident.id == first.id and updated.renamed_from is None


def test_a_name_taken_by_an_open_incident_is_not_given_twice(clock: FakeClock) -> None:
    tracker = IncidentTracker(clock=clock, namer=lambda root: "same")
    assert tracker.onset("a").incident.id == "same"  # type: ignore[union-attr]
    other = tracker.onset("b").incident
    assert other is not None and other.id.startswith("inc-")


def test_a_namer_must_be_callable() -> None:
    with pytest.raises(TypeError, match="namer must be callable, got 'x'"):
        IncidentTracker(namer="x")  # type: ignore[arg-type]
