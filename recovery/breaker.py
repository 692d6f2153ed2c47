"""The circuit breaker: the public face of the outcome window.

:class:`CircuitBreaker` subclasses the live window class (compiled or twin), so
``breaker.call`` *is* the window's ``call``: no Python frame stands between the
caller and the hot path. What this module adds is what is not hot
(:class:`BreakerMixin`): listeners, metrics, the decorator, and naming of
states. The tests combine the same mixin with each window to run one suite on
both.
"""

from __future__ import annotations

import functools
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import attrs

from recovery import _registry
from recovery._clock import Clock, iso_utc
from recovery._impl import Window
from recovery.config import CircuitBreakerConfig
from recovery.state import STATES, CircuitBreakerState

P = ParamSpec("P")
R = TypeVar("R")
# The first argument is the breaker (typed Any so a listener may annotate it as CircuitBreaker).
Listener = Callable[[Any, CircuitBreakerState, CircuitBreakerState], object]
FailureListener = Callable[[Any, BaseException | None, bool], object]
_logger = logging.getLogger("recovery.breaker")


@attrs.frozen
class CircuitBreakerMetrics:
    """A consistent snapshot of one breaker. Timestamps are wall-clock (``time.time()``)."""

    name: str
    state: CircuitBreakerState
    total_requests: int
    total_failures: int
    total_successes: int
    total_rejections: int
    total_slow_calls: int
    failure_rate: float
    window_failure_rate: float
    last_failure: float | None
    last_success: float | None
    state_change_time: float | None
    circuit_open_time: float
    health_check_success: bool | None
    next_retry_time: float | None
    # The node id of the remote process whose trip holds this breaker open (a cluster
    # sets it); None when the breaker is closed or opened here.
    opened_by: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the state as its string, timestamps as ISO-8601 UTC strings."""
        data = attrs.asdict(self)
        data["state"] = self.state.value
        for key in ("last_failure", "last_success", "state_change_time", "next_retry_time"):
            data[key] = iso_utc(data[key])
        return data


if TYPE_CHECKING:
    _WindowBase = Window
else:
    _WindowBase = object


class BreakerMixin(_WindowBase):
    """Everything of a breaker that is not the hot path; combine with a window class."""

    def __init__(
        self,
        name: str,
        config: CircuitBreakerConfig | None = None,
        clock: Clock | None = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty str, got {name!r}")
        if config is None:
            config = CircuitBreakerConfig()
        elif not isinstance(config, CircuitBreakerConfig):
            raise TypeError(f"config must be a CircuitBreakerConfig, got {config!r}")
        super().__init__(name, config, clock)
        self._listeners: tuple[Listener, ...] = ()
        self._failure_listeners: tuple[FailureListener, ...] = ()
        self._listeners_lock = threading.Lock()
        self._health_check_success: bool | None = None
        self._opened_by: str | None = None  # set by recovery.cluster
        _registry.register(self)  # findable by monitoring: recovery.breakers()

    @property
    def config(self) -> CircuitBreakerConfig:
        return self._config  # type: ignore[no-any-return]

    @property
    def clock(self) -> Clock | None:
        """The clock given at construction (None: the real monotonic clock)."""
        return self._clock  # type: ignore[no-any-return]

    @property
    def state(self) -> CircuitBreakerState:
        return STATES[self.state_code]

    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]:
        """Decorate ``fn`` so that every call goes through this breaker."""
        call = self.call

        @functools.wraps(fn)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
            return call(fn, *args, **kwargs)  # type: ignore[no-any-return]

        return guarded

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(breaker, old_state, new_state)`` after each transition.

        It runs on the thread that caused the transition, outside the lock; an
        exception it raises is logged and never reaches the caller.
        """
        if not callable(listener):
            raise TypeError(f"listener must be callable, got {listener!r}")
        with self._listeners_lock:
            self._listeners = (*self._listeners, listener)

    def remove_listener(self, listener: Listener) -> None:
        with self._listeners_lock:
            listeners = list(self._listeners)
            listeners.remove(listener)
            self._listeners = tuple(listeners)

    def _transitioned(self, old: int, new: int) -> None:
        old_state, new_state = STATES[old], STATES[new]
        for listener in self._listeners:
            try:
                listener(self, old_state, new_state)
            except Exception:
                _logger.exception(
                    "listener %r of breaker %r failed on %s -> %s",
                    listener, self.name, old_state.value, new_state.value,
                )

    def add_failure_listener(self, listener: FailureListener) -> None:
        """Call ``listener(breaker, exc, tripped)`` after each recorded failure.

        ``exc`` is the exception that failed the call; ``tripped`` is True when this
        outcome opened the circuit. A slow call that opened it is reported too, as
        is ``record(token, failed=True)``: both with ``exc`` None.
        It runs on the failing thread, before the caller sees the exception, so
        the recovery manager learns which exception tripped a breaker. Exceptions
        it raises are logged and never reach the caller.
        """
        if not callable(listener):
            raise TypeError(f"listener must be callable, got {listener!r}")
        with self._listeners_lock:
            self._failure_listeners = (*self._failure_listeners, listener)
            self._failure_hook = self._failed

    def _failed(self, exc: BaseException | None, tripped: bool) -> None:
        for listener in self._failure_listeners:
            try:
                listener(self, exc, tripped)
            except Exception:
                _logger.exception("failure listener %r of breaker %r failed", listener, self.name)

    def record_health_check(self, healthy: bool) -> None:
        """Note the latest active health check result (shown in metrics)."""
        self._health_check_success = bool(healthy)

    def metrics(self) -> CircuitBreakerMetrics:
        raw = self._snapshot()
        requests = raw["total_requests"]
        window = raw["window_count"]
        retry_in = raw["retry_in"]
        return CircuitBreakerMetrics(
            name=self.name,
            state=STATES[raw["state"]],
            total_requests=requests,
            total_failures=raw["total_failures"],
            total_successes=raw["total_successes"],
            total_rejections=raw["total_rejections"],
            total_slow_calls=raw["total_slow_calls"],
            failure_rate=raw["total_failures"] / requests if requests else 0.0,
            window_failure_rate=raw["window_failures"] / window if window else 0.0,
            last_failure=raw["last_failure"],
            last_success=raw["last_success"],
            state_change_time=raw["state_change_time"],
            circuit_open_time=raw["circuit_open_time"],
            health_check_success=self._health_check_success,
            # None when unknown, and when held open until reset (an infinite period).
            next_retry_time=(
                None if retry_in is None or math.isinf(retry_in)
                else time.time() + max(retry_in, 0.0)
            ),
            opened_by=None if raw["state"] == 0 else self._opened_by,
        )

    def __repr__(self) -> str:
        return f"CircuitBreaker({self.name!r}, state={self.state.value})"


class CircuitBreaker(BreakerMixin, Window):
    """Cut a failing dependency off, probe it carefully, and let it back in.

    Use ``breaker.call(fn, *args, **kwargs)``, ``@breaker`` or ``with breaker:``.
    ``fn``'s value is returned and its exception re-raised unchanged; while the
    circuit is open calls are rejected with :class:`~recovery.CircuitOpenError`.
    See :class:`~recovery.CircuitBreakerConfig` for the rules.
    """
