"""Cost of the recovery manager on the call path, and of recording a failure.

    python benchmarks/bench_manager.py                        # prints the numbers below
    pytest benchmarks/bench_manager.py --benchmark-only       # pytest-benchmark tables
    pytest benchmarks/bench_manager.py --benchmark-disable    # a quick smoke run

Goals:

- ``execute_with_recovery`` adds at most 2x the breaker's own per-call overhead:
  (erw - bare) <= 2 * (breaker.call - bare), all on a trivial function.
- ``record_failure`` returns in under 10 us while an episode of the plugin runs
  (the common case under a storm of failures: each one is only counted).
- 1,000 plugins without a health check failing at once, on 2 workers with
  ``verify_timeout=1``, are all out of REPAIRING within ``verify_timeout`` plus a
  second (real clock): waiting for a trial holds no worker.

The script prints medians of several timeit repeats, in ns per call, for the live
window (compiled unless ``RECOVERY_NO_EXTENSIONS=1``).
"""

from __future__ import annotations

import logging
import statistics
import threading
import time
import timeit
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from recovery._impl import EXTENSION_ACTIVE
from recovery.alerts import AlertThresholds
from recovery.breaker import CircuitBreaker
from recovery.failures import FailureInfo, FailureType
from recovery.manager import RecoveryConfig, RecoveryManager
from recovery.plugins import PluginRegistry
from recovery.state import CircuitBreakerState
from recovery.strategies import CustomStrategy, RecoveryContext

FAILURE = FailureInfo(FailureType.TIMEOUT, message="slow")


class _NoAudit:
    def log_failure_recovery(
        self, plugin_name: str, failure_type: str, recovery_action: str, success: bool
    ) -> None:
        pass


def work() -> int:
    return 1


class _Idle:
    """A plugin nobody calls: only a trial call could verify it."""

    def __init__(self, name: str) -> None:
        self.name = name

    def initialize(self, config: Any) -> None:
        pass

    def shutdown(self) -> None:
        pass


def _manager(**config: Any) -> RecoveryManager:
    quiet = logging.getLogger("recovery.bench")
    quiet.setLevel(logging.CRITICAL)
    registry = PluginRegistry()
    for name in ("p", "q"):
        registry.register(_Idle(name))
    return RecoveryManager(
        registry,
        _NoAudit(),
        RecoveryConfig(enable_health_checking=False, **config),
        quiet,
    )


class EpisodeInFlight:
    """A started manager whose plugin "p" is in an episode until :meth:`close`."""

    def __init__(self) -> None:
        self.release = threading.Event()
        started = threading.Event()

        def hold(name: str, failure: FailureInfo, ctx: RecoveryContext) -> None:
            started.set()
            self.release.wait(60)

        self.rm = _manager(
            plugin_recovery_strategies={"p": "hold"},
            alert_thresholds=AlertThresholds(consecutive_failures=None),
            strategy_timeout=120.0,
        )
        self.rm.register_strategy("hold", CustomStrategy("hold", 1, lambda f: True, hold))
        self.rm.register_plugin("p")
        self.rm.start()
        self.rm.record_failure("p", FAILURE)
        if not started.wait(5):
            raise RuntimeError("the episode did not start")

    def close(self) -> None:
        self.release.set()
        self.rm.stop(timeout=5.0)


# -- pytest-benchmark ---------------------------------------------------------------------------


@pytest.fixture
def manager() -> Iterator[RecoveryManager]:
    rm = _manager()
    rm.register_plugin("p")
    rm.start()
    yield rm
    rm.stop()


@pytest.fixture
def episode() -> Iterator[EpisodeInFlight]:
    running = EpisodeInFlight()
    yield running
    running.close()


def test_bare_call(benchmark: Any) -> None:
    assert benchmark(work) == 1


def test_breaker_call(benchmark: Any) -> None:
    breaker = CircuitBreaker("p")
    assert benchmark(breaker.call, work) == 1


def test_execute_with_recovery(benchmark: Any, manager: RecoveryManager) -> None:
    assert benchmark(manager.execute_with_recovery, "p", work) == 1


