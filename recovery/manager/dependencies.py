"""Dependencies: the upstreams a web app calls (HTTP services, databases, queues).

A dependency is not a plugin: nothing in the process can restart or reload it;
it fails and comes back by itself. So the manager recovers it by what fits:
it is verified by its health check (a callable, or a URL it GETs) or, without
one, by a half-open trial; probes are backed off; its fallback serves while it
is down. Restart and reload never run for a dependency (a custom strategy
configured for it by name still does). Its words are its own: a dependency is
"down since ..., next probe in ...", not in a crash loop of restarts.

``depends_on`` and ``tags`` are kept on the registration and shown in status;
the graph is checked at ``start()`` (:mod:`recovery.manager.incident_link`): every name
registered, no cycle.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from recovery.breaker import CircuitBreaker
from recovery.config import CircuitBreakerConfig, RecoveryConfig
from recovery.manager.http_check import check_url, url_health_check
from recovery.manager.supervised import Supervised
from recovery.strategies import CustomStrategy

DEPENDENCY, PLUGIN = "dependency", "plugin"

PLUGIN_ACTIONS = frozenset({"restart", "reload"})
"""Built-in strategies that act on a plugin object; never run for a dependency."""

PROBE = CustomStrategy("probe", 0, lambda failure: True, lambda name, failure, ctx: None)
"""A dependency's action: none. The verification that follows it is the probe."""


def declared_needs(depends_on: Iterable[str], tags: Mapping[str, str] | None) -> tuple[str, ...]:
    """``depends_on`` as a tuple, once it and ``tags`` are checked (TypeError naming them)."""
    needs = () if isinstance(depends_on, str) else tuple(depends_on)
    if isinstance(depends_on, str) or not all(isinstance(need, str) for need in needs):
        raise TypeError(f"depends_on must be names (str), got {depends_on!r}")
    if tags is not None and not (isinstance(tags, Mapping) and all(
            isinstance(key, str) and isinstance(value, str) for key, value in tags.items())):
        raise TypeError(f"tags must map str to str, got {tags!r}")
    return needs


def label(plugin: Supervised) -> str:
    """How the manager's messages name it: "plugin 'p'" or "dependency 'payments'"."""
    return f"{plugin.kind} {plugin.name!r}"


class Dependencies:
    """``register_dependency()`` of :class:`recovery.RecoveryManager`."""

    config: RecoveryConfig
    _lock: threading.RLock
    _plugins: dict[str, Supervised]

    if TYPE_CHECKING:
        def _supervise(
            self, name: str, kind: str, breaker_config: CircuitBreakerConfig | None,
            check: Callable[[], Any] | None, fallback: Callable[..., Any] | None,
            depends_on: tuple[str, ...] = (), tags: Mapping[str, str] | None = None,
        ) -> CircuitBreaker: ...

    def register_dependency(
        self,
        name: str,
        health_check: Callable[[], Any] | str | None = None,
        fallback: Callable[..., Any] | None = None,
        breaker_config: CircuitBreakerConfig | None = None,
        depends_on: Iterable[str] = (),
        tags: Mapping[str, str] | None = None,
    ) -> CircuitBreaker:
        """Put dependency ``name`` (an upstream you cannot restart) under supervision;
        returns its breaker.

        ``health_check``: a callable (truthy or a healthy ``HealthCheckResult`` is
        healthy; falsy or raising is not) or an http(s) URL, GET with the
        health-check timeout, healthy on 2xx/3xx. ``fallback(*args, **kwargs)``
        answers :meth:`call` while it is down. ``depends_on``: names of other
        registrations it needs (checked at ``start()``); ``tags``: str to str.
        """
        if isinstance(health_check, str):
            check: Callable[[], Any] | None = url_health_check(
                check_url(health_check), self.config.health_check_timeout)
        elif health_check is None or callable(health_check):
            check = health_check
        else:
            raise TypeError(
                f"health_check must be a callable or an http(s) URL, got {health_check!r}")
        needs = declared_needs(depends_on, tags)
        return self._supervise(name, DEPENDENCY, breaker_config, check, fallback, needs, tags)
