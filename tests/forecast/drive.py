"""Traffic for the forecaster tests: calls through a breaker on the fake clock, polled as
the forecaster's thread would, with no real time spent."""

from __future__ import annotations

import random
from collections.abc import Callable

from recovery.breaker import CircuitBreaker
from recovery.errors import CircuitOpenError
from recovery.forecast import Forecaster, Warning
from recovery.testing import FakeClock

TICK = 0.25


def drive(
    breaker: CircuitBreaker,
    forecaster: Forecaster,
    clock: FakeClock,
    seconds: float,
    *,
    rate: float = 100.0,
    error_rate: float | Callable[[float], float] = 0.02,
    latency: float | Callable[[float], float] = 0.02,
    rng: random.Random | None = None,
) -> list[Warning]:
    """``rate`` calls a second for ``seconds``, each failing with ``error_rate`` (a number, or
    a function of the seconds since the start) and taking about ``latency`` seconds;
    one poll every ``TICK``. Returns every warning raised or ended meanwhile."""
    rng = rng or random.Random(7)
    changes: list[Warning] = []
    calls_per_tick = rate * TICK
    owed = 0.0
    elapsed = 0.0
    while elapsed < seconds - 1e-9:
        errors = error_rate(elapsed) if callable(error_rate) else error_rate
        typical = latency(elapsed) if callable(latency) else latency
        owed += calls_per_tick
        while owed >= 1:
            owed -= 1
            try:
                token = breaker.try_admit()
            except CircuitOpenError:
                continue
            took = typical * rng.lognormvariate(0.0, 0.3)
            breaker.record(token, rng.random() < errors, took)
        clock.advance(TICK)
        elapsed += TICK
        changes += forecaster.poll()
    return changes
