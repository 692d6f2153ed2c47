"""``python -m recovery demo``: it runs by itself, every simulated failure mode gets its
recovery, the audit trail says so, every number it shows can be checked against
another, Ctrl-C (once or twice) always ends it cleanly, and no thread outlives it.

The demo runs on real time (it is a show of real threads), so these tests use short
durations: about 12 s in all. The Ctrl-C tests send real SIGINTs to a real process
and wait on its output, never on a sleep.
"""

from __future__ import annotations

import argparse
import io
import json
import queue
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from recovery import __main__ as cli
from recovery import demo
from recovery.audit import JsonlAuditLogger
from recovery.breaker import CircuitBreaker
from recovery.state import CircuitBreakerState
from recovery.status import HealthCheckStatus, PluginRecovery, PluginStatus, RecoveryStatus
from tests.helpers import closed_after, hears_ctrl_c, kill_if_running

COMMAND = [sys.executable, "-m", "recovery", "demo"]
CLOSED, OPEN, REPAIRING, HALF_OPEN = (
    CircuitBreakerState.CLOSED,
    CircuitBreakerState.OPEN,
    CircuitBreakerState.REPAIRING,
    CircuitBreakerState.HALF_OPEN,
)
# The manager's stop() never returns: what a wedged shutdown looks like to the demo.
WEDGED_STOP = textwrap.dedent("""
    import sys, threading
    from recovery import __main__ as cli
    from recovery.manager import RecoveryManager
    RecoveryManager.stop = lambda self, timeout=10.0: threading.Event().wait()
    sys.exit(cli.main(sys.argv[1:]))
""")


