"""attrs converters and validators shared by the config classes.

Every error names the field and the offending value, so a bad config fails at
construction with a message a user can act on.
"""

from __future__ import annotations

import datetime
import math
from typing import Any

import attrs


def seconds(value: Any) -> Any:
    """Accept a ``datetime.timedelta`` wherever a duration in seconds is expected."""
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    return value


def optional_seconds(value: Any) -> Any:
    return None if value is None else seconds(value)


def _type_error(attribute: attrs.Attribute[Any], value: Any, expected: str) -> TypeError:
    return TypeError(
        f"{attribute.name} must be {expected}, got {value!r} ({type(value).__name__})"
    )


def _check_number(attribute: attrs.Attribute[Any], value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _type_error(attribute, value, "a number")
    if math.isnan(value):
        raise ValueError(f"{attribute.name} must be a number, got {value!r}")
    return float(value)


def positive_int(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _type_error(attribute, value, "an int")
    if value <= 0:
        raise ValueError(f"{attribute.name} must be > 0, got {value!r}")


def optional_positive_int(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None:
        positive_int(instance, attribute, value)


def positive_seconds(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """A duration or period: a finite number of seconds greater than zero."""
    number = _check_number(attribute, value)
    if number <= 0 or math.isinf(number):
        raise ValueError(f"{attribute.name} must be a finite number of seconds > 0, got {value!r}")


MIN_INTERVAL = 0.01
"""The shortest period or timeout anything that schedules work accepts (10 ms).

A scheduler asked to wake every microsecond spends its life under its own lock;
nothing a health check or a recovery loop does needs a finer period than this.
"""


def interval(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """A period or timeout that schedules work: finite seconds, at least ``MIN_INTERVAL``."""
    number = _check_number(attribute, value)
    if not MIN_INTERVAL <= number < math.inf:
        raise ValueError(
            f"{attribute.name} must be a finite number of seconds >= {MIN_INTERVAL}, "
            f"got {value!r}"
        )


def bounded_int(upper: int) -> Any:
    """A validator for an int in ``[1, upper]``: counts that size memory or loops."""

    def check(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        positive_int(instance, attribute, value)
        if value > upper:
            raise ValueError(f"{attribute.name} must be <= {upper}, got {value!r}")

    return check


def optional_positive_seconds(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None:
        positive_seconds(instance, attribute, value)


def factor(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """A growth factor: a finite number >= 1."""
    number = _check_number(attribute, value)
    if number < 1 or math.isinf(number):
        raise ValueError(f"{attribute.name} must be a finite number >= 1, got {value!r}")


def rate(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """A fraction in (0, 1]."""
    number = _check_number(attribute, value)
    if not 0 < number <= 1:
        raise ValueError(f"{attribute.name} must be in (0, 1], got {value!r}")


def optional_rate(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None:
        rate(instance, attribute, value)


def boolean(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, bool):
        raise _type_error(attribute, value, "a bool")
