"""Health monitor under load: schedule lag and CPU with many plugins, some of them hung.

Run as a script for the full measurement (SPEC §8 / issue 4)::

    python benchmarks/bench_health.py [--seconds 10] [--plugins 1000] [--hung 50]

1,000 plugins with trivial checks at a 1 s interval on 8 threads: the lag between
each check's planned and actual start (p50/p99, from the check's own first line)
and the process CPU per wall second. Goals: p99 lag <= 50 ms, CPU <= 10% of one
core. Then again with 50 plugins whose check hangs for the whole run (timeout
0.1 s): the other 950 must keep the same p99, and ``stuck_threads`` must be 50.

Why a 0.1 s timeout: a hung check holds its worker until its timeout, so the 50
hung checks, which all start within the first interval, hold 50 x timeout worker
seconds before every one of them has been abandoned and replaced. At 0.1 s that is
5 worker-seconds (a few late checks in the first second); at 1 s it is ~6 s of a
saturated 8-thread pool, and p99 misses the goal (``--timeout 1`` shows it).

Collected by pytest too (``pytest benchmarks/bench_health.py --benchmark-disable``):
a run of a fraction of a second that checks the same properties loosely, so the
script cannot rot.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import attrs

from recovery.health import HealthCheckConfig, HealthCheckResult, HealthMonitor


@attrs.frozen
class Report:
    plugins: int
    hung: int
    seconds: float
    checks: int
    expected_checks: int
    p50_lag_ms: float
    p99_lag_ms: float
    max_lag_ms: float
    cpu_percent: float
    stuck_threads: int

    def line(self) -> str:
        return (
            f"{self.plugins} plugins ({self.hung} hung), {self.seconds:.0f}s: "
            f"{self.checks}/{self.expected_checks} checks, "
            f"lag p50 {self.p50_lag_ms:.2f} ms, p99 {self.p99_lag_ms:.2f} ms, "
            f"max {self.max_lag_ms:.2f} ms, CPU {self.cpu_percent:.1f}% of one core, "
            f"stuck_threads {self.stuck_threads}"
        )


def _ignore(name: str, result: HealthCheckResult) -> None:
    pass


def _recorder(starts: list[float]) -> Callable[[], bool]:
    def check() -> bool:
        starts.append(time.monotonic())
        return True

    return check


def _percentile(ordered: list[float], fraction: float) -> float:
    return ordered[min(int(fraction * len(ordered)), len(ordered) - 1)]


def run(
    *,
    plugins: int = 1000,
    hung: int = 0,
    seconds: float = 10.0,
    interval: float = 1.0,
    timeout: float = 0.1,
    threads: int = 8,
) -> Report:
    """Watch ``plugins`` plugins for ``seconds``; the first ``hung`` of them hang."""
    config = HealthCheckConfig(interval=interval, timeout=timeout)
    release = threading.Event()

    def hang() -> bool:
        release.wait(seconds + 60.0)
        return True

    starts: list[list[float]] = [[] for _ in range(plugins)]
    anchors: list[float] = []
    monitor = HealthMonitor(concurrency=threads)
    monitor.start()
    try:
        for index in range(plugins):
            name = f"plugin-{index}"
            check = hang if index < hung else _recorder(starts[index])
            monitor.watch(name, check, config, on_failure_limit=_ignore, on_healthy=_ignore)
            anchor = monitor.next_check(name)
            assert anchor is not None
            anchors.append(anchor)
        cpu_start, wall_start = time.process_time(), time.monotonic()
        time.sleep(seconds)
        cpu = time.process_time() - cpu_start
        wall = time.monotonic() - wall_start
        stuck = monitor.stuck_threads
    finally:
        release.set()
        monitor.stop(timeout=5.0)
    lags: list[float] = []
    for index in range(hung, plugins):
        for started in starts[index]:
            # The grid is anchor + k * interval (no drift); k is the nearest slot.
            slot = round((started - anchors[index]) / interval)
            lags.append(started - (anchors[index] + slot * interval))
    lags.sort()
    healthy = plugins - hung
    return Report(
        plugins=plugins,
        hung=hung,
        seconds=seconds,
        checks=len(lags),
        expected_checks=int(healthy * seconds / interval),
        p50_lag_ms=_percentile(lags, 0.50) * 1e3 if lags else float("nan"),
        p99_lag_ms=_percentile(lags, 0.99) * 1e3 if lags else float("nan"),
        max_lag_ms=lags[-1] * 1e3 if lags else float("nan"),
        cpu_percent=100.0 * cpu / wall,
        stuck_threads=stuck,
    )


def test_health_monitor_load(benchmark: Any) -> None:
    """A short run of both scenarios: every plugin checked on schedule, hung ones counted."""
    report = benchmark.pedantic(
        run,
        kwargs={"plugins": 100, "hung": 5, "seconds": 0.5, "interval": 0.1, "timeout": 0.05},
        rounds=1,
        iterations=1,
    )
    assert report.stuck_threads == 5
    # Loose bounds: a shared CI machine may be slow, but a broken scheduler is far off.
    assert report.checks >= 0.7 * report.expected_checks
    assert report.p50_lag_ms < 50.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--plugins", type=int, default=1000)
    parser.add_argument("--hung", type=int, default=50)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--timeout", type=float, default=0.1)
    args = parser.parse_args(argv)
    logging.getLogger("recovery.health").setLevel(logging.ERROR)  # one line per hung check
    ok = True
    for hung in (0, args.hung):
        report = run(
            plugins=args.plugins,
            hung=hung,
            seconds=args.seconds,
            interval=args.interval,
            timeout=args.timeout,
            threads=args.threads,
        )
        print(report.line())
        ok &= report.p99_lag_ms <= 50.0 and report.stuck_threads == hung
        if hung == 0:
            ok &= report.cpu_percent <= 10.0
    print("goals met" if ok else "goals NOT met")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