def run_demo(*args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMMAND, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


class Demo:
    """A demo process whose stdout is read on a thread, so that every wait is bounded."""

    def __init__(self, *command: str) -> None:
        self.process = subprocess.Popen(
            list(command),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=hears_ctrl_c,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._seen: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def wait_for(self, text: str, timeout: float = 20.0) -> None:
        """Until a line of stdout contains ``text``."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(deadline - time.monotonic(), 0.0))
            except queue.Empty:
                raise AssertionError(f"{text!r} not printed within {timeout} s") from None
            assert line is not None, f"{text!r} never printed: {self._seen}"
            self._seen.append(line)
            if text in line:
                return

    def interrupt(self) -> None:
        self.process.send_signal(signal.SIGINT)

    def finish(self, timeout: float) -> tuple[str, str]:
        """Wait for it to exit (killed after ``timeout``); its whole stdout and stderr."""
        try:
            self.process.wait(timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
        self._reader.join(timeout)
        while (line := self._lines.get()) is not None:
            self._seen.append(line)
        assert self.process.stderr is not None
        return "".join(self._seen), self.process.stderr.read()


@pytest.fixture
def start() -> Iterator[Callable[..., Demo]]:
    """``start(*command)``: a Demo, killed at the end of the test if it is still running."""
    yield from closed_after(Demo, lambda run: kill_if_running(run.process))


def summary_rows(out: str) -> dict[str, list[str]]:
    """The summary's call table: plugin -> [CALLS, OK, FAILED, REJECTED, FALLBACK]."""
    rows = {}
    table = out[out.index("RECOVERY ACTIONS"):]
    for line in table.splitlines()[1:]:
        if not line.strip():
            break
        fields = line.split()
        rows[fields[0]] = fields[1:6]
    return rows


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
    crashy_row = next(line for line in lines if line.startswith("crashy "))
    assert f"restart failed x{demo.BOOT_CRASHES - 1}, restart ok x1" in crashy_row
    rows = summary_rows(out)
    assert int(rows["slow"][4]) > 0  # fallbacks served
    total = rows.pop("total")
    for column in range(5):
        assert int(total[column]) == sum(int(row[column]) for row in rows.values())
    for calls, ok, failed, rejected, fallback in ([int(n) for n in row] for row in rows.values()):
        assert calls == ok + failed + rejected + fallback


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
        assert counts["calls"] == sum(counts[outcome] for outcome in demo.OUTCOMES), name
        # OK and FAILED are the calls that reached the plugin: the breaker counted them.
        assert counts["ok"] + counts["failed"] == breaker["total_requests"], name
        assert counts["failed"] == breaker["total_failures"], name
        assert counts["fallback"] == recovery["fallbacks_served"], name
        if name == "slow":  # rejections are answered by its fallback
            assert counts["rejected"] == 0
            assert breaker["total_rejections"] <= counts["fallback"]
        else:
            assert counts["rejected"] == breaker["total_rejections"], name
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
    assert run["plugins"]["steady"]["time_in_state"]["closed"] == pytest.approx(run["elapsed"])

    # This run's audit records, and only they, are counted: one per strategy run.
    strategy_runs = sum(a["count"] for p in run["plugins"].values() for a in p["actions"])
    assert run["audit"] == {"path": str(audit), "records": strategy_runs, "earlier_records": 3}
    assert sum(1 for _ in JsonlAuditLogger.read(audit)) == 3 + strategy_runs
    assert f"{strategy_runs} records from this run" in done.stderr
    assert "after 3 records of earlier runs" in done.stderr
    assert "threads left: 0" in done.stderr


def test_ctrl_c_stops_it_cleanly_with_the_summary(
    tmp_path: Path, start: Callable[..., Demo]
) -> None:
    run = start(*COMMAND, "--duration", "60", "--audit", str(tmp_path / "a.jsonl"))
    run.wait_for("recovery demo:")  # the banner: the run has started
    run.wait_for("s  ")  # an event line: the workers and the manager are up
    run.interrupt()
    out, err = run.finish(timeout=20)
    assert run.process.returncode == 0, err
    assert "Ctrl-C: stopping" in out
    assert "interrupted after" in out
    assert out.rstrip().endswith("threads left: 0")
    assert err == ""


def test_ctrl_c_twice_back_to_back_ends_it_cleanly(
    tmp_path: Path, start: Callable[..., Demo]
) -> None:
    run = start(*COMMAND, "--duration", "60", "--audit", str(tmp_path / "a.jsonl"))
    run.wait_for("s  ")
    run.interrupt()
    run.interrupt()
    out, err = run.finish(timeout=20)
    assert "Traceback" not in out + err
    # The two may reach it as one (signals do not queue): then it is one Ctrl-C.
    if run.process.returncode == 0:
        assert out.rstrip().endswith("threads left: 0")
    else:
        assert run.process.returncode == demo.EXIT_INTERRUPTED
        assert err.count("\n") == 1 and "quit at once" in err


def test_a_second_ctrl_c_quits_at_once_even_if_the_shutdown_hangs(
    tmp_path: Path, start: Callable[..., Demo]
) -> None:
    audit = tmp_path / "a.jsonl"
    run = start(sys.executable, "-c", WEDGED_STOP, "demo", "--duration", "60",
               "--audit", str(audit))
    run.wait_for("s  ")
    run.interrupt()
    run.wait_for("Ctrl-C: stopping")  # heard: the shutdown has begun, and hangs
    run.interrupt()
    out, err = run.finish(timeout=10)
    assert run.process.returncode == demo.EXIT_INTERRUPTED, err
    assert err == (
        "recovery demo: Ctrl-C twice: quit at once, without the summary "
        f"(the audit trail so far is in {audit})\n"
    )
    assert "interrupted after" not in out


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--audit", "/nonexistent/a.jsonl"],
         "--audit: cannot open JSONL audit log '/nonexistent/a.jsonl': No such file"),
        (["--duration", "abc"], "--duration: 'abc' is not a number of seconds"),
        (["--duration", "-1"], "--duration: must be a finite number of seconds > 0, got '-1'"),
        (["--duration", "nan"], "--duration: must be a finite number of seconds > 0"),
        (["--workers", "0"], f"--workers: must be from 1 to {demo.MAX_WORKERS}, got '0'"),
        (["--workers", "two"], "--workers: 'two' is not a whole number"),
        (["--seed", "1.5"], "--seed: '1.5' is not a whole number"),
    ],
)
def test_a_bad_argument_is_one_plain_line(
    args: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        code = cli.main(["demo", *args])
    except SystemExit as exit:  # argparse's way out
        code = exit.code  # type: ignore[assignment]
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("recovery demo: error: ")
    assert says in err


def test_the_audit_path_error_happens_before_anything_starts(tmp_path: Path) -> None:
    done = run_demo("--audit", str(tmp_path))  # a directory
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == (
        f"recovery demo: error: --audit: cannot open JSONL audit log {str(tmp_path)!r}: "
        "Is a directory\n"
    )


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


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


def local(wall: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(wall))


def status_of(plugins: dict[str, PluginRecovery]) -> RecoveryStatus:
    """A manager's status with these plugins, their breakers open."""
    metrics = attrs.evolve(CircuitBreaker("p").metrics(), state=OPEN)
    return RecoveryStatus(
        running=True, auto_recovery=True, health_checking=True, alerting=True,
        episodes_in_progress=0, stuck_strategies=(), stuck_health_checks=0,
        plugins={name: PluginStatus(name, attrs.evolve(metrics, name=name),
                                    HealthCheckStatus(), recovery)
                 for name, recovery in plugins.items()},
    )


def live_row(**recovery: Any) -> str:
    status = status_of({"p": PluginRecovery(last_action="restart", last_action_success=False,
                                            degraded=False, failed=True, **recovery)})
    tally = {"p": demo._PluginTally(ok=6, failed=2, rejected=3, fallback=1)}
    times = {"p": demo._StateTimes(dict.fromkeys(demo.STATES, 0.0),
                                   {**dict.fromkeys(demo.STATES, 0), OPEN: 4}, OPEN)}
    return demo._table(status, tally, times, {"p": 0.25})[1]


def test_the_live_row_shows_a_crash_loop_and_its_next_attempt() -> None:
    row = live_row(crash_loop=True, next_attempt=1_700_000_012.0)
    assert row.split()[:9] == ["p", "open", "12", "6", "2", "3", "1", "25%", "4"]
    assert row.endswith(f" crash-loop (next {local(1_700_000_012)})  restart FAILED")
    assert live_row(crash_loop=True, next_attempt=None).endswith(
        " crash-loop  restart FAILED")
    # Failed and not in a crash loop: failed is failed.
    assert live_row().endswith(" failed  restart FAILED")


def test_the_summary_says_why_a_plugin_is_out_of_service() -> None:
    wall_started = 1_700_000_000.0
    plugins = {
        "looping": PluginRecovery(crash_loop=True, next_attempt=wall_started + 9, failed=True,
                                  failed_reason="recovery exhausted", degraded=False),
        "given-up": PluginRecovery(failed=True, failed_reason="unrecoverable: bad config",
                                   degraded=False),
        "fine": PluginRecovery(failed=False, degraded=True),
    }
    status = status_of(plugins)
    tally = {name: demo._PluginTally() for name in plugins}
    times = {name: demo._StateTimes(dict.fromkeys(demo.STATES, 0.0),
                                    dict.fromkeys(demo.STATES, 0), CLOSED) for name in plugins}
    lines = demo._summary(status, tally, times, 5.0, False, wall_started)
    # The run's span on the clock, to read the next attempt against.
    assert lines[0] == (
        f"finished after 5.000s ({local(wall_started)} to {local(wall_started + 5)})"
    )
    rows = {line.split()[0]: line for line in lines[3:6]}
    assert rows["looping"].endswith(
        f"; now crash-loop (next {local(wall_started + 9)}; recovery exhausted)")
    assert rows["given-up"].endswith("; now failed (unrecoverable: bad config)")
    assert rows["fine"].endswith("-; now degraded")


class Recorder:
    """An audit logger; ``detailed`` gives it the verification path too."""

    def __init__(self, detailed: bool) -> None:
        self.records: list[tuple[Any, ...]] = []
        if detailed:
            self.log_recovery_attempt = self._detailed

    def log_failure_recovery(self, *args: Any) -> None:
        self.records.append(args)

    def _detailed(self, *args: Any, **verdicts: Any) -> None:
        self.records.append((*args, verdicts))


class Events(demo._Reporter):
    def __init__(self) -> None:
        super().__init__(io.StringIO(), 0.0)
        self.lines: list[str] = []

    def event(self, plugin: str, text: str) -> None:
        self.lines.append(f"{plugin}: {text}")


@pytest.mark.parametrize("detailed", [True, False])
def test_the_audit_trail_gets_the_verification_when_its_logger_takes_it(
    detailed: bool,
) -> None:
    inner, tally, events = Recorder(detailed), demo._Tally(("p",)), Events()
    audit = demo._Announcing(inner, tally, events)
    audit.log_recovery_attempt("p", "error", "restart", False,
                               action_succeeded=True, verified=False)
    audit.log_recovery_attempt("p", "error", "restart", True,
                               action_succeeded=True, verified=True)
    audit.log_failure_recovery("p", "error", "reload", False)
    verdicts = [{"action_succeeded": True, "verified": False},
                {"action_succeeded": True, "verified": True}]
    assert inner.records == [
        ("p", "error", "restart", False, *verdicts[:1] * detailed),
        ("p", "error", "restart", True, *verdicts[1:] * detailed),
        ("p", "error", "reload", False),
    ]
    assert events.lines == [
        "p: recovery: restart after error FAILED (done, but the plugin failed its "
        "verification)",
        "p: recovery: restart after error succeeded (verified)",
        "p: recovery: reload after error FAILED",
    ]
    assert tally.snapshot()["p"].actions == {("restart", False): 1, ("restart", True): 1,
                                             ("reload", False): 1}


class Ticking:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_state_clock_counts_states_held_for_no_time_and_late_news() -> None:
    ticking = Ticking()
    states = demo._StateClock(("p",), started=0.0, now=ticking)
    breaker: Any = type("Breaker", (), {"name": "p"})()
    ticking.now = 1.0
    states.on_transition(breaker, CLOSED, OPEN)
    states.on_transition(breaker, OPEN, REPAIRING)  # at once: open for no time at all
    ticking.now = 1.5
    # Told out of order (listeners run outside the breaker's lock, on two threads).
    states.on_transition(breaker, HALF_OPEN, CLOSED)
    ticking.now = 1.75
    states.on_transition(breaker, REPAIRING, HALF_OPEN)
    times = states.snapshot(at=4.0)["p"]
    assert times.state is CLOSED
    assert times.entered == {CLOSED: 1, OPEN: 1, REPAIRING: 1, HALF_OPEN: 1}
    assert times.seconds == {CLOSED: 1.0 + 2.25, OPEN: 0.0, REPAIRING: 0.75, HALF_OPEN: 0.0}
    assert sum(times.seconds.values()) == 4.0


def test_fail_percent_is_the_failed_share_of_the_last_second_of_calls() -> None:
    recent = demo._RecentFailures(span=1.0)
    counts = demo._PluginTally

    assert recent.update(0.0, {"p": counts()}) == {"p": None}
    assert recent.update(0.5, {"p": counts(ok=9, failed=1)}) == {"p": 0.1}
    assert recent.update(1.0, {"p": counts(ok=9, failed=5)}) == {"p": 5 / 14}
    # The second before 1.6 starts at the frame of 0.5.
    assert recent.update(1.6, {"p": counts(ok=9, failed=5, rejected=7)}) == {"p": 1.0}
    # Nothing reached the plugin in the last second: no rate, not 0 %.
    assert recent.update(2.7, {"p": counts(ok=9, failed=5, fallback=3)}) == {"p": None}


def test_the_second_ctrl_c_quits_with_status_130() -> None:
    exits: list[int] = []
    ctrl_c = demo._CtrlC("bye\n", show_cursor=False, exit=exits.append)
    ctrl_c(signal.SIGINT, None)
    assert (ctrl_c.presses, exits) == (1, [])
    ctrl_c(signal.SIGINT, None)
    assert exits == [130]
