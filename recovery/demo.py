"""Watch a recovery manager keep a simulated service up for a few seconds (no setup).

Five simulated plugins (FlakyPlugin, also in recovery.testing) run behind a RecoveryManager
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
itself after --duration seconds, then prints a summary, the JSONL audit trail's
path (JsonlAuditLogger.read reads it), and "threads left: 0" once every thread it
started has been joined.

Every number can be checked against another. Each call is counted once, by what
its caller got: CALLS = OK + FAILED + REJECTED + FALLBACK, live and in the summary.
Time in each breaker state comes from the breakers' transition listeners, so a
state held for a microsecond still shows, and a plugin's times add up to the run's.

Ctrl-C stops it early, cleanly, with the summary (exit status 0: the run did what
it was asked); a second Ctrl-C quits at once with a one-line note (exit status 130).
--json shows no table or event lines: it prints one JSON document on stdout, the
summary's numbers under "run" and the final get_recovery_status() under "status",
and the summary on stderr.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import contextlib
import json
import logging
import math
import os
import random
import shutil
import signal
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any, TextIO

import attrs

from recovery._flaky import FlakyPlugin
from recovery.alerts import Alert
from recovery.audit import AuditLogger, JsonlAuditLogger, record_attempt
from recovery.breaker import CircuitBreaker
from recovery.config import CircuitBreakerConfig
from recovery.errors import CircuitOpenError
from recovery.failures import FailureInfo, classify
from recovery.manager import RecoveryConfig, RecoveryManager
from recovery.plugins import PluginRegistry
from recovery.state import CircuitBreakerState
from recovery.status import PluginRecovery, RecoveryStatus

PLUGINS = ("steady", "flaky", "slow", "hung-check", "crashy")
STATES = (
    CircuitBreakerState.CLOSED,
    CircuitBreakerState.OPEN,
    CircuitBreakerState.REPAIRING,
    CircuitBreakerState.HALF_OPEN,
)
"""The order in which the summary lists the time in each state."""
OUTCOMES = ("ok", "failed", "rejected", "fallback")
"""What a call got; every call has exactly one, so CALLS is their sum."""

SLOW_LATENCY = 0.2
"""Seconds a call to "slow" takes once it has turned slow..."""
CALL_DEADLINE = 0.1
"""...which is more than its callers wait: they give up with TimeoutError."""
BOOT_CRASHES = 3
"""initialize calls of "crashy" that crash: at boot, then in the first two restarts."""
WORKER_PAUSE = 0.01
"""Seconds each worker rests between calls, so the demo does not burn a CPU."""
TICK = 0.1
"""Seconds between refreshes of the table (and checks of the faults and of Ctrl-C)."""
RECENT_SPAN = 1.0
"""Seconds of calls behind the live table's FAIL%."""
THREAD_GRACE = 2.0
"""Seconds to wait at the end for threads that are finishing to go away."""
MAX_WORKERS = 64
"""More workers than this only measure the machine's scheduler."""
EXIT_INTERRUPTED = 130
"""Exit status after a second Ctrl-C, as a shell reports a process ended by SIGINT."""
EXIT_USAGE = 2
"""Exit status for a bad argument, as argparse's own."""


# -- the command line ---------------------------------------------------------------------


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(
            f"must be a finite number of seconds > 0, got {text!r}"
        )
    return value


