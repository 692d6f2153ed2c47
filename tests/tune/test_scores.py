"""Scores on tiny hand-made replays and through real windows; the cost and the ranking."""

from __future__ import annotations

import pytest

from recovery import tune
from recovery.breaker import CircuitBreaker
from recovery.config import CircuitBreakerConfig
from recovery.tune import Scores, cost, make_candidate, score
from recovery.tune import scores as scoring
from tests.tune.helpers import (
    CL,
    HO,
    OP,
    hand_trace,
    outage_then_recovery,
)

# -- scores on hand-written replays ------------------------------------------------------


def test_opens_count_closed_to_open_only_and_need_no_labels() -> None:
    trace = hand_trace(None, [0.0] * 7)
    # open at the first event (CLOSED before it), a reopen from half-open, a close, an open.
    states = bytes([OP, OP, HO, OP, CL, CL, OP])
    admitted = bytes([1, 0, 1, 1, 1, 1, 1])
    assert score(trace, admitted, states) == Scores(events=7, rejected=1, opens=2)


def test_false_opens_are_opens_at_healthy_events() -> None:
    trace = hand_trace([1, 1, 1, 0, 1, 1, 1])
    states = bytes([CL, OP, HO, OP, OP, CL, OP])
    admitted = bytes([1, 1, 1, 1, 0, 1, 1])
    scores = score(trace, admitted, states)
    assert scores.opens == 2  # events 1 and 6; 2 -> 3 is a reopen
    assert scores.false_opens == 2  # both opens happened while healthy


def test_every_labelled_score_on_a_hand_made_replay() -> None:
    # event:   0,  1,  2,  3,  4,  5,  6,  7,  8,  9, 10, 11, 12, 13
    healthy = [1,  0,  0,  0,  1,  0,  0,  1,  1,  0,  0,  0,  1,  1]
    states = [CL, CL, OP, OP, OP, OP, OP, HO, CL, CL, CL, CL, CL, CL]
    admitted = [1, 1,  1,  0,  0,  0,  0,  1,  1,  1,  1,  1,  1,  1]
    latency = [0.25] * 14
    latency[8] = 0.5  # the trial call that closed it took 0.5 s
    trace = hand_trace(healthy, latency)
    scores = score(trace, bytes(admitted), bytes(states))
    assert scores == Scores(
        events=14,
        rejected=4,
        opens=1,  # at event 2 (unhealthy: not false)
        false_opens=0,
        # Outages: events 1-3 detected when event 2 ended (2.25 - 1 = 1.25 s);
        # events 5-6 began with the breaker already open (0 s); events 9-11 missed.
        outages=3,
        missed_outages=1,
        detection_delay_mean=0.625,
        detection_delay_max=1.25,
        rejected_healthy=1,  # event 4
        passed_unhealthy=5,  # events 1, 2, 9, 10, 11
        # After outages: event 4 alone never sees it closed (unrecovered); events 7-8
        # close when event 8 ends (8.5 - 7 = 1.5 s); events 12-13 start closed (0 s).
        recoveries=3,
        unrecovered=1,
        recovery_delay_mean=0.75,
        recovery_delay_max=1.5,
    )


def test_a_trace_starting_unhealthy_and_an_all_healthy_trace() -> None:
    starting_down = score(hand_trace([0, 0, 1]), bytes([1, 1, 1]), bytes([CL, OP, CL]))
    assert starting_down.outages == 1
    assert starting_down.detection_delay_max == 1.25  # opened when event 1 ended
    assert starting_down.recovery_delay_max == 0.25  # closed when event 2 ended
    healthy = score(hand_trace([1, 1, 1]), bytes([1, 1, 1]), bytes([CL, CL, CL]))
    assert healthy.outages == healthy.recoveries == healthy.missed_outages == 0
    assert healthy.detection_delay_mean is None
    assert healthy.recovery_delay_mean is None
    assert healthy.rejected_healthy == healthy.passed_unhealthy == 0


def test_score_rejects_arrays_of_the_wrong_length() -> None:
    with pytest.raises(ValueError, match=r"one entry per event \(3\), got 2 and 3"):
        score(hand_trace([1, 1, 1]), bytes(2), bytes(3))


# -- replay through real windows --------------------------------------------------------


