"""Each node's status summary, published once a second for the fleet dashboard.

A started :class:`~recovery.cluster.Cluster` runs one more thread that, once a
second, takes the cluster's ``snapshot()``, reads its attached breakers
(``metrics()``, the public snapshot) and, for breakers a
:class:`~recovery.manager.RecoveryManager` registered, that plugin's recovery
flags and open incident, with the managers' open incidents (so the fleet page can
show one outage once across nodes), and publishes them on the namespace's
``summaries`` channel: a channel of
its own, so the fleet's decisions on the events channel never wait behind (or get
mixed up with) the dashboard's traffic. Nothing is stored in
Redis: a node that stops publishing simply goes quiet, and the dashboard fades it.

A summary is framed and signed like every cluster message (version tag, HMAC
over the body when the cluster has a secret) and is never larger than
:data:`MAX_SUMMARY_BYTES`: a node with more breakers than fit sends the ones in
trouble first and says how many it left out. The reader,
:func:`decode_summary`, checks every field, so the dashboard shows nothing a
malformed or forged message said.

The call path pays nothing: callers never touch this thread, and the thread's
one read of a breaker per second is the same snapshot ``metrics()`` gives anyone.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from recovery.cluster.codec import (
    MAX_TEXT,
    VERSION,
    Rejected,
    check_namespace,
    frame,
    open_frame,
)
from recovery.status import PluginRecovery, StatusSource

if TYPE_CHECKING:  # the cluster imports this module
    from recovery.cluster.core import Cluster, ClusterSnapshot

_logger = logging.getLogger("recovery.cluster")

INTERVAL = 1.0
"""Seconds between two summaries of one node."""
MAX_SUMMARY_BYTES = 16384
"""The largest summary on the wire (frame and signature included), sent or accepted."""
MAX_ACTION = 200
"""A last recovery action longer than this is cut (it is a label, not a report)."""
MAX_INCIDENTS = 20
"""Open incidents a summary carries at most (the oldest first); more are counted."""
MAX_MEMBERS = 100
"""Members of one incident a summary names at most (the root first); more are counted."""
MAX_INCIDENT_ID = 64
"""The longest incident id accepted (the manager's are ``inc-<prefix>-<n>``)."""
_INCIDENT_SHARE = 0.5  # the part of the size bound the incidents may take
STATES = ("closed", "open", "half_open", "repairing")
_TROUBLE = {"open": 0, "half_open": 1, "repairing": 2, "closed": 3}
_FRAME = len(VERSION) + 2 + 64  # "R1 " + hex HMAC-SHA256 + " "
_PLUGIN_FLAGS = ("failed", "crash_loop", "degraded")


def channel(namespace: str) -> str:
    """The pub/sub channel of a namespace's summaries (apart from its events)."""
    return f"{namespace}:summaries"


# -- building and encoding ------------------------------------------------------------------


def breaker_entry(metrics: dict[str, Any], rate: tuple[float, float],
                  plugin: PluginRecovery | None, incident: str | None = None) -> dict[str, Any]:
    """What a summary says about one breaker, from its ``metrics().to_dict()``, and the
    id of the open incident its plugin is a member of (only when there is one: readers
    that predate incidents ignore the field, and a quiet fleet's summaries stay small)."""
    entry = {
        "name": metrics["name"],
        "state": metrics["state"],
        "opened_by": metrics.get("opened_by"),
        "since": metrics.get("state_change_time"),
        "requests": metrics["total_requests"],
        "failures": metrics["total_failures"],
        "rejections": metrics["total_rejections"],
        "slow": metrics["total_slow_calls"],
        "window_failure_rate": round(metrics.get("window_failure_rate") or 0.0, 4),
        "rate": [round(rate[0], 2), round(rate[1], 2)],
        "plugin": None if plugin is None else _plugin_entry(plugin),
    }
    if incident is not None:
        entry["incident"] = incident[:MAX_INCIDENT_ID]
    return entry


def incident_entry(incident: Mapping[str, Any]) -> dict[str, Any]:
    """What a summary says about one open incident, from its ``Incident.to_dict()``: its
    id, root, members (the root first, at most :data:`MAX_MEMBERS`, the rest counted in
    ``members_total``) and whether its cause is known. The evidence stays on the node."""
    root = incident["root"]
    members = [root] + [name for name in incident["members"] if name != root]
    return {"id": str(incident["id"])[:MAX_INCIDENT_ID], "root": root,
            "members": members[:MAX_MEMBERS], "members_total": len(members),
            "cause_known": bool(incident["cause_known"])}


def _plugin_entry(recovery: PluginRecovery) -> dict[str, Any]:
    """The flags (``_PLUGIN_FLAGS``) and last action of a plugin's recovery."""
    action = recovery.last_action
    return {
        "failed": recovery.failed,
        "crash_loop": recovery.crash_loop,
        "degraded": recovery.degraded,
        "last_action": action[:MAX_ACTION] if action else None,
        "last_action_success": recovery.last_action_success,
    }


def _dumps(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":"), allow_nan=False).encode()


