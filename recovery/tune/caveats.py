"""Why a ranking may not mean much, said with numbers: too little data, a trace recorded
behind a breaker that rejected calls, rules that cannot fire, ties, incidents that miss."""

from __future__ import annotations

import math
from collections.abc import Sequence

from recovery.trace import Trace
from recovery.tune.ranking import TuneResult
from recovery.tune.rules import redundant_rules
from recovery.tune.scores import label_runs

MIN_EVENTS = 1_000
"""Below this a trace is too short to tell configs apart (a window holds up to 100 calls)."""
MIN_OUTAGES = 3
"""Below this, detection and recovery delays rest on one or two samples."""

# -- warnings ---------------------------------------------------------------------------


def trace_warnings(trace: Trace, labels: str | None) -> list[str]:
    """Why the ranking of this trace may not mean much, in numbers."""
    notes = []
    n = len(trace)
    if n < MIN_EVENTS:
        notes.append(
            f"only {n:,} events: too few to tell configs apart (a breaker's window holds up "
            f"to 100 calls by default); record at least {MIN_EVENTS:,}"
        )
    if trace.healthy is not None:
        outages = len(label_runs(trace, trace.healthy).unhealthy)
        if outages == 0:
            notes.append(
                f"no outage in the trace (labels: {labels}): the scores only measure false "
                "alarms, not how fast an outage is cut off; add a trace with one, or label "
                "incidents with --incidents"
            )
        elif outages < MIN_OUTAGES:
            notes.append(
                f"only {outages} outage{'s' if outages > 1 else ''} in the trace: detection "
                f"and recovery delays rest on {outages} sample{'s' if outages > 1 else ''}; "
                f"{MIN_OUTAGES} or more make the ranking more than an anecdote"
            )
    return notes


def rejection_warnings(trace: Trace) -> list[str]:
    """Whether the breaker that recorded the trace rejected calls, and for how much of it."""
    if not trace.rejections:
        return []
    count = len(trace.rejections)
    return [
        f"the breaker that recorded this trace rejected calls in {count:,} span"
        f"{'s' if count > 1 else ''} covering {trace.rejected_share():.0%} of its time: no "
        "call reached the dependency then, so the trace cannot say how it was, and the "
        "replays judge every config on the gaps the recording breaker left; record "
        "behind an observe-only breaker, CircuitBreakerConfig(enable_fast_fail=False), "
        "whose calls all run"
    ]


def candidate_warnings(trace: Trace, results: Sequence[TuneResult]) -> list[str]:
    """Rules of the shown candidates that can never fire (first), or never do on this trace."""
    notes = []
    longest = max(trace.latency, default=0.0)
    for result in results:
        config = result.candidate.config
        problems = redundant_rules(config)
        if (
            config.slow_call_duration is not None
            and config.slow_call_rate_threshold is not None
            and longest < config.slow_call_duration
        ):
            problems.append(
                f"slow_call_duration={config.slow_call_duration:g} never fires on this trace: "
                f"its longest call took {longest:.3g} s"
            )
        notes += [f"{result.candidate.label}: {problem}" for problem in problems]
    return notes


def tie_warnings(results: Sequence[TuneResult]) -> list[str]:
    costs = {result.cost for result in results}
    if len(results) > 1 and len(costs) == 1 and None not in costs:
        return [f"every candidate costs {costs.pop():g}: this trace does not tell them apart"]
    return []


def incident_warnings(trace: Trace, unused: Sequence[tuple[float, float]]) -> list[str]:
    notes = []
    if unused:
        start, end = unused[0]
        first, last = (trace.t[0], trace.t[-1]) if len(trace) else (math.nan, math.nan)
        notes.append(
            f"{len(unused)} incident(s) cover no call of the trace, the first from {start:.3f} "
            f"to {end:.3f}, where the trace runs from {first:.3f} to {last:.3f}"
        )
        if len(trace) and last < 1e9 <= start:
            notes.append(
                "the trace's times look like a monotonic clock (seconds since boot), not "
                "Unix times: record it again with a current TraceRecorder, which writes "
                "Unix times"
            )
    return notes
