"""What went wrong with a plugin: failure kinds, severities, and the default classifier.

A :class:`FailureInfo` is what the recovery manager reasons about. Strategies
choose whether they can handle one by its ``type`` and ``severity``; the audit log
records its type. :func:`classify` turns an exception into one with the table of
docs/design.md ("Failures"), and a user with other knowledge of their exceptions passes their own
function of the same shape (:data:`Classifier`) to the manager.
"""

from __future__ import annotations

import errno
import time
import traceback
from collections.abc import Callable, Mapping
from enum import Enum
from types import TracebackType
from typing import Any

import attrs

from recovery import _validate as v
from recovery._enum import StrEnum


class FailureType(StrEnum):
    """The kind of a failure; the value is what the audit log writes."""

    TIMEOUT = "timeout"
    ERROR = "error"
    RESOURCE_LIMIT = "resource_limit"
    PANIC = "panic"
    HEALTH_CHECK = "health_check"
    INITIALIZATION = "initialization"


class Severity(StrEnum):
    """How bad a failure is; strategies use it to decline gentle fixes for critical ones."""

    CRITICAL = "critical"
    WARNING = "warning"
    INFO = "info"


def enum_member(enum: type[Enum], field: str, value: Any) -> Any:
    """Accept a member, its string value or its name, in any case ("timeout", "TIMEOUT").

    Anything else is a ValueError naming the field and the value.
    """
    if isinstance(value, enum):
        return value
    try:
        return enum(value.lower() if isinstance(value, str) else value)
    except ValueError:
        choices = ", ".join(repr(member.value) for member in enum)
        raise ValueError(f"{field} must be one of {choices}, got {value!r}") from None


def _failure_type(value: Any) -> FailureType:
    return enum_member(FailureType, "type", value)  # type: ignore[no-any-return]


def _severity(value: Any) -> Severity:
    return enum_member(Severity, "severity", value)  # type: ignore[no-any-return]


def _context(value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise TypeError(f"context must be a mapping, got {value!r} ({type(value).__name__})")
    return dict(value)


def _timestamp(value: Any) -> float:
    """Seconds since the Unix epoch, as :func:`time.time` gives: a finite number >= 0.

    A converter, so the stored value is a float whatever real number was given.
    """
    return float(v.check(v.epoch_seconds, "timestamp", value))


@attrs.frozen
class FailureInfo:
    """One failure of a plugin.

    ``type`` and ``severity`` accept the enum members or their string values in any
    case (``"timeout"``, ``"WARNING"``); an unknown value raises ``ValueError`` naming the
    field and the value. ``timestamp`` is wall-clock (``time.time()``), for display and
    audit: a finite number of seconds >= 0 (not None: leave it out for "now").
    ``recoverable=False`` tells the manager not to try: the plugin is marked
    failed until reset.
    """

    type: FailureType = attrs.field(converter=_failure_type)
    message: str = attrs.field(default="", validator=v.text)
    timestamp: float = attrs.field(factory=time.time, converter=_timestamp)
    stack: str = attrs.field(default="", validator=v.text)
    context: dict[str, Any] = attrs.field(factory=dict, converter=_context, hash=False)
    recoverable: bool = attrs.field(default=True, validator=v.boolean)
    severity: Severity = attrs.field(default=Severity.WARNING, converter=_severity)


Classifier = Callable[[BaseException], FailureInfo]
"""Maps an exception to a failure; :func:`classify` is the default."""

_RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOSPC})
_PANIC_TYPES = (AssertionError, AttributeError, TypeError, NameError, SystemError)


def exception_message(exc: BaseException) -> str:
    """``str(exc)``, or a stand-in naming the class when that raises; never raises.

    An exception's ``__str__`` is user code, and may itself fail (a bad format
    string, an attribute set only in some paths): that must not stop the failure
    from being classified, recorded and recovered, nor kill the thread describing it.
    """
    try:
        return str(exc)
    except Exception as error:
        return f"<{type(exc).__name__}: str() raised {type(error).__name__}>"


def safe_repr(value: object) -> str:
    """``repr(value)``, or a stand-in naming the class when that raises; never raises.

    What a user's code returned (a health check's value, a strategy's, a classifier's)
    is shown in messages; its ``__repr__`` is user code too.
    """
    try:
        return repr(value)
    except Exception as error:
        return f"<{type(value).__name__} object; its repr() raised {type(error).__name__}>"


def _raised_in_initialize(tb: TracebackType | None) -> bool:
    """True if a frame of the traceback is a plugin's ``initialize`` method.

    A plugin is recognised the way the Plugin protocol describes it: an object
    with ``initialize`` and ``shutdown`` methods, bound as ``self`` in the frame.
    """
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_code.co_name == "initialize":
            owner = frame.f_locals.get("self")
            if callable(getattr(owner, "shutdown", None)):
                return True
        tb = tb.tb_next
    return False


def classify(exc: BaseException) -> FailureInfo:
    """Map an exception to a :class:`FailureInfo` (the table of docs/design.md, "Failures").

    - ``TimeoutError`` (``socket.timeout`` is the same class) → TIMEOUT, warning.
    - ``MemoryError``, ``RecursionError``, ``OSError`` with errno EMFILE, ENFILE,
      ENOMEM or ENOSPC → RESOURCE_LIMIT, critical.
    - ``AssertionError``, ``AttributeError``, ``TypeError``, ``NameError``,
      ``SystemError`` → PANIC, critical, with the formatted traceback in ``stack``
      (a programming error: the stack is what a person needs to fix it).
    - raised from within a plugin's ``initialize`` → INITIALIZATION, keeping the
      severity the table gives the exception.
    - anything else → ERROR, warning.

    ``message`` is ``str(exc)`` (the class name when that is empty, a stand-in
    naming the class when ``__str__`` itself raises); ``context``
    holds the exception's class name, and its errno when it has one.
    """
    failure_type = FailureType.ERROR
    severity = Severity.WARNING
    stack = ""
    if isinstance(exc, TimeoutError):
        failure_type = FailureType.TIMEOUT
    elif isinstance(exc, (MemoryError, RecursionError)) or (
        isinstance(exc, OSError) and exc.errno in _RESOURCE_ERRNOS
    ):
        failure_type = FailureType.RESOURCE_LIMIT
        severity = Severity.CRITICAL
    elif isinstance(exc, _PANIC_TYPES):
        failure_type = FailureType.PANIC
        severity = Severity.CRITICAL
        stack = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    if _raised_in_initialize(exc.__traceback__):
        failure_type = FailureType.INITIALIZATION
    context: dict[str, Any] = {"exception": f"{type(exc).__module__}.{type(exc).__qualname__}"}
    if isinstance(exc, OSError) and exc.errno is not None:
        context["errno"] = exc.errno
    return FailureInfo(
        type=failure_type,
        message=exception_message(exc) or type(exc).__name__,
        stack=stack,
        context=context,
        severity=severity,
    )
