"""RecoveryCollector, scraped through a real prometheus-client registry.

Every test renders the registry with ``generate_latest`` and parses the text back
with ``text_string_to_metric_families``, so what is checked is what Prometheus
would read. The manager runs on a FakeClock: no test waits on real time for a
back-off, a health-check interval or a timeout.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from recovery.breaker import CircuitBreaker
from recovery.config import CircuitBreakerConfig
from recovery.errors import CircuitRepairingError
from recovery.health import HealthCheckConfig
from recovery.manager import RecoveryManager
from recovery.plugins import PluginRegistry
from recovery.prometheus import RecoveryCollector
from recovery.state import CircuitBreakerState
from recovery.status import RecoveryStatus, StatusSource
from recovery.testing import FakeClock, FlakyError, FlakyPlugin, RecordingAuditLogger
from tests.helpers import MakeBreaker, MakeManager, eventually, settle

DOCUMENTED = {
    "recovery_circuit_breaker_state": "gauge",
    "recovery_requests": "counter",
    "recovery_successes": "counter",
    "recovery_failures": "counter",
    "recovery_slow_calls": "counter",
    "recovery_rejections": "counter",
    "recovery_circuit_open_seconds": "counter",
    "recovery_window_failure_ratio": "gauge",
    "recovery_call_duration_seconds": "histogram",
    "recovery_attempts": "counter",
    "recovery_episodes": "counter",
    "recovery_in_progress": "gauge",
    "recovery_degraded": "gauge",
    "recovery_fallbacks_served": "counter",
    "recovery_failed": "gauge",
    "recovery_crash_loop": "gauge",
    "recovery_health_check_healthy": "gauge",
    "recovery_health_check_consecutive_failures": "gauge",
    "recovery_health_check_stuck": "gauge",
    "recovery_early_warning": "gauge",
    "recovery_early_warnings": "counter",
    "recovery_stuck_health_check_threads": "gauge",
    "recovery_stuck_strategies": "gauge",
    "recovery_manager_running": "gauge",
    "recovery_incidents_open": "gauge",
    "recovery_incident_members": "gauge",
    "recovery_incident_held": "gauge",
}


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(registry: CollectorRegistry) -> tuple[dict[str, Any], Samples]:
    """Render and parse the registry: families by name, and every sample's value."""
    families = {f.name: f for f in text_string_to_metric_families(
        generate_latest(registry).decode("utf-8"))}
    samples = {
        (s.name, frozenset(s.labels.items())): s.value
        for family in families.values()
        for s in family.samples
    }
    return families, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[name, frozenset(labels.items())]


@pytest.fixture
def plugins() -> PluginRegistry:
    """Every manager ``make_manager`` builds here serves plugins "good" and "bad"."""
    registry = PluginRegistry()
    registry.register(FlakyPlugin("good"))
    registry.register(FlakyPlugin("bad"))
    return registry


def collector_registry(rm: StatusSource) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(RecoveryCollector(rm, breakers=False))
    return registry


def test_names_types_and_help_follow_the_prometheus_rules(
    make_manager: MakeManager,
) -> None:
    rm = make_manager(enable_health_checking=True)
    rm.register_plugin("good")
    rm.register_plugin("bad")
    families, _ = scrape(collector_registry(rm))
    assert {name: f.type for name, f in families.items()} == DOCUMENTED
    for name, family in families.items():
        assert re.fullmatch(r"recovery_[a-z0-9_]+", name), name
        assert family.documentation, name
        for sample in family.samples:
            if family.type == "counter":
                assert sample.name == f"{name}_total", sample
            elif family.type == "histogram":
                assert sample.name in {f"{name}_{s}" for s in ("bucket", "sum", "count")}
            else:
                assert sample.name == name, sample
    # Units are base units, spelled out; no milliseconds anywhere.
    assert not [name for name in families if re.search(r"_(ms|milliseconds|minutes)\b", name)]


