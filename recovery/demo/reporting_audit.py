"""An audit logger that also reports each strategy run: counted, and shown as an event."""

from __future__ import annotations

from recovery.audit import AuditLogger, record_attempt
from recovery.demo.calls import CallTally
from recovery.demo.screen import Reporter


class ReportingAuditLogger:
    """An audit logger that writes through to the file, and tells the tally and the reporter.

    A manager that verifies recoveries hands a logger that has
    ``log_recovery_attempt`` the action's own result and the verification's too;
    they go on to the file (when its logger takes them) and into the event line.
    """

    def __init__(self, inner: AuditLogger, tally: CallTally, report: Reporter) -> None:
        self._inner = inner
        self._tally = tally
        self._report = report

    def log_failure_recovery(
        self, plugin_name: str, failure_type: str, recovery_action: str, success: bool
    ) -> None:
        self._inner.log_failure_recovery(plugin_name, failure_type, recovery_action, success)
        self._announce(plugin_name, failure_type, recovery_action, success, "")

    def log_recovery_attempt(
        self,
        plugin_name: str,
        failure_type: str,
        recovery_action: str,
        success: bool,
        *,
        action_succeeded: bool,
        verified: bool | None,
    ) -> None:
        record_attempt(self._inner, plugin_name, failure_type, recovery_action, success,
                       action_succeeded=action_succeeded, verified=verified)
        if success:
            why = " (verified)" if verified else ""
        elif not action_succeeded:
            why = " (the action itself failed)"
        elif verified is False:
            why = " (done, but the plugin failed its verification)"
        else:
            why = " (done, not verified)"
        self._announce(plugin_name, failure_type, recovery_action, success, why)

    def _announce(
        self, plugin_name: str, failure_type: str, recovery_action: str, success: bool,
        why: str,
    ) -> None:
        self._tally.action(plugin_name, recovery_action, success)
        failure = getattr(failure_type, "value", failure_type)
        verdict = "succeeded" if success else "FAILED"
        self._report.event(
            plugin_name, f"recovery: {recovery_action} after {failure} {verdict}{why}"
        )
