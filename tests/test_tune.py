"""Tuning: every score on tiny hand-made traces, the ranking cost, candidates and the CLI."""

from __future__ import annotations

import argparse
import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from recovery import tune
from recovery.breaker import CircuitBreaker
from recovery.config import CircuitBreakerConfig
from recovery.trace import Trace
from recovery.tune import LabelRule, Scores, cost, make_candidate, parse_config_args, score

CL, OP, HO = 0, 1, 2  # closed, open, half-open: state codes after each event


def hand_trace(healthy: list[int] | None, latency: list[float] | None = None) -> Trace:
    """Events one second apart from t=0, all ok; latencies 0.25 s unless given."""
    n = len(healthy) if healthy is not None else len(latency or [])
    latencies = latency or [0.25] * n
    if healthy is None:
        return Trace.from_rows([(float(i), 1, latencies[i]) for i in range(n)])
    return Trace.from_rows([(float(i), 1, latencies[i], healthy[i]) for i in range(n)])


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


def outage_then_recovery() -> Trace:
    """Six failing calls (dead dependency) then ten good ones, one per second, 0.1 s each."""
    rows = [(float(i), 0, 0.1, 0) for i in range(6)]
    rows += [(float(i), 1, 0.1, 1) for i in range(6, 16)]
    return Trace.from_rows(rows)


def test_replay_and_score_a_known_outage(
    breaker_cls: type[CircuitBreaker], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tune, "CircuitBreaker", breaker_cls)
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
    monkeypatch.setattr(tune, "CircuitBreaker", breaker_cls)
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


# -- derived labels ---------------------------------------------------------------------


def outcomes(t: list[float], ok: list[int], healthy: list[int] | None = None) -> Trace:
    if healthy is None:
        return Trace.from_rows([(t[i], ok[i], 0.5) for i in range(len(t))])
    return Trace.from_rows([(t[i], ok[i], 0.5, healthy[i]) for i in range(len(t))])


def test_derived_labels_use_the_failure_share_of_a_centred_window() -> None:
    ok = [1, 1, 1, 0, 0, 0, 1, 1, 0, 1]
    trace = outcomes([float(i) for i in range(10)], ok)
    # Window 3 s: each call with its neighbours one second either side.
    # Failed shares: 0/2 0/3 1/3 2/3 3/3 2/3 1/3 1/3 1/3 1/2 -> unhealthy at >= 0.5.
    labelled = LabelRule(3.0, 0.5).label(trace)
    assert labelled.healthy == bytearray([1, 1, 1, 0, 0, 0, 1, 1, 1, 0])
    assert (labelled.t, labelled.ok, labelled.latency, labelled.source) == (
        trace.t, trace.ok, trace.latency, trace.source
    )
    assert LabelRule(2.0, 0.5).label(trace).healthy == labelled.healthy  # +-1 s is inclusive
    assert LabelRule(1.9, 0.5).label(trace).healthy == bytearray(ok)  # each call alone
    assert LabelRule(3.0, 1 / 3).label(trace).healthy == bytearray([1, 1] + [0] * 8)
    assert LabelRule(3.0, 1.0).label(trace).healthy == bytearray([1] * 4 + [0] + [1] * 5)


def test_derived_labels_window_is_in_seconds_not_calls_and_replaces_labels() -> None:
    trace = outcomes([0.0, 0.1, 0.2, 5.0, 10.0], [0, 0, 1, 1, 0], healthy=[1, 1, 1, 1, 1])
    # Window 1 s: the first three share one window (2/3 failed); the lone calls stand alone.
    assert LabelRule(1.0).label(trace).healthy == bytearray([0, 0, 0, 1, 0])
    assert LabelRule().label(trace).healthy == bytearray([0, 0, 0, 0, 0])  # +-5 s: >= 2/4
    assert LabelRule(0.01, 0.07).label(Trace.from_rows([])).healthy == bytearray()


def test_derived_labels_match_a_hard_outage_exactly() -> None:
    labelled = outage_then_recovery()  # 6 failures, then 10 successes, one a second
    unlabelled = Trace(labelled.t, labelled.ok, labelled.latency)
    # The default +-5 s: call 5 sees 6 of 11 failed, call 6 sees 5 of 11.
    assert LabelRule().label(unlabelled).healthy == labelled.healthy