def test_replay_and_score_a_known_outage(
    breaker_cls: type[CircuitBreaker], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scoring, "CircuitBreaker", breaker_cls)  # replay builds one
    config = CircuitBreakerConfig(
        failure_threshold=3, minimum_requests=3, sliding_window_size=3,
        timeout=5.0, success_threshold=1,
    )
    trace = outage_then_recovery()
    admitted, states = tune.replay(trace, config)
    # Opens when event 2 ends (2.1), open until 7.1: events 3-7 rejected, 8 is the trial.
    assert admitted == bytes([1, 1, 1, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1])
    assert states == bytes([CL, CL, OP, OP, OP, OP, OP, OP, CL, CL, CL, CL, CL, CL, CL, CL])
    scores = score(trace, admitted, states)
    assert scores.opens == 1
    assert scores.false_opens == 0
    assert scores.detection_delay_mean == pytest.approx(2.1)
    assert scores.passed_unhealthy == 3
    assert scores.rejected_healthy == 2  # events 6 and 7
    assert scores.recovery_delay_max == pytest.approx(2.1)  # closed at 8.1, healthy from 6
    assert scores.unrecovered == scores.missed_outages == 0


def test_observe_only_config_rejects_nothing_but_still_opens(
    breaker_cls: type[CircuitBreaker], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scoring, "CircuitBreaker", breaker_cls)  # replay builds one
    config = CircuitBreakerConfig(
        failure_threshold=3, minimum_requests=3, sliding_window_size=3, enable_fast_fail=False
    )
    scores = score(outage_then_recovery(), *tune.replay(outage_then_recovery(), config))
    assert scores.rejected == 0
    assert scores.passed_unhealthy == 6
    assert scores.opens == 1


# -- cost and ranking -------------------------------------------------------------------


def test_cost_is_the_weighted_sum_with_missing_scores_adding_nothing() -> None:
    scores = Scores(
        events=10, rejected=4, opens=2, false_opens=1, outages=1, missed_outages=0,
        detection_delay_mean=None, detection_delay_max=None,
        rejected_healthy=3, passed_unhealthy=5, recoveries=1, unrecovered=0,
        recovery_delay_mean=2.5, recovery_delay_max=2.5,
    )
    assert cost(scores, tune.DEFAULT_WEIGHTS) == 8.0
    assert cost(scores, {"false_opens": 10, "recovery_delay_max": 2, "opens": 0}) == 15.0
    assert cost(scores, {"detection_delay_mean": 100, "opens": 1}) == 2.0
    unlabelled = Scores(events=10, rejected=4, opens=2)
    assert cost(unlabelled, tune.DEFAULT_WEIGHTS) is None
    assert cost(unlabelled, {**tune.DEFAULT_WEIGHTS, "rejected": 0.5}) == 2.0


def test_tune_ranks_by_cost_keeping_ties_in_order() -> None:
    trace = outage_then_recovery()
    small = dict(failure_threshold=3, minimum_requests=3, sliding_window_size=3)
    candidates = [
        # 10 outcomes needed, so it opens at event 9 (a false open), open 30 s:
        # 6 dead calls sent + events 10-15 rejected = 12.
        make_candidate({"failure_threshold": 5, "minimum_requests": 10,
                        "failure_rate_threshold": None, "timeout": 30.0}),
        # Opens at 2.1 until 7.1, trial at 8 closes it: 3 sent + events 6, 7 rejected = 5.
        make_candidate({**small, "timeout": 5.0, "success_threshold": 1}),
        # Opens at 2.1 until 3.1; trial at 4 fails, reopens until 6.1 (backoff x2);
        # trial at 7 closes it: 4 sent (0, 1, 2, 4) + event 6 rejected = 5, a tie.
        make_candidate({**small, "timeout": 1.0, "success_threshold": 1,
                        "retry_backoff_factor": 2.0}),
        # Never reaches 10 failures: 6 sent, nothing rejected = 6.
        make_candidate({"failure_threshold": 10, "minimum_requests": 10,
                        "failure_rate_threshold": None}),
    ]
    results = tune.tune(trace, candidates)
    assert [r.cost for r in results] == [5.0, 5.0, 6.0, 12.0]
    assert [r.rank for r in results] == [1, 2, 3, 4]
    assert [r.candidate for r in results] == [candidates[i] for i in (1, 2, 3, 0)]
    assert [r.scores.opens for r in results] == [1, 1, 0, 1]  # the reopen is not an open
    assert results[3].scores.false_opens == 1
    assert all(r.replay_seconds >= 0 for r in results)
    reweighted = tune.tune(trace, candidates, {"opens": 1.0})
    assert [r.candidate for r in reweighted] == [candidates[i] for i in (3, 0, 1, 2)]
    with pytest.raises(ValueError, match="unknown score"):
        tune.tune(trace, candidates, {"speed": 1.0})


def test_unlabelled_traces_are_scored_but_not_ranked_by_default() -> None:
    trace = hand_trace(None, [0.1] * 3)
    results = tune.tune(trace, [make_candidate({}), make_candidate({"timeout": 1})])
    assert [r.rank for r in results] == [None, None]
    assert [r.cost for r in results] == [None, None]
    assert results[0].scores == Scores(events=3, rejected=0, opens=0)
