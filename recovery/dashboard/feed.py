"""What the dashboard shows, gathered on its own thread through public hooks only.

The manager's status is read once a second (and soon after anything happens),
never on the call path: breaker listeners and the alert handler only append a
note to a queue and wake the dashboard's thread, so a transition costs the
thread that caused it an append. From each reading the feed derives what the
status does not say directly: request and failure rates (differences between
readings), recovery actions (the per-action counts going up), and incidents
opened, grown and resolved (the open incidents compared), which join transitions
and alerts on the timeline.

Everything a client sees goes out as Server-Sent Events through the
:class:`~recovery.dashboard.hub.Hub`: ``snapshot`` (everything, first on every
connection), ``tick`` (the latest view, at least once a second) and ``event``
(one timeline entry, as it happens).
"""

from __future__ import annotations

import collections
import itertools
import json
import logging
import math
import threading
import time
from collections.abc import Sequence
from typing import Any, Protocol

from recovery._clock import iso_utc
from recovery.alerts import Alert, AlertHandler, AlertKind
from recovery.breaker import CircuitBreaker, CircuitBreakerMetrics
from recovery.dashboard.history import RateHistory
from recovery.dashboard.hub import Hub, Subscriber
from recovery.manager.early_warning import warning_message
from recovery.state import CircuitBreakerState
from recovery.status import (
    PluginRecovery,
    PluginStatus,
    PluginWarning,
    RecoveryStatus,
    StatusSource,
    StrategyOrder,
)

_logger = logging.getLogger("recovery.dashboard")

INTERVAL = 1.0  # seconds between readings: the update rate every client gets
HISTORY = 300  # readings kept per tile: five minutes of rates
TIMELINE = 200  # timeline entries kept (and sent to a new client)
PENDING = 1000  # notes waiting for the dashboard's thread, beyond which the oldest go
ORDERS = 3  # failure types whose strategy order a tile shows, the latest first
MIN_REFRESH = 0.25  # seconds between readings prompted by events, so a storm cannot spin

_LEVELS = {
    CircuitBreakerState.CLOSED: "good",
    CircuitBreakerState.OPEN: "bad",
    CircuitBreakerState.HALF_OPEN: "warn",
    CircuitBreakerState.REPAIRING: "info",
}


def dumps(data: Any) -> str:
    """Compact JSON on one line that a browser can parse (no NaN or Infinity)."""
    try:
        return json.dumps(data, separators=(",", ":"), allow_nan=False, default=str)
    except ValueError:  # an infinite or NaN float somewhere: JSON has no such thing
        return json.dumps(_finite(data), separators=(",", ":"), default=str)


def encode(event: str, data: Any) -> bytes:
    """One Server-Sent Event. The JSON is on one line, so it needs one ``data:`` field."""
    return f"event: {event}\ndata: {dumps(data)}\n\n".encode()


