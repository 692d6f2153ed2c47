"""Pure-Python twin of :mod:`recovery._window`.

Same class name, same behaviour, same tests; used when the extension is not
built or ``RECOVERY_NO_EXTENSIONS=1``. It is also the readable reference for the
compiled module: every rule the breaker applies is written here once in Python.

Vocabulary:

- The *window* is a ring buffer of the last ``sliding_window_size`` outcomes, one
  byte each (bit 0 failure, bit 1 slow), with running counts so rates are O(1).
- A *token* is what admission hands a call:
  ``generation << GEN_SHIFT | lap << 12 | slot << 2 | kind``. The generation counts
  transitions, so an outcome that arrives after the state moved on (a call
  admitted while CLOSED that ends after the circuit opened) still counts
  in the lifetime totals but cannot disturb the new state. The kind says whether
  the call was a normal closed-state call, a half-open trial holding a slot, or an
  *observed* call (admitted only because fast-fail is off). A trial also carries
  the number of the slot it holds and the slot's *lap* (a stamp from 1 to 255 that
  every trial admission advances): the slot is freed by the first outcome or
  release of that token, and a token used again after its slot was taken by a
  later trial does not match that trial's lap, so it counts nothing either.
"""

from __future__ import annotations

import bisect
import contextvars
import inspect
import logging
import math
import threading
import time
import types
from collections.abc import Awaitable, Callable, Generator
from typing import Any

from recovery._clock import Clock
from recovery._window_settings import SETTINGS, WindowSettings, window_settings
from recovery.config import LATENCY_BUCKETS, CircuitBreakerConfig, matches, split_matchers
from recovery.errors import (
    CircuitOpenError,
    CircuitRepairingError,
    foreign_exit,
    not_callable,
    refusal,
)
from recovery.state import CLOSED_CODE as CLOSED
from recovery.state import HALF_OPEN_CODE as HALF_OPEN
from recovery.state import OPEN_CODE as OPEN
from recovery.state import REPAIRING_CODE as REPAIRING
from recovery.state import (
    STATES,
    TRIP_FAILURES,
    TRIP_FORCED,
    TRIP_NONE,
    TRIP_REASONS,
    TRIP_SLOW_CALLS,
    TRIP_TRIAL_FAILED,
    TripReason,
)

_FAILED, _SLOW = 1, 2
_NORMAL, _TRIAL, _OBSERVED = 0, 1, 2
# Bits 2-11 of a token hold a trial's slot (half_open_max_calls <= 1,000 < 2**10),
# bits 12-19 the lap the slot was taken on (never 0: 0 marks a free slot).
GEN_SHIFT = 20
_SLOT_MASK = 0xFFC
_LAP_SHIFT = 12
_UNRUN = (types.CoroutineType, types.GeneratorType, types.AsyncGeneratorType)
_logger = logging.getLogger("recovery.breaker")

Transition = tuple[int, int] | None

# The ``with`` and ``async with`` blocks open in this context, innermost last, as
# (window, token, start). Per context, not per thread: a thread runs in a context of
# its own, and so does each asyncio task, so concurrent tasks on one thread each exit
# their own block. A tuple, so a context copied for a new task never shares it.
_blocks: contextvars.ContextVar[tuple[tuple[Window, int, float], ...]] = (
    contextvars.ContextVar("recovery_blocks", default=())
)


