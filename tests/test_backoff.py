"""The one exponential back-off every growing wait of the library is computed by."""

from __future__ import annotations

import math
import random

import pytest

from recovery._backoff import Backoff
from recovery.breaker import CircuitBreaker
from recovery.failures import FailureInfo
from recovery.manager import RecoveryConfig
from recovery.plugins import PluginRegistry
from recovery.strategies import BackoffStrategy, RecoveryContext
from recovery.testing import FakeClock


def test_it_grows_by_the_factor_up_to_the_cap() -> None:
    backoff = Backoff(1.0, 2.0, 60.0)
    assert [backoff.delay(level) for level in range(8)] == [1, 2, 4, 8, 16, 32, 60, 60]


def test_it_never_overflows_however_high_the_level() -> None:
    assert Backoff(5.0, 2.0, 300.0).delay(10**6) == 300.0
    assert Backoff(1.0, 1e200, 60.0).delay(2) == 60.0
    assert Backoff(1.0, 2.0, math.inf).delay(64) == 2.0**64


def test_a_cap_below_the_base_wins_and_a_factor_of_one_never_grows() -> None:
    assert Backoff(1.0, 2.0, 0.5).delay(0) == 0.5
    assert Backoff(3.0, 1.0, 60.0).delay(1000) == 3.0


@pytest.mark.parametrize(
    ("fields", "error", "named"),
    [
        ({"base": 0.0}, ValueError, "base"),
        ({"base": "1"}, TypeError, "base"),
        ({"factor": 0.5}, ValueError, "factor"),
        ({"factor": math.inf}, ValueError, "factor"),
        ({"cap": 0.0}, ValueError, "cap"),
        ({"cap": math.nan}, ValueError, "cap"),
        ({"cap": None}, TypeError, "cap"),
    ],
)
def test_bad_values_are_refused_naming_the_field_and_the_value(
    fields: dict[str, object], error: type[Exception], named: str
) -> None:
    with pytest.raises(error, match=rf"{named} must .* got {fields[named]!r}"):
        Backoff(**{"base": 1.0, "factor": 2.0, "cap": 60.0, **fields})  # type: ignore[arg-type]


def test_the_manager_s_wait_between_attempts_is_the_same_as_before() -> None:
    config = RecoveryConfig(recovery_backoff_base=0.5, recovery_backoff_factor=3.0,
                            max_recovery_backoff=10.0)
    assert [config.backoff(attempt) for attempt in range(1, 6)] == [0.5, 1.5, 4.5, 10.0, 10.0]
    assert RecoveryConfig().backoff(5000) == 60.0


def test_the_backoff_strategy_jitters_the_grown_hold_before_the_cap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``min(base * 2**level * (1 - jitter * r), cap)``, as before: a hold grown past the
    cap can still be jittered below it."""
    breaker = CircuitBreaker("p", clock=FakeClock())
    strategy = BackoffStrategy(base=8.0, cap=10.0, jitter=0.5)
    monkeypatch.setattr(random, "random", lambda: 1.0)
    holds = []
    for _ in range(3):
        strategy.recover("p", FailureInfo("error"), RecoveryContext(
            plugin_manager=PluginRegistry(), breaker=breaker, clock=FakeClock()))
        holds.append(breaker.retry_after)
    assert holds == [4.0, 8.0, 10.0]