def _finite(data: Any) -> Any:
    if isinstance(data, float) and not math.isfinite(data):
        return None
    if isinstance(data, dict):
        return {key: _finite(value) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return [_finite(value) for value in data]
    return data


class Published:
    """What both feeds give the server: a snapshot, and subscribers that start with it.

    A subclass sets ``_hub``, ``_lock`` (held while publishing, so a new client's
    snapshot and the messages after it never overlap or leave a gap) and
    ``_encoded_snapshot`` (None), and says what its snapshot is in ``_snapshot``.
    """

    _hub: Hub
    _lock: threading.Lock
    _encoded_snapshot: bytes | None

    def snapshot(self) -> dict[str, Any]:
        """Everything: the latest view and the timeline (with the page's extras)."""
        with self._lock:
            return self._snapshot()

    def subscribe(self) -> Subscriber | None:
        """A subscriber whose first message is the snapshot (None when the hub is full)."""
        with self._lock:
            # Encoded once until the next publish: after a server restart every open
            # page reconnects within the same second.
            if self._encoded_snapshot is None:
                self._encoded_snapshot = encode("snapshot", self._snapshot())
            return self._hub.subscribe(self._encoded_snapshot)

    def _snapshot(self) -> dict[str, Any]:
        raise NotImplementedError

    def _publish(self, message: bytes) -> None:
        """Send ``message`` to every client; call under the lock."""
        self._encoded_snapshot = None
        self._hub.publish(message)


class Watched(StatusSource, Protocol):
    """What the feed reads of a recovery manager: its status and breakers, and its alerts."""

    def add_alert_handler(self, handler: AlertHandler) -> None: ...


class Feed(Published):
    """Readings of ``rm`` and of extra ``breakers``, published to ``hub``."""

    def __init__(
        self,
        rm: Watched,
        breakers: Sequence[CircuitBreaker],
        hub: Hub,
        *,
        control: bool,
        interval: float = INTERVAL,
    ) -> None:
        self._rm = rm
        self._breakers = tuple(breakers)
        self._hub = hub
        self._control = control
        self._interval = interval
        # Guards everything below; publishing happens under it, so a new client's
        # snapshot and the messages after it never overlap or leave a gap.
        self._lock = threading.Lock()
        self._pending: collections.deque[dict[str, Any]] = collections.deque(maxlen=PENDING)
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._histories: dict[str, RateHistory] = {}
        self._window_sizes: dict[str, int] = {}  # what the window failure ratio is over
        self._timeline: collections.deque[dict[str, Any]] = collections.deque(maxlen=TIMELINE)
        self._seq = itertools.count(1)
        self._actions: dict[str, dict[tuple[str, str], int]] = {}
        self._flags: dict[str, dict[str, Any]] = {}
        # Early warnings by kind, raised and ended; None while the manager does not watch.
        self._warned: dict[str, dict[tuple[str, str], int] | None] = {}
        self._listening: list[tuple[CircuitBreaker, Any]] = []
        self._view: dict[str, Any] = {}
        self._encoded_snapshot: bytes | None = None
        self._tiles: dict[str, dict[str, Any]] = {}  # the view's tiles by id
        # Incidents the page groups (two members or more) as last read, by id; None
        # before the first reading. Open incidents' ids -> wall clock first seen.
        self._grouped: dict[str, dict[str, Any]] | None = None
        self._first_seen: dict[str, float] = {}
        # Per tile, each failure type's attempts as last read, the latest-tried first.
        self._tried: dict[str, dict[str, int]] = {}
        self._active = True
        # The manager has no way to remove an alert handler: this one goes inert on stop().
        rm.add_alert_handler(self._on_alert)
        for breaker in self._breakers:
            self._listen("breaker:" + breaker.name, breaker.name, breaker)
        self._tick()

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="recovery-dashboard-feed",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout: float) -> None:
        self._active = False
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        for breaker, listener in self._listening:
            breaker.remove_listener(listener)
        self._listening.clear()

    # -- what clients get --------------------------------------------------------------

    def _snapshot(self) -> dict[str, Any]:
        return {
            **self._view,
            "control": self._control,
            "history_interval": self._interval,
            "history": {key: history.to_dict() for key, history in self._histories.items()},
            "timeline": list(self._timeline),
        }

    # -- hooks: called on other threads, they only queue a note ----------------------------

    def _listen(self, key: str, name: str, breaker: CircuitBreaker) -> None:
        def on_transition(
            _breaker: Any, old: CircuitBreakerState, new: CircuitBreakerState
        ) -> None:
            self.note("transition", name, f"{_said(old)} \u2192 {_said(new)}", _LEVELS[new],
                      key=key, state=new.value)

        breaker.add_listener(on_transition)
        self._listening.append((breaker, on_transition))
        self._histories[key] = RateHistory(HISTORY)
        self._window_sizes[key] = breaker.config.sliding_window_size

    def _on_alert(self, alert: Alert) -> None:
        # An early warning's raise and end, and an incident's events, come from the
        # readings (with alerting off too, and a warning that came and went between two
        # readings still shows).
        if self._active and alert.kind not in _FROM_READINGS:
            self.note("alert", alert.plugin_name, f"{alert.kind.value}: {alert.message}",
                       "bad", wall=alert.timestamp, key="plugin:" + alert.plugin_name)

    def note(self, kind: str, name: str, text: str, level: str, *, key: str,
             wall: float | None = None, state: str | None = None) -> None:
        """Queue a timeline entry; the dashboard's thread sends it at once. Never blocks.

        ``state``: the breaker's new state, for a transition (the page shows it at once).
        """
        entry = _entry(kind, name, text, level, key, wall)
        if state is not None:
            entry["state"] = state
        self._pending.append(entry)
        self._wake.set()

    # -- the dashboard's thread -----------------------------------------------------------

    def _run(self) -> None:
        next_tick = time.monotonic() + self._interval
        last_refresh = -math.inf
        refresh_due: float | None = None  # a reading prompted by events, held back by MIN_REFRESH
        while True:
            wake_at = next_tick if refresh_due is None else min(next_tick, refresh_due)
            self._wake.wait(max(wake_at - time.monotonic(), 0.0))
            if self._stopping.is_set():
                return
            self._wake.clear()
            now = time.monotonic()
            try:
                if self._pending:
                    self._drain()
                    refresh_due = max(now, last_refresh + MIN_REFRESH)
                if now >= next_tick:
                    self._tick()
                    last_refresh, refresh_due = now, None
                elif refresh_due is not None and now >= refresh_due:
                    # Something happened: recovery actions show up now, not at the tick.
                    self._catch_up()
                    last_refresh, refresh_due = now, None
            except Exception:
                _logger.exception("dashboard: reading the recovery manager failed")
            if now >= next_tick:
                next_tick += self._interval
                if next_tick <= now:  # fell behind (a slow reading): skip, do not burst
                    next_tick = now + self._interval

    def _drain(self) -> None:
        with self._lock:
            while self._pending:
                self._emit(self._pending.popleft())

    def _emit(self, entry: dict[str, Any]) -> None:
        """Put ``entry`` on the timeline and send it; call under the lock."""
        entry["seq"] = next(self._seq)
        self._timeline.append(entry)
        tile = self._tiles.get(entry["tile"])
        if tile is not None and "state" in entry:  # so a snapshot before the tick agrees
            tile["circuit_breaker"]["state"] = entry["state"]
            tile["circuit_breaker"]["state_change_time"] = entry["time"]
        self._publish(encode("event", entry))

    def _catch_up(self) -> None:
        """Send the recovery actions since the last reading (the tiles wait for the tick)."""
        status = self._rm.status()
        entries = [
            entry
            for name, plugin in status.plugins.items()
            if "plugin:" + name in self._histories
            for entry in self._diff_plugin("plugin:" + name, name, plugin)
        ]
        entries += self._diff_incidents(status)
        with self._lock:
            for entry in entries:
                self._emit(entry)

    def _tick(self) -> None:
        """Read everything, sample the rates, and send every tile."""
        status = self._rm.status()
        wall, now = time.time(), time.monotonic()
        tiles: list[dict[str, Any]] = []
        entries = self._diff_incidents(status)
        grouped = self._grouped or {}
        for name, plugin in status.plugins.items():
            key = "plugin:" + name
            if key not in self._histories:
                self._listen(key, name, self._rm.breaker(name))
            entries += self._diff_plugin(key, name, plugin)
            recovery = plugin.recovery.to_dict()
            del recovery["actions"]  # the per-action counts become timeline entries
            del recovery["strategy_order"]  # in words, below: each tick carries every tile
            tiles.append({
                "id": key, "kind": plugin.kind, "name": name,  # "plugin" or "dependency"
                "circuit_breaker": _breaker_fields(plugin.circuit_breaker),
                "health_check": plugin.health_check.to_dict(),
                "recovery": recovery,
                "warning": None if plugin.warning is None else plugin.warning.to_dict(),
                # The grouped incident it is in, and when its hold by it ends.
                "incident": plugin.incident if plugin.incident in grouped else None,
                "held_until": iso_utc(plugin.held_until),
                "strategy_order": self._orders(key, plugin.recovery),
            })
        for breaker in self._breakers:
            tiles.append({"id": "breaker:" + breaker.name, "kind": "breaker",
                          "name": breaker.name,
                          "circuit_breaker": _breaker_fields(breaker.metrics()),
                          "health_check": None, "recovery": None})
        for tile in tiles:
            key, counts = tile["id"], tile["circuit_breaker"]
            counts["window_size"] = self._window_sizes[key]
            rates = self._histories[key].sample(
                now, counts["total_requests"], counts["total_failures"])
            tile["rate"] = [round(rates[0], 2), round(rates[1], 2)]
        manager = status.to_dict(plugins=False)
        with self._lock:
            for entry in entries:
                self._emit(entry)
            self._tiles = {tile["id"]: tile for tile in tiles}
            self._view = {
                "time": iso_utc(wall),
                "now": wall,
                "manager": manager,
                "tiles": tiles,
                "incidents": list(grouped.values()),
                "server": {"clients": self._hub.clients, "dropped_clients": self._hub.dropped},
            }
            self._publish(encode("tick", self._view))

    def _orders(self, key: str, recovery: PluginRecovery) -> list[dict[str, Any]]:
        """The strategy order in force for each failure type the plugin has been
        recovered from, and why, in words: the failure type whose attempts went up
        most recently first (its latest episode's), at most ``ORDERS`` of them.

        Before any attempt a failure type has no order, and shows nothing.
        """
        attempts = {kind: sum(record.attempts for record in order.strategies.values())
                    for kind, order in recovery.strategy_order.items()
                    if order.mode is not None and order.order}
        before = self._tried.get(key, {})
        moved = [kind for kind in attempts if attempts[kind] != before.get(kind)]
        # Latest first: what moved since the last reading, then the order as it was.
        ranked = sorted(moved, key=lambda kind: -attempts[kind]) + \
            [kind for kind in before if kind in attempts and kind not in moved]
        self._tried[key] = {kind: attempts[kind] for kind in ranked}
        return [{"failure_type": kind, "mode": recovery.strategy_order[kind].mode,
                 "text": _order_words(recovery.strategy_order[kind])}
                for kind in ranked[:ORDERS]]

    def _diff_incidents(self, status: RecoveryStatus) -> list[dict[str, Any]]:
        """Read the open incidents the page groups, and timeline entries for what
        changed since the last reading: opened, a member joined (or a new root), resolved.

        The page groups incidents of two members or more, as the manager pages them: an
        incident of one is its own tile, already on the timeline by its trip. Started is
        the wall clock when the feed first read the incident (within a reading, which
        a trip prompts at once). An incident that vanished because another absorbed it
        is not resolved: the survivor's "joined" entry says it.
        """
        wall = time.time()
        open_ids = {incident["id"] for incident in status.incidents}
        for gone in self._first_seen.keys() - open_ids:
            del self._first_seen[gone]
        grouped: dict[str, dict[str, Any]] = {}
        for incident in status.incidents:
            started = self._first_seen.setdefault(incident["id"], wall)
            if len(incident["members"]) < 2:
                continue
            # The declared links that joined its members: "depends_on", "tag".
            links = sorted({item["reason"] for item in incident["evidence"]}
                           & {"depends_on", "tag"})
            grouped[incident["id"]] = {
                "id": incident["id"], "root": incident["root"],
                "members": list(incident["members"]), "cause_known": incident["cause_known"],
                "links": links, "started": iso_utc(started), "started_t": started,
            }
        before, self._grouped = self._grouped, grouped
        return [] if before is None else _incident_entries(before, grouped, wall)

    def _diff_plugin(self, key: str, name: str, plugin: PluginStatus) -> list[dict[str, Any]]:
        """Timeline entries for what changed in a plugin's recovery and early warnings
        since the last reading, in the words of its kind (a dependency is down and
        probed, not in a crash loop of restarts).

        A strategy run shows as its action's count going up, a warning as its count
        raised going up; the first reading is the baseline, so a dashboard started
        late does not replay old runs.
        """
        recovery = plugin.recovery
        counts = {
            (action, result): count
            for action, runs in recovery.actions.items()
            for result, count in (("success", runs.success), ("failure", runs.failure))
        }
        warned = _warning_counts(plugin.warning)
        flags = {"failed": recovery.failed, "crash_loop": recovery.crash_loop,
                 "degraded": recovery.degraded}
        before, before_flags = self._actions.get(key), self._flags.get(key)
        before_warned = self._warned.get(key)
        self._actions[key], self._flags[key], self._warned[key] = counts, flags, warned
        if before is None or before_flags is None:
            return []
        entries = []
        for (action, result), count in sorted(counts.items()):
            runs = count - before.get((action, result), 0)
            if runs > 0:
                verdict = "succeeded" if result == "success" else "failed"
                times = f" (\u00d7{runs})" if runs > 1 else ""
                entries.append(_entry("recovery", name, f"{action} {verdict}{times}",
                                      "good" if result == "success" else "bad", key))
        entries += _warning_entries(name, key, plugin.warning, warned, before_warned)
        words = _DEPENDENCY_FLAGS if plugin.kind == "dependency" else _PLUGIN_FLAGS
        for flag, on, off, level in words:
            if flags[flag] == before_flags[flag]:
                continue
            if plugin.kind == "dependency" and flag == "failed" and flags["crash_loop"] != \
                    before_flags["crash_loop"]:
                continue  # one entry says it: down (and probed), or up again
            text = on if flags[flag] else off
            if flag == "failed" and flags[flag] and recovery.failed_reason:
                text += f": {_reason(plugin.kind, recovery.failed_reason)}"
            if flag == "crash_loop" and flags[flag] and plugin.kind == "dependency":
                text += _down_words(recovery.down_since, recovery.next_attempt)
            elif flag == "crash_loop" and flags[flag] and recovery.next_attempt is not None:
                text += f", next attempt {iso_utc(recovery.next_attempt)}"
            entries.append(_entry("recovery", name, text, level if flags[flag] else "good",
                                  key))
        return entries


