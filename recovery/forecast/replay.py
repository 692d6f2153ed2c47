"""Score the forecaster on a recorded trace: how early it warns, how often it cries wolf.

:func:`score_forecast` replays a labelled trace (see :mod:`recovery.trace`)
through a breaker with the given config (the defaults, read when called) and a
:class:`~recovery.forecast.Forecaster` watching it, both on a replay clock: the
trace's events go through the breaker's own ``replay`` between two polls, and
the forecaster polls every ``interval`` seconds of trace time, as its thread
would. Per outage (a run of events labelled unhealthy) it reports the lead
time: from the first warning raised before the breaker opened (or still active
when the outage began) to the moment the breaker opened; and per hour of
healthy time, the false warnings: raised while healthy and over before the
dependency went bad. A warning still active ``LINGER`` seconds after an outage
in which the breaker never opened (a blip that came and went) is reported too.
"""

from __future__ import annotations

import bisect
import math
import re
import statistics
from collections.abc import Sequence
from typing import Any

import attrs

from recovery import _validate as v
from recovery.breaker import CircuitBreaker
from recovery.config import CircuitBreakerConfig
from recovery.forecast.forecaster import Forecaster, Warning
from recovery.state import OPEN_CODE
from recovery.trace import Trace

LINGER = 2.0
"""Seconds after an outage ends by which its warnings must be over, if the breaker never
opened (when it did, opening ended them)."""
_UNHEALTHY_RUNS = re.compile(b"\x00+")
_INTERVAL = v.number(ge=v.MIN_INTERVAL, unit="seconds")