def test_execute_with_recovery_served_by_fallback_while_repairing(
    benchmark: Any, episode: EpisodeInFlight
) -> None:
    rm = _manager()
    rm.register_plugin("q", fallback=lambda: 2)
    rm.breaker("q").begin_repair()
    assert benchmark(rm.execute_with_recovery, "q", work) == 2


def test_record_failure_while_an_episode_runs(benchmark: Any, episode: EpisodeInFlight) -> None:
    benchmark(episode.rm.record_failure, "p", FAILURE)
    status = episode.rm.get_recovery_status()["plugins"]["p"]["recovery"]
    assert status["in_progress"] is True
    assert status["episode_failures"] >= 2


# -- the script ----------------------------------------------------------------------------------


def _ns_per_call(fn: Callable[[], object], number: int, repeat: int = 7) -> float:
    """Median over ``repeat`` runs of ``number`` calls, in ns per call."""
    runs = timeit.repeat(fn, number=number, repeat=repeat)
    return statistics.median(runs) / number * 1e9


def main() -> None:
    number = 200_000
    rm = _manager()
    rm.register_plugin("p")
    breaker = CircuitBreaker("p")
    erw, call = rm.execute_with_recovery, breaker.call

    bare = _ns_per_call(lambda: work(), number)
    through_breaker = _ns_per_call(lambda: call(work), number)
    through_manager = _ns_per_call(lambda: erw("p", work), number)
    breaker_overhead = through_breaker - bare
    manager_overhead = through_manager - bare
    print(f"window: {'compiled' if EXTENSION_ACTIVE else 'pure Python'}")
    print(f"bare call                 {bare:8.1f} ns")
    print(f"breaker.call              {through_breaker:8.1f} ns  (+{breaker_overhead:.1f})")
    print(f"execute_with_recovery     {through_manager:8.1f} ns  (+{manager_overhead:.1f})")
    print(
        f"erw overhead / breaker overhead = {manager_overhead / breaker_overhead:.2f} "
        "(goal <= 2)"
    )

    running = EpisodeInFlight()
    try:
        record = running.rm.record_failure
        mean = _ns_per_call(lambda: record("p", FAILURE), 50_000)
        samples = []
        clock = time.perf_counter_ns
        for _ in range(20_000):
            start = clock()
            record("p", FAILURE)
            samples.append(clock() - start)
        samples.sort()
        p99 = samples[int(len(samples) * 0.99)]
        print(
            f"record_failure during an episode: mean {mean / 1000:.2f} us, "
            f"p99 {p99 / 1000:.2f} us (goal < 10 us)"
        )
    finally:
        running.close()


def seconds_to_leave_repairing(plugins: int = 1000, verify_timeout: float = 1.0) -> float:
    """Real seconds from ``plugins`` failures at once (2 workers, no health checks, no
    traffic) until no breaker is REPAIRING."""
    names = [f"p{i}" for i in range(plugins)]
    registry = PluginRegistry()
    rm = RecoveryManager(registry, _NoAudit(), RecoveryConfig(
        enable_health_checking=False, recovery_workers=2, verify_timeout=verify_timeout,
        default_recovery_strategy="noop", enable_alerting=False))
    rm.register_strategy("noop", CustomStrategy("noop", 1, lambda f: True,
                                                lambda n, f, c: None))
    for name in names:
        registry.register(_Idle(name))
        rm.register_plugin(name)
    breakers = [rm.breaker(name) for name in names]
    with rm:
        start = time.monotonic()
        for name in names:
            rm.record_failure(name, FAILURE)
        while any(b.state is CircuitBreakerState.REPAIRING for b in breakers):
            time.sleep(0.01)
        return time.monotonic() - start


if __name__ == "__main__":
    main()
    took = seconds_to_leave_repairing()
    print(f"1,000 plugins failing at once, 2 workers, verify_timeout=1: out of REPAIRING in "
          f"{took:.2f} s (goal <= 2 s)")