def test_breaker_counters_state_and_recovery_attempts_match_the_manager(
    make_manager: MakeManager,
    clock: FakeClock,
    audit: RecordingAuditLogger,
    plugins: PluginRegistry,
) -> None:
    rm = make_manager(plugin_recovery_strategies={"bad": "restart"}, max_recovery_attempts=3)
    rm.register_plugin("good")
    breaker = rm.register_plugin(
        "bad", CircuitBreakerConfig(failure_threshold=2, minimum_requests=2, success_threshold=1)
    )
    registry = collector_registry(rm)
    good = plugins.get_plugin("good")
    bad = plugins.get_plugin("bad")
    assert isinstance(good, FlakyPlugin) and isinstance(bad, FlakyPlugin)
    bad.fail_until_restarted(1)
    bad.crash_next_initializations(1)  # the first restart crashes in initialize

    for _ in range(3):
        assert rm.execute_with_recovery("good", good.do_work) == "good"
    for _ in range(2):
        with pytest.raises(FlakyError):
            rm.execute_with_recovery("bad", bad.do_work)
    # The trip started an episode: the breaker is REPAIRING and rejects.
    with pytest.raises(CircuitRepairingError):
        rm.execute_with_recovery("bad", bad.do_work)
    _, samples = scrape(registry)
    assert value(samples, "recovery_circuit_breaker_state", plugin="bad", state="repairing") == 1
    assert value(samples, "recovery_in_progress", plugin="bad") == 1

    settle(rm, clock, step=0.5)
    assert audit.records == [("bad", "error", "restart", False), ("bad", "error", "restart", True)]
    assert rm.execute_with_recovery("bad", bad.do_work) == "bad"  # the trial closes it
    assert breaker.state is CircuitBreakerState.CLOSED

    _, samples = scrape(registry)
    for plugin, requests, failures, rejections in (("good", 3, 0, 0), ("bad", 3, 2, 1)):
        assert value(samples, "recovery_requests_total", plugin=plugin) == requests
        assert value(samples, "recovery_successes_total", plugin=plugin) == requests - failures
        assert value(samples, "recovery_failures_total", plugin=plugin) == failures
        assert value(samples, "recovery_rejections_total", plugin=plugin) == rejections
        assert value(samples, "recovery_slow_calls_total", plugin=plugin) == 0
    for state in CircuitBreakerState:
        assert value(samples, "recovery_circuit_breaker_state", plugin="bad",
                     state=state.value) == (state is CircuitBreakerState.CLOSED)
    # REPAIRING for the one back-off wait of the fake clock between the two attempts.
    open_seconds = value(samples, "recovery_circuit_open_seconds_total", plugin="bad")
    assert open_seconds == pytest.approx(breaker.metrics().circuit_open_time)
    assert open_seconds >= 1.0
    assert value(samples, "recovery_circuit_open_seconds_total", plugin="good") == 0
    assert value(samples, "recovery_in_progress", plugin="bad") == 0
    assert value(samples, "recovery_degraded", plugin="bad") == 0
    assert value(samples, "recovery_failed", plugin="bad") == 0
    assert value(samples, "recovery_manager_running") == 1

    assert value(samples, "recovery_attempts_total", plugin="bad", action="restart",
                 result="failure") == 1
    assert value(samples, "recovery_attempts_total", plugin="bad", action="restart",
                 result="success") == 1
    assert not [key for key in samples
                if key[0] == "recovery_attempts_total" and ("plugin", "good") in key[1]]
    # One episode, two attempts. The plugin's own health check verified the restart
    # that worked (used for that with periodic checking off); every outcome has its
    # series.
    episodes = {dict(key[1])["outcome"]: count for key, count in samples.items()
                if key[0] == "recovery_episodes_total" and ("plugin", "bad") in key[1]}
    assert episodes == {"recovered": 1, "held": 0, "unverified": 0, "exhausted": 0,
                        "interrupted": 0}


def test_health_check_results_and_a_stuck_check(
    make_manager: MakeManager, clock: FakeClock, plugins: PluginRegistry
) -> None:
    rm = make_manager(enable_health_checking=True, enable_auto_recovery=False)
    checks = HealthCheckConfig(interval=10.0, timeout=5.0, max_failures=5)
    rm.register_plugin("good", health_check_config=checks)
    rm.register_plugin("bad", health_check_config=checks)
    registry = collector_registry(rm)
    bad = plugins.get_plugin("bad")
    assert isinstance(bad, FlakyPlugin)

    _, samples = scrape(registry)
    assert ("recovery_health_check_healthy", frozenset({("plugin", "good")})) not in samples
    assert value(samples, "recovery_health_check_consecutive_failures", plugin="good") == 0

    bad.hang_health_checks()
    clock.advance(10.0)  # every plugin's first check is due within one interval
    assert bad.wait_for_blocked(1)
    clock.advance(5.0)  # past the hung check's timeout
    eventually(lambda: rm.get_recovery_status()["plugins"]["bad"]["health_check"][
        "consecutive_fails"] == 1)
    eventually(lambda: rm.get_recovery_status()["plugins"]["good"]["health_check"][
        "last_result"] is not None)
    _, samples = scrape(registry)
    assert value(samples, "recovery_health_check_healthy", plugin="good") == 1
    assert value(samples, "recovery_health_check_healthy", plugin="bad") == 0
    assert value(samples, "recovery_health_check_consecutive_failures", plugin="bad") == 1
    assert value(samples, "recovery_health_check_stuck", plugin="bad") == 1
    assert value(samples, "recovery_health_check_stuck", plugin="good") == 0
    assert value(samples, "recovery_stuck_health_check_threads") == 1

    bad.release()  # the abandoned thread finishes, its late result is dropped
    eventually(lambda: rm.get_recovery_status()["stuck_health_checks"] == 0)
    _, samples = scrape(registry)
    assert value(samples, "recovery_stuck_health_check_threads") == 0


