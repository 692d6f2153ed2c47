"""Early warning on replayed traces: lead times and false warnings, per trace.

    python benchmarks/bench_forecast.py                  # the committed traces
    python benchmarks/bench_forecast.py sweep [SEEDS]    # fresh traces: 20, 50, 200 calls/s x seeds
    python benchmarks/bench_forecast.py poll [BREAKERS]  # microseconds a poll spends per breaker

Each trace is replayed through the default breaker (``CircuitBreakerConfig()`` as it
is when this runs) watched by a :class:`~recovery.forecast.Forecaster`
(:func:`~recovery.forecast.score_forecast`). Latency traces are replayed through the
defaults plus a slow-call rule (``SLOW_RULES``), since the defaults have none. Per
trace it prints the outages the breaker opened in, how many a warning came before,
the median lead time, the false warnings per hour of healthy time, the warnings still
up after a blip, and the default breaker's mean detection delay (from the outage's
first event to the opening) for comparison.

The goals (see docs): median lead >= 10 s on geometric ramps, a warning before the
opening on >= 9 in 10 linear ramps and on latency creep, <= 1 false warning an hour on
noise and traffic changes, nothing still up after a blip.
"""

from __future__ import annotations

import array
import importlib.util
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import attrs

from recovery.breaker import CircuitBreaker
from recovery.config import CircuitBreakerConfig
from recovery.forecast import Forecaster, ForecastScore, score_forecast
from recovery.trace import Trace, load_trace

TRACES = Path(__file__).resolve().parent / "traces"
SCENARIOS = (
    "ramp_geometric", "ramp_linear", "latency_creep", "noise_2pct", "noise_5pct",
    "traffic_double", "traffic_halve", "blips",
)
SLOW_RULES: dict[str, dict[str, Any]] = {
    "slow>=100ms@50%": {"slow_call_duration": 0.1, "slow_call_rate_threshold": 0.5},
    "slow>=40ms@20%": {"slow_call_duration": 0.04, "slow_call_rate_threshold": 0.2},
}


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "forecast_traces", TRACES / "generate_forecast.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def in_memory(rows: Iterable[tuple[float, int, float, int]], source: str) -> Trace:
    t: array.array[float] = array.array("d")
    latency: array.array[float] = array.array("d")
    ok, healthy = bytearray(), bytearray()
    for when, good, took, label in rows:
        t.append(when)
        ok.append(good)
        latency.append(took)
        healthy.append(label)
    return Trace(t, ok, latency, healthy, source)


def configs(name: str) -> dict[str, CircuitBreakerConfig]:
    defaults = CircuitBreakerConfig()
    if not name.startswith("latency"):
        return {"defaults": defaults}
    return {
        label: attrs.evolve(defaults, record_latency=True, **rule)
        for label, rule in SLOW_RULES.items()
    }


@attrs.frozen
class Row:
    trace: str
    config: str
    score: ForecastScore
    seconds: float


def detection_delay(score: ForecastScore) -> float | None:
    delays = [o.opened - o.start for o in score.outages if o.opened is not None]
    return statistics.fmean(delays) if delays else None


def run(traces: Iterable[tuple[str, Callable[[], Trace]]]) -> list[Row]:
    rows = []
    for name, load in traces:
        trace = load()
        for label, config in configs(name).items():
            began = time.perf_counter()
            score = score_forecast(trace, config)
            rows.append(Row(trace.source, label, score, time.perf_counter() - began))
    return rows


def fmt(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def _name(source: str) -> str:
    return Path(source).stem if source.endswith(".csv") else source


def table(rows: Sequence[Row]) -> str:
    head = (f"{'trace':<28} {'breaker':<16} {'opened':>6} {'warned':>6} {'median lead':>11} "
            f"{'min lead':>8} {'false/h':>7} {'linger':>6} {'breaker delay':>13} {'replay s':>8}")
    lines = [head, "-" * len(head)]
    for row in rows:
        score = row.score
        warned, opened = score.warned_before_open
        leads = score.leads
        lines.append(
            f"{_name(row.trace):<28} {row.config:<16} {opened:>6} {warned:>6} "
            f"{fmt(score.median_lead):>11} {fmt(min(leads) if leads else None):>8} "
            f"{fmt(score.false_warnings_per_hour, '.2f'):>7} {score.lingering:>6} "
            f"{fmt(detection_delay(score)):>13} {row.seconds:>8.2f}"
        )
    return "\n".join(lines)


def committed() -> list[tuple[str, Callable[[], Trace]]]:
    return [(name, lambda name=name: load_trace(TRACES / f"{name}.csv")) for name in SCENARIOS]


def sweep(seeds: int) -> list[tuple[str, Callable[[], Trace]]]:
    gen = generator()
    return [
        (name, lambda name=name, seed=seed, rate=rate: in_memory(
            gen.generate(name, seed=seed, rate=rate), f"{name}@{rate:g}/s#{seed}"))
        for name in SCENARIOS
        for rate in (20.0, 50.0, 200.0)
        for seed in range(1, seeds + 1)
    ]


def summary(rows: Sequence[Row]) -> str:
    """Per scenario and breaker: the goals' numbers over every trace of the sweep."""
    lines = []
    for name in SCENARIOS:
        for label in dict.fromkeys(row.config for row in rows if row.trace.startswith(name)):
            group = [row.score for row in rows
                     if row.trace.startswith(name + "@") and row.config == label]
            if not group:
                continue
            outages = [o for score in group for o in score.outages if o.opened is not None]
            leads = [max(o.lead or 0.0, 0.0) for o in outages]
            warned = sum(1 for o in outages if o.lead is not None)
            false = sum(score.false_warnings for score in group)
            hours = sum(score.healthy_seconds for score in group) / 3600
            linger = sum(score.lingering for score in group)
            lines.append(
                f"{name:<16} {label:<16} outages opened {len(outages):>3}, warned before "
                f"{warned:>3}, median lead {fmt(statistics.median(leads) if leads else None)}"
                f" s; false {false} in {hours:.2f} h ({false / hours if hours else 0:.2f}/h);"
                f" lingering {linger}"
            )
    return "\n".join(lines)


def poll_cost(breakers: int, polls: int = 200) -> str:
    """What one sample costs the forecaster's thread, per watched breaker (calls pay
    nothing: a breaker does not know it is watched)."""
    clock = _Clock()
    forecaster = Forecaster(clock=clock)
    watched = [
        CircuitBreaker(f"dep-{index}", CircuitBreakerConfig(record_latency=True), clock=clock)
        for index in range(breakers)
    ]
    for breaker in watched:
        forecaster.watch(breaker)
    began = time.perf_counter()
    for _ in range(polls):
        for breaker in watched:
            breaker.call(int)
        clock.now += forecaster.interval
        forecaster.poll()
    seconds = time.perf_counter() - began
    return (f"{breakers} breakers, {polls} polls: {seconds / polls / breakers * 1e6:.1f} us "
            "per breaker per poll (one call each included)")


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def main(argv: Sequence[str]) -> None:
    if argv and argv[0] == "poll":
        print(poll_cost(int(argv[1]) if len(argv) > 1 else 100))
    elif argv and argv[0] == "sweep":
        rows = run(sweep(int(argv[1]) if len(argv) > 1 else 2))
        print(table(rows))
        print()
        print(summary(rows))
    else:
        print(table(run(committed())))


if __name__ == "__main__":
    main(sys.argv[1:])
