"""Replaying a trace through one config, and what the replay is scored by (each score is
described in the package's docstring); the cost that ranks configs by their scores."""

from __future__ import annotations

import math
import re
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from recovery.breaker import CircuitBreaker
from recovery.config import CircuitBreakerConfig
from recovery.state import CLOSED_CODE as CLOSED
from recovery.state import OPEN_CODE as OPEN
from recovery.trace import Trace, quoted

_OPENS = re.compile(re.escape(bytes([CLOSED, OPEN])))  # a CLOSED state followed by an OPEN one
_UNHEALTHY_RUNS = re.compile(b"\x00+")
_HEALTHY_RUNS = re.compile(b"\x01+")

DEFAULT_WEIGHTS: Mapping[str, float] = {"rejected_healthy": 1.0, "passed_unhealthy": 1.0}

@attrs.frozen
class Scores:
    """How one config did on one trace; see the module docstring for each score."""

    events: int
    rejected: int
    opens: int
    false_opens: int | None = None
    outages: int | None = None
    missed_outages: int | None = None
    detection_delay_mean: float | None = None
    detection_delay_max: float | None = None
    rejected_healthy: int | None = None
    passed_unhealthy: int | None = None
    recoveries: int | None = None
    unrecovered: int | None = None
    recovery_delay_mean: float | None = None
    recovery_delay_max: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


SCORE_NAMES = tuple(field.name for field in attrs.fields(Scores))
LABEL_FREE = ("events", "rejected", "opens")

# -- replay and scores ------------------------------------------------------------------


def replay(trace: Trace, config: CircuitBreakerConfig) -> tuple[bytes, bytes]:
    """Run ``trace`` through a fresh breaker; returns ``(admitted, states)`` per event."""
    breaker = CircuitBreaker("replay", config)
    return breaker.replay(trace.t, trace.ok, trace.latency)


def score(trace: Trace, admitted: bytes, states: bytes) -> Scores:
    """Score one replay: ``admitted[i]`` 1/0, ``states[i]`` the state code after event ``i``.

    Everything is done with bytes-level scans (``count``, ``find``, regexes) and
    whole-trace integer bit operations, so a million events score in
    milliseconds plus a few microseconds per outage.
    """
    n = len(trace)
    if len(admitted) != n or len(states) != n:
        raise ValueError(
            f"admitted and states must have one entry per event ({n}), "
            f"got {len(admitted)} and {len(states)}"
        )
    # The state before the first event is CLOSED: a leading CLOSED lets one regex see it.
    opens = [match.start() for match in _OPENS.finditer(bytes([CLOSED]) + states)]
    rejected = n - admitted.count(1)
    healthy = trace.healthy
    if healthy is None:
        return Scores(events=n, rejected=rejected, opens=len(opens))

    runs = label_runs(trace, healthy)
    detection, missed = _delays_to(OPEN, runs.unhealthy, trace, states)
    after_outages = [run for run in runs.healthy if run[0] > 0]  # not the trace's first run
    recovery, unrecovered = _delays_to(CLOSED, after_outages, trace, states)

    # One byte per event holding 0 or 1 is one bit per event in a big integer:
    # "rejected while healthy" is healthy AND NOT admitted, counted by bit_count().
    admitted_bits = int.from_bytes(admitted, "little")
    healthy_bits = runs.bits
    return Scores(
        events=n,
        rejected=rejected,
        opens=len(opens),
        false_opens=sum(healthy[i] for i in opens),
        outages=len(runs.unhealthy),
        missed_outages=missed,
        detection_delay_mean=_mean(detection),
        detection_delay_max=max(detection, default=None),
        rejected_healthy=(healthy_bits & ~admitted_bits).bit_count(),
        passed_unhealthy=(admitted_bits & ~healthy_bits).bit_count(),
        recoveries=len(after_outages),
        unrecovered=unrecovered,
        recovery_delay_mean=_mean(recovery),
        recovery_delay_max=max(recovery, default=None),
    )


def _delays_to(
    state: int, runs: Sequence[tuple[int, int]], trace: Trace, states: bytes
) -> tuple[list[float], int]:
    """How long after the start of each run the breaker was in ``state`` (0.0 when it was
    already, before the run's first event; else until the end of the first event that put
    it there), and in how many runs it never was: an outage's detection (OPEN) or a
    recovery (CLOSED)."""
    delays: list[float] = []
    never = 0
    for start, end in runs:
        if start > 0 and states[start - 1] == state:
            delays.append(0.0)
            continue
        reached = states.find(state, start, end)
        if reached < 0:
            never += 1
        else:
            delays.append(trace.t[reached] + trace.latency[reached] - trace.t[start])
    return delays, never


@attrs.frozen
class LabelRuns:
    """A labelled trace's runs of unhealthy and healthy events (``(start, end)`` spans) and
    its labels as one integer, one bit an event: the same for every candidate, so found once."""

    healthy_column: bytearray
    unhealthy: list[tuple[int, int]]
    healthy: list[tuple[int, int]]
    bits: int


_RUNS_BY_TRACE: weakref.WeakKeyDictionary[Trace, LabelRuns] = weakref.WeakKeyDictionary()


def label_runs(trace: Trace, healthy: bytearray) -> LabelRuns:
    runs = _RUNS_BY_TRACE.get(trace)
    if runs is None or runs.healthy_column is not healthy:
        runs = LabelRuns(
            healthy,
            [match.span() for match in _UNHEALTHY_RUNS.finditer(healthy)],
            [match.span() for match in _HEALTHY_RUNS.finditer(healthy)],
            int.from_bytes(healthy, "little"),
        )
        _RUNS_BY_TRACE[trace] = runs
    return runs


def _mean(values: Sequence[float]) -> float | None:
    return math.fsum(values) / len(values) if values else None


def cost(scores: Scores, weights: Mapping[str, float]) -> float | None:
    """``sum(weight * score)``; a score that is None adds 0.

    None when the trace has no labels and only label-needing scores are weighted.
    """
    labelled = scores.outages is not None
    if not labelled and not any(weights.get(key) for key in LABEL_FREE):
        return None
    return math.fsum(
        weight * (getattr(scores, key) or 0) for key, weight in weights.items() if weight
    )


def check_weights(weights: Mapping[str, float]) -> None:
    """Refuse a weight of an unknown score, and one that is negative or not finite.

    Every score counts something bad (calls lost, delays, false alarms), so a negative
    weight would reward it: the ranking would recommend the config that does worst.
    """
    unknown = sorted(set(weights) - set(SCORE_NAMES))
    if unknown:
        raise ValueError(
            f"unknown score(s) to weight: {', '.join(map(quoted, unknown))}; "
            f"one of: {', '.join(SCORE_NAMES)}"
        )
    for key, weight in weights.items():
        if not (math.isfinite(weight) and weight >= 0):
            raise ValueError(
                f"the weight of {key} must be a finite number >= 0, got {weight!r} (every "
                "score counts something bad: a negative weight would reward it; 0 drops it)"
            )
