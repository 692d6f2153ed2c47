"""One node of the demo's fleet: a spawned process running the whole scenario.

Its manager shares the plugins' breakers through a ``recovery.cluster.Cluster``; what
it would show (events, breaker moves, counts) goes to the parent over a pipe.
"""

from __future__ import annotations

import collections
import contextlib
import os
import random
import signal
import sys
import threading
import time
import traceback
from typing import Any

import attrs

from recovery.audit import JsonlAuditLogger
from recovery.breaker import CircuitBreaker
from recovery.demo.calls import CallTally, PluginCalls
from recovery.demo.output import join_leftovers
from recovery.demo.reporting_audit import ReportingAuditLogger
from recovery.demo.scenario import PLUGINS, Fault, build_scenario, work
from recovery.demo.screen import TICK, Reporter
from recovery.demo.tables import flags, plugin_numbers
from recovery.state import CircuitBreakerState
from recovery.status import RecoveryStatus

READY_TIMEOUT = 60.0
"""Seconds the nodes get to start an interpreter each and connect to Redis."""
FAULT_NODES = (0, 1, 2, -1, 2)
"""Which node (0: the first, -1: the last, modulo N) each fault of the scenario's
timeline hits, in its order: flaky, hung-check, slow, flaky again, slow's end (where
slow began)."""
CLUSTER_THREADS = "recovery-cluster"
"""The prefix of the cluster's threads' names: a move made on one of them is the cluster
applying the fleet's decision (tests/demo fails if that stops being so)."""


@attrs.frozen
class NodeSpec:
    """What one node is told: who it is and where the fleet meets."""

    node: int
    processes: int
    url: str
    namespace: str
    seed: int
    duration: float
    workers: int
    audit_path: str


def node_id(node: int) -> str:
    return f"node{node}"


def faults_of(node: int, processes: int, faults: list[Fault]) -> list[Fault]:
    """The scripted faults that hit this node's plugins (see ``FAULT_NODES``)."""
    return [fault for slot, fault in zip(FAULT_NODES, faults, strict=True)
            if slot % processes + 1 == node]


def opening(old: str, new: str, by_cluster: bool) -> str | None:
    """``trip``: the node's own breaker opened it (its calls, a failed trial, a hold by
    hand); ``follow``: the cluster opened a closed breaker after another node's trip;
    None: any other move, such as the cluster holding open again a breaker that a
    health check made half-open. The cluster moves breakers on its own threads, so
    the thread tells."""
    if new != "open" or old not in ("closed", "half_open"):
        return None
    if not by_cluster:
        return "trip"
    return "follow" if old == "closed" else None


class _ParentLine:
    """A node's end of its pipe to the parent: messages out; "go" and "stop" in.

    A pipe, not a multiprocessing queue: queues and events hold named semaphores,
    which a parent that quits at once (a second Ctrl-C) would leave to the resource
    tracker to clean up, with a warning on the terminal.
    """

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        self._lock = threading.Lock()  # breakers' listeners send from many threads

    def put(self, message: tuple[Any, ...]) -> None:
        with self._lock, contextlib.suppress(OSError):  # the parent is gone: no one to tell
            self._conn.send(message)

    def word(self, timeout: float) -> str | None:
        """The parent's next word within ``timeout``; "stop" if the parent is gone."""
        try:
            return str(self._conn.recv()) if self._conn.poll(timeout) else None
        except (EOFError, OSError):
            return "stop"


class _Relay(Reporter):
    """A node's reporter: everything it would show goes to the parent instead."""

    def __init__(self, outbox: _ParentLine, node: int) -> None:
        super().__init__(sys.stderr, time.monotonic())
        self._outbox = outbox
        self._node = node
        self._lock = threading.Lock()
        self.trips = collections.Counter[str]()
        self.followed = collections.Counter[str]()

    def event(self, plugin: str, text: str) -> None:
        self._outbox.put(("event", self._node, plugin, text))

    def transition(
        self, breaker: CircuitBreaker, old: CircuitBreakerState, new: CircuitBreakerState
    ) -> None:
        by_cluster = threading.current_thread().name.startswith(CLUSTER_THREADS)
        kind = opening(old.value, new.value, by_cluster)
        if kind is not None:
            with self._lock:
                (self.trips if kind == "trip" else self.followed)[breaker.name] += 1
        self._outbox.put(("move", self._node, breaker.name, old.value, new.value, by_cluster,
                          time.monotonic()))


