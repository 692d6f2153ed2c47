"""Watch a recovery manager keep a simulated service up for a few seconds (no setup).

Five simulated plugins (recovery.testing.FlakyPlugin) run behind a RecoveryManager
with health checking, called by a thread pool of workers through
execute_with_recovery:

  steady       always fine: the control group
  flaky        starts failing every call; its breaker trips and it is restarted
               (later it needs two restarts in a row)
  slow         turns slow, so its callers time out; it is degraded and served
               from its fallback until it is fast again
  hung-check   its health check hangs; the check times out, and the plugin is
               restarted (which ends the hang)
  crashy       crashes in initialize at boot; restarted with back-off until it
               comes up

On a terminal a table refreshes in place; otherwise (or piped) one line is printed
per breaker state change, recovery action, alert and scripted fault. It ends by
itself after --duration seconds (Ctrl-C ends it early, just as cleanly: exit
status 0 either way), then prints a summary, the path of the JSONL audit trail
(JsonlAuditLogger.read reads it), and "threads left: 0" once every thread it
started has been joined. --json shows no table or event lines, prints the final
get_recovery_status() as JSON on stdout, and the summary on stderr.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import contextlib
import json
import logging
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

import attrs

from recovery.alerts import Alert
from recovery.audit import JsonlAuditLogger
from recovery.breaker import CircuitBreaker
from recovery.config import CircuitBreakerConfig
from recovery.errors import CircuitOpenError
from recovery.failures import classify
from recovery.manager import RecoveryConfig, RecoveryManager
from recovery.plugins import PluginRegistry
from recovery.state import CircuitBreakerState
from recovery.testing.plugins import FlakyPlugin

PLUGINS = ("steady", "flaky", "slow", "hung-check", "crashy")

SLOW_LATENCY = 0.2
"""Seconds a call to "slow" takes once it has turned slow..."""
CALL_DEADLINE = 0.1
"""...which is more than its callers wait: they give up with TimeoutError."""
BOOT_CRASHES = 3
"""initialize calls of "crashy" that crash: at boot, then in the first two restarts."""
WORKER_PAUSE = 0.01
"""Seconds each worker rests between calls, so the demo does not burn a CPU."""
TICK = 0.1
"""Seconds between refreshes of the table (and checks of the scripted faults)."""
THREAD_GRACE = 2.0
"""Seconds to wait at the end for threads that are finishing to go away."""


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--duration", type=_positive_float, default=15.0, metavar="SECONDS",
                        help="how long the demo runs (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=None,
                        help="seed of the random choices (which plugin each worker calls "
                             "next; default: random, and the seed used is printed)")
    parser.add_argument("--workers", type=_positive_int, default=8,
                        help="threads calling the plugins (default: %(default)s)")
    parser.add_argument("--audit", metavar="PATH", default=None,
                        help="JSONL file for the audit trail (default: a new temporary "
                             "directory); appended to if it exists")
    parser.add_argument("--json", action="store_true",
                        help="print the final get_recovery_status() as JSON on stdout")
    parser.add_argument("--dashboard", type=_port, nargs="?", const=0, default=None,
                        metavar="PORT",
                        help="serve the live dashboard (recovery.dashboard) on 127.0.0.1 "
                             "while the demo runs, and print its URL (no PORT: a free one)")


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port within 0..65535, got {text!r}")
    return value


def _serve_dashboard(rm: RecoveryManager, port: int | None, notes: TextIO) -> Any:
    """The dashboard of the demo's manager (stopped by the caller), or None without --dashboard."""
    if port is None:
        return None
    from recovery.dashboard import serve

    board = serve(rm, port=port)
    _write(notes, f"dashboard: {board.url}\n")
    return board


# -- the scenario ---------------------------------------------------------------------------


class _FallbackAnswer(str):
    """What the fallback of "slow" answers: a str, told apart from the plugin's own."""


@attrs.frozen
class _Fault:
    """A scripted change of one plugin at ``at`` seconds into the run."""

    at: float
    plugin: str
    description: str
    apply: Callable[[], object]


