"""What the tune tests share: tiny hand-made traces, and the command line run in-process."""

from __future__ import annotations

import argparse
from pathlib import Path

from recovery import tune
from recovery.trace import Trace

CL, OP, HO = 0, 1, 2  # closed, open, half-open: state codes after each event


def hand_trace(healthy: list[int] | None, latency: list[float] | None = None) -> Trace:
    """Events one second apart from t=0, all ok; latencies 0.25 s unless given."""
    n = len(healthy) if healthy is not None else len(latency or [])
    latencies = latency or [0.25] * n
    if healthy is None:
        return Trace.from_rows([(float(i), 1, latencies[i]) for i in range(n)])
    return Trace.from_rows([(float(i), 1, latencies[i], healthy[i]) for i in range(n)])


def outage_then_recovery() -> Trace:
    """Six failing calls (dead dependency) then ten good ones, one per second, 0.1 s each."""
    rows = [(float(i), 0, 0.1, 0) for i in range(6)]
    rows += [(float(i), 1, 0.1, 1) for i in range(6, 16)]
    return Trace.from_rows(rows)


def outcomes(t: list[float], ok: list[int], healthy: list[int] | None = None) -> Trace:
    if healthy is None:
        return Trace.from_rows([(t[i], ok[i], 0.5) for i in range(len(t))])
    return Trace.from_rows([(t[i], ok[i], 0.5, healthy[i]) for i in range(len(t))])


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
