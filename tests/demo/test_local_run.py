"""``python -m recovery demo`` in one process: it runs by itself, every simulated failure
mode gets its recovery, the audit trail says so, every number it shows can be checked
against another, and no thread outlives it.

The demo runs on real time (it is a show of real threads), so these tests use short
durations.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import threading
from pathlib import Path

import pytest

from recovery import __main__ as cli
from recovery import demo
from recovery.audit import JsonlAuditLogger
from tests.demo.doubles import FakeTerminal
from tests.demo.process import run_demo, summary_rows


def test_every_failure_mode_is_recovered_and_audited(tmp_path: Path) -> None:
    audit = tmp_path / "audit.jsonl"
    done = run_demo("--duration", "3", "--seed", "1", "--audit", str(audit))
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    out = done.stdout
    assert f"audit trail: {audit}: " in out
    assert out.rstrip().endswith("threads left: 0")

    records = list(JsonlAuditLogger.read(audit))
    runs = {(r["plugin"], r["failure_type"], r["action"], r["success"]) for r in records}
    assert not [r for r in records if r["plugin"] == "steady"]
    # flaky trips on its errors (or fails its health checks first) and is restarted.
    assert {("flaky", "error", "restart", True), ("flaky", "health_check", "restart", True)} & runs
    # slow makes its callers time out: it is degraded, served from its fallback.
    assert ("slow", "timeout", "degrade", True) in runs
    # hung-check's health check hangs: a restart ends the hang.
    assert ("hung-check", "health_check", "restart", True) in runs
    # crashy crashes in initialize at boot and in its first restarts, then comes up.
    crashy = [(r["failure_type"], r["action"], r["success"]) for r in records
              if r["plugin"] == "crashy"]
    assert crashy == [("initialization", "restart", False)] * (demo.BOOT_CRASHES - 1) + [
        ("initialization", "restart", True)
    ]
    # flaky's second fault takes two restarts: a manager that verifies recoveries
    # audits the first as failed (the restart worked, the plugin did not).
    failed = {(r["plugin"], r["action"]) for r in records if not r["success"]}
    assert failed - {("flaky", "restart")} == {("crashy", "restart")}
    assert f": {len(records)} records from this run" in out

    # Off a terminal: one line per state change and recovery action, as they happen.
    lines = out.splitlines()
    for plugin in ("flaky", "slow", "hung-check", "crashy"):
        assert any(re.search(rf"\d\.\d\ds  {plugin} +breaker: closed -> ", line)
                   for line in lines), plugin
    assert any("hung-check  recovery: restart after health_check succeeded" in line
               for line in lines)
    # Each state entered has its line, however briefly it was held (flaky is open for
    # microseconds: its repair starts at once), and the time table counts the entries.
    title = next(i for i, line in enumerate(lines) if line.startswith("TIME IN STATE"))
    for row in lines[title + 1:title + 1 + len(demo.PLUGINS)]:
        plugin = row.split()[0]
        for index, state in enumerate(demo.STATES):
            told = sum(1 for line in lines
                       if re.search(rf"  {plugin} +breaker: \w+ -> {state.value}$", line))
            cell = row[13 + 14 * index:13 + 14 * (index + 1)].strip()
            expected = rf"\d+\.\d{{3}}s {told}x" if told else r"-|\d+\.\d{3}s"
            assert re.fullmatch(expected, cell), (plugin, state, cell)
    flaky = next(line for line in lines[title:] if line.startswith("flaky "))
    assert flaky[13 + 14:13 + 28].strip().endswith("x")  # flaky tripped: open is counted
    # The summary: per plugin, what the callers saw and which strategies ran.
    crashy_row = next(line for line in lines if line.startswith("crashy ") and " x" in line)
    assert f"restart failed x{demo.BOOT_CRASHES - 1}, restart ok x1" in crashy_row
    rows = summary_rows(out)
    assert int(rows["slow"][3]) > 0  # fallback served
    total = rows.pop("total")
    for column in range(5):
        assert int(total[column]) == sum(int(row[column]) for row in rows.values())
    for calls, ok, errors, served, _ in ([int(n) for n in row] for row in rows.values()):
        assert calls == ok + errors + served


def test_every_number_adds_up(tmp_path: Path) -> None:
    """--json carries the summary's numbers; each one is checked against another."""
    audit = tmp_path / "audit.jsonl"
    earlier = JsonlAuditLogger(audit)
    for _ in range(3):  # a reused trail: these records are not this run's
        earlier.log_failure_recovery("flaky", "error", "restart", True)
    earlier.close()

    done = run_demo("--duration", "2", "--seed", "2", "--json", "--audit", str(audit))
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    run, status = document["run"], document["status"]
    assert status["running"] is False
    assert list(run["plugins"]) == list(status["plugins"]) == list(demo.PLUGINS)
    assert run["seed"] == 2 and run["interrupted"] is False and run["threads_left"] == 0

    for name, counts in run["plugins"].items():
        breaker = status["plugins"][name]["circuit_breaker"]
        recovery = status["plugins"][name]["recovery"]
        # One counter: every call has one outcome.
        assert counts["calls"] == counts["ok"] + counts["errors"] + counts["fallbacks_served"]
        # The words the dashboard and the status use, for the same numbers.
        assert counts["rejected"] == breaker["total_rejections"], name
        assert counts["fallbacks_served"] == recovery["fallbacks_served"], name
        # An error reached the caller from the plugin (the breaker counted a failure), or
        # from the breaker: a rejection that no fallback served (slow has one).
        refused = 0 if name == "slow" else counts["rejected"]
        assert counts["errors"] == breaker["total_failures"] + refused, name
        assert counts["ok"] + breaker["total_failures"] == breaker["total_requests"], name
        # Time in state, from the transition listeners: adds up to the run's time.
        assert sum(counts["time_in_state"].values()) == pytest.approx(run["elapsed"], abs=1e-6)
        assert counts["final_state"] == breaker["state"], name
        # The strategy runs the demo saw are the ones the manager counted.
        seen = {(a["action"], a["success"]): a["count"] for a in counts["actions"]}
        counted = {(action, verdict == "success"): n
                   for action, results in recovery["actions"].items()
                   for verdict, n in results.items() if n}
        assert seen == counted, name
    flaky = run["plugins"]["flaky"]
    assert flaky["entered"]["open"] >= 1 and flaky["entered"]["repairing"] >= 1
    # slow's breaker refused calls that its fallback served: both counted, each by its name.
    slow = run["plugins"]["slow"]
    assert 0 < slow["rejected"] <= slow["fallbacks_served"]
    assert summary_rows(done.stderr)["slow"][3:] == [str(slow["fallbacks_served"]),
                                                     str(slow["rejected"])]
    assert run["plugins"]["steady"]["time_in_state"]["closed"] == pytest.approx(run["elapsed"])

    # This run's audit records, and only they, are counted: one per strategy run.
    strategy_runs = sum(a["count"] for p in run["plugins"].values() for a in p["actions"])
    assert run["audit"] == {"path": str(audit), "records": strategy_runs, "earlier_records": 3}
    assert sum(1 for _ in JsonlAuditLogger.read(audit)) == 3 + strategy_runs
    assert f"{strategy_runs} records from this run" in done.stderr
    assert "after 3 records of earlier runs" in done.stderr
    assert "threads left: 0" in done.stderr


