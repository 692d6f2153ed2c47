"""What the fleet page shows: every node's summary, read from the cluster's Redis.

One thread subscribes to the namespace's summaries channel, checks each message
(framing, signature, every field: what fails is dropped and counted by reason,
never shown) and keeps the latest summary per node. Once a second it publishes
the fleet view: node by node, breaker by breaker (which nodes have it open) and
incident by incident (one outage once, however many nodes opened one for it),
through the same :class:`~recovery.dashboard.hub.Hub` and Server-Sent Events as
the single-process page.

A node is judged by when *this* process last heard from it (its monotonic
clock), never by the time the node wrote in its summary, so clock skew between
hosts cannot make a live node look dead. A node unheard for ``fade_after``
seconds is shown as silent (faded); after ``forget_after`` seconds it is dropped.
The timeline says when nodes join, fall silent, come back and are dropped, and
when a breaker changes state on a node.

Which summaries are believed. Without a secret anyone who can publish on the
Redis can write a summary under any node's id, so a summary must not be able to
silence the node whose id it takes; with a secret, a replayed one must not turn
a node's view back. A node's *run* is the process that publishes under its id,
known by the host and pid its summaries carry; a run numbers its summaries 1, 2,
3 ... one a second (``seq``). So:

- From the run shown, a summary is accepted only with a higher ``seq`` than the
  last one accepted (else: dropped, ``stale``: a repeat, a replay, a straggler),
  and no further ahead than the time since then allows, one a second plus
  :data:`SEQ_SLACK` (else: dropped, ``seq_jump``). One forged summary with a huge
  ``seq`` is refused, and one within the slack holds the real node's summaries
  back for :data:`SEQ_SLACK` seconds at most, less than a node takes to fade.
- Anything else under the node's id (another host or pid, or a ``seq`` that
  started again) is another run: a restart, or a second process given the same
  id. It replaces the run shown only once that run has been quiet for
  :data:`RUN_QUIET` seconds, and only with a later time of writing than the
  last summary accepted (else: dropped, ``other_run`` while the shown run is
  live, ``stale`` for an older one). A live node cannot be displaced, and a
  restarted one takes over a few seconds after it went quiet.

Every summary is either accepted (``received``) or dropped with its reason
(``dropped``), so the two always add up to what arrived. Without a secret a
forger who keeps publishing can still make up a node's view: only a secret
keeps that out.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import random
import threading
import time
from typing import Any

from recovery._clock import REAL_CLOCK, Clock, iso_utc
from recovery.cluster.codec import Rejected
from recovery.cluster.summary import INTERVAL as PUBLISHED_EVERY
from recovery.cluster.summary import channel, decode_summary
from recovery.dashboard.feed import TIMELINE, Published, encode
from recovery.dashboard.hub import Hub

_logger = logging.getLogger("recovery.dashboard")

INTERVAL = 1.0  # seconds between two fleet views sent to the page
FADE_AFTER = 5.0  # seconds without a summary before a node is shown as silent
FORGET_AFTER = 60.0  # seconds without a summary before a node is dropped
MAX_NODES = 1000  # nodes shown at once; summaries of more are dropped (reason "too_many_nodes")
SEQ_SLACK = 2  # summaries a run's seq may be ahead of one per second since the last accepted
RUN_QUIET = 3.0  # seconds the shown run of a node must be quiet before another run replaces it
BACKOFF_FIRST, BACKOFF_CAP = 0.05, 5.0  # reconnection waits, as the cluster's
_POLL = 0.2  # longest wait on the socket, so stop() is seen soon
_SOCKET_TIMEOUT = 2.0

_TROUBLE = ("open", "half_open", "repairing")  # the breakers listed first, in this order
_LEVELS = {"closed": "good", "open": "bad", "half_open": "warn", "repairing": "info"}


class _Node:
    def __init__(self, summary: dict[str, Any], heard: float) -> None:
        self.summary = summary
        self.heard = heard
        self.silent = False

    def verdict(self, summary: dict[str, Any], now: float) -> str | None:
        """Why ``summary`` (under this node's id) is dropped; None to accept it.

        "restart" accepts it too, as a new run that replaces the one shown.
        """
        last, quiet = self.summary, now - self.heard
        if (summary["host"], summary["pid"]) == (last["host"], last["pid"]) \
                and summary["seq"] > last["seq"]:
            if summary["seq"] - last["seq"] > quiet / PUBLISHED_EVERY + SEQ_SLACK:
                return "seq_jump"
            return None
        if summary["time"] <= last["time"]:
            return "stale"
        return "restart" if quiet >= RUN_QUIET else "other_run"


class FleetFeed(Published):
    """The fleet view of ``namespace`` on the Redis at ``url``, published to ``hub``."""

    def __init__(
        self, url: str, namespace: str, secret: bytes | None, hub: Hub, *,
        fade_after: float = FADE_AFTER, forget_after: float = FORGET_AFTER,
        interval: float = INTERVAL, max_nodes: int = MAX_NODES, clock: Clock = REAL_CLOCK,
    ) -> None:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self._faults = (redis.RedisError, OSError)
        self._client: Any = redis.Redis.from_url(
            url, socket_timeout=_SOCKET_TIMEOUT, socket_connect_timeout=_SOCKET_TIMEOUT,
            retry=Retry(NoBackoff(), 0),
        )
        self._namespace = namespace
        self._secret = secret
        self._hub = hub
        self._fade_after, self._forget_after = fade_after, forget_after
        self._interval = interval
        self._max_nodes = max_nodes
        self._clock = clock  # when a node was heard: fading, and how far its seq may run
        self._lock = threading.Lock()  # guards all below; publishing happens under it
        self._nodes: dict[str, _Node] = {}
        self._timeline: collections.deque[dict[str, Any]] = collections.deque(maxlen=TIMELINE)
        self._seq = itertools.count(1)
        self._drops: collections.Counter[str] = collections.Counter()
        self._received = 0
        self._connected = False
        self._last_error: str | None = None
        self._view: dict[str, Any] = {}
        self._encoded_snapshot: bytes | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._tick()

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="recovery-dashboard-fleet",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout: float) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
        with contextlib.suppress(*self._faults):
            self._client.close()

    # -- what clients get ---------------------------------------------------------------

    def _snapshot(self) -> dict[str, Any]:
        return {**self._view, "control": False, "timeline": list(self._timeline)}

    def nodes(self) -> tuple[list[tuple[str, bool, dict[str, Any]]], dict[str, Any]]:
        """Each node's (id, silent, latest summary), and the Redis side's counts: what
        the fleet's ``/metrics`` exports. Summaries are replaced, never changed, so
        they are handed out as they are."""
        with self._lock:
            nodes = [(node_id, node.silent, node.summary)
                     for node_id, node in sorted(self._nodes.items())]
            return nodes, {"connected": self._connected, "received": self._received,
                           "dropped": dict(self._drops)}

    # -- the feed's thread ------------------------------------------------------------------

    def _run(self) -> None:
        pubsub: Any = None
        backoff, retry_at = BACKOFF_FIRST, 0.0
        next_tick = time.monotonic() + self._interval
        while not self._stopping.is_set():
            now = time.monotonic()
            if now >= next_tick:
                self._safely(self._tick)
                next_tick = max(next_tick + self._interval, now)
            if pubsub is None and now >= retry_at:
                try:
                    pubsub = self._client.pubsub()
                    pubsub.subscribe(channel(self._namespace))
                    self._set_connected(True, None)
                    backoff = BACKOFF_FIRST
                except self._faults as exc:
                    self._drop_connection(pubsub, exc)
                    pubsub = None
                    retry_at = now + random.uniform(backoff / 2, backoff)
                    backoff = min(backoff * 2, BACKOFF_CAP)
            if pubsub is None:
                self._stopping.wait(max(min(next_tick, retry_at) - time.monotonic(), 0.0))
                continue
            try:
                wait = min(max(next_tick - time.monotonic(), 0.0), _POLL)
                message = pubsub.get_message(timeout=wait)
            except self._faults as exc:
                self._drop_connection(pubsub, exc)
                pubsub = None
                retry_at = time.monotonic() + random.uniform(backoff / 2, backoff)
                continue
            if message is not None and message["type"] == "message":
                self._safely(self._receive, message["data"])
        if pubsub is not None:
            with contextlib.suppress(*self._faults):
                pubsub.close()

    def _safely(self, action: Any, *args: Any) -> None:
        try:
            action(*args)
        except Exception:
            _logger.exception("dashboard: the fleet view failed")

    def _drop_connection(self, pubsub: Any, exc: BaseException) -> None:
        if pubsub is not None:
            with contextlib.suppress(*self._faults):
                pubsub.close()
        self._set_connected(False, f"{type(exc).__name__}: {exc}")

    def _set_connected(self, connected: bool, error: str | None) -> None:
        with self._lock:
            self._connected = connected
            if error is not None:
                self._last_error = error

    def _receive(self, data: bytes) -> None:
        try:
            summary = decode_summary(data, self._secret, self._namespace)
        except Rejected as rejected:
            with self._lock:
                self._drops[rejected.reason] += 1
            return
        now = self._clock.monotonic()
        with self._lock:
            node = self._nodes.get(summary["node"])
            if node is None and len(self._nodes) >= self._max_nodes:
                self._drops["too_many_nodes"] += 1
                return
            verdict = None if node is None else node.verdict(summary, now)
            if verdict not in (None, "restart"):
                self._drops[str(verdict)] += 1
                return
            self._received += 1
            if node is None:
                self._nodes[summary["node"]] = _Node(summary, now)
                self._emit("node", summary["node"], f"joined ({_where(summary)})", "info")
                for entry in summary["breakers"]:
                    if entry["state"] != "closed":
                        self._transition(summary["node"], entry, None)
                return
            before = {entry["name"]: entry["state"] for entry in node.summary["breakers"]}
            node.summary, node.heard = summary, now
            if verdict == "restart":
                node.silent = False
                self._emit("node", summary["node"], f"restarted ({_where(summary)})", "info")
            elif node.silent:
                node.silent = False
                self._emit("node", summary["node"], "publishing again", "good")
            for entry in summary["breakers"]:
                # A breaker new to this node's summaries is news only when not closed.
                old = before.get(entry["name"], "closed" if entry["state"] == "closed" else None)
                if old != entry["state"]:
                    self._transition(summary["node"], entry, old)

    def _transition(self, node: str, entry: dict[str, Any], old: str | None) -> None:
        text = f"{_said(old)} \u2192 {_said(entry['state'])}" if old else _said(entry["state"])
        text += f" on {node}"
        if entry["opened_by"]:
            text += f" (opened by {entry['opened_by']})"
        self._emit("transition", entry["name"], text, _LEVELS[entry["state"]])

    def _emit(self, kind: str, name: str, text: str, level: str) -> None:
        """Put an entry on the timeline and send it; call under the lock."""
        wall = time.time()
        entry = {"seq": next(self._seq), "time": iso_utc(wall), "t": wall, "kind": kind,
                 "name": name, "text": text, "level": level}
        self._timeline.append(entry)
        self._publish(encode("event", entry))

    def _tick(self) -> None:
        now, wall = self._clock.monotonic(), time.time()
        with self._lock:
            for node_id, node in list(self._nodes.items()):
                quiet = now - node.heard
                if quiet >= self._forget_after:
                    del self._nodes[node_id]
                    self._emit("node", node_id, f"dropped after {quiet:.0f}s without a summary",
                               "bad")
                elif quiet >= self._fade_after and not node.silent:
                    node.silent = True
                    self._emit("node", node_id, f"silent for {quiet:.0f}s", "warn")
            nodes = [self._node_view(node_id, node, now)
                     for node_id, node in sorted(self._nodes.items())]
            self._view = {
                "mode": "fleet",
                "time": iso_utc(wall),
                "now": wall,
                "namespace": self._namespace,
                "fade_after": self._fade_after,
                "forget_after": self._forget_after,
                "redis": {"connected": self._connected, "last_error": self._last_error,
                          "received": self._received, "dropped": dict(self._drops)},
                "nodes": nodes,
                "breakers": _by_breaker(nodes),
                "incidents": by_incident(nodes),
                "server": {"clients": self._hub.clients, "dropped_clients": self._hub.dropped},
            }
            self._publish(encode("tick", self._view))

    @staticmethod
    def _node_view(node_id: str, node: _Node, now: float) -> dict[str, Any]:
        summary = node.summary
        return {
            "id": node_id, "host": summary["host"], "pid": summary["pid"],
            "heard_ago": round(now - node.heard, 1), "silent": node.silent,
            "breakers": summary["breakers"], "breakers_total": summary["breakers_total"],
            "omitted": summary["omitted"], "incidents": summary["incidents"],
            "incidents_total": summary["incidents_total"],
        }


def _by_breaker(nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Breaker by breaker: each node's state of it, trouble first."""
    breakers: dict[str, list[dict[str, Any]]] = {}
    for node in nodes:
        for entry in node["breakers"]:
            breakers.setdefault(entry["name"], []).append({
                "node": node["id"], "state": entry["state"], "silent": node["silent"],
                "opened_by": entry["opened_by"],
            })
    views: list[dict[str, Any]] = []
    for name, states in breakers.items():
        counts = collections.Counter(s["state"] for s in states if not s["silent"])
        views.append({"name": name, "nodes": states, "counts": dict(counts)})
    views.sort(key=lambda v: (*(-v["counts"].get(s, 0) for s in _TROUBLE), v["name"]))
    return views


def by_incident(nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The live nodes' open incidents, each shown once for the whole fleet.

    Every node's manager correlates on its own, so one outage is an incident on each
    node it reaches, with ids of their own. Two of them are the same when one's root
    is among the other's members (the same root, or a root that another node saw
    fail downstream of something it did not see fail). Of the roots they name, the
    fleet's is the one most nodes named, then one no node saw as a dependent, then
    by name. Each member says on how many live nodes it is open.
    """
    live = [node for node in nodes if not node["silent"]]
    found = [(node["id"], incident) for node in live for incident in node["incidents"]]
    group = list(range(len(found)))

    def top(i: int) -> int:
        while group[i] != i:
            group[i] = group[group[i]]
            i = group[i]
        return i

    holders: dict[str, list[int]] = {}  # member name -> the incidents naming it
    for i, (_, incident) in enumerate(found):
        for name in incident["members"]:
            holders.setdefault(name, []).append(i)
    for i, (_, incident) in enumerate(found):
        for j in holders.get(incident["root"], ()):
            group[top(i)] = top(j)
    groups: dict[int, list[int]] = {}
    for i in range(len(found)):
        groups.setdefault(top(i), []).append(i)
    views = [_incident_view([found[i] for i in members], len(live))
             for members in groups.values()]
    return sorted(views, key=lambda view: (-view["nodes_affected"], view["root"]))


def _incident_view(found: list[tuple[str, dict[str, Any]]], live: int) -> dict[str, Any]:
    """One fleet incident from its nodes' ``found`` (node id, incident) pairs."""
    votes = collections.Counter(incident["root"] for _, incident in found)
    dependents = {name for _, incident in found for name in incident["members"][1:]}
    root = min(votes, key=lambda name: (-votes[name], name in dependents, name))
    open_on: dict[str, set[str]] = {}
    for node, incident in found:
        for name in incident["members"]:
            open_on.setdefault(name, set()).add(node)
    names = sorted(open_on, key=lambda name: (name != root, -len(open_on[name]), name))
    members = [{"name": name, "open_on": len(open_on[name]), "nodes": sorted(open_on[name])}
               for name in names]
    return {
        "root": root,
        "cause_known": any(incident["cause_known"] for _, incident in found),
        "nodes_affected": len({node for node, _ in found}),
        "live_nodes": live,
        "members": members,
        "local": [{"node": node, "id": incident["id"], "root": incident["root"]}
                  for node, incident in sorted(found, key=lambda f: (f[0], f[1]["id"]))],
    }


def _where(summary: dict[str, Any]) -> str:
    return f"{summary['host']}, pid {summary['pid']}"


def _said(state: str | None) -> str:
    return (state or "").replace("_", "-")