# Alerts the timeline takes from the readings instead of the alert handler.
_FROM_READINGS = frozenset({AlertKind.EARLY_WARNING, AlertKind.INCIDENT_OPENED,
                            AlertKind.INCIDENT_UPDATED, AlertKind.INCIDENT_RESOLVED})


def _incident_entries(before: dict[str, dict[str, Any]], now: dict[str, dict[str, Any]],
                      wall: float) -> list[dict[str, Any]]:
    """"incident opened: ...", "incident updated: ..." and "incident resolved: ..."
    between two readings of the grouped incidents, each on its root's tile."""
    entries = []
    for id_, incident in now.items():
        root, key = incident["root"], "plugin:" + incident["root"]
        was = before.get(id_)
        if was is None:
            others = ", ".join(name for name in incident["members"] if name != root)
            cause = "" if incident["cause_known"] else ", cause unknown"
            entries.append(_entry("incident", root, f"incident opened: root {root}, with "
                                  f"{others}{cause}", "bad", key))
            continue
        joined = [name for name in incident["members"] if name not in was["members"]]
        if joined:
            entries.append(_entry("incident", root, "incident updated: "
                                  f"{', '.join(joined)} joined", "warn", key))
        if root != was["root"]:
            entries.append(_entry("incident", root, f"incident updated: root now {root} "
                                  f"(was {was['root']})", "warn", key))
    in_open = {name for incident in now.values() for name in incident["members"]}
    for id_, was in before.items():
        if id_ in now or set(was["members"]) <= in_open:
            continue  # open still, or absorbed by another incident
        lasted = max(wall - was["started_t"], 0.0)
        entries.append(_entry("incident", was["root"], f"incident resolved: root "
                              f"{was['root']}, {len(was['members'])} members, lasted "
                              f"{lasted:.0f}s", "good", "plugin:" + was["root"]))
    return entries


