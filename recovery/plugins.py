"""Plugins: what the recovery manager repairs, and the registry that holds them.

A plugin is any object with a ``name``, ``initialize(config)`` and ``shutdown()``
(:class:`Plugin`). It may also offer, and the strategies use when present
(found with ``getattr``, so they are not members of the protocol):

- ``health_check()`` returning a bool or a ``HealthCheckResult``: the health monitor's
  default check;
- ``reload(config)``: a cheaper in-place refresh, used by the "reload" strategy
  (without it, that strategy calls ``initialize(config)`` again);
- ``degrade(failure)``: shed load before the manager serves the plugin's fallback,
  used by the "degrade" strategy.

A :class:`PluginManager` is what the manager and its strategies need: find a plugin by
name and load it (again) with its config. :class:`PluginRegistry` is the ready one;
it also discovers plugins that installed distributions declare in the
``recovery.plugins`` entry-point group::

    [project.entry-points."recovery.plugins"]
    cache = "mypkg.cache:CachePlugin"      # a class (or factory) called with no arguments
    search = "mypkg.search:plugin"         # or a ready plugin instance
"""

from __future__ import annotations

import importlib.metadata
import logging
import threading
from collections.abc import Mapping
from typing import Any, Protocol, cast, runtime_checkable

from recovery import _validate as v

_logger = logging.getLogger("recovery.plugins")
_NAME = v.name()

ENTRY_POINT_GROUP = "recovery.plugins"


@runtime_checkable
class Plugin(Protocol):
    """A component the recovery manager can start, stop and restart."""

    @property
    def name(self) -> str: ...

    def initialize(self, config: Any) -> None: ...

    def shutdown(self) -> None: ...


@runtime_checkable
class PluginManager(Protocol):
    """Where the recovery manager finds plugins, and how it loads one again."""

    def get_plugin(self, name: str) -> Plugin | None: ...

    def list_plugins(self) -> list[str]: ...

    def load_plugin(self, plugin: Plugin, config: Any) -> None: ...


def _plugin_name(plugin: Any) -> str:
    """The plugin's name, or TypeError/ValueError saying what is wrong with the object."""
    if not callable(getattr(plugin, "initialize", None)) or not callable(
        getattr(plugin, "shutdown", None)
    ):
        raise TypeError(f"{plugin!r} is not a plugin: it needs initialize(config) and shutdown()")
    name = getattr(plugin, "name", None)
    return cast(str, v.check(_NAME, f"the name of plugin {plugin!r}", name))


class PluginRegistry:
    """A thread-safe :class:`PluginManager` that keeps each plugin with its config.

    A plugin is stored before its ``initialize`` runs and stays stored if that
    raises (the error propagates to the caller): a plugin that failed to start is
    exactly one the recovery manager should go on trying to restart, and it can only
    do that if it can find it. ``initialize`` and ``shutdown`` run outside the
    registry's lock, so a slow plugin never blocks lookups of the others.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._plugins: dict[str, Plugin] = {}
        self._configs: dict[str, Any] = {}

    def register(self, plugin: Plugin, config: Any = None) -> None:
        """Add a plugin and initialize it with ``config``.

        ``ValueError`` if another plugin object already has this name; registering
        the same object again loads it again, like :meth:`load_plugin`.
        """
        self._store_and_initialize(plugin, config, replace=False)

    def load_plugin(self, plugin: Plugin, config: Any) -> None:
        """Store ``plugin`` and ``config`` under the plugin's name, then initialize it.

        This is how the "restart" strategy brings a plugin back after its shutdown.
        It replaces whatever was stored under that name (without shutting that down:
        its owner does that). What ``initialize`` raises propagates.
        """
        self._store_and_initialize(plugin, config, replace=True)

    def _store_and_initialize(self, plugin: Plugin, config: Any, *, replace: bool) -> None:
        name = _plugin_name(plugin)
        with self._lock:
            current = self._plugins.get(name)
            if not replace and current is not None and current is not plugin:
                raise ValueError(f"a different plugin is already registered as {name!r}")
            self._plugins[name] = plugin
            self._configs[name] = config
        plugin.initialize(config)

    def get_plugin(self, name: str) -> Plugin | None:
        with self._lock:
            return self._plugins.get(name)

    def list_plugins(self) -> list[str]:
        """The registered names, in registration order."""
        with self._lock:
            return list(self._plugins)

    def config_of(self, name: str) -> Any:
        """The config the plugin was last loaded with; ``KeyError`` naming an unknown plugin."""
        with self._lock:
            if name not in self._configs:
                raise KeyError(f"no plugin named {name!r} is registered")
            return self._configs[name]

    def unload(self, name: str) -> None:
        """Remove the plugin, then shut it down (its error, if any, propagates).

        ``KeyError`` naming an unknown plugin.
        """
        with self._lock:
            plugin = self._plugins.pop(name, None)
            if plugin is None:
                raise KeyError(f"no plugin named {name!r} is registered")
            del self._configs[name]
        plugin.shutdown()

    def load_entry_points(
        self, group: str = ENTRY_POINT_GROUP, configs: Mapping[str, Any] | None = None
    ) -> dict[str, Exception | None]:
        """Register the plugins that installed distributions declare in ``group``.

        An entry point's object may be a plugin instance, or a class or factory that
        is called with no arguments to make one. Each plugin is initialized with
        ``configs[entry point name]`` (None when absent).

        One broken plugin does not stop the others loading: the result maps every
        entry point name to None (loaded) or to the exception that stopped it, which is
        also logged. A plugin whose ``initialize`` raised is still registered (see the
        class docstring), so the caller can hand that failure to the recovery manager;
        one that could not be imported or made is not.
        """
        configs = configs or {}
        outcomes: dict[str, Exception | None] = {}
        for entry_point in importlib.metadata.entry_points(group=group):
            try:
                plugin = _make_plugin(entry_point.load())
                self.register(plugin, configs.get(entry_point.name))
            except Exception as exc:
                _logger.exception(
                    "could not load plugin entry point %r (%s) of group %r",
                    entry_point.name, entry_point.value, group,
                )
                outcomes[entry_point.name] = exc
            else:
                outcomes[entry_point.name] = None
        return outcomes

    def __repr__(self) -> str:
        return f"PluginRegistry({self.list_plugins()!r})"


def _make_plugin(loaded: Any) -> Plugin:
    """An entry point's object as a plugin: an instance as is, a class or factory called."""
    if isinstance(loaded, type) or not callable(getattr(loaded, "initialize", None)):
        if not callable(loaded):
            raise TypeError(f"{loaded!r} is neither a plugin nor a class or factory of one")
        loaded = loaded()
    _plugin_name(loaded)
    return cast(Plugin, loaded)
