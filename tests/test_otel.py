"""recovery.otel: OpenTelemetry instruments that mirror the Prometheus collector.

Read through the SDK's InMemoryMetricReader, so what is checked is what an
exporter would send; the values are compared with a Prometheus scrape of the same
manager at the same moment (nothing moves in between: the clock is a FakeClock
and no call runs).
"""

from __future__ import annotations

import importlib
import os
import re
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import Gauge, InMemoryMetricReader, Sum
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from recovery.config import CircuitBreakerConfig
from recovery.errors import CircuitRepairingError
from recovery.health import HealthCheckConfig
from recovery.manager import RecoveryManager
from recovery.otel import INSTRUMENTS, instrument
from recovery.plugins import PluginRegistry
from recovery.prometheus import RecoveryCollector
from recovery.testing import FakeClock, FlakyError, FlakyPlugin
from tests.helpers import MakeBreaker, MakeManager, eventually, settle

# Prometheus label -> OpenTelemetry attribute.
ATTRIBUTES = {
    "recovery.plugin.name": "plugin",
    "recovery.circuit_breaker.state": "state",
    "recovery.action": "action",
    "recovery.result": "result",
    "recovery.episode.outcome": "outcome",
    "recovery.cluster.direction": "direction",
    "recovery.cluster.event.kind": "kind",
    "recovery.call.duration.le": "le",
    "recovery.early_warning.kind": "kind",
    "recovery.incident.id": "incident",
    "recovery.incident.root": "root",
}

Points = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
def reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


@pytest.fixture
def provider(reader: InMemoryMetricReader) -> Iterator[MeterProvider]:
    provider = MeterProvider(metric_readers=[reader])
    yield provider
    provider.shutdown()


def read(reader: InMemoryMetricReader) -> tuple[dict[str, Any], Points]:
    """Every metric by name, and every data point's value by (name, attributes)."""
    data = reader.get_metrics_data()
    metrics = {
        metric.name: metric
        for resource in (data.resource_metrics if data else [])
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }
    points = {
        (name, frozenset((k, str(v)) for k, v in (point.attributes or {}).items())): point.value
        for name, metric in metrics.items()
        for point in metric.data.data_points
    }
    return metrics, points


def scrape(collector: RecoveryCollector) -> Points:
    registry = CollectorRegistry()
    registry.register(collector)
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for s in family.samples
    }


@pytest.fixture
def name() -> str:
    return f"otel-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def manager(make_manager: MakeManager, name: str) -> RecoveryManager:
    plugins = PluginRegistry()
    plugins.register(FlakyPlugin(f"{name}-good"))
    plugins.register(FlakyPlugin(f"{name}-bad"))
    return make_manager(plugins, enable_health_checking=True, early_warning=True,
                        plugin_recovery_strategies={f"{name}-bad": "restart"})


def test_names_units_and_kinds_follow_the_opentelemetry_conventions(
    reader: InMemoryMetricReader, provider: MeterProvider, manager: RecoveryManager, name: str
) -> None:
    manager.register_plugin(f"{name}-good")
    instrument(manager, provider)
    metrics, _ = read(reader)
    assert len({spec.name for spec in INSTRUMENTS}) == len(INSTRUMENTS)
    for spec in INSTRUMENTS:
        # Lowercase dot-separated namespaces; no _total, no unit in the name.
        assert re.fullmatch(r"recovery(\.[a-z][a-z0-9_]*)+", spec.name), spec.name
        assert not re.search(r"_(total|seconds|milliseconds|bytes)$", spec.name), spec.name
        # UCUM: s for time, 1 for ratios and flags, {thing} in the singular for counts.
        assert spec.unit in {"s", "1"} or re.fullmatch(r"\{[a-z]+\}", spec.unit), spec.unit
        assert not spec.unit.endswith("s}"), spec.unit
        assert spec.description.endswith("."), spec.name
        if spec.name not in metrics:  # no data point yet (no attempt, no health result)
            continue
        metric = metrics[spec.name]
        assert metric.unit == spec.unit
        data = metric.data
        if spec.kind == "gauge":
            assert isinstance(data, Gauge), spec.name
        else:
            assert isinstance(data, Sum), spec.name
            assert data.is_monotonic is (spec.kind == "counter"), spec.name