_PLUGIN_FLAGS = (
    ("failed", "marked failed", "no longer failed", "bad"),
    ("crash_loop", "in a crash loop", "crash loop ended", "bad"),
    ("degraded", "degraded: fallback served", "no longer degraded", "warn"),
)
_DEPENDENCY_FLAGS = (
    ("failed", "down until reset", "back in service", "bad"),
    ("crash_loop", "down", "up again", "bad"),
    ("degraded", "degraded: fallback served", "no longer degraded", "warn"),
)
# Why a registration is out of service, for a dependency in its own words.
_DEPENDENCY_REASONS = {"exhausted": "probes failed", "restart_intensity": "failing again and again",
                       "gave_up": "given up on", "unrecoverable": "unrecoverable failure"}


def _down_words(since: float | None, next_probe: float | None) -> str:
    """" since 12:00:03 UTC, next probe in 5s": what follows "down" for a dependency."""
    text = "" if since is None else time.strftime(" since %H:%M:%S UTC", time.gmtime(since))
    if next_probe is not None:
        wait = max(next_probe - time.time(), 0.0)
        text += f", next probe in {wait:.0f}s" if wait >= 1 else ", next probe now"
    return text


def _reason(kind: str, reason: str) -> str:
    return _DEPENDENCY_REASONS.get(reason, reason) if kind == "dependency" else reason


