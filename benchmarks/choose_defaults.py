"""How the bare breaker's defaults were chosen: candidates replayed through web-client
scenarios and the committed traces.

    python benchmarks/choose_defaults.py          # the table that chose them
    python benchmarks/choose_defaults.py --all    # every candidate, not only the best

The commonest user of a bare ``CircuitBreakerConfig()`` is a web client calling an
upstream tens of times a second. At 50 calls a second (one every 20 ms, each failing or
succeeding at once) the defaults must meet, on a fake clock:

- ``blip``: every call fails for 1 s -> CLOSED at most 5 s after the blip ends;
- ``outage``: every call fails for 20 s -> CLOSED at most 5 s after the upstream is back,
  and at most 8 calls reach it between the trip and its return;
- ``noise``: 5 % of calls fail at random for 10 minutes -> the circuit never opens;
- ``hour``: every call fails for an hour -> at most one call a minute reaches it,
  averaged over the hour after its first 5 minutes.

One more, where the contract is silent: that the 20 s outage closes soon must not be luck
of where the back-off's periods fall, so every outage of 5 to 30 s must be CLOSED within
10 s of the return (:data:`NEARBY_OUTAGES`).

Among the candidates that meet all five, the default is the one of lowest cost (``tune``'s
default cost: good calls rejected plus calls sent to a dead dependency) summed over the
project's seven traces (``benchmarks/traces``) and the four scenarios' own calls. The tests
(``tests/breaker/test_defaults.py``) drive ``CircuitBreakerConfig()`` through the same
scenarios call by call, on each window, with :func:`drive`.
"""

from __future__ import annotations

import argparse
import array
import functools
import itertools
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from recovery.breaker import CircuitBreaker
from recovery.config import CircuitBreakerConfig
from recovery.errors import CircuitOpenError
from recovery.state import CLOSED_CODE, OPEN_CODE
from recovery.testing import FakeClock
from recovery.trace import Trace, load_trace
from recovery.tune import DEFAULT_WEIGHTS, cost, replay, score

TRACES = Path(__file__).resolve().parent / "traces"
PROJECT_TRACES = (
    "steady", "outage", "long_outage", "blip", "brownout", "flapping", "latency_spike",
)
RATE = 50.0
"""Calls a second in every scenario."""
WARMUP = 60.0
"""Healthy seconds before each fault, so the window is full of successes when it starts."""


@attrs.frozen
class Scenario:
    """``seconds`` of calls at ``RATE``; a call at ``t`` fails when ``fails(t)``; the
    dependency is down in ``[down, up)`` (None: never down, only noisy)."""

    name: str
    seconds: float
    fails: Callable[[float], bool]
    down: float | None = None
    up: float | None = None

    def trace(self) -> Trace:
        """The scenario's calls as a trace (latency 0: each fails or succeeds at once),
        labelled unhealthy inside ``[down, up)``; made once."""
        return _trace(self)


@functools.cache
def _trace(self: Scenario) -> Trace:
    count = round(self.seconds * RATE)
    times = array.array("d", (i / RATE for i in range(count)))
    ok = bytearray(0 if self.fails(t) else 1 for t in times)
    down, up = self.down, self.up
    healthy = bytearray(
        0 if down is not None and up is not None and down <= t < up else 1 for t in times
    )
    return Trace(times, ok, array.array("d", bytes(8 * count)), healthy, self.name)


def _down_between(start: float, end: float) -> Callable[[float], bool]:
    return lambda t: start <= t < end


def _noise(share: float, seed: int = 1) -> Callable[[float], bool]:
    """Fails ``share`` of the calls, the same calls every time (one draw per call time)."""
    draws: dict[float, bool] = {}
    rng = random.Random(seed)

    def fails(t: float) -> bool:
        if t not in draws:
            draws[t] = rng.random() < share
        return draws[t]

    return fails


def _outage(name: str, seconds: float, after: float) -> Scenario:
    down, up = WARMUP, WARMUP + seconds
    return Scenario(name, up + after, _down_between(down, up), down, up)


SCENARIOS: Mapping[str, Scenario] = {
    "blip": _outage("blip", 1.0, after=60.0),
    "outage": _outage("outage", 20.0, after=60.0),
    "noise": Scenario("noise", 600.0, _noise(0.05)),
    "hour": _outage("hour", 3600.0, after=60.0),
}
NEARBY_OUTAGES: tuple[Scenario, ...] = tuple(
    _outage(f"outage-{seconds}s", float(seconds), after=60.0) for seconds in range(5, 31)
)
"""Outages of 5 to 30 s: that the 20 s one closes soon is not luck of the back-off's phase
(each must be CLOSED within 10 s of the return, twice the 20 s outage's bound)."""


