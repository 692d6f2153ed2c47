"""Plain helpers shared by the tests: bounded polling, and factories that clean up after."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


def eventually(
    predicate: Callable[[], Any],
    timeout: float = 5.0,
    message: str = "condition not reached",
    interval: float = 0.002,
) -> Any:
    """Poll ``predicate()`` until it is truthy and return its value; fail with ``message``
    once ``timeout`` seconds have passed (never a fixed sleep, always bounded)."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, message
        time.sleep(interval)  # poll-until-deadline
    return value


def closed_after(
    build: Callable[..., T], close: Callable[[T], None], start: Callable[[T], Any] | None = None
) -> Iterator[Callable[..., T]]:
    """For a fixture to ``yield from``: a factory calling ``build`` (then ``start``, once the
    result is kept), and ``close`` on everything it made once the test is done."""
    made: list[T] = []

    def make(*args: Any, **kwargs: Any) -> T:
        item = build(*args, **kwargs)
        made.append(item)
        if start is not None:
            start(item)
        return item

    yield make
    for item in made:
        close(item)


def fresh_namespace(redis_url: str, prefix: str) -> Iterator[str]:
    """For a fixture to ``yield from``: a new Redis namespace, its keys dropped after."""
    from tests.redis_server import drop_namespace

    name = f"{prefix}{uuid.uuid4().hex[:10]}"
    yield name
    drop_namespace(redis_url, name)


def node_processes(redis_url: str, namespace: str) -> Iterator[Callable[..., list[Any]]]:
    """For a fixture to ``yield from``: ``nodes(n, **cluster_options)`` -> n spawned
    processes, each a started cluster node; all closed after."""
    from tests.test_cluster_procs import CONFIG, Node

    made: list[Node] = []

    def make(n: int, **options: Any) -> list[Node]:
        new = [Node(redis_url, namespace, CONFIG, options, ()) for _ in range(n)]
        made.extend(new)
        return new

    yield make
    for node in made:
        node.close()


def kill_if_running(process: subprocess.Popen[Any]) -> None:
    if process.poll() is None:
        process.kill()
        process.wait()


def started_managers(build: Callable[..., Any]) -> Iterator[Callable[..., Any]]:
    """For a fixture to ``yield from``: each manager ``build`` returns is started, and
    stopped (5 s timeout) at the end of the test."""
    yield from closed_after(build, lambda rm: rm.stop(timeout=5.0), start=lambda rm: rm.start())
