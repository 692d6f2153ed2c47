"""The forecaster: watches breakers from the outside and warns before they open.

A :class:`Forecaster` reads each watched breaker's public counters
(:meth:`~recovery.CircuitBreaker.metrics`: calls, failures, and the latency
histogram when the breaker has ``record_latency=True``) every ``interval``
seconds on its own thread, and feeds the differences to the change tests of
:mod:`recovery.forecast.detectors`. It adds nothing to a call: a breaker does
not know it is watched.

A :class:`Warning` is raised when a test finds the signal off its learned
baseline, and ends when the signal is back at baseline or the breaker leaves
CLOSED (once it is open there is nothing left to foresee). Listeners hear both.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any, Literal

import attrs

from recovery import _validate as v
from recovery._clock import REAL_CLOCK, Clock, wait
from recovery.breaker import BreakerMixin, CircuitBreaker
from recovery.config import CircuitBreakerConfig
from recovery.forecast.detectors import FailureRateDetector, LatencyDetector
from recovery.state import CircuitBreakerState

_logger = logging.getLogger("recovery.forecast")

WarningKind = Literal["failure_rate", "latency"]


@attrs.frozen
class Warning:  # a value, never raised: the builtin's name inside this package only
    """A breaker heading for a trip.

    - ``breaker``: the breaker's name.
    - ``kind``: ``"failure_rate"`` or ``"latency"``.
    - ``since``: when it was raised, on the forecaster's clock (monotonic seconds).
    - ``baseline``: what the breaker normally sees, learned while healthy: a failure
      rate (0-1), or a typical latency in seconds (the geometric mean of calls).
    - ``current``: the same measure over the last few seconds.
    - ``expected_trip_in``: seconds until the breaker would open at the present
      trend (0.0: any moment now), or None when the trend does not lead there (or,
      for latency, the breaker has no slow-call rule).
    - ``ended``: None while the warning is active; the forecaster's clock time it
      ended, on the copy listeners get when it ends.
    """

    breaker: str
    kind: WarningKind
    since: float
    baseline: float
    current: float
    expected_trip_in: float | None
    ended: float | None = None

    @property
    def active(self) -> bool:
        return self.ended is None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (every field is a str, a float or None)."""
        return attrs.asdict(self)


WarningListener = Callable[[Warning], object]
"""A forecaster listener: called with the warning when raised, and again when it ends."""


def trip_rate(config: CircuitBreakerConfig) -> float:
    """The window failure rate at which ``config``'s own rules open a full window."""
    by_count = config.failure_threshold / config.sliding_window_size
    if config.failure_rate_threshold is None:
        return by_count
    return min(by_count, config.failure_rate_threshold)


class _Watch:
    """One watched breaker: the counters read last time, its detectors and its warnings."""

    def __init__(self, breaker: CircuitBreaker, now: float) -> None:
        config = breaker.config
        self.breaker = breaker
        self.failures = FailureRateDetector(trip_rate(config))
        self.latency = LatencyDetector(config.slow_call_duration, config.slow_call_rate_threshold)
        self.warnings: dict[WarningKind, Warning] = {}
        self.last_time = now
        self.last: tuple[int, int, tuple[int, ...] | None, float | None] | None = None

    def sample(self, now: float) -> list[Warning]:
        """Read the breaker once; return the warnings raised or ended (ended ones carry
        their end time)."""
        metrics = self.breaker.metrics()
        latency = None if metrics.latency is None else metrics.latency.counts
        reading = (metrics.total_requests, metrics.total_failures, latency,
                   metrics.state_change_time)
        seconds = now - self.last_time
        previous, self.last, self.last_time = self.last, reading, now
        if metrics.state is not CircuitBreakerState.CLOSED:
            return self._end_all(now)
        if previous is None or previous[3] != reading[3] or seconds <= 0:
            return []  # the first read, or it left CLOSED and came back since the last one
        changes: list[Warning] = []
        calls = reading[0] - previous[0]
        outcome = self.failures.update(seconds, calls, reading[1] - previous[1])
        changes += self._apply("failure_rate", outcome, now)
        if latency is not None and previous[2] is not None:
            counts = [new - old for new, old in zip(latency, previous[2], strict=True)]
            changes += self._apply("latency", self.latency.update(seconds, counts), now)
        for kind, warning in list(self.warnings.items()):
            self.warnings[kind] = self._refreshed(warning)
        return changes

    def _detector(self, kind: WarningKind) -> FailureRateDetector | LatencyDetector:
        return self.failures if kind == "failure_rate" else self.latency

    def _apply(self, kind: WarningKind, outcome: str | None, now: float) -> list[Warning]:
        if outcome == "raise":
            detector = self._detector(kind)
            warning = Warning(
                self.breaker.name, kind, now, detector.baseline() or 0.0, detector.current(),
                detector.expected_trip_in(),
            )
            self.warnings[kind] = warning
            return [warning]
        if outcome == "end" and kind in self.warnings:
            return [attrs.evolve(self.warnings.pop(kind), ended=now)]
        return []

    def _refreshed(self, warning: Warning) -> Warning:
        detector = self._detector(warning.kind)
        return attrs.evolve(
            warning, current=detector.current(), expected_trip_in=detector.expected_trip_in()
        )

    def _end_all(self, now: float) -> list[Warning]:
        """The breaker is not CLOSED: end every warning, restart the tests."""
        self.failures.reset()
        self.latency.reset()
        ended = [attrs.evolve(warning, ended=now) for warning in self.warnings.values()]
        self.warnings.clear()
        return ended


