"""The cluster across real processes: multiprocessing with spawn, and a real os.fork().

Each node is a separate Python process (tests/cluster/node_process.py) with its own
breaker, connection and threads, driven over a pipe. Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.cluster import node_process
from tests.helpers import eventually
from tests.redis_server import drop_namespace

BOUND = 15.0  # seconds for any cross-process effect (it takes milliseconds)
CONFIG = {"failure_threshold": 3, "minimum_requests": 3, "sliding_window_size": 10,
          "timeout": 30.0}
_SPAWN = multiprocessing.get_context("spawn")


class Node:
    """One spawned fleet node and the pipe that drives it."""

    def __init__(self, url: str, namespace: str, config: dict[str, Any],
                 options: dict[str, Any], shared: tuple[Any, ...]) -> None:
        self._conn, child = _SPAWN.Pipe()
        self.process = _SPAWN.Process(
            target=node_process.run_node,
            args=(child, url, namespace, config, options, *shared), daemon=True,
        )
        self.process.start()
        assert self.ask("wait_connected", BOUND), "node did not connect to Redis"

    def ask(self, *command: Any) -> Any:
        self._conn.send(command)
        deadline = time.monotonic() + BOUND + 5
        while not self._conn.poll(0.05):
            assert self.process.is_alive(), f"node died on {command!r}"
            assert time.monotonic() < deadline, f"node did not answer {command!r}"
        return self._conn.recv()

    def close(self) -> None:
        if self.process.is_alive():
            with contextlib.suppress(OSError, AssertionError):
                self.ask("stop")
        self.process.join(10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(10)


@pytest.fixture
def fleet(redis_url: str) -> Iterator[Callable[..., list[Node]]]:
    """``fleet(n, config=..., shared=..., **cluster_options)`` -> n started nodes."""
    namespace = f"t{uuid.uuid4().hex[:10]}"
    nodes: list[Node] = []

    def make(n: int, config: dict[str, Any] | None = None, shared: tuple[Any, ...] = (),
             **options: Any) -> list[Node]:
        made = [Node(redis_url, namespace, config or CONFIG, options, shared)
                for _ in range(n)]
        nodes.extend(made)
        return made

    yield make
    for node in nodes:
        node.close()
    drop_namespace(redis_url, namespace)


def test_four_processes_share_a_breaker(fleet: Any) -> None:
    nodes = fleet(4)
    assert nodes[0].ask("trip") == "open"
    tripper = nodes[0].ask("node_id")
    for node in nodes[1:]:
        assert node.ask("wait_state", "open", BOUND)
        outcome, retry_after = node.ask("call")
        assert outcome == "rejected" and retry_after > 20
        assert node.ask("metrics")["opened_by"] == tripper


def test_a_late_joiner_starts_open(fleet: Any) -> None:
    (first,) = fleet(1)
    first.ask("trip")
    (late,) = fleet(1)  # connected means subscribed, then records read
    assert late.ask("state") == "open"
    outcome, retry_after = late.ask("call")
    assert outcome == "rejected" and 20 < retry_after <= 31


def test_exactly_the_trial_permits_run_fleet_wide(fleet: Any) -> None:
    admitted, release = _SPAWN.Value("i", 0), _SPAWN.Event()
    config = {**CONFIG, "timeout": 1.0, "half_open_max_calls": 2, "success_threshold": 2}
    nodes = fleet(4, config=config, shared=(admitted, release))
    nodes[0].ask("trip")
    for node in nodes:
        assert node.ask("wait_state", "open", BOUND)
    for node in nodes:
        node.ask("callers", 4)  # 4 processes x 4 threads call from now on
    try:
        deadline = time.monotonic() + BOUND
        while admitted.value < 2:
            assert time.monotonic() < deadline, "no trial was admitted"
            time.sleep(0.005)
        # The trials hold their permits; for longer than the hold margin and a lease
        # renewal, nobody else in the fleet is let through.
        watch_until = time.monotonic() + 2.5
        while time.monotonic() < watch_until:
            assert admitted.value == 2
            time.sleep(0.01)
        states = [node.ask("state") for node in nodes]
        assert sorted(states) == ["half_open", "open", "open", "open"]
    finally:
        release.set()
    for node in nodes:  # both trials succeed: success closes every process
        assert node.ask("wait_state", "closed", BOUND)
    for node in nodes:
        node.ask("stop_callers")


def test_quorum_two(fleet: Any, redis_url: str) -> None:
    import redis

    nodes = fleet(3, quorum=2, quorum_window=60.0)
    namespace = nodes[0].ask("status")["namespace"]
    nodes[0].ask("trip")
    client = redis.Redis.from_url(redis_url)
    votes = f"{namespace}:breaker:{node_process.BREAKER}:votes"
    deadline = time.monotonic() + BOUND
    while client.zcard(votes) < 1:  # the vote is in, and it opened nobody else
        assert time.monotonic() < deadline
        time.sleep(0.002)
    client.close()
    assert [node.ask("state") for node in nodes] == ["open", "closed", "closed"]
    nodes[1].ask("trip")  # a second node's trip opens the fleet
    assert nodes[2].ask("wait_state", "open", BOUND)
    assert nodes[0].ask("state") == "open"


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fork with threads: that is the case
def test_a_forked_child_gets_its_own_connection_and_subscriber(redis_url: str) -> None:
    from recovery import CircuitBreaker, CircuitBreakerConfig
    from recovery.cluster import Cluster
    from tests.cluster.helpers import cluster_threads

    namespace = f"t{uuid.uuid4().hex[:10]}"
    cb = CircuitBreaker(node_process.BREAKER, CircuitBreakerConfig(**CONFIG))
    cluster = Cluster(redis_url, namespace=namespace)
    cluster.attach(cb)
    cluster.start()
    try:
        eventually(lambda: cluster.status()["connected"], BOUND)
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: gunicorn's preloaded worker
            code = 1
            try:
                os.close(read_end)
                eventually(lambda: cluster.status()["connected"], BOUND)
                node_process.trip(cb)
                eventually(lambda: cluster.status()["events_published"] == 1, BOUND)
                report = {"node_id": cluster.node_id, "threads": len(cluster_threads(cluster))}
                os.write(write_end, json.dumps(report).encode())
                code = 0
            finally:
                os._exit(code)  # private: os._exit is how a forked child exits
        os.close(write_end)
        with os.fdopen(read_end) as reader:
            report = json.loads(reader.read() or "{}")
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert report["node_id"] != cluster.node_id and report["threads"] == 3
        # The child's trip reached the parent.
        eventually(lambda: cb.state.value == "open", BOUND)
        assert cb.metrics().opened_by == report["node_id"]
    finally:
        cluster.stop()
        drop_namespace(redis_url, namespace)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fork with threads: that is the case
def test_a_preloading_parent_is_not_a_serving_node(redis_url: str) -> None:
    """gunicorn --preload: the parent starts the cluster and forks the workers; it serves
    no calls, so only the workers publish summaries, until the parent serves one."""
    import redis

    from recovery import CircuitBreaker, CircuitBreakerConfig
    from recovery.cluster import Cluster
    from recovery.cluster.summary import channel, decode_summary

    namespace = f"t{uuid.uuid4().hex[:10]}"
    cb = CircuitBreaker(node_process.BREAKER, CircuitBreakerConfig(**CONFIG))
    cluster = Cluster(redis_url, namespace=namespace)
    cluster.attach(cb)
    cluster.start()
    client = redis.Redis.from_url(redis_url)
    pubsub = client.pubsub()
    try:
        eventually(lambda: cluster.status()["connected"], BOUND)
        assert cluster.serving()
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: a preloaded worker that serves calls until told to stop
            try:
                os.close(write_end)
                cb.call(lambda: None)
                os.read(read_end, 1)  # the parent closes its end when done
            finally:
                os._exit(0)  # private: os._exit is how a forked child exits
        os.close(read_end)
        try:
            assert not cluster.serving()
            pubsub.subscribe(channel(namespace))
            seen: list[str] = []

            def listen() -> list[str]:  # the nodes heard so far, after one more look
                message = pubsub.get_message(timeout=0.2)
                if message is not None and message["type"] == "message":
                    seen.append(decode_summary(message["data"], None)["node"])
                return seen

            eventually(lambda: any(n != cluster.node_id for n in listen()), BOUND)
            child = next(n for n in seen if n != cluster.node_id)
            seen.clear()  # from here on, two of the child's seconds
            eventually(lambda: listen().count(child) >= 2, BOUND)
            assert cluster.node_id not in seen  # the parent stayed quiet
            cb.call(lambda: None)  # the parent serves a call: it is a node again
            eventually(lambda: cluster.node_id in listen(), BOUND)
        finally:
            os.close(write_end)
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0
    finally:
        pubsub.close()
        client.close()
        cluster.stop()
        drop_namespace(redis_url, namespace)


_PRELOADED_APP = '''
import os

from recovery import CircuitBreaker
from recovery.cluster import Cluster

cluster = Cluster(os.environ["TEST_REDIS_URL"], namespace=os.environ["TEST_NAMESPACE"])
payments = CircuitBreaker("payments")
cluster.attach(payments)
cluster.start()  # in the master, at import: gunicorn --preload forks the workers after


def wsgi(environ, start_response):
    body = payments.call(lambda: str(os.getpid()).encode())
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]
'''


def test_under_gunicorn_preload_only_the_workers_are_nodes(
    redis_url: str, tmp_path: Any
) -> None:
    pytest.importorskip("gunicorn")
    import socket
    import subprocess
    import sys
    import urllib.request

    import redis

    from recovery.cluster.summary import channel, decode_summary

    namespace = f"t{uuid.uuid4().hex[:10]}"
    (tmp_path / "preloaded.py").write_text(_PRELOADED_APP)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "TEST_REDIS_URL": redis_url, "TEST_NAMESPACE": namespace,
           "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    client = redis.Redis.from_url(redis_url)
    pubsub = client.pubsub()
    pubsub.subscribe(channel(namespace))
    from gunicorn.config import KNOWN_SETTINGS

    # Newer releases open a control socket in the home directory: not ours to touch.
    private = (["--no-control-socket"] if any(s.name == "control_socket_disable"
                                              for s in KNOWN_SETTINGS) else [])
    master = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--preload", "--workers", "2", *private,
         "--bind", f"127.0.0.1:{port}", "preloaded:wsgi"],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        def served() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as reply:
                    return reply.status == 200
            except OSError:
                return False

        eventually(served, BOUND)
        pids: list[int] = []

        def nodes_heard_twice() -> int:  # after one more look
            message = pubsub.get_message(timeout=0.2)
            if message is not None and message["type"] == "message":
                pids.append(decode_summary(message["data"], None)["pid"])
            return sum(pids.count(pid) >= 2 for pid in set(pids))

        # Both workers publish (a second each); the master, which only forked, does not.
        eventually(lambda: nodes_heard_twice() >= 2, BOUND)
        assert master.pid not in pids
        assert len(set(pids)) == 2
    finally:
        master.terminate()
        try:
            master.wait(15)
        except subprocess.TimeoutExpired:
            master.kill()
            master.wait(10)
        pubsub.close()
        client.close()
        drop_namespace(redis_url, namespace)
