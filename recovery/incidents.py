"""Incidents: one cause, one alert, one recovery.

When a database goes down, everything that uses it trips too. Seen one breaker at
a time, that is a dozen failures, a dozen pages and a dozen restarts of services
that were never broken. The :class:`IncidentTracker` groups *onsets* (a breaker
tripping, or an early warning that it is going bad) into incidents:

- onsets within ``window`` seconds of a linked member's onset join its incident.
  Linked means declared (:mod:`recovery.dependency_graph`): a ``depends_on`` chain
  between the two in either direction, or the same value of a tag;
- without any declared link, ``min_group`` or more onsets within
  :data:`SIMULTANEOUS` seconds of the first are one incident whose cause is
  unknown (an undeclared common cause: a network partition, a shared host). This
  is decided when the first one's gathering time ends (below), so that siblings
  whose root trips a moment after them are linked through it first;
- anything else is an incident of its own.

An onset linked to two open incidents joins them into one (the older keeps its id):
the root tripping after two of its dependents explains both.

The *root* is the member the others depend on: among the members no other member
is upstream of, the one most members depend on; among equals the earliest onset.

While the root is being recovered, the members that depend on it are *held*: the
recovery manager does not restart or reload them, their breakers stay open and
serve fallbacks. When the root is verified recovered, each held member is given
one half-open trial (:attr:`Update.trials`) and recovers on its own only if that
fails. A hold ends after ``hold_timeout`` seconds regardless
(:attr:`Update.released`), so a root that never comes back does not keep its
dependents from being repaired forever.

Alerts come as :class:`IncidentEvent` values, one set per incident:
"incident_opened" (root and members), "incident_updated" (a member joins, or the
root changes) and "incident_resolved" (every member recovered). An incident is
announced :data:`SIMULTANEOUS` seconds after it started, so that onsets of the same
instant (the root and its dependents seen in the same second, in any order) are
one page naming the right root, not a page per breaker. Events are returned by the
calls that cause them and by :meth:`IncidentTracker.poll` (call it at
:meth:`IncidentTracker.next_due`); the tracker calls no user code and starts no
thread, so whoever delivers the events decides on which thread handlers run.

Time comes from the clock given (a FakeClock in tests); every method is
thread-safe.
"""

from __future__ import annotations

import itertools
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Literal

import attrs

from recovery import _validate as v
from recovery._clock import REAL_CLOCK, Clock
from recovery.dependency_graph import DependencyGraph

OnsetKind = Literal["trip", "early_warning"]
ONSET_KINDS: tuple[str, ...] = ("trip", "early_warning")

SIMULTANEOUS = 2.0
"""Seconds within which unlinked onsets count as simultaneous, and how long an
incident gathers members before it is announced."""

HISTORY = 1000
"""Ended incidents kept for :meth:`IncidentTracker.incidents` (the oldest are dropped)."""

OPENED, UPDATED, RESOLVED = "incident_opened", "incident_updated", "incident_resolved"


@attrs.frozen
class Evidence:
    """Why ``member`` is in its incident.

    ``reason``: "first" (its onset opened the incident), "depends_on" (``via`` is the
    chain from the downstream name to the upstream one), "tag" (``via`` is the shared
    ``(key, value)``) or "simultaneity" (one of ``min_group`` or more unlinked
    onsets within :data:`SIMULTANEOUS` seconds). ``linked_to`` is the member it was
    linked with. ``kind`` and ``onset`` are its first onset's; ``folded_alerts`` the
    member's own alerts the incident's alerts stand for.
    """

    member: str
    reason: str
    via: tuple[str, ...]
    linked_to: str | None
    kind: str
    onset: float
    folded_alerts: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self, recurse=False) | {
            "via": list(self.via), "folded_alerts": list(self.folded_alerts)}