def test_every_collector_metric_has_a_mirror(manager: RecoveryManager) -> None:
    families = {family.name for family in RecoveryCollector(manager).describe()}
    # A histogram's three series (_bucket, _sum, _count) mirror its one family.
    mirrored = {re.sub(r"_(total|bucket|sum|count)$", "", spec.prometheus) for spec in INSTRUMENTS}
    assert families == mirrored


def test_values_equal_the_prometheus_collector_s(
    reader: InMemoryMetricReader, provider: MeterProvider,
    manager: RecoveryManager,
    make_breaker: MakeBreaker,
    clock: FakeClock,
    name: str,
) -> None:
    good_name, bad_name = f"{name}-good", f"{name}-bad"
    checks = HealthCheckConfig(interval=10.0, timeout=5.0, max_failures=5)
    manager.register_plugin(good_name, health_check_config=checks)
    manager.register_plugin(
        bad_name,
        CircuitBreakerConfig(failure_threshold=2, minimum_requests=2, record_latency=True),
    )
    bare = make_breaker(good_name)  # a bare breaker with a plugin's name: labelled name#2
    bare.call(lambda: None)
    good = manager.plugin_manager.get_plugin(good_name)
    bad = manager.plugin_manager.get_plugin(bad_name)
    assert isinstance(good, FlakyPlugin) and isinstance(bad, FlakyPlugin)
    bad.fail_until_restarted(1)
    bad.crash_next_initializations(1)
    manager.execute_with_recovery(good_name, good.do_work)
    for _ in range(2):
        with pytest.raises(FlakyError):
            manager.execute_with_recovery(bad_name, bad.do_work)
    with pytest.raises(CircuitRepairingError):
        manager.execute_with_recovery(bad_name, bad.do_work)
    settle(manager, clock, step=0.5)
    clock.advance(10.0)  # the first health check of the good plugin is due
    eventually(lambda: manager.get_recovery_status()["plugins"][good_name]["health_check"][
        "last_result"] is not None)

    instrument(manager, provider)
    prometheus = {spec.name: spec.prometheus for spec in INSTRUMENTS}
    # The health monitor keeps checking in the background (the bad plugin's first check
    # may fall due with the good one's, by where its name puts it in the interval), so
    # the two reads agree once no check lands between them; a series that one side
    # never has still fails at the deadline.
    deadline = time.monotonic() + 5.0
    while True:
        metrics, points = read(reader)
        samples = scrape(RecoveryCollector(manager))
        translated = {
            (prometheus[metric], frozenset((ATTRIBUTES[k], v) for k, v in attributes)): value
            for (metric, attributes), value in points.items()
        }
        # This test's series only: other tests' breakers may be freed between the reads.
        if mine(translated, name) == mine(samples, name) or time.monotonic() > deadline:
            break
    # Without a cluster its instruments observe nothing, as the collector emits nothing;
    # likewise the members of open incidents, without one open.
    assert set(metrics) == {
        spec.name for spec in INSTRUMENTS if not spec.name.startswith("recovery.cluster.")
        and spec.name != "recovery.incident.members"
    }
    assert mine(translated, name) == mine(samples, name)
    # The scenario reached what it meant to: attempts, a health result, a bare breaker.
    labels = {dict(attrs).get("plugin") for _, attrs in translated}
    assert f"{good_name}#2" in labels
    assert ("recovery_health_check_healthy", frozenset({("plugin", good_name)})) in translated
    assert translated["recovery_attempts_total", frozenset(
        {("plugin", bad_name), ("action", "restart"), ("result", "success")})] == 1


def mine(points: Points, name: str) -> Points:
    """The series of this test's plugins and breakers, and the manager's own."""
    return {
        key: value for key, value in points.items()
        if dict(key[1]).get("plugin", name).startswith(name)
    }