def _whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def _worker_count(text: str) -> int:
    value = _whole_number(text)
    if not 1 <= value <= MAX_WORKERS:
        raise argparse.ArgumentTypeError(f"must be from 1 to {MAX_WORKERS}, got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--duration", type=_seconds, default=15.0, metavar="SECONDS",
                        help="how long the demo runs (default: %(default)s)")
    parser.add_argument("--seed", type=_whole_number, default=None,
                        help="seed of the random choices (which plugin each worker calls "
                             "next; default: random, and the seed used is printed)")
    parser.add_argument("--workers", type=_worker_count, default=8,
                        help=f"threads calling the plugins, 1 to {MAX_WORKERS} "
                             "(default: %(default)s)")
    parser.add_argument("--audit", metavar="PATH", default=None,
                        help="JSONL file for the audit trail (default: a new temporary "
                             "directory); appended to if it exists: only this run's "
                             "records are counted")
    parser.add_argument("--json", action="store_true",
                        help="print the run's numbers and the final get_recovery_status() "
                             "as one JSON document on stdout")
    parser.add_argument("--dashboard", type=_port, nargs="?", const=0, default=None,
                        metavar="PORT",
                        help="serve the live dashboard (recovery.dashboard) on 127.0.0.1 "
                             "while the demo runs, and print its URL (no PORT: a free one)")
    parser.add_argument("--cluster", metavar="URL", default=None,
                        help="run the workers in several processes that share the plugins' "
                             "breakers through this Redis (recovery.cluster, extra 'redis'), "
                             "e.g. redis://127.0.0.1:6379/0")
    parser.add_argument("--processes", type=_process_count, default=None,
                        help="with --cluster: how many processes, 1 to 16 (default: 4)")


def _process_count(text: str) -> int:
    from recovery import _demo_fleet

    return _demo_fleet.process_count(text)


def _port(text: str) -> int:
    value = _whole_number(text)
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
    """One plugin's calls by what the caller got (``OUTCOMES``), and its strategy runs."""

    ok: int = 0
    failed: int = 0
    rejected: int = 0
    fallback: int = 0
    actions: collections.Counter[tuple[str, bool]] = attrs.field(factory=collections.Counter)

    @property
    def calls(self) -> int:
        """Every call, once: the sum of the outcomes, so the columns cannot disagree."""
        return self.ok + self.failed + self.rejected + self.fallback


class _Tally:
    """Counts, per plugin, what the workers' calls got and which strategies ran.

    The only call counter of the demo: the live table and the summary both read it.
    """

    def __init__(self, names: tuple[str, ...]) -> None:
        self._lock = threading.Lock()
        self._plugins = {name: _PluginTally() for name in names}

    def call(self, name: str, outcome: str) -> None:
        with self._lock:
            tally = self._plugins[name]
            setattr(tally, outcome, getattr(tally, outcome) + 1)

    def action(self, name: str, action: str, success: bool) -> None:
        with self._lock:
            self._plugins[name].actions[action, success] += 1

    def snapshot(self) -> dict[str, _PluginTally]:
        with self._lock:
            return {
                name: attrs.evolve(tally, actions=collections.Counter(tally.actions))
                for name, tally in self._plugins.items()
            }


@attrs.frozen
class _StateTimes:
    """One breaker's time in each state so far, how often it entered each, where it is."""

    seconds: dict[CircuitBreakerState, float]
    entered: dict[CircuitBreakerState, int]
    state: CircuitBreakerState


