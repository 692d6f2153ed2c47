"""Waiting for a deadline on a clock: every wait capped, the clock re-read on each wake.

Two lessons, written here once for the manager's threads.

- A timeout handed to :mod:`threading` overflows past ``threading.TIMEOUT_MAX``
  (about 9.2e9 s): ``crash_loop_max_delay=1e10`` raised ``OverflowError`` in the
  crash-loop timer, which died. No wait here is longer than :data:`MAX_WAIT`; a
  longer one is made of several, each re-reading the clock, so any duration a
  config can hold (``math.inf`` included) is a wait, never a dead thread.
- A wait's length computed from a clock reading taken earlier overshoots its
  deadline when the clock moved in between (a test advancing a FakeClock): the
  waiter then sleeps past a deadline that has already come. So a wait is for a
  *deadline*, its length computed from a fresh reading, and a waiter woken early
  (its event set) re-reads the clock before it waits again.
"""

from __future__ import annotations

import threading

from recovery import _clock

MAX_WAIT = 3600.0
"""The longest single wait on a clock (seconds); longer waits are made of several."""


def wait_until(clock: _clock.Clock, event: threading.Event, deadline: float) -> bool:
    """Wait until ``clock`` reaches ``deadline`` or ``event`` is set; True if it was set."""
    while not event.is_set():
        left = deadline - clock.monotonic()
        if left <= 0:
            return False
        if _clock.wait(clock, event, min(left, MAX_WAIT)):
            return True
    return True


def wait_for(clock: _clock.Clock, event: threading.Event, seconds: float) -> bool:
    """:func:`wait_until` ``seconds`` from now (any number of seconds, ``inf`` included)."""
    return wait_until(clock, event, clock.monotonic() + seconds)


def pause(clock: _clock.Clock, event: threading.Event, seconds: float) -> bool:
    """:func:`recovery._clock.pause` for any number of seconds; True if ``event`` was set.

    The real clock waits in capped steps; any other clock is asked to ``sleep``
    (a FakeClock advances at once).
    """
    if isinstance(clock, _clock.MonotonicClock):
        return wait_for(clock, event, seconds)
    return _clock.pause(clock, event, seconds)
