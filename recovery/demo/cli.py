"""Watch a recovery manager keep a simulated service up for a few seconds (no setup).

Five simulated plugins (FlakyPlugin, also in recovery.testing) run behind a RecoveryManager
with health checking, called by a thread pool of workers through
execute_with_recovery:

  steady       always fine: the control group
  flaky        starts failing every call; its breaker trips and it is restarted
               (later it needs two restarts in a row)
  slow         turns slow, so its callers time out; it is degraded and served
               from its fallback until it is fast again
  hung-check   its health check hangs; the check times out, and the plugin is
               restarted (which ends the hang)
  crashy       crashes in initialize at boot; restarted with back-off until it
               comes up

On a terminal a table refreshes in place; otherwise (or piped) one line is printed
per breaker state change, recovery action, alert and scripted fault. It ends by
itself after --duration seconds, then prints a summary, the JSONL audit trail's
path (JsonlAuditLogger.read reads it), and "threads left: 0" once every thread it
started has been joined.

Every number can be checked against another. Each call is counted once, by what
its caller got: CALLS = OK + ERRORS + FALLBACK SERVED, live and in the summary.
REJECTED is the breaker's count of the calls it refused (served by the fallback or
not), the number the dashboard shows as "rejected". Time in each breaker state
comes from the breakers' transition listeners, so a state held for a microsecond
still shows, and a plugin's times add up to the run's.

Ctrl-C stops it early, cleanly, with the summary (exit status 0: the run did what
it was asked); a second Ctrl-C quits at once with a one-line note (exit status 130).
--json shows no table or event lines: it prints one JSON document on stdout, the
summary's numbers under "run" and the final get_recovery_status() under "status",
and the summary on stderr.
"""

from __future__ import annotations

import argparse
import math
import random

from recovery.demo.fleet import run_fleet
from recovery.demo.local import run_local
from recovery.demo.output import usage_error

MAX_WORKERS = 64
"""More workers than this only measure the machine's scheduler."""
MAX_PROCESSES = 16
"""More nodes than this do not fit the fleet view's NODES column."""
DEFAULT_PROCESSES = 4


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(
            f"must be a finite number of seconds > 0, got {text!r}"
        )
    return value


def _whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def _worker_count(text: str) -> int:
    value = _whole_number(text)
    if not 1 <= value <= MAX_WORKERS:
        raise argparse.ArgumentTypeError(f"must be from 1 to {MAX_WORKERS}, got {text!r}")
    return value


def _process_count(text: str) -> int:
    value = _whole_number(text)
    if not 1 <= value <= MAX_PROCESSES:
        raise argparse.ArgumentTypeError(f"must be from 1 to {MAX_PROCESSES}, got {text!r}")
    return value


def _port(text: str) -> int:
    value = _whole_number(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port within 0..65535, got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--duration", type=_seconds, default=15.0, metavar="SECONDS",
                        help="how long the demo runs (default: %(default)s)")
    parser.add_argument("--seed", type=_whole_number, default=None,
                        help="seed of the random choices (which plugin each worker calls "
                             "next; default: random, and the seed used is printed)")
    parser.add_argument("--workers", type=_worker_count, default=8,
                        help=f"threads calling the plugins, 1 to {MAX_WORKERS} "
                             "(default: %(default)s)")
    parser.add_argument("--audit", metavar="PATH", default=None,
                        help="JSONL file for the audit trail (default: a new temporary "
                             "directory); appended to if it exists: only this run's "
                             "records are counted")
    parser.add_argument("--json", action="store_true",
                        help="print the run's numbers and the final get_recovery_status() "
                             "as one JSON document on stdout")
    parser.add_argument("--dashboard", type=_port, nargs="?", const=0, default=None,
                        metavar="PORT",
                        help="serve the live dashboard (recovery.dashboard) on 127.0.0.1 "
                             "while the demo runs, and print its URL (no PORT: a free one)")
    parser.add_argument("--cluster", metavar="URL", default=None,
                        help="run the workers in several processes that share the plugins' "
                             "breakers through this Redis (recovery.cluster, extra 'redis'), "
                             "e.g. redis://127.0.0.1:6379/0")
    parser.add_argument("--processes", type=_process_count, default=None,
                        help=f"with --cluster: how many processes, 1 to {MAX_PROCESSES} "
                             f"(default: {DEFAULT_PROCESSES})")


def _fleet_usage_error(args: argparse.Namespace) -> str | None:
    """What is wrong with the fleet's arguments, in one line, or None."""
    if args.cluster is None:
        return "--processes needs --cluster URL (the Redis the processes share)"
    for flag, given in (("--json", args.json), ("--dashboard", args.dashboard is not None),
                        ("--audit", args.audit is not None)):
        if given:
            return (f"{flag} is not available with --cluster (each node writes its own "
                    "audit trail, in a new temporary directory)" if flag == "--audit"
                    else f"{flag} is not available with --cluster")
    return None


def run(args: argparse.Namespace) -> int:
    """Run the demo the arguments ask for (in this process, or as a fleet); the exit status."""
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    if args.cluster is not None or args.processes is not None:
        problem = _fleet_usage_error(args)
        if problem is not None:
            return usage_error(problem)
        processes = args.processes if args.processes is not None else DEFAULT_PROCESSES
        return run_fleet(args.cluster, processes, args.workers, args.duration, seed)
    return run_local(args.duration, seed, args.workers, args.audit, args.json, args.dashboard)
