"""Opt-in call latency: CircuitBreakerConfig(record_latency=True).

Every test runs on both windows (the ``make_breaker`` fixture); durations come from the
FakeClock, advanced inside the guarded call.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from array import array
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import pytest
import yaml
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from recovery.breaker import CircuitBreaker, LatencyHistogram
from recovery.config import LATENCY_BUCKETS, CircuitBreakerConfig
from recovery.errors import CircuitOpenError
from recovery.otel import instrument
from recovery.prometheus import RecoveryCollector
from recovery.testing import FakeClock
from tests.helpers import MakeBreaker
from tests.test_monitoring_pack import as_promql, dashboard_queries, promtool, run

__all__ = ["promtool"]  # the fixture, shared with the monitoring pack's tests



class Boom(Exception):
    pass


def taking(clock: FakeClock, seconds: float, fail: bool = False) -> Callable[[], None]:
    def fn() -> None:
        clock.advance(seconds)
        if fail:
            raise Boom()

    return fn


def histogram(breaker: CircuitBreaker) -> LatencyHistogram:
    latency = breaker.metrics().latency
    assert latency is not None
    return latency


def slot(bound: float) -> int:
    return LATENCY_BUCKETS.index(bound)


def test_the_buckets_span_100_microseconds_to_60_seconds() -> None:
    assert LATENCY_BUCKETS[0] == 0.0001 and LATENCY_BUCKETS[-1] == 60.0
    assert list(LATENCY_BUCKETS) == sorted(set(LATENCY_BUCKETS))


def test_off_by_default_and_then_no_clock_is_read(
    make_breaker: MakeBreaker, clock: FakeClock
) -> None:
    reads = 0
    monotonic = clock.monotonic

    def counting() -> float:
        nonlocal reads
        reads += 1
        return monotonic()

    clock.monotonic = counting  # type: ignore[method-assign]
    breaker = make_breaker()
    assert breaker.config.record_latency is False
    breaker.call(lambda: None)
    with breaker:
        pass
    assert reads == 0  # the plain path is untimed
    assert breaker.metrics().latency is None
    assert breaker.metrics().to_dict()["latency"] is None


def test_each_call_lands_in_the_first_bucket_whose_bound_it_does_not_exceed(
    make_breaker: MakeBreaker, clock: FakeClock
) -> None:
    breaker = make_breaker(record_latency=True)
    # Bounds exact in binary are checked on the bound itself (le: inclusive).
    for seconds in (0.0, 0.00005, 0.0003, 0.5, 0.75, 1.0, 59.0, 60.0, 61.0, 1e6):
        breaker.call(taking(clock, seconds))
    latency = histogram(breaker)
    assert latency.bounds == LATENCY_BUCKETS
    assert len(latency.counts) == len(LATENCY_BUCKETS) + 1
    expected = [0] * (len(LATENCY_BUCKETS) + 1)
    for index in (0, 0, slot(0.0005), slot(0.5), slot(1.0), slot(1.0), slot(60.0), slot(60.0),
                  -1, -1):
        expected[index] += 1
    assert list(latency.counts) == expected
    assert latency.count == 10 == breaker.metrics().total_requests
    assert latency.sum == pytest.approx(0.00005 + 0.0003 + 0.5 + 0.75 + 1 + 59 + 60 + 61 + 1e6)


def test_every_way_of_calling_is_timed_and_only_calls_that_count(
    make_breaker: MakeBreaker, clock: FakeClock
) -> None:
    breaker = make_breaker(record_latency=True, ignore_exceptions=KeyError, failure_threshold=5,
                           minimum_requests=5)
    breaker.call(taking(clock, 0.002))                       # success
    with pytest.raises(Boom):
        breaker.call(taking(clock, 0.02, fail=True))         # failure: timed too
    with breaker:
        clock.advance(0.2)
    guarded: Any = breaker(taking(clock, 2.0))
    guarded()

    @breaker
    def rows() -> Generator[int, None, None]:
        clock.advance(7.0)
        yield 1

    assert list(rows()) == [1]

    async def wait() -> None:
        clock.advance(20.0)

    asyncio.run(breaker.call_async(wait))
    token = breaker.try_admit()
    breaker.record(token, False, 0.00004)                   # the manual API: its duration
    with pytest.raises(KeyError):                           # ignored: not an outcome
        breaker.call(lambda: {}["x"])
    breaker.force_open()
    with pytest.raises(CircuitOpenError):                   # rejected: never ran
        breaker.call(taking(clock, 1.0))
    latency = histogram(breaker)
    expected = [0] * (len(LATENCY_BUCKETS) + 1)
    for bound in (0.0025, 0.025, 0.25, 2.5, 10.0, 30.0, 0.0001):
        expected[slot(bound)] += 1
    assert list(latency.counts) == expected
    assert latency.count == breaker.metrics().total_requests == 7
    assert latency.sum == pytest.approx(0.002 + 0.02 + 0.2 + 2 + 7 + 20 + 0.00004)


def test_with_a_slow_call_rule_the_same_duration_is_used(
    make_breaker: MakeBreaker, clock: FakeClock
) -> None:
    breaker = make_breaker(record_latency=True, slow_call_duration=1.0)
    breaker.call(taking(clock, 1.5))
    assert breaker.metrics().total_slow_calls == 1
    assert histogram(breaker).counts[slot(2.5)] == 1


def test_replay_fills_the_histogram_with_the_trace_s_latencies(make_breaker: MakeBreaker) -> None:
    breaker = make_breaker(record_latency=True)
    breaker.replay(array("d", [0.0, 1.0]), b"\x01\x00", array("d", [0.003, 0.3]))
    latency = histogram(breaker)
    assert latency.counts[slot(0.005)] == 1 and latency.counts[slot(0.5)] == 1
    assert latency.sum == pytest.approx(0.303)


def test_exact_under_threads(make_breaker: MakeBreaker) -> None:
    breaker = make_breaker(record_latency=True)  # the fake clock stands still: every call takes 0 s
    threads, calls = 4, 2_000
    start = threading.Barrier(threads)

    def worker() -> None:
        start.wait(timeout=10)
        call = breaker.call
        for _ in range(calls):
            call(int)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=30)
        assert not thread.is_alive()
    latency = histogram(breaker)
    assert latency.counts[0] == latency.count == threads * calls
    assert breaker.metrics().total_requests == threads * calls


def test_the_config_field_is_validated() -> None:
    with pytest.raises(TypeError, match=r"record_latency.*'yes'"):
        CircuitBreakerConfig(record_latency="yes")  # type: ignore[arg-type]


# -- export ---------------------------------------------------------------------------------


def scrape_text() -> str:
    registry = CollectorRegistry()
    registry.register(RecoveryCollector())
    return generate_latest(registry).decode()


def unique(prefix: str) -> str:
    """A breaker name no other test's breaker (maybe not collected yet) has."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_exported_as_a_prometheus_histogram(make_breaker: MakeBreaker, clock: FakeClock) -> None:
    name, off = unique("latency-export"), unique("latency-off")
    breaker = make_breaker(name, record_latency=True)
    make_breaker(off).call(lambda: None)  # not recording: no series
    for seconds in (0.003, 0.003, 0.3, 100.0):
        breaker.call(taking(clock, seconds))
    families = {f.name: f for f in text_string_to_metric_families(scrape_text())}
    family = families["recovery_call_duration_seconds"]
    assert family.type == "histogram"
    samples = [s for s in family.samples if s.labels["plugin"] == name]
    assert samples and not [s for s in family.samples if s.labels["plugin"] == off]
    buckets = {s.labels["le"]: s.value for s in samples if s.name.endswith("_bucket")}
    assert list(buckets) == [repr(b) for b in LATENCY_BUCKETS] + ["+Inf"]
    assert buckets["0.0025"] == 0 and buckets["0.005"] == 2 and buckets["0.5"] == 3
    assert buckets["60.0"] == 3 and buckets["+Inf"] == 4
    rest = {s.name: s.value for s in samples if not s.name.endswith("_bucket")}
    assert rest["recovery_call_duration_seconds_count"] == 4
    assert rest["recovery_call_duration_seconds_sum"] == pytest.approx(100.306)


