"""PluginRegistry: storing, loading, unloading, threads, and entry points from real metadata."""

from __future__ import annotations

import sys
import textwrap
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from recovery.failures import FailureType, classify
from recovery.plugins import Plugin, PluginManager, PluginRegistry
from recovery.testing.plugins import FlakyPlugin, InitializationCrash


class Recorder:
    """A minimal plugin that remembers what was done to it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.events: list[tuple[str, Any]] = []

    def initialize(self, config: Any) -> None:
        self.events.append(("initialize", config))

    def shutdown(self) -> None:
        self.events.append(("shutdown", None))


def test_protocols_are_satisfied() -> None:
    assert isinstance(Recorder("a"), Plugin)
    assert isinstance(FlakyPlugin("b"), Plugin)
    assert not isinstance(object(), Plugin)
    assert isinstance(PluginRegistry(), PluginManager)


def test_register_initializes_with_the_config_and_stores_both() -> None:
    registry = PluginRegistry()
    first, second = Recorder("db"), Recorder("cache")
    registry.register(first, {"dsn": "x"})
    registry.register(second)

    assert first.events == [("initialize", {"dsn": "x"})]
    assert second.events == [("initialize", None)]
    assert registry.get_plugin("db") is first
    assert registry.get_plugin("missing") is None
    assert registry.list_plugins() == ["db", "cache"]
    assert registry.config_of("db") == {"dsn": "x"}
    assert registry.config_of("cache") is None


def test_register_refuses_a_second_plugin_with_the_same_name() -> None:
    registry = PluginRegistry()
    first = Recorder("db")
    registry.register(first, 1)
    with pytest.raises(ValueError, match="'db'"):
        registry.register(Recorder("db"), 2)
    assert registry.get_plugin("db") is first
    assert registry.config_of("db") == 1


def test_registering_the_same_plugin_again_loads_it_again() -> None:
    registry = PluginRegistry()
    plugin = Recorder("db")
    registry.register(plugin, 1)
    registry.register(plugin, 2)
    assert plugin.events == [("initialize", 1), ("initialize", 2)]
    assert registry.config_of("db") == 2


def test_load_plugin_replaces_and_updates_the_config() -> None:
    registry = PluginRegistry()
    old, new = Recorder("db"), Recorder("db")
    registry.load_plugin(old, "a")
    registry.load_plugin(new, "b")
    assert registry.get_plugin("db") is new
    assert registry.config_of("db") == "b"
    assert old.events == [("initialize", "a")]  # its owner shuts it down, not the registry
    assert registry.list_plugins() == ["db"]


def test_a_failing_initialize_propagates_and_the_plugin_stays_findable() -> None:
    registry = PluginRegistry()
    plugin = FlakyPlugin("cache", crash_on_initialize=1)

    with pytest.raises(InitializationCrash) as info:
        registry.register(plugin, {"size": 3})

    # Findable, so the recovery manager can restart it; classified as INITIALIZATION.
    assert registry.get_plugin("cache") is plugin
    assert registry.config_of("cache") == {"size": 3}
    assert classify(info.value).type is FailureType.INITIALIZATION
    registry.load_plugin(plugin, registry.config_of("cache"))
    assert plugin.running


def test_unload_removes_then_shuts_down() -> None:
    registry = PluginRegistry()
    plugin = Recorder("db")
    registry.register(plugin, 1)
    registry.unload("db")
    assert plugin.events == [("initialize", 1), ("shutdown", None)]
    assert registry.get_plugin("db") is None
    assert registry.list_plugins() == []
    with pytest.raises(KeyError, match="'db'"):
        registry.unload("db")
    with pytest.raises(KeyError, match="'db'"):
        registry.config_of("db")


def test_unload_removes_even_when_shutdown_raises() -> None:
    class BadShutdown(Recorder):
        def shutdown(self) -> None:
            raise OSError("stuck")

    registry = PluginRegistry()
    registry.register(BadShutdown("db"))
    with pytest.raises(OSError, match="stuck"):
        registry.unload("db")
    assert registry.get_plugin("db") is None


@pytest.mark.parametrize(
    ("plugin", "error", "message"),
    [
        (object(), TypeError, "initialize"),
        (Recorder(""), ValueError, "name"),
        (Recorder(42), TypeError, "42"),  # type: ignore[arg-type]
    ],
)
def test_objects_that_are_not_plugins_are_refused(
    plugin: Any, error: type[Exception], message: str
) -> None:
    registry = PluginRegistry()
    with pytest.raises(error, match=message):
        registry.register(plugin)
    assert registry.list_plugins() == []


def test_a_slow_initialize_does_not_block_lookups() -> None:
    entered, finish = threading.Event(), threading.Event()

    class Slow(Recorder):
        def initialize(self, config: Any) -> None:
            entered.set()
            assert finish.wait(10)

    registry = PluginRegistry()
    registry.register(Recorder("fast"))
    loader = threading.Thread(target=registry.register, args=(Slow("slow"),))
    loader.start()
    try:
        assert entered.wait(10)
        # The slow plugin's initialize is running: the registry is not locked by it.
        assert registry.get_plugin("fast") is not None
        assert registry.list_plugins() == ["fast", "slow"]
        registry.register(Recorder("other"))
    finally:
        finish.set()
        loader.join(10)
    assert not loader.is_alive()


def test_concurrent_registrations_keep_every_plugin() -> None:
    registry = PluginRegistry()
    barrier = threading.Barrier(8)

    def register_many(index: int) -> None:
        barrier.wait(10)
        for n in range(100):
            registry.register(Recorder(f"p{index}-{n}"), n)

    threads = [threading.Thread(target=register_many, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert not any(thread.is_alive() for thread in threads)
    assert sorted(registry.list_plugins()) == sorted(
        f"p{i}-{n}" for i in range(8) for n in range(100)
    )


def test_only_one_of_two_racing_plugins_gets_a_name() -> None:
    registry = PluginRegistry()
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def register(plugin: Recorder) -> None:
        barrier.wait(10)
        try:
            registry.register(plugin)
            outcomes.append("registered")
        except ValueError:
            outcomes.append("refused")

    contenders = [Recorder("db"), Recorder("db")]
    threads = [threading.Thread(target=register, args=(p,)) for p in contenders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(outcomes) == ["refused", "registered"]
    winner = registry.get_plugin("db")
    assert winner in contenders
    assert isinstance(winner, Recorder) and winner.events == [("initialize", None)]


# --- entry points, from a real (tiny) installed distribution ----------------------------------

PLUGIN_MODULE = """
from recovery.testing.plugins import FlakyPlugin


