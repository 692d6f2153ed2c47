"""Run the whole test suite many times in random order and report every failure.

    python tools/flake_hunt.py [--runs 50] [--twin] [--busy 1] [--seed 1234]
                                    [--run-timeout 900] [-- extra pytest args]

A suite that passes once can still depend on the order its tests run in, on the
speed of the machine or on a race it usually wins. Each run here is a fresh pytest
process with pytest-randomly shuffling the order under a seed recorded for the run
(``-p randomly -p no:cacheprovider``: no cache, so one run cannot steer the next),
optionally while ``--busy`` subprocesses spin on the other cores, on the compiled
window or (``--twin``) on the pure-Python one (``RECOVERY_NO_EXTENSIONS=1``).

Every failing test is reported with its run's seed and its id, and the command that
replays that exact order; a run that outlives ``--run-timeout`` is reported as a
hang. The exit status is 1 if anything failed, so the script can gate a release.
It is not collected by pytest (no ``test_``/``bench_`` prefix) and CI does not run
it: a run of the whole suite takes about 2 to 3 minutes on 2 cores (it starts Redis,
Chromium and pip builds), so a proof of 50 runs takes about two hours per window.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

SPIN = "while True: pass"


@dataclass
class Run:
    """One pytest process: its seed, what failed, and how it ended."""

    index: int
    seed: int
    seconds: float = 0.0
    tests: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)  # (test id, first line)
    problem: str = ""  # a hang or a crash that left no report


def pytest_command(seed: int, extra: list[str]) -> list[str]:
    return [
        sys.executable, "-m", "pytest", "-q", "-rfE", "-p", "randomly", "-p", "no:cacheprovider",
        f"--randomly-seed={seed}", *extra,
    ]


def replay_command(seed: int, twin: bool) -> str:
    """The whole run again in the same order: a flake may need the tests before it."""
    prefix = "RECOVERY_NO_EXTENSIONS=1 " if twin else ""
    return f"{prefix}python -m pytest -p randomly -p no:cacheprovider --randomly-seed={seed}"


SUMMARY_LINE = re.compile(r"^(FAILED|ERROR) (\S+)(?: - (.*))?$")
COUNTS = re.compile(r"(\d+) (passed|failed|errors?)\b")


def failures_in(log: str) -> tuple[int, list[tuple[str, str]]]:
    """``(tests run, [(test id, outcome and first line)])`` from pytest's ``-rfE`` summary."""
    found = [
        (match[2], f"{match[1].lower()}: {match[3] or ''}"[:200])
        for match in map(SUMMARY_LINE.match, log.splitlines())
        if match
    ]
    last = log.strip().splitlines()[-1] if log.strip() else ""
    tests = sum(int(count) for count, _ in COUNTS.findall(last))
    return tests, found


def run_once(index: int, seed: int, env: dict[str, str], extra: list[str],
             timeout: float, logs: Path) -> Run:
    run = Run(index, seed)
    output = logs / f"run{index}-seed{seed}.log"
    began = time.monotonic()
    with open(output, "wb") as log:
        child = subprocess.Popen(
            pytest_command(seed, extra), cwd=REPO, env=env,
            stdout=log, stderr=subprocess.STDOUT,
        )
        try:
            code = child.wait(timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
            code = None
    run.seconds = time.monotonic() - began
    if code is None:
        run.problem = f"hang: still running after {timeout:.0f} s (log {output})"
        return run
    run.tests, run.failures = failures_in(output.read_text(errors="replace"))
    if code not in (0, 1) or (code == 1 and not run.failures):
        run.problem = f"pytest exited {code} (log {output})"
    return run


def check_window(env: dict[str, str], twin: bool) -> None:
    """Refuse to hunt on the compiled window when it is not built: its tests would skip."""
    if twin:
        return
    probe = subprocess.run(
        [sys.executable, "-c", "import recovery._window"], cwd=REPO, env=env,
        capture_output=True, text=True,
    )
    if probe.returncode != 0:
        sys.exit("flake_hunt: the compiled window is not built (pip install -e .), "
                 "or pass --twin")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="pytest runs (default 10)")
    parser.add_argument("--twin", action="store_true",
                        help="test the pure-Python window (RECOVERY_NO_EXTENSIONS=1)")
    parser.add_argument("--busy", type=int, default=0, metavar="N",
                        help="spinning subprocesses to keep other cores busy (default 0)")
    parser.add_argument("--seed", type=int, default=None,
                        help="seed of the seeds: the same value replays the same runs")
    parser.add_argument("--run-timeout", type=float, default=900.0,
                        help="seconds after which a run counts as a hang (default 900)")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.busy < 0:
        parser.error("--runs must be >= 1 and --busy >= 0")

    env = dict(os.environ)
    env["COLUMNS"] = "250"  # pytest cuts the failure message to fit the terminal's width
    env.pop("RECOVERY_NO_EXTENSIONS", None)
    if args.twin:
        env["RECOVERY_NO_EXTENSIONS"] = "1"
    check_window(env, args.twin)
    seeds = random.Random(args.seed)
    window = "twin" if args.twin else "compiled"
    print(f"flake hunt: {args.runs} runs, {window} window, {args.busy} busy core(s)",
          flush=True)

    logs = Path(tempfile.mkdtemp(prefix="flake-hunt-"))  # kept: the logs of failed runs
    print(f"pytest output of each run: {logs}", flush=True)
    spinners = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(args.busy)]
    runs: list[Run] = []
    try:
        for index in range(1, args.runs + 1):
            seed = seeds.randrange(2**32)
            run = run_once(index, seed, env, args.pytest_args, args.run_timeout, logs)
            runs.append(run)
            verdict = run.problem or (
                f"{len(run.failures)} failed" if run.failures else f"{run.tests} passed")
            print(f"run {index:3d}/{args.runs} seed={seed:<10d} {run.seconds:6.1f} s  "
                  f"{verdict}", flush=True)
            for test_id, message in run.failures:
                print(f"    {test_id}\n      {message}", flush=True)
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()

    bad = [run for run in runs if run.failures or run.problem]
    print(f"\n{len(runs) - len(bad)} of {len(runs)} runs passed ({window} window)")
    for run in bad:
        for test_id, message in run.failures:
            print(f"FLAKE seed={run.seed} {test_id}: {message}")
            print(f"  replay: {replay_command(run.seed, args.twin)}")
        if run.problem:
            print(f"FLAKE seed={run.seed} {run.problem}")
            print(f"  replay: {replay_command(run.seed, args.twin)}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
