"""The demo as a fleet: ``python -m recovery demo --cluster URL --processes N``.

Each of N spawned processes (a *node*, ``recovery.demo.fleet_node``) runs the demo's
whole scenario (the five plugins behind its own RecoveryManager, its own workers), and
every manager shares its plugins' breakers through one ``recovery.cluster.Cluster`` on
a fresh namespace, so that two runs never mix. Each scripted fault hits one node's
instance of its plugin (a bad connection in one process): that node trips, and the
live view shows the others follow. This process only shows the run: the nodes send it
their events, breaker moves and counts over a pipe each.

Ctrl-C is heard here only (the nodes ignore SIGINT): the first tells every node
to stop, waits for their final counts and joins them; the second kills them and
quits at once. The summary adds up the nodes' own final counts.
"""

from __future__ import annotations

import collections
import contextlib
import multiprocessing
import multiprocessing.connection
import os
import shlex
import signal
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from typing import Any

from recovery.audit import JsonlAuditLogger
from recovery.demo.fleet_node import READY_TIMEOUT, NodeSpec, run_node
from recovery.demo.fleet_summary import fleet_summary, shown
from recovery.demo.fleet_view import FleetView
from recovery.demo.interrupt import CtrlC, handling_sigint
from recovery.demo.output import join_leftovers, records, usage_error, write
from recovery.demo.scenario import PLUGINS
from recovery.demo.screen import TICK, EventLines, LiveTable, Reporter

DONE_TIMEOUT = 30.0
"""Seconds the nodes get, once told to stop, to send their final counts and exit."""
CONNECT_TIMEOUT = 2.0
"""Seconds the first look at Redis may take before --cluster is refused."""
PASSWORD_VARIABLE = "REDIS_PASSWORD"
"""Where the dashboard command takes the password of --cluster's URL from, so that the
password is never shown."""


def dashboard_command(url: str, namespace: str) -> list[str]:
    """How to watch this run on the fleet dashboard: lines to show, the command ready to
    paste into another terminal.

    The dashboard reads one namespace, "recovery" unless told; the demo's is new for
    each run, so the command names it. The nodes sign nothing (no --secret-env). A
    password in the URL is not shown: the command reads it from ``PASSWORD_VARIABLE``.
    """
    python = os.path.relpath(sys.executable)
    if python.startswith(os.pardir):
        python = sys.executable
    elif os.sep not in python:
        python = os.curdir + os.sep + python  # not a name the shell looks up on PATH
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        cluster = shlex.quote(url)
    else:  # in double quotes, so that the shell puts the password in
        hidden = "\0"
        host = parts.netloc.rpartition("@")[2]
        bare = urllib.parse.urlunsplit(
            parts._replace(netloc=f"{parts.username or ''}:{hidden}@{host}"))
        quoted = "".join("\\" + c if c in '"$`\\' else c for c in bare)
        cluster = '"' + quoted.replace(hidden, f"${{{PASSWORD_VARIABLE}}}") + '"'
    command = (f"{shlex.quote(python)} -m recovery dashboard --cluster {cluster} "
               f"--namespace {shlex.quote(namespace)}")
    lines = ["to watch the fleet in a browser while the demo runs, paste this into another "
             "terminal:"]
    if parts.password is not None:
        lines.append(f"  export {PASSWORD_VARIABLE}='...'   # the password in --cluster's URL")
    return [*lines, "  " + command]


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
        return f"--cluster: cannot reach Redis at {shown(url)}: {exc}"
    finally:
        client.close()
    return None


def run_fleet(url: str, processes: int, workers: int, duration: float, seed: int) -> int:
    """Run the demo in ``processes`` nodes sharing their breakers through the Redis at
    ``url``; the exit status."""
    problem = _reach(url)
    if problem is not None:
        return usage_error(problem)
    namespace = f"recovery-demo-{uuid.uuid4().hex[:8]}"
    audit_dir = tempfile.mkdtemp(prefix="recovery-demo-")
    nodes = _Nodes([
        NodeSpec(n, processes, url, namespace, seed, duration, workers,
                 os.path.join(audit_dir, f"audit-node{n}.jsonl"))
        for n in range(1, processes + 1)
    ])
    ctrl_c = CtrlC(
        "recovery demo: Ctrl-C twice: quit at once, the nodes killed, without the summary "
        f"(the audit trails so far are in {audit_dir})\n",
        show_cursor=False, exit=nodes.kill_and_exit,
    )
    before = set(threading.enumerate())
    with handling_sigint(ctrl_c):
        nodes.start()
        try:
            return _show(url, workers, duration, seed, namespace, audit_dir, nodes, ctrl_c,
                         before)
        finally:
            nodes.tell("stop")
            nodes.join(DONE_TIMEOUT)
            _drop_namespace(url, namespace)


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
    url: str, workers: int, duration: float, seed: int, namespace: str, audit_dir: str,
    nodes: _Nodes, ctrl_c: CtrlC, before: set[threading.Thread],
) -> int:
    """Start the nodes together, show the run, stop them, and sum up; the exit status."""
    processes = len(nodes.processes)
    out = sys.stdout
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
            write(sys.stderr, f"recovery demo: error: {failure}\n")
        return 1 if failures else 0

    live = out.isatty() and os.environ.get("TERM") != "dumb"
    started = time.monotonic()
    wall_started = time.time()
    watch = dashboard_command(url, namespace)
    report: Reporter = (LiveTable(out, started, duration, subtitle=watch) if live
                        else EventLines(out, started))
    ctrl_c.show_cursor = live
    view = FleetView(processes, report)
    write(out, f"recovery demo: {len(PLUGINS)} plugins in {processes} processes (pids "
               f"{', '.join(str(pids[n]) for n in sorted(pids))}), {workers} workers each, "
               f"{duration:g}s, seed {seed}; sharing the breakers through "
               f"{shown(url)} as {namespace}\n" + ("" if live else "".join(
                   line + "\n" for line in watch)))
    nodes.tell("go")
    end = started + duration
    done: dict[int, dict[str, Any]] = {}
    while not ctrl_c.presses and not failures:
        now = time.monotonic()
        if now >= end:
            break
        _drain(nodes, view, done, failures, min(now + TICK, end))
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
        write(sys.stderr, f"recovery demo: error: {failure}\n")
    summary = fleet_summary(done, processes, ended - started, interrupted, wall_started,
                            url, namespace)
    written = sum(sum(1 for _ in JsonlAuditLogger.read(os.path.join(audit_dir, name)))
                  for name in sorted(os.listdir(audit_dir)))
    summary += [
        "",
        f"audit trails: {audit_dir}: {records(written)} from {processes} nodes",
        f"processes left: {len(left_processes)}",
    ]
    threads = join_leftovers(before)
    node_threads = sum(report["threads_left"] for report in done.values())
    summary.append(f"threads left: {len(threads) + node_threads}"
                   + "".join(f" {t.name!r}" for t in threads))
    write(out, "\n".join(summary) + "\n")
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

