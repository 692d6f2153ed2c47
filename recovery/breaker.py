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
import inspect
import logging
import math
import threading
import time
import types
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import attrs

from recovery import _events, _registry, _validate
from recovery._clock import Clock, iso_utc
from recovery._impl import Window
from recovery.config import LATENCY_BUCKETS, CircuitBreakerConfig
from recovery.state import CLOSED_CODE, STATES, CircuitBreakerState

P = ParamSpec("P")
R = TypeVar("R")
# The first argument is the breaker (typed Any so a listener may annotate it as CircuitBreaker).
Listener = Callable[[Any, CircuitBreakerState, CircuitBreakerState], object]
FailureListener = Callable[[Any, BaseException | None, bool], object]
_logger = logging.getLogger("recovery.breaker")
_OPTIONAL_TEXT = _validate.optional(_validate.text)



@attrs.frozen
class LatencyHistogram:
    """Call durations of a breaker with ``record_latency=True``, since it was made.

    ``bounds`` are the buckets' upper bounds in seconds (``LATENCY_BUCKETS``: 100 us
    to 60 s); ``counts[i]`` is the calls that took at most ``bounds[i]`` and more than
    the bound before it (not cumulative), and the last count, one more than the
    bounds, the calls longer than 60 s. ``sum`` is their total seconds. Every call the
    breaker let through and recorded is in it, successes and failures alike.
    """

    bounds: tuple[float, ...]
    counts: tuple[int, ...]
    sum: float

    @property
    def count(self) -> int:
        """Calls timed."""
        return sum(self.counts)


def cumulative_buckets(latency: LatencyHistogram) -> list[tuple[str, int]]:
    """A latency histogram as ``(le, calls at most le)`` pairs, as
    Prometheus' ``_bucket`` series have them: cumulative, ``le`` written as Prometheus
    writes a float (``0.0001``, ``1.0``), ending with ``+Inf``."""
    pairs: list[tuple[str, int]] = []
    total = 0
    for bound, count in zip((*latency.bounds, math.inf), latency.counts, strict=True):
        total += count
        pairs.append(("+Inf" if math.isinf(bound) else repr(float(bound)), total))
    return pairs


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
    # The call-duration histogram; None unless the config has record_latency=True.
    latency: LatencyHistogram | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the state as its string, timestamps as ISO-8601 UTC strings."""
        # Not recursive: only the histogram needs it, and every status read pays for this.
        data = attrs.asdict(self, recurse=False)
        if self.latency is not None:
            data["latency"] = attrs.asdict(self.latency)
        data["state"] = self.state.value
        for key in ("last_failure", "last_success", "state_change_time", "next_retry_time"):
            data[key] = iso_utc(data[key])
        return data


if TYPE_CHECKING:
    _WindowBase = Window
else:
    _WindowBase = object


# Adding and removing listeners is rare: one lock serves every breaker, so a breaker
# does not carry a lock of its own.
_listeners_lock = threading.Lock()

class _Required:
    """The default of a breaker's name, so that leaving it out gets a clear error."""

    def __repr__(self) -> str:
        return "<required>"


_NAME_REQUIRED: Any = _Required()

# The config of every breaker built without one: configs are frozen, so one is shared.
_DEFAULT_CONFIG = CircuitBreakerConfig()


