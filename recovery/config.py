"""Circuit breaker configuration: a frozen, validated attrs class."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any

import attrs

from recovery import _validate as v

_logger = logging.getLogger("recovery.breaker")


ExceptionMatcher = type[BaseException] | Callable[[BaseException], bool]
"""An exception class, or a predicate ``fn(exc) -> bool``."""


def _exception_matchers(value: Any) -> tuple[ExceptionMatcher, ...]:
    """Accept one class or predicate, or an iterable of them; keep them as a tuple."""
    if inspect.isclass(value) or callable(value):
        return (value,)
    if isinstance(value, (str, bytes)):
        return value  # type: ignore[return-value]  # not a tuple: the validator names it
    try:
        return tuple(value)
    except TypeError:
        return value  # type: ignore[no-any-return]  # the validator names the bad value


def _matcher_tuple(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """Exception classes and predicates, mixed. A class that is not an exception type is
    refused rather than taken for a predicate (calling it would build an instance, which
    is always true)."""
    if not isinstance(value, tuple):
        raise TypeError(
            f"{attribute.name} must be exception classes or predicates, got {value!r}"
        )
    for item in value:
        if inspect.isclass(item):
            if not issubclass(item, BaseException):
                raise TypeError(
                    f"{attribute.name} must hold exception classes or predicates, "
                    f"got the class {item!r} in {value!r}"
                )
        elif not callable(item):
            raise TypeError(
                f"{attribute.name} must hold exception classes or predicates, "
                f"got {item!r} in {value!r}"
            )


def split_matchers(
    matchers: tuple[Any, ...],
) -> tuple[tuple[type[BaseException], ...], tuple[Callable[[BaseException], bool], ...]]:
    """Split a config's exception matchers into classes (one ``isinstance``) and predicates."""
    classes = tuple(m for m in matchers if isinstance(m, type))
    return classes, tuple(m for m in matchers if not isinstance(m, type))


def matches(
    name: str, tests: tuple[Callable[[BaseException], bool], ...], exc: BaseException,
    on_error: bool,
) -> bool:
    """Whether any predicate matches ``exc``; one that raises is logged and counts as
    ``on_error``."""
    for test in tests:
        try:
            if test(exc):
                return True
        except Exception:
            _logger.exception("exception predicate %r of breaker %r failed", test, name)
            return on_error
    return False


# Upper bounds for the counts that size memory or loops. Each is far beyond a useful
# setting: a rate rule resolves 0.1% with 1,000 outcomes, so 100,000 (100 KB a breaker,
# wiped in microseconds on each transition) is ample; no dependency needs more than
# 1,000 trial calls at once or in a row to be trusted again.
MAX_WINDOW = 100_000
MAX_TRIALS = 1_000

# Upper bounds (seconds, inclusive, as Prometheus' ``le``) of the latency histogram that
# ``record_latency=True`` keeps: 1-2.5-5 steps from 100 us to 10 s, then 30 s and 60 s,
# so the calls a breaker guards (a cache hit to a slow batch job) each land in a bucket
# that tells them apart; anything longer falls in the last, unbounded one (+Inf).
# Fixed, so recording a call is one increment in a preallocated array.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)


@attrs.frozen
class CircuitBreakerConfig:
    """How a :class:`~recovery.CircuitBreaker` decides to open, probe and close.

    Durations are seconds (``float``); a ``datetime.timedelta`` is converted.
    Every bad value raises ``ValueError`` or ``TypeError`` naming the field and the
    value, at construction.
    """

    failure_threshold: int = attrs.field(default=20, validator=v.positive_int)
    success_threshold: int = attrs.field(default=3, validator=v.bounded_int(MAX_TRIALS))
    timeout: float = attrs.field(default=30.0, converter=v.seconds, validator=v.positive_seconds)
    health_check_interval: float = attrs.field(
        default=10.0, converter=v.seconds, validator=v.interval
    )
    health_check_timeout: float = attrs.field(
        default=5.0, converter=v.seconds, validator=v.interval
    )
    max_health_checks: int = attrs.field(default=3, validator=v.positive_int)
    retry_backoff_factor: float = attrs.field(default=2.0, validator=v.factor)
    max_retry_interval: float = attrs.field(
        default=300.0, converter=v.seconds, validator=v.positive_seconds
    )
    enable_fast_fail: bool = attrs.field(default=True, validator=v.boolean)
    sliding_window_size: int = attrs.field(default=100, validator=v.bounded_int(MAX_WINDOW))
    minimum_requests: int = attrs.field(default=20, validator=v.positive_int)
    failure_rate_threshold: float | None = attrs.field(default=0.5, validator=v.optional_rate)
    slow_call_duration: float | None = attrs.field(
        default=None, converter=v.optional_seconds, validator=v.optional_positive_seconds
    )
    slow_call_rate_threshold: float | None = attrs.field(default=None, validator=v.optional_rate)
    half_open_max_calls: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(v.bounded_int(MAX_TRIALS))
    )
    record_exceptions: tuple[ExceptionMatcher, ...] = attrs.field(
        default=(Exception,), converter=_exception_matchers, validator=_matcher_tuple
    )
    ignore_exceptions: tuple[ExceptionMatcher, ...] = attrs.field(
        default=(), converter=_exception_matchers, validator=_matcher_tuple
    )
    max_half_open_wait: float | None = attrs.field(
        default=None, converter=v.optional_seconds, validator=v.optional_positive_seconds
    )
    # Time every call into a histogram of LATENCY_BUCKETS (two clock reads a call).
    record_latency: bool = attrs.field(default=False, validator=v.boolean)

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