# Early warnings by kind, in words; counted by ("failure_rate" | "latency",
# "raised" | "ended").
_WARNING_KINDS = {"failure_rate": "failure rate", "latency": "latency"}


def _warning_counts(warning: PluginWarning | None) -> dict[tuple[str, str], int] | None:
    if warning is None:
        return None
    return {
        (kind, which): count
        for kind, one in warning.kinds().items()
        for which, count in (("raised", one.raised), ("ended", one.raised - one.active))
    }


def _warning_entries(
    name: str, key: str, warning: PluginWarning | None,
    counts: dict[tuple[str, str], int] | None, before: dict[tuple[str, str], int] | None,
) -> list[dict[str, Any]]:
    """"early warning: ..." for each warning raised since the last reading, and "...
    over" for each that ended; a reading while the manager did not watch (stopped, or
    early warning off) is no baseline, so a restart replays nothing."""
    if warning is None or counts is None or before is None:
        return []
    entries = []
    for kind, one in warning.kinds().items():
        words = _WARNING_KINDS[kind]
        for which in ("raised", "ended"):
            new = counts[kind, which] - before.get((kind, which), 0)
            if new <= 0:
                continue
            times = f" (\u00d7{new})" if new > 1 else ""
            if which == "ended":
                entries.append(_entry("warning", name, f"early warning over: {words}{times}",
                                      "good", key))
            elif one.active and one.current is not None and one.baseline is not None:
                text = warning_message(kind, one.current, one.baseline, one.expected_trip_in)
                entries.append(_entry("warning", name, f"early warning{times}: {text}",
                                      "warn", key))
            else:
                entries.append(_entry("warning", name, f"early warning: {words}{times}",
                                      "warn", key))
    return entries