def test_label_rule_rejects_bad_settings_naming_them() -> None:
    with pytest.raises(ValueError, match="label_window must be a finite number of seconds > 0"):
        LabelRule(0.0)
    with pytest.raises(ValueError, match=r"unhealthy_rate must be in \(0, 1\], got 0.0"):
        LabelRule(10.0, 0.0)
    assert LabelRule().description == "unhealthy where >= 50% of the calls within +-5 s failed"
    assert LabelRule(3, 0.25).description == (
        "unhealthy where >= 25% of the calls within +-1.5 s failed"
    )


# -- candidates -------------------------------------------------------------------------


def test_config_values_are_parsed_to_the_field_type() -> None:
    parsed = parse_config_args(
        ["failure_threshold=3,timeout=2.5", "enable_fast_fail=no", "failure_rate_threshold=none"]
    )
    assert parsed.overrides == {
        "failure_threshold": 3, "timeout": 2.5, "enable_fast_fail": False,
        "failure_rate_threshold": None,
    }
    assert parsed.config == CircuitBreakerConfig(
        failure_threshold=3, timeout=2.5, enable_fast_fail=False, failure_rate_threshold=None
    )
    assert parsed.label == (
        "failure_threshold=3,timeout=2.5,enable_fast_fail=False,failure_rate_threshold=None"
    )
    assert make_candidate({}).label == "defaults"


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (["speed=3"], "unknown config field 'speed'; one of: enable_fast_fail"),
        (["record_exceptions=ValueError"], "unknown config field 'record_exceptions'"),
        (["trace.csv"], "expects key=value, got 'trace.csv'"),
        (["failure_threshold=3.5"], "failure_threshold must be int, got '3.5'"),
        (["enable_fast_fail=maybe"], "enable_fast_fail must be bool"),
        (["timeout=none"], "timeout must be float, got 'none'"),
        (["failure_threshold=0"], "failure_threshold"),
    ],
)
def test_bad_config_values_are_named(items: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        parse_config_args(items)


def test_grid_file_as_list_or_as_cartesian_product(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    listed = tmp_path / "list.json"
    listed.write_text(json.dumps([{"timeout": 5}, {"failure_threshold": 2, "timeout": "7"}]))
    assert [c.overrides for c in tune.load_grid(str(listed))] == [
        {"timeout": 5}, {"failure_threshold": 2, "timeout": 7.0}
    ]
    product = tmp_path / "product.json"
    product.write_text(json.dumps(
        {"failure_threshold": [5, 20], "sliding_window_size": [10, 50], "minimum_requests": 5}
    ))
    grid = tune.load_grid(str(product))
    assert [c.overrides for c in grid] == [
        {"failure_threshold": 5, "sliding_window_size": 10, "minimum_requests": 5},
        {"failure_threshold": 5, "sliding_window_size": 50, "minimum_requests": 5},
        {"failure_threshold": 20, "sliding_window_size": 50, "minimum_requests": 5},
    ]
    skipped = "skipped \"{'failure_threshold': 20, 'sliding_window_size': 10"
    assert skipped in capsys.readouterr().err
    for text, message in [
        ('{"speed": [1]}', "unknown config field 'speed'"),
        ("[1, 2]", "a grid is a JSON list of objects"),
        ("{", "not JSON"),
        ('{"failure_threshold": [0, -1]}', "every combination of the grid is an invalid config"),
    ]:
        bad = tmp_path / "bad.json"
        bad.write_text(text)
        with pytest.raises(ValueError, match=message):
            tune.load_grid(str(bad))


# -- command line -----------------------------------------------------------------------


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="recovery tune")
    tune.add_arguments(parser)
    return tune.run(parser.parse_args(list(argv)))


def write_trace(tmp_path: Path, trace: Trace, name: str = "trace.csv") -> str:
    path = tmp_path / name
    lines = ["t,ok,latency" + (",healthy" if trace.healthy is not None else "")]
    for i in range(len(trace)):
        row = [repr(trace.t[i]), str(trace.ok[i]), repr(trace.latency[i])]
        if trace.healthy is not None:
            row.append(str(trace.healthy[i]))
        lines.append(",".join(row))
    path.write_text("\n".join(lines) + "\n")
    return str(path)


SMALL = "failure_threshold=3,minimum_requests=3,sliding_window_size=3,success_threshold=1"


def test_cli_prints_a_recommendation_then_a_ranked_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "300")
    path = write_trace(tmp_path, outage_then_recovery())
    never_opens = "failure_threshold=10,minimum_requests=20,timeout=1"  # 16 events: never 20
    assert run_cli(path, "--config", never_opens, "--config", SMALL, "timeout=5") == 0
    text = capsys.readouterr().out
    head, recommended, code, summary, table, notes, warnings = text.split("\n\n")
    assert head == f"{path}: 16 events over 15 s, 1 outage(s) (labels: the trace's healthy column)"
    assert recommended == "Recommended (lowest cost = 1*rejected_healthy + 1*passed_unhealthy):"
    assert code == (
        "    CircuitBreakerConfig(failure_threshold=3, success_threshold=1, timeout=5.0, "
        "sliding_window_size=3)"  # minimum_requests follows failure_threshold=3
    )
    assert summary.replace("\n", " ") == (
        "On this trace it rejects 2 good calls (defaults: 0) and lets 3 calls through to the "
        "broken dependency (defaults: 6). It opens 2.10 s after an outage starts, on average "
        "(defaults: never), and closes 2.10 s after the dependency is back (defaults: 0.00 s)."
    )
    rows = table.splitlines()
    header = rows[0].split()
    assert header[:4] == ["rank", "cost", "rejected_healthy", "passed_unhealthy"]
    assert header[-1] == "config"
    assert set(header[2:-1]) <= set(tune.SCORE_NAMES)  # column names are the score names
    assert rows[1].split()[:3] == ["*", "1", "5"]  # 3 sent to dead + 2 good rejected
    assert rows[1].endswith(SMALL + ",timeout=5.0")
    assert rows[2].split()[:2] == ["2", "6"]  # all 6 dead calls sent: a tie, defaults first
    assert rows[2].endswith("defaults")
    assert rows[3].endswith("failure_threshold=10,minimum_requests=20,timeout=1.0")
    cost_end = rows[0].index("cost") + len("cost")  # numbers are aligned on the right
    assert all(row[cost_end - 1] != " " and row[cost_end] == " " for row in rows)
    assert notes.startswith("cost = 1*rejected_healthy + 1*passed_unhealthy")
    assert warnings.startswith("Warnings:\n- only 16 events: too few to tell configs apart")


