"""The demo as a fleet: ``python -m recovery demo --cluster URL --processes N``.

Each of N spawned processes (a *node*) runs the demo's whole scenario (the five
plugins behind its own RecoveryManager, its own workers), and every manager
shares its plugins' breakers through one ``recovery.cluster.Cluster`` on a fresh
namespace, so that two runs never mix. Each scripted fault hits one node's
instance of its plugin (a bad connection in one process): that node trips, and
the live view shows the others follow. This process only shows the run: the
nodes send it their events, breaker moves and counts over a queue.

Ctrl-C is heard here only (the nodes ignore SIGINT): the first tells every node
to stop, waits for their final counts and joins them; the second kills them and
quits at once. The summary adds up the nodes' own final counts.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import multiprocessing
import multiprocessing.connection
import os
import random
import signal
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse
import uuid
from typing import Any, TextIO

import attrs

from recovery import demo
from recovery.audit import JsonlAuditLogger
from recovery.breaker import CircuitBreaker
from recovery.state import CircuitBreakerState
from recovery.status import RecoveryStatus

PLUGINS = demo.PLUGINS
MAX_PROCESSES = 16
"""More nodes than this do not fit the live view's NODES column."""
DEFAULT_PROCESSES = 4
READY_TIMEOUT = 60.0
"""Seconds the nodes get to start an interpreter each and connect to Redis."""
DONE_TIMEOUT = 30.0
"""Seconds the nodes get, once told to stop, to send their final counts and exit."""
FOLLOW_SPAN = 1.0
"""Seconds a trip waits for the other nodes to follow before its line is shown anyway."""
CONNECT_TIMEOUT = 2.0
"""Seconds the first look at Redis may take before --cluster is refused."""
FAULT_NODES = (0, 1, 2, -1, 2)
"""Which node (0: the first, -1: the last, modulo N) each fault of demo._timeline hits,
in its order: flaky, hung-check, slow, flaky again, slow's end (where slow began)."""
GLYPHS = {"closed": ".", "open": "O", "half_open": "H", "repairing": "R"}
_CLUSTER_THREADS = "recovery-cluster"
"""The prefix of the cluster's threads' names: a move made on one of them is the cluster
applying the fleet's decision (test_demo_cluster fails if that stops being so)."""


# -- the command line ---------------------------------------------------------------------


def process_count(text: str) -> int:
    value = demo._whole_number(text)
    if not 1 <= value <= MAX_PROCESSES:
        raise argparse.ArgumentTypeError(f"must be from 1 to {MAX_PROCESSES}, got {text!r}")
    return value


def _shown(url: str) -> str:
    """The URL without its password, for the screen."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return urllib.parse.urlunsplit((parts.scheme, host + port, parts.path, "", ""))


def _usage_error(args: argparse.Namespace) -> str | None:
    """What is wrong with the fleet's arguments, in one line, or None."""
    if args.cluster is None:
        return "--processes needs --cluster URL (the Redis the processes share)"
    for flag, given in (("--json", args.json), ("--dashboard", args.dashboard is not None),
                        ("--audit", args.audit is not None)):
        if given:
            return (f"{flag} is not available with --cluster (each node writes its own "
                    "audit trail, in a new temporary directory)" if flag == "--audit"
                    else f"{flag} is not available with --cluster")
    return None


def _reach(url: str) -> str | None:
    """Why Redis at ``url`` cannot serve the fleet, in one line, or None if it can."""
    try:
        import redis

        from recovery.cluster import ClusterConfig
    except ImportError:
        return "--cluster needs redis-py: pip install 'recovery[redis]'"
    try:
        ClusterConfig(url)
        client = redis.Redis.from_url(url, socket_connect_timeout=CONNECT_TIMEOUT,
                                      socket_timeout=CONNECT_TIMEOUT)
    except (TypeError, ValueError) as exc:
        return f"--cluster: {exc}"
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        return f"--cluster: cannot reach Redis at {_shown(url)}: {exc}"
    finally:
        client.close()
    return None


# -- a node -------------------------------------------------------------------------------


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


def faults_of(node: int, processes: int, faults: list[demo._Fault]) -> list[demo._Fault]:
    """The scripted faults that hit this node's plugins (see ``FAULT_NODES``)."""
    return [fault for slot, fault in zip(FAULT_NODES, faults, strict=True)
            if slot % processes + 1 == node]


class _Line:
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