class _StateClock:
    """Time each breaker spends in each state, timed by its transition listener.

    Sampling the state once a frame would miss a state held for less than a frame
    (a trip that a repair follows at once is open for microseconds); a listener sees
    every transition. Listeners run outside the breaker's lock, so transitions made
    on two threads can be told out of order: one that leaves a state the breaker is
    not known to be in waits until the transition into that state is told.
    """

    def __init__(
        self, names: tuple[str, ...], started: float,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self._now = now
        self._lock = threading.Lock()
        self._state = dict.fromkeys(names, CircuitBreakerState.CLOSED)
        self._since = dict.fromkeys(names, started)
        self._seconds = {name: dict.fromkeys(STATES, 0.0) for name in names}
        self._entered = {name: dict.fromkeys(STATES, 0) for name in names}
        self._early: dict[str, list[tuple[CircuitBreakerState, CircuitBreakerState]]] = {
            name: [] for name in names
        }

    def on_transition(
        self, breaker: CircuitBreaker, old: CircuitBreakerState, new: CircuitBreakerState
    ) -> None:
        name = breaker.name
        with self._lock:
            now = self._now()
            waiting = self._early[name]
            waiting.append((old, new))
            moved = True
            while moved:
                moved = False
                for step in waiting:
                    if step[0] is self._state[name]:
                        waiting.remove(step)
                        self._move(name, step[1], now)
                        moved = True
                        break

    def _move(self, name: str, new: CircuitBreakerState, now: float) -> None:
        # A transition told late is timed when it is told, never before the last one.
        since = self._since[name]
        now = max(now, since)
        self._seconds[name][self._state[name]] += now - since
        self._entered[name][new] += 1
        self._state[name] = new
        self._since[name] = now

    def snapshot(self, at: float) -> dict[str, _StateTimes]:
        """The times up to ``at`` (the current state counts until then)."""
        with self._lock:
            views = {}
            for name, state in self._state.items():
                seconds = dict(self._seconds[name])
                seconds[state] += max(at - self._since[name], 0.0)
                views[name] = _StateTimes(seconds, dict(self._entered[name]), state)
            return views


class _RecentFailures:
    """The live table's FAIL%: failed / (ok + failed) over the last ``span`` seconds.

    OK and FAILED are the calls that reached the plugin; the share of them that
    failed is the plugin's health now. None when no call reached it (all rejected
    or served by the fallback). Fed the cumulative counts once a frame.
    """

    def __init__(self, span: float = RECENT_SPAN) -> None:
        self._span = span
        self._frames: collections.deque[tuple[float, dict[str, tuple[int, int]]]] = (
            collections.deque()
        )

    def update(self, now: float, tally: dict[str, _PluginTally]) -> dict[str, float | None]:
        counts = {name: (counts.ok, counts.failed) for name, counts in tally.items()}
        self._frames.append((now, counts))
        # Keep the newest frame at least span old as the base (or the oldest there is).
        while len(self._frames) > 1 and now - self._frames[1][0] >= self._span:
            self._frames.popleft()
        base = self._frames[0][1]
        rates: dict[str, float | None] = {}
        for name, (ok, failed) in counts.items():
            ok_then, failed_then = base.get(name, (0, 0))
            reached = ok - ok_then + failed - failed_then
            rates[name] = (failed - failed_then) / reached if reached else None
        return rates


class _Announcing:
    """An audit logger that writes through to the file, and tells the reporter.

    A manager that verifies recoveries hands a logger that has
    ``log_recovery_attempt`` the action's own result and the verification's too;
    they go on to the file (when its logger takes them) and into the event line.
    """

    def __init__(self, inner: AuditLogger, tally: _Tally, report: _Reporter) -> None:
        self._inner = inner
        self._tally = tally
        self._report = report

    def log_failure_recovery(
        self, plugin_name: str, failure_type: str, recovery_action: str, success: bool
    ) -> None:
        self._inner.log_failure_recovery(plugin_name, failure_type, recovery_action, success)
        self._announce(plugin_name, failure_type, recovery_action, success, "")

    def log_recovery_attempt(
        self,
        plugin_name: str,
        failure_type: str,
        recovery_action: str,
        success: bool,
        *,
        action_succeeded: bool,
        verified: bool | None,
    ) -> None:
        record_attempt(self._inner, plugin_name, failure_type, recovery_action, success,
                       action_succeeded=action_succeeded, verified=verified)
        if success:
            why = " (verified)" if verified else ""
        elif not action_succeeded:
            why = " (the action itself failed)"
        elif verified is False:
            why = " (done, but the plugin failed its verification)"
        else:
            why = " (done, not verified)"
        self._announce(plugin_name, failure_type, recovery_action, success, why)

    def _announce(
        self, plugin_name: str, failure_type: str, recovery_action: str, success: bool,
        why: str,
    ) -> None:
        self._tally.action(plugin_name, recovery_action, success)
        failure = getattr(failure_type, "value", failure_type)
        verdict = "succeeded" if success else "FAILED"
        self._report.event(
            plugin_name, f"recovery: {recovery_action} after {failure} {verdict}{why}"
        )


# -- Ctrl-C -------------------------------------------------------------------------------------


class _CtrlC:
    """The SIGINT handler: the first Ctrl-C asks the run to stop, the second quits at once.

    It runs on the main thread between two bytecodes, wherever that thread is, even
    inside a lock it holds, so it takes no lock and raises nothing. The first press
    only counts: the main loop looks every tick and stops the run in order (a
    KeyboardInterrupt could land between two steps of the shutdown and leave the
    manager's threads running for ever). The second writes its note with ``os.write``
    and ends the process with ``os._exit``, which waits for no thread.
    """

    def __init__(
        self, note: str, show_cursor: bool, exit: Callable[[int], object] = os._exit
    ) -> None:
        self.presses = 0
        self._note = note.encode()
        self._show_cursor = show_cursor
        self._exit = exit

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.presses += 1
        if self.presses < 2:
            return
        if self._show_cursor:
            with contextlib.suppress(OSError):
                os.write(1, b"\x1b[?25h\n")
        with contextlib.suppress(OSError):
            os.write(2, self._note)
        self._exit(EXIT_INTERRUPTED)


@contextlib.contextmanager
def _handling_sigint(handler: _CtrlC) -> Iterator[None]:
    """Install ``handler`` for SIGINT for the block; leave an ignored SIGINT ignored.

    Off the main thread (the demo run from a test's thread) signals are not ours.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous is signal.SIG_IGN:
        yield
        return
    signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.SIG_DFL)


# -- output -----------------------------------------------------------------------------------


class _Reporter:
    """Where the run is shown. This one shows only that Ctrl-C was heard (--json)."""

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

    def refresh(self, lines: list[str]) -> None:
        """Called from the main thread every tick, with the table to show."""

    def stopping(self) -> None:
        """The first Ctrl-C was heard: say so, and how to quit at once."""
        with self._lock:
            self._write("recovery demo: " + _STOPPING + "\n")

    def close(self, lines: list[str]) -> None:
        """The run is over (``lines``: the final table); leave the terminal to the summary."""

    def transition(
        self, breaker: CircuitBreaker, old: CircuitBreakerState, new: CircuitBreakerState
    ) -> None:
        self.event(breaker.name, f"breaker: {old.value} -> {new.value}")

    def alert(self, alert: Alert) -> None:
        kind = getattr(alert.kind, "value", alert.kind)
        self.event(alert.plugin_name, f"alert {kind}: {alert.message}")


_STOPPING = "Ctrl-C: stopping (press it again to quit at once, without the summary)"


class _EventLines(_Reporter):
    def event(self, plugin: str, text: str) -> None:
        with self._lock:
            self._write(self._line(plugin, text) + "\n")

    def stopping(self) -> None:
        self.event("-", _STOPPING)


class _LiveTable(_Reporter):
    """The status table, redrawn in place with plain ANSI escapes, and the latest events."""

    RECENT = 10

    def __init__(self, out: TextIO, started: float, duration: float) -> None:
        super().__init__(out, started)
        self._duration = duration
        self._recent: collections.deque[str] = collections.deque(maxlen=self.RECENT)
        self._drawn = 0
        self._note = "(Ctrl-C ends it early)"
        self._write("\x1b[?25l")  # hide the cursor while redrawing

    def event(self, plugin: str, text: str) -> None:
        with self._lock:
            self._recent.append(self._line(plugin, text))

    def stopping(self) -> None:
        self._note = _STOPPING

    def refresh(self, lines: list[str]) -> None:
        elapsed = time.monotonic() - self._started
        now = time.strftime("%H:%M:%S")
        self._draw(
            f"recovery demo  {elapsed:5.1f}s of {self._duration:g}s  {now}   {self._note}", lines
        )

    def _draw(self, title: str, table: list[str]) -> None:
        lines = [title, "", *table, "", "recent events:"]
        size = shutil.get_terminal_size()
        # The frame must fit the screen, or moving back up over it would fall short.
        room = max(size.lines - 1 - len(lines), 0)
        with self._lock:
            lines.extend(list(self._recent)[len(self._recent) - room:] if room else [])
        width = max(size.columns - 1, 20)
        text = f"\x1b[{self._drawn}A\r" if self._drawn else ""
        text += "".join(f"{line[:width]}\x1b[K\n" for line in lines) + "\x1b[J"
        self._write(text)
        self._drawn = len(lines)

    def close(self, lines: list[str]) -> None:
        self._draw("recovery demo: the final numbers (the summary follows)", lines)
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


def _clock_time(wall: float) -> str:
    """A wall-clock instant as the local time of day, as the live title shows the time now."""
    return time.strftime("%H:%M:%S", time.localtime(wall))


def _flags(recovery: PluginRecovery, reasons: bool = False) -> str:
    """What is wrong with the plugin now, in words; a crash loop with its next try.

    ``reasons`` adds why it is out of service.
    """
    notes = []
    if recovery.crash_loop and recovery.next_attempt is not None:
        notes.append(f"next {_clock_time(recovery.next_attempt)}")
    if reasons and recovery.failed and recovery.failed_reason:
        notes.append(recovery.failed_reason)
    detail = f" ({'; '.join(notes)})" if notes else ""
    flags = []
    if recovery.crash_loop:
        flags.append("crash-loop" + detail)
    elif recovery.failed:
        flags.append("failed" + detail)
    if recovery.degraded:
        flags.append("degraded")
    return ", ".join(flags)


_LIVE_LEGEND = [
    "CALLS = OK + FAILED + REJECTED + FALLBACK (what each caller got)",
    f"FAIL%: failed share of the calls that reached the plugin in the last {RECENT_SPAN:g} s",
    "TRIPS: times the breaker opened, however briefly",
]
_SUMMARY_LEGEND = textwrap.wrap(
    "CALLS = OK + FAILED + REJECTED + FALLBACK: each call counted once, by what its caller "
    "got. OK, FAILED: the plugin answered, or raised (or answered after the caller's "
    f"{CALL_DEADLINE * 1e3:.0f} ms deadline); REJECTED: the breaker turned it away "
    "(CircuitOpenError); FALLBACK: the plugin's fallback answered instead (breaker "
    "rejecting, or plugin degraded).", 79
) + textwrap.wrap(
    "RECOVERY ACTIONS: the strategy runs, as audited (as many as the audit trail's "
    "records below).", 79
) + textwrap.wrap(
    "TIME IN STATE: seconds in each breaker state (Nx: times it entered it); each row "
    "adds up to the run's time.", 79
)


def _table(
    status: RecoveryStatus,
    tally: dict[str, _PluginTally],
    states: dict[str, _StateTimes],
    rates: dict[str, float | None],
) -> list[str]:
    """The live table: the demo's own call counts, the manager's view of each plugin.

    FLAGS (what is wrong now) comes before LAST ACTION, which the event lines also
    show, so that a terminal too narrow for both cuts the one that is said elsewhere.
    """
    rows = []
    for name, plugin in status.plugins.items():
        recovery, counts = plugin.recovery, tally[name]
        action = recovery.last_action or "-"
        if recovery.last_action is not None:
            action += " ok" if recovery.last_action_success else " FAILED"
        rate = rates.get(name)
        numbers = (
            f"{name:<10} {plugin.circuit_breaker.state.value:<9} {counts.calls:>6} {counts.ok:>5} "
            f"{counts.failed:>6} {counts.rejected:>8} {counts.fallback:>8} "
            f"{'-' if rate is None else format(rate, '.0%'):>5} "
            f"{states[name].entered[CircuitBreakerState.OPEN]:>5}"
        )
        rows.append((numbers, _flags(recovery) or "-", action))
    flags_width = max([len("FLAGS"), *(len(flags) for _, flags, _ in rows)])
    header = (
        f"{'PLUGIN':<10} {'STATE':<9} {'CALLS':>6} {'OK':>5} {'FAILED':>6} {'REJECTED':>8} "
        f"{'FALLBACK':>8} {'FAIL%':>5} {'TRIPS':>5} {'FLAGS':<{flags_width}}  LAST ACTION"
    )
    lines = [header] + [
        f"{numbers} {flags:<{flags_width}}  {action}" for numbers, flags, action in rows
    ]
    return [*lines, "", *_LIVE_LEGEND]


def _time_cell(times: _StateTimes, state: CircuitBreakerState) -> str:
    entered = times.entered[state]
    if not entered and times.seconds[state] == 0.0:
        return "-"
    return f"{times.seconds[state]:.3f}s" + (f" {entered}x" if entered else "")


def _summary(
    status: RecoveryStatus,
    tally: dict[str, _PluginTally],
    states: dict[str, _StateTimes],
    elapsed: float,
    interrupted: bool,
    wall_started: float,
) -> list[str]:
    ended = "interrupted" if interrupted else "finished"
    span = " to ".join(time.strftime("%H:%M:%S", time.localtime(wall))
                       for wall in (wall_started, wall_started + elapsed))
    lines = [
        f"{ended} after {elapsed:.3f}s ({span})",
        "",
        f"{'PLUGIN':<11} {'CALLS':>7} {'OK':>7} {'FAILED':>7} {'REJECTED':>8} {'FALLBACK':>8}"
        "  RECOVERY ACTIONS",
    ]
    totals = collections.Counter[str]()
    for name, counts in tally.items():
        row = {outcome: getattr(counts, outcome) for outcome in OUTCOMES}
        row["calls"] = counts.calls
        totals.update(row)
        actions = ", ".join(
            f"{action} {'ok' if success else 'failed'} x{count}"
            for (action, success), count in sorted(counts.actions.items())
        ) or "-"
        flags = _flags(status.plugins[name].recovery, reasons=True)
        if flags:
            actions += f"; now {flags}"
        lines.append(
            f"{name:<11} {row['calls']:>7} {row['ok']:>7} {row['failed']:>7} "
            f"{row['rejected']:>8} {row['fallback']:>8}  {actions}"
        )
    lines.append(
        f"{'total':<11} {totals['calls']:>7} {totals['ok']:>7} {totals['failed']:>7} "
        f"{totals['rejected']:>8} {totals['fallback']:>8}"
    )
    lines += [
        "",
        f"{'TIME IN STATE':<13}" + "".join(f"{state.value:>14}" for state in STATES),
    ]
    for name, times in states.items():
        lines.append(f"{name:<13}" + "".join(f"{_time_cell(times, s):>14}" for s in STATES))
    lines += [
        "",
        *_SUMMARY_LEGEND,
    ]
    return lines


def _records(count: int) -> str:
    return f"{count} record" + ("" if count == 1 else "s")


def _run_report(
    seed: int,
    duration: float,
    elapsed: float,
    interrupted: bool,
    tally: dict[str, _PluginTally],
    states: dict[str, _StateTimes],
    audit: dict[str, Any],
    threads_left: int,
) -> dict[str, Any]:
    """The summary's numbers, JSON-ready, for --json."""
    plugins = {}
    for name, counts in tally.items():
        times = states[name]
        plugins[name] = {
            "calls": counts.calls,
            **{outcome: getattr(counts, outcome) for outcome in OUTCOMES},
            "actions": [
                {"action": action, "success": success, "count": count}
                for (action, success), count in sorted(counts.actions.items())
            ],
            "time_in_state": {state.value: times.seconds[state] for state in STATES},
            "entered": {state.value: times.entered[state] for state in STATES},
            "final_state": times.state.value,
        }
    return {
        "seed": seed,
        "duration": duration,
        "elapsed": elapsed,
        "interrupted": interrupted,
        "plugins": plugins,
        "audit": audit,
        "threads_left": threads_left,
    }


@attrs.frozen
class _Scenario:
    """The demo's plugins behind a started-to-be manager, and what its workers call."""

    rm: RecoveryManager
    plugins: dict[str, FlakyPlugin]
    calls: dict[str, Callable[[], str]]
    faults: list[_Fault]
    boot_failure: tuple[str, FailureInfo] | None

    def start(self, report: _Reporter) -> None:
        """Start the manager, and hand it crashy's crash at boot."""
        self.rm.start()
        if self.boot_failure is not None:
            name, failure = self.boot_failure
            report.event(name, f"fault: crashed in initialize at boot ({failure.message})")
            self.rm.record_failure(name, failure)


def _scenario(
    seed: int,
    duration: float,
    audit: AuditLogger,
    listeners: tuple[Callable[..., object], ...],
    report: _Reporter,
    cluster: Any = None,
) -> _Scenario:
    """The plugins, registered (crashy crashes at boot), behind a manager (not started)."""
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
    rm = RecoveryManager(registry, audit, _recovery_config(duration), quiet, cluster=cluster)
    for name in PLUGINS:
        fallback = (lambda: _FallbackAnswer("slow (cached answer)")) if name == "slow" else None
        breaker = rm.register_plugin(name, fallback=fallback)
        for listener in listeners:
            breaker.add_listener(listener)
    rm.add_alert_handler(report.alert)
    calls: dict[str, Callable[[], str]] = {name: plugin.do_work for name, plugin in
                                           plugins.items()}
    calls["slow"] = _with_deadline(plugins["slow"].do_work, CALL_DEADLINE)
    return _Scenario(rm, plugins, calls, _timeline(plugins, duration), boot_failure)


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
            outcome = "fallback" if isinstance(answer, _FallbackAnswer) else "ok"
        tally.call(name, outcome)
        stop.wait(WORKER_PAUSE)


def _open_audit(path: str | None) -> tuple[JsonlAuditLogger, int]:
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
    if getattr(args, "cluster", None) is not None or getattr(args, "processes", None) is not None:
        from recovery import _demo_fleet

        return _demo_fleet.run(args)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    duration: float = args.duration
    out = sys.stdout
    notes = sys.stderr if args.json else sys.stdout  # stdout is the JSON document
    try:
        audit, earlier_records = _open_audit(args.audit)
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        _write(sys.stderr, f"recovery demo: error: --audit: {reason}\n")
        return EXIT_USAGE
    audit_path = audit.path

    before = set(threading.enumerate())
    started = time.monotonic()
    wall_started = time.time()
    live = not args.json and out.isatty() and os.environ.get("TERM") != "dumb"
    report: _Reporter
    if args.json:
        report = _Reporter(sys.stderr, started)
    elif live:
        report = _LiveTable(out, started, duration)
    else:
        report = _EventLines(out, started)
    tally = _Tally(PLUGINS)
    state_clock = _StateClock(PLUGINS, started)
    recent = _RecentFailures()

    scene = _scenario(seed, duration, _Announcing(audit, tally, report),
                      (state_clock.on_transition, report.transition), report)
    rm, plugins, calls, faults = scene.rm, scene.plugins, scene.calls, scene.faults
    try:
        board = _serve_dashboard(rm, args.dashboard, notes)
    except OSError as exc:
        audit.close()
        _write(sys.stderr, f"recovery demo: error: --dashboard: {exc.strerror or exc}\n")
        return EXIT_USAGE

    def table() -> list[str]:
        counts = tally.snapshot()
        return _table(rm.status(), counts,
                      state_clock.snapshot(time.monotonic()),
                      recent.update(time.monotonic(), counts))

    ctrl_c = _CtrlC(
        f"recovery demo: Ctrl-C twice: quit at once, without the summary "
        f"(the audit trail so far is in {audit_path})\n",
        show_cursor=live,
    )
    with _handling_sigint(ctrl_c):
        _write(notes, f"recovery demo: {len(PLUGINS)} plugins, {args.workers} workers, "
                      f"{duration:g}s, seed {seed}\n")
        stop = threading.Event()
        pool = concurrent.futures.ThreadPoolExecutor(args.workers,
                                                     thread_name_prefix="demo-worker")
        try:
            scene.start(report)
            for index in range(args.workers):
                pool.submit(_work, rm, calls, tally, stop, random.Random(seed * 1000 + index))
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
        states = state_clock.snapshot(ended)
        report.close(_table(status, counts, states, recent.update(ended, counts)))
        records = sum(1 for _ in JsonlAuditLogger.read(audit_path)) - earlier_records
        summary = _summary(status, counts, states, elapsed, interrupted, wall_started)
        summary += [
            "",
            f"audit trail: {audit_path}: {_records(records)} from this run (one per strategy "
            "run above)" + (f", after {_records(earlier_records)} of earlier runs"
                            if earlier_records else ""),
        ]
        left = _join_leftovers(before, THREAD_GRACE)
        summary.append(f"threads left: {len(left)}" + "".join(f" {t.name!r}" for t in left))
        if args.json:
            audit_view = {"path": audit_path, "records": records,
                          "earlier_records": earlier_records}
            document = {
                "run": _run_report(seed, duration, elapsed, interrupted, counts, states,
                                   audit_view, len(left)),
                "status": status.to_dict(),
            }
            _write(out, json.dumps(document, indent=2) + "\n")
        _write(notes, "\n".join(summary) + "\n")
    return 0
