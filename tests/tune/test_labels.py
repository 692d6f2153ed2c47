"""Labels: derived from a trace's own outcomes, or from an incident log (ISO times too)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recovery import tune
from recovery.trace import Trace
from recovery.tune import LabelRule
from tests.tune.helpers import (
    SMALL,
    outage_then_recovery,
    outcomes,
    run_cli,
    write_trace,
)

# -- derived labels ---------------------------------------------------------------------


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