class _Relay(demo._Reporter):
    """A node's reporter: everything it would show goes to the parent instead."""

    def __init__(self, outbox: _Line, node: int) -> None:
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
        by_cluster = threading.current_thread().name.startswith(_CLUSTER_THREADS)
        kind = opening(old.value, new.value, by_cluster)
        if kind is not None:
            with self._lock:
                (self.trips if kind == "trip" else self.followed)[breaker.name] += 1
        self._outbox.put(("move", self._node, breaker.name, old.value, new.value, by_cluster,
                          time.monotonic()))


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


def run_node(spec: NodeSpec, conn: Any) -> None:
    """A node's process: the demo's scenario, sharing its breakers, until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent hears Ctrl-C and tells us
    outbox = _Line(conn)
    try:
        _node(spec, outbox)
    except BaseException as exc:  # the parent shows it; a traceback would tear the view
        where = traceback.extract_tb(exc.__traceback__)[-1:]
        at = f" at {where[0].filename}:{where[0].lineno}" if where else ""
        outbox.put(("failed", spec.node, f"{type(exc).__name__}: {exc}{at}"))
        raise SystemExit(1) from None


def _node(spec: NodeSpec, outbox: _Line) -> None:
    from recovery.cluster import Cluster

    before = set(threading.enumerate())
    seed = spec.seed + 1000 * spec.node
    audit = JsonlAuditLogger(spec.audit_path)
    relay = _Relay(outbox, spec.node)
    tally = demo._Tally(PLUGINS)
    cluster = Cluster(spec.url, namespace=spec.namespace, node_id=node_id(spec.node))
    scene = demo._scenario(seed, spec.duration, demo._Announcing(audit, tally, relay),
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
            threading.Thread(target=demo._work, name=f"demo-worker-{index}", args=(
                scene.rm, scene.calls, tally, workers_stop,
                random.Random(seed * 1000 + index)))
            for index in range(spec.workers)
        ]
        for thread in pool:
            thread.start()
        while outbox.word(demo.TICK) is None:  # "stop", or the parent is gone
            elapsed = time.monotonic() - started
            while faults and faults[0].at <= elapsed:
                fault = faults.pop(0)
                relay.event(fault.plugin, fault.description)
                fault.apply()
            outbox.put(("tick", spec.node, _rows(scene.rm.status(), tally.snapshot())))
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
    cluster_view = status.cluster or {}
    left = demo._join_leftovers(before, demo.THREAD_GRACE)
    outbox.put(("done", spec.node, {
        "rows": _rows(status, counts),
        "actions": {name: sorted(t.actions.items()) for name, t in counts.items()},
        "trips": dict(relay.trips),
        "followed": dict(relay.followed),
        "cluster": {key: cluster_view[key] for key in
                    ("events_published", "events_received", "events_stale",
                     "events_dropped")},
        "threads_left": len(left),
    }))


def _rows(status: RecoveryStatus, counts: dict[str, demo._PluginTally]) -> dict[str, Any]:
    """Per plugin: breaker state, the calls by outcome, and what is wrong now."""
    return {
        name: {"state": plugin.circuit_breaker.state.value,
               **{outcome: getattr(counts[name], outcome) for outcome in demo.OUTCOMES},
               "flags": demo._flags(plugin.recovery)}
        for name, plugin in status.plugins.items()
    }


# -- the parent's view --------------------------------------------------------------------


@attrs.define
class _Trip:
    """A node's trip of one plugin, and the nodes that have its breaker open since."""

    by: list[int]
    at: float
    open: set[int]
    last: float


class FleetView:
    """What the nodes sent: the latest counts and states, and the trips being followed."""

    def __init__(self, processes: int, report: demo._Reporter) -> None:
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
                  f"{'OPEN ON':>7} {'CALLS':>6} {'OK':>6} {'FAILED':>6} {'REJECTED':>8} "
                  f"{'FALLBACK':>8} {'TRIPS':>5} {'FOLLOWED':>8}  FLAGS")
        lines = [header]
        for name in PLUGINS:
            states = [self._state(name, n) for n in range(1, self.processes + 1)]
            fleet = states[0] if len(set(states)) == 1 else "mixed"
            glyphs = "".join(GLYPHS.get(s, "?") for s in states)
            opened = f"{states.count('open')}/{self.processes}"
            sums = {o: sum(rows[name][o] for rows in self.rows.values())
                    for o in demo.OUTCOMES}
            flags = "; ".join(f"node {n}: {rows[name]['flags']}"
                              for n, rows in sorted(self.rows.items()) if rows[name]["flags"])
            lines.append(
                f"{name:<10} {fleet:<9} {glyphs:<{max(self.processes, 5)}} {opened:>7} "
                f"{sum(sums.values()):>6} {sums['ok']:>6} {sums['failed']:>6} "
                f"{sums['rejected']:>8} {sums['fallback']:>8} {self.trips[name]:>5} "
                f"{self.followed[name]:>8}  {flags or '-'}"
            )
        return [*lines, "", *_LIVE_LEGEND]

    def _state(self, name: str, node: int) -> str:
        rows = self.rows.get(node)
        return str(rows[name]["state"]) if rows else self.states[name][node]