# -- what a run of a scenario shows ---------------------------------------------------------


@attrs.frozen
class Figures:
    """One config through the four scenarios: the numbers the requirements are about."""

    blip_closed_after: float | None
    outage_closed_after: float | None
    outage_calls_after_trip: int
    noise_opens: int
    hour_calls_a_minute: float
    worst_closed_after: float | None

    @property
    def meets(self) -> bool:
        """Whether every requirement of the module docstring holds."""
        return (
            self.blip_closed_after is not None and self.blip_closed_after <= 5.0
            and self.outage_closed_after is not None and self.outage_closed_after <= 5.0
            and self.outage_calls_after_trip <= 8
            and self.noise_opens == 0
            and self.hour_calls_a_minute <= 1.0
            and self.worst_closed_after is not None and self.worst_closed_after <= 10.0
        )


def closed_after(trace: Trace, states: bytes, up: float) -> float | None:
    """Seconds from ``up`` until the breaker is CLOSED for good (0: it already was at
    ``up``); None when it is not CLOSED at the end."""
    last_other = max(
        (i for i, state in enumerate(states) if state != CLOSED_CODE), default=-1
    )
    if last_other == len(states) - 1:
        return None
    if last_other < 0 or trace.t[last_other] < up:
        return 0.0
    return trace.t[last_other + 1] - up  # the call that closed it ended at once


def calls_after_trip(trace: Trace, admitted: bytes, states: bytes, down: float, up: float) -> int:
    """Calls that reached the dependency in ``[down, up)`` after the breaker first opened."""
    first_open = states.find(OPEN_CODE)
    if first_open < 0:
        return sum(1 for i, t in enumerate(trace.t) if down <= t < up and admitted[i])
    return sum(
        admitted[i] for i in range(first_open + 1, len(trace)) if trace.t[i] < up
    )


def calls_a_minute(trace: Trace, admitted: bytes, since: float, until: float) -> float:
    """Calls admitted in ``[since, until)``, a minute on average."""
    calls = sum(admitted[i] for i, t in enumerate(trace.t) if since <= t < until)
    return calls / ((until - since) / 60.0)


def opens(states: bytes) -> int:
    """CLOSED -> OPEN transitions (the state before the first call is CLOSED)."""
    return (bytes([CLOSED_CODE]) + states).count(bytes([CLOSED_CODE, OPEN_CODE]))


Run = Callable[[Scenario, CircuitBreakerConfig], tuple[Trace, bytes, bytes]]
"""Runs a scenario through a fresh breaker: ``(trace, admitted, states)``, a byte per call."""


def replayed(scenario: Scenario, config: CircuitBreakerConfig) -> tuple[Trace, bytes, bytes]:
    """:data:`Run` by the breaker's replay (fast: what the table uses)."""
    trace = scenario.trace()
    return (trace, *replay(trace, config))


def figures(config: CircuitBreakerConfig, run: Run = replayed) -> Figures:
    blip, _, blip_states = run(SCENARIOS["blip"], config)
    outage, outage_admitted, outage_states = run(SCENARIOS["outage"], config)
    _, _, noise_states = run(SCENARIOS["noise"], config)
    hour, hour_admitted, _ = run(SCENARIOS["hour"], config)
    out = SCENARIOS["outage"]
    assert out.down is not None and out.up is not None
    hour_down = SCENARIOS["hour"].down
    hour_up = SCENARIOS["hour"].up
    assert hour_down is not None and hour_up is not None
    return Figures(
        blip_closed_after=closed_after(blip, blip_states, SCENARIOS["blip"].up or 0.0),
        outage_closed_after=closed_after(outage, outage_states, out.up),
        outage_calls_after_trip=calls_after_trip(
            outage, outage_admitted, outage_states, out.down, out.up
        ),
        noise_opens=opens(noise_states),
        hour_calls_a_minute=calls_a_minute(hour, hour_admitted, hour_down + 300.0, hour_up),
        worst_closed_after=_worst(
            closed_after(*run(nearby, config)[::2], nearby.up or 0.0) for nearby in NEARBY_OUTAGES
        ),
    )


def _worst(delays: Iterable[float | None]) -> float | None:
    """The longest delay; None if any never closed."""
    worst = 0.0
    for delay in delays:
        if delay is None:
            return None
        worst = max(worst, delay)
    return worst


