"""Incidents in the recovery manager: one cause, one alert, one recovery.

The grouping itself is :class:`recovery.incidents.IncidentTracker`'s (it calls no
user code and starts no thread); this mixin feeds it and acts on what it says:

- the declarations (``depends_on``, ``tags``) are one
  :class:`recovery.dependency_graph.DependencyGraph`, built at ``start()`` (and
  at each registration after it), so an unknown name or a cycle is refused by
  one rule;
- a breaker's trip (and an early warning) is an *onset*;
- a member *held* by its incident runs no strategy: when an attempt of its
  episode falls due while it is held, the episode ends ``held_by_incident`` (no
  worker waits out the hold) and its breaker is held open until the hold ends,
  serving its fallback;
- the root's verified recovery gives each held member one *trial*: an episode
  whose first attempt is a verification alone (action ``"trial"``, audited);
  only if that fails do its own strategies run. A hold that times out starts an
  ordinary episode;
- the tracker's events go out as ``incident_opened`` / ``incident_updated`` /
  ``incident_resolved`` alerts, on the manager's alert thread, and the members'
  own threshold alerts are folded into them;
- the timer thread (:mod:`recovery.manager.crash_loop`) polls the tracker at its
  :meth:`~recovery.incidents.IncidentTracker.next_due`;
- with a cluster, onsets are shared with the fleet's other managers, whose onsets
  join these incidents as remote members (:mod:`recovery.incidents_remote`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from recovery import _clock
from recovery._backoff import Backoff
from recovery.alerts import AlertDispatcher, AlertKind
from recovery.config import RecoveryConfig
from recovery.dependency_graph import DependencyGraph, Node
from recovery.failures import FailureInfo, FailureType
from recovery.incidents import (
    RESOLVED,
    Incident,
    IncidentEvent,
    IncidentTracker,
    OnsetKind,
    Update,
)
from recovery.manager.crash_loop import MAX_LEVEL
from recovery.manager.supervised import FailedReason, Supervised

if TYPE_CHECKING:  # needs redis-py: imported by the manager only with a cluster
    from recovery.cluster import Cluster
    from recovery.incidents_remote import FleetIncidents

TRIAL = "trial"
"""The audited action of a held member's one verification after its root recovered."""

FOLDED = frozenset({AlertKind.CONSECUTIVE_FAILURES, AlertKind.FAILURE_RATE,
                    AlertKind.RECOVERY_TIME})
"""A member's own alerts its incident stands for. Crash loops, exhaustion and
unrecoverable failures still page: a person must act on those."""


def new_tracker(config: RecoveryConfig, clock: _clock.Clock,
                fleet: FleetIncidents | None = None) -> IncidentTracker:
    return IncidentTracker(window=config.incident_window, min_group=config.incident_min_group,
                           hold_timeout=config.incident_hold_timeout, clock=clock,
                           namer=None if fleet is None else fleet.incident_id)