_LIVE_LEGEND = [
    "NODES: one letter per process, node 1 first: . closed  O open  H half-open  R repairing",
    "CALLS = OK + FAILED + REJECTED + FALLBACK (what each caller got), summed over the nodes",
    "TRIPS: opened by the node's own calls; FOLLOWED: closed, opened by the cluster after "
    "another node's trip",
]


# -- the parent ---------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    problem = _usage_error(args) or _reach(args.cluster)
    if problem is not None:
        demo._write(sys.stderr, f"recovery demo: error: {problem}\n")
        return demo.EXIT_USAGE
    processes = args.processes if args.processes is not None else DEFAULT_PROCESSES
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    namespace = f"recovery-demo-{uuid.uuid4().hex[:8]}"
    audit_dir = tempfile.mkdtemp(prefix="recovery-demo-")
    out = sys.stdout
    nodes = _Nodes([
        NodeSpec(n, processes, args.cluster, namespace, seed, args.duration, args.workers,
                 os.path.join(audit_dir, f"audit-node{n}.jsonl"))
        for n in range(1, processes + 1)
    ])
    ctrl_c = demo._CtrlC(
        "recovery demo: Ctrl-C twice: quit at once, the nodes killed, without the summary "
        f"(the audit trails so far are in {audit_dir})\n",
        show_cursor=False, exit=nodes.kill_and_exit,
    )
    before = set(threading.enumerate())
    with demo._handling_sigint(ctrl_c):
        nodes.start()
        try:
            return _show(args, out, processes, seed, namespace, audit_dir, nodes, ctrl_c,
                         before)
        finally:
            nodes.tell("stop")
            nodes.join(DONE_TIMEOUT)
            _drop_namespace(args.cluster, namespace)


class _Nodes:
    """The node processes, and the parent's ends of their pipes."""

    def __init__(self, specs: list[NodeSpec]) -> None:
        context = multiprocessing.get_context("spawn")  # no fork of a threaded parent
        self._ends: dict[int, Any] = {}
        self._child_ends: list[Any] = []
        self.processes: list[Any] = []
        self._pending: collections.deque[tuple[Any, ...]] = collections.deque()
        for spec in specs:
            mine, theirs = context.Pipe()
            self._ends[spec.node] = mine
            self._child_ends.append(theirs)
            self.processes.append(context.Process(
                target=run_node, name=f"recovery-demo-node{spec.node}", args=(spec, theirs),
                daemon=True))

    def start(self) -> None:
        for process in self.processes:
            process.start()
        for end in self._child_ends:
            end.close()  # so that a node's end of the pipe is closed when it dies

    def tell(self, word: str) -> None:
        for end in self._ends.values():
            with contextlib.suppress(OSError):
                end.send(word)

    def get(self, deadline: float) -> tuple[Any, ...] | None:
        """The next message of any node before ``deadline``, or None."""
        while not self._pending:
            live = [end for end in self._ends.values() if not end.closed]
            left = max(deadline - time.monotonic(), 0.0)
            if not live:
                time.sleep(left)  # every node is gone; the caller's loop ends it
                return None
            ready = multiprocessing.connection.wait(live, timeout=left)
            if not ready:
                return None
            for end in live:
                if end not in ready:
                    continue
                try:
                    self._pending.append(end.recv())
                except (EOFError, OSError):
                    end.close()
        return self._pending.popleft()

    def join(self, timeout: float) -> list[Any]:
        """Join every node (killed after ``timeout``); the ones still alive after that."""
        deadline = time.monotonic() + timeout
        for process in self.processes:
            process.join(max(deadline - time.monotonic(), 0.0))
        for process in self.processes:
            if process.is_alive():
                process.kill()
                process.join(timeout)
        return [process for process in self.processes if process.is_alive()]

    def kill_and_exit(self, status: int) -> None:
        """The second Ctrl-C: kill our nodes (by pid) and quit, waiting for nothing."""
        for process in self.processes:
            if process.pid is not None:
                with contextlib.suppress(OSError):
                    os.kill(process.pid, signal.SIGKILL)
        os._exit(status)