def test_the_dashboard_s_latency_queries_answer_from_the_real_series(
    make_breaker: MakeBreaker, clock: FakeClock, promtool: str, tmp_path: Path
) -> None:
    """promtool evaluates the dashboard's latency queries over the collector's own series,
    grown as a steady stream of those calls would grow them."""
    name = unique("latency-panel")
    breaker = make_breaker(name, record_latency=True)
    for _ in range(10):
        breaker.call(taking(clock, 0.003))  # all in (0.0025, 0.005]
    series = [
        {"series": f'{s.name}{{job="app",{labels}}}', "values": f"0+{s.value:g}x10"}
        for family in text_string_to_metric_families(scrape_text())
        if family.name == "recovery_call_duration_seconds"
        for s in family.samples
        if s.labels["plugin"] == name
        for labels in [",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))]
    ]
    queries = [q for q in dashboard_queries() if "recovery_call_duration_seconds" in q]
    assert len(queries) == 4  # p50, p95, p99, mean
    # Quantiles interpolate linearly inside the bucket, as Prometheus does.
    expected = {"0.5": 0.00375, "0.95": 0.004875, "0.99": 0.004975}
    tests = [{
        # Rounded to the microsecond: promtool compares floats exactly.
        "expr": f"round({as_promql(query)}, 0.000001)",
        "eval_time": "5m",
        "exp_samples": [{
            "labels": f'{{plugin="{name}"}}',
            "value": next((v for q, v in expected.items() if f"({q}," in query), 0.003),
        }],
    } for query in queries]
    (tmp_path / "rules.yml").write_text(yaml.safe_dump({"groups": []}))
    (tmp_path / "test.yml").write_text(yaml.safe_dump({
        "rule_files": ["rules.yml"], "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": series, "promql_expr_test": tests}],
    }))
    result = run(promtool, "test", "rules", "test.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mirrored_in_opentelemetry_as_counters(make_breaker: MakeBreaker, clock: FakeClock) -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    name = unique("latency-otel")
    breaker = make_breaker(name, record_latency=True)
    for seconds in (0.003, 0.3):
        breaker.call(taking(clock, seconds))
    instrumentation = instrument(None, provider)
    try:
        data = reader.get_metrics_data()
        assert data is not None
        points = {
            (metric.name, tuple(sorted((point.attributes or {}).items()))): point.value
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
            for point in metric.data.data_points
            if (point.attributes or {}).get("recovery.plugin.name") == name
        }
    finally:
        instrumentation.close()
        provider.shutdown()
    plugin = ("recovery.plugin.name", name)

    def bucket(le: str) -> Any:
        return points["recovery.call.duration.bucket", (("recovery.call.duration.le", le), plugin)]

    assert bucket("0.0025") == 0 and bucket("0.005") == 1 and bucket("0.5") == 2
    assert bucket("+Inf") == 2
    assert points["recovery.call.duration.count", (plugin,)] == 2
    assert points["recovery.call.duration.sum", (plugin,)] == pytest.approx(0.303)