def run_node(spec: NodeSpec, conn: Any) -> None:
    """A node's process: the demo's scenario, sharing its breakers, until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent hears Ctrl-C and tells us
    outbox = _ParentLine(conn)
    try:
        _node(spec, outbox)
    except BaseException as exc:  # the parent shows it; a traceback would tear the view
        where = traceback.extract_tb(exc.__traceback__)[-1:]
        at = f" at {where[0].filename}:{where[0].lineno}" if where else ""
        outbox.put(("failed", spec.node, f"{type(exc).__name__}: {exc}{at}"))
        raise SystemExit(1) from None


def _node(spec: NodeSpec, outbox: _ParentLine) -> None:
    from recovery.cluster import Cluster

    before = set(threading.enumerate())
    seed = spec.seed + 1000 * spec.node
    audit = JsonlAuditLogger(spec.audit_path)
    relay = _Relay(outbox, spec.node)
    tally = CallTally(PLUGINS)
    cluster = Cluster(spec.url, namespace=spec.namespace, node_id=node_id(spec.node))
    scene = build_scenario(seed, spec.duration, ReportingAuditLogger(audit, tally, relay),
                           (relay.transition,), relay, cluster=cluster)
    faults = faults_of(spec.node, spec.processes, scene.faults)
    workers_stop = threading.Event()
    pool = None
    try:
        cluster.start()
        deadline = time.monotonic() + READY_TIMEOUT
        while not cluster.status()["connected"]:
            if time.monotonic() > deadline or outbox.word(0.01) == "stop":
                raise RuntimeError(f"no connection to Redis: {cluster.status()['last_error']}")
        outbox.put(("ready", spec.node, os.getpid()))
        if outbox.word(READY_TIMEOUT) != "go":
            return
        started = time.monotonic()
        scene.start(relay)
        pool = [
            threading.Thread(target=work, name=f"demo-worker-{index}", args=(
                scene.rm, scene.calls, tally, workers_stop,
                random.Random(seed * 1000 + index)))
            for index in range(spec.workers)
        ]
        for thread in pool:
            thread.start()
        while outbox.word(TICK) is None:  # "stop", or the parent is gone
            elapsed = time.monotonic() - started
            while faults and faults[0].at <= elapsed:
                fault = faults.pop(0)
                relay.event(fault.plugin, fault.description)
                fault.apply()
            outbox.put(("tick", spec.node, node_rows(scene.rm.status(), tally.snapshot())))
    finally:
        workers_stop.set()
        for thread in pool or ():
            thread.join()
        for plugin in scene.plugins.values():
            plugin.release()  # a hung check must not outlive the demo
        scene.rm.stop()
        cluster.stop()
        audit.close()
    counts = tally.snapshot()
    status = scene.rm.status()
    cluster_view = cluster.status()
    left = join_leftovers(before)
    outbox.put(("done", spec.node, {
        "rows": node_rows(status, counts),
        "actions": {name: sorted(t.actions.items()) for name, t in counts.items()},
        "trips": dict(relay.trips),
        "followed": dict(relay.followed),
        "cluster": {key: cluster_view[key] for key in
                    ("events_published", "events_received", "events_stale",
                     "events_dropped")},
        "threads_left": len(left),
    }))


def node_rows(status: RecoveryStatus, counts: dict[str, PluginCalls]) -> dict[str, Any]:
    """Per plugin: breaker state, its numbers (``NUMBERS``), and what is wrong now."""
    return {
        name: {"state": plugin.circuit_breaker.state.value,
               **plugin_numbers(counts[name], plugin.circuit_breaker.total_rejections),
               "flags": flags(plugin.recovery)}
        for name, plugin in status.plugins.items()
    }
