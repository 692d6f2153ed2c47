"""How long each breaker was in each state, and how often it entered each."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import attrs

from recovery.breaker import CircuitBreaker
from recovery.state import CircuitBreakerState

STATES = (
    CircuitBreakerState.CLOSED,
    CircuitBreakerState.OPEN,
    CircuitBreakerState.REPAIRING,
    CircuitBreakerState.HALF_OPEN,
)
"""The order in which the summary lists the time in each state."""


@attrs.frozen
class StateTimes:
    """One breaker's time in each state so far, how often it entered each, where it is."""

    seconds: dict[CircuitBreakerState, float]
    entered: dict[CircuitBreakerState, int]
    state: CircuitBreakerState


class StateTimeRecorder:
    """Records the time each breaker spends in each state, from its transition listener.

    Sampling the state once a frame would miss a state held for less than a frame
    (a trip that a repair follows at once is open for microseconds); a listener sees
    every transition. Listeners run outside the breaker's lock, so transitions made
    on two threads can be told out of order: one that leaves a state the breaker is
    not known to be in waits until the transition into that state is told.
    """

    def __init__(
        self, names: tuple[str, ...], started: float,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self._now = now
        self._lock = threading.Lock()
        self._state = dict.fromkeys(names, CircuitBreakerState.CLOSED)
        self._since = dict.fromkeys(names, started)
        self._seconds = {name: dict.fromkeys(STATES, 0.0) for name in names}
        self._entered = {name: dict.fromkeys(STATES, 0) for name in names}
        self._early: dict[str, list[tuple[CircuitBreakerState, CircuitBreakerState]]] = {
            name: [] for name in names
        }

    def on_transition(
        self, breaker: CircuitBreaker, old: CircuitBreakerState, new: CircuitBreakerState
    ) -> None:
        name = breaker.name
        with self._lock:
            now = self._now()
            waiting = self._early[name]
            waiting.append((old, new))
            moved = True
            while moved:
                moved = False
                for step in waiting:
                    if step[0] is self._state[name]:
                        waiting.remove(step)
                        self._move(name, step[1], now)
                        moved = True
                        break

    def _move(self, name: str, new: CircuitBreakerState, now: float) -> None:
        # A transition told late is timed when it is told, never before the last one.
        since = self._since[name]
        now = max(now, since)
        self._seconds[name][self._state[name]] += now - since
        self._entered[name][new] += 1
        self._state[name] = new
        self._since[name] = now

    def snapshot(self, at: float) -> dict[str, StateTimes]:
        """The times up to ``at`` (the current state counts until then)."""
        with self._lock:
            views = {}
            for name, state in self._state.items():
                seconds = dict(self._seconds[name])
                seconds[state] += max(at - self._since[name], 0.0)
                views[name] = StateTimes(seconds, dict(self._entered[name]), state)
            return views
