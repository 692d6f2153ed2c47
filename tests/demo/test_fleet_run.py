"""``python -m recovery demo --cluster URL --processes N``: the demo's workers in N
processes sharing the plugins' breakers through a real Redis.

A trip in one process is followed by the others, the numbers of every process add
up to the summary's, Ctrl-C (once or twice) ends every process, and a bad or
unreachable ``--cluster`` is one plain line. The runs are real processes on real
time: each wait is on their output, bounded. Without a Redis the fleet runs skip,
as the other cluster tests do.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from recovery import __main__ as cli
from recovery import demo
from recovery.audit import JsonlAuditLogger
from tests.demo.doubles import FakeTerminal
from tests.demo.process import COMMAND, Demo
from tests.helpers import eventually

OUTCOMES = ("calls", "ok", "errors", "fallbacks_served", "rejected", "trips", "followed")


def fleet(url: str, *args: str) -> list[str]:
    return [*COMMAND, "--cluster", url, "--processes", "3", "--workers", "2", "--seed", "7",
            *args]


def table(out: str, first: str) -> dict[str, dict[str, int]]:
    """A summary table whose header starts with ``first``: row name -> column -> number."""
    rows = {}
    lines = out[out.index(f"\n{first} ") + 1:].splitlines()
    for line in lines[1:]:
        if not line.strip():
            break
        fields = line.split()
        if fields[0] == "node":
            name, numbers = f"node {fields[1]}", fields[2:9]
        else:
            name, numbers = fields[0], fields[1:8]
        rows[name] = dict(zip(OUTCOMES, map(int, numbers), strict=True))
    return rows


def pids(out: str) -> list[int]:
    match = re.search(r"\(pids ([\d, ]+)\)", out)
    assert match, out
    return [int(pid) for pid in match.group(1).split(", ")]


def gone(pid: int) -> bool:
    """The process has ended (a zombie waiting for a reaper has ended too)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def test_a_trip_in_one_process_is_followed_by_the_others_and_every_number_adds_up(
    redis_url: str, start: Callable[..., Demo]
) -> None:
    run = start(*fleet(redis_url, "--duration", "5"))
    # flaky's first fault hits node 1; the line waits until the others followed.
    run.wait_for("flaky       node 1 tripped -> open on 3/3 nodes (the others followed",
                 timeout=90)
    out, err = run.finish(timeout=90)
    assert run.process.returncode == 0, err
    assert err == ""
    assert out.rstrip().endswith("processes left: 0\nthreads left: 0")

    plugins, nodes = table(out, "PLUGIN"), table(out, "NODE")
    assert set(plugins) == {*demo.PLUGINS, "total"}
    assert set(nodes) == {"node 1", "node 2", "node 3", "total"}
    for rows in (plugins, nodes):
        total = rows.pop("total")
        for row in rows.values():
            assert row["calls"] == row["ok"] + row["errors"] + row["fallbacks_served"]
        assert {c: sum(row[c] for row in rows.values()) for c in OUTCOMES} == total
    assert sum(row["calls"] for row in nodes.values()) == sum(
        row["calls"] for row in plugins.values())
    calls = " + ".join(str(nodes[f"node {n}"]["calls"]) for n in (1, 2, 3))
    assert f"the same total:\n  {calls} = {sum(r['calls'] for r in nodes.values())} calls.\n" in out
    # The trip was node 1's own; the two others were opened by the cluster.
    assert plugins["flaky"]["trips"] >= 1 and plugins["flaky"]["followed"] >= 2
    assert nodes["node 1"]["trips"] >= 1

    # One audit record per strategy run, over the nodes' own trails.
    audit_dir = re.search(r"audit trails: (\S+): (\d+) records? from 3 nodes", out)
    assert audit_dir, out
    records = sum(1 for name in os.listdir(audit_dir.group(1))
                  for _ in JsonlAuditLogger.read(Path(audit_dir.group(1)) / name))
    actions = sum(int(n) for n in re.findall(r" x(\d+)", out))
    assert records == int(audit_dir.group(2)) == actions > 0

    # Every process has ended, and the run's records are gone from Redis.
    assert all(gone(pid) for pid in pids(out))
    namespace = re.search(r"as (recovery-demo-[0-9a-f]+)", out)
    assert namespace, out
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        assert list(client.scan_iter(match=f"{namespace.group(1)}:*")) == []
    finally:
        client.close()


