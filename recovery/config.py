"""Circuit breaker configuration: a frozen, validated attrs class."""

from __future__ import annotations

import inspect
from typing import Any

import attrs

from recovery import _validate as v


def _exception_types(value: Any) -> tuple[type[BaseException], ...]:
    """Accept one exception class or an iterable of them; keep them as a tuple."""
    if inspect.isclass(value):
        return (value,)  # type: ignore[return-value]  # the validator checks the class
    try:
        return tuple(value)
    except TypeError:
        return value  # type: ignore[no-any-return]  # the validator names the bad value


def _exception_tuple(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, tuple) or not all(
        inspect.isclass(item) and issubclass(item, BaseException) for item in value
    ):
        raise TypeError(
            f"{attribute.name} must be exception classes, got {value!r}"
        )


@attrs.frozen
class CircuitBreakerConfig:
    """How a :class:`~recovery.CircuitBreaker` decides to open, probe and close.

    Durations are seconds (``float``); a ``datetime.timedelta`` is converted.
    Every bad value raises ``ValueError`` or ``TypeError`` naming the field and the
    value, at construction.
    """

    failure_threshold: int = attrs.field(default=20, validator=v.positive_int)
    success_threshold: int = attrs.field(default=3, validator=v.positive_int)
    timeout: float = attrs.field(default=30.0, converter=v.seconds, validator=v.positive_seconds)
    health_check_interval: float = attrs.field(
        default=10.0, converter=v.seconds, validator=v.positive_seconds
    )
    health_check_timeout: float = attrs.field(
        default=5.0, converter=v.seconds, validator=v.positive_seconds
    )
    max_health_checks: int = attrs.field(default=3, validator=v.positive_int)
    retry_backoff_factor: float = attrs.field(default=2.0, validator=v.factor)
    max_retry_interval: float = attrs.field(
        default=300.0, converter=v.seconds, validator=v.positive_seconds
    )
    enable_fast_fail: bool = attrs.field(default=True, validator=v.boolean)
    sliding_window_size: int = attrs.field(default=100, validator=v.positive_int)
    minimum_requests: int = attrs.field(default=20, validator=v.positive_int)
    failure_rate_threshold: float | None = attrs.field(default=0.5, validator=v.optional_rate)
    slow_call_duration: float | None = attrs.field(
        default=None, converter=v.optional_seconds, validator=v.optional_positive_seconds
    )
    slow_call_rate_threshold: float | None = attrs.field(default=None, validator=v.optional_rate)
    half_open_max_calls: int | None = attrs.field(default=None, validator=v.optional_positive_int)
    record_exceptions: tuple[type[BaseException], ...] = attrs.field(
        default=(Exception,), converter=_exception_types, validator=_exception_tuple
    )
    ignore_exceptions: tuple[type[BaseException], ...] = attrs.field(
        default=(), converter=_exception_types, validator=_exception_tuple
    )
    max_half_open_wait: float | None = attrs.field(
        default=None, converter=v.optional_seconds, validator=v.optional_positive_seconds
    )

    def __attrs_post_init__(self) -> None:
        size = self.sliding_window_size
        for name in ("failure_threshold", "minimum_requests"):
            value = getattr(self, name)
            if value > size:
                raise ValueError(
                    f"{name} must be <= sliding_window_size ({size}), got {value!r}"
                )

    @property
    def trial_calls(self) -> int:
        """Concurrent trial calls admitted in half-open."""
        if self.half_open_max_calls is None:
            return self.success_threshold
        return self.half_open_max_calls