class AlphaPlugin:
    name = "alpha"

    def __init__(self):
        self.config = "never initialized"

    def initialize(self, config):
        self.config = config

    def shutdown(self):
        pass


beta = FlakyPlugin("beta")


def make_gamma():
    return FlakyPlugin("gamma")


crashing = FlakyPlugin("crashing", crash_on_initialize=1)

not_a_plugin = 42
"""

ENTRY_POINTS = """
[recovery.plugins]
alpha = {module}:AlphaPlugin
beta = {module}:beta
gamma = {module}:make_gamma
crashing = {module}:crashing
missing = {module}:no_such_attribute
number = {module}:not_a_plugin

[other.group]
delta = {module}:beta
"""


@pytest.fixture
def installed_plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A distribution installed on sys.path (dist-info + module); returns the module name."""
    module = f"recovery_test_plugins_{uuid.uuid4().hex}"
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(PLUGIN_MODULE))
    dist_info = tmp_path / f"{module}-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {module}\nVersion: 1.0\n"
    )
    (dist_info / "entry_points.txt").write_text(ENTRY_POINTS.format(module=module))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield module
    sys.modules.pop(module, None)


def test_load_entry_points_registers_instances_classes_and_factories(
    installed_plugins: str, caplog: pytest.LogCaptureFixture
) -> None:
    registry = PluginRegistry()

    outcomes = registry.load_entry_points(configs={"alpha": {"level": 2}, "beta": "b"})

    assert set(outcomes) == {"alpha", "beta", "gamma", "crashing", "missing", "number"}
    assert outcomes["alpha"] is None and outcomes["beta"] is None and outcomes["gamma"] is None
    assert isinstance(outcomes["crashing"], InitializationCrash)
    assert isinstance(outcomes["missing"], AttributeError)
    assert isinstance(outcomes["number"], TypeError)
    # A plugin that failed to initialize stays registered for the manager to restart.
    assert sorted(registry.list_plugins()) == ["alpha", "beta", "crashing", "gamma"]

    alpha = registry.get_plugin("alpha")
    assert type(alpha).__name__ == "AlphaPlugin"
    assert alpha.config == {"level": 2}  # type: ignore[union-attr]
    beta = registry.get_plugin("beta")
    assert beta is sys.modules[installed_plugins].beta
    assert isinstance(beta, FlakyPlugin) and beta.running and beta.config == "b"
    gamma = registry.get_plugin("gamma")
    assert isinstance(gamma, FlakyPlugin) and gamma.running and gamma.config is None

    logged = [r.getMessage() for r in caplog.records if r.name == "recovery.plugins"]
    assert len(logged) == 3
    assert any("'missing'" in message for message in logged)


def test_load_entry_points_reads_only_the_given_group(installed_plugins: str) -> None:
    registry = PluginRegistry()
    assert registry.load_entry_points(group="other.group") == {"delta": None}
    assert registry.list_plugins() == ["beta"]


def test_load_entry_points_with_no_distributions_in_the_group() -> None:
    registry = PluginRegistry()
    assert registry.load_entry_points(group=f"nothing.{uuid.uuid4().hex}") == {}
    assert registry.list_plugins() == []