def test_ctrl_c_stops_every_process_with_the_summary(
    redis_url: str, start: Callable[..., Demo]
) -> None:
    run = start(*fleet(redis_url, "--duration", "120"))
    run.wait_for("tripped -> open on 3/3 nodes", timeout=90)
    run.interrupt()
    out, err = run.finish(timeout=60)
    assert run.process.returncode == 0, err
    assert "Ctrl-C: stopping" in out and "interrupted after" in out
    assert out.rstrip().endswith("processes left: 0\nthreads left: 0")
    assert all(gone(pid) for pid in pids(out))


def test_a_second_ctrl_c_ends_every_process_at_once(
    redis_url: str, start: Callable[..., Demo]
) -> None:
    run = start(*fleet(redis_url, "--duration", "120"))
    run.wait_for("tripped -> open on 3/3 nodes", timeout=90)
    run.interrupt()
    run.wait_for("Ctrl-C: stopping")
    run.interrupt()
    out, err = run.finish(timeout=60)
    assert "Traceback" not in out + err
    if run.process.returncode == 0:  # the nodes were all done before the second
        assert out.rstrip().endswith("processes left: 0\nthreads left: 0")
    else:
        assert run.process.returncode == demo.EXIT_INTERRUPTED
        assert err.count("\n") == 1 and "quit at once, the nodes killed" in err
    assert all(gone(pid) for pid in pids(out))


def test_the_dashboard_command_it_prints_shows_this_runs_nodes(
    redis_url: str, start: Callable[..., Demo]
) -> None:
    """The run's namespace is its own, not the dashboard's default: the command printed
    names it, and pasted as it is, its page shows every node of this run."""
    run = start(*fleet(redis_url, "--duration", "120"))
    run.wait_for("to watch the fleet in a browser while the demo runs", timeout=90)
    command = shlex.split(run.wait_for(" -m recovery dashboard "))
    assert command[1:] == ["-m", "recovery", "dashboard", "--cluster", redis_url,
                           "--namespace", command[-1]]
    assert command[-1].startswith("recovery-demo-")
    board = start(*command)
    url = board.wait_for("fleet dashboard of namespace", timeout=30).split()[-1]

    def nodes() -> list[str]:
        with urllib.request.urlopen(url + "status.json", timeout=5) as page:
            return [node["id"] for node in json.load(page)["nodes"]]

    assert eventually(lambda: nodes() == ["node1", "node2", "node3"], timeout=30,
                      interval=0.2)
    board.interrupt()
    board.finish(timeout=20)
    run.interrupt()
    out, err = run.finish(timeout=60)
    assert run.process.returncode == 0, err
    assert out.rstrip().endswith("processes left: 0\nthreads left: 0")


def test_on_a_terminal_the_dashboard_command_stays_whole_above_the_live_table(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The live frame cuts its lines to the terminal's width, but not the command: cut,
    it would not run. It is shown while the run lasts, not in the final frame (the
    run's records are gone from Redis by then)."""
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.setenv("COLUMNS", "60")
    monkeypatch.setenv("LINES", "40")
    assert cli.main(["demo", "--cluster", redis_url, "--processes", "2", "--workers", "1",
                     "--duration", "1"]) == 0
    out = terminal.getvalue()
    running, final = out.split("recovery demo: the final numbers")
    command = re.search(r"\n  (\S+ -m recovery dashboard .*)\x1b\[K\n", running)
    assert command, running
    words = shlex.split(command.group(1))
    assert words[4:6] == ["--cluster", redis_url] and words[6] == "--namespace"
    assert len(command.group(1)) > 60
    assert "-m recovery dashboard" not in final
