"""FailureType, Severity, FailureInfo and the default classifier (docs/design.md, "Failures")."""

from __future__ import annotations

import errno
import math
import re
import socket
import time
from typing import Any

import pytest

from recovery.failures import FailureInfo, FailureType, Severity, classify


def test_plain_strings_become_enum_members() -> None:
    failure = FailureInfo(type="timeout", recoverable=True, severity="critical")
    assert failure.type is FailureType.TIMEOUT
    assert failure.severity is Severity.CRITICAL
    assert failure.type.value == "timeout"
    assert str(failure.severity) == "critical"


def test_defaults() -> None:
    before = time.time()
    failure = FailureInfo(FailureType.ERROR)
    assert (failure.message, failure.stack, failure.context) == ("", "", {})
    assert failure.recoverable is True
    assert failure.severity is Severity.WARNING
    assert before <= failure.timestamp <= time.time()


@pytest.mark.parametrize(
    ("kwargs", "field", "value"),
    [
        ({"type": "explosion"}, "type", "explosion"),
        ({"type": "error", "severity": "fatal"}, "severity", "fatal"),
        ({"type": 3}, "type", "3"),
    ],
)
def test_unknown_values_name_the_field_and_the_value(
    kwargs: dict[str, Any], field: str, value: str
) -> None:
    with pytest.raises(ValueError, match=rf"{field} must be one of .*got '?{value}'?"):
        FailureInfo(**kwargs)


def test_bad_types_are_rejected() -> None:
    with pytest.raises(TypeError, match="recoverable"):
        FailureInfo("error", recoverable="yes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="context"):
        FailureInfo("error", context=[1])


@pytest.mark.parametrize(
    ("value", "error"),
    [("yesterday", TypeError), (None, TypeError), (True, TypeError),
     (math.nan, ValueError), (math.inf, ValueError), (-5.0, ValueError)],
)
def test_timestamp_must_be_finite_epoch_seconds(value: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match=rf"timestamp .*got {re.escape(repr(value))}"):
        FailureInfo("error", timestamp=value)


def test_timestamp_takes_any_real_number_of_epoch_seconds() -> None:
    assert FailureInfo("error", timestamp=1_700_000_000).timestamp == 1.7e9
    assert FailureInfo("error", timestamp=0.0).timestamp == 0.0


def test_context_is_copied() -> None:
    context = {"attempt": 1}
    failure = FailureInfo("error", context=context)
    context["attempt"] = 2
    assert failure.context == {"attempt": 1}


def _raised(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:
        return caught


@pytest.mark.parametrize(
    ("exc", "failure_type", "severity"),
    [
        (TimeoutError("slow"), FailureType.TIMEOUT, Severity.WARNING),
        (socket.timeout("slow socket"), FailureType.TIMEOUT, Severity.WARNING),  # noqa: UP041
        (MemoryError(), FailureType.RESOURCE_LIMIT, Severity.CRITICAL),
        (RecursionError("deep"), FailureType.RESOURCE_LIMIT, Severity.CRITICAL),
        (OSError(errno.EMFILE, "too many open files"), FailureType.RESOURCE_LIMIT,
         Severity.CRITICAL),
        (OSError(errno.ENFILE, "file table full"), FailureType.RESOURCE_LIMIT, Severity.CRITICAL),
        (OSError(errno.ENOMEM, "no memory"), FailureType.RESOURCE_LIMIT, Severity.CRITICAL),
        (OSError(errno.ENOSPC, "disk full"), FailureType.RESOURCE_LIMIT, Severity.CRITICAL),
        (OSError(errno.ECONNREFUSED, "refused"), FailureType.ERROR, Severity.WARNING),
        (ConnectionResetError("reset"), FailureType.ERROR, Severity.WARNING),
        (ValueError("bad"), FailureType.ERROR, Severity.WARNING),
        (RuntimeError("bad"), FailureType.ERROR, Severity.WARNING),
    ],
)
def test_default_table(
    exc: BaseException, failure_type: FailureType, severity: Severity
) -> None:
    failure = classify(_raised(exc))
    assert failure.type is failure_type
    assert failure.severity is severity
    assert failure.recoverable is True
    assert failure.stack == ""


@pytest.mark.parametrize(
    "exc", [AssertionError("a"), AttributeError("b"), TypeError("c"), NameError("d"),
            SystemError("e")]
)
def test_programming_errors_are_panics_with_their_traceback(exc: BaseException) -> None:
    def deep_in_the_plugin() -> None:
        raise exc

    try:
        deep_in_the_plugin()
    except BaseException as caught:
        failure = classify(caught)
    assert failure.type is FailureType.PANIC
    assert failure.severity is Severity.CRITICAL
    assert "deep_in_the_plugin" in failure.stack
    assert type(exc).__name__ in failure.stack


def test_message_and_context() -> None:
    failure = classify(_raised(OSError(errno.ENOSPC, "disk full")))
    assert "disk full" in failure.message
    assert failure.context == {"exception": "builtins.OSError", "errno": errno.ENOSPC}
    assert classify(_raised(KeyError())).message == "KeyError"


class _Plugin:
    name = "p"

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def initialize(self, config: object) -> None:
        raise self.error

    def shutdown(self) -> None:
        pass


def test_a_failure_raised_from_a_plugins_initialize_is_an_initialization_failure() -> None:
    plugin = _Plugin(ConnectionError("cannot connect"))
    with pytest.raises(ConnectionError) as info:
        plugin.initialize({})
    failure = classify(info.value)
    assert failure.type is FailureType.INITIALIZATION
    assert failure.severity is Severity.WARNING

    critical = _Plugin(MemoryError())
    with pytest.raises(MemoryError) as info_critical:
        critical.initialize({})
    assert classify(info_critical.value).type is FailureType.INITIALIZATION
    assert classify(info_critical.value).severity is Severity.CRITICAL


def test_a_function_named_initialize_that_is_not_a_plugins_is_not_initialization() -> None:
    def initialize() -> None:
        raise ValueError("not a plugin")

    with pytest.raises(ValueError) as info:
        initialize()
    assert classify(info.value).type is FailureType.ERROR


def test_failure_info_is_frozen() -> None:
    failure = FailureInfo("error")
    with pytest.raises(AttributeError):
        failure.message = "changed"  # type: ignore[misc]


def test_type_and_severity_strings_in_any_case() -> None:
    from recovery import FailureInfo, FailureType, Severity

    failure = FailureInfo("TIMEOUT", severity="Critical")
    assert (failure.type, failure.severity) == (FailureType.TIMEOUT, Severity.CRITICAL)


class UnprintableError(Exception):
    """An exception whose own ``__str__`` fails."""

    def __str__(self) -> str:
        raise RuntimeError("no str for you")


class UnprintableTypeError(TypeError):
    def __str__(self) -> str:
        raise KeyError("missing")


def test_an_exception_whose_str_raises_is_still_classified() -> None:
    failure = classify(UnprintableError())
    assert failure.type is FailureType.ERROR
    assert failure.message == "<UnprintableError: str() raised RuntimeError>"
    assert failure.context["exception"].endswith("UnprintableError")


def test_a_panic_whose_str_raises_keeps_its_traceback() -> None:
    try:
        raise UnprintableTypeError()
    except TypeError as exc:
        failure = classify(exc)
    assert failure.type is FailureType.PANIC
    assert failure.message == "<UnprintableTypeError: str() raised KeyError>"
    assert "raise UnprintableTypeError()" in failure.stack
