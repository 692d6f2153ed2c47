"""What one process's run shows: the live table, the summary, and their numbers as JSON."""

from __future__ import annotations

import collections
import textwrap
import time
from collections.abc import Mapping
from typing import Any

from recovery.demo.calls import RECENT_SPAN, PluginCalls
from recovery.demo.scenario import CALL_DEADLINE
from recovery.demo.state_times import STATES, StateTimes
from recovery.state import CircuitBreakerState
from recovery.status import PluginRecovery, RecoveryStatus

NUMBERS = ("calls", "ok", "errors", "fallbacks_served", "rejected")
"""A plugin's numbers, by their names in --json (and in the status: fallbacks_served)."""
CALLS_LEGEND = "CALLS = OK + ERRORS + FALLBACK SERVED (what each caller got)"
REJECTED_LEGEND = "REJECTED: calls the breaker refused (then served by the fallback, or an error)"
LIVE_LEGEND = [
    CALLS_LEGEND,
    REJECTED_LEGEND,
    f"FAIL%: failed share of the calls that reached the plugin in the last {RECENT_SPAN:g} s",
    "TRIPS: times the breaker opened, however briefly",
]
COUNTS_EXPLAINED = textwrap.wrap(
    "CALLS = OK + ERRORS + FALLBACK SERVED: each call counted once, by what its caller "
    "got. OK: the plugin answered in time. ERRORS: an exception reached the caller: the "
    f"plugin's own, a TimeoutError (an answer after the caller's {CALL_DEADLINE * 1e3:.0f} "
    "ms deadline), or CircuitOpenError (a call the breaker refused, with no fallback to "
    "serve it). FALLBACK SERVED: the plugin's fallback answered instead (the breaker "
    "refused the call, or the plugin was degraded). REJECTED: the calls the breaker "
    "refused, served by the fallback or not (its total_rejections, \"rejected\" on the "
    "dashboard).", 79
)
SUMMARY_LEGEND = COUNTS_EXPLAINED + textwrap.wrap(
    "RECOVERY ACTIONS: the strategy runs, as audited (as many as the audit trail's "
    "records below).", 79
) + textwrap.wrap(
    "TIME IN STATE: seconds in each breaker state (Nx: times it entered it); each row "
    "adds up to the run's time.", 79
)


def clock_time(wall: float) -> str:
    """A wall-clock instant as the local time of day, as the live title shows the time now."""
    return time.strftime("%H:%M:%S", time.localtime(wall))


def flags(recovery: PluginRecovery, reasons: bool = False) -> str:
    """What is wrong with the plugin now, in words; a crash loop with its next try.

    ``reasons`` adds why it is out of service.
    """
    notes = []
    if recovery.crash_loop and recovery.next_attempt is not None:
        notes.append(f"next {clock_time(recovery.next_attempt)}")
    if reasons and recovery.failed and recovery.failed_reason:
        notes.append(recovery.failed_reason)
    detail = f" ({'; '.join(notes)})" if notes else ""
    words = []
    if recovery.crash_loop:
        words.append("crash-loop" + detail)
    elif recovery.failed:
        words.append("failed" + detail)
    if recovery.degraded:
        words.append("degraded")
    return ", ".join(words)


