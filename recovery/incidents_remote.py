"""Remote members of a manager's incidents: one outage, one incident across the fleet.

With a cluster, a :class:`~recovery.manager.RecoveryManager` tells the namespace each
onset and each verified recovery of its own plugins and dependencies
(:mod:`recovery.cluster.onsets`), and groups those of the other managers (other
services, other hosts) with its own:

- a remote name joins the manager's dependency graph with the ``depends_on`` and
  ``tags`` its onset carried, so it links, and may be the root, exactly as a local
  one: service B's ``payments`` depends on ``db``, which only service A registers;
  B's incident has root ``db``. With a cluster, a ``depends_on`` may therefore name
  something no registration here declares (it is taken to be another service's);
  cycles are still refused;
- a remote member is never repaired here (nothing here can), and a local member
  that depends on a remote root is held as for a local one, until the root's
  recovery is heard of (it gets its trial then) or its hold times out;
- a name this manager registers itself is left to its own breaker (which the
  cluster shares by name): the fleet's onsets of it are ignored, and counted;
- the incident is named after its root and the root's first onset, as published
  (``inc-`` and 16 hex digits of a hash of both), so that every node fed the same
  onsets gives it the same id, whatever order they came in;
- an incident whose root is remote is paged by the node whose root it is, not here.

Bounded: at most :data:`MAX_REMOTE` remote names are remembered (the one heard of
least recently is forgotten first, as recovered), and a remote name that stays
open without news for :data:`REMOTE_TTL_HOLDS` hold timeouts (its node went away,
say) is taken as recovered, so no incident stays open for ever.
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import attrs

from recovery._clock import Clock
from recovery.cluster.onsets import Onset, OnsetChannel
from recovery.dependency_graph import Node
from recovery.incidents import OnsetKind

if TYPE_CHECKING:
    from recovery.cluster import Cluster

MAX_REMOTE = 1000
"""Remote names remembered at most (their declarations and open onsets)."""
REMOTE_TTL_HOLDS = 2
"""A remote member without news for this many ``incident_hold_timeout`` is taken as
recovered: every hold on it has ended by then."""


@attrs.frozen
class ManagerHooks:
    """All this module can reach of the manager it serves: its clock and hold timeout,
    and four callables the manager binds to its own incident bookkeeping.

    - ``registration``: a name's ``(depends_on, tags)`` if the manager registers it,
      else None;
    - ``onset``: feed a remote name's onset to the manager's incidents;
    - ``recovered``: feed a remote name's recovery (it is never repaired here);
    - ``regraph``: group by the manager's declarations and the fleet's as they are
      now; raises KeyError or ValueError (a cycle) when they contradict.
    """

    clock: Clock
    hold_timeout: float
    registration: Callable[[str], tuple[tuple[str, ...], dict[str, str]] | None]
    onset: Callable[[str, OnsetKind], None]
    recovered: Callable[[str], None]
    regraph: Callable[[], None]


@attrs.define
class _Remote:
    declared: Node
    node: str
    seen: float  # manager clock: the last message about it
    open: bool  # had an onset and no recovery since


def incident_id(root: str, onset_at: float) -> str:
    """The id every node gives the incident of ``root`` whose first onset was at
    ``onset_at`` (wall clock, seconds, as published)."""
    key = f"{root}\0{round(onset_at * 1000)}".encode("utf-8", "surrogatepass")
    return f"inc-{hashlib.sha256(key).hexdigest()[:16]}"


class FleetIncidents:
    """The manager's side of the fleet's onsets (see the module doc); thread-safe."""

    def __init__(self, hooks: ManagerHooks, cluster: Cluster) -> None:
        self._hooks = hooks
        self._cluster = cluster
        self._lock = threading.Lock()
        self._remote: dict[str, _Remote] = {}  # least recently heard of first
        self._onset_at: dict[str, float] = {}  # name -> wall time of its first onset
        self._recovered: set[str] = set()  # names whose next onset starts afresh
        self._counts: Counter[str] = Counter()
        config = cluster.config
        self._channel = OnsetChannel(
            config.url, config.namespace, config.secret,
            sender=f"{cluster.node_id}/{uuid.uuid4().hex[:8]}", receive=self._received,
            tick=self._expire)

    def start(self) -> None:
        self._channel.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._channel.stop(timeout)

    def status(self) -> dict[str, Any]:
        """The channel's counters (``dropped``: messages refused, by reason), and in
        ``remote`` the remote names remembered and how many were ignored (a name
        registered here), refused (declarations contradicting ours, a cycle),
        forgotten (over :data:`MAX_REMOTE`) or expired (no news)."""
        status = self._channel.status()
        with self._lock:
            status["remote"] = {"names": len(self._remote), "ignored": 0, "conflicting": 0,
                                "forgotten": 0, "expired": 0} | dict(self._counts)
        return status

    # -- naming and declarations -----------------------------------------------------------

    def incident_id(self, root: str) -> str:
        """The tracker's namer: the id of the incident whose root is ``root``."""
        with self._lock:
            at = self._onset_at.get(root)
        return incident_id(root, time.time() if at is None else at)

    def with_fleet(self, local: Iterable[Node]) -> list[Node]:
        """``local`` declarations, with the remote names they do not declare, and a bare
        node for any name still undeclared (another service's, not heard of yet)."""
        nodes = {node.name: node for node in local}
        with self._lock:
            for name, remote in self._remote.items():
                nodes.setdefault(name, remote.declared)
        for node in list(nodes.values()):
            for need in node.depends_on:
                nodes.setdefault(need, Node(need))
        return list(nodes.values())

    def is_remote(self, name: str) -> bool:
        with self._lock:
            return name in self._remote and self._hooks.registration(name) is None

    # -- this manager's onsets --------------------------------------------------------------

    def local_onset(self, name: str, kind: str) -> None:
        """Before the tracker hears of it: note when ``name``'s onset began and tell the fleet."""
        at = self._note_onset(name)
        declared = self._hooks.registration(name)
        needs, tags = declared if declared is not None else ((), {})
        self._send(Onset(kind, name, at, self._cluster.node_id, self._channel.sender,
                         needs, tags))

    def local_recovered(self, name: str) -> None:
        with self._lock:
            self._recovered.add(name)
            at = self._onset_at.get(name, time.time())
        self._send(Onset("recovered", name, at, self._cluster.node_id, self._channel.sender))

    def _send(self, onset: Onset) -> None:
        self._channel.send(onset)

    def _note_onset(self, name: str, at: float | None = None) -> float:
        with self._lock:
            if name not in self._onset_at or name in self._recovered:
                self._onset_at[name] = time.time() if at is None else at
                self._recovered.discard(name)
            return self._onset_at[name]

    # -- the fleet's onsets -----------------------------------------------------------------

    def _received(self, onset: Onset) -> None:
        """On the channel's subscriber thread: a remote name's onset or recovery."""
        hooks = self._hooks
        if hooks.registration(onset.name) is not None:
            self._count("ignored")  # our own breaker (shared by name) speaks for it
            return
        try:
            declared = Node(onset.name, onset.depends_on, onset.tags or None)
        except (TypeError, ValueError):
            self._channel.count_drop("malformed")
            return
        now = hooks.clock.monotonic()
        with self._lock:
            known = self._remote.pop(onset.name, None)
            forgotten = []
            while known is None and len(self._remote) >= MAX_REMOTE:
                oldest = next(iter(self._remote))
                del self._remote[oldest]
                self._onset_at.pop(oldest, None)
                forgotten.append(oldest)
            kept = declared if onset.kind != "recovered" or known is None else known.declared
            self._remote[onset.name] = _Remote(kept, onset.node, now,
                                               onset.kind != "recovered")
            changed = known is None or known.declared != kept
        for name in forgotten:
            self._count("forgotten")
            hooks.recovered(name)
        if changed:
            self._regraph(onset.name)
        if onset.kind == "recovered":
            with self._lock:
                self._recovered.add(onset.name)
            hooks.recovered(onset.name)
        else:
            self._note_onset(onset.name, onset.at)
            kind: OnsetKind = "trip" if onset.kind == "trip" else "early_warning"
            hooks.onset(onset.name, kind)

    def _regraph(self, name: str) -> None:
        """Group by the graph with ``name``'s declarations; if they contradict ours (a
        cycle), by the graph without them."""
        try:
            self._hooks.regraph()
        except (KeyError, ValueError):
            self._count("conflicting")
            with self._lock:
                remote = self._remote.get(name)
                if remote is not None:
                    remote.declared = Node(name)
            self._hooks.regraph()

    def _expire(self) -> None:
        """On the channel's subscriber thread, between messages: remote members that
        stayed open too long without news are taken as recovered."""
        hooks = self._hooks
        limit = REMOTE_TTL_HOLDS * hooks.hold_timeout
        now = hooks.clock.monotonic()
        with self._lock:
            stale = [name for name, remote in self._remote.items()
                     if remote.open and now - remote.seen > limit]
            for name in stale:
                self._remote[name].open = False
                self._recovered.add(name)
        for name in stale:
            self._count("expired")
            hooks.recovered(name)

    def _count(self, what: str) -> None:
        with self._lock:
            self._counts[what] += 1