def test_on_a_terminal_the_table_redraws_in_place_and_agrees_with_the_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.setenv("COLUMNS", "200")
    parser = argparse.ArgumentParser()
    demo.add_arguments(parser)
    args = parser.parse_args(
        ["--duration", "1.5", "--seed", "3", "--audit", str(tmp_path / "audit.jsonl")]
    )
    before = set(threading.enumerate())
    assert demo.run(args) == 0
    assert set(threading.enumerate()) <= before
    out = terminal.getvalue()
    assert out.count("PLUGIN     STATE") >= 5  # redrawn every tick
    assert re.search(r"\x1b\[\d+A\r", out)  # back up over the last drawing
    assert "\x1b[?25h" in out  # the cursor is shown again
    # Every plugin has its row. Which state each shows depends on how far the demo got
    # in 1.5 s of real time (crashy may still be coming up on a loaded machine).
    for plugin in demo.PLUGINS:
        assert re.search(rf"{plugin} +(closed|open|half_open|repairing)", out), plugin
    assert out.rstrip().endswith("threads left: 0")
    # The last frame shows the summary's numbers: one counter for both.
    final = out[out.rindex("the final numbers"):]
    live = {}
    for line in final.splitlines()[3:3 + len(demo.PLUGINS)]:
        fields = line.replace("\x1b[K", "").split()
        live[fields[0]] = fields[2:7]
    summary = summary_rows(out)
    del summary["total"]
    assert live == summary
    assert "crashy     closed" in final


def test_on_a_short_terminal_the_dashboard_url_stays_in_the_frame(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The URL line printed before the live frame scrolls away once the frame fills a
    short terminal; the frame itself shows it while the dashboard serves."""
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.setenv("COLUMNS", "100")
    monkeypatch.setenv("LINES", "20")
    assert cli.main(["demo", "--duration", "0.5", "--seed", "1", "--dashboard",
                     "--audit", str(tmp_path / "audit.jsonl")]) == 0
    running, final = terminal.getvalue().split("recovery demo: the final numbers")
    url = re.search(r"dashboard: (http://127\.0\.0\.1:\d+/)", running)
    assert url, running
    frames = running.split("recovery demo  ")[1:]
    assert frames and all(f"\ndashboard: {url.group(1)}\x1b[K\n" in f for f in frames)
    assert "dashboard: " not in final