def _timeline(plugins: dict[str, FlakyPlugin], duration: float) -> list[_Fault]:
    """When each plugin goes bad, as fractions of the run, so a short run shows it all."""

    def slow_down() -> None:
        plugins["slow"].latency = SLOW_LATENCY

    def speed_up() -> None:
        plugins["slow"].latency = 0.0

    faults = [
        _Fault(0.10, "flaky", "fault: every call fails until it is restarted",
               lambda: plugins["flaky"].fail_until_restarted(1)),
        _Fault(0.15, "hung-check", "fault: health checks hang",
               plugins["hung-check"].hang_health_checks),
        _Fault(0.20, "slow", f"fault: calls take {SLOW_LATENCY * 1e3:.0f} ms "
               f"(callers wait {CALL_DEADLINE * 1e3:.0f} ms)", slow_down),
        _Fault(0.55, "flaky", "fault: every call fails until it is restarted twice",
               lambda: plugins["flaky"].fail_until_restarted(2)),
        _Fault(0.70, "slow", "fault over: calls are fast again", speed_up),
    ]
    return [attrs.evolve(fault, at=fault.at * duration) for fault in faults]


def _recovery_config(duration: float) -> RecoveryConfig:
    """Short periods, so that trips, checks and recoveries all happen within seconds."""
    breaker = CircuitBreakerConfig(
        failure_threshold=5,
        success_threshold=3,
        timeout=1.0,
        max_retry_interval=4.0,
        sliding_window_size=20,
        minimum_requests=5,
        max_health_checks=2,
        max_half_open_wait=2.0,
    )
    return RecoveryConfig(
        default_circuit_breaker=breaker,
        health_check_interval=0.5,
        health_check_timeout=0.4,
        max_recovery_attempts=BOOT_CRASHES + 1,
        recovery_backoff_base=0.25,
        recovery_workers=3,
        max_episodes_per_period=10,
        episode_period=30.0,
        strategy_timeout=5.0,
        # A slow dependency is not cured by a restart: serve the fallback instead.
        # A plugin that cannot start needs a restart, whatever the failure's type.
        plugin_recovery_strategies={"slow": "degrade", "crashy": "restart"},
        recovery_strategy_configs={"degrade": {"hold": max(0.5, duration / 5)}},
    )


def _with_deadline(call: Callable[[], str], deadline: float) -> Callable[[], str]:
    """The caller's side of a timeout: an answer later than ``deadline`` is a TimeoutError."""

    def timed() -> str:
        started = time.monotonic()
        answer = call()
        elapsed = time.monotonic() - started
        if elapsed > deadline:
            raise TimeoutError(
                f"answered after {elapsed * 1e3:.0f} ms, deadline {deadline * 1e3:.0f} ms"
            )
        return answer

    return timed


# -- what happened ---------------------------------------------------------------------------


@attrs.define
class _PluginTally:
    calls: int = 0
    ok: int = 0
    failed: int = 0
    rejected: int = 0
    fallbacks: int = 0
    episodes: collections.Counter[str] = attrs.field(factory=collections.Counter)
    actions: collections.Counter[tuple[str, bool]] = attrs.field(factory=collections.Counter)