class IncidentLink:
    """The incident part of :class:`recovery.RecoveryManager` (a mixin)."""

    clock: _clock.Clock
    config: RecoveryConfig
    _crash_backoff: Backoff
    _lock: threading.RLock
    _plugins: dict[str, Supervised]
    _running: bool
    _alerts: AlertDispatcher
    _timer_wake: threading.Event
    _tracker: IncidentTracker
    _held_until: dict[str, float]  # name -> end of its hold (manager clock)
    _paged: set[str]  # ids of the open incidents whose incident_opened went out
    _fleet_incidents: FleetIncidents | None  # with a cluster: the fleet's onsets

    if TYPE_CHECKING:
        def _move_breaker(self, action: Callable[[], object]) -> None: ...
        def _open_episode(self, plugin: Supervised, failure: FailureInfo, now: float, *,
                          probe: bool) -> None: ...
        def _queue_episode(self, plugin: Supervised) -> None: ...
        def _enter_crash_loop(self, plugin: Supervised, reason: FailedReason, now: float,
                              wait: float | None = None) -> bool: ...
        def _crash_loop_started(self, plugin: Supervised, why: str) -> None: ...

    # -- declarations ----------------------------------------------------------------------

    def _dependency_graph(self, extra: Node | None = None) -> DependencyGraph:
        """Every registration's declarations (and ``extra``'s) as one graph: a KeyError
        names an undeclared name, a DependencyCycleError (a ValueError) the cycle."""
        with self._lock:
            nodes = [Node(plugin.name, plugin.depends_on, plugin.tags or None)
                     for plugin in self._plugins.values()]
        nodes += [] if extra is None else [extra]
        if self._fleet_incidents is not None:  # other services' names, and placeholders
            nodes = self._fleet_incidents.with_fleet(nodes)
        return DependencyGraph(nodes)

    def _registration(self, name: str) -> tuple[tuple[str, ...], dict[str, str]] | None:
        """``name``'s declared depends_on and tags, or None when it is not registered here."""
        plugin = self._plugins.get(name)
        return None if plugin is None else (plugin.depends_on, dict(plugin.tags or {}))

    def _check_dependency_graph(self) -> None:
        """At ``start()``: every ``depends_on`` names a registration, and no cycle;
        incidents group by this graph from now on."""
        self._tracker.use_graph(self._dependency_graph())

    def _declare(self, name: str, depends_on: tuple[str, ...],
                 tags: Mapping[str, str] | None) -> None:
        """Before a registration while running: refuse it (nothing registered) if its
        declarations do not fit the graph, else group by the graph with it."""
        with self._lock:
            running = self._running
        if running:
            self._tracker.use_graph(self._dependency_graph(Node(name, depends_on, tags)))

    # -- what the manager tells the tracker ------------------------------------------------

    def _incident_onset(self, name: str, kind: OnsetKind = "trip") -> None:
        """``name``'s breaker tripped (or an early warning was raised for it)."""
        if self._fleet_incidents is not None:
            self._fleet_incidents.local_onset(name, kind)
        self._act_on_incidents(self._tracker.onset(name, kind))

    def _on_early_warning(self, name: str) -> None:
        """An early warning for ``name`` was raised: an onset of its incident."""
        self._incident_onset(name, "early_warning")

    def _on_early_warning_ended(self, name: str, tripped: bool) -> None:
        """The warning for ``name`` ended; without a trip it is well again (a trip
        ended it: the trip's onset said so already)."""
        if not tripped:
            self._incident_recovered(name)

    def _incident_recovered(self, name: str) -> None:
        """``name`` is verified well again: a root's recovery gives its held members a trial."""
        with self._lock:
            self._held_until.pop(name, None)  # well again: no hold of its own to end
        if self._fleet_incidents is not None:
            self._fleet_incidents.local_recovered(name)
        self._act_on_incidents(self._tracker.recovered(name))

    def _poll_incidents(self, now: float) -> bool:
        """For the timer: announce what gathered long enough, end holds that timed out;
        True if something was due."""
        due = self._tracker.next_due()
        if due is None or due > now:
            return False
        self._act_on_incidents(self._tracker.poll())
        return True

    def _fleet_share(self, cluster: Cluster) -> FleetIncidents:
        """This manager's share of the fleet's onsets through ``cluster`` (which needs
        redis-py): it reaches the manager only through the hooks given here."""
        from recovery.incidents_remote import FleetIncidents, ManagerHooks

        hooks = ManagerHooks(clock=self.clock, hold_timeout=self.config.incident_hold_timeout,
                             registration=self._registration, onset=self._remote_onset,
                             recovered=self._remote_recovered, regraph=self._regraph)
        return FleetIncidents(hooks, cluster)

    def _remote_onset(self, name: str, kind: OnsetKind) -> None:
        """Another node's onset of ``name`` (a name not registered here)."""
        self._act_on_incidents(self._tracker.onset(name, kind))

    def _remote_recovered(self, name: str) -> None:
        self._act_on_incidents(self._tracker.recovered(name))

    def _regraph(self) -> None:
        """Group by the declarations as they are now, the fleet's included."""
        self._tracker.use_graph(self._dependency_graph())

    def _act_on_incidents(self, update: Update) -> None:
        for event in update.events:
            self._page(event)
        for name in update.trials:
            self._end_hold(name, trial=True)
        for name in update.released:
            self._end_hold(name, trial=False)
        self._timer_wake.set()  # what the tracker has due may have changed

    def _page(self, event: IncidentEvent) -> None:
        """An incident's event as an alert, for incidents of two members or more (one
        set each): an incident of one is paged by its member's own alerts, as a
        failure was before incidents. One that grows to two is paged as opened then."""
        incident = event.incident
        if self._fleet_incidents is not None and self._fleet_incidents.is_remote(incident.root):
            return  # paged by the node whose root it is
        with self._lock:
            if event.renamed_from in self._paged:  # its new root renamed it
                self._paged.discard(event.renamed_from)
                self._paged.add(incident.id)
            paged = incident.id in self._paged
            if event.kind == RESOLVED:
                self._paged.discard(incident.id)
            elif not paged and len(incident.members) >= 2:
                self._paged.add(incident.id)
        if paged:
            self._alerts.fire(incident.root, AlertKind(event.kind), event.message)
        elif event.kind != RESOLVED and len(incident.members) >= 2:
            others = ", ".join(name for name in incident.members if name != incident.root)
            cause = "" if incident.cause_known else ", cause unknown (no declared link)"
            self._alerts.fire(incident.root, AlertKind.INCIDENT_OPENED,
                              f"incident {incident.id}: root {incident.root}, with {others}"
                              f"{cause}")

    # -- holds -----------------------------------------------------------------------------

    def _held_by_incident(self, plugin: Supervised) -> bool:
        """Is ``plugin`` held now (its attempt must not run)? Held, its breaker is held
        open until the hold ends, and the timer knows when that is."""
        hold = self._tracker.hold(plugin.name)
        if hold is None:
            return False
        with self._lock:
            self._held_until[plugin.name] = hold.until
        return True

    def _hold_open(self, plugin: Supervised) -> None:
        """After its episode ended held: the breaker stays open (fallbacks) until the
        hold ends; the end of the hold opens the next episode."""
        with self._lock:
            until = self._held_until.get(plugin.name)
        if until is not None:
            left = max(until - self.clock.monotonic(), 0.0)
            self._move_breaker(lambda: plugin.breaker.force_open(left))

    def _end_hold(self, name: str, *, trial: bool) -> None:
        """The hold on ``name`` ended: a trial (its root was verified) or, timed out,
        its own recovery. A member with an episode already (it never waited held)
        goes on with it; a failed one stays as it is.

        A hold that timed out counts as the back-off it replaced: the member
        enters its crash loop where its repairs since its trip would be by now
        (the next attempt at the next slot of that schedule, the delays doubling
        on from there). Started afresh instead, every dependent of a root still
        down would run full episodes at the same moment against it.
        """
        plugin = self._plugins.get(name)
        if plugin is None:
            return
        now = self.clock.monotonic()
        with self._lock:
            until = self._held_until.pop(name, None)
            if not (until is not None and self._running and plugin.episode is None
                    and not plugin.failed):
                return
            if not trial:
                level, wait = self._slot_after(now - (until - self.config.incident_hold_timeout))
                plugin.crash_level = max(plugin.crash_level, level)
                self._enter_crash_loop(plugin, FailedReason.EXHAUSTED, now, wait)
            else:
                failure = plugin.last_failure or FailureInfo(
                    FailureType.ERROR, message="held by an incident")
                self._open_episode(plugin, failure, now, probe=False)
                assert plugin.episode is not None
                plugin.episode.trial = True
        if trial:
            self._queue_episode(plugin)
        else:
            self._crash_loop_started(plugin, "its incident's hold timed out with the root "
                                     "still down")

    def _slot_after(self, held: float) -> tuple[int, float]:
        """Crash-loop waits that fit in ``held`` seconds from the first, and the time
        from there to the end of the next one (the next attempt)."""
        level, spent = 0, 0.0
        while level < MAX_LEVEL and spent + self._crash_backoff.delay(level) <= held:
            spent += self._crash_backoff.delay(level)
            level += 1
        return level, spent + self._crash_backoff.delay(level) - held

    # -- what users and the views read ------------------------------------------------------

    def incidents(self, active_only: bool = False) -> list[Incident]:
        """Incidents, oldest first: the open ones and (unless ``active_only``) the last
        1,000 ended (:class:`recovery.incidents.Incident`)."""
        return self._tracker.incidents(active_only)

    def _incident_view(self, name: str) -> tuple[str | None, float | None]:
        """``name``'s open incident id and the wall-clock end of its hold, for status."""
        incident = self._tracker.incident_of(name)
        hold = self._tracker.hold(name)
        until = None if hold is None else time.time() + hold.until - self.clock.monotonic()
        return (None if incident is None else incident.id), until

    def _incident_id(self, name: str) -> str | None:
        incident = self._tracker.incident_of(name)
        return None if incident is None else incident.id

    def _fold_alert(self, name: str, kind: AlertKind) -> bool:
        """The alert dispatcher's fold: True when ``name``'s incident stands for it."""
        if kind not in FOLDED:
            return False
        incident = self._tracker.incident_of(name)
        if incident is None or len(incident.members) < 2:
            return False  # an incident of one is paged by its member's own alerts
        return self._tracker.fold(name, kind.value) is not None

    def _incident_due(self) -> float | None:
        """When the tracker next has something to do (the timer waits for it)."""
        return self._tracker.next_due()