_INTERVAL = v.number(ge=v.MIN_INTERVAL, unit="seconds")


class Forecaster:
    """Warns that a breaker is going bad before it opens.

    ``fc.watch(breaker)`` adds a breaker; ``fc.start()`` (or ``with fc:``) samples
    every watched breaker each ``interval`` seconds on a thread of its own, and
    ``fc.poll()`` does one such sample now (tests and replays drive it so, on a
    fake clock). ``fc.add_listener(fn)`` calls ``fn(warning)`` when a warning is
    raised and again, with ``ended`` set, when it ends; ``fc.warnings()`` lists
    those active now, with ``current`` and ``expected_trip_in`` as of the last
    sample.

    A breaker is learned from scratch when watched: no warning comes before it
    has been watched about 30 s and has made a few hundred calls.
    """

    def __init__(self, interval: float = 0.25, clock: Clock | None = None) -> None:
        self._interval = float(v.check(_INTERVAL, "interval", interval))
        if clock is not None and not isinstance(clock, Clock):
            raise TypeError(
                f"clock must have monotonic() and sleep(), got {clock!r} ({type(clock).__name__})"
            )
        self._clock: Clock = REAL_CLOCK if clock is None else clock
        self._lock = threading.Lock()
        self._watches: dict[int, _Watch] = {}  # by id(breaker): breakers need not hash
        self._listeners: tuple[WarningListener, ...] = ()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def interval(self) -> float:
        return self._interval

    def watch(self, breaker: CircuitBreaker) -> None:
        """Sample ``breaker`` from the next poll on (watching it twice is a no-op)."""
        if not isinstance(breaker, BreakerMixin):  # a CircuitBreaker, on either window
            raise TypeError(
                f"breaker must be a CircuitBreaker, got {breaker!r} ({type(breaker).__name__})"
            )
        with self._lock:
            if id(breaker) not in self._watches:
                self._watches[id(breaker)] = _Watch(breaker, self._clock.monotonic())

    def unwatch(self, breaker: CircuitBreaker) -> None:
        """Stop sampling ``breaker``; its active warnings end (listeners hear it).
        ``KeyError`` if it is not watched."""
        with self._lock:
            watch = self._watches.pop(id(breaker), None)
            if watch is None or watch.breaker is not breaker:
                raise KeyError(f"breaker {getattr(breaker, 'name', breaker)!r} is not watched")
            now = self._clock.monotonic()
            ended = [attrs.evolve(warning, ended=now) for warning in watch.warnings.values()]
        self._tell(ended)

    def watched(self) -> list[CircuitBreaker]:
        with self._lock:
            return [watch.breaker for watch in self._watches.values()]

    def add_listener(self, listener: WarningListener) -> None:
        """Call ``listener(warning)`` when a warning is raised and when it ends.

        It runs on the thread that polled (the forecaster's own, or the caller
        of :meth:`poll`), outside any lock; an exception it raises is logged and
        never stops the forecaster.
        """
        v.check(v.callable_(), "listener", listener)
        with self._lock:
            self._listeners = (*self._listeners, listener)

    def remove_listener(self, listener: WarningListener) -> None:
        """Stop calling ``listener`` (``ValueError`` if it was never added)."""
        with self._lock:
            listeners = list(self._listeners)
            listeners.remove(listener)
            self._listeners = tuple(listeners)

    def warnings(self) -> list[Warning]:
        """The warnings active now, oldest first."""
        with self._lock:
            active = [w for watch in self._watches.values() for w in watch.warnings.values()]
        return sorted(active, key=lambda warning: warning.since)

    def poll(self) -> list[Warning]:
        """Sample every watched breaker once; returns the warnings raised or ended by it
        (and tells the listeners about each)."""
        with self._lock:
            now = self._clock.monotonic()
            changes = [change for watch in self._watches.values() for change in watch.sample(now)]
        self._tell(changes)
        return changes

    def _tell(self, changes: list[Warning]) -> None:
        for warning in changes:
            for listener in self._listeners:
                try:
                    listener(warning)
                except Exception:
                    _logger.exception(
                        "forecast listener %r failed on the %s warning of breaker %r",
                        listener, warning.kind, warning.breaker,
                    )

    def start(self) -> None:
        """Start sampling on a thread of its own (once)."""
        with self._lock:
            if self._thread is not None:
                raise RuntimeError("Forecaster.start() may be called only once")
            self._thread = threading.Thread(
                target=self._run, name="recovery-forecaster", daemon=True
            )
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop sampling and join the thread (``timeout`` real seconds at most)."""
        self._stopping.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(timeout, 0.0))

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self.poll()
            except Exception:  # a breaker's metrics() failing must not end the watch
                _logger.exception("forecaster poll failed")
            wait(self._clock, self._stopping, self._interval)

    def __enter__(self) -> Forecaster:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        with self._lock:
            watched = len(self._watches)
        return f"Forecaster(interval={self._interval}, watched={watched})"

