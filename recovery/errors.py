"""Errors raised to callers of a breaker."""

from __future__ import annotations

import math
import types
from typing import Any


class CircuitOpenError(Exception):
    """The breaker rejected the call without running it.

    Construct it as ``CircuitOpenError(name, state, retry_after)``. ``retry_after``
    is the number of seconds until a trial call will be admitted, or ``None``
    when that is not known (half-open with all trial slots taken, a repair in
    progress, or a circuit held open until reset). It is never infinite, so
    ``time.sleep(e.retry_after)`` and ``json.dumps`` work on any value it has.

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
        value = self.args[2] if len(self.args) > 2 else None
        if isinstance(value, float) and math.isinf(value):
            return None  # held open until reset: when is unknown
        return value

    def __str__(self) -> str:
        state = getattr(self.state, "value", self.state)
        retry_after = self.retry_after
        when = "unknown" if retry_after is None else f"{retry_after:.3f}s"
        return f"circuit {self.name!r} is {state}; retry after {when}"


class CircuitRepairingError(CircuitOpenError):
    """The breaker rejected the call because a recovery strategy is repairing the plugin."""


# -- errors for misuse, built off the hot path (both windows use them) ---------------------


def refusal(result: Any) -> TypeError:
    """The error for a ``call()`` whose fn returned a coroutine or generator (closed here,
    so no "never awaited" warning follows it)."""
    if isinstance(result, types.AsyncGeneratorType):
        kind, use = "an async generator", "decorate the async generator function with @breaker"
    elif isinstance(result, types.CoroutineType):
        result.close()
        kind, use = "a coroutine", "use 'await breaker.call_async(fn)' or decorate it with @breaker"
    else:
        result.close()
        kind, use = "a generator", "decorate the generator function with @breaker"
    return TypeError(
        f"call() got {kind} from fn, which has not run yet and would be counted as a "
        f"success: {use}"
    )


def not_callable(api: str, fn: Any) -> TypeError:
    """Refused before admission, so a result passed for a function counts nothing."""
    return TypeError(
        f"{api}() fn must be callable, got {fn!r} ({type(fn).__name__}): "
        "pass the function, not its result"
    )


def foreign_exit(name: str, where: str = "thread") -> RuntimeError:
    return RuntimeError(
        f"a 'with' block of breaker {name!r} was exited in another {where} than the one "
        "that entered it (a generator closed elsewhere?); its outcome is not counted. "
        "Decorate the generator function with the breaker instead"
    )
