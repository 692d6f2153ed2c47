"""The states a circuit breaker can be in, and why it opened."""

from __future__ import annotations

from recovery._enum import StrEnum


class CircuitBreakerState(StrEnum):
    """A breaker's state; the value is the string shown in status and metrics."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"
    REPAIRING = "repairing"


# The windows keep the state as a small int, its index in STATES. These codes are the
# only definition: the twin and the tuner import them, and the compiled window refuses
# to import if its C enum disagrees (rebuild it).
CLOSED_CODE, OPEN_CODE, HALF_OPEN_CODE, REPAIRING_CODE = 0, 1, 2, 3
STATE_CODES = (CLOSED_CODE, OPEN_CODE, HALF_OPEN_CODE, REPAIRING_CODE)
STATES = (
    CircuitBreakerState.CLOSED,
    CircuitBreakerState.OPEN,
    CircuitBreakerState.HALF_OPEN,
    CircuitBreakerState.REPAIRING,
)


class TripReason(StrEnum):
    """Why a circuit last opened: ``CircuitBreaker.trip_reason`` while it is not closed."""

    FAILURES = "failures"  # the failure count or failure rate rule fired
    SLOW_CALLS = "slow_calls"  # the slow-call rate rule fired
    TRIAL_FAILED = "trial_failed"  # a half-open trial failed, was slow or never reported
    FORCED = "forced"  # force_open(), a cluster holding it open, or a repair begun closed


# The windows keep the reason as a small int, its index in TRIP_REASONS (0 while closed);
# defined here only, as the state codes are.
TRIP_NONE, TRIP_FAILURES, TRIP_SLOW_CALLS, TRIP_TRIAL_FAILED, TRIP_FORCED = 0, 1, 2, 3, 4
TRIP_CODES = (TRIP_NONE, TRIP_FAILURES, TRIP_SLOW_CALLS, TRIP_TRIAL_FAILED, TRIP_FORCED)
TRIP_REASONS = (
    None,
    TripReason.FAILURES,
    TripReason.SLOW_CALLS,
    TripReason.TRIAL_FAILED,
    TripReason.FORCED,
)
