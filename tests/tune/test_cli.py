"""The command line: the recommendation, the table, JSON, errors, hostile input, warnings."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from recovery import tune
from recovery.config import CircuitBreakerConfig
from recovery.trace import Trace
from recovery.tune import LabelRule, make_candidate
from tests.tune.helpers import (
    SMALL,
    hand_trace,
    outage_then_recovery,
    outcomes,
    run_cli,
    write_trace,
)

# -- command line -----------------------------------------------------------------------


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


# -- weights that would reward a bad score; inputs that never end ---------------------------


@pytest.mark.parametrize("weight", ["rejected_healthy=-1", "passed_unhealthy=-0.5", "opens=inf"])
def test_a_negative_or_infinite_weight_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], weight: str
) -> None:
    path = write_trace(tmp_path, outage_then_recovery())
    assert run_cli(path, "--weight", weight) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    score, _, value = weight.partition("=")
    assert captured.err == (
        f"tune: the weight of {score} must be a finite number >= 0, got {float(value)!r} "
        "(every score counts something bad: a negative weight would reward it; 0 drops it)\n"
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


def test_forecast_scores_the_early_warning_before_the_recommended_and_default_breaker(
    capsys: pytest.CaptureFixture[str],
) -> None:
    ramp = Path(__file__).parents[2] / "benchmarks" / "traces" / "ramp_geometric.csv"
    assert run_cli(str(ramp), "--config", "timeout=1", "--forecast", "--json") == 0
    report = json.loads(capsys.readouterr().out)
    scores = report["forecast"]
    defaults_won = report["recommendation"]["code"] == "CircuitBreakerConfig()"
    assert set(scores) == ({"default"} if defaults_won else {"recommended", "default"})
    default = scores["default"]
    assert default["outages"] and all(o["warned"] is not None for o in default["outages"])
    assert default["median_lead"] > 0
    assert run_cli(str(ramp), "--forecast") == 0
    assert "Early warning before the default breaker opens:" in capsys.readouterr().out


def test_forecast_needs_labels(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_trace(tmp_path, hand_trace(None, [0.1] * 4))
    assert run_cli(path, "--no-derive-labels", "--forecast") == 2
    assert "--forecast needs labels" in capsys.readouterr().err
