"""recovery.breakers(): every live breaker, held weakly, and the collector that covers them.

Other tests' breakers may still be alive (the garbage collector frees cycles when
it likes), so each test names its breakers uniquely and looks at those only.
"""

from __future__ import annotations

import gc
import threading
import uuid
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import recovery
from recovery import _registry
from recovery.breaker import CircuitBreaker
from recovery.manager import RecoveryManager
from recovery.plugins import PluginRegistry
from recovery.prometheus import RecoveryCollector
from recovery.testing import FlakyPlugin
from tests.helpers import MakeBreaker, MakeManager


@pytest.fixture
def name() -> str:
    return f"dep-{uuid.uuid4().hex[:8]}"


def keys_of(prefix: str) -> dict[str, Any]:
    return {key: b for key, b in recovery.breakers().items() if key.startswith(prefix)}


def numbered(name: str) -> bool:
    """Whether the registry still keeps a number count for ``name``: that it forgets
    one without live breakers (unique names cost no memory) shows nowhere else."""
    return name in _registry._numbers  # private: the memory kept is what is tested


def test_a_new_breaker_is_found_by_its_name(make_breaker: MakeBreaker, name: str) -> None:
    breaker = make_breaker(name)
    assert recovery.breakers()[name] is breaker


def test_the_registry_holds_breakers_weakly(
    make_breaker: MakeBreaker, name: str
) -> None:
    breaker = make_breaker(name)
    breaker.call(lambda: None)
    assert name in recovery.breakers()
    del breaker
    gc.collect()
    assert name not in recovery.breakers()


def test_two_breakers_of_one_name_are_both_visible_under_stable_keys(
    make_breaker: MakeBreaker, name: str
) -> None:
    first, second = make_breaker(name), make_breaker(name)
    assert keys_of(name) == {name: first, f"{name}#2": second}
    del first
    gc.collect()
    assert keys_of(name) == {f"{name}#2": second}  # the second keeps its key
    third = make_breaker(name)  # the freed key is reused: series stay few
    assert keys_of(name) == {name: third, f"{name}#2": second}


def test_freed_keys_are_reused_smallest_first_and_a_dead_name_is_forgotten(
    make_breaker: MakeBreaker, name: str
) -> None:
    first, second, third, fourth = (make_breaker(name) for _ in range(4))
    del second, third
    gc.collect()
    fifth, sixth = make_breaker(name), make_breaker(name)
    assert keys_of(name) == {
        name: first, f"{name}#2": fifth, f"{name}#3": sixth, f"{name}#4": fourth
    }
    del first, fourth, fifth, sixth
    gc.collect()
    assert keys_of(name) == {}
    # Nothing is kept for a name without live breakers: unique names cost no memory.
    assert not numbered(name)


def test_a_name_that_looks_like_a_key_does_not_collide(
    make_breaker: MakeBreaker, name: str
) -> None:
    first, second = make_breaker(name), make_breaker(name)
    literal = make_breaker(f"{name}#2")
    assert keys_of(name) == {name: first, f"{name}#2": second, f"{name}#2#2": literal}


def test_breakers_built_at_once_on_many_threads_get_distinct_keys(
    breaker_cls: type[CircuitBreaker], name: str
) -> None:
    threads_count = 8
    start = threading.Barrier(threads_count, timeout=10.0)
    built: list[CircuitBreaker] = []
    lock = threading.Lock()

    def build() -> None:
        start.wait()
        breaker = breaker_cls(name)
        with lock:
            built.append(breaker)

    threads = [threading.Thread(target=build) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10.0)
    found = keys_of(name)
    assert len(found) == threads_count
    assert {id(b) for b in found.values()} == {id(b) for b in built}


