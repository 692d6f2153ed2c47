"""An audit logger that keeps its records in memory, for assertions."""

from __future__ import annotations

import threading
from enum import Enum
from typing import NamedTuple


class AuditAttempt(NamedTuple):
    """One audited strategy run with everything the manager said about it.

    ``action_succeeded`` and ``verified`` are None when the run came through the
    four-argument ``log_failure_recovery`` (which does not carry them).
    """

    plugin: str
    failure_type: str
    action: str
    success: bool
    action_succeeded: bool | None
    verified: bool | None


class RecordingAuditLogger:
    """Keeps every audited run, thread-safely, through either audit path.

    ``records`` holds ``(plugin_name, failure_type, recovery_action, success)``
    with the failure type as its string value, so a test can compare against
    plain literals: ``[("db", "timeout", "restart", True)]``. ``attempts`` holds
    the same runs as :class:`AuditAttempt` tuples that add the action's own result and
    the verification's (``log_recovery_attempt``), for tests of verified recovery.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._attempts: list[AuditAttempt] = []

    def log_failure_recovery(
        self, plugin_name: str, failure_type: object, recovery_action: str, success: bool
    ) -> None:
        self._add(AuditAttempt(plugin_name, _kind(failure_type), recovery_action, success,
                               None, None))

    def log_recovery_attempt(
        self,
        plugin_name: str,
        failure_type: object,
        recovery_action: str,
        success: bool,
        *,
        action_succeeded: bool,
        verified: bool | None,
    ) -> None:
        self._add(AuditAttempt(plugin_name, _kind(failure_type), recovery_action, success,
                          action_succeeded, verified))

    def _add(self, attempt: AuditAttempt) -> None:
        with self._changed:
            self._attempts.append(attempt)
            self._changed.notify_all()

    @property
    def records(self) -> list[tuple[str, str, str, bool]]:
        """``(plugin, failure_type, action, success)`` of each run so far, in order."""
        with self._changed:
            return [attempt[:4] for attempt in self._attempts]

    @property
    def attempts(self) -> list[AuditAttempt]:
        """Every run so far, in order, with ``action_succeeded`` and ``verified``."""
        with self._changed:
            return list(self._attempts)

    def wait_for_records(self, count: int, timeout: float = 5.0) -> bool:
        """Block (real time, at most ``timeout``) until ``count`` records exist."""
        with self._changed:
            return self._changed.wait_for(lambda: len(self._attempts) >= count, timeout)


def _kind(failure_type: object) -> str:
    return failure_type.value if isinstance(failure_type, Enum) else str(failure_type)
