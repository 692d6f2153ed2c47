"""A clock that moves only when told, for tests that must not wait on real time."""

from __future__ import annotations

import datetime
import threading


class FakeClock:
    """A monotonic clock under the test's control (in the manner of trio's MockClock).

    - :meth:`advance` moves time forward and wakes every thread blocked in :meth:`wait`.
    - :meth:`sleep` advances the clock by the slept time and returns at once, so code
      that backs off or pauses completes immediately while still seeing time pass.
    - :meth:`wait` is for background loops (schedulers): it blocks, in real time,
      until the clock has been advanced past the deadline or the event is set, so a
      scheduler driven by this clock runs exactly when the test advances it.

    All methods are thread-safe.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)
        self._changed = threading.Condition()
        self._waiting = 0

    def monotonic(self) -> float:
        return self._now

    def advance(self, seconds: float | datetime.timedelta) -> float:
        """Move time forward by ``seconds`` (>= 0, or a timedelta) and return the new time."""
        if isinstance(seconds, datetime.timedelta):
            seconds = seconds.total_seconds()
        if seconds < 0:
            raise ValueError(f"seconds must be >= 0, got {seconds!r}")
        with self._changed:
            self._now += seconds
            self._changed.notify_all()
            return self._now

    def sleep(self, seconds: float | datetime.timedelta) -> None:
        if isinstance(seconds, datetime.timedelta):
            seconds = seconds.total_seconds()
        if seconds > 0:
            self.advance(seconds)

    def wait(self, event: threading.Event, timeout: float) -> bool:
        """Block until ``event`` is set (return True) or ``timeout`` fake seconds pass (False)."""
        with self._changed:
            deadline = self._now + timeout
            self._waiting += 1
            self._changed.notify_all()
            try:
                while not event.is_set() and self._now < deadline:
                    # The event is set by other code that does not know this
                    # condition, so poll it at a short real-time period.
                    self._changed.wait(0.005)
            finally:
                self._waiting -= 1
                self._changed.notify_all()
            return event.is_set()

    @property
    def waiting(self) -> int:
        """How many threads are blocked in :meth:`wait` now."""
        return self._waiting

    def wait_for_waiters(self, count: int, timeout: float = 5.0) -> bool:
        """Block (real time, at most ``timeout``) until ``count`` threads are in :meth:`wait`.

        Lets a test advance the clock only once a background loop is parked, so
        the advance is not lost in a race.
        """
        with self._changed:
            return self._changed.wait_for(lambda: self._waiting >= count, timeout)

    def __repr__(self) -> str:
        return f"FakeClock({self._now!r})"
