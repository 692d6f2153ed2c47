"""An audit logger that keeps its records in memory, for assertions."""

from __future__ import annotations

import threading
from enum import Enum


class RecordingAuditLogger:
    """Keeps every ``log_failure_recovery`` call as a tuple, thread-safely.

    ``records`` holds ``(plugin_name, failure_type, recovery_action, success)``
    with the failure type as its string value, so a test can compare against
    plain literals: ``[("db", "timeout", "restart", True)]``.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._records: list[tuple[str, str, str, bool]] = []

    def log_failure_recovery(
        self, plugin_name: str, failure_type: object, recovery_action: str, success: bool
    ) -> None:
        kind = failure_type.value if isinstance(failure_type, Enum) else str(failure_type)
        with self._changed:
            self._records.append((plugin_name, kind, recovery_action, success))
            self._changed.notify_all()

    @property
    def records(self) -> list[tuple[str, str, str, bool]]:
        """A copy of the records so far, in the order they were logged."""
        with self._changed:
            return list(self._records)

    def wait_for_records(self, count: int, timeout: float = 5.0) -> bool:
        """Block (real time, at most ``timeout``) until ``count`` records exist."""
        with self._changed:
            return self._changed.wait_for(lambda: len(self._records) >= count, timeout)