def encode_summary(head: dict[str, Any], entries: list[dict[str, Any]],
                   secret: bytes | None,
                   incidents: list[dict[str, Any]] | None = None) -> bytes:
    """Frame and sign a summary of ``head`` plus as many ``entries`` as fit the bound.

    The entries go in trouble first (open, half-open, repairing, failed plugins,
    then the rest by name); those that would push the message past
    :data:`MAX_SUMMARY_BYTES` are left out and counted in ``omitted``. The open
    ``incidents`` (:func:`incident_entry`, oldest first) go in the head, at most
    :data:`MAX_INCIDENTS` of them within half the bound; those left out are counted
    in ``incidents_total``. A summary without incidents carries neither field.
    """
    if incidents:
        head = {**head, **_incidents_within(incidents)}
    entries = sorted(entries, key=_priority)
    total = len(entries)

    def start(omitted: int) -> bytes:  # the body up to its list of breakers
        counts = {"kind": "summary", "breakers_total": total, "omitted": omitted}
        return _dumps({**head, **counts})[:-1] + b',"breakers":['

    # Room left by the frame and the head with the largest count it can carry.
    budget = MAX_SUMMARY_BYTES - _FRAME - len(start(total)) - len(b"]}")
    kept: list[bytes] = []
    for entry in entries:  # each encoded once, and only until the bound is reached
        encoded = _dumps(entry)
        cost = len(encoded) + (1 if kept else 0)
        if cost > budget:
            break
        kept.append(encoded)
        budget -= cost
    body = start(total - len(kept)) + b",".join(kept) + b"]}"
    return frame(body, secret)


