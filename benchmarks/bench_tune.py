"""Threshold tuning as a benchmark: the synthetic traces through a few configs, and replay speed.

    pytest benchmarks/bench_tune.py                                   # timings + scores
    pytest benchmarks/bench_tune.py --benchmark-json=tune.json        # scores in extra_info
    python benchmarks/bench_tune.py                                   # the figures, printed

``test_tuning_report`` replays each trace of ``benchmarks/traces/`` (made by
``generate.py``) through each config of ``CONFIGS`` and stores the scores and
the cost in ``benchmark.extra_info``, so a benchmark JSON doubles as a tuning
report; it also asserts what each scenario is there to show. ``test_replay_speed``
measures events per second per config through the live window once a trace is
loaded (goal: >= 1,000,000/s with the compiled window), replay alone and replay
plus scoring; ``test_load_speed`` measures seconds per million CSV rows loaded.
"""

from __future__ import annotations

import functools
import importlib.util
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from recovery._impl import EXTENSION_ACTIVE
from recovery.config import CircuitBreakerConfig
from recovery.trace import Trace, load_trace
from recovery.tune import DEFAULT_WEIGHTS, cost, replay, score

TRACES = Path(__file__).resolve().parent / "traces"
SCENARIOS = ("steady", "outage", "brownout", "flapping", "latency_spike")
CONFIGS: Mapping[str, CircuitBreakerConfig] = {
    "defaults": CircuitBreakerConfig(),
    "fast": CircuitBreakerConfig(failure_threshold=3, timeout=5.0, success_threshold=1),
    "rate": CircuitBreakerConfig(
        failure_rate_threshold=0.5, failure_threshold=20, sliding_window_size=20,
        minimum_requests=10, timeout=5.0, retry_backoff_factor=1.0,
    ),
    "slow": CircuitBreakerConfig(slow_call_duration=1.0, slow_call_rate_threshold=0.5),
}
MILLION = 1_000_000


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("trace_generator", TRACES / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # NamedTuple needs its module registered
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def traces() -> dict[str, Trace]:
    return {name: load_trace(TRACES / f"{name}.csv") for name in SCENARIOS}


@pytest.fixture(scope="module")
def million_rows(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """About a million events of flapping traffic (the scenario with the most transitions)."""
    path = tmp_path_factory.mktemp("tune") / "million.csv"
    generator = _generator()
    generator.write(path, generator.generate("flapping", duration=MILLION / 20.0, rate=20.0))
    yield path


@pytest.fixture(scope="module")
def million(million_rows: Path) -> Trace:
    return load_trace(million_rows)


def test_committed_traces_are_what_the_generator_makes(tmp_path: Path) -> None:
    generator = _generator()
    generator.main(["--out", str(tmp_path)])
    for name in SCENARIOS:
        assert (tmp_path / f"{name}.csv").read_bytes() == (TRACES / f"{name}.csv").read_bytes()
        assert (TRACES / f"{name}.csv").stat().st_size <= MILLION


# What each scenario is there to show, checked on every run (config -> score -> test).
EXPECT: Mapping[str, Callable[[Mapping[str, Any]], bool]] = {
    "steady/rate": lambda s: s["opens"] == 0,  # 2% errors never reach a 50% rate
    "outage/defaults": lambda s: s["missed_outages"] == 0 and s["unrecovered"] == 0,
    "outage/fast": lambda s: s["missed_outages"] == 0 and s["unrecovered"] == 0,
    "brownout/rate": lambda s: s["missed_outages"] == 0,
    "latency_spike/defaults": lambda s: s["missed_outages"] == 1,  # no errors: unseen
    "latency_spike/slow": lambda s: s["missed_outages"] == 0 and s["false_opens"] == 0,
}


@pytest.mark.parametrize("config_name", list(CONFIGS))
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_tuning_report(
    benchmark: Any, traces: dict[str, Trace], scenario: str, config_name: str
) -> None:
    trace = traces[scenario]
    config = CONFIGS[config_name]

    def replay_and_score() -> dict[str, Any]:
        return score(trace, *replay(trace, config)).to_dict()

    scores = benchmark(replay_and_score)
    benchmark.extra_info.update(scores)
    benchmark.extra_info["cost"] = cost(score(trace, *replay(trace, config)), DEFAULT_WEIGHTS)
    assert scores["events"] == len(trace)
    expectation = EXPECT.get(f"{scenario}/{config_name}")
    if expectation is not None:
        assert expectation(scores), scores


def events_per_second(trace: Trace, run: Callable[[], object], repeat: int = 3) -> float:
    """Best of ``repeat`` timings (the least disturbed by the rest of the machine)."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return len(trace) / best


@pytest.mark.parametrize("config_name", list(CONFIGS))
def test_replay_speed(benchmark: Any, million: Trace, config_name: str) -> None:
    trace = million
    config = CONFIGS[config_name]
    admitted, states = benchmark(replay, trace, config)
    assert len(admitted) == len(states) == len(trace)
    replay_rate = events_per_second(trace, lambda: replay(trace, config))
    scored_rate = events_per_second(trace, lambda: replay_and_score(trace, config))
    benchmark.extra_info.update(
        events=len(trace),
        compiled=EXTENSION_ACTIVE,
        replay_events_per_second=round(replay_rate),
        replay_and_score_events_per_second=round(scored_rate),
    )
    if EXTENSION_ACTIVE:
        assert replay_rate >= MILLION, f"{replay_rate:,.0f} events/s"


def test_load_speed(benchmark: Any, million_rows: Path) -> None:
    loaded = benchmark.pedantic(load_trace, args=(million_rows,), rounds=2, iterations=1)
    started = time.perf_counter()
    load_trace(million_rows)
    seconds = time.perf_counter() - started
    benchmark.extra_info.update(
        rows=len(loaded), seconds_per_million_rows=round(seconds * MILLION / len(loaded), 3)
    )
    assert len(loaded) > 0.9 * MILLION


def replay_and_score(trace: Trace, config: CircuitBreakerConfig) -> object:
    return score(trace, *replay(trace, config))


def _cell(value: float | None) -> str:
    if value is None:
        return "-"
    return str(value) if isinstance(value, int) else f"{value:.2f}"


def main() -> None:
    """Print the figures without pytest: load time, speed per config, the tuning table."""
    import tempfile

    print(f"compiled window: {EXTENSION_ACTIVE}")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "million.csv"
        generator = _generator()
        generator.write(path, generator.generate("flapping", duration=MILLION / 20.0, rate=20.0))
        started = time.perf_counter()
        big = load_trace(path)
        seconds = time.perf_counter() - started
    print(f"load: {len(big):,} rows in {seconds:.2f} s = "
          f"{seconds * MILLION / len(big):.2f} s per million rows")
    for name, config in CONFIGS.items():
        replayed = events_per_second(big, functools.partial(replay, big, config))
        scored = events_per_second(big, functools.partial(replay_and_score, big, config))
        print(f"{name:>9}: replay {replayed:>13,.0f} events/s, "
              f"replay+score {scored:>12,.0f} events/s")
    print()
    columns = {
        "opens": "opens", "false_opens": "false opens", "missed_outages": "missed",
        "detection_delay_mean": "detect s", "rejected_healthy": "good rejected",
        "passed_unhealthy": "sent to dead", "recovery_delay_mean": "recover s",
        "unrecovered": "unrecovered",
    }
    keys = tuple(columns)
    print(f"{'trace/config':<24}" + "".join(f"{title:>14}" for title in columns.values())
          + f"{'cost':>8}")
    for scenario in SCENARIOS:
        trace = load_trace(TRACES / f"{scenario}.csv")
        for name, config in CONFIGS.items():
            scores = score(trace, *replay(trace, config))
            values = scores.to_dict()
            cells = "".join(f"{_cell(values[key]):>14}" for key in keys)
            print(f"{scenario + '/' + name:<24}{cells}{cost(scores, DEFAULT_WEIGHTS):>8g}")


if __name__ == "__main__":
    main()