class BreakerMixin(_WindowBase):
    """Everything of a breaker that is not the hot path; combine with a window class."""

    # The attributes live in CircuitBreaker's slots (a mixin with slots of its own
    # could not be combined with the compiled window's layout).
    __slots__ = ()

    def __init__(
        self,
        name: str = _NAME_REQUIRED,
        config: CircuitBreakerConfig | None = None,
        clock: Clock | None = None,
        **fields: Any,
    ) -> None:
        if name is _NAME_REQUIRED:
            raise TypeError(
                "a circuit breaker needs a name, its first argument: "
                "CircuitBreaker(\"my-service\", failure_threshold=5)"
            )
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, got {name!r} ({type(name).__name__})")
        if not name.strip():
            raise ValueError(f"name must not be empty or blank, got {name!r}")
        if config is None:
            config = CircuitBreakerConfig(**fields) if fields else _DEFAULT_CONFIG
        elif fields:
            raise TypeError(
                f"give a config or config fields as keywords, not both: got config and "
                f"{', '.join(sorted(fields))}"
            )
        elif not isinstance(config, CircuitBreakerConfig):
            raise TypeError(f"config must be a CircuitBreakerConfig, got {config!r}")
        super().__init__(name, config, clock)
        self._listeners: tuple[Listener, ...] = ()
        self._failure_listeners: tuple[FailureListener, ...] = ()
        self._health_check_success: bool | None = None
        self._opened_by: str | None = None  # see set_opened_by
        _registry.register(self)  # findable by monitoring: recovery.breakers()

    @property
    def config(self) -> CircuitBreakerConfig:
        return self._config

    @property
    def clock(self) -> Clock | None:
        """The clock given at construction (None: the real monotonic clock)."""
        return self._clock

    @property
    def state(self) -> CircuitBreakerState:
        return STATES[self.state_code]

    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]:
        """Decorate ``fn`` so that every call goes through this breaker.

        The wrapper is of the same kind as ``fn``. A generator function's call is
        admitted at the first ``next()`` and recorded when the generator finishes
        (success), raises (by the usual rules) or is closed early (success); a
        coroutine function's when it is first awaited and when it returns or
        raises; an async generator's as a generator's. An uncounted exception
        (ignored, or a BaseException such as a cancellation) gives a half-open
        slot back.
        """
        if inspect.isasyncgenfunction(fn):
            return self._guard_async_generator(fn)
        if inspect.isgeneratorfunction(fn):
            return self._guard_generator(fn)
        if inspect.iscoroutinefunction(fn):
            return self._coroutine_function(fn)
        guarded: Callable[P, R] = functools.update_wrapper(self._guard(fn), fn)
        return guarded

    def _coroutine_function(self, fn: Callable[P, Awaitable[Any]]) -> Callable[P, Any]:
        """``fn`` guarded, and still a coroutine function to ``inspect``.

        The compiled window's guard is not a Python function: it gets ``fn``'s code
        object and defaults too, which is what ``inspect.iscoroutinefunction`` reads
        of a function-like object. A coroutine function without a code object of
        its own (a callable instance, a partial) gets a Python ``async def`` instead.
        """
        source = getattr(fn, "__func__", fn)
        code = getattr(source, "__code__", None)
        if isinstance(code, types.CodeType):
            guarded = functools.update_wrapper(self._guard_async(fn), fn)
            if not inspect.iscoroutinefunction(guarded):
                guarded.__code__ = code  # type: ignore[attr-defined]
                guarded.__defaults__ = source.__defaults__  # type: ignore[attr-defined]
                guarded.__kwdefaults__ = source.__kwdefaults__  # type: ignore[attr-defined]
            return guarded
        call_async = self.call_async

        @functools.wraps(fn)
        async def awaited(*args: P.args, **kwargs: P.kwargs) -> Any:
            return await call_async(fn, *args, **kwargs)

        return awaited

    # Each guard keeps ``fn``'s parameters and returns a function that makes what ``fn``
    # makes: typed as Callable[P, Any] so that ``__call__`` can return it as fn's type.

    def _guard_generator(
        self, fn: Callable[P, Generator[Any, Any, Any]]
    ) -> Callable[P, Any]:
        @functools.wraps(fn)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> Generator[Any, Any, Any]:
            token, start = self._begin()  # runs at the first next()
            try:
                result = yield from fn(*args, **kwargs)
            except GeneratorExit:
                self._end(token, start, None)  # closed early: the consumer had enough
                raise
            except BaseException as exc:
                self._end(token, start, exc)
                raise
            self._end(token, start, None)
            return result

        return guarded

    def _guard_async_generator(
        self, fn: Callable[P, AsyncGenerator[Any, Any]]
    ) -> Callable[P, Any]:
        @functools.wraps(fn)
        async def guarded(*args: P.args, **kwargs: P.kwargs) -> AsyncGenerator[Any, Any]:
            token, start = self._begin()  # runs at the first __anext__()
            try:
                inner = fn(*args, **kwargs)
                value = await inner.__anext__()
                while True:
                    try:
                        sent = yield value
                    except GeneratorExit:
                        await inner.aclose()
                        raise
                    except BaseException as thrown:
                        value = await inner.athrow(thrown)
                    else:
                        value = await inner.asend(sent)
            except StopAsyncIteration:
                self._end(token, start, None)
            except GeneratorExit:
                self._end(token, start, None)  # closed early
                raise
            except BaseException as exc:
                self._end(token, start, exc)
                raise

        return guarded

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(breaker, old_state, new_state)`` after each transition.

        It runs on the thread that caused the transition, outside the lock; an
        exception it raises is logged and never reaches the caller.
        """
        if not callable(listener):
            raise TypeError(f"listener must be callable, got {listener!r}")
        with _listeners_lock:
            self._listeners = (*self._listeners, listener)

    def remove_listener(self, listener: Listener) -> None:
        with _listeners_lock:
            listeners = list(self._listeners)
            listeners.remove(listener)
            self._listeners = tuple(listeners)

    def _transitioned(self, old: int, new: int) -> None:
        old_state, new_state = STATES[old], STATES[new]
        if _logger.isEnabledFor(logging.INFO):
            _events.emit(
                _logger, logging.INFO, "breaker %r: %s -> %s",
                (self.name, old_state.value, new_state.value),
                {"event": "transition", "plugin": self.name,
                 "old_state": old_state.value, "new_state": new_state.value},
            )
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
        with _listeners_lock:
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

    def set_opened_by(self, node_id: str | None) -> None:
        """Name the remote node whose trip holds this breaker open (None: opened here, or
        held by no one): a cluster says so, and :meth:`metrics` reports it as
        ``opened_by`` while the breaker is not closed."""
        self._opened_by = _validate.check(_OPTIONAL_TEXT, "node_id", node_id)

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
            opened_by=None if raw["state"] == CLOSED_CODE else self._opened_by,
            latency=(
                None if raw["latency"] is None
                else LatencyHistogram(LATENCY_BUCKETS, *raw["latency"])
            ),
        )

    def __repr__(self) -> str:
        return f"CircuitBreaker({self.name!r}, state={self.state.value})"


class CircuitBreaker(BreakerMixin, Window):
    """Cut a failing dependency off, probe it carefully, and let it back in.

    Use ``breaker.call(fn, *args, **kwargs)``, ``@breaker`` (on a function, a
    generator function, an ``async def`` or an async generator function),
    ``with breaker:``, ``async with breaker:`` or ``await breaker.call_async(fn)``.
    ``fn``'s value is returned and its exception re-raised unchanged; while the
    circuit is open calls are rejected with :class:`~recovery.CircuitOpenError`.
    Config fields may be given as keywords instead of a config:
    ``CircuitBreaker("db", failure_threshold=3)``. See
    :class:`~recovery.CircuitBreakerConfig` for the rules.
    """

    # No per-instance dict: a process may hold many thousands of breakers. (The twin
    # window is a plain class, weakly referable already.)
    __slots__ = (
        "_listeners", "_failure_listeners", "_health_check_success", "_opened_by",
        *(() if hasattr(Window, "__weakref__") else ("__weakref__",)),
    )