def drive(
    breaker_class: Callable[..., CircuitBreaker],
) -> Run:
    """:data:`Run` call by call: a breaker of ``breaker_class`` on a fake clock, each call
    made at its time through ``breaker.call`` (what the tests use, on each window)."""

    def run(scenario: Scenario, config: CircuitBreakerConfig) -> tuple[Trace, bytes, bytes]:
        trace = scenario.trace()
        # Started at 0, the clock reads each call's time exactly as the trace writes it
        # (t - now is exact between neighbouring times), so a replay sees the same floats.
        clock = FakeClock(0.0)
        breaker = breaker_class("upstream", config, clock=clock)
        admitted, states = bytearray(), bytearray()

        def upstream(ok: int) -> None:
            if not ok:
                raise ConnectionError("refused")

        for t, ok in zip(trace.t, trace.ok, strict=True):
            clock.advance(t - clock.monotonic())
            try:
                breaker.call(upstream, ok)
            except CircuitOpenError:
                admitted.append(0)
            except ConnectionError:
                admitted.append(1)
            else:
                admitted.append(1)
            states.append(breaker.state_code)
        return trace, bytes(admitted), bytes(states)

    return run


# -- the candidates and the table ----------------------------------------------------------

AXES: Mapping[str, Sequence[Any]] = {
    "failure_threshold": (10, 20),
    "minimum_requests": (10, 20),
    "failure_rate_threshold": (0.5, None),
    "timeout": (1.0, 2.0, 3.0, 5.0, 30.0),
    "retry_backoff_factor": (1.2, 1.5, 2.0),
    "max_retry_interval": (60.0, 120.0, 300.0),
}
"""The fields the defaults fix, and the values tried for each."""
OLD_DEFAULTS: Mapping[str, Any] = {
    "failure_threshold": 20, "minimum_requests": 20, "failure_rate_threshold": 0.5,
    "timeout": 30.0, "retry_backoff_factor": 2.0, "max_retry_interval": 300.0,
}


def candidates() -> Iterable[dict[str, Any]]:
    for values in itertools.product(*AXES.values()):
        yield dict(zip(AXES, values, strict=True))


def replay_cost(config: CircuitBreakerConfig, traces: Iterable[Trace]) -> float:
    """``tune``'s default cost (good calls rejected plus calls sent to a dead dependency),
    summed over ``traces``."""
    return sum(
        cost(score(trace, *replay(trace, config)), DEFAULT_WEIGHTS) or 0.0 for trace in traces
    )


def _cell(value: float | None) -> str:
    return "never" if value is None else f"{value:.2f}"


def table(show_all: bool = False, best: int = 12) -> list[str]:
    """The candidates, those that meet every requirement first, cheapest first (the cost
    over the project's traces and the scenarios' own)."""
    traces = [load_trace(TRACES / f"{name}.csv") for name in PROJECT_TRACES]
    scenarios = [scenario.trace() for scenario in SCENARIOS.values()]
    rows = []
    for fields in candidates():
        config = CircuitBreakerConfig(**fields)
        on_traces = replay_cost(config, traces)
        total = on_traces + replay_cost(config, scenarios)
        rows.append((fields, figures(config), on_traces, total))
    rows.sort(key=lambda row: (not row[1].meets, row[3]))
    chosen = rows[0][0]
    head = (
        "| failure_threshold | minimum_requests | failure_rate_threshold | timeout "
        "| retry_backoff_factor | max_retry_interval | blip: closed after (s) "
        "| outage: closed after (s) | outage: calls after trip | noise: opens "
        "| hour: calls a minute | 5-30 s outages: worst closed after (s) | meets all "
        "| cost, 7 traces | cost, with the scenarios |"
    )
    lines = [head, "|" + "---:|" * 15]
    meeting = sum(row[1].meets for row in rows)
    shown = rows if show_all else [
        *rows[:best], *(row for row in rows[best:] if row[0] == OLD_DEFAULTS)
    ]
    for fields, result, on_traces, total in shown:
        mark = "**" if fields == chosen else ""
        cells = [
            *(str(fields[key]) for key in AXES),
            _cell(result.blip_closed_after), _cell(result.outage_closed_after),
            str(result.outage_calls_after_trip), str(result.noise_opens),
            f"{result.hour_calls_a_minute:.2f}", _cell(result.worst_closed_after),
            "yes" if result.meets else "no", f"{on_traces:,.0f}", f"{total:,.0f}",
        ]
        lines.append("| " + " | ".join(f"{mark}{cell}{mark}" for cell in cells) + " |")
    lines.append("")
    lines.append(
        f"{len(rows)} candidates, {meeting} meet every requirement; chosen (bold): "
        + ", ".join(f"{key}={value!r}" for key, value in chosen.items())
        + ("" if show_all else "; --all for every candidate")
    )
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--all", action="store_true", help="every candidate")
    args = parser.parse_args(argv)
    print("\n".join(table(show_all=args.all)))


if __name__ == "__main__":
    main()
