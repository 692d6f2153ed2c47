"""The bare breaker's defaults: an explicit threshold works as written, and
``CircuitBreakerConfig()`` meets the web-client scenarios it was chosen for (on each
window, driven call by call on the fake clock)."""

from __future__ import annotations

import pytest

from recovery.breaker import CircuitBreaker
from recovery.config import DEFAULT_MINIMUM_REQUESTS, CircuitBreakerConfig
from recovery.state import CircuitBreakerState
from recovery.testing import FakeClock
from tests.helpers import MakeBreaker


def fail() -> None:
    raise ConnectionError("refused")


@pytest.mark.parametrize("threshold", [1, 3, 10])
def test_an_explicit_failure_threshold_opens_on_that_many_failures_in_a_row(
    make_breaker: MakeBreaker, threshold: int
) -> None:
    breaker = make_breaker(failure_threshold=threshold)
    assert breaker.config.minimum_requests == threshold
    for _ in range(threshold - 1):
        with pytest.raises(ConnectionError):
            breaker.call(fail)
    assert breaker.state is CircuitBreakerState.CLOSED
    with pytest.raises(ConnectionError):
        breaker.call(fail)
    assert breaker.state is CircuitBreakerState.OPEN


def test_the_rule_fills_only_what_was_left_unset() -> None:
    assert CircuitBreakerConfig().minimum_requests == DEFAULT_MINIMUM_REQUESTS
    # A threshold above the usual minimum leaves the minimum alone.
    high = DEFAULT_MINIMUM_REQUESTS + 5
    assert CircuitBreakerConfig(failure_threshold=high).minimum_requests == (
        DEFAULT_MINIMUM_REQUESTS
    )
    # A minimum set explicitly is kept, above or below the threshold.
    assert CircuitBreakerConfig(failure_threshold=10, minimum_requests=30).minimum_requests == 30
    assert CircuitBreakerConfig(failure_threshold=10, minimum_requests=4).minimum_requests == 4


def test_the_keyword_form_follows_the_same_rule(
    breaker_cls: type[CircuitBreaker], clock: FakeClock
) -> None:
    breaker = breaker_cls("db", failure_threshold=10, clock=clock)
    for _ in range(10):
        with pytest.raises(ConnectionError):
            breaker.call(fail)
    assert breaker.state is CircuitBreakerState.OPEN