def test_plugins_registered_later_appear_and_stop_is_reported(
    make_manager: MakeManager,
) -> None:
    rm = make_manager()
    registry = collector_registry(rm)
    _, samples = scrape(registry)
    assert not [key for key in samples if key[0] == "recovery_requests_total"]
    rm.register_plugin("good")
    _, samples = scrape(registry)
    assert value(samples, "recovery_requests_total", plugin="good") == 0
    rm.stop()
    _, samples = scrape(registry)
    assert value(samples, "recovery_manager_running") == 0


def test_a_second_collector_for_the_same_names_is_refused(
    make_manager: MakeManager,
) -> None:
    rm = make_manager()
    registry = collector_registry(rm)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        registry.register(RecoveryCollector(rm))


def test_a_collector_needs_a_manager() -> None:
    with pytest.raises(TypeError, match="RecoveryManager"):
        RecoveryCollector(object())  # type: ignore[arg-type]


def test_missing_prometheus_client_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "recovery.prometheus")
    monkeypatch.setitem(sys.modules, "prometheus_client.core", None)
    with pytest.raises(ImportError, match=r"recovery\[prometheus\]"):
        importlib.import_module("recovery.prometheus")


def test_a_crash_loop_shows_as_failed_and_crash_loop(
    make_manager: MakeManager, clock: FakeClock
) -> None:
    from recovery.failures import FailureInfo

    rm = make_manager(max_episodes_per_period=1)
    rm.register_plugin("good")
    rm.register_plugin("bad")
    registry = collector_registry(rm)
    _, samples = scrape(registry)
    assert value(samples, "recovery_crash_loop", plugin="bad") == 0
    rm.record_failure("bad", FailureInfo("error"))
    settle(rm, clock)
    rm.record_failure("bad", FailureInfo("error"))  # a second episode at once: intensity
    _, samples = scrape(registry)
    assert value(samples, "recovery_crash_loop", plugin="bad") == 1
    assert value(samples, "recovery_failed", plugin="bad") == 1
    assert value(samples, "recovery_crash_loop", plugin="good") == 0


SURROGATE = os.fsdecode(b"plugin-\xff")  # "plugin-\udcff": a file name that is not UTF-8


def test_a_name_with_a_lone_surrogate_is_exported_escaped_and_the_rest_of_the_scrape_stays(
    make_manager: MakeManager, make_breaker: MakeBreaker,
) -> None:
    plugins = PluginRegistry()
    plugins.register(FlakyPlugin(SURROGATE))
    plugins.register(FlakyPlugin("good"))
    rm = make_manager(plugins)
    rm.register_plugin(SURROGATE)
    rm.register_plugin("good")
    bare = make_breaker("bare-\udcfe")
    bare.call(lambda: None)
    registry = CollectorRegistry()
    registry.register(RecoveryCollector(rm))
    _, samples = scrape(registry)  # raised UnicodeEncodeError: an empty scrape for all
    assert value(samples, "recovery_requests_total", plugin="plugin-\\udcff") == 0
    assert value(samples, "recovery_in_progress", plugin="plugin-\\udcff") == 0
    assert value(samples, "recovery_requests_total", plugin="bare-\\udcfe") == 1
    assert value(samples, "recovery_requests_total", plugin="good") == 0


def test_fallbacks_served_are_counted_apart_from_rejections(make_manager: MakeManager) -> None:
    rm = make_manager()
    rm.register_plugin("good", fallback=lambda: "cached")
    rm.register_plugin("bad")
    registry = collector_registry(rm)
    rm.breaker("good").force_open()
    for _ in range(3):  # refused by the breaker, answered by the fallback: both count
        assert rm.execute_with_recovery("good", lambda: "live") == "cached"
    _, samples = scrape(registry)
    assert value(samples, "recovery_fallbacks_served_total", plugin="good") == 3
    assert value(samples, "recovery_rejections_total", plugin="good") == 3
    assert value(samples, "recovery_fallbacks_served_total", plugin="bad") == 0


class StatusTakenOnce:
    """A status source that is not a manager: a status read once, and the manager's
    breakers (what a process exporting a status it was handed would give)."""

    def __init__(self, rm: RecoveryManager) -> None:
        self._rm, self._status = rm, rm.status()

    def status(self) -> RecoveryStatus:
        return self._status

    def breaker(self, name: str) -> CircuitBreaker:
        return self._rm.breaker(name)


def test_any_status_source_is_exported_not_only_a_manager(make_manager: MakeManager) -> None:
    rm = make_manager()
    rm.register_plugin("good")
    rm.execute_with_recovery("good", lambda: None)
    source = StatusTakenOnce(rm)
    assert isinstance(source, StatusSource) and isinstance(rm, StatusSource)
    rm.execute_with_recovery("good", lambda: None)  # after the source's status was taken
    _, taken = scrape(collector_registry(source))
    _, live = scrape(collector_registry(rm))
    assert value(taken, "recovery_requests_total", plugin="good") == 1
    assert value(live, "recovery_requests_total", plugin="good") == 2
    with pytest.raises(TypeError, match=r"status\(\) and breaker\(name\)"):
        RecoveryCollector(type("StatusOnly", (), {"status": StatusTakenOnce.status})())