@pytest.mark.parametrize("columns", [60, 80, 120])
def test_the_table_fits_the_terminal_and_wide_shows_every_score(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    columns: int,
) -> None:
    monkeypatch.setenv("COLUMNS", str(columns))
    path = write_trace(tmp_path, outage_then_recovery())
    argv = [path, "--config", SMALL, "timeout=5", "--config", "failure_threshold=10"]
    assert run_cli(*argv) == 0
    text = capsys.readouterr().out
    assert max(map(len, text.splitlines())) <= max(columns, 16 + 18 + 18 + 26)
    assert "more score column(s) with --wide" in text
    assert run_cli(*argv, "--wide") == 0
    wide = capsys.readouterr().out
    table = wide.split("\n\n")[4].splitlines()
    assert set(table[0].split()) == {"rank", "cost", "config", *tune.SCORE_NAMES}
    assert table[1].endswith(SMALL + ",timeout=5.0")  # never cut
    assert "--wide" not in wide


def test_cli_json_with_weights(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_trace(tmp_path, outage_then_recovery())
    code = run_cli(
        path, "--config", "failure_threshold=10,minimum_requests=20,timeout=1",
        "--config", SMALL, "timeout=5", "--json",
        "--weight", "passed_unhealthy=0", "--weight", "rejected_healthy=2",
    )
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["events"] == 16
    assert report["labelled"] is True
    assert report["weights"] == {"rejected_healthy": 2.0, "passed_unhealthy": 0.0}
    defaults, first, second = report["results"]
    assert (defaults["rank"], defaults["label"], defaults["cost"]) == (1, "defaults", 0.0)
    assert (first["rank"], first["config"], first["cost"]) == (
        2, {"failure_threshold": 10, "minimum_requests": 20, "timeout": 1.0}, 0.0
    )
    assert second["cost"] == 4.0  # 2 good calls rejected, weighted 2
    assert second["scores"]["detection_delay_max"] == pytest.approx(2.1)
    assert set(first["scores"]) == set(tune.SCORE_NAMES)
    assert report["recommendation"]["code"] == "CircuitBreakerConfig()"
    assert report["recommendation"]["summary"].startswith("No candidate beat the defaults")
    assert report["defaults"]["label"] == "defaults"
    assert report["search"] is None


def test_cli_uses_the_default_grid_and_a_grid_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_trace(tmp_path, outage_then_recovery())
    assert run_cli(path, "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert [r["config"] for r in report["results"]] != []
    assert sorted(map(json.dumps, (r["config"] for r in report["results"]))) == sorted(
        json.dumps(dict(make_candidate(grid).overrides)) for grid in tune.DEFAULT_GRID
    )
    grid = tmp_path / "grid.json"
    grid.write_text(json.dumps({"timeout": [1, 3, 5]}))  # none is the default
    assert run_cli(path, "--grid", str(grid), "--json") == 0
    assert len(json.loads(capsys.readouterr().out)["results"]) == 4  # and the defaults


def test_cli_on_an_unlabelled_trace_without_derived_labels(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_trace(tmp_path, hand_trace(None, [0.1] * 4))
    assert run_cli(path, "--config", "timeout=1", "--no-derive-labels") == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "(no labels: label-free scores only, no recommendation)" in out
    assert "not ranked" in out
    assert "Recommended" not in out
    assert "false_opens" not in out
    assert run_cli(path, "--config", "timeout=1", "--weight", "opens=1", "--no-derive-labels") == 0
    assert "not ranked" not in capsys.readouterr().out
    assert run_cli(path, "--config", "timeout=1", "--no-derive-labels", "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["labelled"], report["labels"], report["label_rule"]) == (False, None, None)
    assert report["results"][0]["scores"]["outages"] is None


def test_cli_derives_labels_for_an_unlabelled_trace_by_default(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "400")
    labelled = outage_then_recovery()
    with_column = write_trace(tmp_path, labelled, "labelled.csv")
    without = write_trace(tmp_path, Trace(labelled.t, labelled.ok, labelled.latency), "raw.csv")
    argv = ["--config", "failure_threshold=10,timeout=1", "--config", SMALL, "timeout=5"]
    assert run_cli(without, *argv) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == (
        f"{without}: 16 events over 15 s, 1 outage(s) (labels derived: unhealthy where "
        ">= 50% of the calls within +-5 s failed; --incidents FILE to use your incident log)"
    )
    assert "CircuitBreakerConfig(failure_threshold=3" in out[4]  # as with the true labels
    assert not any("not ranked" in line for line in out)

    assert run_cli(without, *argv, "--json") == 0
    derived = json.loads(capsys.readouterr().out)
    assert run_cli(with_column, *argv, "--json") == 0
    truth = json.loads(capsys.readouterr().out)
    assert (derived["labelled"], derived["labels"]) == (True, "derived")
    assert derived["label_rule"] == {"label_window": 10.0, "unhealthy_rate": 0.5}
    assert (truth["labels"], truth["label_rule"]) == ("column", None)
    # The derived labels are the true ones here, so every score agrees.
    assert [r["scores"] for r in derived["results"]] == [r["scores"] for r in truth["results"]]

    # A narrower window and a lower rate: now the trailing successes' windows see failures.
    assert run_cli(without, *argv, "--json", "--label-window", "4", "--unhealthy-rate", "0.25") == 0
    narrow = json.loads(capsys.readouterr().out)
    assert narrow["label_rule"] == {"label_window": 4.0, "unhealthy_rate": 0.25}
    # +-2 s: call 6 sees 2 of 5 failed, call 7 sees 1 of 5 (< 0.25): the outage is calls 0-6.
    scores = {r["label"]: r["scores"] for r in narrow["results"]}
    assert scores["failure_threshold=10,timeout=1.0"]["passed_unhealthy"] == 7  # never opens
    small = scores[SMALL + ",timeout=5.0"]  # admits 0-2, rejects 3-7, trial at 8 closes it
    assert (small["passed_unhealthy"], small["rejected_healthy"]) == (3, 1)  # rejected: 7


def test_cli_keeps_a_trace_s_own_labels_whatever_the_label_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_trace(tmp_path, outage_then_recovery())
    argv = ["--config", "failure_threshold=10,timeout=1", "--json"]

    def scores(*extra: str) -> tuple[Any, ...]:
        assert run_cli(path, *argv, *extra) == 0
        report = json.loads(capsys.readouterr().out)
        return report["labels"], report["label_rule"], report["results"][0]["scores"]

    plain = scores()
    assert plain[:2] == ("column", None)
    assert plain[2]["passed_unhealthy"] == 6  # never opens: the 6 labelled-dead calls sent
    assert scores("--label-window", "1", "--unhealthy-rate", "1") == plain
    assert scores("--no-derive-labels") == plain


@pytest.mark.parametrize(
    ("content", "argv", "message"),
    [
        ("t,ok,latency\n1,1,0\n0,1,0\n", [], "trace.csv, line 3: t goes back in time"),
        ("t,ok\n", [], "line 1: header 't,ok' lacks column(s) latency"),
        ("t,ok,latency\n1,1,x\n", [], "line 2: latency is not a number: 'x'"),
        ("t,ok,latency\n", ["--config", "speed=1"], "unknown config field 'speed'"),
        ("t,ok,latency\n", ["--weight", "speed=1"], "unknown score(s) to weight: 'speed'"),
        ("t,ok,latency\n", ["--weight", "opens"], "--weight expects score=number"),
        ("t,ok,latency\n", ["--grid", "missing.json"], "No such file"),
        ("t,ok,latency\n", ["--label-window", "0"], "label_window must be a finite number"),
        ("t,ok,latency\n", ["--unhealthy-rate", "1.5"], "unhealthy_rate must be in (0, 1]"),
        ("t,ok,latency\n1,maybe,0\n", [], "line 2: ok must be 0 or 1, got 'maybe'"),
        ("1,1,0,1,1\n", [], "line 1: no header (the first field is a time)"),
    ],
)
def test_cli_errors_exit_2_with_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, argv: list[str],
    message: str,
) -> None:
    path = tmp_path / "trace.csv"
    path.write_text(content)
    assert run_cli(str(path), *argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("tune: ")
    assert message in captured.err


def test_cli_sort_accepts_an_out_of_order_recording(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "trace.csv"
    path.write_text("t,ok,latency\n2,1,0\n1,0,0\n")
    assert run_cli(str(path), "--sort", "--config", "timeout=1", "--json") == 0
    report: dict[str, Any] = json.loads(capsys.readouterr().out)
    assert report["events"] == 2


# -- too little data, hostile input -------------------------------------------------------


def test_a_header_only_trace_is_refused_as_too_little_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("t,ok,latency,healthy\n")
    assert run_cli(str(path)) == 2
    error = capsys.readouterr().err
    assert error == f"tune: {path}: no events (only a header?): nothing to replay\n"


def test_a_short_trace_or_one_with_few_outages_is_warned_about_in_numbers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_trace(tmp_path, outage_then_recovery())
    assert run_cli(path, "--json") == 0
    warnings = json.loads(capsys.readouterr().out)["warnings"]
    assert warnings[0].startswith("only 16 events: too few to tell configs apart")
    assert "record at least 1,000" in warnings[0]
    assert warnings[1].startswith("only 1 outage in the trace: detection and recovery delays")
    healthy = write_trace(tmp_path, hand_trace([1] * 5), "healthy.csv")
    assert run_cli(healthy, "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert any(note.startswith("no outage in the trace") for note in report["warnings"])
    assert any("every candidate costs 0" in note for note in report["warnings"])


def test_deeply_nested_grid_json_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    grid = tmp_path / "deep.json"
    grid.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match=r"deep\.json: JSON nested too deeply"):
        tune.load_grid(str(grid))
    path = write_trace(tmp_path, outage_then_recovery())
    assert run_cli(path, "--grid", str(grid)) == 2
    assert "JSON nested too deeply" in capsys.readouterr().err
    nested_value = tmp_path / "value.json"
    nested_value.write_text(json.dumps([{"timeout": [[1]]}]))
    with pytest.raises(ValueError, match=r"timeout must be a single value, got '\[\[1\]\]'"):
        tune.load_grid(str(nested_value))


def test_a_huge_grid_is_counted_and_refused_before_any_candidate_is_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    grid = tmp_path / "huge.json"
    axes = ["failure_threshold", "success_threshold", "timeout", "minimum_requests",
            "sliding_window_size", "max_retry_interval", "health_check_interval"]
    grid.write_text(json.dumps({key: list(range(1, 11)) for key in axes}))  # 10**7
    built: list[Any] = []
    monkeypatch.setattr(tune, "make_candidate", built.append)
    with pytest.raises(ValueError, match=r"makes 10,000,000 candidates; the limit is 10,000"):
        tune.load_grid(str(grid))
    assert built == []
    listed = tmp_path / "listed.json"
    listed.write_text(json.dumps([{}] * (tune.MAX_GRID + 1)))
    with pytest.raises(ValueError, match="makes 10,001 candidates"):
        tune.load_grid(str(listed))


def test_binary_trace_and_endless_line_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    binary = tmp_path / "binary.csv"
    binary.write_bytes(bytes(range(256)) * 100)
    assert run_cli(str(binary)) == 2
    assert capsys.readouterr().err == (
        f"tune: {binary}: not UTF-8 text: a trace is a CSV text file "
        "(is this a binary or compressed file?)\n"
    )
    endless = tmp_path / "endless.csv"
    endless.write_text("t,ok,latency\n" + "1" * 5_000_000)
    assert run_cli(str(endless)) == 2
    error = capsys.readouterr().err
    assert "line 2: no end of line within 1,048,576 characters" in error
    assert len(error) < 300


def test_derived_labels_take_a_few_bytes_an_event() -> None:
    """The label rule keeps its per-event state in arrays, not Python lists (which took ~150 B)."""
    import tracemalloc

    n = 200_000
    rows = [(i * 0.05, 0 if 50_000 <= i < 60_000 or i % 50 == 0 else 1, 0.01) for i in range(n)]
    trace = Trace.from_rows(rows)
    del rows
    tracemalloc.start()
    labelled = LabelRule().label(trace, chunk=4096)  # the chunk's lists are a fixed cost
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak / n < 12, f"{peak / n:.1f} bytes an event"
    assert labelled.healthy is not None
    assert labelled.healthy[:49_900].count(0) == 0
    assert labelled.healthy[50_100:59_900].count(1) == 0


def test_derived_labels_agree_across_chunks() -> None:
    ok = [0 if (i // 7) % 3 == 0 else 1 for i in range(500)]
    trace = outcomes([i * 0.3 for i in range(500)], ok)
    whole = LabelRule(4.0, 0.4).label(trace, chunk=1 << 16).healthy
    assert LabelRule(4.0, 0.4).label(trace, chunk=7).healthy == whole
    assert LabelRule(4.0, 0.4).label(trace, chunk=1).healthy == whole


# -- rules that cannot fire ---------------------------------------------------------------


def test_a_rate_rule_behind_the_count_rule_is_named_with_the_field_to_change() -> None:
    # The README's old example: the rate with the old count defaults can never fire first.
    old = CircuitBreakerConfig(failure_threshold=5, minimum_requests=10, failure_rate_threshold=0.5)
    (note,) = tune.redundant_rules(old)
    assert note.startswith("failure_rate_threshold=0.5 can never open the circuit before the "
                           "count rule: at minimum_requests=10 it needs 5 failures")
    assert "raise failure_threshold above 5" in note
    assert tune.redundant_rules(CircuitBreakerConfig()) == []  # both rules can fire first
    assert tune.redundant_rules(CircuitBreakerConfig(failure_threshold=100)) == []  # count off
    (count,) = tune.redundant_rules(CircuitBreakerConfig(failure_threshold=60))
    assert count.startswith("failure_threshold=60 can never open the circuit before the rate")
    assert "lower failure_threshold below 50" in count
    (slow,) = tune.redundant_rules(CircuitBreakerConfig(slow_call_rate_threshold=0.5))
    assert "no call is slow until slow_call_duration is set" in slow
    (duration,) = tune.redundant_rules(CircuitBreakerConfig(slow_call_duration=1.0))
    assert "opens nothing without slow_call_rate_threshold" in duration


def test_redundant_rules_agree_with_replay(breaker_cls: type[CircuitBreaker]) -> None:
    """A rule reported as never first really changes nothing: with and without it, the same."""
    failures = [0 if i % 3 == 0 or 40 <= i < 70 else 1 for i in range(300)]
    trace = Trace.from_rows([(i * 0.1, ok, 0.01) for i, ok in enumerate(failures)])
    for with_rule, without in [
        (dict(failure_threshold=5, minimum_requests=10, failure_rate_threshold=0.5),
         dict(failure_threshold=5, minimum_requests=10, failure_rate_threshold=None)),
        (dict(failure_threshold=60, failure_rate_threshold=0.5),
         dict(failure_threshold=100, failure_rate_threshold=0.5)),
    ]:
        assert tune.redundant_rules(CircuitBreakerConfig(**with_rule))
        replays = [
            breaker_cls("r", CircuitBreakerConfig(**fields)).replay(
                trace.t, trace.ok, trace.latency
            )
            for fields in (with_rule, without)
        ]
        assert replays[0] == replays[1]


def test_cli_warns_about_a_candidate_whose_rule_cannot_fire(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_trace(tmp_path, outage_then_recovery())
    argv = [path, "--config", "failure_threshold=5,minimum_requests=10", "--json"]
    assert run_cli(*argv) == 0
    warnings = json.loads(capsys.readouterr().out)["warnings"]
    assert any(
        note.startswith("failure_threshold=5,minimum_requests=10: failure_rate_threshold=0.5 "
                        "can never open the circuit before the count rule")
        for note in warnings
    )


# -- incidents, ISO times -----------------------------------------------------------------


def test_incidents_label_the_calls_inside_their_windows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = 1_700_000_000.0
    trace = Trace.from_rows(
        [(base + i, 0 if 5 <= i < 10 else 1, 0.1) for i in range(30)]
    )
    path = write_trace(tmp_path, trace)
    incidents = tmp_path / "incidents.csv"
    incidents.write_text(
        "start,end\n2023-11-14T22:13:25Z,2023-11-14T22:13:30Z\n"  # base + 5 .. base + 10
        f"{base + 100},{base + 200}\n"  # after the trace: covers no call
    )
    assert run_cli(path, "--incidents", str(incidents), "--config", SMALL, "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["labels"], report["incidents"]) == ("incidents", str(incidents))
    scores = report["defaults"]["scores"]
    assert (scores["outages"], scores["passed_unhealthy"]) == (1, 5)  # calls 5-9
    assert any(note.startswith("1 incident(s) cover no call of the trace") for note in
               report["warnings"])

    labelled, unused = tune.label_incidents(trace, [(base + 5, base + 10)])
    assert labelled.healthy == bytearray([1] * 5 + [0] * 5 + [1] * 20)
    assert unused == []


def test_incidents_against_a_monotonic_trace_say_why_nothing_lines_up(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_trace(tmp_path, outage_then_recovery())  # t = 0 .. 15: a monotonic clock
    incidents = tmp_path / "incidents.csv"
    incidents.write_text("2024-01-01T00:00:00Z,2024-01-01T00:10:00Z\n")
    assert run_cli(path, "--incidents", str(incidents), "--json") == 0
    warnings = json.loads(capsys.readouterr().out)["warnings"]
    assert any("look like a monotonic clock" in note for note in warnings)
    incidents.write_text("start,end\n5,soon\n")
    assert run_cli(path, "--incidents", str(incidents)) == 2
    assert "line 2: end is not a Unix or ISO-8601 time: 'soon'" in capsys.readouterr().err


def test_cli_reads_a_quoted_iso_trace(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "iso.csv"
    path.write_text(
        '"time","ok","latency"\n'
        + "".join(f'"2024-01-01T00:00:{i:02d}Z","{1 if i % 4 else 0}","0.01"\n' for i in range(40))
    )
    assert run_cli(str(path), "--json") == 0
    assert json.loads(capsys.readouterr().out)["events"] == 40


# -- search, front, recommendation --------------------------------------------------------


def test_search_candidates_are_distinct_valid_and_count_rule_free_when_asked() -> None:
    search = tune.StagedSearch(
        {"sliding_window_size": (10, 20), "minimum_requests": (5, 20),
         "failure_threshold": (5, tune._COUNT_RULE_OFF), "failure_rate_threshold": (None, 0.5)},
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
    keys = [tune._front_key(r.scores) for r in found.front]
    for i, a in enumerate(keys):  # nothing on the front is dominated by another member
        assert not any(tune._dominates(b, a) for j, b in enumerate(keys) if j != i)

    path = write_trace(tmp_path, trace)
    assert run_cli(path, "--search", "--budget", "0.5", "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["search"]["explored"] >= 1
    assert report["search"]["front_scores"] == list(tune.FRONT_SCORES)
    assert report["front"]
    assert report["recommendation"]["code"].startswith("CircuitBreakerConfig(")
    assert set(report["recommendation"]["changes"]) == set(report["recommendation"]["config"])


TRACES = Path(__file__).resolve().parent.parent / "benchmarks" / "traces"


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
    assert tune._comparison(never, defaults) == (
        "On this trace it rejects 0 good calls (defaults: 567) and lets 100 calls through to "
        "the broken dependency (defaults: 100). It does not open in any of the 10 outage(s) "
        "(defaults: 0.44 s, 9 missed), and closes 0.00 s after the dependency is back "
        "(defaults: 3.35 s, 1 still open)."
    )
    assert tune._comparison(defaults, defaults) == (
        "No candidate beat the defaults on this trace. They reject 567 good calls and let 100 "
        "calls through to the broken dependency. They open 0.44 s after an outage starts, on "
        "average (9 of 10 missed), and close 3.35 s after the dependency is back (1 of 9 still "
        "open at the end)."
    )


# -- weights that would reward a bad score; inputs that never end ---------------------------


@pytest.mark.parametrize("weight", ["rejected_healthy=-1", "passed_unhealthy=-0.5", "opens=inf"])
def test_a_negative_or_infinite_weight_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], weight: str
) -> None:
    path = write_trace(tmp_path, outage_then_recovery())
    assert run_cli(path, "--weight", weight) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        f"tune: --weight {weight}: a weight must be a finite number >= 0 (every score "
        "counts something bad: a negative weight would reward it; 0 drops it)\n"
    )
    with pytest.raises(ValueError, match=r"the weight of rejected_healthy must be .* got -1\.0"):
        tune.tune(outage_then_recovery(), [make_candidate({})], {"rejected_healthy": -1.0})


@pytest.mark.parametrize("argument", ["TRACE", "--incidents", "--grid"])
def test_a_fifo_is_refused_at_once_instead_of_blocking(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argument: str
) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)  # nobody writes to it: opening it the usual way would wait forever
    trace = write_trace(tmp_path, outage_then_recovery())
    argv = [str(fifo)] if argument == "TRACE" else [trace, argument, str(fifo)]
    what = {"TRACE": "a trace", "--incidents": "an incident log", "--grid": "a grid"}[argument]
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(run_cli(*argv)), daemon=True)
    thread.start()
    thread.join(timeout=10)
    if thread.is_alive():  # it blocked: a writer at the other end releases it
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(timeout=10)
    assert codes == [2], "tune blocked on the FIFO"
    assert capsys.readouterr().err == (
        f"tune: {fifo}: {what} must be a regular file, not a FIFO, device or socket "
        "(copy it to a file first)\n"
    )


def test_a_recommendation_writes_minimum_requests_only_where_it_is_not_implied() -> None:
    # Left out, minimum_requests follows a lower failure_threshold: writing it is noise...
    assert make_candidate({"failure_threshold": 3}).code == (
        "CircuitBreakerConfig(failure_threshold=3)"
    )
    # ...but a minimum that differs from the implied one must be written, even the default.
    pinned = make_candidate({"failure_threshold": 3, "minimum_requests": 20})
    assert pinned.code == "CircuitBreakerConfig(failure_threshold=3, minimum_requests=20)"
    assert eval(pinned.code, {"CircuitBreakerConfig": CircuitBreakerConfig}) == pinned.config


# -- a trace recorded behind a breaker that rejected calls -----------------------------------


def test_tune_warns_about_a_trace_with_rejections_and_says_how_to_record_without(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "behind.csv"
    calls = "".join(f"{t},{0 if 4 <= t < 6 else 1},0\n" for t in range(10))
    path.write_text("t,ok,latency\n" + calls + "4,rejected,3\n")  # rejected 4-7 of 0-9
    assert run_cli(str(path), "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["events"] == 10  # the rejected time is no call
    assert report["rejections"] == {"spans": 1, "share": pytest.approx(3 / 9)}
    assert report["warnings"][0] == (
        "the breaker that recorded this trace rejected calls in 1 span covering 33% of its "
        "time: no call reached the dependency then, so the trace cannot say how it was, and "
        "the replays judge every config on the gaps the recording breaker left; record "
        "behind an observe-only breaker, CircuitBreakerConfig(enable_fast_fail=False), "
        "whose calls all run"
    )
    assert run_cli(str(path)) == 0  # and the table's warnings say it too
    assert "observe-only breaker" in capsys.readouterr().out
    incidents = tmp_path / "incidents.csv"
    incidents.write_text("start,end\n4,6\n")
    assert run_cli(str(path), "--incidents", str(incidents), "--json") == 0
    assert json.loads(capsys.readouterr().out)["rejections"]["spans"] == 1  # labels keep it


def test_a_trace_without_rejections_gets_no_such_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_trace(tmp_path, outage_then_recovery())
    assert run_cli(path, "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["rejections"] == {"spans": 0, "share": 0.0}
    assert not any("rejected calls" in note for note in report["warnings"])
