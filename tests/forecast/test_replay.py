"""Scoring the forecaster on a trace: lead times per outage, false warnings per hour, and
the committed traces holding the goals."""

from __future__ import annotations

import array
import filecmp
import math
import random
from pathlib import Path

import attrs
import pytest

from benchmarks.bench_forecast import generator
from recovery.config import CircuitBreakerConfig
from recovery.forecast import ForecastScore, score_forecast
from recovery.trace import Trace, load_trace

TRACES = Path(__file__).resolve().parents[2] / "benchmarks" / "traces"


def labelled(
    phases: list[tuple[float, float | tuple[float, float], bool]], rate: float = 50.0, seed: int = 3
) -> Trace:
    """Poisson calls through ``(seconds, error_rate, healthy)`` phases; an error rate may be
    a (start, end) pair, grown geometrically over the phase."""
    rng = random.Random(seed)
    t: array.array[float] = array.array("d")
    latency: array.array[float] = array.array("d")
    ok, healthy = bytearray(), bytearray()
    begin = now = 0.0
    for seconds, errors, label in phases:
        end = begin + seconds
        while (now := now + rng.expovariate(rate)) < end:
            if isinstance(errors, tuple):
                low, high = errors
                error_rate = low * (high / low) ** ((now - begin) / seconds)
            else:
                error_rate = errors
            t.append(now)
            ok.append(rng.random() >= error_rate)
            latency.append(0.02)
            healthy.append(label)
        now = begin = end
    return Trace(t, ok, latency, healthy, "made")


def test_a_ramp_is_foreseen_and_its_lead_measured() -> None:
    trace = labelled([(300, 0.01, True), (60, (0.01, 1.0), False), (30, 1.0, False),
                      (300, 0.01, True)])
    score = score_forecast(trace)
    assert score.warned_before_open == (1, 1)
    (outage,) = score.outages
    assert outage.start == pytest.approx(300, abs=0.1)
    assert outage.kind == "failure_rate"
    assert outage.opened is not None and outage.warned is not None
    assert outage.lead == pytest.approx(outage.opened - outage.warned)
    assert outage.lead is not None and outage.lead >= 5
    assert score.median_lead == outage.lead
    assert score.false_warnings == 0 and score.lingering == 0
    assert score.healthy_seconds == pytest.approx(600, abs=1)
    assert score.false_warnings_per_hour == 0.0
    text = score.text()
    assert "breaker opened in 1, warned before it opened in 1" in text
    assert f"lead {outage.lead:.1f} s" in text
    assert score.to_dict()["outages"][0]["lead"] == outage.lead


def test_the_breaker_is_the_one_given_and_the_defaults_are_read_when_called() -> None:
    trace = labelled([(300, 0.01, True), (60, (0.01, 1.0), False)])
    defaults = score_forecast(trace)
    assert defaults.config == CircuitBreakerConfig()
    touchy = attrs.evolve(CircuitBreakerConfig(), failure_threshold=5, minimum_requests=5)
    early = score_forecast(trace, touchy)
    assert early.config is touchy
    (late,), (soon,) = defaults.outages, early.outages
    assert late.opened is not None and soon.opened is not None and soon.opened < late.opened


def test_an_outage_the_breaker_never_opens_in_has_no_lead() -> None:
    trace = labelled([(300, 0.01, True), (60, 0.1, False), (300, 0.01, True)])
    never = CircuitBreakerConfig(failure_threshold=100, failure_rate_threshold=None)
    score = score_forecast(trace, never)
    (outage,) = score.outages
    assert outage.opened is None and outage.warned is not None and outage.lead is None
    assert score.median_lead is None and score.warned_before_open == (0, 0)
    assert "never opened" in score.text()


def test_false_warnings_are_counted_per_hour_of_healthy_time() -> None:
    # 0.1 % for five minutes, then 3 %, all labelled healthy: the rise is a warning, and
    # a false one by the labels.
    trace = labelled([(300, 0.001, True), (60, 0.03, True)])
    score = score_forecast(trace)
    assert score.outages == () and score.false_warnings == 1 == score.warnings
    per_hour = score.false_warnings_per_hour
    assert per_hour is not None and per_hour == pytest.approx(3600 / 360, rel=0.01)


def test_an_empty_trace_scores_nothing() -> None:
    empty = Trace(array.array("d"), bytearray(), array.array("d"), bytearray())
    score = score_forecast(empty)
    assert score.warnings == 0 and score.outages == () and score.false_warnings_per_hour is None


def test_bad_arguments_are_refused() -> None:
    unlabelled = Trace(array.array("d", [0.0]), bytearray(b"\x01"), array.array("d", [0.01]))
    with pytest.raises(ValueError, match="no labels"):
        score_forecast(unlabelled)
    with pytest.raises(TypeError, match="trace must be a Trace"):
        score_forecast("trace.csv")  # type: ignore[arg-type]
    labelled_trace = labelled([(1, 0.0, True)])
    with pytest.raises(TypeError, match="config must be a CircuitBreakerConfig"):
        score_forecast(labelled_trace, {"timeout": 1})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="interval"):
        score_forecast(labelled_trace, interval=0)


def test_the_committed_traces_are_what_the_generator_makes(tmp_path: Path) -> None:
    generator().main(["--out", str(tmp_path)])
    for made in sorted(tmp_path.iterdir()):
        assert filecmp.cmp(made, TRACES / made.name, shallow=False), made.name


def _committed(name: str, config: CircuitBreakerConfig | None = None) -> ForecastScore:
    return score_forecast(load_trace(TRACES / f"{name}.csv"), config)


def test_the_committed_traces_meet_the_goals() -> None:
    geometric = _committed("ramp_geometric")
    assert geometric.median_lead is not None and geometric.median_lead >= 10
    linear = _committed("ramp_linear")
    warned, opened = linear.warned_before_open
    assert opened and warned >= 0.9 * opened
    slow = attrs.evolve(
        CircuitBreakerConfig(), record_latency=True, slow_call_duration=0.04,
        slow_call_rate_threshold=0.2,
    )
    warned, opened = _committed("latency_creep", slow).warned_before_open
    assert opened and warned == opened
    for quiet in ("noise_2pct", "noise_5pct", "traffic_double", "traffic_halve"):
        score = _committed(quiet)
        assert score.false_warnings_per_hour is not None
        assert score.false_warnings_per_hour <= 1.0, quiet
    assert _committed("blips").lingering == 0
    assert math.isfinite(geometric.healthy_seconds)