class _Done:
    """An awaitable that is already done: what ``async with``'s methods return."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __await__(self) -> Generator[Any, None, Any]:
        return self.value
        yield  # a generator that returns at once


class Window(WindowSettings):
    """Outcome window, state machine and admission for one breaker, behind one lock.

    Its config's numbers are the typed attributes ``_<name>`` it inherits from the
    settings table, set once here from :func:`window_settings`.
    """

    def __init__(
        self, name: str, config: CircuitBreakerConfig, clock: Clock | None = None
    ) -> None:
        self._name = name
        self._config = config
        self._clock = clock
        self._now: Callable[[], float] = time.monotonic if clock is None else clock.monotonic
        self._lock = threading.Lock()

        for name, value in window_settings(config).items():
            setattr(self, "_" + name, value)
        self._ring = bytearray(self._size)
        self._pos = 0
        self._count = 0
        self._window_failures = 0
        self._window_slow = 0
        self._record_types, self._record_tests = split_matchers(config.record_exceptions)
        self._ignore_types, self._ignore_tests = split_matchers(config.ignore_exceptions)
        self._slots = bytearray(self._trial_limit)  # the holder's lap; 0 while free
        self._lap = 0  # the lap of the last trial admitted, 1..255

        self._state = CLOSED
        self._trip = TRIP_NONE  # why it last opened: an index in TRIP_REASONS
        self._generation = 0
        self._open_until = 0.0
        self._backoff_level = 0
        self._trials = 0
        self._trial_successes = 0
        self._half_open_since = 0.0

        self._total_requests = 0
        self._total_failures = 0
        self._total_successes = 0
        self._total_rejections = 0
        self._total_slow = 0
        self._last_failure: float | None = None
        self._last_success: float | None = None
        self._state_changed = time.time()
        self._open_since = 0.0
        self._open_total = 0.0
        self._observer: Callable[[float, bool, float], object] | None = None
        # Called as hook(exc, tripped) after every recorded failure, and after a slow call
        # that opened the circuit.
        self._failure_hook: Callable[[BaseException | None, bool], object] | None = None
        # record_latency: calls per LATENCY_BUCKETS bucket (the last one unbounded), and
        # their total seconds; None when off.
        self._latency: list[int] | None = (
            [0] * (len(LATENCY_BUCKETS) + 1) if self._record_latency else None
        )
        self._latency_sum = 0.0

    def _read_settings(self) -> dict[str, float]:
        """The settings this window runs on, read back (tests check the copy is whole)."""
        return {name: getattr(self, "_" + name) for name in SETTINGS}

    @property
    def name(self) -> str:
        """The breaker's name; read-only, as the manager and metrics key on it."""
        return self._name

    # -- rules, called with the lock held -------------------------------------------

    def _open_period(self) -> float:
        return min(self._timeout * self._factor**self._backoff_level, self._max_interval)

    def _clear_window(self) -> None:
        self._ring[:] = bytes(self._size)
        self._pos = self._count = self._window_failures = self._window_slow = 0

    def _move(self, new: int, now: float) -> tuple[int, int]:
        """Enter state ``new`` at monotonic time ``now``; returns the transition.

        Every transition starts a new generation with an empty window and no
        trials: outcomes from before it cannot leak into the new state.
        """
        old = self._state
        if old in (OPEN, REPAIRING) and new not in (OPEN, REPAIRING):
            self._open_total += now - self._open_since
        elif new in (OPEN, REPAIRING) and old not in (OPEN, REPAIRING):
            self._open_since = now
        self._state = new
        if new == CLOSED:
            self._trip = TRIP_NONE
        self._generation += 1
        self._trials = 0
        self._trial_successes = 0
        self._slots[:] = bytes(self._trial_limit)
        self._state_changed = time.time()
        self._half_open_since = now
        self._clear_window()
        return (old, new)

    def _open(self, now: float, reason: int, period: float | None = None) -> tuple[int, int]:
        """Open until ``now + period`` (None: the current backoff period); ``reason``
        is why, a TRIP_* code."""
        self._open_until = now + (self._open_period() if period is None else period)
        self._trip = reason
        return self._move(OPEN, now)

    def _reopen(self, now: float) -> tuple[int, int]:
        """A half-open trial failed (or was lost): open again for a longer period.

        The level stops growing once the period reaches ``max_retry_interval``: a
        longer outage changes nothing, and ``factor ** level`` stays finite.
        """
        if self._factor > 1 and self._open_period() < self._max_interval:
            self._backoff_level += 1
        return self._open(now, TRIP_TRIAL_FAILED)

    def _take_slot(self) -> int:
        """A trial's token: the first free slot, taken on the next lap."""
        self._trials += 1
        slot = self._slots.index(0)
        self._lap = self._lap % 255 + 1
        self._slots[slot] = self._lap
        return self._generation << GEN_SHIFT | self._lap << _LAP_SHIFT | slot << 2 | _TRIAL

    def _holds_slot(self, token: int) -> bool:
        """Whether a current trial token still holds its slot (False once it was used)."""
        slot = (token & _SLOT_MASK) >> 2
        return (
            token >> GEN_SHIFT == self._generation
            and slot < self._trial_limit
            and self._slots[slot] == (token >> _LAP_SHIFT) & 0xFF
        )

    def _free_slot(self, token: int) -> None:
        if self._holds_slot(token):
            self._slots[(token & _SLOT_MASK) >> 2] = 0
            self._trials -= 1

    def _admit(self, now: float | None) -> tuple[int, Transition, float | None]:
        """Decide one call. Returns (token or -1 if rejected, transition, retry_after)."""
        state = self._state
        if state == CLOSED:
            return self._generation << GEN_SHIFT, None, None
        transition: Transition = None
        retry_after: float | None = None
        if state == OPEN:
            if now is None:
                now = self._now()
            if now >= self._open_until:
                transition = self._move(HALF_OPEN, now)
                return self._take_slot(), transition, None
            retry_after = self._open_until - now
        elif state == HALF_OPEN:
            if self._trials < self._trial_limit:
                return self._take_slot(), None, None
            if self._max_half_open_wait >= 0:
                if now is None:
                    now = self._now()
                if now - self._half_open_since >= self._max_half_open_wait:
                    transition = self._reopen(now)
                    retry_after = self._open_until - now
        if not self._fast_fail:
            return self._generation << GEN_SHIFT | _OBSERVED, transition, None
        self._total_rejections += 1
        if retry_after is not None and math.isinf(retry_after):
            retry_after = None  # held open until reset
        return -1, transition, retry_after

    def _record(
        self, token: int, flags: int, now: float | None, duration: float = -1.0
    ) -> Transition:
        """Count one finished call (``duration`` < 0: untimed); apply the rules of the
        state it was admitted in."""
        current = token >> GEN_SHIFT == self._generation
        if current and token & 3 == _TRIAL and not self._holds_slot(token):
            return None  # a trial token used twice: spent, counts nothing
        self._total_requests += 1
        if duration >= 0 and self._latency is not None:
            self._latency[bisect.bisect_left(LATENCY_BUCKETS, duration)] += 1
            self._latency_sum += duration
        if flags & _FAILED:
            self._total_failures += 1
            self._last_failure = time.time()
        else:
            self._total_successes += 1
            self._last_success = time.time()
        if flags & _SLOW:
            self._total_slow += 1
        if not current:
            return None  # admitted before the last transition: totals only
        kind = token & 3
        if kind == _NORMAL:
            return self._record_closed(flags, now)
        if kind == _TRIAL:
            self._free_slot(token)
            if flags & _FAILED or (flags & _SLOW and self._slow_rate > 0):
                return self._reopen(self._now() if now is None else now)
            self._trial_successes += 1
            if self._trial_successes >= self._success_threshold:
                self._backoff_level = 0
                return self._move(CLOSED, self._now() if now is None else now)
        return None

    def _record_closed(self, flags: int, now: float | None) -> Transition:
        size = self._size
        pos = self._pos
        if self._count == size:
            old = self._ring[pos]
            self._window_failures -= old & _FAILED
            self._window_slow -= (old & _SLOW) >> 1
        else:
            self._count += 1
        self._ring[pos] = flags
        self._window_failures += flags & _FAILED
        self._window_slow += (flags & _SLOW) >> 1
        self._pos = pos + 1 if pos + 1 < size else 0
        count = self._count
        if count < self._minimum_requests:
            return None
        failures = self._window_failures
        if failures >= self._failure_threshold or (
            self._failure_rate > 0 and failures / count >= self._failure_rate
        ):
            return self._open(self._now() if now is None else now, TRIP_FAILURES)
        if self._slow_rate > 0 and self._window_slow / count >= self._slow_rate:
            return self._open(self._now() if now is None else now, TRIP_SLOW_CALLS)
        return None

    def _release(self, token: int) -> None:
        if token & 3 == _TRIAL:
            self._free_slot(token)

    def _lost_admission(self) -> None:
        """A block was exited where its admission cannot be found (another thread or
        task). If it held a trial slot, nothing will give it back: a half-open circuit
        reopens, as for a trial that never reported (its generation then ends, so the
        lost token holds nothing)."""
        with self._lock:
            transition = self._reopen(self._now()) if self._state == HALF_OPEN else None
        if transition is not None:
            self._transitioned(*transition)

    # -- public low-level API ---------------------------------------------------------

    def _reject(self, retry_after: float | None) -> CircuitOpenError:
        state = self._state
        if state == REPAIRING:
            return CircuitRepairingError(self.name, STATES[state], None)
        return CircuitOpenError(self.name, STATES[state], retry_after)

    def try_admit(self) -> int:
        """Admit one call or raise :class:`CircuitOpenError`; returns its token."""
        # Closed, without the lock: each read is atomic, and a generation read
        # before the state can only be older than the state's own, which makes the
        # call one admitted before the transitions in between (it then counts in
        # the totals only), as it was.
        generation = self._generation
        if self._state == CLOSED:
            return generation << GEN_SHIFT
        with self._lock:
            token, transition, retry_after = self._admit(None)
            error = self._reject(retry_after) if token < 0 else None
        if transition is not None:
            try:
                self._transitioned(*transition)
            except BaseException:
                self.release(token)  # a listener's KeyboardInterrupt: the call never runs
                raise
        if error is not None:
            raise error
        return token

    def record(self, token: int, failed: bool, duration: float = 0.0) -> None:
        """Count the outcome of a call admitted with ``token`` that took ``duration``
        seconds (which decides whether it was slow, and with ``record_latency`` is put
        in the histogram)."""
        flags = _FAILED if failed else 0
        if 0 <= self._slow_duration <= duration:
            flags |= _SLOW
        self._record_outcome(token, flags, None, duration)

    def _record_outcome(
        self, token: int, flags: int, exc: BaseException | None, duration: float = -1.0
    ) -> None:
        """Record under the lock; then, outside it, tell listeners and the failure hook."""
        with self._lock:
            transition = self._record(token, flags, None, duration)
        if transition is not None:
            self._transitioned(*transition)
        tripped = transition is not None and transition[1] == OPEN
        if (flags & _FAILED or tripped) and self._failure_hook is not None:
            self._failure_hook(exc, tripped)

    def release(self, token: int) -> None:
        """Give back a call's admission without counting an outcome (ignored exception)."""
        with self._lock:
            self._release(token)

    def _finish(self, token: int, exc: BaseException | None, start: float) -> None:
        """Classify the end of a call (``exc`` is None on success) and record it."""
        if exc is not None and (
            not isinstance(exc, Exception)
            or isinstance(exc, self._ignore_types)
            or (self._ignore_tests and self._matches(self._ignore_tests, exc, False))
        ):
            with self._lock:
                self._release(token)
            return
        failed = exc is not None and (
            isinstance(exc, self._record_types)
            or (bool(self._record_tests) and self._matches(self._record_tests, exc, True))
        )
        flags = _FAILED if failed else 0
        duration = 0.0
        if start >= 0:
            duration = self._now() - start
            if 0 <= self._slow_duration <= duration:
                flags |= _SLOW
        self._record_outcome(token, flags, exc, duration if start >= 0 else -1.0)
        observer = self._observer
        if observer is not None:
            try:
                observer(start, not failed, duration)
            except Exception:
                _logger.exception("trace observer of breaker %r failed", self.name)

    def _matches(
        self, tests: tuple[Callable[[BaseException], bool], ...], exc: BaseException,
        on_error: bool,
    ) -> bool:
        """Whether a predicate matches ``exc``; one that raises is logged and counts as
        ``on_error`` (chosen so that the call counts as a failure)."""
        return matches(self._name, tests, exc, on_error)

    def _start_time(self) -> float:
        if self._slow_duration >= 0 or self._observer is not None or self._latency is not None:
            return self._now()
        return -1.0

    def _begin(self) -> tuple[int, float]:
        """Admit a call that is not one callable (a generator, a coroutine): its token
        and start time, for :meth:`_end`. Raises :class:`CircuitOpenError`."""
        token = self.try_admit()
        try:
            return token, self._start_time()
        except BaseException:
            self.release(token)
            raise

    def _end(self, token: int, start: float, exc: BaseException | None) -> None:
        """Record how a call admitted by :meth:`_begin` ended (``exc`` None: success)."""
        self._finish(token, exc, start)

    def _refuse_unrun(self, token: int, result: Any) -> TypeError:
        """``fn`` returned a coroutine or generator: give the admission back, close it."""
        self.release(token)
        return refusal(result)

    def call(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` through the breaker; return its value or re-raise."""
        if not callable(fn):
            raise not_callable("call", fn)
        return self._run(self.try_admit(), fn, args, kwargs)

    def _run(
        self, token: int, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """Run an admitted call outside the lock and record how it ended."""
        if self._slow_duration < 0 and self._observer is None and self._latency is None:
            # Untimed: the success path without _finish's classification.
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                self._finish(token, exc, -1.0)
                raise
            if isinstance(result, _UNRUN):
                raise self._refuse_unrun(token, result)
            self._record_outcome(token, 0, None)
            return result
        try:
            start = self._start_time()
        except BaseException:
            self.release(token)
            raise
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            self._finish(token, exc, start)
            raise
        if isinstance(result, _UNRUN):
            raise self._refuse_unrun(token, result)
        self._finish(token, None, start)
        return result

    def _enter_block(self) -> None:
        """Admit a ``with`` or ``async with`` block and keep its admission in the
        blocks of the current context, so that its exit records against it."""
        token, start = self._begin()
        _blocks.set((*_blocks.get(), (self, token, start)))

    def _exit_block(self, exc: BaseException | None) -> None:
        blocks = _blocks.get()
        for index in range(len(blocks) - 1, -1, -1):
            if blocks[index][0] is self:
                _, token, start = blocks[index]
                _blocks.set(blocks[:index] + blocks[index + 1 :])
                self._finish(token, exc, start)
                return
        # Entered in another thread or task: nothing here to pair with.
        self._lost_admission()
        raise foreign_exit(self._name, "thread or task")

    def __enter__(self) -> Any:
        self._enter_block()
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any, /) -> None:
        self._exit_block(exc)

    def __aenter__(self) -> Awaitable[Any]:
        """Admit the block now (``async with`` awaits the result at once): nothing
        here blocks, so the awaitable returned is already done."""
        self._enter_block()
        return _Done(self)

    def __aexit__(
        self, exc_type: Any, exc: BaseException | None, tb: Any
    ) -> Awaitable[None]:
        self._exit_block(exc)
        return _Done(None)

    async def call_async(
        self, fn: Callable[..., Awaitable[Any]], /, *args: Any, **kwargs: Any
    ) -> Any:
        """``await fn(*args, **kwargs)`` through the breaker: the coroutine twin of ``call``.

        Admitted when this is awaited, recorded when ``fn``'s awaitable returns or
        raises. Nothing here blocks, so the event loop is never stalled.
        """
        if not callable(fn):
            raise not_callable("call_async", fn)
        token, start = self._begin()
        try:
            awaitable = fn(*args, **kwargs)
        except BaseException as exc:
            self._end(token, start, exc)
            raise
        if not inspect.isawaitable(awaitable):
            self.release(token)
            raise TypeError(
                f"call_async() needs fn to return an awaitable, got {awaitable!r}: "
                "use call() for a plain function"
            )
        try:
            result = await awaitable
        except BaseException as exc:
            self._end(token, start, exc)
            raise
        self._end(token, start, None)
        return result

    def _guard(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn`` guarded by this breaker (what ``@breaker`` returns, once wrapped)."""
        call = self.call

        def guarded(*args: Any, **kwargs: Any) -> Any:
            return call(fn, *args, **kwargs)

        return guarded

    def _guard_async(self, fn: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
        """A coroutine function ``fn`` guarded by this breaker: admitted when first
        awaited, recorded when it returns or raises."""

        async def guarded(*args: Any, **kwargs: Any) -> Any:
            token, start = self._begin()  # runs when first awaited
            try:
                result = await fn(*args, **kwargs)
            except BaseException as exc:
                self._end(token, start, exc)
                raise
            self._end(token, start, None)
            return result

        return guarded

    # -- manual control ----------------------------------------------------------------

    def _control(self, change: Callable[[float], Transition]) -> Transition:
        with self._lock:
            transition = change(self._now())
        if transition is not None:
            self._transitioned(*transition)
        return transition

    def reset(self) -> None:
        """Close the circuit: window cleared, backoff reset (totals are kept)."""

        def change(now: float) -> Transition:
            self._backoff_level = 0
            transition = self._move(CLOSED, now)
            return transition if transition[0] != CLOSED else None

        self._control(change)

    def force_open(self, duration: float | None = None) -> None:
        """Open now for ``duration`` seconds (None: the current open period; inf: until reset)."""
        if duration is not None and not duration >= 0:
            raise ValueError(f"duration must be >= 0 seconds, got {duration!r}")

        def change(now: float) -> Transition:
            transition = self._open(now, TRIP_FORCED, duration)
            return transition if transition[0] != OPEN else None

        self._control(change)

    def begin_repair(self) -> None:
        """Reject every call with CircuitRepairingError while a strategy works on the plugin."""

        def change(now: float) -> Transition:
            if self._state == REPAIRING:
                return None
            if self._state == CLOSED:
                self._trip = TRIP_FORCED  # no trip to repair: someone decided to
            return self._move(REPAIRING, now)

        self._control(change)

    def end_repair(self, success: bool) -> bool:
        """Leave REPAIRING: to HALF_OPEN on success, else OPEN. False if it was not repairing."""

        def change(now: float) -> Transition:
            if self._state != REPAIRING:
                return None
            # A failed repair opens again for the reason the circuit was open for.
            return self._move(HALF_OPEN, now) if success else self._open(now, self._trip)

        return self._control(change) is not None

    def allow_trial(self) -> bool:
        """Move an OPEN circuit to HALF_OPEN now (a health check proved the dependency alive)."""
        return self._control(
            lambda now: self._move(HALF_OPEN, now) if self._state == OPEN else None
        ) is not None

    # -- views ---------------------------------------------------------------------------

    @property
    def state_code(self) -> int:
        return self._state

    @property
    def retry_after(self) -> float | None:
        """Seconds until a trial call will be admitted; 0 if calls pass now; None if unknown."""
        with self._lock:
            if self._state != OPEN:
                return 0.0 if self._state == CLOSED else None
            wait = max(self._open_until - self._now(), 0.0)
        return None if math.isinf(wait) else wait

    @property
    def trip_reason(self) -> TripReason | None:
        """Why the circuit last opened; None while it is closed."""
        with self._lock:
            return TRIP_REASONS[self._trip]

    def window_counts(self) -> tuple[int, int]:
        """``(calls, failures)`` in the current sliding window, read together."""
        with self._lock:
            return self._count, self._window_failures

    def _snapshot(self) -> dict[str, Any]:
        """A consistent copy of the counters, taken under the lock."""
        with self._lock:
            now = self._now()
            open_total = self._open_total
            if self._state in (OPEN, REPAIRING):
                open_total += now - self._open_since
            return {
                "state": self._state,
                "total_requests": self._total_requests,
                "total_failures": self._total_failures,
                "total_successes": self._total_successes,
                "total_rejections": self._total_rejections,
                "total_slow_calls": self._total_slow,
                "window_count": self._count,
                "window_failures": self._window_failures,
                "window_slow_calls": self._window_slow,
                "last_failure": self._last_failure,
                "last_success": self._last_success,
                "state_change_time": self._state_changed,
                "circuit_open_time": open_total,
                "retry_in": (
                    self._open_until - now
                    if self._state == OPEN and not math.isinf(self._open_until) else None
                ),
                "backoff_level": self._backoff_level,
                "latency": (
                    None if self._latency is None
                    else (tuple(self._latency), self._latency_sum)
                ),
            }

    def set_observer(self, observer: Callable[[float, bool, float], object] | None) -> None:
        """Call ``observer(start, ok, latency)`` after every executed call (None to stop)."""
        self._observer = observer

    def replay(self, t: Any, ok: Any, latency: Any) -> tuple[bytes, bytes]:
        """Run a recorded trace through this window: event ``i`` is a call at time ``t[i]``.

        A rejected event does not happen; an admitted one records ``ok[i]`` with
        ``latency[i]`` as its duration, at time ``t[i] + latency[i]``. The clock
        object is not read and listeners are not called. Returns
        ``(admitted, states)``: per event, 1 if it was admitted, and the state
        after it.
        """
        n = len(t)
        if len(ok) != n or len(latency) != n:
            raise ValueError(
                f"t, ok and latency must have the same length, got {n}, {len(ok)}, {len(latency)}"
            )
        admitted = bytearray(n)
        states = bytearray(n)
        slow_duration = self._slow_duration
        with self._lock:
            for i in range(n):
                now = t[i]
                token = self._admit(now)[0]
                if token >= 0:
                    admitted[i] = 1
                    lat = latency[i]
                    flags = 0 if ok[i] else _FAILED
                    if 0 <= slow_duration <= lat:
                        flags |= _SLOW
                    self._record(token, flags, now + lat, lat)
                states[i] = self._state
        return bytes(admitted), bytes(states)

    def _transitioned(self, old: int, new: int) -> None:
        """Called after every transition, outside the lock; the breaker tells its listeners."""


class Route:
    """One plugin's way through ``execute_with_recovery``: its breaker and fallback.

    ``diverted`` sends every call to the dispatcher's ``_diverted_call`` instead
    (the manager sets it while the plugin is degraded). ``fallbacks_served``
    counts the calls the fallback answered.
    """

    def __init__(self, breaker: Window, fallback: Callable[..., Any] | None = None) -> None:
        self.breaker = breaker
        self.fallback = fallback
        self.diverted = False
        self._served = 0
        self._lock = threading.Lock()

    @property
    def fallbacks_served(self) -> int:
        return self._served

    def serve_fallback(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Answer a call with the fallback (which must exist), counting it."""
        with self._lock:
            self._served += 1
        assert self.fallback is not None
        return self.fallback(*args, **kwargs)


class Dispatcher:
    """Routes ``execute_with_recovery(plugin_name, fn, ...)`` to the plugin's breaker.

    The recovery manager subclasses it, as the breaker subclasses ``Window``.
    """

    def __init__(self) -> None:
        self._routes: dict[str, Route] = {}

    def _add_route(self, name: str, route: Route) -> None:
        self._routes[name] = route

    def _diverted_call(
        self, plugin_name: str, fn: Callable[..., Any], args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        """Serve a call of a diverted route; the manager decides what that means."""
        raise NotImplementedError

    def execute_with_recovery(
        self, plugin_name: str, fn: Callable[..., Any], /, *args: Any, **kwargs: Any
    ) -> Any:
        """Run fn(*args, **kwargs) through the plugin's breaker; a rejected call is
        answered by the plugin's fallback if it has one."""
        if not callable(fn):
            raise not_callable("execute_with_recovery", fn)
        route = self._routes.get(plugin_name)
        if route is None:
            raise KeyError(f"unknown plugin {plugin_name!r}")
        if route.diverted:
            return self._diverted_call(plugin_name, fn, args, kwargs)
        breaker = route.breaker
        try:
            token = breaker.try_admit()
        except CircuitOpenError:
            if route.fallback is None:
                raise
            return route.serve_fallback(args, kwargs)
        return breaker._run(token, fn, args, kwargs)