def test_breakers_built_and_dropped_on_many_threads_leave_nothing_behind(
    breaker_cls: type[CircuitBreaker], name: str
) -> None:
    threads_count, rounds = 4, 200
    start = threading.Barrier(threads_count, timeout=10.0)
    keys: list[set[str]] = [set() for _ in range(threads_count)]

    def churn(index: int) -> None:
        start.wait()
        kept: list[CircuitBreaker] = []
        for n in range(rounds):
            kept.append(breaker_cls(name))
            if n % 3 == 2:
                kept.clear()  # dies here, on this thread, while others register
            keys[index].update(key for key, b in recovery.breakers().items()
                               if key.startswith(name) and b in kept)

    threads = [threading.Thread(target=churn, args=(i,)) for i in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30.0)
    assert not any(thread.is_alive() for thread in threads)
    gc.collect()
    assert keys_of(name) == {}
    assert not numbered(name)
    # At most threads x 3 breakers of the name were alive at once: keys were reused.
    assert len(set().union(*keys)) <= threads_count * 3


# -- the Prometheus collector over the registry ----------------------------------------

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(collector: RecoveryCollector) -> Samples:
    registry = CollectorRegistry()
    registry.register(collector)
    text = generate_latest(registry).decode("utf-8")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def labels_of(samples: Samples, metric: str, prefix: str) -> dict[str, float]:
    """``plugin`` label -> value of ``metric``, for labels starting with ``prefix``."""
    return {
        dict(labels)["plugin"]: value
        for (sample, labels), value in samples.items()
        if sample == metric and dict(labels).get("plugin", "").startswith(prefix)
    }


@pytest.fixture
def manager(make_manager: MakeManager, name: str) -> RecoveryManager:
    plugins = PluginRegistry()
    plugins.register(FlakyPlugin(name))
    return make_manager(plugins)


def test_the_collector_without_a_manager_exports_bare_breakers(
    make_breaker: MakeBreaker, name: str
) -> None:
    breaker = make_breaker(name)
    for _ in range(3):
        breaker.call(lambda: None)
    samples = scrape(RecoveryCollector())
    assert labels_of(samples, "recovery_requests_total", name) == {name: 3}
    assert labels_of(samples, "recovery_failures_total", name) == {name: 0}
    assert samples["recovery_circuit_breaker_state",
                   frozenset({("plugin", name), ("state", "closed")})] == 1
    assert not [key for key in samples if key[0] == "recovery_manager_running"]


def test_plugins_and_bare_breakers_are_each_counted_once(
    manager: RecoveryManager, make_breaker: MakeBreaker, name: str
) -> None:
    # A bare breaker built before the plugin, with the plugin's very name.
    bare = make_breaker(name)
    plugin_breaker = manager.register_plugin(name)
    assert keys_of(name) == {name: bare, f"{name}#2": plugin_breaker}
    bare.call(lambda: None)
    for _ in range(2):
        manager.execute_with_recovery(name, lambda: None)

    samples = scrape(RecoveryCollector(manager))
    # The plugin keeps its name; the bare breaker takes the next free key.
    assert labels_of(samples, "recovery_requests_total", name) == {name: 2, f"{name}#2": 1}
    # Recovery metrics are the plugin's only.
    assert labels_of(samples, "recovery_in_progress", name) == {name: 0}

    plugin_only = scrape(RecoveryCollector(manager, breakers=False))
    assert labels_of(plugin_only, "recovery_requests_total", name) == {name: 2}
    breakers_only = scrape(RecoveryCollector())
    assert labels_of(breakers_only, "recovery_requests_total", name) == {
        name: 1, f"{name}#2": 2
    }


def test_a_plugin_breaker_is_not_exported_again_as_a_bare_one(
    manager: RecoveryManager, name: str
) -> None:
    manager.register_plugin(name)
    samples = scrape(RecoveryCollector(manager))
    assert labels_of(samples, "recovery_requests_total", name) == {name: 0}


def test_collector_arguments_are_checked(manager: RecoveryManager) -> None:
    with pytest.raises(ValueError, match="nothing to collect"):
        RecoveryCollector(None, breakers=False)
    with pytest.raises(TypeError, match="breakers must be a bool"):
        RecoveryCollector(manager, breakers="yes")  # type: ignore[arg-type]
