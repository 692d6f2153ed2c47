"""A fleet node for the multi-process cluster tests: one process, one breaker, one cluster.

``run_node`` is the target of a spawned process; the test drives it over a pipe
with small commands, so each process is a real, separate Python with its own
breaker, connection and threads.
"""

from __future__ import annotations

import contextlib
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

from recovery import CircuitBreaker, CircuitBreakerConfig, CircuitOpenError
from recovery.cluster import Cluster

BREAKER = "payments"


def _wait_state(cb: CircuitBreaker, state: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while cb.state.value != state:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)  # poll-until-deadline on another process's decision
    return True


def _fail() -> None:
    raise ConnectionError("dependency down")


def trip(cb: CircuitBreaker) -> None:
    """Fail calls until this breaker opens by itself."""
    while cb.state.value == "closed":
        with contextlib.suppress(ConnectionError, CircuitOpenError):
            cb.call(_fail)


class TrialCallers:
    """``threads`` threads calling the breaker; each admitted call bumps ``admitted``
    and waits for ``release`` (a multiprocessing Event) before it succeeds."""

    def __init__(self, cb: CircuitBreaker, threads: int, admitted: Any, release: Any) -> None:
        self._stop = threading.Event()
        self._cb, self._admitted, self._release = cb, admitted, release
        self._threads = [threading.Thread(target=self._loop) for _ in range(threads)]
        for thread in self._threads:
            thread.start()

    def _dependency(self) -> None:
        with self._admitted.get_lock():
            self._admitted.value += 1
        self._release.wait(30)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._cb.call(self._dependency)
            except CircuitOpenError:
                self._stop.wait(0.002)  # a rejected caller backs off, as a client would

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)


def run_node(conn: Connection, url: str, namespace: str, config: dict[str, Any],
             cluster_options: dict[str, Any], admitted: Any = None, release: Any = None) -> None:
    cb = CircuitBreaker(BREAKER, CircuitBreakerConfig(**config))
    cluster = Cluster(url, namespace=namespace, **cluster_options)
    cluster.attach(cb)
    cluster.start()
    callers: TrialCallers | None = None
    try:
        while True:
            command, *args = conn.recv()
            if command == "stop":
                conn.send(None)
                return
            if command == "trip":
                trip(cb)
                conn.send(cb.state.value)
            elif command == "state":
                conn.send(cb.state.value)
            elif command == "wait_state":
                conn.send(_wait_state(cb, *args))
            elif command == "wait_connected":
                deadline = time.monotonic() + args[0]
                while not cluster.status()["connected"] and time.monotonic() < deadline:
                    time.sleep(0.002)
                conn.send(cluster.status()["connected"])
            elif command == "metrics":
                conn.send(cb.metrics().to_dict())
            elif command == "node_id":
                conn.send(cluster.node_id)
            elif command == "status":
                conn.send(cluster.status())
            elif command == "callers":
                callers = TrialCallers(cb, args[0], admitted, release)
                conn.send(None)
            elif command == "stop_callers":
                assert callers is not None
                callers.stop()
                conn.send(None)
            elif command == "call":
                try:
                    cb.call(lambda: None)
                    conn.send(("ok", None))
                except CircuitOpenError as exc:
                    conn.send(("rejected", exc.retry_after))
    finally:
        if callers is not None:
            callers.stop()
        cluster.stop()