def _order_words(order: StrategyOrder) -> str:
    """"reload 5/5 · 1.2s, restart 0/2, reset": the order in force, each strategy
    tried with its verified successes of attempts and its median time to a verified
    recovery (once it has one); one never tried is only named."""
    words = []
    for name in order.order or ():
        record = order.strategies.get(name)
        text = name
        if record is not None and record.attempts:
            text += f" {record.successes}/{record.attempts}"
            if record.median_time is not None:
                text += f" · {_seconds(record.median_time)}"
        words.append(text)
    return ", ".join(words)


def _seconds(value: float) -> str:
    return f"{value:.1f}s" if value < 60 else f"{value / 60:.1f}m"


# What a tile shows of a breaker (the rest of its metrics is in /metrics): each tick
# carries every tile, so this keeps a hundred of them small.
def _breaker_fields(metrics: CircuitBreakerMetrics) -> dict[str, Any]:
    return {
        "state": metrics.state.value,
        "state_change_time": iso_utc(metrics.state_change_time),
        "next_retry_time": iso_utc(metrics.next_retry_time),
        "total_requests": metrics.total_requests,
        "total_failures": metrics.total_failures,
        "total_rejections": metrics.total_rejections,
        "total_slow_calls": metrics.total_slow_calls,
        "window_failure_rate": round(metrics.window_failure_rate, 4),
    }


def _said(state: CircuitBreakerState) -> str:
    return state.value.replace("_", "-")


def _entry(kind: str, name: str, text: str, level: str, key: str,
           wall: float | None = None) -> dict[str, Any]:
    wall = time.time() if wall is None else wall
    return {"time": iso_utc(wall), "t": wall, "kind": kind, "name": name, "tile": key,
            "text": text, "level": level}
