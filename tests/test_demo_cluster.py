"""``python -m recovery demo --cluster URL --processes N``: the demo's workers in N
processes sharing the plugins' breakers through a real Redis.

A trip in one process is followed by the others, the numbers of every process add
up to the summary's, Ctrl-C (once or twice) ends every process, and a bad or
unreachable ``--cluster`` is one plain line. The runs are real processes on real
time: each wait is on their output, bounded. Without a Redis the fleet runs skip,
as the other cluster tests do.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from recovery import __main__ as cli
from recovery import demo
from recovery._demo_fleet import (
    DEFAULT_PROCESSES,
    FAULT_NODES,
    FOLLOW_SPAN,
    FleetView,
    faults_of,
    opening,
)
from recovery.audit import JsonlAuditLogger
from recovery.testing.plugins import FlakyPlugin
from tests.helpers import closed_after, kill_if_running
from tests.redis_server import _free_port
from tests.test_demo import COMMAND, Demo


@pytest.fixture
def start() -> Iterator[Callable[..., Demo]]:
    """``start(*command)``: a Demo, killed at the end of the test if it is still running
    (its nodes then see their pipe close, and end)."""
    yield from closed_after(Demo, lambda run: kill_if_running(run.process))


OUTCOMES = ("calls", "ok", "failed", "rejected", "fallback", "trips", "followed")


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
            assert row["calls"] == row["ok"] + row["failed"] + row["rejected"] + row["fallback"]
        assert {c: sum(row[c] for row in rows.values()) for c in OUTCOMES} == total
    assert sum(row["calls"] for row in nodes.values()) == sum(
        row["calls"] for row in plugins.values())
    calls = " + ".join(str(nodes[f"node {n}"]["calls"]) for n in (1, 2, 3))
    assert f"the same total: {calls} = {sum(r['calls'] for r in nodes.values())} calls." in out
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


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--processes", "3"], "--processes needs --cluster URL"),
        (["--processes", "0"], "--processes: must be from 1 to 16, got '0'"),
        (["--cluster", "http://x", "--processes", "2"], "--cluster: url must start with redis://"),
        (["--cluster", "redis://127.0.0.1:1/0", "--json"],
         "--json is not available with --cluster"),
        (["--cluster", "redis://127.0.0.1:1/0", "--audit", "a.jsonl"],
         "--audit is not available with --cluster"),
    ],
)
def test_a_bad_fleet_argument_is_one_plain_line(
    args: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("redis")
    try:
        code = cli.main(["demo", *args])
    except SystemExit as exit:  # argparse's way out
        code = exit.code  # type: ignore[assignment]
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("recovery demo: error: ")
    assert says in err


def test_an_unreachable_redis_is_one_plain_line(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("redis")
    url = f"redis://:hunter2@127.0.0.1:{_free_port()}/0"  # nobody listens there
    assert cli.main(["demo", "--cluster", url]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith(
        f"recovery demo: error: --cluster: cannot reach Redis at {url.replace(':hunter2@', '')}: "
    )
    assert "hunter2" not in err


def test_each_fault_hits_one_node_and_every_fault_is_somewhere() -> None:
    plugins = {name: FlakyPlugin(name) for name in demo.PLUGINS}
    faults = demo._timeline(plugins, 10.0)
    assert len(faults) == len(FAULT_NODES)
    for processes in (1, 2, 3, DEFAULT_PROCESSES, 16):
        hits = [faults_of(node, processes, faults) for node in range(1, processes + 1)]
        assert sorted(f.at for node in hits for f in node) == [f.at for f in faults]
    # slow's end is on the node where slow began, so that it ends there.
    slow = [node for node in range(1, 4)
            if any(f.plugin == "slow" for f in faults_of(node, 3, faults))]
    assert slow == [3]


class Said(demo._Reporter):
    def __init__(self) -> None:
        super().__init__(io.StringIO(), 0.0)
        self.lines: list[str] = []

    def event(self, plugin: str, text: str) -> None:
        self.lines.append(f"{plugin}: {text}")


def test_a_trip_is_one_line_once_every_node_followed_or_after_a_second() -> None:
    said = Said()
    view = FleetView(3, said)
    view.take(("move", 2, "flaky", "closed", "open", False, 10.0), 0.0)
    view.take(("move", 1, "flaky", "closed", "open", True, 10.002), 0.0)
    view.expire(10.5)
    assert said.lines == []  # node 3 has not followed yet
    view.take(("move", 3, "flaky", "closed", "open", True, 10.003), 0.0)
    assert said.lines == [
        "flaky: node 2 tripped -> open on 3/3 nodes (the others followed within 3.0 ms)"]
    # The fleet's close: node 2's trial passed, the cluster closed the two others.
    view.take(("move", 1, "flaky", "open", "closed", True, 11.0), 0.0)
    view.take(("move", 2, "flaky", "half_open", "closed", False, 11.0), 0.0)
    assert len(said.lines) == 1  # node 3 is still open
    view.take(("move", 3, "flaky", "open", "closed", True, 11.0), 0.0)
    assert said.lines[1:] == ["flaky: closed on 3/3 nodes (node 2's trial passed)"]
    # A node repairing does not follow: the line comes after FOLLOW_SPAN, saying so.
    view.take(("move", 2, "slow", "closed", "repairing", False, 19.0), 0.0)
    view.take(("move", 3, "slow", "closed", "open", False, 20.0), 0.0)
    view.take(("move", 1, "slow", "closed", "open", True, 20.002), 0.0)
    view.expire(20.0 + FOLLOW_SPAN / 2)
    assert len(said.lines) == 2
    view.expire(20.0 + FOLLOW_SPAN)
    assert said.lines[2:] == [
        "slow: node 3 tripped -> open on 2/3 nodes (followed within 2.0 ms; node 2 repairing)"]
    assert view.trips == {"flaky": 1, "slow": 1}
    assert view.followed == {"flaky": 2, "slow": 1}


@pytest.mark.parametrize(
    ("old", "by_cluster", "kind"),
    [("closed", False, "trip"), ("half_open", False, "trip"), ("closed", True, "follow"),
     ("half_open", True, None), ("repairing", False, None), ("repairing", True, None)],
)
def test_what_counts_as_a_trip_and_as_following(
    old: str, by_cluster: bool, kind: str | None
) -> None:
    assert opening(old, "open", by_cluster) == kind
    assert opening(old, "closed", by_cluster) is None
