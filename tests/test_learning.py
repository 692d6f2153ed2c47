"""StrategyLearner: the prior, the posterior, the window, rebuilding from audit logs,
thread safety and bad input."""

from __future__ import annotations

import json
import logging
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from recovery.audit import JsonlAuditLogger, SqliteAuditLogger
from recovery.failures import FailureType
from recovery.learning import StrategyLearner, percentile
from recovery.testing import RecordingAuditLogger
from tests.helpers import run_threads

BUILT_INS = [("restart", 100), ("reload", 80), ("reset", 60), ("degrade", 40), ("backoff", 20)]
PRIORITY_ORDER = ["restart", "reload", "reset", "degrade", "backoff"]


def teach(learner: StrategyLearner, strategy: str, successes: int, failures: int,
          duration: float = 1.0, plugin: str = "db", kind: str = "error") -> None:
    for _ in range(successes):
        learner.observe(plugin, kind, strategy, verified=True, duration=duration)
    for _ in range(failures):
        learner.observe(plugin, kind, strategy, verified=False, duration=duration + 10.0)


@pytest.mark.parametrize("seed", range(20))
def test_with_no_history_the_learned_order_is_the_priority_order(seed: int) -> None:
    learner = StrategyLearner(random_seed=seed)
    shuffled = [BUILT_INS[i] for i in (3, 0, 4, 2, 1)]
    assert learner.order("db", "timeout", shuffled, "learned") == PRIORITY_ORDER
    assert learner.order("db", "timeout", shuffled, "priority") == PRIORITY_ORDER


def test_with_no_history_equal_priorities_keep_the_order_given() -> None:
    learner = StrategyLearner(random_seed=1)
    candidates = [("b", 50), ("a", 50), ("c", 70)]
    assert learner.order("db", "error", candidates, "learned") == ["c", "b", "a"]


def test_history_of_another_plugin_or_failure_type_leaves_the_prior_alone() -> None:
    learner = StrategyLearner(random_seed=3)
    teach(learner, "restart", 0, 20)
    teach(learner, "restart", 0, 20, plugin="cache")
    assert learner.order("db", "timeout", BUILT_INS, "learned") == PRIORITY_ORDER
    assert learner.order("web", "error", BUILT_INS, "learned") == PRIORITY_ORDER


def test_the_posterior_moves_to_the_strategy_that_works() -> None:
    learner = StrategyLearner(random_seed=7)
    candidates = [("restart", 100), ("reload", 80), ("backoff", 20)]
    teach(learner, "restart", 0, 8, duration=3.0)
    teach(learner, "reload", 8, 0, duration=1.0)
    firsts = [learner.order("db", "error", candidates, "learned")[0] for _ in range(200)]
    assert firsts.count("reload") >= 190
    # the fixed order does not move
    assert learner.order("db", "error", candidates, "priority")[0] == "restart"


def test_an_untried_strategy_is_tried_once_the_first_keeps_failing() -> None:
    learner = StrategyLearner(random_seed=11)
    candidates = [("restart", 100), ("reload", 80)]
    teach(learner, "restart", 0, 10)
    firsts = [learner.order("db", "error", candidates, "learned")[0] for _ in range(200)]
    assert firsts.count("reload") >= 150  # drawn from its prior: most of the time


def test_time_counts_too_a_faster_strategy_with_the_same_chance_goes_first() -> None:
    learner = StrategyLearner(random_seed=5)
    candidates = [("restart", 100), ("reset", 60)]
    teach(learner, "restart", 40, 0, duration=20.0)
    teach(learner, "reset", 40, 0, duration=0.5)
    firsts = [learner.order("db", "error", candidates, "learned")[0] for _ in range(100)]
    assert firsts == ["reset"] * 100


def test_an_unlucky_strategy_still_gets_tried_now_and_then() -> None:
    learner = StrategyLearner(random_seed=2)
    candidates = [("restart", 100), ("reload", 80)]
    teach(learner, "restart", 3, 3)
    teach(learner, "reload", 4, 2)
    firsts = {learner.order("db", "error", candidates, "learned")[0] for _ in range(200)}
    assert firsts == {"restart", "reload"}