class _Tally:
    """Counts, per plugin, what the workers saw and how the recovery episodes ended."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self._lock = threading.Lock()
        self._plugins = {name: _PluginTally() for name in names}
        self.stopping = False  # episodes that end from now on were interrupted

    def call(self, name: str, outcome: str) -> None:
        with self._lock:
            tally = self._plugins[name]
            tally.calls += 1
            setattr(tally, outcome, getattr(tally, outcome) + 1)

    def action(self, name: str, action: str, success: bool) -> None:
        with self._lock:
            self._plugins[name].actions[action, success] += 1

    def on_transition(
        self, breaker: CircuitBreaker, old: CircuitBreakerState, new: CircuitBreakerState
    ) -> None:
        """An episode holds the breaker REPAIRING; how it leaves REPAIRING is its outcome."""
        if old is not CircuitBreakerState.REPAIRING:
            return
        if self.stopping:
            outcome = "interrupted"
        elif new is CircuitBreakerState.OPEN:
            outcome = "unrecovered"
        else:
            outcome = "recovered"
        with self._lock:
            self._plugins[breaker.name].episodes[outcome] += 1

    def snapshot(self) -> dict[str, _PluginTally]:
        with self._lock:
            return {
                name: attrs.evolve(
                    tally,
                    episodes=collections.Counter(tally.episodes),
                    actions=collections.Counter(tally.actions),
                )
                for name, tally in self._plugins.items()
            }


class _Announcing:
    """An audit logger that writes through to the file, and tells the reporter."""

    def __init__(self, inner: JsonlAuditLogger, tally: _Tally, report: _Reporter) -> None:
        self._inner = inner
        self._tally = tally
        self._report = report

    def log_failure_recovery(
        self, plugin_name: str, failure_type: str, recovery_action: str, success: bool
    ) -> None:
        self._inner.log_failure_recovery(plugin_name, failure_type, recovery_action, success)
        self._tally.action(plugin_name, recovery_action, success)
        failure = getattr(failure_type, "value", failure_type)
        verdict = "succeeded" if success else "FAILED"
        self._report.event(plugin_name, f"recovery: {recovery_action} after {failure} {verdict}")


# -- output -----------------------------------------------------------------------------------


class _Reporter:
    """Where the run is shown: nowhere (--json), one line per event, or a live table."""

    def __init__(self, out: TextIO, started: float) -> None:
        self._out = out
        self._started = started
        self._lock = threading.Lock()
        self._gone = False

    def _write(self, text: str) -> None:
        """Write now; once the reader has gone (``| head``), the rest of the run is silent."""
        if not self._gone:
            self._gone = not _write(self._out, text)

    def _line(self, plugin: str, text: str) -> str:
        return f"{time.monotonic() - self._started:7.2f}s  {plugin:<11} {text}"

    def event(self, plugin: str, text: str) -> None:
        """Called from any thread: a state change, a recovery action, an alert, a fault."""

    def refresh(self, status: dict[str, Any], tally: dict[str, _PluginTally]) -> None:
        """Called from the main thread every tick."""

    def close(self) -> None:
        """The run is over; leave the terminal ready for the summary."""

    def transition(
        self, breaker: CircuitBreaker, old: CircuitBreakerState, new: CircuitBreakerState
    ) -> None:
        self.event(breaker.name, f"breaker: {old.value} -> {new.value}")

    def alert(self, alert: Alert) -> None:
        self.event(alert.plugin_name, f"alert {alert.kind.value}: {alert.message}")


class _EventLines(_Reporter):
    def event(self, plugin: str, text: str) -> None:
        with self._lock:
            self._write(self._line(plugin, text) + "\n")


class _LiveTable(_Reporter):
    """The status table, redrawn in place with plain ANSI escapes, and the latest events."""

    RECENT = 6

    def __init__(self, out: TextIO, started: float, duration: float) -> None:
        super().__init__(out, started)
        self._duration = duration
        self._recent: collections.deque[str] = collections.deque(maxlen=self.RECENT)
        self._drawn = 0
        self._write("\x1b[?25l")  # hide the cursor while redrawing

    def event(self, plugin: str, text: str) -> None:
        with self._lock:
            self._recent.append(self._line(plugin, text))

    def refresh(self, status: dict[str, Any], tally: dict[str, _PluginTally]) -> None:
        elapsed = time.monotonic() - self._started
        lines = [
            f"recovery demo  {elapsed:5.1f}s of {self._duration:g}s   (Ctrl-C ends it early)",
            "",
            *_table(status, tally),
            "",
            "recent events:",
        ]
        with self._lock:
            lines.extend(self._recent)
        width = max(shutil.get_terminal_size().columns - 1, 20)
        text = f"\x1b[{self._drawn}A\r" if self._drawn else ""
        text += "".join(f"{line[:width]}\x1b[K\n" for line in lines) + "\x1b[J"
        self._write(text)
        self._drawn = len(lines)

    def close(self) -> None:
        self._write("\x1b[?25h\n")


def _write(stream: TextIO, text: str) -> bool:
    """Write and flush; False if the reader has gone (a closed pipe), which is no error.

    The stream's descriptor is then pointed at the null device, so that the flush at
    exit does not complain about the closed pipe either.
    """
    try:
        stream.write(text)
        stream.flush()
    except BrokenPipeError:
        with contextlib.suppress(OSError, ValueError):  # no descriptor (a StringIO)
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, stream.fileno())
            os.close(null)
        return False
    return True


def _flags(recovery: dict[str, Any]) -> str:
    return ",".join(flag for flag in ("degraded", "failed") if recovery[flag])


def _table(status: dict[str, Any], tally: dict[str, _PluginTally]) -> list[str]:
    lines = [
        f"{'PLUGIN':<10} {'STATE':<9} {'REQUESTS':>8} {'FAIL%':>5} {'REJECTED':>8} "
        f"{'FALLBACK':>8}  {'LAST ACTION':<14} FLAGS"
    ]
    for name, plugin in status["plugins"].items():
        breaker, recovery = plugin["circuit_breaker"], plugin["recovery"]
        action = recovery["last_action"] or "-"
        if recovery["last_action"] is not None:
            action += " ok" if recovery["last_action_success"] else " FAILED"
        lines.append(
            f"{name:<10} {breaker['state']:<9} {breaker['total_requests']:>8} "
            f"{breaker['window_failure_rate']:>5.0%} {breaker['total_rejections']:>8} "
            f"{tally[name].fallbacks:>8}  {action:<14} {_flags(recovery)}"
        )
    return lines


def _summary(
    status: dict[str, Any], tally: dict[str, _PluginTally], elapsed: float, interrupted: bool
) -> list[str]:
    ended = "interrupted" if interrupted else "finished"
    lines = [
        f"{ended} after {elapsed:.1f}s",
        "",
        f"{'PLUGIN':<11} {'CALLS':>7} {'OK':>7} {'FAILED':>6} {'REJECTED':>8} {'FALLBACK':>8} "
        f"{'OPEN':>6}  EPISODES",
    ]
    totals = collections.Counter[str]()
    for name, plugin in status["plugins"].items():
        breaker, counts = plugin["circuit_breaker"], tally[name]
        row = {
            "calls": counts.calls,
            "ok": counts.ok,
            "failed": counts.failed,
            "rejected": breaker["total_rejections"],
            "fallbacks": counts.fallbacks,
        }
        totals.update(row)
        episodes = ", ".join(
            f"{count} {outcome}" for outcome, count in sorted(counts.episodes.items())
        ) or "-"
        actions = ", ".join(
            f"{action} {'ok' if success else 'failed'} x{count}"
            for (action, success), count in sorted(counts.actions.items())
        )
        if actions:
            episodes += f" ({actions})"
        state = plugin["recovery"]
        if state["failed"]:
            episodes += f"; marked failed ({state['failed_reason']})"
        lines.append(
            f"{name:<11} {row['calls']:>7} {row['ok']:>7} {row['failed']:>6} "
            f"{row['rejected']:>8} {row['fallbacks']:>8} {breaker['circuit_open_time']:>5.1f}s"
            f"  {episodes}"
        )
    lines.append(
        f"{'total':<11} {totals['calls']:>7} {totals['ok']:>7} {totals['failed']:>6} "
        f"{totals['rejected']:>8} {totals['fallbacks']:>8}"
    )
    lines += [
        "",
        "REJECTED: calls the breaker turned away; FALLBACK: answered by the plugin's fallback",
        "(while degraded, or instead of a rejection); OPEN: seconds the breaker spent open or",
        "repairing; an episode is one recovery, from the failure to the plugin serving again.",
    ]
    return lines


# -- the run ---------------------------------------------------------------------------------


def _work(
    rm: RecoveryManager,
    calls: dict[str, Callable[[], str]],
    tally: _Tally,
    stop: threading.Event,
    rng: random.Random,
) -> None:
    """One worker: call a random plugin through the manager until told to stop."""
    names = list(calls)
    while not stop.is_set():
        name = rng.choice(names)
        try:
            answer = rm.execute_with_recovery(name, calls[name])
        except CircuitOpenError:
            outcome = "rejected"
        except Exception:
            outcome = "failed"
        else:
            outcome = "fallbacks" if isinstance(answer, _FallbackAnswer) else "ok"
        tally.call(name, outcome)
        stop.wait(WORKER_PAUSE)


def _audit_path(path: str | None) -> str:
    if path is not None:
        return path
    return os.path.join(tempfile.mkdtemp(prefix="recovery-demo-"), "audit.jsonl")


def _join_leftovers(before: set[threading.Thread], grace: float) -> list[threading.Thread]:
    """Threads started during the run that are still alive after ``grace`` seconds.

    Abandoned threads (a health check that hung, then was released) exit on their
    own shortly after the end; they get ``grace`` seconds to do so.
    """
    deadline = time.monotonic() + grace
    left = []
    for thread in threading.enumerate():
        if thread in before or thread is threading.current_thread():
            continue
        thread.join(max(deadline - time.monotonic(), 0.0))
        if thread.is_alive():
            left.append(thread)
    return left


def run(args: argparse.Namespace) -> int:
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    duration: float = args.duration
    out = sys.stdout
    notes = sys.stderr if args.json else sys.stdout  # stdout is the JSON document
    before = set(threading.enumerate())
    started = time.monotonic()
    if args.json:
        report = _Reporter(out, started)
    elif out.isatty() and os.environ.get("TERM") != "dumb":
        report = _LiveTable(out, started, duration)
    else:
        report = _EventLines(out, started)
    tally = _Tally(PLUGINS)
    audit_path = _audit_path(args.audit)
    audit = JsonlAuditLogger(audit_path)

    registry = PluginRegistry()
    plugins = {name: FlakyPlugin(name, seed=seed + index) for index, name in enumerate(PLUGINS)}
    plugins["crashy"].crash_next_initializations(BOOT_CRASHES)
    boot_failure = None
    for plugin in plugins.values():
        try:
            registry.register(plugin)
        except Exception as exc:  # crashy, at boot: a failure to hand to the manager
            boot_failure = (plugin.name, classify(exc))
    quiet = logging.Logger("recovery.demo")  # what the manager logs is shown as events
    quiet.addHandler(logging.NullHandler())
    rm = RecoveryManager(registry, _Announcing(audit, tally, report), _recovery_config(duration),
                         quiet)
    for name in PLUGINS:
        fallback = (lambda: _FallbackAnswer("slow (cached answer)")) if name == "slow" else None
        breaker = rm.register_plugin(name, fallback=fallback)
        breaker.add_listener(tally.on_transition)
        breaker.add_listener(report.transition)
    rm.add_alert_handler(report.alert)
    board = _serve_dashboard(rm, args.dashboard, notes)
    calls: dict[str, Callable[[], str]] = {name: plugin.do_work for name, plugin in
                                           plugins.items()}
    calls["slow"] = _with_deadline(plugins["slow"].do_work, CALL_DEADLINE)
    faults = _timeline(plugins, duration)

    _write(notes, f"recovery demo: {len(PLUGINS)} plugins, {args.workers} workers, "
                  f"{duration:g}s, seed {seed}\n")
    stop = threading.Event()
    interrupted = False
    pool = concurrent.futures.ThreadPoolExecutor(args.workers, thread_name_prefix="demo-worker")
    try:
        rm.start()
        if boot_failure is not None:
            name, failure = boot_failure
            report.event(name, f"fault: crashed in initialize at boot ({failure.message})")
            rm.record_failure(name, failure)
        for index in range(args.workers):
            pool.submit(_work, rm, calls, tally, stop, random.Random(seed * 1000 + index))
        deadline = started + duration
        while True:
            elapsed = time.monotonic() - started
            while faults and faults[0].at <= elapsed:
                fault = faults.pop(0)
                report.event(fault.plugin, fault.description)
                fault.apply()
            report.refresh(rm.get_recovery_status(), tally.snapshot())
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            stop.wait(min(TICK, remaining))
    except KeyboardInterrupt:
        interrupted = True
    finally:
        elapsed = time.monotonic() - started
        stop.set()
        pool.shutdown(wait=True)
        tally.stopping = True
        for plugin in plugins.values():
            plugin.release()  # a hung check must not outlive the demo
        if board is not None:
            board.stop()
        rm.stop()
        audit.close()
        report.close()

    status = rm.get_recovery_status()
    if args.json:
        _write(out, json.dumps(status, indent=2) + "\n")
    summary = _summary(status, tally.snapshot(), elapsed, interrupted)
    records = sum(1 for _ in JsonlAuditLogger.read(audit_path))
    summary += ["", f"audit trail: {audit_path} ({records} records)"]
    left = _join_leftovers(before, THREAD_GRACE)
    summary.append(f"threads left: {len(left)}" + "".join(f" {t.name!r}" for t in left))
    _write(notes, "\n".join(summary) + "\n")
    return 0
