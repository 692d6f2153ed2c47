"""Simulated plugins with scripted failure modes, for the demo and for tests (ours and
users', through ``recovery.testing``).

:class:`FlakyPlugin` is a complete plugin (docs/design.md, "Plugins": ``initialize``, ``shutdown``,
``health_check``, ``reload``, ``degrade``) whose work is :meth:`FlakyPlugin.do_work`
(also its ``__call__``). Its modes can be set at construction and changed at any
time from another thread, so a test or a scenario can make a healthy plugin turn
bad and watch the recovery manager bring it back::

    plugin = FlakyPlugin("search", fail_rate=0.3, seed=7)   # 30% of calls raise FlakyError
    plugin = FlakyPlugin("db", recover_after_restarts=2)    # fails until restarted twice
    plugin = FlakyPlugin("cache", crash_on_initialize=3)    # initialize raises 3 times
    plugin = FlakyPlugin("ranker", latency=0.2)             # every call takes 0.2 s
    plugin.hang(); ...; plugin.release()                    # calls block until released

Counters (``calls``, ``failures``, ``initializations``, ``shutdowns``, ``restarts``,
``reloads``, ``degrades``, ``health_checks``) are updated under the plugin's lock and
are there for assertions; treat them as read-only.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from typing import Any

from recovery import _validate as v
from recovery._clock import REAL_CLOCK, Clock


class FlakyError(RuntimeError):
    """A scripted failure of a call (the default ``error`` of a :class:`FlakyPlugin`)."""


class InitializationCrash(RuntimeError):
    """Raised by ``initialize`` while the plugin is scripted to crash on start."""


class PluginNotRunningError(RuntimeError):
    """A call to a plugin that is not initialized, or that was shut down while the call hung."""


_RATE = v.number(ge=0, le=1)
_SECONDS = v.number(ge=0, unit="seconds")
_COUNT = v.integer(ge=0)


class FlakyPlugin:
    """A plugin whose calls fail, slow down or hang as scripted.

    A call (:meth:`do_work`) goes through these steps, in order:

    1. not running (never initialized, initialize crashed, or shut down):
       :class:`PluginNotRunningError`;
    2. hanging (:meth:`hang`): block until :meth:`release`, or until :meth:`shutdown`,
       which fails the blocked call with :class:`PluginNotRunningError`;
    3. ``latency`` seconds slept on ``clock`` (the real clock unless one is given);
    4. restarts still needed (``recover_after_restarts``): raise ``error``;
    5. with probability ``fail_rate`` (drawn from ``random.Random(seed)``): raise ``error``;
    6. return the plugin's name.

    ``error`` makes the raised exception: ``FlakyError`` by default; pass e.g.
    ``TimeoutError`` to be classified as a timeout. A *restart* is a successful
    ``initialize`` after a ``shutdown`` (what the "restart" strategy does); each one
    counts down ``recover_after_restarts``. A shutdown also ends any hang (as killing a
    stuck process would) and releases what was blocked in it.

    :meth:`health_check` returns False while a call would surely fail (not running,
    hanging, restarts still needed, ``fail_rate`` 1) and True otherwise; it sleeps the
    ``latency`` too, and it hangs, until released, after :meth:`hang_health_checks`.
    """

    def __init__(
        self,
        name: str,
        *,
        fail_rate: float = 0.0,
        latency: float = 0.0,
        hang: bool = False,
        health_check_hangs: bool = False,
        crash_on_initialize: int = 0,
        recover_after_restarts: int = 0,
        error: Callable[[str], BaseException] = FlakyError,
        seed: int | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.name: str = v.check(v.name(), "name", name)
        self.error = error
        self.clock = clock if clock is not None else REAL_CLOCK
        self._lock = threading.Condition()
        self._random = random.Random(seed)
        self._fail_rate = float(v.check(_RATE, "fail_rate", fail_rate))
        self._latency = float(v.check(_SECONDS, "latency", latency))
        self._calls_hang = bool(hang)
        self._checks_hang = bool(health_check_hangs)
        self._crashes_left = v.check(_COUNT, "crash_on_initialize", crash_on_initialize)
        self._restarts_needed = v.check(
            _COUNT, "recover_after_restarts", recover_after_restarts
        )
        self._running = False
        self._shut_down = False  # since the last successful initialize: the next one restarts
        self._generation = 0  # bumped by shutdown, to release what hangs
        self._blocked = 0
        self.config: Any = None
        self.degraded = False
        self.last_degrade_failure: Any = None
        self.calls = 0
        self.failures = 0
        self.initializations = 0
        self.shutdowns = 0
        self.restarts = 0
        self.reloads = 0
        self.degrades = 0
        self.health_checks = 0

    # --- the plugin protocol ------------------------------------------------------------------

    def initialize(self, config: Any = None) -> None:
        """Start the plugin with ``config``, or crash if scripted to (InitializationCrash)."""
        with self._lock:
            self.initializations += 1
            if self._crashes_left > 0:
                self._crashes_left -= 1
                self._running = False
                raise InitializationCrash(
                    f"{self.name}: scripted crash in initialize ({self._crashes_left} more to come)"
                )
            if self._shut_down:
                self.restarts += 1
                self._restarts_needed = max(0, self._restarts_needed - 1)
                self._shut_down = False
            self._running = True
            self.config = config
            self.degraded = False

    def shutdown(self) -> None:
        """Stop the plugin; ends any hang and fails the calls blocked in it."""
        with self._lock:
            self.shutdowns += 1
            self._running = False
            self._shut_down = True
            self._calls_hang = self._checks_hang = False
            self._generation += 1
            self._lock.notify_all()

    def reload(self, config: Any) -> None:
        """Take a new config in place (no restart); PluginNotRunningError if not running."""
        with self._lock:
            self.reloads += 1
            if not self._running:
                raise PluginNotRunningError(f"{self.name}: cannot reload, it is not running")
            self.config = config
            self.degraded = False

    def degrade(self, failure: Any) -> None:
        """Note that the plugin was told to shed load because of ``failure``."""
        with self._lock:
            self.degrades += 1
            self.degraded = True
            self.last_degrade_failure = failure

    def health_check(self) -> bool:
        with self._lock:
            self.health_checks += 1
        if not self._block_while_hanging(checks=True):
            return False
        self._sleep_latency()
        with self._lock:
            return (
                self._running
                and not self._calls_hang
                and self._restarts_needed == 0
                and self._fail_rate < 1.0
            )

    # --- the work it serves -------------------------------------------------------------------

    def do_work(self, *args: Any) -> str:
        """One call to the plugin: fails, slows or hangs as scripted, else returns its name."""
        with self._lock:
            self.calls += 1
            if not self._running:
                raise self._failed(PluginNotRunningError(f"{self.name}: not running"))
        if not self._block_while_hanging(checks=False):
            raise self._failed(PluginNotRunningError(f"{self.name}: shut down while hung"))
        self._sleep_latency()
        with self._lock:
            if self._restarts_needed > 0:
                raise self._failed(self.error(
                    f"{self.name}: failing until restarted {self._restarts_needed} more time(s)"
                ))
            if self._fail_rate > 0 and self._random.random() < self._fail_rate:
                raise self._failed(self.error(f"{self.name}: scripted failure"))
        return self.name

    def __call__(self, *args: Any) -> str:
        return self.do_work(*args)

    def _failed(self, exc: BaseException) -> BaseException:
        with self._lock:
            self.failures += 1
        return exc

    def _sleep_latency(self) -> None:
        latency = self._latency
        if latency > 0:
            self.clock.sleep(latency)

    def _block_while_hanging(self, *, checks: bool) -> bool:
        """Block while calls (or checks) hang; False if a shutdown ended the wait."""
        with self._lock:
            generation = self._generation
            if not self._hangs(checks):
                return True
            self._blocked += 1
            self._lock.notify_all()
            try:
                while self._hangs(checks) and self._generation == generation:
                    self._lock.wait()
            finally:
                self._blocked -= 1
            return self._generation == generation

    def _hangs(self, checks: bool) -> bool:
        return self._checks_hang if checks else self._calls_hang

    # --- scripting ----------------------------------------------------------------------------

    @property
    def fail_rate(self) -> float:
        """Probability that a call raises ``error``; settable at any time."""
        return self._fail_rate

    @fail_rate.setter
    def fail_rate(self, value: float) -> None:
        self._fail_rate = float(v.check(_RATE, "fail_rate", value))

    @property
    def latency(self) -> float:
        """Seconds each call and health check takes; settable at any time."""
        return self._latency

    @latency.setter
    def latency(self, value: float) -> None:
        self._latency = float(v.check(_SECONDS, "latency", value))

    def hang(self) -> None:
        """From now on, calls block until :meth:`release` or :meth:`shutdown`."""
        with self._lock:
            self._calls_hang = True

    def hang_health_checks(self) -> None:
        """From now on, health checks block until :meth:`release` or :meth:`shutdown`."""
        with self._lock:
            self._checks_hang = True

    def release(self) -> None:
        """End every hang; blocked calls and checks carry on as if they had not hung."""
        with self._lock:
            self._calls_hang = self._checks_hang = False
            self._lock.notify_all()

    def fail_until_restarted(self, times: int) -> None:
        """From now on, every call fails until the plugin has been restarted ``times`` times."""
        with self._lock:
            self._restarts_needed = v.check(_COUNT, "times", times)

    def crash_next_initializations(self, times: int) -> None:
        """Make the next ``times`` calls of ``initialize`` raise :class:`InitializationCrash`."""
        with self._lock:
            self._crashes_left = v.check(_COUNT, "times", times)

    # --- observing ----------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Initialized successfully and not shut down since."""
        return self._running

    @property
    def hanging(self) -> bool:
        """Calls hang now."""
        return self._calls_hang

    @property
    def restarts_needed(self) -> int:
        """Restarts still needed before calls stop failing."""
        return self._restarts_needed

    @property
    def blocked(self) -> int:
        """Calls and health checks blocked in a hang right now."""
        return self._blocked

    def wait_for_blocked(self, count: int, timeout: float = 5.0) -> bool:
        """Block (real time, at most ``timeout``) until ``count`` callers are hung in the plugin.

        Lets a test act only once a call or check is really stuck, without sleeping.
        """
        with self._lock:
            return self._lock.wait_for(lambda: self._blocked >= count, timeout)

    def __repr__(self) -> str:
        state = "running" if self._running else "stopped"
        return f"FlakyPlugin({self.name!r}, {state}, calls={self.calls}, failures={self.failures})"