def test_seeded_runs_repeat_and_seeds_differ() -> None:
    def run(seed: int) -> list[list[str]]:
        learner = StrategyLearner(random_seed=seed)
        teach(learner, "restart", 3, 4, kind="timeout")
        teach(learner, "reload", 3, 3, kind="timeout")
        teach(learner, "reset", 1, 1, kind="timeout")
        return [learner.order("db", "timeout", BUILT_INS, "learned") for _ in range(50)]

    assert run(42) == run(42)
    assert run(42) != run(43)


def test_verification_window_is_learned_from_five_times_on() -> None:
    learner = StrategyLearner(verify_timeout=10.0)
    assert learner.verification_window("db", "error", "reload") == 10.0
    for duration in (1.0, 2.0, 3.0, 4.0):
        learner.observe("db", "error", "reload", verified=True, duration=duration)
    learner.observe("db", "error", "reload", verified=False, duration=9.0)
    assert learner.verification_window("db", "error", "reload") == 10.0  # 4 times only
    learner.observe("db", "error", "reload", verified=True, duration=5.0)
    # p95 of 1..5 is 4.8 (linear between ranks): 1.5 * 4.8
    assert learner.verification_window("db", "error", "reload") == pytest.approx(7.2)


def test_verification_window_is_clamped_to_one_second_and_verify_timeout() -> None:
    learner = StrategyLearner(verify_timeout=10.0)
    teach(learner, "reset", 5, 0, duration=0.1)
    teach(learner, "restart", 5, 0, duration=30.0)
    assert learner.verification_window("db", "error", "reset") == 1.0
    assert learner.verification_window("db", "error", "restart") == 10.0
    short = StrategyLearner(verify_timeout=0.5)
    teach(short, "reset", 5, 0, duration=0.1)
    assert short.verification_window("db", "error", "reset") == 0.5


def test_percentile_interpolates_between_ranks() -> None:
    assert percentile([5.0], 95.0) == 5.0
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 50.0) == 3.0
    assert percentile([4.0, 1.0], 50.0) == 2.5


def test_reasons_show_the_order_in_force_and_why() -> None:
    learner = StrategyLearner(random_seed=1)
    teach(learner, "restart", 0, 3, duration=2.0)
    teach(learner, "reload", 2, 0, duration=1.0)
    teach(learner, "reload", 1, 0, duration=3.0)
    order = learner.order("db", FailureType.ERROR, [("restart", 100), ("reload", 80)])
    reasons = learner.reasons("db")
    assert json.loads(json.dumps(reasons)) == reasons
    assert reasons == {"error": {
        "mode": "learned",
        "order": order,
        "strategies": {
            "reload": {"attempts": 3, "successes": 3, "median_time": 1.0,
                       "verification_window": 10.0},
            "restart": {"attempts": 3, "successes": 0, "median_time": None,
                        "verification_window": 10.0},
        },
    }}
    assert learner.reasons("other") == {}


def _write_history(logger: Any, times: list[float]) -> None:
    """Two episodes of db/timeout, one of cache/error, one health_check attempt held."""
    runs = [
        ("db", "timeout", "restart", False, True, False),
        ("db", "timeout", "reload", True, True, True),
        ("cache", "error", "restart", True, True, True),
        ("db", "timeout", "restart", False, False, None),
        ("db", "timeout", "reload", True, True, True),
        ("db", "health_check", "backoff", True, True, None),
    ]
    for (plugin, kind, action, success, action_ok, verified), ts in zip(runs, times,
                                                                        strict=True):
        times_now[0] = ts
        logger.log_recovery_attempt(plugin, kind, action, success,
                                    action_succeeded=action_ok, verified=verified)


times_now = [0.0]


def _stats(learner: StrategyLearner) -> dict[str, Any]:
    keys = [("db", "timeout", "restart"), ("db", "timeout", "reload"),
            ("cache", "error", "restart"), ("db", "health_check", "backoff")]
    return {key: learner.stats(*key) for key in keys}


@pytest.fixture
def history_times() -> list[float]:
    return [100.0, 112.0, 130.0, 500.0, 511.5, 600.0]


