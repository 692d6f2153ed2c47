"""Which summaries the fleet page believes: a node's run, its sequence, and the drops.

The rule (recovery/dashboard/fleet.py): from the run shown, a summary is accepted
only with a higher seq, and no further ahead than one a second since the last
one plus a small slack; another run of the same node id replaces the shown one
only after that one has been quiet a few seconds, and only with a later time.
Every summary is accepted or dropped with a reason. The rule is tested on a
FakeClock, feeding the feed directly; one test does it end to end on Redis.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from recovery.cluster.summary import channel, encode_summary
from recovery.testing import FakeClock
from tests.dashboard.test_fleet import entry, node_view, soon, status
from tests.helpers import closed_after, fresh_namespace

try:
    import redis

    from recovery.cluster import Cluster
    from recovery.dashboard import serve_fleet
    from recovery.dashboard.fleet import RUN_QUIET, SEQ_SLACK, FleetFeed
    from recovery.dashboard.hub import Hub
except ImportError:  # the redis_url fixture skips (or fails) with the reason
    pass


class Fleet:
    """A FleetFeed on a FakeClock, not started: summaries go straight to it."""

    def __init__(self, clock: FakeClock) -> None:
        # Never dialled: nothing is started, and the summaries come through receive().
        self.feed = FleetFeed("redis://127.0.0.1:1/0", "trust", None, Hub(), clock=clock,
                              fade_after=5.0, forget_after=60.0)
        self.sent = 0

    def receive(self, node: str = "n1", seq: int = 1, *, host: str = "h", pid: int = 1,
                time: float | None = None, state: str = "closed") -> None:
        head = {"node": node, "host": host, "pid": pid, "seq": seq,
                "time": float(seq) if time is None else time}
        self.feed._receive(encode_summary(head, [entry("payments", state)], None))
        self.sent += 1

    def view(self) -> dict[str, Any]:
        self.feed._tick()
        return self.feed.snapshot()

    def node(self, node_id: str = "n1") -> dict[str, Any]:
        return next(n for n in self.view()["nodes"] if n["id"] == node_id)

    def dropped(self) -> dict[str, int]:
        redis_view = self.view()["redis"]
        # Every summary is accepted or dropped with its reason: the two add up.
        assert redis_view["received"] + sum(redis_view["dropped"].values()) == self.sent
        return dict(redis_view["dropped"])


@pytest.fixture
def fleet(clock: FakeClock) -> Iterator[Fleet]:
    pytest.importorskip("redis")
    built = Fleet(clock)
    yield built
    built.feed.stop(1.0)


def publishing(fleet: Fleet, clock: FakeClock, seqs: range, **head: Any) -> None:
    """The real node: one summary a second."""
    for seq in seqs:
        clock.advance(1.0)
        fleet.receive(seq=seq, **head)


def test_one_forged_summary_with_a_huge_seq_is_dropped_and_the_node_keeps_publishing(
    fleet: Fleet, clock: FakeClock
) -> None:
    publishing(fleet, clock, range(1, 4))
    fleet.receive(seq=10**12, time=1e12, state="open")  # same id, host and pid: a forgery
    publishing(fleet, clock, range(4, 12))  # eight seconds: past the fade
    node = fleet.node()
    assert node["silent"] is False and node["breakers"][0]["state"] == "closed"
    assert fleet.dropped() == {"seq_jump": 1}
    assert fleet.view()["redis"]["received"] == 11


def test_a_forged_summary_within_the_slack_holds_the_node_back_only_that_long(
    fleet: Fleet, clock: FakeClock
) -> None:
    publishing(fleet, clock, range(1, 4))
    fleet.receive(seq=3 + SEQ_SLACK + 1, state="open")  # too far at once
    fleet.receive(seq=3 + SEQ_SLACK, state="open")  # as far as a forger gets
    assert fleet.node()["breakers"][0]["state"] == "open"
    publishing(fleet, clock, range(4, 10))
    assert fleet.dropped() == {"seq_jump": 1, "stale": SEQ_SLACK}  # seqs 4 .. 3+SLACK
    assert fleet.node()["breakers"][0]["state"] == "closed" and not fleet.node()["silent"]


def test_after_a_gap_the_seq_may_jump_by_the_time_that_passed(
    fleet: Fleet, clock: FakeClock
) -> None:
    publishing(fleet, clock, range(1, 3))
    clock.advance(30.0)  # this page lost Redis for half a minute; the node went on
    fleet.receive(seq=2 + 31)
    assert fleet.dropped() == {}
    clock.advance(1.0)
    fleet.receive(seq=2 + 31 + 1 + SEQ_SLACK + 1)  # but not further than time allows
    assert fleet.dropped() == {"seq_jump": 1}


def test_repeats_and_replays_are_stale(fleet: Fleet, clock: FakeClock) -> None:
    publishing(fleet, clock, range(1, 6))
    fleet.receive(seq=5)
    fleet.receive(seq=2, state="open")  # an old summary replayed
    assert fleet.dropped() == {"stale": 2}
    assert fleet.node()["breakers"][0]["state"] == "closed"


def test_another_process_under_a_live_node_s_id_cannot_displace_it(
    fleet: Fleet, clock: FakeClock
) -> None:
    publishing(fleet, clock, range(1, 4))
    for seq in (1, 10**9):
        fleet.receive(seq=seq, pid=666, time=1e12, state="open")
    publishing(fleet, clock, range(4, 12))
    assert fleet.dropped() == {"other_run": 2}
    assert fleet.node()["pid"] == 1 and not fleet.node()["silent"]


@pytest.mark.parametrize("pid", [2, 1])  # a new process; a container's pid 1 again
def test_a_restarted_node_takes_over_once_its_old_run_is_quiet(
    fleet: Fleet, clock: FakeClock, pid: int
) -> None:
    publishing(fleet, clock, range(1, 11), time=None)
    clock.advance(1.0)
    fleet.receive(seq=1, pid=pid, time=100.0)  # too soon: the old run may still be live
    clock.advance(RUN_QUIET)
    fleet.receive(seq=2, pid=pid, time=101.0, state="open")
    assert fleet.node()["pid"] == pid
    assert fleet.node()["breakers"][0]["state"] == "open"
    assert fleet.dropped() == {"other_run": 1}
    texts = [e["text"] for e in fleet.view()["timeline"]]
    assert f"restarted (h, pid {pid})" in texts
    fleet.receive(seq=1, pid=1, time=1.0)  # the old run's first summary, replayed: older
    assert fleet.dropped() == {"other_run": 1, "stale": 1}


@pytest.fixture
def namespace(redis_url: str) -> Iterator[str]:
    yield from fresh_namespace(redis_url, "t")


@pytest.fixture
def boards() -> Iterator[Any]:
    yield from closed_after(serve_fleet, lambda board: board.stop())


def test_end_to_end_a_forged_summary_cannot_silence_a_live_node(
    redis_url: str, boards: Any, namespace: str
) -> None:
    board = boards(redis_url, namespace, fade_after=1.5, forget_after=30.0)
    client = redis.Redis.from_url(redis_url)
    try:
        with Cluster(redis_url, namespace=namespace, node_id="honest"):
            node = soon(lambda: node_view(board, "honest"), "the honest node listed")
            head = {"node": "honest", "host": node["host"], "pid": node["pid"],
                    "seq": 10**12, "time": time.time() + 1e6}
            client.publish(channel(namespace),
                           encode_summary(head, [entry("payments", "open")], None))
            soon(lambda: status(board)["redis"]["dropped"] == {"seq_jump": 1},
                 "the forgery dropped and counted")
            received = status(board)["redis"]["received"]
            # Past the fade, the real node is still heard: its summaries are taken.
            soon(lambda: status(board)["redis"]["received"] >= received + 3,
                 "the honest node's next summaries accepted")
            view = node_view(board, "honest")
            assert view is not None and view["silent"] is False
    finally:
        client.close()
