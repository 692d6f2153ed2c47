"""The demo in this process: the scenario behind one manager, shown live, then summed up.

Each call is counted once, by what its caller got (``recovery.demo.calls``); the time
in each breaker state comes from the breakers' transition listeners
(``recovery.demo.state_times``). The audit trail is a JSONL file, appended to.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import random
import sys
import tempfile
import threading
import time
from typing import Any, TextIO

from recovery.audit import JsonlAuditLogger
from recovery.demo.calls import CallTally, RecentFailures
from recovery.demo.interrupt import CtrlC, handling_sigint
from recovery.demo.output import join_leftovers, records, usage_error, write
from recovery.demo.reporting_audit import ReportingAuditLogger
from recovery.demo.scenario import PLUGINS, build_scenario, work
from recovery.demo.screen import TICK, EventLines, LiveTable, Reporter
from recovery.demo.state_times import StateTimeRecorder
from recovery.demo.tables import live_table, run_report, summary
from recovery.manager import RecoveryManager


def open_audit(path: str | None) -> tuple[JsonlAuditLogger, int]:
    """The audit logger, and how many records its file held before this run.

    An existing file is appended to, never truncated (it is someone's audit trail);
    the records it held are counted so that the summary counts only this run's.
    """
    if path is None:
        path = os.path.join(tempfile.mkdtemp(prefix="recovery-demo-"), "audit.jsonl")
    audit = JsonlAuditLogger(path)
    try:
        earlier = sum(1 for _ in JsonlAuditLogger.read(path))
    except BaseException:
        audit.close()
        raise
    return audit, earlier


def _serve_dashboard(rm: RecoveryManager, port: int | None, notes: TextIO) -> Any:
    """The dashboard of the demo's manager (stopped by the caller), or None without --dashboard."""
    if port is None:
        return None
    from recovery.dashboard import serve

    board = serve(rm, port=port)
    write(notes, f"dashboard: {board.url}\n")
    return board


def run_local(
    duration: float,
    seed: int,
    workers: int,
    audit_path: str | None,
    as_json: bool,
    dashboard_port: int | None,
) -> int:
    """Run the demo in this process for ``duration`` seconds; the exit status."""
    out = sys.stdout
    notes = sys.stderr if as_json else sys.stdout  # stdout is the JSON document
    try:
        audit, earlier_records = open_audit(audit_path)
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return usage_error(f"--audit: {reason}")
    trail = audit.path

    before = set(threading.enumerate())
    started = time.monotonic()
    wall_started = time.time()
    live = not as_json and out.isatty() and os.environ.get("TERM") != "dumb"
    report: Reporter
    if as_json:
        report = Reporter(sys.stderr, started)
    elif live:
        report = LiveTable(out, started, duration)
    else:
        report = EventLines(out, started)
    tally = CallTally(PLUGINS)
    state_times = StateTimeRecorder(PLUGINS, started)
    recent = RecentFailures()

    scene = build_scenario(seed, duration, ReportingAuditLogger(audit, tally, report),
                           (state_times.on_transition, report.transition), report)
    rm, plugins, calls, faults = scene.rm, scene.plugins, scene.calls, scene.faults
    try:
        board = _serve_dashboard(rm, dashboard_port, notes)
    except OSError as exc:
        audit.close()
        return usage_error(f"--dashboard: {exc.strerror or exc}")

    def table() -> list[str]:
        counts = tally.snapshot()
        lines = live_table(rm.status(), counts, state_times.snapshot(time.monotonic()),
                           recent.update(time.monotonic(), counts))
        # In the frame too: the line printed before it scrolls away on a short terminal.
        return lines if board is None else [f"dashboard: {board.url}", "", *lines]

    ctrl_c = CtrlC(
        f"recovery demo: Ctrl-C twice: quit at once, without the summary "
        f"(the audit trail so far is in {trail})\n",
        show_cursor=live,
    )
    with handling_sigint(ctrl_c):
        write(notes, f"recovery demo: {len(PLUGINS)} plugins, {workers} workers, "
                     f"{duration:g}s, seed {seed}\n")
        stop = threading.Event()
        pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="demo-worker")
        try:
            scene.start(report)
            for index in range(workers):
                pool.submit(work, rm, calls, tally, stop, random.Random(seed * 1000 + index))
            deadline = started + duration
            while not ctrl_c.presses:
                elapsed = time.monotonic() - started
                while faults and faults[0].at <= elapsed:
                    fault = faults.pop(0)
                    report.event(fault.plugin, fault.description)
                    fault.apply()
                report.refresh(table())
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                time.sleep(min(TICK, remaining))  # a Ctrl-C is seen at the next tick
            interrupted = ctrl_c.presses > 0
            if interrupted:
                report.stopping()
                report.refresh(table())
        finally:
            stop.set()
            pool.shutdown(wait=True)
            for plugin in plugins.values():
                plugin.release()  # a hung check must not outlive the demo
            if board is not None:
                board.stop()
            rm.stop()
            audit.close()

        # Every count is final now: the workers and the manager have stopped.
        ended = time.monotonic()
        elapsed = ended - started
        status = rm.status()
        counts = tally.snapshot()
        states = state_times.snapshot(ended)
        report.close(live_table(status, counts, states, recent.update(ended, counts)))
        this_run = sum(1 for _ in JsonlAuditLogger.read(trail)) - earlier_records
        lines = summary(status, counts, states, elapsed, interrupted, wall_started)
        lines += [
            "",
            f"audit trail: {trail}: {records(this_run)} from this run"
            + (f", after {records(earlier_records)} of earlier runs" if earlier_records else ""),
        ]
        left = join_leftovers(before)
        lines.append(f"threads left: {len(left)}" + "".join(f" {t.name!r}" for t in left))
        if as_json:
            audit_view = {"path": trail, "records": this_run, "earlier_records": earlier_records}
            document = {
                "run": run_report(seed, duration, elapsed, interrupted, status, counts,
                                  states, audit_view, len(left)),
                "status": status.to_dict(),
            }
            write(out, json.dumps(document, indent=2) + "\n")
        write(notes, "\n".join(lines) + "\n")
    return 0
