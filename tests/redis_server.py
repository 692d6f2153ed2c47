"""A real Redis for the cluster tests.

``redis_url`` (session): ``RECOVERY_TEST_REDIS_URL`` if set, else a private
``redis-server`` on a free loopback port, without persistence, in its own temp
dir, stopped at the end. ``own_redis`` (per test): always a private server that
the test may ``kill()``, ``restart()``, ``pause()`` and ``resume()``. Without a server
binary (or redis-py) the tests skip with one reason; ``RECOVERY_REQUIRE_REDIS=1`` turns
that skip into a failure, so CI cannot pass without having run them.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

SKIP_REASON = (
    "cluster tests need redis-py and a redis-server binary on PATH "
    "(or RECOVERY_TEST_REDIS_URL pointing at a server)"
)


def _unavailable(reason: str = SKIP_REASON) -> None:
    if os.environ.get("RECOVERY_REQUIRE_REDIS") == "1":
        pytest.fail(f"RECOVERY_REQUIRE_REDIS=1 but {reason}")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """One redis-server process on a fixed port, which can be killed and started again."""

    def __init__(self, binary: str) -> None:
        self._binary = binary
        self._dir = tempfile.mkdtemp(prefix="recovery-redis-")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> None:
        self._proc = subprocess.Popen(
            [self._binary, "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", self._dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if self._proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.01)  # poll-until-deadline: the server gives no readiness signal

    def kill(self) -> None:
        if self._proc is not None:
            self._proc.send_signal(signal.SIGCONT)  # a paused server dies as well
            self._proc.kill()
            self._proc.wait(10)
            self._proc = None

    def pause(self) -> None:
        """SIGSTOP: the server keeps its connections but answers nothing (a silent Redis)."""
        assert self._proc is not None
        self._proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        assert self._proc is not None
        self._proc.send_signal(signal.SIGCONT)

    def restart(self) -> None:
        self.kill()
        self.start()

    def close(self) -> None:
        self.kill()
        shutil.rmtree(Path(self._dir), ignore_errors=True)


def _server() -> Iterator[RedisServer]:
    try:
        import redis  # noqa: F401
    except ImportError:
        _unavailable()
    binary = shutil.which("redis-server")
    if binary is None:
        _unavailable()
    assert binary is not None
    server = RedisServer(binary)
    try:
        server.start()
        yield server
    finally:
        server.close()


def serve_url() -> Iterator[str]:
    """Yield a Redis URL for the duration (the benchmarks use it too), or skip."""
    url = os.environ.get("RECOVERY_TEST_REDIS_URL")
    if url:
        try:
            import redis  # noqa: F401
        except ImportError:
            _unavailable()
        yield url
        return
    yield from (server.url for server in _server())


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    yield from serve_url()


def drop_namespace(url: str, namespace: str) -> None:
    """Delete a test's keys, so a shared server (RECOVERY_TEST_REDIS_URL) stays clean."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{namespace}:*", count=1000))
        if keys:
            client.delete(*keys)
    except (redis.RedisError, OSError):
        pass  # a fault test stopped the server: nothing is left to clean
    finally:
        client.close()


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A private server this test may kill and restart."""
    yield from _server()