def _incidents_within(incidents: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``incidents`` (oldest first) that fit their share of the size bound."""
    budget = int(MAX_SUMMARY_BYTES * _INCIDENT_SHARE)
    kept: list[dict[str, Any]] = []
    for incident in incidents[:MAX_INCIDENTS]:
        budget -= len(_dumps(incident)) + 1
        if budget < 0:
            break
        kept.append(incident)
    return {"incidents": kept, "incidents_total": len(incidents)}


def _priority(entry: dict[str, Any]) -> tuple[int, str]:
    plugin = entry.get("plugin") or {}
    if plugin.get("failed") or plugin.get("crash_loop"):
        return (0, entry["name"])
    return (_TROUBLE.get(entry["state"], 3) + 1, entry["name"])


# -- decoding --------------------------------------------------------------------------------


def _malformed(what: str, value: Any) -> Rejected:
    return Rejected("malformed", f"{what}={value!r:.80}")


def _text(data: dict[str, Any], key: str, *, optional: bool = False,
          limit: int = MAX_TEXT) -> str | None:
    value = data.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value or len(value) > limit:
        raise _malformed(key, value)
    return value


def _count(data: dict[str, Any], key: str) -> int:
    value = data.get(key)
    if type(value) is not int or value < 0:
        raise _malformed(key, value)
    return value


def _number(data: Any, key: str) -> float:
    value: Any = data.get(key) if isinstance(data, dict) else data
    if type(value) not in (int, float) or not math.isfinite(value) or value < 0:
        raise _malformed(key, value)
    return float(value)


def _entry(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise _malformed("breaker", data)
    state = data.get("state")
    if state not in STATES:
        raise _malformed("state", state)
    rate = data.get("rate")
    if not isinstance(rate, list) or len(rate) != 2:
        raise _malformed("rate", rate)
    plugin = data.get("plugin")
    if plugin is not None:
        if not isinstance(plugin, dict):
            raise _malformed("plugin", plugin)
        success = plugin.get("last_action_success")
        if success is not None and not isinstance(success, bool):
            raise _malformed("last_action_success", success)
        flags = {flag: plugin.get(flag) for flag in _PLUGIN_FLAGS}
        if not all(isinstance(value, bool) for value in flags.values()):
            raise _malformed("plugin flags", flags)
        plugin = {**flags,
                  "last_action": _text(plugin, "last_action", optional=True, limit=MAX_ACTION),
                  "last_action_success": success}
    rate_fail = _number(rate[1], "rate")
    return {
        "incident": _text(data, "incident", optional=True, limit=MAX_INCIDENT_ID),
        "name": _text(data, "name"),
        "state": state,
        "opened_by": _text(data, "opened_by", optional=True),
        "since": _text(data, "since", optional=True, limit=64),
        "requests": _count(data, "requests"),
        "failures": _count(data, "failures"),
        "rejections": _count(data, "rejections"),
        "slow": _count(data, "slow"),
        "window_failure_rate": _number(data, "window_failure_rate"),
        "rate": [_number(rate[0], "rate"), rate_fail],
        "plugin": plugin,
    }


def _incident(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise _malformed("incident", data)
    members = data.get("members")
    if not isinstance(members, list) or not 0 < len(members) <= MAX_MEMBERS:
        raise _malformed("members", members)
    names = [_text({"member": name}, "member") for name in members]
    root = _text(data, "root")
    if names[0] != root:
        raise _malformed("members", members)
    cause_known = data.get("cause_known")
    if not isinstance(cause_known, bool):
        raise _malformed("cause_known", cause_known)
    total = _count(data, "members_total")
    if total < len(names):
        raise _malformed("members_total", total)
    return {"id": _text(data, "id", limit=MAX_INCIDENT_ID), "root": root, "members": names,
            "members_total": total, "cause_known": cause_known}


def _incidents(data: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
    """A summary's open incidents and how many the node had (none from a node that
    predates incidents or has none open)."""
    if "incidents" not in data:
        return [], 0
    incidents = data["incidents"]
    if not isinstance(incidents, list) or len(incidents) > MAX_INCIDENTS:
        raise _malformed("incidents", incidents)
    total = _count(data, "incidents_total")
    if total < len(incidents):
        raise _malformed("incidents_total", total)
    return [_incident(incident) for incident in incidents], total


def decode_summary(message: bytes, secret: bytes | None,
                   namespace: str | None = None) -> dict[str, Any]:
    """Verify and parse one summary into a dict of known fields only; raises Rejected.

    With ``namespace``, a summary that names another one (in its signed body) is
    refused as ``foreign_namespace``, and so, with a ``secret``, is one naming none.
    """
    data = open_frame(message, secret, MAX_SUMMARY_BYTES)
    check_namespace(data, secret, namespace)
    if data.get("kind") != "summary":
        raise Rejected("malformed", "not a summary")
    pid = data.get("pid")
    if type(pid) is not int or pid < 0:
        raise _malformed("pid", pid)
    breakers = data.get("breakers")
    if not isinstance(breakers, list):
        raise _malformed("breakers", breakers)
    incidents, incidents_total = _incidents(data)
    return {
        "node": _text(data, "node"),
        "host": _text(data, "host", limit=255),
        "pid": pid,
        "time": _number(data, "time"),
        "seq": _count(data, "seq"),
        "breakers": [_entry(entry) for entry in breakers],
        "breakers_total": _count(data, "breakers_total"),
        "omitted": _count(data, "omitted"),
        "incidents": incidents,
        "incidents_total": incidents_total,
    }


# -- the publishing thread -------------------------------------------------------------------


class Publisher:
    """Builds and sends one cluster's summaries; :meth:`run` is its thread's body."""

    def __init__(self, cluster: Cluster, stopping: threading.Event) -> None:
        self._cluster = cluster
        self._stopping = stopping
        self._host = socket.gethostname()[:255] or "?"
        self._last: dict[str, tuple[float, int, int]] = {}  # name -> (monotonic, req, fail)
        self._seq = 0
        self.published = 0
        self.errors = 0

    def run(self, send: Callable[[bytes], object],
            failed: Callable[[BaseException], None]) -> None:
        """Publish a summary with ``send`` once a second until stopped; ``failed`` is told
        of anything but a Redis fault (those are counted here, and the next second tries
        again)."""
        import redis  # here, so importing recovery.cluster without it fails with its hint

        faults = (redis.RedisError, OSError)
        # The first one a second after start, not at once: a preloading parent (which
        # starts the cluster at import, then forks the workers) has forked by then, and
        # never shows in the fleet as a node that serves nothing.
        next_at = time.monotonic() + INTERVAL
        while not self._stopping.wait(max(next_at - time.monotonic(), 0.0)):
            next_at += INTERVAL
            if next_at <= time.monotonic():  # fell behind (Redis slow): skip, do not burst
                next_at = time.monotonic() + INTERVAL
            try:
                self.publish_once(send)
            except faults as exc:  # Redis away: the next second tries again
                self.errors += 1
                _logger.debug("cluster summary not published: %s", exc)
            except BaseException as exc:  # the thread must outlive anything
                self.errors += 1
                failed(exc)

    def message(self, snapshot: ClusterSnapshot | None = None) -> bytes:
        """The summary of ``snapshot`` (default: the cluster as it is now), encoded."""
        if snapshot is None:
            snapshot = self._cluster.snapshot()
        breakers = snapshot.breakers
        plugins, incidents = _plugin_views(snapshot.managers)
        now = time.monotonic()
        entries = []
        for breaker in breakers:
            metrics = breaker.metrics().to_dict()
            recovery, incident = plugins.get(id(breaker), (None, None))
            entries.append(breaker_entry(metrics, self._rate(metrics, now), recovery, incident))
        names = {breaker.name for breaker in breakers}
        for name in [name for name in self._last if name not in names]:
            del self._last[name]
        self._seq += 1
        head = {"node": snapshot.node_id, "ns": snapshot.namespace, "host": self._host,
                "pid": os.getpid(), "time": round(time.time(), 3), "seq": self._seq}
        return encode_summary(head, entries, self._cluster.config.secret, incidents)

    def publish_once(self, send: Callable[[bytes], object]) -> None:
        snapshot = self._cluster.snapshot()
        if not snapshot.serving:  # a preloading parent is not a node of the fleet
            return
        send(self.message(snapshot))
        self.published += 1

    def _rate(self, metrics: dict[str, Any], now: float) -> tuple[float, float]:
        """Requests and failures per second since the previous summary."""
        name, requests, failures = (
            metrics["name"], metrics["total_requests"], metrics["total_failures"])
        last = self._last.get(name)
        self._last[name] = (now, requests, failures)
        if last is None or now <= last[0]:
            return (0.0, 0.0)
        elapsed = now - last[0]
        return (max(requests - last[1], 0) / elapsed, max(failures - last[2], 0) / elapsed)


def _plugin_views(managers: tuple[StatusSource, ...]) -> tuple[
        dict[int, tuple[PluginRecovery, str | None]], list[dict[str, Any]]]:
    """The recovery and open incident of each breaker that is one of ``managers``'
    plugins, by ``id(breaker)`` (a manager given ``cluster=`` reports itself to the
    cluster), and the managers' open incidents (:func:`incident_entry`), oldest first."""
    views: dict[int, tuple[PluginRecovery, str | None]] = {}
    incidents: list[dict[str, Any]] = []
    for manager in managers:
        status = manager.status()
        for name, plugin in status.plugins.items():
            try:
                breaker = manager.breaker(name)
            except KeyError:  # unregistered since
                continue
            views[id(breaker)] = (plugin.recovery, plugin.incident)
        incidents.extend(incident_entry(incident) for incident in status.incidents)
    return views, incidents


def summary_thread(cluster: Cluster, stopping: threading.Event,
                   send: Callable[[bytes], object],
                   failed: Callable[[BaseException], None]) -> threading.Thread:
    """The thread that publishes ``cluster``'s summaries with ``send`` until ``stopping``
    is set (see :meth:`Publisher.run`)."""
    return threading.Thread(target=Publisher(cluster, stopping).run, args=(send, failed),
                            name="recovery-cluster-summary", daemon=True)