class _ReplayClock:
    """The trace's time, set by the replay (``sleep`` is never needed: nothing waits)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(seconds, 0.0)


@attrs.frozen
class OutageLead:
    """One outage: when it began, when the breaker first opened in it (None: never),
    when the warning that foresaw it was raised (None: none did), and the lead
    ``opened - warned`` (None unless both happened, the warning first)."""

    start: float
    opened: float | None
    warned: float | None
    kind: str | None

    @property
    def lead(self) -> float | None:
        if self.opened is None or self.warned is None:
            return None
        return self.opened - self.warned


@attrs.frozen
class ForecastScore:
    """How the forecaster did on one trace with one breaker config."""

    source: str
    config: CircuitBreakerConfig
    outages: tuple[OutageLead, ...]
    warnings: int
    false_warnings: int
    lingering: int
    healthy_seconds: float

    @property
    def false_warnings_per_hour(self) -> float | None:
        if self.healthy_seconds <= 0:
            return None
        return self.false_warnings * 3600.0 / self.healthy_seconds

    @property
    def leads(self) -> list[float]:
        """Lead times of the outages the breaker opened in and a warning foresaw."""
        return [lead for lead in (outage.lead for outage in self.outages) if lead is not None]

    @property
    def median_lead(self) -> float | None:
        """Median lead over the outages the breaker opened in; an outage with no warning
        before the opening counts as lead 0."""
        opened = [outage for outage in self.outages if outage.opened is not None]
        if not opened:
            return None
        return statistics.median(max(outage.lead or 0.0, 0.0) for outage in opened)

    @property
    def warned_before_open(self) -> tuple[int, int]:
        """(outages warned of before the breaker opened, outages the breaker opened in)."""
        opened = [outage for outage in self.outages if outage.opened is not None]
        return sum(1 for outage in opened if outage.lead is not None), len(opened)

    def to_dict(self) -> dict[str, Any]:
        warned, opened = self.warned_before_open
        return {
            "source": self.source,
            "outages": [
                {**attrs.asdict(outage), "lead": outage.lead} for outage in self.outages
            ],
            "warnings": self.warnings,
            "false_warnings": self.false_warnings,
            "false_warnings_per_hour": self.false_warnings_per_hour,
            "lingering": self.lingering,
            "healthy_seconds": self.healthy_seconds,
            "median_lead": self.median_lead,
            "warned_before_open": warned,
            "opened": opened,
        }

    def text(self) -> str:
        """A few lines for a terminal."""
        warned, opened = self.warned_before_open
        median = self.median_lead
        per_hour = self.false_warnings_per_hour
        lines = [
            f"early warning on {self.source}: {len(self.outages)} outage(s), "
            f"breaker opened in {opened}, warned before it opened in {warned}",
            "  median lead before the breaker opened: "
            + ("-" if median is None else f"{median:.1f} s"),
            f"  false warnings: {self.false_warnings}"
            + ("" if per_hour is None else
               f" ({per_hour:.2f}/hour over {self.healthy_seconds / 3600:.2f} h healthy)")
            + (f"; {self.lingering} still up {LINGER:g} s after an outage"
               if self.lingering else ""),
        ]
        for outage in self.outages:
            lead = outage.lead
            opened_text = "never opened" if outage.opened is None else (
                f"opened after {outage.opened - outage.start:.1f} s")
            warned_text = "no warning" if outage.warned is None else (
                f"{outage.kind} warning at {outage.warned - outage.start:+.1f} s"
                + ("" if lead is None else f", lead {lead:.1f} s"))
            lines.append(f"  outage at t={outage.start:.1f}: {opened_text}; {warned_text}")
        return "\n".join(lines)


def score_forecast(
    trace: Trace, config: CircuitBreakerConfig | None = None, *, interval: float = 0.25
) -> ForecastScore:
    """Replay ``trace`` (labelled, in time order) through a breaker with ``config``
    (None: ``CircuitBreakerConfig()`` as it is now) watched by a forecaster polling
    every ``interval`` seconds of trace time."""
    if not isinstance(trace, Trace):
        raise TypeError(f"trace must be a Trace, got {trace!r} ({type(trace).__name__})")
    if trace.healthy is None:
        raise ValueError(
            f"trace {trace.source} has no labels: label it first (a healthy column, an "
            "incident log, or tune's derived labels)"
        )
    if config is None:
        config = CircuitBreakerConfig()
    elif not isinstance(config, CircuitBreakerConfig):
        raise TypeError(f"config must be a CircuitBreakerConfig, got {config!r}")
    v.check(_INTERVAL, "interval", interval)
    warnings, states = _replay(trace, config, interval)
    return _score(trace, config, warnings, states)


def _replay(
    trace: Trace, config: CircuitBreakerConfig, interval: float
) -> tuple[list[Warning], bytearray]:
    """Every warning raised (each with its end, if it ended) and the state after each event."""
    n = len(trace)
    states = bytearray(n)
    if not n:
        return [], states
    t, ok, latency = memoryview(trace.t), memoryview(trace.ok), memoryview(trace.latency)
    clock = _ReplayClock(trace.t[0])
    breaker = CircuitBreaker("replay", config, clock=clock)
    forecaster = Forecaster(interval, clock=clock)
    forecaster.watch(breaker)
    raised: dict[tuple[str, float], Warning] = {}
    boundary = trace.t[0]
    i = 0
    while i < n:
        j = bisect.bisect_left(trace.t, boundary, lo=i)
        if j > i:
            states[i:j] = breaker.replay(t[i:j], ok[i:j], latency[i:j])[1]
            i = j
        clock.now = boundary
        for warning in forecaster.poll():
            raised[warning.kind, warning.since] = warning
        boundary += interval
        if i < n and trace.t[i] > boundary + interval:  # a gap: skip the empty polls
            boundary += math.floor((trace.t[i] - boundary) / interval) * interval
    return sorted(raised.values(), key=lambda warning: warning.since), states


def _score(
    trace: Trace, config: CircuitBreakerConfig, warnings: Sequence[Warning], states: bytearray
) -> ForecastScore:
    healthy = trace.healthy
    assert healthy is not None
    t, latency = trace.t, trace.latency
    runs = [match.span() for match in _UNHEALTHY_RUNS.finditer(healthy)]
    ends = [t[end] if end < len(t) else math.inf for _, end in runs]
    starts = [t[start] for start, _ in runs]

    def ended(warning: Warning) -> float:
        return math.inf if warning.ended is None else warning.ended

    outages = []
    lingering = 0
    for (start, end), outage_end in zip(runs, ends, strict=True):
        if start > 0 and states[start - 1] == OPEN_CODE:
            continue  # already open when it began: nothing to foresee
        first_open = states.find(OPEN_CODE, start, end)
        opened = None if first_open < 0 else t[first_open] + latency[first_open]
        horizon = math.inf if opened is None else opened
        foreseen = [
            warning for warning in warnings
            if warning.since < horizon and ended(warning) >= t[start]
        ]
        first = min(foreseen, key=lambda warning: warning.since, default=None)
        outages.append(OutageLead(
            t[start], opened, None if first is None else first.since,
            None if first is None else first.kind,
        ))
        if opened is None:
            lingering += sum(
                1 for warning in warnings
                if warning.since < outage_end + LINGER <= ended(warning)
            )
    false = 0
    for warning in warnings:
        index = bisect.bisect_right(t, warning.since) - 1
        if index >= 0 and not healthy[index]:
            continue  # raised during an outage
        next_outage = bisect.bisect_right(starts, warning.since)
        if next_outage < len(starts) and starts[next_outage] <= ended(warning):
            continue  # early: the outage came while it was up
        false += 1
    return ForecastScore(
        trace.source, config, tuple(outages), len(warnings), false, lingering,
        _healthy_seconds(trace),
    )


def _healthy_seconds(trace: Trace) -> float:
    """Trace time whose latest event was labelled healthy."""
    healthy = trace.healthy
    assert healthy is not None
    t = trace.t
    total = 0.0
    for i in range(len(t) - 1):
        if healthy[i]:
            total += t[i + 1] - t[i]
    return total