def test_without_a_manager_every_live_breaker_is_observed(
    reader: InMemoryMetricReader, provider: MeterProvider,
    make_breaker: MakeBreaker, name: str,
) -> None:
    breaker = make_breaker(name)
    breaker.call(lambda: None)
    instrument(None, provider)
    _, points = read(reader)
    assert points["recovery.requests", frozenset({("recovery.plugin.name", name)})] == 1
    states = {
        dict(attrs)["recovery.circuit_breaker.state"]: value
        for (metric, attrs), value in points.items()
        if metric == "recovery.circuit_breaker.state"
        and ("recovery.plugin.name", name) in attrs
    }
    assert states == {"closed": 1, "open": 0, "half_open": 0, "repairing": 0}
    assert "recovery.manager.running" not in {metric for metric, _ in points}


def test_close_stops_observing_and_a_provider_takes_one_instrumentation_at_a_time(
    reader: InMemoryMetricReader, provider: MeterProvider,
    make_breaker: MakeBreaker, name: str,
) -> None:
    breaker = make_breaker(name)
    first = instrument(None, provider)
    with pytest.raises(ValueError, match="already instrumented"):
        instrument(None, provider)
    first.close()
    assert not first.active
    _, points = read(reader)
    assert not [key for key in points if ("recovery.plugin.name", name) in key[1]]
    # Instrumenting again after close() works: the SDK keeps the first callbacks.
    again = instrument(None, provider)
    breaker.call(lambda: None)
    _, points = read(reader)
    assert points["recovery.requests", frozenset({("recovery.plugin.name", name)})] == 1
    again.close()


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(TypeError, match="source must be a RecoveryManager"):
        instrument(object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="meter_provider must be a MeterProvider"):
        instrument(None, object())  # type: ignore[arg-type]


def test_missing_opentelemetry_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "recovery.otel")
    monkeypatch.setitem(sys.modules, "opentelemetry.metrics", None)
    with pytest.raises(ImportError, match=r"recovery\[otel\]"):
        importlib.import_module("recovery.otel")


def test_a_name_with_a_lone_surrogate_is_observed_as_the_collector_labels_it(
    reader: InMemoryMetricReader, provider: MeterProvider,
    make_manager: MakeManager, make_breaker: MakeBreaker, name: str,
) -> None:
    plugin = os.fsdecode(f"{name}-\xff".encode("latin-1"))  # "...-\udcff", as from a file name
    plugins = PluginRegistry()
    plugins.register(FlakyPlugin(plugin))
    rm = make_manager(plugins)
    rm.register_plugin(plugin)
    bare = make_breaker(f"{name}-bare-\udcfe")  # held: the registry holds breakers weakly
    bare.call(lambda: None)
    instrument(rm, provider)
    _, points = read(reader)
    labels = {dict(attrs).get("recovery.plugin.name") for _, attrs in points} - {None}
    mine = {str(label) for label in labels if str(label).startswith(name)}
    assert mine == {f"{name}-\\udcff", f"{name}-bare-\\udcfe"}
    for label in mine:
        label.encode("utf-8")  # what an exporter must send: valid UTF-8
    assert points["recovery.episode.active",
                  frozenset({("recovery.plugin.name", f"{name}-\\udcff")})] == 0
    samples = scrape(RecoveryCollector(rm))
    assert samples["recovery_requests_total", frozenset({("plugin", f"{name}-bare-\\udcfe")})] \
        == points["recovery.requests", frozenset({("recovery.plugin.name",
                                                     f"{name}-bare-\\udcfe")})] == 1


def test_fallbacks_served_are_observed(
    reader: InMemoryMetricReader, provider: MeterProvider,
    make_manager: MakeManager, name: str,
) -> None:
    plugins = PluginRegistry()
    plugins.register(FlakyPlugin(name))
    rm = make_manager(plugins)
    rm.register_plugin(name, fallback=lambda: "cached")
    rm.breaker(name).force_open()
    for _ in range(2):
        assert rm.execute_with_recovery(name, lambda: "live") == "cached"
    instrument(rm, provider)
    metrics, points = read(reader)
    assert metrics["recovery.plugin.fallbacks_served"].unit == "{request}"
    attributes = frozenset({("recovery.plugin.name", name)})
    assert points["recovery.plugin.fallbacks_served", attributes] == 2
    assert points["recovery.rejections", attributes] == 2
