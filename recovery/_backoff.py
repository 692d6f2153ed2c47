"""Exponential back-off: the one place where a wait grows with each failure.

The manager's waits between attempts, its crash-loop delays and the backoff
strategy's holds all grow as ``base * factor**level`` up to a cap. Written out
at each place, the power overflowed a float in one and not in another; here it
is computed once, safely, for any level.
"""

from __future__ import annotations

import math
from typing import Any

import attrs

from recovery import _validate


def _positive_cap(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """A cap may be infinite (no cap), never zero, negative or NaN."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"{attribute.name} must be a number, got {value!r} ({type(value).__name__})"
        )
    if not value > 0:
        raise ValueError(f"{attribute.name} must be > 0, got {value!r}")


@attrs.frozen
class Backoff:
    """``delay(level) = min(base * factor**level, cap)``; ``cap`` may be ``math.inf``.

    A cap below ``base`` is allowed and wins: every delay is then the cap.
    """

    base: float = attrs.field(validator=_validate.positive_seconds)
    factor: float = attrs.field(validator=_validate.factor)
    cap: float = attrs.field(validator=_positive_cap)

    def delay(self, level: int) -> float:
        """Seconds to wait at ``level`` (0 for the first wait), without overflowing.

        ``factor**level`` overflows a float long before a back-off is interesting
        (factor 1e200 at level 2, factor 2 at level 1,024): once the product would
        reach the cap, the cap is the answer and the power is never computed.
        """
        base, factor, cap = self.base, self.factor, self.cap
        if base >= cap:
            return cap
        if factor == 1.0:
            return base
        if level >= math.log(cap / base, factor):
            return cap
        return min(base * factor**level, cap)