@attrs.frozen
class Incident:
    """One incident, as it stood when it was read (a snapshot: it does not change).

    ``members`` in the order of their onsets, the root among them; ``started`` the
    first onset (the tracker's clock); ``ended`` when the last member recovered, None
    while open; ``evidence`` one :class:`Evidence` per member, in ``members``' order;
    ``cause_known`` False for a group formed by simultaneity alone.
    """

    id: str
    root: str
    members: tuple[str, ...]
    started: float
    ended: float | None
    evidence: tuple[Evidence, ...]
    cause_known: bool

    @property
    def active(self) -> bool:
        return self.ended is None

    def why(self, member: str) -> Evidence:
        """The evidence for ``member`` (KeyError naming it when it is no member)."""
        for item in self.evidence:
            if item.member == member:
                return item
        raise KeyError(f"{member!r} is not a member of incident {self.id}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable, for status and the dashboard."""
        return {"id": self.id, "root": self.root, "members": list(self.members),
                "started": self.started, "ended": self.ended, "active": self.active,
                "cause_known": self.cause_known,
                "evidence": [item.to_dict() for item in self.evidence]}


@attrs.frozen
class IncidentEvent:
    """An alert to raise: ``kind`` is "incident_opened", "incident_updated" or
    "incident_resolved"; ``incident`` the incident after the change; ``joined`` the
    members this event announces joining (all of them for "incident_opened");
    ``message`` a readable line; ``renamed_from`` the id the incident had before
    this event, when its new root renamed it (only with a ``namer``: see
    :class:`IncidentTracker`)."""

    kind: str
    incident: Incident
    joined: tuple[str, ...]
    message: str
    renamed_from: str | None = None


@attrs.frozen
class Hold:
    """A member held while ``root`` of ``incident`` is recovered, until ``until``
    (tracker clock) at the latest."""

    incident: str
    root: str
    until: float


@attrs.frozen
class Update:
    """What a call changed, for the caller to act on.

    ``incident``: the incident the call was about (None when about none);
    ``events``: alerts to raise, in order; ``trials``: held members to give one
    half-open trial now (their root was verified); ``released``: members whose hold
    timed out (recover them on their own now).
    """

    incident: Incident | None = None
    events: tuple[IncidentEvent, ...] = ()
    trials: tuple[str, ...] = ()
    released: tuple[str, ...] = ()


@attrs.define
class _Member:
    name: str
    kind: str
    first_onset: float
    last_onset: float
    reason: str
    via: tuple[str, ...] = ()
    linked_to: str | None = None
    recovered: bool = False
    hold_started: float | None = None
    released: bool = False
    folded: list[str] = attrs.field(factory=list)

    def evidence(self) -> Evidence:
        return Evidence(self.name, self.reason, self.via, self.linked_to, self.kind,
                        self.first_onset, tuple(self.folded))


@attrs.define
class _Open:
    """An incident being tracked (under the tracker's lock)."""

    id: str
    started: float
    members: dict[str, _Member]
    root: str
    cause_known: bool = True
    announced: bool = False
    root_verified: bool = False
    ended: float | None = None

    def snapshot(self) -> Incident:
        ordered = sorted(self.members.values(), key=lambda m: m.first_onset)  # stable
        return Incident(self.id, self.root, tuple(m.name for m in ordered), self.started,
                        self.ended, tuple(m.evidence() for m in ordered), self.cause_known)


class IncidentTracker:
    """Group onsets into incidents, name their roots, hold the root's dependents.

    ``graph`` holds the declared links (replace it with :meth:`use_graph` when a
    declaration is added); ``window``, ``min_group`` and ``hold_timeout`` are the
    recovery manager's ``incident_window``, ``incident_min_group`` and
    ``incident_hold_timeout``.

    ``namer`` (default None: ids ``inc-<random>-<n>``) names an incident after its
    root: ``namer(root)`` is its id, asked again whenever the root changes, so that
    trackers on several nodes fed the same onsets name the incident alike (the
    manager with a cluster names it after the root's first onset; see
    :mod:`recovery.incidents_remote`). It is called under the tracker's lock and must
    not call the tracker.
    """

    def __init__(
        self,
        graph: DependencyGraph | None = None,
        *,
        window: float = 30.0,
        min_group: int = 3,
        hold_timeout: float = 120.0,
        clock: Clock | None = None,
        namer: Callable[[str], str] | None = None,
    ) -> None:
        if namer is not None and not callable(namer):
            raise TypeError(f"namer must be callable, got {namer!r}")
        self._namer = namer
        self._graph = _checked_graph(DependencyGraph() if graph is None else graph)
        self.window = v.check(v.positive_seconds, "window", v.seconds(window))
        self.min_group = v.check(v.integer(ge=2), "min_group", min_group)
        self.hold_timeout = v.check(v.positive_seconds, "hold_timeout",
                                    v.seconds(hold_timeout))
        if clock is not None:
            v.check(v.instance_of(Clock, expected="a clock (monotonic() and sleep())"),
                    "clock", clock)
        self.clock: Clock = REAL_CLOCK if clock is None else clock
        self._lock = threading.Lock()
        self._open: dict[str, _Open] = {}
        self._ended: deque[Incident] = deque(maxlen=HISTORY)
        self._of: dict[str, str] = {}  # member name -> id of its open incident
        self._prefix = uuid.uuid4().hex[:6]
        self._ids = itertools.count(1)

    # -- declarations ---------------------------------------------------------------------

    @property
    def graph(self) -> DependencyGraph:
        return self._graph

    def use_graph(self, graph: DependencyGraph) -> None:
        """Group by ``graph`` from now on (incidents already open keep their members)."""
        graph = _checked_graph(graph)
        with self._lock:
            self._graph = graph

    # -- what the manager tells ------------------------------------------------------------

    def onset(self, name: str, kind: OnsetKind = "trip") -> Update:
        """``name`` tripped (or was warned about): put it in an incident.

        The update's ``incident`` is the one it is in now. A member already in an
        open incident stays there (after it recovered, it is unrecovered again; the
        root tripping again after it was verified holds its dependents again, for
        what is left of their hold time).
        """
        v.check(v.name(), "name", name)
        if kind not in ONSET_KINDS:
            raise ValueError(f"kind must be one of {', '.join(ONSET_KINDS)}, got {kind!r}")
        with self._lock:
            now = self.clock.monotonic()
            events: list[IncidentEvent] = []
            released: list[str] = []
            # No sweep before placing: an onset at the very end of another's gathering
            # time may still link it, or complete its simultaneous group.
            current = self._of.get(name)
            if current is not None:
                incident = self._open[current]
                self._again(incident, incident.members[name], now)
            else:
                incident = self._place(name, kind, now, events)
            self._hold(incident, now)
            self._sweep(now, events, released)
            return Update(incident.snapshot(), tuple(events), (), tuple(released))

    def recovered(self, name: str) -> Update:
        """``name`` is verified well again (its recovery was verified, its trial passed,
        its early warning ended without a trip).

        The root's recovery gives each member it holds a trial (``trials``); the last
        member's resolves the incident. A name in no open incident changes nothing.
        """
        v.check(v.name(), "name", name)
        with self._lock:
            now = self.clock.monotonic()
            events: list[IncidentEvent] = []
            released: list[str] = []
            self._sweep(now, events, released)
            current = self._of.get(name)
            if current is None:
                return Update(None, tuple(events), (), tuple(released))
            incident = self._open[current]
            trials: list[str] = []
            if name == incident.root:
                for member in incident.members.values():
                    if self._held(incident, member, now):
                        member.released = True
                        trials.append(member.name)
                incident.root_verified = True
            incident.members[name].recovered = True
            if all(member.recovered for member in incident.members.values()):
                self._resolve(incident, now, events, "every member recovered")
            self._sweep(now, events, released)
            return Update(incident.snapshot(), tuple(events), tuple(trials), tuple(released))

    def fold(self, name: str, alert_kind: str) -> Incident | None:
        """``name``'s own alert ``alert_kind`` is about to fire: the incident it is in
        stands for it (the caller does not raise it; it is listed in the member's
        evidence). None when ``name`` is in no open incident: raise it."""
        v.check(v.name(), "name", name)
        v.check(v.name(), "alert_kind", alert_kind)
        with self._lock:
            current = self._of.get(name)
            if current is None:
                return None
            incident = self._open[current]
            incident.members[name].folded.append(alert_kind)
            return incident.snapshot()

    def poll(self) -> Update:
        """Announce incidents that have gathered long enough, end holds that timed out.

        For the caller's timer, at :meth:`next_due`; every other call does it too.
        """
        with self._lock:
            events: list[IncidentEvent] = []
            released: list[str] = []
            self._sweep(self.clock.monotonic(), events, released)
            return Update(None, tuple(events), (), tuple(released))

    # -- what the manager asks -------------------------------------------------------------

    def hold(self, name: str) -> Hold | None:
        """The hold on ``name``, or None: while held, do not restart or reload it."""
        with self._lock:
            now = self.clock.monotonic()
            current = self._of.get(name)
            if current is None:
                return None
            incident = self._open[current]
            member = incident.members[name]
            if not self._held(incident, member, now):
                return None
            assert member.hold_started is not None  # held members have a hold
            return Hold(incident.id, incident.root, member.hold_started + self.hold_timeout)

    def incident_of(self, name: str) -> Incident | None:
        """The open incident ``name`` is a member of, or None (for audit records)."""
        with self._lock:
            current = self._of.get(name)
            return None if current is None else self._open[current].snapshot()

    def incidents(self, active_only: bool = False) -> list[Incident]:
        """Incidents oldest first: the open ones, and (unless ``active_only``) the
        last :data:`HISTORY` ended ones."""
        v.check(v.boolean, "active_only", active_only)
        with self._lock:
            current = [incident.snapshot() for incident in self._open.values()]
            ended = [] if active_only else list(self._ended)
        return sorted(ended + current, key=lambda incident: incident.started)

    def next_due(self) -> float | None:
        """When :meth:`poll` next has something to do (tracker clock), or None."""
        with self._lock:
            due = [incident.started + SIMULTANEOUS
                   for incident in self._open.values() if not incident.announced]
            due += [member.hold_started + self.hold_timeout
                    for incident in self._open.values() if not incident.root_verified
                    for member in incident.members.values()
                    if member.hold_started is not None and not member.released
                    and not member.recovered]
            return min(due, default=None)

    # -- grouping (under the lock) ---------------------------------------------------------

    def _place(self, name: str, kind: str, now: float, events: list[IncidentEvent]) -> _Open:
        """Put a new onset in an incident: linked ones, a simultaneous group, or its own."""
        links: dict[str, _Member] = {}
        for incident in self._open.values():
            best = self._best_link(name, incident, now)
            if best is not None:
                links[incident.id] = best
        if links:
            joined = [self._open[key] for key in links]
            survivor = min(joined, key=lambda incident: incident.started)
            member = min(links.values(), key=_rank)
            member.kind = kind
            survivor.members[name] = member
            self._of[name] = survivor.id
            for absorbed in joined:
                if absorbed is not survivor:
                    self._merge(survivor, absorbed, name, now, events)
            self._reroot(survivor, (name,), now, events)
            return survivor
        member = _Member(name, kind, now, now, "first")
        incident = _Open(self._new_id(name), now, {name: member}, name)
        self._open[incident.id] = incident
        self._of[name] = incident.id
        return incident

    def _group_unlinked(self, first: _Open, now: float, events: list[IncidentEvent]) -> None:
        """Before ``first`` is announced: if it is still a lone onset, and ``min_group``
        or more lone onsets (its own included) started within :data:`SIMULTANEOUS`
        seconds of it, they are one incident, cause unknown.

        Decided at the end of the gathering time, not at each onset: the root of
        simultaneous siblings often trips a moment after them, and links them first.
        """
        if len(first.members) != 1 or not first.cause_known:
            return
        group = [incident for incident in self._open.values()
                 if incident is not first and not incident.announced
                 and len(incident.members) == 1 and incident.cause_known
                 and first.started <= incident.started <= first.started + SIMULTANEOUS]
        if len(group) + 1 < self.min_group:
            return
        first.cause_known = False
        for incident in group:
            self._merge(first, incident, None, now, events)
        for member in first.members.values():
            member.reason = "simultaneity"
        first.root = self._root(first)
        self._rename(first)  # not announced yet: nobody knew the old id

    def _best_link(self, name: str, incident: _Open, now: float) -> _Member | None:
        """``name`` as a member of ``incident`` if linked to one of its members whose
        latest onset is within the window: a depends_on chain before a tag, the
        shortest chain first."""
        best: _Member | None = None
        for member in incident.members.values():
            if now - member.last_onset > self.window:
                continue
            link = self._graph.link(name, member.name)
            if link is None:
                continue
            candidate = _Member(name, "", now, now, link.kind, link.via, member.name)
            if best is None or _rank(candidate) < _rank(best):
                best = candidate
        return best

    def _merge(self, survivor: _Open, absorbed: _Open, via: str | None, now: float,
               events: list[IncidentEvent]) -> None:
        """Move ``absorbed``'s members into ``survivor``; it was joined through ``via``
        (None: by simultaneity)."""
        for member in absorbed.members.values():
            if member.reason == "first" and via is not None:
                link = self._graph.link(member.name, via)
                if link is not None:
                    member.reason, member.via, member.linked_to = link.kind, link.via, via
            survivor.members[member.name] = member
            self._of[member.name] = survivor.id
        survivor.started = min(survivor.started, absorbed.started)
        survivor.cause_known = survivor.cause_known and absorbed.cause_known
        del self._open[absorbed.id]
        if absorbed.announced:
            absorbed.ended = now
            events.append(IncidentEvent(
                RESOLVED, absorbed.snapshot(), (),
                f"incident {absorbed.id} (root {absorbed.root}) merged into incident "
                f"{survivor.id}"))

    def _reroot(self, incident: _Open, joined: Iterable[str], now: float,
                events: list[IncidentEvent]) -> None:
        """Name the root again after members joined; announce them if already open."""
        joined = tuple(joined)
        old = incident.root
        incident.root = self._root(incident)
        renamed = None
        if incident.root != old:
            incident.root_verified = incident.members[incident.root].recovered
            renamed = self._rename(incident)
        if incident.announced:
            moved = f"; root now {incident.root} (was {old})" if incident.root != old else ""
            if renamed is not None:
                moved += f"; was incident {renamed}"
            events.append(IncidentEvent(
                UPDATED, incident.snapshot(), joined,
                f"{', '.join(joined)} joined incident {incident.id} "
                f"(root {incident.root}){moved}", renamed))

    def _new_id(self, root: str) -> str:
        if self._namer is not None:
            named = self._namer(root)
            if named not in self._open:
                return named
        return f"inc-{self._prefix}-{next(self._ids)}"

    def _rename(self, incident: _Open) -> str | None:
        """With a namer: give ``incident`` its new root's id; the old id if it changed."""
        if self._namer is None:
            return None
        old, new = incident.id, self._namer(incident.root)
        if new == old or new in self._open:
            return None
        del self._open[old]
        incident.id = new
        self._open[new] = incident
        for name in incident.members:
            self._of[name] = new
        return old

    def _root(self, incident: _Open) -> str:
        members = incident.members
        upstream = {name: self._graph.upstream(name) & members.keys() for name in members}
        heads = [name for name in members if not upstream[name]]

        def rank(name: str) -> tuple[int, float, str]:
            below = sum(1 for other in members if name in upstream[other])
            return (-below, members[name].first_onset, name)

        return min(heads or list(members), key=rank)

    # -- holds and lifecycle (under the lock) ---------------------------------------------

    def _again(self, incident: _Open, member: _Member, now: float) -> None:
        """A member of an open incident had another onset."""
        member.last_onset = now
        member.recovered = False
        if member.name == incident.root and incident.root_verified:
            incident.root_verified = False
            for other in incident.members.values():
                if other.hold_started is not None and now < other.hold_started + self.hold_timeout:
                    other.released = False  # held again, for what is left of its hold

    def _hold(self, incident: _Open, now: float) -> None:
        """Start the hold of every member that depends on the root and has none yet."""
        if incident.root_verified:
            return
        for member in incident.members.values():
            if (member.hold_started is None and not member.recovered
                    and self._graph.depends(member.name, incident.root)):
                member.hold_started = now

    def _held(self, incident: _Open, member: _Member, now: float) -> bool:
        return (not incident.root_verified and not member.recovered and not member.released
                and member.hold_started is not None
                and now < member.hold_started + self.hold_timeout
                and self._graph.depends(member.name, incident.root))

    def _resolve(self, incident: _Open, now: float, events: list[IncidentEvent],
                 why: str) -> None:
        if not incident.announced:
            self._announce(incident, events)
        incident.ended = now
        del self._open[incident.id]
        for name in incident.members:
            self._of.pop(name, None)
        snapshot = incident.snapshot()
        self._ended.append(snapshot)
        events.append(IncidentEvent(
            RESOLVED, snapshot, (),
            f"incident {incident.id} (root {incident.root}) resolved: {why}, "
            f"{now - incident.started:.0f}s after it started"))

    def _announce(self, incident: _Open, events: list[IncidentEvent]) -> None:
        incident.announced = True
        snapshot = incident.snapshot()
        cause = "" if incident.cause_known else ", cause unknown (no declared link)"
        others = [name for name in snapshot.members if name != incident.root]
        events.append(IncidentEvent(
            OPENED, snapshot, snapshot.members,
            f"incident {incident.id}: root {incident.root}"
            f"{', with ' + ', '.join(others) if others else ''}{cause}"))

    def _sweep(self, now: float, events: list[IncidentEvent], released: list[str]) -> None:
        """Do what is due at ``now``: announce incidents that gathered long enough (a lone
        onset first grouped with simultaneous ones), end holds that are over."""
        for open_ in sorted(self._open.values(), key=lambda incident: incident.started):
            if open_.id not in self._open:
                continue  # grouped into an earlier one by this sweep
            if not open_.announced and now >= open_.started + SIMULTANEOUS:
                self._group_unlinked(open_, now, events)
                self._announce(open_, events)
            for member in open_.members.values():
                if (member.hold_started is not None and not member.released
                        and not member.recovered and not self._held(open_, member, now)):
                    member.released = True  # timed out, or its root is no longer upstream
                    released.append(member.name)


def _rank(member: _Member) -> tuple[int, int]:
    """Order of preference between links: a depends_on chain before a tag, shorter first."""
    return (0 if member.reason == "depends_on" else 1, len(member.via))


def _checked_graph(graph: Any) -> DependencyGraph:
    if not isinstance(graph, DependencyGraph):
        raise TypeError(f"graph must be a DependencyGraph, got {graph!r}")
    return graph