def test_rebuild_gives_the_same_statistics_from_every_logger_kind(
    tmp_path: Path, history_times: list[float]
) -> None:
    jsonl = JsonlAuditLogger(tmp_path / "audit.jsonl", now=lambda: times_now[0])
    sqlite = SqliteAuditLogger(tmp_path / "audit.db", now=lambda: times_now[0])
    memory = RecordingAuditLogger()
    for logger in (jsonl, sqlite, memory):
        _write_history(logger, history_times)
    jsonl.close()
    learners = {}
    for name, logger in (("jsonl", jsonl), ("sqlite", sqlite), ("memory", memory)):
        learners[name] = StrategyLearner()
        assert learners[name].rebuild_from_audit(logger) == 6
    sqlite.close()
    from_file = _stats(learners["jsonl"])
    assert from_file == _stats(learners["sqlite"])
    # counts: a held backoff is an attempt without a verified success
    counts = {key: (s.attempts, s.successes) for key, s in from_file.items()}
    assert counts == {("db", "timeout", "restart"): (2, 0), ("db", "timeout", "reload"): (2, 2),
                      ("cache", "error", "restart"): (1, 1),
                      ("db", "health_check", "backoff"): (1, 0)}
    assert {key: (s.attempts, s.successes) for key, s in _stats(learners["memory"]).items()} \
        == counts
    # times inferred from ts: a reload that followed a failed restart of the same episode
    assert from_file["db", "timeout", "reload"].recovery_times == (12.0, 11.5)
    # the first attempt of an episode has no inferable time; the memory logger has no ts
    assert from_file["db", "timeout", "restart"].mean_attempt_time is None
    assert _stats(learners["memory"])["db", "timeout", "reload"].recovery_times == ()


def test_rebuild_uses_a_stored_duration_and_replaces_what_was_there() -> None:
    learner = StrategyLearner()
    teach(learner, "restart", 5, 5)
    used = learner.rebuild([
        {"plugin": "db", "failure_type": "error", "action": "reload", "success": True,
         "action_succeeded": True, "verified": True, "ts": 10.0, "duration": 2.5},
    ])
    assert used == 1
    assert learner.stats("db", "error", "restart").attempts == 0
    assert learner.stats("db", "error", "reload").recovery_times == (2.5,)


def test_rebuild_does_not_join_records_far_apart_into_one_episode() -> None:
    learner = StrategyLearner(verify_timeout=10.0)
    learner.rebuild([
        {"plugin": "db", "failure_type": "error", "action": "restart", "success": False,
         "ts": 0.0},
        {"plugin": "db", "failure_type": "error", "action": "reload", "success": True,
         "ts": 71.0},  # more than verify_timeout + 60 s later: a new episode
    ])
    assert learner.stats("db", "error", "reload").recovery_times == ()


def test_a_four_argument_record_is_taken_by_its_verdict() -> None:
    learner = StrategyLearner()
    memory = RecordingAuditLogger()
    memory.log_failure_recovery("db", FailureType.ERROR, "restart", True)
    learner.rebuild_from_audit(memory)
    assert learner.stats("db", "error", "restart").successes == 1


def test_rebuild_skips_unreadable_records_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    learner = StrategyLearner()
    good = {"plugin": "db", "failure_type": "error", "action": "reload", "success": True}
    records = [good, {"plugin": "db"}, 42, dict(good, failure_type="meteor"),
               dict(good, success="yes"), dict(good, ts="noon")]
    with caplog.at_level(logging.WARNING, logger="recovery.learning"):
        assert learner.rebuild(records) == 1
    assert "5 audit record(s) could not be read" in caplog.text


