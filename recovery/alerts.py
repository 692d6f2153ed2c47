"""Alerts: thresholds, the alert record, and fire-once delivery to handlers.

An alert tells a person that a plugin crossed a line. It fires once when the line
is crossed, not on every failure past it, and re-arms when the plugin recovers:
a page per incident, not a page per failed call.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable

import attrs

from recovery import _validate as v
from recovery._enum import StrEnum

_logger = logging.getLogger("recovery.alerts")


class AlertKind(StrEnum):
    """Which line was crossed; compares equal to its string value."""

    CONSECUTIVE_FAILURES = "consecutive_failures"
    FAILURE_RATE = "failure_rate"
    RECOVERY_TIME = "recovery_time"
    RECOVERY_EXHAUSTED = "recovery_exhausted"
    UNRECOVERABLE = "unrecoverable"
    CRASH_LOOP = "crash_loop"
    CRASH_LOOP_ENDED = "crash_loop_ended"
    # A dependency's words for the same two ends: down (probed after a growing
    # delay), and up again.
    DEPENDENCY_DOWN = "dependency_down"
    DEPENDENCY_UP = "dependency_up"
    # Its breaker is heading for a trip (RecoveryConfig(early_warning=True)): once
    # per warning, so it is fired with fire(), not fire_once().
    EARLY_WARNING = "early_warning"
    # One set per incident (recovery.incidents): its members' own alerts are folded in.
    INCIDENT_OPENED = "incident_opened"
    INCIDENT_UPDATED = "incident_updated"
    INCIDENT_RESOLVED = "incident_resolved"


@attrs.frozen
class AlertThresholds:
    """When the recovery manager raises an alert for a plugin (None disables that alert).

    - ``consecutive_failures``: failures recorded since the plugin last recovered.
    - ``failure_rate``: failures/outcomes in the breaker's sliding window, checked
      after each failed call through ``execute_with_recovery``.
    - ``recovery_time``: seconds a recovery episode has been running.

    The other kinds have no threshold: "crash_loop" fires when a plugin enters a
    crash loop (out of service, retried after a growing delay), "crash_loop_ended"
    when a retry brings it back; "recovery_exhausted" when the manager gives up on
    it (``give_up_after``) and "unrecoverable" on a non-recoverable failure: both
    leave it failed until ``reset_plugin()``.
    """

    consecutive_failures: int | None = attrs.field(
        default=5, validator=v.optional(v.positive_int)
    )
    failure_rate: float | None = attrs.field(default=0.5, validator=v.optional(v.rate))
    recovery_time: float | None = attrs.field(
        default=300.0, converter=v.optional_seconds, validator=v.optional(v.positive_seconds)
    )


@attrs.frozen
class Alert:
    """One alert: which plugin, which line (``kind``), a readable message, wall-clock time."""

    plugin_name: str
    kind: AlertKind = attrs.field(converter=AlertKind)
    message: str
    timestamp: float = attrs.field(factory=time.time)


AlertHandler = Callable[[Alert], object]

Post = Callable[[str, str, Callable[[], object]], object]
"""``post(label, plugin_name, deliver)``: have ``deliver()`` called later, elsewhere."""


class AlertDispatcher:
    """Fire each (plugin, kind) alert once until the plugin is re-armed.

    Delivery is to the logger (at WARNING) and to every handler; a handler that
    raises is logged and the others still run. Thread-safe. Whether an alert fires
    is decided on the caller's thread; with ``post`` (the recovery manager gives its
    outbox) the log record and each handler are delivered through it, on the
    manager's own thread, each bounded; without, on the caller's thread, so the
    caller must not hold locks that a handler might need.
    """

    def __init__(self, logger: logging.Logger | None = None, *, enabled: bool = True,
                 post: Post | None = None,
                 describe: Callable[[str], str] = "plugin {!r}".format,
                 fold: Callable[[str, AlertKind], bool] | None = None) -> None:
        self._logger = logger if logger is not None else _logger
        self._fold = fold  # True: an incident stands for this alert (it counts as fired)
        self._enabled = enabled
        self._post = post
        self._describe = describe  # a name as the log says it: "plugin 'p'"
        self._handlers: tuple[AlertHandler, ...] = ()
        self._fired: set[tuple[str, AlertKind]] = set()
        self._lock = threading.Lock()

    def add_handler(self, handler: AlertHandler) -> None:
        v.check(v.callable_(), "alert handler", handler)
        with self._lock:
            self._handlers = (*self._handlers, handler)

    def fire_once(self, plugin_name: str, kind: AlertKind, message: str) -> Alert | None:
        """Deliver an alert unless this (plugin, kind) already fired since the last re-arm.

        Returns the alert delivered, or None when it was already fired (or alerting is off).
        """
        key = (plugin_name, kind)
        with self._lock:
            if not self._enabled or key in self._fired:
                return None
            self._fired.add(key)
        if self._fold is not None and self._fold(plugin_name, kind):
            return None
        return self.fire(plugin_name, kind, message)

    def fire(self, plugin_name: str, kind: AlertKind, message: str) -> Alert | None:
        """Deliver an alert now, whatever fired before (for alerts that are already
        one per occasion, as an incident's); None when alerting is off."""
        with self._lock:
            if not self._enabled:
                return None
            handlers = self._handlers
        alert = Alert(plugin_name, kind, message)
        log = functools.partial(
            self._logger.warning,  # a structured event: the fields go with the record
            "alert %s for %s: %s", kind.value, self._describe(plugin_name), message,
            extra={"event": "alert", "plugin": plugin_name, "alert": kind.value,
                   "detail": message},
        )
        if self._post is not None:
            self._post(f"log handler (alert {kind.value} of {plugin_name!r})", plugin_name, log)
            for handler in handlers:
                name = getattr(handler, "__qualname__", None) or type(handler).__name__
                self._post(f"alert handler {name} (alert {kind.value} of {plugin_name!r})",
                           plugin_name, functools.partial(handler, alert))
            return alert
        log()
        for handler in handlers:
            try:
                handler(alert)
            except Exception:
                _logger.exception("alert handler %r failed on %r", handler, alert)
        return alert

    def is_fired(self, plugin_name: str, kind: AlertKind) -> bool:
        with self._lock:
            return (plugin_name, kind) in self._fired

    def rearm(self, plugin_name: str, kind: AlertKind | None = None) -> None:
        """The plugin recovered (or the condition of ``kind`` ended): its alerts (of
        ``kind`` only, if given) may fire again."""
        with self._lock:
            if kind is None:
                self._fired = {key for key in self._fired if key[0] != plugin_name}
            else:
                self._fired.discard((plugin_name, kind))
