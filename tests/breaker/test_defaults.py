"""The bare breaker's defaults: an explicit threshold works as written, and
``CircuitBreakerConfig()`` meets the web-client scenarios it was chosen for (on each
window, driven call by call on the fake clock)."""

from __future__ import annotations

import pytest

from benchmarks.choose_defaults import (
    SCENARIOS,
    calls_a_minute,
    calls_after_trip,
    closed_after,
    drive,
    figures,
    opens,
    replayed,
)
from recovery.breaker import CircuitBreaker
from recovery.config import DEFAULT_MINIMUM_REQUESTS, CircuitBreakerConfig
from recovery.state import OPEN_CODE, CircuitBreakerState
from recovery.testing import FakeClock
from recovery.trace import Trace
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


# -- the web-client scenarios the defaults were chosen for -----------------------------------
# 50 calls a second on the fake clock, each call made through breaker.call at its time
# (benchmarks/choose_defaults.py: the scenarios, and the table of candidates).


def run(breaker_cls: type[CircuitBreaker], name: str) -> tuple[Trace, bytes, bytes]:
    return drive(breaker_cls)(SCENARIOS[name], CircuitBreakerConfig())


def test_a_one_second_blip_is_closed_again_within_5_s_of_its_end(
    breaker_cls: type[CircuitBreaker],
) -> None:
    trace, _, states = run(breaker_cls, "blip")
    assert opens(states) == 1  # every call failing for a second does open it...
    delay = closed_after(trace, states, SCENARIOS["blip"].up or 0.0)
    assert delay is not None and delay <= 5.0  # ...for no longer than the blip needs


def test_a_20_s_outage_is_closed_within_5_s_of_the_return_after_at_most_8_calls(
    breaker_cls: type[CircuitBreaker],
) -> None:
    outage = SCENARIOS["outage"]
    assert outage.down is not None and outage.up is not None
    trace, admitted, states = run(breaker_cls, "outage")
    delay = closed_after(trace, states, outage.up)
    assert delay is not None and delay <= 5.0
    assert calls_after_trip(trace, admitted, states, outage.down, outage.up) <= 8
    first_open = trace.t[states.find(OPEN_CODE)]
    assert first_open - outage.down <= 1.0  # and it is cut off quickly


def test_five_percent_random_failures_for_ten_minutes_never_open_it(
    breaker_cls: type[CircuitBreaker],
) -> None:
    trace, _, states = run(breaker_cls, "noise")
    assert trace.ok.count(0) >= 0.04 * len(trace)  # the noise is there
    assert opens(states) == 0


def test_an_hour_long_outage_gets_at_most_a_call_a_minute_after_its_first_5_minutes(
    breaker_cls: type[CircuitBreaker],
) -> None:
    hour = SCENARIOS["hour"]
    assert hour.down is not None and hour.up is not None
    trace, admitted, states = run(breaker_cls, "hour")
    assert calls_a_minute(trace, admitted, hour.down + 300.0, hour.up) <= 1.0
    assert closed_after(trace, states, hour.up) is not None  # and it comes back


def test_the_table_replays_what_live_calls_do(breaker_cls: type[CircuitBreaker]) -> None:
    """The table that chose the defaults uses the breaker's replay; calls made one by one
    on the fake clock give the same admissions and states."""
    for name in ("blip", "outage"):
        assert run(breaker_cls, name) == replayed(SCENARIOS[name], CircuitBreakerConfig())


def test_the_defaults_meet_every_requirement_of_the_table() -> None:
    assert figures(CircuitBreakerConfig()).meets
