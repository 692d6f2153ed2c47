"""The states a circuit breaker can be in."""

from __future__ import annotations

from recovery._enum import StrEnum


class CircuitBreakerState(StrEnum):
    """A breaker's state; the value is the string shown in status and metrics."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"
    REPAIRING = "repairing"


# The windows keep the state as a small int; this tuple maps it back.
STATES = (
    CircuitBreakerState.CLOSED,
    CircuitBreakerState.OPEN,
    CircuitBreakerState.HALF_OPEN,
    CircuitBreakerState.REPAIRING,
)