def _show(
    args: argparse.Namespace, out: TextIO, processes: int, seed: int, namespace: str,
    audit_dir: str, nodes: _Nodes, ctrl_c: demo._CtrlC, before: set[threading.Thread],
) -> int:
    """Start the nodes together, show the run, stop them, and sum up; the exit status."""
    failures: list[str] = []
    pids: dict[int, int] = {}
    deadline = time.monotonic() + READY_TIMEOUT
    while len(pids) < processes and not failures and not ctrl_c.presses:
        message = nodes.get(deadline)
        if message is None:
            failures.append(f"the nodes did not start within {READY_TIMEOUT:g} s")
        elif message[0] == "ready":
            pids[message[1]] = message[2]
        elif message[0] == "failed":
            failures.append(f"node {message[1]}: {message[2]}")
    if failures or ctrl_c.presses:
        for failure in failures:
            demo._write(sys.stderr, f"recovery demo: error: {failure}\n")
        return 1 if failures else 0

    live = out.isatty() and os.environ.get("TERM") != "dumb"
    started = time.monotonic()
    wall_started = time.time()
    report: demo._Reporter = (demo._LiveTable(out, started, args.duration) if live
                              else demo._EventLines(out, started))
    ctrl_c._show_cursor = live
    view = FleetView(processes, report)
    demo._write(out, "" if live else (
        f"recovery demo: {len(PLUGINS)} plugins in {processes} processes (pids "
        f"{', '.join(str(pids[n]) for n in sorted(pids))}), {args.workers} workers each, "
        f"{args.duration:g}s, seed {seed}; sharing the breakers through "
        f"{_shown(args.cluster)} as {namespace}\n"))
    nodes.tell("go")
    end = started + args.duration
    done: dict[int, dict[str, Any]] = {}
    while not ctrl_c.presses and not failures:
        now = time.monotonic()
        if now >= end:
            break
        _drain(nodes, view, done, failures, min(now + demo.TICK, end))
        view.expire(time.monotonic())
        report.refresh(view.table())
    interrupted = ctrl_c.presses > 0
    if interrupted:
        report.stopping()
        report.refresh(view.table())
    nodes.tell("stop")
    deadline = time.monotonic() + DONE_TIMEOUT
    while len(done) + len(failures) < processes and time.monotonic() < deadline:
        _drain(nodes, view, done, failures, deadline, until_done=processes)
    view.expire(float("inf"))
    left_processes = nodes.join(DONE_TIMEOUT)
    ended = time.monotonic()
    report.close(view.table())
    for failure in failures:
        demo._write(sys.stderr, f"recovery demo: error: {failure}\n")
    summary = _summary(done, processes, ended - started, interrupted, wall_started,
                       args.cluster, namespace)
    records = sum(sum(1 for _ in JsonlAuditLogger.read(os.path.join(audit_dir, name)))
                  for name in sorted(os.listdir(audit_dir)))
    summary += [
        "",
        f"audit trails: {audit_dir}: {demo._records(records)} from {processes} nodes "
        "(one per strategy run above)",
        f"processes left: {len(left_processes)}",
    ]
    threads = demo._join_leftovers(before, demo.THREAD_GRACE)
    node_threads = sum(report["threads_left"] for report in done.values())
    summary.append(f"threads left: {len(threads) + node_threads}"
                   + "".join(f" {t.name!r}" for t in threads))
    demo._write(out, "\n".join(summary) + "\n")
    return 1 if failures or len(done) < processes else 0


def _drain(
    nodes: _Nodes, view: FleetView, done: dict[int, dict[str, Any]], failures: list[str],
    until: float, until_done: int | None = None,
) -> None:
    """Take the nodes' messages until ``until`` (or every node is done)."""
    while until_done is None or len(done) + len(failures) < until_done:
        message = nodes.get(until)
        if message is None:
            return
        if message[0] == "done":
            done[message[1]] = message[2]
            view.rows[message[1]] = message[2]["rows"]
        elif message[0] == "failed":
            failures.append(f"node {message[1]}: {message[2]}")
        else:
            view.take(message, time.monotonic())


