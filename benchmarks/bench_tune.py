"""Threshold tuning as a benchmark: the synthetic traces through a few configs, and speed.

    pytest benchmarks/bench_tune.py                             # timings + scores
    pytest benchmarks/bench_tune.py --benchmark-json=tune.json  # scores in extra_info
    python benchmarks/bench_tune.py                             # the figures, printed
    python benchmarks/bench_tune.py defaults                    # choose_defaults.py's table
    python benchmarks/bench_tune.py search                      # --search, a million events
    python benchmarks/bench_tune.py memory [ROWS]               # bytes a row (default 5 M)

``test_tuning_report`` replays each trace of ``benchmarks/traces/`` (made by
``generate.py``) through each config of ``CONFIGS`` and stores the scores and
the cost in ``benchmark.extra_info``, so a benchmark JSON doubles as a tuning
report; it also asserts what each scenario is there to show, and what the
defaults were chosen for (no false open on steady traffic, a hard outage
detected within 2 s). ``test_replay_speed`` measures events per second per
config through the live window once a trace is loaded (goal: >= 1,000,000/s
with the compiled window), replay alone and replay plus scoring;
``test_load_speed`` measures seconds per million CSV rows loaded;
``test_search_speed`` measures ``--search`` candidates per second;
``test_memory_per_row`` the peak memory of load + derived labels + one replay
per row of an unlabelled trace (``RECOVERY_BENCH_ROWS`` rows, 100,000 by
default; the goal of <= 40 bytes a row is asserted from a million rows up,
where the fixed cost of a read chunk no longer counts).
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from benchmarks import choose_defaults
from recovery._impl import EXTENSION_ACTIVE
from recovery.config import CircuitBreakerConfig
from recovery.trace import Trace, load_trace
from recovery.tune import (
    DEFAULT_WEIGHTS,
    LabelRule,
    StagedSearch,
    cost,
    explore,
    replay,
    score,
    search_space,
)

TRACES = Path(__file__).resolve().parent / "traces"
SCENARIOS = ("steady", "outage", "long_outage", "blip", "brownout", "flapping", "latency_spike")
OLD_DEFAULTS = {  # the first defaults, before the opening rule and the recovery were chosen
    "failure_threshold": 5, "minimum_requests": 10, "failure_rate_threshold": None,
    "timeout": 30.0, "retry_backoff_factor": 2.0, "max_retry_interval": 300.0,
}
CONFIGS: Mapping[str, CircuitBreakerConfig] = {
    "defaults": CircuitBreakerConfig(),
    "old_defaults": CircuitBreakerConfig(**OLD_DEFAULTS),
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
    # What the defaults were chosen for: no false open on steady traffic, and a hard
    # outage detected within 2 s; the old defaults opened 11 times on steady traffic.
    "steady/defaults": lambda s: s["opens"] == 0,
    "steady/old_defaults": lambda s: s["false_opens"] == 11,
    "outage/defaults": lambda s: (
        s["missed_outages"] == 0 and s["unrecovered"] == 0 and s["detection_delay_max"] <= 2.0
    ),
    "long_outage/defaults": lambda s: (
        s["missed_outages"] == 0 and s["detection_delay_max"] <= 2.0 and s["false_opens"] == 0
    ),
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


def search_rate(trace: Trace, limit: int) -> tuple[float, int, str]:
    """``--search`` on ``trace`` for ``limit`` candidates: (candidates/s, explored, chosen)."""
    found = explore(
        trace, [], search=StagedSearch(*search_space(trace)), budget=float("inf"), limit=limit
    )
    chosen = found.recommended.candidate.code if found.recommended else "-"
    return found.explored / found.seconds, found.explored, chosen


def test_search_speed(benchmark: Any, traces: dict[str, Trace]) -> None:
    trace = traces["outage"]
    rate, explored, _ = benchmark.pedantic(search_rate, args=(trace, 200), rounds=1)
    benchmark.extra_info.update(
        events=len(trace), candidates=explored, candidates_per_second=round(rate)
    )
    assert explored == 200


def test_search_speed_on_a_million_events(benchmark: Any, million: Trace) -> None:
    """A day of traffic at ~12 calls/s: candidates per second once labelled."""
    trace = LabelRule().label(Trace(million.t, million.ok, million.latency))
    rate, explored, _ = benchmark.pedantic(search_rate, args=(trace, 5), rounds=1)
    benchmark.extra_info.update(
        events=len(trace), candidates=explored, candidates_per_second=round(rate, 1)
    )


def write_unlabelled(path: Path, rows: int) -> None:
    """About ``rows`` events of flapping traffic without a healthy column (labels derived)."""
    generator = _generator()
    events = generator.generate("flapping", duration=rows / 20.0, rate=20.0)
    generator.write(path, events, labels=False)


def tune_peak_bytes_per_row(path: Path) -> tuple[int, float, float]:
    """``tune TRACE`` as a user runs it (load, derived labels, the built-in candidates,
    the table) under tracemalloc: (rows, peak bytes a row, seconds)."""
    import argparse
    import contextlib
    import io

    from recovery import tune

    parser = argparse.ArgumentParser()
    tune.add_arguments(parser)
    args = parser.parse_args([str(path)])
    started = time.perf_counter()
    tracemalloc.start()
    try:
        with contextlib.redirect_stdout(io.StringIO()) as out:
            assert tune.run(args) == 0
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    rows = int(out.getvalue().split(" events")[0].rsplit(" ", 1)[1].replace(",", ""))
    return rows, peak / rows, time.perf_counter() - started


def test_memory_per_row(benchmark: Any, tmp_path: Path) -> None:
    rows = int(os.environ.get("RECOVERY_BENCH_ROWS", "100000"))
    path = tmp_path / "unlabelled.csv"
    write_unlabelled(path, rows)
    loaded, per_row, _ = benchmark.pedantic(tune_peak_bytes_per_row, args=(path,), rounds=1)
    benchmark.extra_info.update(rows=loaded, peak_bytes_per_row=round(per_row, 1))
    if loaded >= MILLION:
        assert per_row <= 40, f"{per_row:.1f} bytes a row"


def _cell(value: float | None) -> str:
    if value is None:
        return "-"
    return str(value) if isinstance(value, int) else f"{value:.2f}"


def main(argv: list[str]) -> None:
    """Print the figures without pytest (see the module docstring for the commands)."""
    command = argv[0] if argv else "all"
    if command == "defaults":
        print("\n".join(choose_defaults.table()))
        return
    if command == "memory":
        rows = int(argv[1]) if len(argv) > 1 else 5 * MILLION
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "unlabelled.csv"
            write_unlabelled(path, rows)
            loaded, per_row, seconds = tune_peak_bytes_per_row(path)
        print(f"tune on {loaded:,} unlabelled rows: peak {per_row:.1f} bytes a row "
              f"({per_row * loaded / 2**20:,.0f} MiB, tracemalloc), {seconds:.1f} s")
        return
    if command == "search":
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "million.csv"
            write_unlabelled(path, MILLION)
            started = time.perf_counter()
            trace = LabelRule().label(load_trace(path))
            ready = time.perf_counter() - started
        for name in ("outage", "flapping"):
            rate, explored, _ = search_rate(load_trace(TRACES / f"{name}.csv"), 2000)
            print(f"--search on {name}.csv: {rate:,.0f} candidates/s ({explored:,} explored)")
        rate, explored, chosen = search_rate(trace, 50)
        print(f"--search on {len(trace):,} events: loaded and labelled in {ready:.1f} s, then "
              f"{rate:.1f} candidates/s; {explored} candidates (a recommendation) after "
              f"{ready + explored / rate:.1f} s: {chosen}")
        return
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
        print(f"{name:>12}: replay {replayed:>13,.0f} events/s, "
              f"replay+score {scored:>12,.0f} events/s")
    print()
    columns = {
        "opens": "opens", "false_opens": "false_opens", "missed_outages": "missed_outages",
        "detection_delay_mean": "detect_mean", "rejected_healthy": "rejected_healthy",
        "passed_unhealthy": "passed_unhealthy", "recovery_delay_mean": "recover_mean",
        "unrecovered": "unrecovered",
    }
    keys = tuple(columns)
    print(f"{'trace/config':<28}" + "".join(f"{title:>17}" for title in columns.values())
          + f"{'cost':>8}")
    for scenario in SCENARIOS:
        trace = load_trace(TRACES / f"{scenario}.csv")
        for name, config in CONFIGS.items():
            scores = score(trace, *replay(trace, config))
            values = scores.to_dict()
            cells = "".join(f"{_cell(values[key]):>17}" for key in keys)
            print(f"{scenario + '/' + name:<28}{cells}{cost(scores, DEFAULT_WEIGHTS):>8g}")


if __name__ == "__main__":
    main(sys.argv[1:])
