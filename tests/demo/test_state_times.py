"""Time in each breaker state, from the transition listener."""

from __future__ import annotations

from typing import Any

from recovery.demo.state_times import StateTimeRecorder
from recovery.state import CircuitBreakerState

CLOSED, OPEN, REPAIRING, HALF_OPEN = (
    CircuitBreakerState.CLOSED,
    CircuitBreakerState.OPEN,
    CircuitBreakerState.REPAIRING,
    CircuitBreakerState.HALF_OPEN,
)

class Ticking:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_state_clock_counts_states_held_for_no_time_and_late_news() -> None:
    ticking = Ticking()
    states = StateTimeRecorder(("p",), started=0.0, now=ticking)
    breaker: Any = type("Breaker", (), {"name": "p"})()
    ticking.now = 1.0
    states.on_transition(breaker, CLOSED, OPEN)
    states.on_transition(breaker, OPEN, REPAIRING)  # at once: open for no time at all
    ticking.now = 1.5
    # Told out of order (listeners run outside the breaker's lock, on two threads).
    states.on_transition(breaker, HALF_OPEN, CLOSED)
    ticking.now = 1.75
    states.on_transition(breaker, REPAIRING, HALF_OPEN)
    times = states.snapshot(at=4.0)["p"]
    assert times.state is CLOSED
    assert times.entered == {CLOSED: 1, OPEN: 1, REPAIRING: 1, HALF_OPEN: 1}
    assert times.seconds == {CLOSED: 1.0 + 2.25, OPEN: 0.0, REPAIRING: 0.75, HALF_OPEN: 0.0}
    assert sum(times.seconds.values()) == 4.0