def _summary(
    done: dict[int, dict[str, Any]], processes: int, elapsed: float, interrupted: bool,
    wall_started: float, url: str, namespace: str,
) -> list[str]:
    """The run's numbers, from the nodes' own final counts, added up two ways."""
    ended = "interrupted" if interrupted else "finished"
    span = " to ".join(time.strftime("%H:%M:%S", time.localtime(wall))
                       for wall in (wall_started, wall_started + elapsed))
    columns = (f"{'CALLS':>7} {'OK':>7} {'FAILED':>7} {'REJECTED':>8} {'FALLBACK':>8} "
               f"{'TRIPS':>5} {'FOLLOWED':>8}")

    def cells(counts: collections.Counter[str]) -> str:
        return (f"{counts['calls']:>7} {counts['ok']:>7} {counts['failed']:>7} "
                f"{counts['rejected']:>8} {counts['fallback']:>8} {counts['trips']:>5} "
                f"{counts['followed']:>8}")

    by_plugin = {name: collections.Counter[str]() for name in PLUGINS}
    by_node = {node: collections.Counter[str]() for node in sorted(done)}
    actions = {name: collections.Counter[tuple[str, bool]]() for name in PLUGINS}
    for node, report in sorted(done.items()):
        for name in PLUGINS:
            row = report["rows"][name]
            counts = collections.Counter({o: row[o] for o in demo.OUTCOMES})
            counts["calls"] = sum(row[o] for o in demo.OUTCOMES)
            counts["trips"] = report["trips"].get(name, 0)
            counts["followed"] = report["followed"].get(name, 0)
            by_plugin[name].update(counts)
            by_node[node].update(counts)
            for (action, success), count in report["actions"][name]:
                actions[name][action, success] += count
    total = sum(by_plugin.values(), collections.Counter[str]())
    lines = [
        f"{ended} after {elapsed:.3f}s ({span}), {processes} processes",
        f"sharing the plugins' breakers through {_shown(url)} as {namespace}",
        "",
        f"{'PLUGIN':<11} {columns}  RECOVERY ACTIONS (all nodes)",
    ]
    for name, counts in by_plugin.items():
        done_actions = ", ".join(f"{action} {'ok' if ok else 'failed'} x{count}"
                                 for (action, ok), count in sorted(actions[name].items()))
        lines.append(f"{name:<11} {cells(counts)}  {done_actions or '-'}")
    lines += [f"{'total':<11} {cells(total)}", "",
              f"{'NODE':<11} {columns}  CLUSTER EVENTS"]
    for node, counts in by_node.items():
        cluster = done[node]["cluster"]
        lines.append(
            f"{'node ' + str(node):<11} {cells(counts)}  published "
            f"{cluster['events_published']}, received {cluster['events_received']}"
            + (f", stale {cluster['events_stale']}" if cluster["events_stale"] else "")
            + (f", dropped {cluster['events_dropped']}" if cluster["events_dropped"] else "")
        )
    node_total = sum(by_node.values(), collections.Counter[str]())
    lines.append(f"{'total':<11} {cells(node_total)}")
    missing = processes - len(done)
    published = sum(report["cluster"]["events_published"] for report in done.values())
    received = sum(report["cluster"]["events_received"] for report in done.values())
    reach = (f": each reached the {processes - 1} other nodes" if
             received == published * (processes - 1) else "")
    lines += [
        "",
        "Each call is counted once, by the node that made it: CALLS = OK + FAILED + "
        "REJECTED + FALLBACK",
        "in every row; a plugin's row is the sum of its rows on the nodes, and both tables "
        "add up to",
        "the same total: " + " + ".join(str(c["calls"]) for c in by_node.values())
        + f" = {node_total['calls']} calls"
        + (f" ({missing} node(s) sent no final counts)" if missing else "") + ".",
        "TRIPS: a breaker opened by its own node (its calls, a failed trial); FOLLOWED: a "
        "closed breaker",
        "opened by the cluster because another node tripped: a trip from closed is "
        "followed by the",
        "nodes whose breaker was still closed (N-1 at most).",
        f"cluster events: {published} published, {received} received{reach}.",
    ]
    return lines


def _drop_namespace(url: str, namespace: str) -> None:
    """Delete the run's records, so that the demo leaves nothing behind in Redis."""
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=CONNECT_TIMEOUT,
                                  socket_timeout=CONNECT_TIMEOUT)
    try:
        keys = list(client.scan_iter(match=f"{namespace}:*", count=1000))
        if keys:
            client.delete(*keys)
    except (redis.RedisError, OSError):
        pass  # Redis went away meanwhile: the records expire or stay, harmless
    finally:
        client.close()

