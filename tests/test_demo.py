"""``python -m recovery demo`` (SPEC §11): it runs by itself, every simulated failure
mode gets its recovery, the audit trail says so, and no thread outlives it.

The demo runs on real time (it is a show of real threads), so these tests use short
durations: about 9 s in all.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from recovery import demo
from recovery.audit import JsonlAuditLogger

COMMAND = [sys.executable, "-m", "recovery", "demo"]


def run_demo(*args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMMAND, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def test_every_failure_mode_is_recovered_and_audited(tmp_path: Path) -> None:
    audit = tmp_path / "audit.jsonl"
    done = run_demo("--duration", "3", "--seed", "1", "--audit", str(audit))
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    out = done.stdout
    assert f"audit trail: {audit}" in out
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
    assert {r["plugin"] for r in records if not r["success"]} == {"crashy"}

    # Off a terminal: one line per state change and recovery action, as they happen.
    lines = out.splitlines()
    for plugin in ("flaky", "slow", "hung-check", "crashy"):
        assert any(re.search(rf"\d\.\d\ds  {plugin} +breaker: closed -> ", line)
                   for line in lines), plugin
    assert any("hung-check  recovery: restart after health_check succeeded" in line
               for line in lines)
    # The summary: per plugin, what the callers saw and how the episodes ended.
    crashy_row = next(line for line in lines if line.startswith("crashy "))
    assert "1 recovered" in crashy_row
    assert f"restart failed x{demo.BOOT_CRASHES - 1}" in crashy_row
    slow_row = next(line for line in lines if line.startswith("slow "))
    fallbacks = int(slow_row.split()[5])
    assert fallbacks > 0
    assert re.search(r"^total +\d+", out, re.MULTILINE)


def test_json_prints_the_final_status_on_stdout(tmp_path: Path) -> None:
    audit = tmp_path / "audit.jsonl"
    done = run_demo("--duration", "2", "--seed", "2", "--json", "--audit", str(audit))
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    assert status["running"] is False
    assert status["health_checking"] is True
    assert list(status["plugins"]) == list(demo.PLUGINS)
    crashy = status["plugins"]["crashy"]
    assert crashy["recovery"]["last_action"] == "restart"
    assert crashy["recovery"]["last_action_success"] is True
    assert crashy["circuit_breaker"]["circuit_open_time"] > 0
    assert status["plugins"]["steady"]["circuit_breaker"]["total_failures"] == 0
    assert not any(p["recovery"]["failed"] for p in status["plugins"].values())
    # The summary goes to stderr, so stdout stays one JSON document.
    assert "threads left: 0" in done.stderr
    assert f"audit trail: {audit}" in done.stderr


def test_ctrl_c_stops_it_cleanly_with_the_summary(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [*COMMAND, "--duration", "60", "--audit", str(tmp_path / "audit.jsonl")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A terminal's Ctrl-C, even if whoever runs the tests ignores SIGINT.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()  # the banner: the run has started
        assert first.startswith("recovery demo:")
        # A line after the banner: the workers and the manager are up.
        assert process.stdout.readline()
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert "interrupted after" in out
    assert out.rstrip().endswith("threads left: 0")
    assert err == ""


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_the_table_redraws_in_place_and_every_thread_is_joined(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    monkeypatch.setenv("TERM", "xterm")
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
    assert os.path.getsize(tmp_path / "audit.jsonl") > 0