def live_table(
    status: RecoveryStatus,
    tally: dict[str, PluginCalls],
    states: dict[str, StateTimes],
    rates: dict[str, float | None],
) -> list[str]:
    """The live table: the demo's own call counts, the manager's view of each plugin.

    CALLS, OK, ERRORS and FALLBACK SERVED are what the callers got; REJECTED, FAIL%
    and TRIPS are the breaker's side, REJECTED as the dashboard shows it.

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
        breaker = plugin.circuit_breaker
        numbers = (
            f"{name:<10} {breaker.state.value:<9} {counts.calls:>5} {counts.ok:>5} "
            f"{counts.errors:>6}  {counts.fallback_served:>15}  {breaker.total_rejections:>8} "
            f"{'-' if rate is None else format(rate, '.0%'):>5} "
            f"{states[name].entered[CircuitBreakerState.OPEN]:>5}"
        )
        rows.append((numbers, flags(recovery) or "-", action))
    # "degraded" is the usual widest: LAST ACTION does not move when it comes and goes.
    flags_width = max([len("degraded"), *(len(words) for _, words, _ in rows)])
    header = (
        f"{'PLUGIN':<10} {'STATE':<9} {'CALLS':>5} {'OK':>5} {'ERRORS':>6}  "
        f"{'FALLBACK SERVED':>15}  {'REJECTED':>8} {'FAIL%':>5} {'TRIPS':>5} "
        f"{'FLAGS':<{flags_width}}  LAST ACTION"
    )
    lines = [header] + [
        f"{numbers} {words:<{flags_width}}  {action}" for numbers, words, action in rows
    ]
    return [*lines, "", *LIVE_LEGEND]


def _time_cell(times: StateTimes, state: CircuitBreakerState) -> str:
    entered = times.entered[state]
    if not entered and times.seconds[state] == 0.0:
        return "-"
    return f"{times.seconds[state]:.3f}s" + (f" {entered}x" if entered else "")


def summary(
    status: RecoveryStatus,
    tally: dict[str, PluginCalls],
    states: dict[str, StateTimes],
    elapsed: float,
    interrupted: bool,
    wall_started: float,
) -> list[str]:
    """The end of a run: calls per plugin, its recovery actions, its time in each state."""
    ended = "interrupted" if interrupted else "finished"
    span = " to ".join(clock_time(wall) for wall in (wall_started, wall_started + elapsed))
    lines = [f"{ended} after {elapsed:.3f}s ({span})", "", f"{'PLUGIN':<11} {NUMBERS_HEADER}"]
    totals = collections.Counter[str]()
    for name, counts in tally.items():
        row = plugin_numbers(counts, status.plugins[name].circuit_breaker.total_rejections)
        totals.update(row)
        lines.append(f"{name:<11} {number_cells(row)}")
    lines.append(f"{'total':<11} {number_cells(totals)}")
    now_wrong = {name: flags(plugin.recovery, reasons=True)
                 for name, plugin in status.plugins.items()}
    lines += ["", *action_lines("RECOVERY ACTIONS", {name: counts.actions for name, counts in
                                                      tally.items()}, now_wrong)]
    lines += [
        "",
        f"{'TIME IN STATE':<13}" + "".join(f"{state.value:>14}" for state in STATES),
    ]
    for name, times in states.items():
        lines.append(f"{name:<13}" + "".join(f"{_time_cell(times, s):>14}" for s in STATES))
    lines += [
        "",
        *SUMMARY_LEGEND,
    ]
    return lines


def plugin_numbers(counts: PluginCalls, rejected: int) -> dict[str, int]:
    """A plugin's numbers (``NUMBERS``) as the summaries and --json give them;
    ``rejected``: its breaker's total_rejections."""
    return {"calls": counts.calls, "ok": counts.ok, "errors": counts.errors,
            "fallbacks_served": counts.fallback_served, "rejected": rejected}


NUMBERS_HEADER = (f"{'CALLS':>7} {'OK':>7} {'ERRORS':>7}  {'FALLBACK SERVED':>15}  "
                  f"{'REJECTED':>8}")


def number_cells(row: Mapping[str, int]) -> str:
    """A row's ``NUMBERS``, under ``NUMBERS_HEADER``."""
    return (f"{row['calls']:>7} {row['ok']:>7} {row['errors']:>7}  "
            f"{row['fallbacks_served']:>15}  {row['rejected']:>8}")


def action_lines(
    title: str,
    actions: Mapping[str, Mapping[tuple[str, bool], int]],
    now_wrong: Mapping[str, str],
) -> list[str]:
    """Each plugin's strategy runs (``restart failed x1, restart ok x2``), and what is
    still wrong with it at the end, under ``title``."""
    lines = [title]
    for name, runs in actions.items():
        text = ", ".join(f"{action} {'ok' if success else 'failed'} x{count}"
                         for (action, success), count in sorted(runs.items())) or "-"
        if now_wrong.get(name):
            text += f"; now {now_wrong[name]}"
        lines.append(f"{name:<11} {text}")
    return lines


def run_report(
    seed: int,
    duration: float,
    elapsed: float,
    interrupted: bool,
    status: RecoveryStatus,
    tally: dict[str, PluginCalls],
    states: dict[str, StateTimes],
    audit: dict[str, Any],
    threads_left: int,
) -> dict[str, Any]:
    """The summary's numbers, JSON-ready, for --json."""
    plugins = {}
    for name, counts in tally.items():
        times = states[name]
        plugins[name] = {
            **plugin_numbers(counts, status.plugins[name].circuit_breaker.total_rejections),
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
