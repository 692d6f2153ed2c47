"""Incidents, measured on the real RecoveryManager: the outages of bench_incidents.py,
repaired by the manager itself on a simulated clock.

    python benchmarks/bench_incidents_manager.py                  # balanced and fanout, seed 1
    python benchmarks/bench_incidents_manager.py --mix cascades --seeds 1,2 --events 30
    python benchmarks/bench_incidents.py --manager                # the same, from there

The scenario (service graph, labelled onsets, outage lengths, the dependents that
need their own restart once the root is back) is ``bench_incidents.scenario``'s.
Every name is a plugin of one :class:`~recovery.RecoveryManager` (``RecoveryConfig()``
but health checking off: a recovery is verified by the plugin's health check, run
once; a breaker trips on its first failure). A name's health check passes once its
outage is over (and, for a stuck dependent, once it was restarted after that). At
each onset the name's breaker trips on a failing call. The clock is bench_recovery's
:class:`SimClock`: the manager's back-offs wait for the simulation, which moves time
to the next onset or the next deadline a thread of the manager waits for, and waits
until every thread is parked again before moving on.

"Without incidents" is the same manager with no ``depends_on`` or ``tags``
declared: nothing is held. Reported: restart/reload actions on non-root names
(counted from the audit trail) with and without, trials, and the grouping scores of
the manager's own tracker (the same scoring as bench_incidents.py).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from typing import Any

from benchmarks.bench_incidents import BARS, Onset, Run, scenario, score
from benchmarks.bench_recovery import SimClock
from benchmarks.bench_recovery import quiesce as settle
from recovery.alerts import Alert, AlertKind
from recovery.config import CircuitBreakerConfig
from recovery.dependency_graph import DependencyGraph
from recovery.failures import FailureInfo
from recovery.manager import RecoveryConfig, RecoveryManager
from recovery.plugins import PluginRegistry

TRIPS_AT_ONCE = CircuitBreakerConfig(failure_threshold=1)
RESTARTS = frozenset({"restart", "reload"})


class World:
    """What each name's health check sees, and what the audit trail tells."""

    def __init__(self, clock: SimClock) -> None:
        self.clock = clock
        self.current: dict[str, Onset] = {}  # each name's latest onset
        self.restarted: dict[str, float] = {}  # each name's last (re)start
        self.root_actions = self.non_root_actions = self.trials = 0

    def healthy(self, name: str) -> bool:
        onset = self.current.get(name)
        if onset is None:
            return True
        now = self.clock.monotonic()
        return now >= onset.fixed_at and (
            not onset.stuck or self.restarted.get(name, -1.0) >= onset.fixed_at)

    def log_failure_recovery(self, plugin_name: str, failure_type: str, recovery_action: str,
                             success: bool) -> None:
        if recovery_action == "trial":
            self.trials += 1
        elif recovery_action in RESTARTS:
            if self.current[plugin_name].root == plugin_name:
                self.root_actions += 1
            else:
                self.non_root_actions += 1


class Plugin:
    def __init__(self, name: str, world: World) -> None:
        self.name, self.world = name, world

    def initialize(self, config: Any) -> None:
        self.world.restarted[self.name] = self.world.clock.monotonic()

    def shutdown(self) -> None:
        pass


def quiesce(rm: RecoveryManager, clock: SimClock) -> None:
    """bench_recovery's quiesce, with more time: many plugins, two workers."""
    settle(rm, clock, limit=30.0)


def _fail() -> None:
    raise ConnectionError("down")


