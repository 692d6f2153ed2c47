"""Incidents, measured: grouping, roots, repairs spared and alerts, on generated outages.

    python benchmarks/bench_incidents.py                 # every mix, seeds 1-3: the table
    python benchmarks/bench_incidents.py --seeds 7,8 --mix cascades
    python benchmarks/bench_incidents.py --check         # exit 1 if a bar is missed
    python benchmarks/bench_incidents.py --manager       # the real manager (slower)

Each run builds a random service graph (stores, services that use them, front ends
that use the services; ``depends_on`` and ``host`` tags declared) and a timeline of
labelled failures, every one with its true root:

- ``independent``: one name fails alone;
- ``shared_root``: a store or service fails and a share of the names that depend on it
  trip 0-30 s later; the root's own trip is seen up to ``root_delay`` seconds late, so
  dependents of lag 0 may trip before it (a root's health check is slower than a busy
  front end's breaker);
- ``cascade``: a chain of depends_on fails link after link, 1-10 s apart;
- ``coincidence``: a failure of either kind above, and 1-2 unrelated names (no declared
  link to any of its names) failing within 30 s of it.

The onsets are fed to an :class:`~recovery.incidents.IncidentTracker` on a FakeClock,
driving a small model of the recovery manager. Without incidents every tripped name
has its own episodes of restart attempts (3 attempts 1 s and 2 s apart, then a
crash-loop delay from 5 s doubling to 300 s, as ``RecoveryConfig()``) until the cause
is gone. With incidents a held name makes no attempt until its root is verified (then
one half-open trial, which fails for the 10 % of dependents that need a restart of
their own after the root is back) or its hold times out. Reported, against "without":

- pairwise precision, recall and F1 of the grouping (pairs of onsets in one true
  incident against pairs in one engine incident);
- false merges: the share of true incidents that share an engine incident with another;
- root accuracy: true incidents of two or more names whose root is the root of the
  engine incident holding it (and over every incident, single names included);
- restart attempts spent on non-root names, with and without incidents;
- "opened" alerts per engine incident (must be exactly one) and per true incident, and
  alerts a person gets per true incident without incidents (one per tripped name).

Collected by pytest too (``pytest benchmarks/bench_incidents.py``) so it cannot rot.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import math
import random
import sys
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Protocol

import attrs

from recovery.dependency_graph import DependencyGraph, Node
from recovery.incidents import OPENED, Incident, IncidentTracker, Update
from recovery.testing import FakeClock

ATTEMPTS = 3  # RecoveryConfig().max_recovery_attempts
BACKOFF = (1.0, 2.0)  # recovery_backoff_base * factor**k between the attempts
CRASH_DELAY, CRASH_MAX = 5.0, 300.0  # crash_loop_delay, crash_loop_max_delay
STUCK = 0.1  # share of dependents that need their own restart after the root is back

MIXES: dict[str, dict[str, float]] = {
    "balanced": {"independent": 1, "shared_root": 1, "cascade": 1, "coincidence": 1},
    "fanout": {"independent": 1, "shared_root": 4, "cascade": 1, "coincidence": 1},
    "cascades": {"independent": 1, "shared_root": 1, "cascade": 4, "coincidence": 1},
    "coincidences": {"independent": 2, "shared_root": 1, "cascade": 1, "coincidence": 4},
    "late_roots": {"independent": 1, "shared_root": 3, "cascade": 1, "coincidence": 2},
}
ROOT_DELAY = {"late_roots": 2.0}  # how late a root's own trip may be seen (default 1 s)

BARS = {"root_accuracy": 0.9, "false_merges": 0.05, "fewer_non_root": 0.8,
        "opened_per_incident": 1.0}


# -- the world ---------------------------------------------------------------------------


def service_graph(rng: random.Random) -> list[Node]:
    """Stores, services over them, front ends over the services; hosts shared by a few."""
    stores = [f"store{i}" for i in range(rng.randint(3, 5))]
    services = [f"svc{i}" for i in range(rng.randint(6, 10))]
    fronts = [f"web{i}" for i in range(rng.randint(8, 16))]
    depends: dict[str, list[str]] = {name: [] for name in stores}
    for i, name in enumerate(services):
        below = stores + services[:i]
        depends[name] = rng.sample(below, rng.randint(1, 2))
    for name in fronts:
        depends[name] = rng.sample(services, rng.randint(1, 3))
    hosts: dict[str, dict[str, str]] = {}
    names = stores + services + fronts
    for name in rng.sample(names, len(names) // 3):  # a third share hosts, two or three a host
        hosts[name] = {"host": f"h{rng.randint(0, len(names) // 6)}"}
    return [Node(name, depends[name], hosts.get(name)) for name in names]


@attrs.frozen
class Onset:
    name: str
    at: float
    truth: int  # the true incident
    root: str  # its true root
    fixed_at: float  # when its cause is gone (a restart after it succeeds)
    stuck: bool  # a dependent that needs its own restart once the root is back


def scenario(mix: str, seed: int, events: int = 60) -> tuple[DependencyGraph, list[Onset]]:
    """A graph and a timeline of labelled onsets (the same for a mix and seed on every run)."""
    rng = random.Random(f"{mix}:{seed}")
    graph = DependencyGraph(service_graph(rng))
    names = sorted(graph)
    below = {n: [d for d in names if graph.depends(d, n)] for n in names}
    kinds, weights = list(MIXES[mix]), list(MIXES[mix].values())
    root_delay = ROOT_DELAY.get(mix, 1.0)
    onsets: list[Onset] = []
    truth = itertools.count()
    now = 0.0
    busy_until: dict[str, float] = defaultdict(float)

    def free(at: float) -> list[str]:
        return [n for n in names if busy_until[n] < at]

    def fail_alone(at: float, candidates: list[str]) -> list[Onset]:
        name = rng.choice(candidates)
        return [Onset(name, at, next(truth), name, at + outage(rng), False)]

    def fail_shared(at: float, candidates: list[str]) -> list[Onset]:
        roots = [n for n in candidates if len([d for d in below[n] if d in candidates]) >= 2]
        if not roots:
            return fail_alone(at, candidates)
        root = rng.choice(roots)
        label, fixed = next(truth), at + outage(rng)
        dependents = [d for d in below[root] if d in candidates]
        share = rng.uniform(0.5, 1.0)
        tripped = [d for d in dependents if rng.random() < share] or dependents[:1]
        out = [Onset(root, at + rng.uniform(0, root_delay), label, root, fixed, False)]
        lag = min(30.0, fixed - at)  # a dependent trips while its root is down
        out += [Onset(d, at + rng.uniform(0, lag), label, root, fixed, rng.random() < STUCK)
                for d in tripped]
        return out

    def fail_chain(at: float, candidates: list[str]) -> list[Onset]:
        heads = [n for n in candidates if any(d in candidates for d in below[n])]
        if not heads:
            return fail_alone(at, candidates)
        chain = [rng.choice(heads)]
        while len(chain) < 4:
            nxt = [d for d in below[chain[-1]] if d in candidates
                   and chain[-1] in graph.node(d).depends_on]
            if not nxt:
                break
            chain.append(rng.choice(nxt))
        label, fixed = next(truth), at + outage(rng)
        out, t = [], at
        for i, name in enumerate(chain):
            out.append(Onset(name, t, label, chain[0], fixed, i > 0 and rng.random() < STUCK))
            t = min(t + rng.uniform(1, 10), fixed)
        return out

    for _ in range(events):
        now += rng.uniform(60, 240)
        kind = rng.choices(kinds, weights)[0]
        while len(candidates := free(now)) < len(names) // 2:
            now += 60.0  # most names are still failing: wait for them
        if kind == "coincidence":
            base = (fail_shared if rng.random() < 0.6 else fail_alone)(now, candidates)
            involved = {o.name for o in base}
            unrelated = [n for n in candidates if n not in involved
                         and all(graph.link(n, m) is None for m in involved)]
            extra: list[Onset] = []
            for _ in range(rng.randint(1, 2)):
                if unrelated:
                    extra += fail_alone(now + rng.uniform(0, 30), unrelated)
                    involved.add(extra[-1].name)
                    unrelated = [n for n in unrelated if n not in involved
                                 and all(graph.link(n, m) is None for m in involved)]
            made = base + extra
        else:
            made = {"independent": fail_alone, "shared_root": fail_shared,
                    "cascade": fail_chain}[kind](now, candidates)
        for onset in made:
            busy_until[onset.name] = max(onset.fixed_at, onset.at) + 2 * CRASH_MAX
        onsets += made
        now = max(o.at for o in made)
    return graph, sorted(onsets, key=lambda o: o.at)


def outage(rng: random.Random) -> float:
    """How long a failure lasts: log-uniform from 5 s to 5 min (most are short, a few
    outlast the hold)."""
    return float(math.exp(rng.uniform(math.log(5.0), math.log(300.0))))


# -- the manager, modelled ---------------------------------------------------------------


def attempt_times(start: float) -> Callable[[], float]:
    """The times of a name's restart attempts from ``start``: episodes of ATTEMPTS attempts,
    crash-loop delays between them."""
    gaps = itertools.chain.from_iterable(
        (*BACKOFF[: ATTEMPTS - 1], min(CRASH_DELAY * 2 ** k, CRASH_MAX))
        for k in itertools.count())
    at = [start]

    def next_time() -> float:
        current = at[0]
        at[0] = current + next(gaps)
        return current

    return next_time


class Grouped(Protocol):
    """What scoring reads of a run: its incidents (a tracker's, or a manager's own)."""

    def incidents(self, active_only: bool = False) -> list[Incident]: ...


@attrs.define
class Run:
    non_root_actions: int = 0
    root_actions: int = 0
    trials: int = 0
    opened: Counter[str] = attrs.field(factory=Counter)
    tracker: Grouped | None = None


def simulate(graph: DependencyGraph, onsets: list[Onset], incidents: bool) -> Run:
    """Feed the onsets (and the recoveries the model makes) to a tracker; count actions.

    A name's attempts follow its own back-off from its trip. While it is held, an
    attempt that falls due is skipped, not postponed: the hold counts as back-off, so
    a hold that times out on a root still down does not start every dependent's
    episodes afresh at once against it. A failed trial after the root is verified
    starts a new episode at once: the root is back, the name needs its own repair.
    """
    clock = FakeClock(0.0)
    tracker = IncidentTracker(graph, clock=clock)
    run = Run(tracker=tracker)
    by_name: dict[str, Onset] = {}
    schedules: dict[str, Callable[[], float]] = {}
    queue: list[tuple[float, int, str, str]] = []
    generation: Counter[str] = Counter()  # an attempt queued by an older episode is stale
    pending: dict[str, list[Onset]] = defaultdict(list)
    for onset in onsets:
        heapq.heappush(queue, (onset.at, 0, "onset", onset.name))
        pending[onset.name].append(onset)

    def start_episodes(name: str, now: float) -> None:
        schedules[name] = attempt_times(now)
        generation[name] += 1
        heapq.heappush(queue, (schedules[name](), generation[name], "attempt", name))

    def handle(update: Update, now: float) -> None:
        for event in update.events:
            if event.kind == OPENED:
                run.opened[event.incident.id] += 1
        for name in update.trials:
            run.trials += 1
            onset = by_name[name]
            if now >= onset.fixed_at and not onset.stuck:
                schedules.pop(name, None)  # its trial passed: recovered
                handle(tracker.recovered(name), now)
            else:
                start_episodes(name, now)

    while queue:
        due = tracker.next_due()
        at, stamp, what, name = queue[0]
        if due is not None and due <= at:
            clock.advance(max(0.0, due - clock.monotonic()))
            handle(tracker.poll(), due)
            continue
        heapq.heappop(queue)
        clock.advance(max(0.0, at - clock.monotonic()))
        if what == "onset":
            by_name[name] = pending[name].pop(0)
            handle(tracker.onset(name), at)
            if name not in schedules:  # else its running episode counts the trip
                start_episodes(name, at)
            continue
        if stamp != generation[name] or name not in schedules:
            continue
        onset = by_name[name]
        if incidents and tracker.hold(name) is not None:
            heapq.heappush(queue, (schedules[name](), generation[name], "attempt", name))
            continue
        if onset.root == name:
            run.root_actions += 1
        else:
            run.non_root_actions += 1
        if at >= onset.fixed_at:
            del schedules[name]
            handle(tracker.recovered(name), at)
        else:
            heapq.heappush(queue, (schedules[name](), generation[name], "attempt", name))
    return run


# -- the scores ----------------------------------------------------------------------------


def _pairs(n: int) -> int:
    return n * (n - 1) // 2


def score(onsets: list[Onset], run: Run) -> dict[str, float]:
    assert run.tracker is not None
    truth = {(o.name, o.at): o for o in onsets}
    joined: dict[str, list[tuple[float, str]]] = defaultdict(list)
    roots: dict[str, str] = {}
    for incident in run.tracker.incidents():
        roots[incident.id] = incident.root
        for evidence in incident.evidence:
            joined[evidence.member].append((evidence.onset, incident.id))
    # An onset is in the last incident its name joined before it (a name that trips again
    # while its incident is open stays in it).
    engine = {(o.name, o.at): max(j for j in joined[o.name] if j[0] <= o.at)[1]
              for o in onsets}
    cells = Counter((truth[key].truth, engine[key]) for key in truth)
    true_sizes = Counter(o.truth for o in onsets)
    engine_sizes = Counter(engine.values())
    together = sum(_pairs(n) for n in cells.values())
    precision = together / max(1, sum(_pairs(n) for n in engine_sizes.values()))
    recall = together / max(1, sum(_pairs(n) for n in true_sizes.values()))
    labels_in = defaultdict(set)
    for (label, incident_id) in cells:
        labels_in[incident_id].add(label)
    merged = {label for labels in labels_in.values() if len(labels) > 1 for label in labels}
    right, multi_right, multi = 0, 0, 0
    for label in true_sizes:
        root = next(o for o in onsets if o.truth == label and o.name == o.root)
        ok = roots[engine[(root.name, root.at)]] == root.name
        right += ok
        if true_sizes[label] > 1:
            multi += 1
            multi_right += ok
    return {
        "precision": precision, "recall": recall,
        "f1": 2 * precision * recall / max(1e-9, precision + recall),
        "false_merges": len(merged) / len(true_sizes),
        "root_accuracy": multi_right / max(1, multi), "root_accuracy_all": right / len(true_sizes),
        "true_incidents": len(true_sizes), "engine_incidents": len(engine_sizes),
        "opened_per_incident": max(run.opened.values()),
        "opened_per_true_incident": sum(run.opened.values()) / len(true_sizes),
        "alerts_without": len(onsets) / len(true_sizes),
    }


def measure(mix: str, seed: int) -> dict[str, float]:
    graph, onsets = scenario(mix, seed)
    without = simulate(graph, onsets, incidents=False)
    with_ = simulate(graph, onsets, incidents=True)
    result = score(onsets, with_)
    result["non_root_without"] = without.non_root_actions
    result["non_root_with"] = with_.non_root_actions
    result["trials"] = with_.trials
    result["root_actions_without"] = without.root_actions
    result["root_actions_with"] = with_.root_actions
    result["fewer_non_root"] = 1 - with_.non_root_actions / max(1, without.non_root_actions)
    return result


def misses(result: dict[str, float]) -> list[str]:
    missed = []
    if result["root_accuracy"] < BARS["root_accuracy"]:
        missed.append("root_accuracy")
    if result["false_merges"] > BARS["false_merges"]:
        missed.append("false_merges")
    if result["fewer_non_root"] < BARS["fewer_non_root"]:
        missed.append("fewer_non_root")
    if result["opened_per_incident"] != BARS["opened_per_incident"]:
        missed.append("opened_per_incident")
    return missed


COLUMNS = ("f1", "precision", "recall", "false_merges", "root_accuracy", "root_accuracy_all",
           "non_root_without", "non_root_with", "fewer_non_root", "trials",
           "opened_per_incident", "opened_per_true_incident", "alerts_without")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mix", choices=sorted(MIXES), action="append")
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--check", action="store_true", help="exit 1 if a bar is missed")
    parser.add_argument("--manager", action="store_true",
                        help="run the scenarios through the real RecoveryManager instead "
                        "(bench_incidents_manager.py)")
    args, rest = parser.parse_known_args(argv)
    if args.manager:
        from benchmarks import bench_incidents_manager

        return bench_incidents_manager.main(
            [*(f"--mix={mix}" for mix in args.mix or ()), f"--seeds={args.seeds}", *rest])
    seeds = [int(s) for s in args.seeds.split(",")]
    print(f"{'mix':<13}{'seed':>5} " + " ".join(f"{c[:12]:>12}" for c in COLUMNS))
    failed = 0
    for mix in args.mix or list(MIXES):
        for seed in seeds:
            result = measure(mix, seed)
            missed = misses(result)
            failed += bool(missed)
            cells = " ".join(f"{result[c]:>12.3f}" if isinstance(result[c], float)
                             else f"{result[c]:>12}" for c in COLUMNS)
            print(f"{mix:<13}{seed:>5} {cells}" + (f"  MISSED {missed}" if missed else ""))
    print(f"bars: root accuracy >= {BARS['root_accuracy']}, false merges <= "
          f"{BARS['false_merges']:.0%}, non-root actions >= {BARS['fewer_non_root']:.0%} fewer, "
          "one opened alert per incident")
    return 1 if failed and args.check else 0


def test_every_mix_reaches_the_bars() -> None:
    for mix in MIXES:
        result = measure(mix, 1)
        assert misses(result) == [], (mix, result)


if __name__ == "__main__":
    sys.exit(main())
