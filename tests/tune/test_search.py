"""--search: the staged scrambled space, the trade-off front, the recommendation."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from recovery import tune
from recovery.config import CircuitBreakerConfig
from recovery.tune import Scores, make_candidate, parse_config_args
from recovery.tune.ranking import dominates, front_key
from recovery.tune.report import comparison
from tests.tune.helpers import (
    SMALL,
    outage_then_recovery,
    run_cli,
    write_trace,
)

# -- search, front, recommendation --------------------------------------------------------


def test_search_candidates_are_distinct_valid_and_count_rule_free_when_asked() -> None:
    search = tune.StagedSearch(
        {"sliding_window_size": (10, 20), "minimum_requests": (5, 20),
         "failure_threshold": (5, tune.COUNT_RULE_OFF), "failure_rate_threshold": (None, 0.5)},
        {"timeout": (1.0, 30.0), "success_threshold": (3,), "retry_backoff_factor": (1.0, 2.0),
         "max_retry_interval": (60.0, 300.0)},
    )
    assert search.size == 2 * 2 * 2 * 2 * 2 * 2 * 2
    seen = [candidate.overrides for candidate in search]
    assert len({json.dumps(overrides, sort_keys=True) for overrides in seen}) == len(seen)
    for overrides in seen:
        config = make_candidate(overrides).config
        assert tune.redundant_rules(config) == []
        assert not (config.retry_backoff_factor == 1.0
                    and config.max_retry_interval != CircuitBreakerConfig().max_retry_interval)
    assert sorted(tune.scrambled({"a": (1, 2, 3), "b": (4, 5)}), key=str) == sorted(
        ({"a": a, "b": b} for a in (1, 2, 3) for b in (4, 5)), key=str
    )


def test_search_keeps_the_front_and_recommends_the_cheapest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = outage_then_recovery()
    given = [parse_config_args([SMALL, "timeout=5"])]
    found = tune.explore(
        trace, given, search=tune.StagedSearch(*tune.search_space(trace)), budget=60, limit=300
    )
    assert found.explored == 300 and not found.complete
    assert found.recommended is not None
    costs = [r.cost for r in found.results if r.cost is not None]
    assert found.recommended.cost == min(costs)
    assert found.recommended.cost <= found.defaults.cost  # type: ignore[operator]
    keys = [front_key(r.scores) for r in found.front]
    for i, a in enumerate(keys):  # nothing on the front is dominated by another member
        assert not any(dominates(b, a) for j, b in enumerate(keys) if j != i)

    path = write_trace(tmp_path, trace)
    assert run_cli(path, "--search", "--budget", "0.5", "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["search"]["explored"] >= 1
    assert report["search"]["front_scores"] == list(tune.FRONT_SCORES)
    assert report["front"]
    assert report["recommendation"]["code"].startswith("CircuitBreakerConfig(")
    assert set(report["recommendation"]["changes"]) == set(report["recommendation"]["config"])


TRACES = Path(__file__).resolve().parents[2] / "benchmarks" / "traces"


@pytest.mark.parametrize("trace_name", sorted(p.stem for p in TRACES.glob("*.csv")))
def test_on_each_committed_trace_the_recommendation_is_no_worse_than_any_candidate(
    capsys: pytest.CaptureFixture[str], trace_name: str
) -> None:
    given = [
        ["failure_threshold=5,minimum_requests=10,failure_rate_threshold=none"],  # old defaults
        ["failure_threshold=100"],
        ["timeout=5,retry_backoff_factor=1"],
        ["slow_call_duration=0.5,slow_call_rate_threshold=0.5"],
    ]
    argv = [str(TRACES / f"{trace_name}.csv"), "--search", "--budget", "0.3", "--json"]
    for items in given:
        argv += ["--config", *items]
    assert run_cli(*argv) == 0
    report = json.loads(capsys.readouterr().out)
    recommended = report["recommendation"]["cost"]
    assert recommended <= report["defaults"]["cost"]
    labels = {result["label"]: result["cost"] for result in report["results"]}
    for items in given:
        assert recommended <= labels[parse_config_args(items).label]


def test_help_is_short_plain_text() -> None:
    parser = argparse.ArgumentParser(prog="recovery tune")
    tune.add_arguments(parser)
    text = parser.format_help()
    assert len(text.splitlines()) <= 50
    assert "``" not in text and ":class:" not in text


def test_the_comparison_names_missed_outages_and_runs_still_open() -> None:
    def result(label: str, **scores: Any) -> tune.TuneResult:
        base = dict(events=100, rejected=0, opens=1, false_opens=0, outages=10, recoveries=9)
        return tune.TuneResult(
            make_candidate({} if label == "defaults" else {"timeout": 2.0}),
            Scores(**{**base, **scores}), 0.0, 1, 0.0,
        )

    defaults = result(
        "defaults", missed_outages=9, detection_delay_mean=0.44, rejected_healthy=567,
        passed_unhealthy=100, unrecovered=1, recovery_delay_mean=3.35,
    )
    never = result("other", missed_outages=10, rejected_healthy=0, passed_unhealthy=100,
                   unrecovered=0, recovery_delay_mean=0.0)
    assert comparison(never, defaults) == (
        "On this trace it rejects 0 good calls (defaults: 567) and lets 100 calls through to "
        "the broken dependency (defaults: 100). It does not open in any of the 10 outage(s) "
        "(defaults: 0.44 s, 9 missed), and closes 0.00 s after the dependency is back "
        "(defaults: 3.35 s, 1 still open)."
    )
    assert comparison(defaults, defaults) == (
        "No candidate beat the defaults on this trace. They reject 567 good calls and let 100 "
        "calls through to the broken dependency. They open 0.44 s after an outage starts, on "
        "average (9 of 10 missed), and close 3.35 s after the dependency is back (1 of 9 still "
        "open at the end)."
    )
