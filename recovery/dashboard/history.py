"""Request and failure rates of one breaker over the last few minutes.

The breaker keeps lifetime totals only; the rates a person wants to see ("is it
failing right now, and since when?") are the differences between two samples
over the time between them. One :class:`RateHistory` per tile, sampled once a
second by the dashboard's own thread, keeps a fixed number of points.
"""

from __future__ import annotations

import collections


class RateHistory:
    """The last ``size`` samples of (requests/s, failures/s), one per reading.

    Every tile is sampled at the same readings, so the times are not kept per
    tile: the newest point is the latest reading, the others one interval apart.
    """

    def __init__(self, size: int) -> None:
        self._points: collections.deque[tuple[float, float]] = collections.deque(maxlen=size)
        self._last: tuple[float, int, int] | None = None

    def sample(self, now: float, requests: int, failures: int) -> tuple[float, float]:
        """Add the rates since the previous sample (monotonic ``now``); returns them.

        The first sample has nothing to compare with and reads as zero. A total
        that went down (a breaker replaced) restarts the count instead of
        showing a negative rate.
        """
        last = self._last
        self._last = (now, requests, failures)
        if last is None or now <= last[0]:
            rates = (0.0, 0.0)
        else:
            elapsed = now - last[0]
            rates = (
                max(requests - last[1], 0) / elapsed,
                max(failures - last[2], 0) / elapsed,
            )
        self._points.append(rates)
        return rates

    def to_dict(self) -> dict[str, list[float]]:
        """The two columns, oldest first, rounded for the wire."""
        return {
            "requests": [round(point[0], 2) for point in self._points],
            "failures": [round(point[1], 2) for point in self._points],
        }
