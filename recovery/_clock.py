"""Clocks: the one seam through which every component reads time.

A clock has ``monotonic() -> float`` (seconds) and ``sleep(seconds)``. Components
take ``clock=`` so tests can pass :class:`recovery.testing.FakeClock` and see a
timeout, a backoff or an interval without waiting on real time. Wall-clock
timestamps for display come from :func:`time.time` separately.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    """What a component needs from time."""

    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class MonotonicClock:
    """The real clock: :func:`time.monotonic` and :func:`time.sleep`."""

    __slots__ = ()

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    def wait(self, event: threading.Event, timeout: float) -> bool:
        return event.wait(max(timeout, 0.0))

    def __repr__(self) -> str:
        return "MonotonicClock()"


REAL_CLOCK = MonotonicClock()


def wait(clock: Clock, event: threading.Event, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds of ``clock`` time, or until ``event`` is set.

    Background loops (schedulers, episode backoffs) use this instead of
    ``clock.sleep`` so that ``stop()`` can interrupt them. A clock with a
    ``wait(event, timeout)`` method of its own (the real clock, FakeClock) is
    asked directly; any other clock is polled.
    """
    own_wait = getattr(clock, "wait", None)
    if own_wait is not None:
        return bool(own_wait(event, timeout))
    deadline = clock.monotonic() + timeout
    while not event.is_set():
        left = deadline - clock.monotonic()
        if left <= 0:
            return False
        event.wait(min(left, 0.01))
    return True


def pause(clock: Clock, event: threading.Event, seconds: float) -> bool:
    """Let ``seconds`` of ``clock`` time pass; True if ``event`` was set first.

    For a pause that is part of the work (an episode's back-off between attempts),
    unlike :func:`wait`, which parks a loop until time is moved. The real clock
    waits on the event, so ``stop()`` interrupts the pause. Any other clock is
    asked to ``sleep``: a FakeClock then advances at once (its ``sleep`` advances it), so a test
    sees a whole back-off without waiting and without advancing the clock itself.
    """
    if isinstance(clock, MonotonicClock):
        return event.wait(max(seconds, 0.0))
    if not event.is_set():
        clock.sleep(seconds)
    return event.is_set()


def iso_utc(timestamp: float | None) -> str | None:
    """A wall-clock timestamp as ISO-8601 UTC to the second ("2024-01-01T12:00:00Z")."""
    if timestamp is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))
