"""Plain helpers shared by the tests: the two windows, a stub plugin manager, bounded
polling and threads, and factories that clean up after.

Fixtures live in tests/conftest.py and reach a test by name; the helpers test modules
share live here, so no test module imports conftest.
"""

from __future__ import annotations

import importlib
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from recovery import _window_py
from recovery.breaker import BreakerMixin, CircuitBreaker
from recovery.failures import FailureInfo
from recovery.manager import RecoveryManager
from recovery.strategies import CustomStrategy, RecoveryContext
from recovery.testing import FakeClock

T = TypeVar("T")

MakeBreaker = Callable[..., CircuitBreaker]
"""The ``make_breaker`` fixture's type: ``make_breaker(name="dep", **config_fields)``."""

MakeManager = Callable[..., RecoveryManager]
"""The ``make_manager`` fixture's type: ``make_manager(plugin_manager=None,
audit_logger=None, **config)``."""


# -- the two windows -----------------------------------------------------------------------


def _compiled_window() -> Any:
    try:
        return importlib.import_module("recovery._window").Window
    except ModuleNotFoundError as error:
        if error.name != "recovery._window":
            raise  # a stale or broken build fails the tests instead of skipping them
        return None


WINDOWS = {"compiled": _compiled_window(), "python": _window_py.Window}
"""Both outcome windows by name; "compiled" is None when the extension is not built."""


def breaker_class(window: Any) -> type[CircuitBreaker]:
    """The public breaker, built on the given window class."""
    return type("CircuitBreaker", (BreakerMixin, window), {"__doc__": CircuitBreaker.__doc__})


# -- a stub plugin manager -----------------------------------------------------------------


class StubPlugin:
    """A plugin whose initialize fails while ``broken`` is set."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.broken = False
        self.initialized = 0
        self.shutdowns = 0

    def initialize(self, config: Any) -> None:
        if self.broken:
            raise ConnectionError(f"{self.name} cannot start")
        self.initialized += 1

    def shutdown(self) -> None:
        self.shutdowns += 1


class StubPluginManager:
    """The smallest PluginManager a manager or a strategy accepts: ``load_plugin``
    initializes and is recorded in ``loaded``.

    Built from names (each becomes a :class:`StubPlugin`) or from plugin objects (any
    object with a ``name``), for a test that records what a strategy does to its plugin.
    """

    def __init__(self, *plugins: str | Any) -> None:
        made = (StubPlugin(p) if isinstance(p, str) else p for p in plugins)
        self.plugins: dict[str, Any] = {plugin.name: plugin for plugin in made}
        self.loaded: list[tuple[str, Any]] = []

    def get_plugin(self, name: str) -> Any:
        return self.plugins.get(name)

    def list_plugins(self) -> list[str]:
        return list(self.plugins)

    def load_plugin(self, plugin: Any, config: Any) -> None:
        self.loaded.append((plugin.name, config))
        plugin.initialize(config)


def failing_strategy(name: str = "bad") -> CustomStrategy:
    """A strategy that handles every failure and never fixes it (its recover raises)."""

    def recover(plugin_name: str, failure: FailureInfo, ctx: RecoveryContext) -> None:
        raise RuntimeError(f"{name} cannot fix {plugin_name}")

    return CustomStrategy(name, 1, lambda f: True, recover)


def recovery_threads() -> set[threading.Thread]:
    """The live threads the library started (all their names begin with "recovery")."""
    return {t for t in threading.enumerate() if t.name.startswith("recovery")}


# -- bounded waits ---------------------------------------------------------------------------


def hears_ctrl_c() -> None:
    """``preexec_fn`` of a child a test interrupts with SIGINT: the default handler.

    An ignored SIGINT is inherited across exec, and Python leaves it ignored: a suite
    started in the background by a shell (``cmd &``), by ``nohup`` or by a CI runner
    ignores it, and so would every command it starts, which then never hears the
    test's Ctrl-C.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


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


def run_threads(count: int, target: Callable[[int], Any], timeout: float = 20.0) -> None:
    """Run ``target(index)`` on ``count`` threads released together by a barrier, join
    them (each join bounded by ``timeout``) and fail if one hung or raised."""
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def body(index: int) -> None:
        try:
            barrier.wait(timeout)
            target(index)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    assert not any(thread.is_alive() for thread in threads), "a worker thread hung"
    assert errors == []


def no_episode(rm: RecoveryManager) -> bool:
    """No episode is running or queued now (what ``wait_idle(0)`` said before it also
    waited for the alerts and records the manager delivers on its own thread)."""
    return rm.status().episodes_in_progress == 0


def manager_lock(rm: RecoveryManager) -> Any:
    """``rm``'s own lock, for the tests that check user callbacks, listeners and log
    records run with it free (what deadlocks a callback that calls the manager back):
    no public API says who holds the lock, nor should one."""
    return rm._lock  # private: whether callbacks run outside it is the behaviour tested


def settle(
    rm: RecoveryManager, clock: FakeClock, step: float = 1.0, limit: float = 10.0
) -> None:
    """Advance the clock in small steps until no episode runs (bounded in real time).

    The clock moves only while the manager is quiescent (``rm.is_quiescent()``):
    every episode waits for time itself to pass, as a verification waiting for a
    half-open trial that no call will make. While a strategy, a ``can_handle`` or a
    verifying health check runs on its thread, the episode waits for that thread,
    not for time, and a step would be read as time the run took: five 1 s steps
    (10 ms of real time) abandon a 5 s strategy that a loaded machine has not
    finished yet, and the steps run the health monitor's checks in the middle of
    the episode. A test that wants a run to time out advances the clock itself.
    """
    deadline = time.monotonic() + limit
    while not rm.wait_idle(0.002):
        assert time.monotonic() < deadline, "episode did not finish"
        if clock.waiting and rm.is_quiescent():
            clock.advance(step)


# -- factories that clean up after -----------------------------------------------------------


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
    from tests.cluster.test_nodes_across_processes import CONFIG, Node

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
