"""Which calls of a trace met a broken dependency, when the trace does not say: labels
derived from its own outcomes, or taken from an incident log."""

from __future__ import annotations

import array
import bisect
import functools
import itertools
import operator
from collections.abc import Sequence

import attrs

from recovery._validate import positive_seconds, rate, seconds
from recovery.trace import Trace

_OK_TO_FAILED = bytes.maketrans(b"\x00\x01", b"\x01\x00")

@attrs.frozen
class LabelRule:
    """Derives ``healthy`` from a trace's own outcomes (see "Labels" in the module doc).

    A call is unhealthy when at least ``unhealthy_rate`` of the calls that
    started within ``label_window / 2`` seconds of it, either side, failed.
    """

    label_window: float = attrs.field(default=10.0, converter=seconds, validator=positive_seconds)
    unhealthy_rate: float = attrs.field(default=0.5, validator=rate)

    @property
    def description(self) -> str:
        """``unhealthy where >= 50% of the calls within +-5 s failed``."""
        return (
            f"unhealthy where >= {self.unhealthy_rate * 100:g}% of the calls "
            f"within +-{self.label_window / 2:g} s failed"
        )

    def label(self, trace: Trace, chunk: int = 1 << 16) -> Trace:
        """The same events, with ``healthy`` derived (any existing labels are replaced).

        The trace must be in time order, as loaded traces are. A prefix sum of
        failures (an ``array`` of C ints) and, per ``chunk`` events, two binary
        searches per event in the stretch of ``t`` their windows can reach: about
        5 bytes an event beyond the trace itself, where per-event Python lists
        took about 150.
        """
        t, half, n = trace.t, self.label_window / 2, len(trace)
        counts = array.array("i" if n < 2**31 else "q", [0])
        counts.extend(itertools.accumulate(trace.ok.translate(_OK_TO_FAILED)))
        healthy = bytearray()
        for low in range(0, n, chunk):
            high = min(n, low + chunk)
            reach_low = bisect.bisect_left(t, t[low] - half)
            reach_high = bisect.bisect_right(t, t[high - 1] + half)
            reach = t[reach_low:reach_high].tolist()  # bisect on a list boxes no floats
            times = t[low:high]
            first = [
                index + reach_low
                for index in map(
                    functools.partial(bisect.bisect_left, reach),
                    map(operator.sub, times, itertools.repeat(half)),
                )
            ]
            stop = [
                index + reach_low
                for index in map(
                    functools.partial(bisect.bisect_right, reach),
                    map(operator.add, times, itertools.repeat(half)),
                )
            ]
            failures = map(
                operator.sub, map(counts.__getitem__, stop), map(counts.__getitem__, first)
            )
            # A share, not failures < rate * calls: 7 / 100 rounds to the same float as
            # 0.07, where 0.07 * 100 rounds above 7. Every window holds its own call.
            shares = map(operator.truediv, failures, map(operator.sub, stop, first))
            healthy.extend(map(operator.lt, shares, itertools.repeat(self.unhealthy_rate)))
        return attrs.evolve(trace, healthy=healthy)


def label_incidents(
    trace: Trace, incidents: Sequence[tuple[float, float]]
) -> tuple[Trace, list[tuple[float, float]]]:
    """The trace labelled from an incident log, and the incidents no call falls in.

    A call is unhealthy when its ``t`` is inside an incident's ``[start, end)``;
    every other call is healthy (any labels the trace had are replaced).
    """
    healthy = bytearray(b"\x01") * len(trace)
    unused = []
    for start, end in incidents:
        low = bisect.bisect_left(trace.t, start)
        high = bisect.bisect_left(trace.t, end)
        if low == high:
            unused.append((start, end))
        healthy[low:high] = bytes(high - low)
    return attrs.evolve(trace, healthy=healthy), unused
