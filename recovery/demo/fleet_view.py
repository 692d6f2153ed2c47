"""What the fleet's parent shows while it runs: the nodes' latest numbers, and its trips.

A trip is one event line once every node has its breaker open (or after
``FOLLOW_SPAN``, saying who did not follow); the fleet's close is one line too.
"""

from __future__ import annotations

import collections
from typing import Any

import attrs

from recovery.demo.fleet_node import opening
from recovery.demo.scenario import PLUGINS
from recovery.demo.screen import Reporter
from recovery.demo.tables import CALLS_LEGEND, NUMBERS, REJECTED_LEGEND

FOLLOW_SPAN = 1.0
"""Seconds a trip waits for the other nodes to follow before its line is shown anyway."""
GLYPHS = {"closed": ".", "open": "O", "half_open": "H", "repairing": "R"}
LIVE_LEGEND = [
    "NODES: one letter per process, node 1 first: . closed  O open  H half-open  R repairing",
    CALLS_LEGEND + ", summed over the nodes",
    REJECTED_LEGEND,
    "TRIPS: opened by the node's own calls; FOLLOWED: closed, opened by the cluster after "
    "another node's trip",
]


@attrs.define
class _Trip:
    """A node's trip of one plugin, and the nodes that have its breaker open since."""

    by: list[int]
    at: float
    open: set[int]
    last: float


class FleetView:
    """What the nodes sent: the latest counts and states, and the trips being followed."""

    def __init__(self, processes: int, report: Reporter) -> None:
        self.processes = processes
        self._report = report
        self.rows: dict[int, dict[str, Any]] = {}
        self.states = {name: dict.fromkeys(range(1, processes + 1), "closed")
                       for name in PLUGINS}
        self.trips = collections.Counter[str]()
        self.followed = collections.Counter[str]()
        self._trip: dict[str, _Trip] = {}
        self._closing: dict[str, str] = {}
        self._announced = dict.fromkeys(PLUGINS, "closed")

    def take(self, message: tuple[Any, ...], now: float) -> None:
        kind, node = message[0], message[1]
        if kind == "event":
            self._report.event(message[2], f"node {node}  {message[3]}")
        elif kind == "tick":
            self.rows[node] = message[2]
        elif kind == "move":
            self._move(node, *message[2:])

    def _move(self, node: int, name: str, old: str, new: str, by_cluster: bool,
              when: float) -> None:
        self.states[name][node] = new
        kind = opening(old, new, by_cluster)
        if kind is not None:
            (self.trips if kind == "trip" else self.followed)[name] += 1
        followed = by_cluster
        if new == "open":
            trip = self._trip.get(name)
            if trip is None and not followed:
                self._trip[name] = _Trip([node], when, {node}, when)
            elif trip is not None:
                if not followed and node not in trip.by:
                    trip.by.append(node)
                trip.open.add(node)
                trip.last = max(trip.last, when)
            if trip is not None or not followed:
                self._announce_trip(name, done=False)
        elif new == "closed":
            if old == "half_open":
                self._closing[name] = f"node {node}'s trial passed"
            elif not followed:
                self._closing.setdefault(name, f"node {node} reset it")
            states = self.states[name].values()
            if self._announced[name] == "open" and all(s == "closed" for s in states):
                why = self._closing.pop(name, "")
                self._report.event(name, f"closed on {self.processes}/{self.processes} "
                                         "nodes" + (f" ({why})" if why else ""))
                self._announced[name] = "closed"

    def expire(self, now: float) -> None:
        """Show the trips that not every node followed within ``FOLLOW_SPAN``."""
        for name, trip in list(self._trip.items()):
            if now - trip.at >= FOLLOW_SPAN:
                self._announce_trip(name, done=True)

    def _announce_trip(self, name: str, done: bool) -> None:
        trip = self._trip[name]
        if len(trip.open) < self.processes and not done:
            return
        del self._trip[name]
        self._closing.pop(name, None)
        self._announced[name] = "open"
        who = ("node " if len(trip.by) == 1 else "nodes ") + ", ".join(map(str, trip.by))
        notes = [f"node {n} {self._state(name, n)}"
                 for n in range(1, self.processes + 1) if n not in trip.open]
        if len(trip.open) > len(trip.by):
            who_followed = "the others followed" if not notes else "followed"
            notes.insert(0, f"{who_followed} within {(trip.last - trip.at) * 1e3:.1f} ms")
        text = f"{who} tripped -> open on {len(trip.open)}/{self.processes} nodes"
        self._report.event(name, text + (f" ({'; '.join(notes)})" if notes else ""))

    def table(self) -> list[str]:
        header = (f"{'PLUGIN':<10} {'FLEET':<9} {'NODES':<{max(self.processes, 5)}} "
                  f"{'OPEN ON':>7} {'CALLS':>6} {'OK':>6} {'ERRORS':>6} "
                  f"{'FALLBACK SERVED':>16} {'REJECTED':>9} {'TRIPS':>5} {'FOLLOWED':>8}  FLAGS")
        lines = [header]
        for name in PLUGINS:
            states = [self._state(name, n) for n in range(1, self.processes + 1)]
            fleet = states[0] if len(set(states)) == 1 else "mixed"
            glyphs = "".join(GLYPHS.get(s, "?") for s in states)
            opened = f"{states.count('open')}/{self.processes}"
            sums = {key: sum(rows[name][key] for rows in self.rows.values()) for key in NUMBERS}
            flagged = "; ".join(f"node {n}: {rows[name]['flags']}"
                                for n, rows in sorted(self.rows.items()) if rows[name]["flags"])
            lines.append(
                f"{name:<10} {fleet:<9} {glyphs:<{max(self.processes, 5)}} {opened:>7} "
                f"{sums['calls']:>6} {sums['ok']:>6} {sums['errors']:>6} "
                f"{sums['fallbacks_served']:>16} {sums['rejected']:>9} {self.trips[name]:>5} "
                f"{self.followed[name]:>8}  {flagged or '-'}"
            )
        return [*lines, "", *LIVE_LEGEND]

    def _state(self, name: str, node: int) -> str:
        rows = self.rows.get(node)
        return str(rows[name]["state"]) if rows else self.states[name][node]
