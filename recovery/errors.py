"""Errors raised to callers of a breaker."""

from __future__ import annotations

from typing import Any


class CircuitOpenError(Exception):
    """The breaker rejected the call without running it.

    ``retry_after`` is the number of seconds until a trial call will be admitted,
    or ``None`` when that is not known (half-open with all trial slots taken, or
    a repair in progress). The message is built lazily in ``__str__``, so raising
    costs one small object and no formatting.
    """

    def __init__(self, name: str, state: Any, retry_after: float | None) -> None:
        # BaseException.__new__ has already stored the arguments in ``args``,
        # which keeps the error picklable.
        self.name = name
        self.state = state
        self.retry_after = retry_after

    def __str__(self) -> str:
        state = getattr(self.state, "value", self.state)
        text = f"circuit {self.name!r} is {state}"
        if self.retry_after is not None:
            text += f"; retry after {self.retry_after:.3f}s"
        return text


class CircuitRepairingError(CircuitOpenError):
    """The breaker rejected the call because a recovery strategy is repairing the plugin."""