def simulate(graph: DependencyGraph, onsets: list[Onset], incidents: bool) -> tuple[Run, World]:
    """Run the onsets through a real manager; the run's tracker is the manager's own."""
    clock = SimClock()
    world = World(clock)
    registry = PluginRegistry()
    for name in graph:
        registry.register(Plugin(name, world))
    rm = RecoveryManager(registry, world, RecoveryConfig(enable_health_checking=False),
                         clock=clock)
    opened: Counter[str] = Counter()

    def count(alert: Alert) -> None:
        if alert.kind is AlertKind.INCIDENT_OPENED:
            opened[alert.message.split(":")[0].removeprefix("incident ")] += 1

    rm.add_alert_handler(count)
    for name in graph:
        node = graph.node(name)
        rm.register_plugin(
            name, TRIPS_AT_ONCE, health_check=lambda name=name: world.healthy(name),
            depends_on=node.depends_on if incidents else (),
            tags=dict(node.tags) if incidents and node.tags else None)
    pending = list(onsets)
    with rm:
        while True:
            quiesce(rm, clock)
            now = clock.monotonic()
            wake = clock.next_wake()
            nxt = min([*([] if wake is None else [wake]), *(pending[0].at for _ in pending[:1])],
                      default=None)
            if nxt is None:
                break
            clock.advance(max(nxt - now, 0.0))
            while pending and pending[0].at <= clock.monotonic():
                onset = pending.pop(0)
                world.current[onset.name] = onset
                _trip(rm, onset.name)
        quiesce(rm, clock)
    return Run(world.non_root_actions, world.root_actions, world.trials, opened, rm), world


def _trip(rm: RecoveryManager, name: str) -> None:
    """The name fails: its breaker trips on a failing call. A breaker already open
    (it never closed since its last trouble: no traffic here) rejects the call; the
    manager is told what the trip would have told it."""
    try:
        rm.execute_with_recovery(name, _fail)
    except ConnectionError:
        return
    except Exception:
        pass
    rm._incident_onset(name)  # private: a trip's onset, for a breaker that cannot trip again
    rm.record_failure(name, _failure())


def _failure() -> FailureInfo:
    return FailureInfo("error", message="down")


def measure(mix: str, seed: int, events: int) -> dict[str, float]:
    graph, onsets = scenario(mix, seed, events)
    without, _ = simulate(graph, onsets, incidents=False)
    with_, _ = simulate(graph, onsets, incidents=True)
    result = score(onsets, with_)
    result["non_root_without"] = without.non_root_actions
    result["non_root_with"] = with_.non_root_actions
    result["root_actions_without"] = without.root_actions
    result["root_actions_with"] = with_.root_actions
    result["trials"] = with_.trials
    result["fewer_non_root"] = 1 - with_.non_root_actions / max(1, without.non_root_actions)
    return result


COLUMNS = ("f1", "false_merges", "root_accuracy", "non_root_without", "non_root_with",
           "fewer_non_root", "root_actions_without", "root_actions_with", "trials",
           "opened_per_incident")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mix", action="append")
    parser.add_argument("--seeds", default="1")
    parser.add_argument("--events", type=int, default=30,
                        help="failures per scenario (bench_incidents.py uses 60)")
    args = parser.parse_args(argv)
    print(f"{'mix':<13}{'seed':>5} " + " ".join(f"{c[:12]:>12}" for c in COLUMNS))
    for mix in args.mix or ["balanced", "fanout"]:
        for seed in (int(s) for s in args.seeds.split(",")):
            result = measure(mix, seed, args.events)
            cells = " ".join(f"{result[c]:>12.3f}" if isinstance(result[c], float)
                             else f"{result[c]:>12}" for c in COLUMNS)
            print(f"{mix:<13}{seed:>5} {cells}")
    print(f"bar: non-root restart/reload actions >= {BARS['fewer_non_root']:.0%} fewer")
    return 0


def test_the_manager_spares_the_non_root_repairs() -> None:
    result = measure("fanout", 1, 15)
    assert result["fewer_non_root"] >= BARS["fewer_non_root"], result
    assert result["root_accuracy"] >= BARS["root_accuracy"], result
    assert result["opened_per_incident"] == BARS["opened_per_incident"], result


if __name__ == "__main__":
    sys.exit(main())
