"""Cost of reading a recovery manager's status: what every scrape and dashboard tick pays.

    python benchmarks/bench_status.py                        # prints the numbers below
    pytest benchmarks/bench_status.py --benchmark-only       # pytest-benchmark tables
    pytest benchmarks/bench_status.py --benchmark-disable    # a quick smoke run

A manager of ``PLUGINS`` plugins (a quarter health-checked, a quarter with a
strategy run and a finished episode) is read as ``status()`` (the typed values
the collectors, the demo and the dashboard read), as ``get_recovery_status()``
(their JSON-ready dict) and as one Prometheus scrape (``RecoveryCollector.collect()``,
the manager's plugins only). The script prints the median of several timeit
repeats, in microseconds per read, for the live window (compiled unless
``RECOVERY_NO_EXTENSIONS=1``).
"""

from __future__ import annotations

import logging
import statistics
import timeit
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from recovery._impl import EXTENSION_ACTIVE
from recovery.failures import FailureInfo
from recovery.manager import RecoveryConfig, RecoveryManager
from recovery.plugins import PluginRegistry
from recovery.prometheus import RecoveryCollector
from recovery.strategies import CustomStrategy

PLUGINS = 100


class _NoAudit:
    def log_failure_recovery(
        self, plugin_name: str, failure_type: str, recovery_action: str, success: bool
    ) -> None:
        pass


def _manager() -> RecoveryManager:
    """A started manager whose plugins show every part of the status."""
    quiet = logging.getLogger("recovery.bench")
    quiet.setLevel(logging.CRITICAL)
    rm = RecoveryManager(
        PluginRegistry(), _NoAudit(),
        # A short verify_timeout: no call comes to verify the fixed plugins by.
        RecoveryConfig(enable_health_checking=True, health_check_interval=3600.0,
                       default_recovery_strategy="fix", verify_timeout=0.05),
        quiet,
    )
    rm.register_strategy("fix", CustomStrategy("fix", 1, lambda f: True, lambda n, f, c: None))
    rm.start()
    for index in range(PLUGINS):
        name = f"plugin-{index}"
        rm.register_dependency(name, health_check=(lambda: True) if index % 4 == 0 else None)
        rm.execute_with_recovery(name, lambda: None)
        if index % 4 == 1:
            rm.record_failure(name, FailureInfo("error"))
    rm.wait_idle(30.0)
    return rm


def _scrape(collector: RecoveryCollector) -> Callable[[], object]:
    return lambda: list(collector.collect())


@pytest.fixture(scope="module")
def manager() -> Iterator[RecoveryManager]:
    rm = _manager()
    yield rm
    rm.stop()


def test_status(benchmark: Any, manager: RecoveryManager) -> None:
    assert len(benchmark(manager.status).plugins) == PLUGINS


def test_get_recovery_status(benchmark: Any, manager: RecoveryManager) -> None:
    assert len(benchmark(manager.get_recovery_status)["plugins"]) == PLUGINS


def test_prometheus_scrape(benchmark: Any, manager: RecoveryManager) -> None:
    assert benchmark(_scrape(RecoveryCollector(manager, breakers=False)))


def _us_per_call(fn: Callable[[], object], number: int, repeat: int = 9) -> float:
    """Median over ``repeat`` runs of ``number`` calls, in microseconds per call."""
    runs = timeit.repeat(fn, number=number, repeat=repeat)
    return statistics.median(runs) / number * 1e6


def main() -> None:
    rm = _manager()
    try:
        collector = RecoveryCollector(rm, breakers=False)
        print(f"window: {'compiled' if EXTENSION_ACTIVE else 'pure Python'}, "
              f"{PLUGINS} plugins")
        print(f"status()                  {_us_per_call(rm.status, 50):9.1f} us")
        print(f"get_recovery_status()     {_us_per_call(rm.get_recovery_status, 50):9.1f} us")
        print(f"Prometheus scrape         {_us_per_call(_scrape(collector), 50):9.1f} us")
    finally:
        rm.stop()


if __name__ == "__main__":
    main()