def test_an_unreadable_history_starts_empty(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    logger = JsonlAuditLogger(tmp_path / "audit.jsonl")
    logger.close()
    (tmp_path / "audit.jsonl").unlink()
    learner = StrategyLearner()
    teach(learner, "restart", 1, 0)
    with caplog.at_level(logging.ERROR, logger="recovery.learning"):
        assert learner.rebuild_from_audit(logger) == 0
    assert "could not read the audit history" in caplog.text
    assert learner.stats("db", "error", "restart").attempts == 0


def test_a_logger_that_keeps_nothing_gives_no_history() -> None:
    learner = StrategyLearner()
    assert learner.rebuild_from_audit(object()) == 0


def test_concurrent_observations_and_orders_lose_nothing() -> None:
    learner = StrategyLearner(random_seed=9)
    per_thread = 600
    kinds = [kind.value for kind in FailureType]
    seen_orders: list[list[str]] = []
    lock = threading.Lock()

    def work(index: int) -> None:
        strategy = BUILT_INS[index % 2][0]  # four threads count into each tally
        for i in range(per_thread):
            kind = kinds[i % len(kinds)]  # new keys appear while others read them
            learner.observe("db", kind, strategy, verified=i % 2 == 0, duration=float(i % 7))
            order = learner.order("db", kind, BUILT_INS)
            with lock:
                seen_orders.append(order)
            learner.reasons("db")

    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads often: races show within the run
    try:
        run_threads(8, work)
    finally:
        sys.setswitchinterval(switch)
    for strategy, _ in BUILT_INS[:2]:
        attempts = sum(learner.stats("db", kind, strategy).attempts for kind in kinds)
        successes = sum(learner.stats("db", kind, strategy).successes for kind in kinds)
        assert (attempts, successes) == (4 * per_thread, 2 * per_thread)
    assert all(sorted(order) == sorted(PRIORITY_ORDER) for order in seen_orders)
    assert len(seen_orders) == 8 * per_thread
    assert sorted(learner.reasons("db")) == sorted(kinds)


@pytest.mark.parametrize(("call", "error", "words"), [
    (lambda lr: lr.observe("", "error", "restart", verified=True), ValueError, "plugin"),
    (lambda lr: lr.observe("db", "meteor", "restart", verified=True), ValueError,
     "failure_type"),
    (lambda lr: lr.observe("db", "error", 3, verified=True), TypeError, "strategy"),
    (lambda lr: lr.observe("db", "error", "restart", verified=1), TypeError, "verified"),
    (lambda lr: lr.observe("db", "error", "restart", verified=True, duration=-1.0),
     ValueError, "duration"),
    (lambda lr: lr.observe("db", "error", "restart", verified=True, duration=float("nan")),
     ValueError, "duration"),
    (lambda lr: lr.order("db", "error", BUILT_INS, "fastest"), ValueError, "mode"),
    (lambda lr: lr.order("db", "error", "restart"), TypeError, "candidates"),
    (lambda lr: lr.order("db", "error", [("restart",)]), TypeError, "candidates"),
    (lambda lr: lr.order("db", "error", [("restart", 1.5)]), TypeError, "priority"),
    (lambda lr: lr.order("db", "error", [("restart", 1), ("restart", 2)]), ValueError,
     "twice"),
    (lambda lr: lr.rebuild(None), TypeError, "records"),
    (lambda lr: lr.rebuild({"plugin": "db"}), TypeError, "records"),
    (lambda lr: lr.reasons(None), TypeError, "plugin"),
])
def test_bad_input_is_refused_naming_the_field(call: Any, error: type, words: str) -> None:
    with pytest.raises(error, match=words):
        call(StrategyLearner())


@pytest.mark.parametrize(("kwargs", "error", "words"), [
    ({"verify_timeout": 0}, ValueError, "verify_timeout"),
    ({"verify_timeout": "10"}, TypeError, "verify_timeout"),
    ({"random_seed": 1.5}, TypeError, "random_seed"),
    ({"prior_strength": 0}, ValueError, "prior_strength"),
])
def test_bad_settings_are_refused_naming_the_field(
    kwargs: dict[str, Any], error: type, words: str
) -> None:
    with pytest.raises(error, match=words):
        StrategyLearner(**kwargs)


def test_a_run_that_ended_its_episode_starts_a_new_one_for_inferred_times() -> None:
    learner = StrategyLearner()
    base = {"plugin": "db", "failure_type": "timeout"}
    learner.rebuild([
        dict(base, action="restart", success=False, action_succeeded=True, verified=False,
             ts=0.0),
        dict(base, action="backoff", success=True, action_succeeded=True, verified=None,
             ts=4.0),  # held: the episode ended here, unverified
        dict(base, action="reload", success=True, action_succeeded=True, verified=True,
             ts=9.0),
    ])
    assert learner.stats("db", "timeout", "backoff").mean_attempt_time == 4.0
    assert learner.stats("db", "timeout", "backoff").successes == 0
    assert learner.stats("db", "timeout", "reload").recovery_times == ()
