"""The change tests on their own: fed samples directly, no breaker, no clock."""

from __future__ import annotations

import math
import random

import pytest

from recovery.forecast.detectors import (
    BUCKET_LOGS,
    FAILURE_THRESHOLD,
    WARMUP_SECONDS,
    FailureRateDetector,
    LatencyDetector,
    growth,
)

TICK = 0.25


def feed(detector: FailureRateDetector, seconds: float, rate: float, calls: int = 25,
         rng: random.Random | None = None) -> list[str]:
    rng = rng or random.Random(5)
    outcomes = []
    for _ in range(round(seconds / TICK)):
        failures = sum(rng.random() < rate for _ in range(calls))
        outcome = detector.update(TICK, calls, failures)
        if outcome:
            outcomes.append(outcome)
    return outcomes


def test_nothing_is_raised_while_learning() -> None:
    detector = FailureRateDetector(trip_rate=0.2)
    assert feed(detector, WARMUP_SECONDS - 1, 0.5) == []
    assert detector.baseline() is None


def test_the_baseline_is_slow_to_rise_and_quick_to_fall() -> None:
    detector = FailureRateDetector(trip_rate=0.2)
    feed(detector, 600, 0.04)
    learned = detector.baseline()
    assert learned is not None and 0.035 < learned < 0.05
    # A rise is evidence, not a new normal: the baseline stays while the test leans to it.
    assert feed(detector, 30, 0.12) == ["raise"]
    assert detector.baseline() == pytest.approx(learned, rel=0.05)
    # A fall is believed within a minute or so.
    feed(detector, 90, 0.005)
    lower = detector.baseline()
    assert lower is not None and lower < 0.02


def test_a_warning_ends_when_the_rate_is_back() -> None:
    detector = FailureRateDetector(trip_rate=0.2)
    feed(detector, 300, 0.02)
    assert feed(detector, 1, 1.0) == ["raise"]
    assert feed(detector, 2, 0.02) == ["end"]
    assert not detector.alarmed and detector.evidence < FAILURE_THRESHOLD / 2


def test_a_slide_keeps_its_warning() -> None:
    detector = FailureRateDetector(trip_rate=0.2)
    feed(detector, 300, 0.01)
    assert feed(detector, 60, 0.05) == ["raise"]
    assert detector.alarmed


def test_expected_trip_in_follows_a_geometric_rise() -> None:
    detector = FailureRateDetector(trip_rate=0.2)
    feed(detector, 300, 0.01, calls=250)
    rng = random.Random(9)
    # 1 % growing 5 % a second: reaches 20 % after log(20) / log(1.05) = 61 s.
    for step in range(round(30 / TICK)):
        rate = 0.01 * 1.05 ** (step * TICK)
        detector.update(TICK, 250, sum(rng.random() < rate for _ in range(250)))
    left = detector.expected_trip_in()
    assert left is not None and 15 < left < 60  # truly 31 s


def test_growth_recovers_the_rate_of_a_geometric_signal() -> None:
    g = 0.05
    short = 1 / (1 + g * 5.0)
    far = 1 / (1 + g * 20.0)
    rate = growth(short, far)
    assert rate is not None and rate == pytest.approx(g)
    assert growth(1.0, 1.0) is None and growth(0.5, 1.0) is None and growth(1.0, 0.0) is None


def counts_for(latencies: list[float]) -> list[int]:
    counts = [0] * len(BUCKET_LOGS)
    for latency in latencies:
        index = min(
            (i for i, value in enumerate(BUCKET_LOGS) if math.log(latency) <= value + 0.5),
            default=len(BUCKET_LOGS) - 1,
        )
        counts[index] += 1
    return counts


def feed_latency(detector: LatencyDetector, seconds: float, typical: float,
                 rng: random.Random, slow: int = 0) -> list[str]:
    outcomes = []
    for _ in range(round(seconds / TICK)):
        sample = [typical * rng.lognormvariate(0, 0.4) for _ in range(25)] + [30.0] * slow
        outcome = detector.update(TICK, counts_for(sample))
        if outcome:
            outcomes.append(outcome)
    return outcomes


def test_latency_rises_are_warned_and_a_few_timeouts_are_not() -> None:
    rng = random.Random(4)
    detector = LatencyDetector(slow_duration=0.1, slow_rate=0.5)
    assert feed_latency(detector, 300, 0.02, rng) == []
    baseline = detector.baseline()
    assert baseline is not None and 0.01 < baseline < 0.04
    assert feed_latency(detector, 5, 0.02, rng, slow=1) == []  # one 30 s call in 26
    assert feed_latency(detector, 20, 0.06, rng) == ["raise"]
    assert detector.current() > baseline
    assert feed_latency(detector, 5, 0.02, rng) == ["end"]


def test_latency_expected_trip_in_needs_a_slow_call_rule() -> None:
    rng = random.Random(4)
    ruled, unruled = LatencyDetector(0.1, 0.5), LatencyDetector(None, None)
    for detector in (ruled, unruled):
        feed_latency(detector, 300, 0.02, random.Random(4))
        for step in range(40):
            feed_latency(detector, TICK, 0.02 * 2 ** (step * TICK / 10), rng)
    left = ruled.expected_trip_in()
    assert left is not None and left > 0
    assert unruled.expected_trip_in() is None
