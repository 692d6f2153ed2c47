"""Errors raised to callers of a breaker."""

from __future__ import annotations

from typing import Any


class CircuitOpenError(Exception):
    """The breaker rejected the call without running it.

    Construct it as ``CircuitOpenError(name, state, retry_after)``. ``retry_after``
    is the number of seconds until a trial call will be admitted, or ``None``
    when that is not known (half-open with all trial slots taken, or a repair in
    progress).

    The three values live in ``args`` and are read through properties, and the
    message is built only when ``str()`` asks. Rejection is a hot path: the
    compiled breaker creates the error with ``BaseException.__new__`` alone, which
    fills ``args`` in C, and skips this Python ``__init__``.
    """

    def __init__(self, name: str, state: Any, retry_after: float | None = None) -> None:
        super().__init__(name, state, retry_after)

    @property
    def name(self) -> str:
        return self.args[0] if self.args else ""

    @property
    def state(self) -> Any:
        return self.args[1] if len(self.args) > 1 else None

    @property
    def retry_after(self) -> float | None:
        return self.args[2] if len(self.args) > 2 else None

    def __str__(self) -> str:
        state = getattr(self.state, "value", self.state)
        text = f"circuit {self.name!r} is {state}"
        if self.retry_after is not None:
            text += f"; retry after {self.retry_after:.3f}s"
        return text


class CircuitRepairingError(CircuitOpenError):
    """The breaker rejected the call because a recovery strategy is repairing the plugin."""
